"""What every classification task shares: labels, loss, metrics, tables, figures, predictions.

Image and text classification differ in readers, preprocessing, head input and explanations; the
rest (class names in ``info``, softmax outputs, the metric keys, per-class table, confusion
matrices, ROC/PR curves beside the baseline, top-k predictions) lives here once.
"""

import typing
from dataclasses import dataclass, field

import numpy as np

from pipelines import plots
from pipelines.classification_metrics import (classification_metrics, confusion, per_class_table,
                                              roc_points)
from pipelines.config import TrainConfig, option
from pipelines.errors import UserError
from pipelines.preprocessing import Preprocessing
from pipelines.tasks import Task


@dataclass
class ClassificationConfig(TrainConfig):
    """Options every classification task has: how its linear head trains on a frozen backbone."""

    frozen_lr_scale: float = option(10.0, minimum=0, exclusive_min=True,
                                    help="learning-rate factor while the backbone is frozen: a "
                                         "head on fixed features takes larger steps")
    head_norm: typing.Optional[bool] = option(
        None, choices=(None, True, False),
        help="batch-normalise the pooled features before the classifier; default: on with "
             "freeze_backbone (a head on fixed reused features barely learns without it)")


@dataclass(kw_only=True)
class ClassPreprocessing(Preprocessing):
    """What every classifier learns: its class names, in the order of the softmax outputs."""

    class_names: list = field(default_factory=list)


class ClassificationTask(Task):
    """A :class:`Task` whose model outputs class probabilities and whose ``info`` has class_names."""

    Preprocessing = ClassPreprocessing
    monitor = ("val_loss", "min")
    key_metrics = ("accuracy", "macro_f1")

    def stratify_labels(self, dataset):
        return dataset.y

    def align(self, dataset, info):
        known = info.class_names
        unknown = sorted(set(dataset.info["class_names"]) - set(known))
        if unknown:
            raise UserError(f"{dataset.spec}: classes {unknown} are not among the run's classes "
                            f"{known}")
        remap = np.array([known.index(c) for c in dataset.info["class_names"]])
        dataset.y = remap[np.asarray(dataset.y)]
        dataset.info["class_names"] = list(known)
        return dataset

    @staticmethod
    def head_norm(config):
        """Batch norm on the pooled features: as configured, else on when the backbone is frozen."""
        return bool(config.freeze_backbone) if config.head_norm is None else bool(config.head_norm)

    def loss(self, config, info):
        return "sparse_categorical_crossentropy"

    def compile_metrics(self, config, info):
        return ["accuracy"]

    def metrics(self, dataset, outputs, info):
        return classification_metrics(dataset.y, outputs, len(info.class_names))

    def tables(self, dataset, outputs, info, baseline=None):
        return {"Per-class precision, recall and F1":
                per_class_table(dataset.y, outputs.argmax(axis=1), info.class_names)}

    def classification_figures(self, y, outputs, info, baseline=None):
        """Confusion matrices (network, baseline) and, for two classes, ROC and PR curves."""
        names = info.class_names
        y = np.asarray(y)
        has_proba = bool(baseline and "proba" in baseline)
        result = {"confusion_matrix": (
            plots.confusion_matrix(confusion(y, outputs.argmax(axis=1), len(names)), names),
            "Confusion matrix of the network on the test split.")}
        if has_proba:
            result["baseline_confusion_matrix"] = (
                plots.confusion_matrix(confusion(y, baseline["proba"].argmax(axis=1), len(names)),
                                       names, title=f"Baseline ({baseline['name']}) confusion matrix"),
                "Confusion matrix of the classical baseline on the same split.")
        if len(names) == 2 and len(np.unique(y)) == 2:
            scores = {"network": outputs[:, 1]}
            if has_proba:
                scores[baseline["name"]] = baseline["proba"][:, 1]
            result["roc_curve"] = (
                plots.roc_curves({k: roc_points(y, s) for k, s in scores.items()},
                                 f"ROC: {names[1]} vs {names[0]}"),
                f"ROC curve with '{names[1]}' as the positive class.")
            result["precision_recall_curve"] = (
                plots.precision_recall_curves(y, scores, f"Precision-recall: {names[1]}"),
                f"Precision-recall curve with '{names[1]}' as the positive class.")
        return result

    def probability_baseline(self, name, estimator, x_train, y_train, x_test, y_test, info, chunk=1024):
        """Fit a scikit-learn classifier; its metrics and (n, classes) probabilities on the test split.
        The test inputs are taken ``chunk`` rows at a time (lazily read files stay lazy)."""
        n_classes = len(info.class_names)
        estimator.fit(x_train, y_train)
        proba = np.zeros((len(y_test), n_classes))
        for start in range(0, len(y_test), chunk):
            stop = min(start + chunk, len(y_test))
            proba[start:stop, estimator.classes_] = estimator.predict_proba(x_test[start:stop])
        return {"name": name, "metrics": classification_metrics(y_test, proba, n_classes),
                "proba": proba}

    def top_classes(self, proba, info, options):
        """One record per row: the best class and the top-k (``--set top=K``) with probabilities."""
        names = info.class_names
        top = int(options.get("top", min(5, len(names))))
        records = []
        for row in proba:
            order = np.argsort(-row)[:top]
            records.append({"class": names[order[0]],
                            "top": [{"class": names[i], "probability": float(row[i])} for i in order]})
        return records

    @staticmethod
    def class_outputs(probabilities, info, *, names=True):
        """What an exported classifier answers: probabilities, the best class id and (for
        SavedModels; TFLite keeps to numbers) its name."""
        import tensorflow as tf

        ids = tf.argmax(probabilities, axis=-1, output_type=tf.int32)
        outputs = {"probabilities": probabilities, "class_ids": ids}
        if names:
            outputs["class_names"] = tf.gather(tf.constant(list(info.class_names)), ids)
        return outputs

    @staticmethod
    def format_top(record):
        return ", ".join(f"{t['class']} {t['probability']:.3f}" for t in record["top"])
