"""Image classification: images to classes (digits, photos, medical scans)."""

import typing
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipelines import imaging, plots
from pipelines.classification_metrics import (classification_metrics, confusion, per_class_table,
                                              roc_points)
from pipelines.config import TrainConfig, option
from pipelines.errors import UserError
from pipelines.tasks import Task, register_task
from tasks.image_classification import figures, readers
from tasks.image_classification.head import build_classifier


@dataclass
class ImageClassificationConfig(TrainConfig):
    data: str = option("builtin:digits", help="class folders, a path,label CSV, an .npz, or builtin:digits")
    epochs: int = option(40, minimum=1, help="training epochs")
    backbone_options: dict = option({"batch_norm": True},
                                    help="backbone builder arguments (defaults apply to basic_cnn only)")
    image_size: typing.Optional[int] = option(None, minimum=1,
                                              help="square input size (default: the data's own)")
    channels: typing.Optional[int] = option(None, choices=(None, 1, 3),
                                            help="1 or 3 (default: the data's own)")
    augment: bool = option(True, help="random shifts (and flips if augment_flip) while training")
    augment_shift: float = option(0.125, minimum=0, maximum=0.5, help="max shift, fraction of size")
    augment_flip: bool = option(False, help="random horizontal flips (not for digits or text)")
    head_pool: str = option("avg", choices=("avg", "max"), help="global pooling of the deepest level")
    head_hidden: int = option(0, minimum=0, help="units of a hidden fully connected layer; 0 = none")
    head_dropout: float = option(0.3, minimum=0, maximum=0.9, help="dropout before the classifier")
    path_column: str = option("path", help="CSV column holding image paths")
    label_column: str = option("label", help="CSV column holding class labels")


@register_task("image-classification")
class ImageClassification(Task):
    modality = "image"
    Config = ImageClassificationConfig
    summary = "images to classes (digits, photos, medical scans)"
    builtin_data = ("digits",)
    monitor = ("val_loss", "min")
    key_metrics = ("accuracy", "macro_f1")

    def load(self, spec, config):
        return readers.load(spec, image_size=config.image_size, channels=config.channels,
                            path_column=config.path_column, label_column=config.label_column)

    def stratify_labels(self, dataset):
        return dataset.y

    def fit_preprocessing(self, train, config, min_size):
        native = int(max(train.x.shape[1:3]))
        size = max(config.image_size or native, min_size)
        channels = config.channels or int(train.x.shape[-1])
        return {"class_names": list(train.info["class_names"]), "image_size": size,
                "channels": channels, "input_scale": train.info.get("input_scale", 255.0)}

    def align(self, dataset, info):
        known = info["class_names"]
        unknown = sorted(set(dataset.info["class_names"]) - set(known))
        if unknown:
            raise UserError(f"{dataset.spec}: classes {unknown} are not among the run's classes "
                            f"{known}")
        remap = np.array([known.index(c) for c in dataset.info["class_names"]])
        dataset.y = remap[np.asarray(dataset.y)]
        dataset.info["class_names"] = list(known)
        return dataset

    def input_shape(self, info):
        return (info["image_size"], info["image_size"], info["channels"])

    def preprocess(self, images, info):
        return imaging.resize_batch(imaging.fit_channels(images, info["channels"]), info["image_size"])

    def encode(self, dataset, info):
        return self.preprocess(dataset.x, info), np.asarray(dataset.y, dtype=np.int32)

    def augment(self, config, info):
        if not config.augment:
            return None
        import keras

        steps = [keras.layers.RandomTranslation(config.augment_shift, config.augment_shift,
                                                fill_mode="constant", seed=config.seed)]
        if config.augment_flip:
            steps.append(keras.layers.RandomFlip("horizontal", seed=config.seed))

        def apply(x, y, *rest):
            for layer in steps:
                x = layer(x, training=True)
            return (x, y, *rest)

        return apply

    def build(self, backbone, info, config):
        return build_classifier(backbone, len(info["class_names"]), pool=config.head_pool,
                                hidden=config.head_hidden, dropout=config.head_dropout)

    def loss(self, config):
        return "sparse_categorical_crossentropy"

    def compile_metrics(self, config):
        return ["accuracy"]

    def predict_dataset(self, model, dataset, info, config):
        x, _ = self.encode(dataset, info)
        return model.predict(x, batch_size=256, verbose=0)

    def metrics(self, dataset, outputs, info):
        return classification_metrics(dataset.y, outputs, len(info["class_names"]))

    def baseline(self, train, test, info, config):
        """Logistic regression on the resized pixels (standardised), same split, same metrics."""
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler

        x_train, y_train = self.encode(train, info)
        x_test, _ = self.encode(test, info)
        model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
        model.fit(x_train.reshape(len(x_train), -1), y_train)
        proba = np.zeros((len(x_test), len(info["class_names"])))
        proba[:, model.classes_] = model.predict_proba(x_test.reshape(len(x_test), -1))
        return {"name": "logistic_regression_pixels",
                "metrics": classification_metrics(test.y, proba, len(info["class_names"])),
                "proba": proba}

    def tables(self, dataset, outputs, info):
        return {"Per-class precision, recall and F1":
                per_class_table(dataset.y, outputs.argmax(axis=1), info["class_names"])}

    def figures(self, model, dataset, outputs, info, config, baseline=None):
        names = info["class_names"]
        images, _ = self.encode(dataset, info)
        y = np.asarray(dataset.y)
        result = {"confusion_matrix": (
            plots.confusion_matrix(confusion(y, outputs.argmax(axis=1), len(names)), names),
            "Confusion matrix of the network on the test split.")}
        if baseline and "proba" in baseline:
            result["baseline_confusion_matrix"] = (
                plots.confusion_matrix(confusion(y, baseline["proba"].argmax(axis=1), len(names)),
                                       names, title=f"Baseline ({baseline['name']}) confusion matrix"),
                "Confusion matrix of the classical baseline on the same split.")
        if len(names) == 2 and len(np.unique(y)) == 2:
            curves = {"network": roc_points(y, outputs[:, 1])}
            if baseline and "proba" in baseline:
                curves[baseline["name"]] = roc_points(y, baseline["proba"][:, 1])
            result["roc_curve"] = (plots.roc_curves(curves, f"ROC: {names[1]} vs {names[0]}"),
                                   f"ROC curve with '{names[1]}' as the positive class.")
        result["mistakes"] = figures.mistakes_figure(images, y, outputs, names)
        result["gradcam"] = figures.gradcam_figure(model, images, y, outputs, names)
        return result

    def predict_inputs(self, model, inputs, info, options, out=None):
        top = int(options.get("top", min(5, len(info["class_names"]))))
        images = np.stack([imaging.resize_batch(imaging.fit_channels(
            imaging.read_image(p)[None], info["channels"]), info["image_size"])[0] for p in inputs])
        proba = model.predict(images, verbose=0)
        records = []
        for path, row in zip(inputs, proba):
            order = np.argsort(-row)[:top]
            records.append({"input": str(path), "class": info["class_names"][order[0]],
                            "top": [{"class": info["class_names"][i], "probability": float(row[i])}
                                    for i in order]})
        return records

    def format_prediction(self, record):
        tops = ", ".join(f"{t['class']} {t['probability']:.3f}" for t in record["top"])
        return f"{Path(record['input']).name}: {record['class']}  ({tops})"
