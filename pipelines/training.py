"""The one training loop: compile + ``model.fit`` with the standard callbacks, for every task.

Callbacks: best checkpoint (weights of the best validation epoch are restored at the end), optional
early stopping, a cosine or reduce-on-plateau schedule, ``BackupAndRestore`` so ``--resume``
continues an interrupted run, CSV history, optional TensorBoard. With ``freeze_backbone`` the
first phase trains the head only; ``fine_tune_epochs`` then unfreezes the backbone and continues at
a lower learning rate in the same history.
"""

import contextlib
import csv
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import keras

from pipelines.backbones import BACKBONE_LAYER_NAME
from pipelines.runs import BACKUP_DIR, BEST_WEIGHTS, CHECKPOINTS_DIR
from pipelines.errors import UserError

HISTORY_FILE = "history.csv"


@dataclass
class FitResult:
    epochs: int
    seconds: float
    samples_per_second: float
    best_epoch: int
    monitor: str


@contextlib.contextmanager
def compute_precision(policy):
    """Layers built inside compute in ``policy`` (a Keras dtype policy such as
    ``mixed_bfloat16``); the global policy is restored afterwards. Each layer keeps its policy in
    model.keras, so a loaded run computes as it trained."""
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(policy)
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)


def make_optimizer(config, *, steps_per_epoch, epochs, lr_scale=1.0):
    lr = config.learning_rate * lr_scale
    if config.lr_schedule == "cosine":
        lr = keras.optimizers.schedules.CosineDecay(lr, decay_steps=max(1, steps_per_epoch * epochs))
    if config.optimizer == "adam":
        return keras.optimizers.Adam(lr)
    if config.optimizer == "adamw":
        return keras.optimizers.AdamW(lr, weight_decay=config.weight_decay or 1e-4)
    return keras.optimizers.SGD(lr, momentum=0.9, nesterov=True)


class PeriodicBackupAndRestore(keras.callbacks.BackupAndRestore):
    """BackupAndRestore that saves at most every ``interval_s`` seconds (0: every epoch).

    Small models train an epoch in well under a second; writing a backup after each one cost
    ~15 % of training time on digits (benchmarks/RESULTS.md). Resuming repeats at most
    ``interval_s`` seconds of work.
    """

    def __init__(self, backup_dir, interval_s):
        super().__init__(backup_dir)
        self.interval_s = interval_s
        self._last_save = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        # the parent's public hook records the epoch and saves (save_freq="epoch"); skipping it
        # skips that epoch's backup, and the next call records the epoch afresh
        if time.perf_counter() - self._last_save >= self.interval_s:
            super().on_epoch_end(epoch, logs)
            self._last_save = time.perf_counter()


