"""The task protocol and registry: what a task package provides, and nothing more.

A task is one object registered with ``@register_task("name")`` in its own package, and found
through the ``cnn_tasks.tasks`` entry-point group (setup.cfg): the pipeline never imports the
task packages by name, so a new task adds one line there. It supplies its flat ``Config``
dataclass, data readers, preprocessing, the head on the backbone's pyramid, loss, metrics,
baseline, tables, figures and prediction. Splitting, fitting, checkpointing, reports, run
directories, export and transfer belong to the pipeline (:mod:`pipelines.workflow`).
"""

import json

import numpy as np

from pipelines.config import TrainConfig
from pipelines.data import balanced_class_weight
from pipelines.preprocessing import Preprocessing
from pipelines.registry import Registry

TASKS = Registry("task")


def register_task(name):
    """Class decorator: instantiate the task once and register it under ``name``."""

    def decorate(cls):
        instance = cls()
        instance.name = name
        TASKS.register(name)(instance)
        return cls

    return decorate


ENTRY_POINT_GROUP = "cnn_tasks.tasks"


def _entry_points():
    from importlib.metadata import entry_points

    found = {}
    for point in entry_points(group=ENTRY_POINT_GROUP):
        found.setdefault(point.name, point)  # declaration order; the first of a name wins
    return found


def task_names():
    """Every installed task, from the entry points alone (no task module is imported), then any
    registered without one (tests)."""
    installed = tuple(_entry_points())
    return installed + tuple(n for n in TASKS.names() if n not in installed)


def get_task(name):
    """The registered task ``name``, importing its package through its entry point if needed.
    An unknown name loads every task, so the registry's error lists them and suggests one."""
    if name not in TASKS:
        points = _entry_points()
        for point in ([points[name]] if name in points else points.values()):
            point.load()  # importing the module registers the task
        if name in points and name not in TASKS:
            raise ValueError(f"entry point {points[name].value} did not register a task named {name!r}")
    return TASKS.get(name)