class DivergenceGuard(keras.callbacks.Callback):
    """Stops training after the first epoch whose loss is NaN or infinite and remembers which,
    so the run can fail with a message that says so. The epoch's mean loss is not finite as
    soon as one batch's is. Checked once an epoch, not per batch as Keras' TerminateOnNaN does:
    any batch-level hook turns off Keras' asynchronous callback dispatch, which cost the digits
    default 0.9 ms of a 12 ms step (issue 18's overhead benchmark)."""

    def __init__(self):
        super().__init__()
        self.diverged_at = None  # the epoch (0-based)

    def on_epoch_end(self, epoch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(float(loss)):
            self.diverged_at = epoch
            self.model.stop_training = True


class EpochClock(keras.callbacks.Callback):
    """Adds ``seconds`` to each epoch's logs: wall time since training began, counted on across
    phases and resumes from the history's last row, so history.csv plots against time as well
    as epochs. A history written before this column existed gets none (its rows stay aligned)."""

    COLUMN = "seconds"

    def __init__(self, history_path):
        super().__init__()
        self.history_path = Path(history_path)

    def on_train_begin(self, logs=None):
        self.offset, self.active = 0.0, True
        if self.history_path.is_file() and self.history_path.stat().st_size:
            with self.history_path.open(newline="") as handle:
                rows = list(csv.DictReader(handle))
            if rows and self.COLUMN not in rows[0]:
                self.active = False
            elif rows:
                self.offset = float(rows[-1][self.COLUMN])
        self.start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        if self.active and logs is not None:
            logs[self.COLUMN] = round(self.offset + time.perf_counter() - self.start, 2)


class ValidationScores(keras.callbacks.Callback):
    """Adds ``val_NAME`` to each epoch's logs for every figure of a task's
    :meth:`~pipelines.tasks.Task.epoch_scores` function, computed on the model being trained."""

    def __init__(self, score):
        super().__init__()
        self.score = score

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs.update({f"val_{name}": float(value) for name, value in self.score(self.model).items()})


def _callbacks(config, run_dir, phase, *, monitor, mode, resume_history, tensorboard_dir, guard,
               epoch_scores=None):
    run_dir = Path(run_dir)
    # Epoch-end order matters for resuming: the history row and the best checkpoint first, the
    # backup last. A process killed in between then resumes before that epoch and redoes it;
    # the other way round, the epoch's history row would be lost.
    callbacks = [
        guard,
        *([ValidationScores(epoch_scores)] if epoch_scores else []),  # timed, logged and monitorable
        EpochClock(run_dir / HISTORY_FILE),  # before the logger, which writes what it adds
        keras.callbacks.CSVLogger(str(run_dir / HISTORY_FILE), append=resume_history),
        # the best so far (an earlier phase's, or the epochs before a resume) must be beaten, or
        # a fresh callback would overwrite it with the first epoch it sees
        keras.callbacks.ModelCheckpoint(str(run_dir / BEST_WEIGHTS),
                                        monitor=monitor, mode=mode, save_best_only=True,
                                        save_weights_only=True, verbose=0,
                                        initial_value_threshold=_best_value(run_dir, monitor, mode)),
        PeriodicBackupAndRestore(str(run_dir / BACKUP_DIR / phase), config.backup_interval_s),
    ]
    if config.early_stopping_patience:
        callbacks.append(keras.callbacks.EarlyStopping(monitor=monitor, mode=mode,
                                                       patience=config.early_stopping_patience))
    if config.lr_schedule == "plateau":
        callbacks.append(keras.callbacks.ReduceLROnPlateau(monitor=monitor, mode=mode, factor=0.5,
                                                           patience=max(2, config.epochs // 10)))
    if tensorboard_dir:
        callbacks.append(keras.callbacks.TensorBoard(str(tensorboard_dir)))
    return callbacks


def set_backbone_trainable(model, trainable, batch_norm=True):
    """Freeze or unfreeze the nested backbone; frozen batch norm runs in inference mode. With
    ``batch_norm`` False an unfrozen backbone keeps its batch norm frozen (the Keras
    transfer-learning guide's advice for pretrained statistics and small batches)."""
    import keras

    try:
        backbone = model.get_layer(BACKBONE_LAYER_NAME)
    except ValueError:
        return
    backbone.trainable = trainable
    if trainable:  # each time: Keras skips a model's layers when its own flag does not change
        for layer in _nested_layers(backbone):
            if isinstance(layer, keras.layers.BatchNormalization):
                layer.trainable = batch_norm


def _nested_layers(model):
    for layer in model.layers:
        yield layer
        if hasattr(layer, "layers"):
            yield from _nested_layers(layer)


def _trim_history(run_dir, keep_epochs):
    """On resume, drop history rows past the restored epoch so the CSV has one row per epoch."""
    path = Path(run_dir) / HISTORY_FILE
    if not path.is_file():
        return
    with path.open(newline="") as handle:
        rows = list(csv.reader(handle))
    if not rows:
        return
    kept = [rows[0]] + [r for r in rows[1:] if r and int(float(r[0])) < keep_epochs]
    with path.open("w", newline="") as handle:
        csv.writer(handle).writerows(kept)


def _restored_epoch(run_dir, phase):
    """The epoch BackupAndRestore will resume from: the one its training_metadata.json records
    (a file format Keras does not document; setup.cfg pins the Keras versions tested)."""
    import json

    meta = Path(run_dir) / BACKUP_DIR / phase / "training_metadata.json"
    if meta.is_file():
        return json.loads(meta.read_text()).get("epoch", 0)
    return None


class TrainingDiverged(UserError):
    """The loss became NaN or infinite: bad input of a kind (a learning rate, the data's scale)."""


def fit(model, train_ds, val_ds, *, config, run_dir, loss, metrics, monitor="val_loss",
        mode="min", n_train, quiet=False, resume=False, class_weight=None, placement=None,
        epoch_scores=None):
    """Train ``model`` in place (one or two phases) and return timing figures.

    ``loss``/``metrics`` come from the task, and so does ``epoch_scores`` (a function ``model ->
    {name: value}`` logged as ``val_NAME`` after each epoch). The weights of the best epoch by
    ``monitor`` are loaded back at the end. Under a distributed ``placement`` the optimizer is
    built in the strategy's scope and ``fit`` trains :func:`pipelines.distribute.fitting_model`'s
    twin."""
    from pipelines import distribute
    from pipelines.transfer import settle_fine_tuning

    config = settle_fine_tuning(config)  # a configuration made without resolve_config: its phases
    placement = placement or distribute.Placement(None, "default")
    trained = distribute.fitting_model(model, placement)
    lr_factor = placement.lr_factor(config.lr_scaling)
    steps = max(1, math.ceil(n_train / config.batch_size))
    tensorboard_dir = Path(run_dir) / "logs" if config.tensorboard else None
    phases = [("train", 0, config.epochs, config.frozen_lr_scale if config.freeze_backbone else 1.0,
               not config.freeze_backbone)]
    if config.fine_tune_epochs:
        phases.append(("fine_tune", config.epochs, config.epochs + config.fine_tune_epochs,
                       config.fine_tune_lr_scale, True))
    batch_norm = config.fine_tune_batch_norm != "frozen"
    start, epochs_run, guard = time.perf_counter(), 0, DivergenceGuard()
    for index, (phase, first, last, lr_scale, backbone_trainable) in enumerate(phases):
        done_marker = Path(run_dir) / BACKUP_DIR / f"{phase}.done"
        if resume and done_marker.exists():
            continue  # this phase finished before the interruption
        set_backbone_trainable(model, backbone_trainable, batch_norm=batch_norm or phase == "train")
        if resume:  # drop history rows past the restored epoch (all of them if none was saved)
            _trim_history(run_dir, _restored_epoch(run_dir, phase) or first)
        with _scope(placement):
            trained.compile(optimizer=make_optimizer(config, steps_per_epoch=steps, epochs=last - first,
                                                     lr_scale=lr_scale * lr_factor),
                            loss=loss, metrics=metrics, jit_compile=config.jit_compile)
            if placement.multi_worker:  # its variables must be the strategy's, made here
                trained.optimizer.build(trained.trainable_variables)
            history = trained.fit(
                train_ds, validation_data=val_ds, epochs=last, initial_epoch=first,
                verbose=0 if quiet else (1 if sys.stdout.isatty() else 2), class_weight=class_weight,
                callbacks=_callbacks(config, run_dir, phase, monitor=monitor, mode=mode,
                                     resume_history=resume or index > 0,
                                     tensorboard_dir=tensorboard_dir, guard=guard,
                                     epoch_scores=epoch_scores))
        epochs_run += len(history.epoch)
        if guard.diverged_at is not None:
            epoch = guard.diverged_at
            saved = (Path(run_dir) / BEST_WEIGHTS).is_file()
            kept = _best_epoch(run_dir, monitor, mode) if saved else -1
            raise TrainingDiverged(
                f"training diverged: the loss became NaN or infinite in epoch {epoch + 1}; "
                + (f"the best weights so far (epoch {kept + 1}) are in "
                   f"{Path(run_dir) / CHECKPOINTS_DIR}; " if kept >= 0 else "")
                + "try a lower --learning-rate")
        done_marker.parent.mkdir(parents=True, exist_ok=True)
        done_marker.touch()
    seconds = time.perf_counter() - start
    best = Path(run_dir) / BEST_WEIGHTS
    if config.restore_best and best.is_file():
        model.load_weights(best)
    return FitResult(epochs=epochs_run, seconds=seconds,
                     samples_per_second=n_train * max(epochs_run, 1) / max(seconds, 1e-9),
                     best_epoch=_best_epoch(run_dir, monitor, mode), monitor=monitor)


def _scope(placement):
    import contextlib

    return placement.strategy.scope() if placement.distributed else contextlib.nullcontext()


def _best_row(run_dir, monitor, mode):
    """The history row with the best ``monitor`` value, or None."""
    path = Path(run_dir) / HISTORY_FILE
    if not path.is_file():
        return None
    with path.open(newline="") as handle:
        rows = [r for r in csv.DictReader(handle)
                if r.get(monitor) not in (None, "") and math.isfinite(float(r[monitor]))]
    if not rows:
        return None
    pick = min if mode == "min" else max
    return pick(rows, key=lambda r: float(r[monitor]))


def _best_epoch(run_dir, monitor, mode):
    row = _best_row(run_dir, monitor, mode)
    return -1 if row is None else int(row["epoch"])


def _best_value(run_dir, monitor, mode):
    """The best ``monitor`` value in the history so far (None: no epoch yet), for a phase's
    checkpoint to beat; only when the best weights file it belongs to exists."""
    row = _best_row(run_dir, monitor, mode)
    return None if row is None or not (Path(run_dir) / BEST_WEIGHTS).is_file() else float(row[monitor])


def read_history(run_dir):
    import pandas as pd

    path = Path(run_dir) / HISTORY_FILE
    return pd.read_csv(path) if path.is_file() and path.stat().st_size else pd.DataFrame()