class Task:
    """Base class documenting the protocol; methods without a default must be overridden."""

    name = ""
    modality = "image"  # which backbones fit: "image" or "text"
    Config = TrainConfig
    Preprocessing = Preprocessing  # the task's typed record of what preprocessing learned (``info``)
    summary = ""
    builtin_data = ()  # names accepted as builtin:NAME
    monitor = ("val_loss", "min")  # what the best checkpoint and early stopping watch
    key_metrics = ()  # shown by `cnn-tasks runs`
    lower_is_better = ()  # metrics where a smaller value wins (reports mark the better side)
    tflite_unsupported = ""  # why `export --format tflite` cannot work for this task, if it cannot

    def settle(self, config):
        """The configuration with values that depend on other options made concrete (e.g. a
        segmentation run's batch size once 2D or 3D is known), so config.json records what the
        run used; a combination that cannot work is a UserError. Called after every layer is
        applied, also on a resumed run's saved configuration, so it must be idempotent."""
        return config

    # -- data --------------------------------------------------------------------------------
    def load(self, spec, config):
        """Read ``spec`` (a path or builtin:NAME) into a :class:`pipelines.data.Dataset`."""
        raise NotImplementedError

    def stratify_labels(self, dataset):
        """Labels to stratify splits by (None: plain random split)."""
        return None

    def fit_config(self, config, train):
        """The configuration with options left to the data (None by default) made concrete from
        the training split, e.g. epochs from its size; config.json records the result, so a
        resumed run keeps it. Called before preprocessing and the model are built."""
        return config

    def fit_preprocessing(self, train, config, min_size):
        """Learn what preprocessing needs from the training split only: a ``self.Preprocessing``
        record (``info`` everywhere below)."""
        raise NotImplementedError

    def align(self, dataset, info):
        """Map a new dataset onto a trained run's label space (evaluate --data)."""
        return dataset

    def scorable(self, dataset):
        """Indices of the examples a score may be computed on when a whole dataset is evaluated
        (``evaluate --data ... --split all``): every one, unless some are training material only."""
        import numpy as np

        return np.arange(len(dataset))

    def input_shape(self, info):
        raise NotImplementedError

    def backbone_arguments(self, info, config):
        """Builder arguments that come from the data, not the user (e.g. a vocabulary size)."""
        return {}

    def embedding_tokens(self, info):
        """The token list indexing a text backbone's embedding rows, so a transferred backbone's
        rows are matched by token (None: no embedding)."""
        return None

    def encode(self, dataset, info):
        """(x, y) for :func:`pipelines.inputs.tf_dataset`: arrays, lazily read files,
        :class:`~pipelines.inputs.Gathered` rows or a dict of these with ``y`` an array; or
        ``(streamed, streamed.targets)`` for :class:`~pipelines.inputs.Streamed` sources."""
        raise NotImplementedError

    def augment(self, config, info):
        """``apply(x, y, seed) -> (x, y)`` for one training batch, or None. ``seed`` is the
        batch's own ``[2]`` int tensor: draw per-example values from it with stateless ops
        (:mod:`pipelines.augmentation`) so tf.data can run batches in parallel and a seed still
        gives one run."""
        return None

    def class_weight(self, y, config):
        return balanced_class_weight(y) if config.class_weight == "balanced" else None

    # -- model -------------------------------------------------------------------------------
    def build(self, backbone, info, config):
        raise NotImplementedError

    def loss(self, config, info):
        raise NotImplementedError

    def compile_metrics(self, config, info):
        """Keras metrics compiled with the loss: shown each epoch, in history.csv and the learning
        curves (``val_NAME`` on the validation split)."""
        return []

    def epoch_scores(self, val_set, info, config):
        """Validation figures the compiled metrics cannot give (a decoded caption's BLEU, a Dice
        per case at each case's own size): a function ``model -> {name: value}`` run on the
        validation split after every epoch and logged as ``val_NAME`` (history.csv, the learning
        curves), or None. Its time counts in the epoch's ``seconds``."""
        return None

    # -- evaluation --------------------------------------------------------------------------
    def predict_dataset(self, model, dataset, info, config, progress=None):
        """The task's outputs for every example of ``dataset``. A long per-example loop tells
        ``progress(done, total, what)`` how far it has got (``evaluation.counted`` does this)."""
        raise NotImplementedError

    def metrics(self, dataset, outputs, info):
        raise NotImplementedError

    def baseline(self, train, test, info, config, model=None):
        """A classical method fitted on ``train`` and scored on ``test`` with the same metrics:
        {"name", "metrics", ...}. ``model`` is the trained network, for baselines that reuse its
        features (captioning's nearest-neighbour retrieval)."""
        raise NotImplementedError

    def tables(self, dataset, outputs, info, baseline=None):
        """{title: pandas.DataFrame} for the report; ``baseline`` is what :meth:`baseline` returned
        (None without one), for tables that set the network beside it."""
        return {}

    def figures(self, model, dataset, outputs, info, config, baseline=None):
        return {}

    def explanations(self, model, dataset, outputs, info, config):
        """Why the model decided: ({title: DataFrame}, {title: [evaluation.HighlightedText]})."""
        return {}, {}

    def report_notes(self, dataset, info):
        """Lines the report shows under the metrics: what the reader dropped, what was adapted."""
        return list(dataset.notes) + list(info.notes)

    # -- prediction --------------------------------------------------------------------------
    def predict_inputs(self, model, inputs, info, options, out=None):
        """One dict per input (file path or string)."""
        raise NotImplementedError

    def format_prediction(self, record):
        return json.dumps(record)

    # -- serving -----------------------------------------------------------------------------
    def serving_signatures(self, model, info):
        """SavedModel endpoints, ``{name: pipelines.serving.Signature}``, the first named
        ``serving_default``: what a client has goes in (image bytes, strings, a volume), the
        user's words come out (class names, a caption, a mask)."""
        from pipelines.errors import UserError

        raise UserError(f"{self.name}: this task has no serving export")

    def tflite_signatures(self, model, info):
        """The numeric endpoints TFLite's ops can run (decoding, tokenizing and class names stay
        with the client); a task whose graph cannot go sets ``tflite_unsupported``."""
        from pipelines.errors import UserError

        reason = self.tflite_unsupported or "this task has no TFLite export"
        raise UserError(f"cannot export {self.name} to tflite: {reason}; use --format saved_model")
