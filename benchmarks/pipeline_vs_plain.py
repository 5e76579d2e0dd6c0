"""Training time of `cnn-tasks train image-classification` (defaults) over the plain Keras script.

Alternates the two, REPEATS times each, and prints the medians and their ratio (goal: <= 1.10).
Each measurement is training time only (model.fit with its callbacks), not data loading or the
report. Run by hand: python benchmarks/pipeline_vs_plain.py [REPEATS]
"""

import json
import statistics
from pathlib import Path
import sys
import tempfile
import warnings

warnings.filterwarnings("ignore")

import plain_keras_digits  # noqa: E402

from pipelines import training, workflow  # noqa: E402


def pipeline_seconds(output, epochs=None, task="image-classification", metric="accuracy", curve=None,
                     curve_metric="val_accuracy", sets=None):
    """Train the task's default (with ``sets``) under ``output``; returns (training seconds, test
    ``metric``). ``curve``, a list, receives (seconds, ``curve_metric``) per epoch from the run's
    history.csv."""
    task = workflow.get_task(task)
    config = workflow.resolve_config(task, sets={**(sets or {}), "output": output,
                                                 **({"epochs": epochs} if epochs else {})})
    run_dir = workflow.train(task.name, config=config, quiet=True, echo=lambda *_: None)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    if curve is not None:
        history = training.read_history(run_dir)
        curve.extend(zip(history["seconds"].astype(float), history[curve_metric].astype(float)))
    return metrics["train"]["seconds"], metrics["metrics"][metric]


PRETRAINED_SETS = {"data": str(Path(__file__).resolve().parents[2] / "shared" / "datasets" / "pneumoniamnist"),
                   "backbone": "efficientnet_lite0", "backbone_weights": "imagenet", "image_size": 64, "epochs": 20}


def check_same_pretrained_defaults(config):
    """The pretrained twin (plain_keras_pretrained.py) restates the fine-tuning recipe the task
    settles for ImageNet Lite0 at 64 px, and finds the converted weights in Keras' cache."""
    import plain_keras_pretrained as plain

    from pipelines.weights.cache import cached_weights

    cached_weights("efficientnet_lite0", "imagenet")  # converted once, before any timing
    warmup = plain.warmup_epochs(plain.EPOCHS)
    twin = {"epochs": warmup, "fine_tune_epochs": plain.EPOCHS - warmup, "batch_size": plain.BATCH,
            "learning_rate": plain.LR, "augment_shift": plain.SHIFT, "frozen_lr_scale": plain.HEAD_LR_SCALE,
            "fine_tune_lr_scale": plain.FINE_TUNE_LR_SCALE, "head_dropout": plain.DROPOUT,
            "image_size": plain.SIZE, "fine_tune_batch_norm": "frozen", "freeze_backbone": True}
    _exit_if_drifted("plain_keras_pretrained.py", twin, {key: getattr(config, key) for key in twin})


def check_same_detection_defaults(config):
    """The detection twin (plain_keras_detection.py) restates object-detection's defaults on
    builtin:bccd, including the anchor size the task chooses from the BCCD training boxes."""
    import plain_keras_detection as plain

    from pipelines import config as config_lib
    from pipelines import workflow
    from pipelines.weights.cache import cached_weights

    cached_weights("efficientnet_lite0", "imagenet")  # converted once, before any timing
    task_entry = workflow.get_task("object-detection")
    dataset = task_entry.load(config.data, config)
    info = task_entry.fit_preprocessing(dataset.subset(dataset.made_splits["train"]), config, 32)
    warmup = max(1, round(plain.EPOCHS * plain.WARMUP_SHARE))
    settled = workflow.resolve_config(task_entry, base=config_lib.to_dict(config))
    task = {"data": config.data, "backbone": (settled.backbone, settled.backbone_weights), "epochs": settled.epochs,
            "fine_tune_epochs": settled.fine_tune_epochs, "batch_size": settled.batch_size,
            "learning_rate": settled.learning_rate, "fine_tune": (settled.fine_tune_lr_scale,
                                                                   settled.fine_tune_batch_norm, settled.frozen_lr_scale),
            "size": (info.height, info.width), "anchors": (info.anchors["anchor_size"], info.anchors["min_level"],
                                                          info.anchors["max_level"], info.anchors["num_scales"],
                                                          tuple(info.anchors["aspect_ratios"])),
            "heads": (settled.fpn_width, settled.head_depth, settled.head_norm), "focal": (settled.focal_alpha,
                                                                                        settled.focal_gamma),
            "matching": (settled.positive_iou, settled.negative_iou, settled.box_weight),
            "augmentation": (settled.augment_flip, tuple(settled.scale_jitter)), "optimizer": (
                settled.optimizer, settled.lr_schedule, settled.restore_best)}
    twin = {"data": "builtin:bccd", "backbone": ("efficientnet_lite0", "imagenet"), "epochs": warmup,
            "fine_tune_epochs": plain.EPOCHS - warmup, "batch_size": plain.BATCH, "learning_rate": plain.LR,
            "fine_tune": (plain.FINE_TUNE_LR_SCALE, "frozen", 1.0), "size": (plain.HEIGHT, plain.WIDTH),
            "anchors": (plain.ANCHOR_SIZE, plain.LEVELS[0], plain.LEVELS[1], plain.SCALES, tuple(plain.RATIOS)),
            "heads": (plain.FPN, plain.DEPTH, True), "focal": (plain.ALPHA, plain.GAMMA), "matching": (0.5, 0.4, 1.0),
            "augmentation": ("both", tuple(plain.JITTER)), "optimizer": ("adam", "cosine", True)}
    _exit_if_drifted("plain_keras_detection.py", twin, task)


def check_same_defaults(config):
    """The plain script restates the task defaults; a drifted copy would time another model."""
    plain = {"epochs": plain_keras_digits.EPOCHS, "batch_size": plain_keras_digits.BATCH,
             "learning_rate": plain_keras_digits.LR, "augment_shift": plain_keras_digits.SHIFT}
    _exit_if_drifted("plain_keras_digits.py", plain, {key: getattr(config, key) for key in plain})


def check_same_text_defaults(config):
    """The text twin (plain_keras_text.py) restates text-classification's defaults on SMS spam."""
    import inspect

    import pandas as pd
    import plain_keras_text as plain

    from pipelines.backbones.text_cnn import text_cnn
    from tasks.text_classification.task import epochs_for

    builder = {k: v.default for k, v in inspect.signature(text_cnn).parameters.items()
               if v.default is not inspect.Parameter.empty}
    n_train = int(len(pd.read_csv(plain.DATA)) * 0.8 * 0.9)  # the training split's size, about
    task = {"epochs": config.epochs or epochs_for(n_train, config.batch_size), "batch_size": config.batch_size,
            "learning_rate": config.learning_rate, "vocabulary_size": config.vocabulary_size,
            "backbone": config.backbone, "embedding_dim": builder["embedding_dim"],
            "windows": tuple(builder["windows"]), "filters": builder["filters"],
            "dropout": builder["dropout"], "word_dropout": builder["word_dropout"],
            "head_hidden": config.head_hidden, "class_weight": config.class_weight}
    twin = {"epochs": plain.EPOCHS, "batch_size": plain.BATCH, "learning_rate": plain.LR,
            "vocabulary_size": plain.VOCABULARY, "backbone": "text_cnn", "embedding_dim": plain.EMBEDDING,
            "windows": tuple(plain.WINDOWS), "filters": plain.FILTERS, "dropout": plain.DROPOUT,
            "word_dropout": plain.WORD_DROPOUT, "head_hidden": 0, "class_weight": None}
    _exit_if_drifted("plain_keras_text.py", twin, task)


def check_same_steering_defaults(config):
    """The steering twin (plain_keras_steering.py) restates steering's defaults."""
    import inspect

    import plain_keras_steering as plain

    from pipelines.backbones.pilotnet import FILTERS, pilotnet

    builder = {k: v.default for k, v in inspect.signature(pilotnet).parameters.items()
               if v.default is not inspect.Parameter.empty}
    task = {"epochs": config.epochs, "batch_size": config.batch_size, "learning_rate": config.learning_rate,
            "val_fraction": config.val_fraction, "backbone": config.backbone, "convolutions": FILTERS,
            "backbone_options": {**builder, **config.backbone_options}, "head_units": tuple(config.head_units),
            "head_pool": config.head_pool, "head_dropout": config.head_dropout, "loss": config.loss,
            "augmentation": (config.augment, config.augment_flip, config.augment_brightness, config.augment_shift),
            "frames": (config.channels, config.crop_top, config.crop_bottom, config.image_height,
                       config.image_width, config.side_cameras),
            "optimizer": (config.optimizer, config.lr_schedule, config.restore_best)}
    twin = {"epochs": plain.EPOCHS, "batch_size": plain.BATCH, "learning_rate": plain.LR,
            "val_fraction": plain.VAL_FRACTION, "backbone": "pilotnet", "convolutions": plain.CONVOLUTIONS,
            "backbone_options": {"width": 1.0, "batch_norm": False, "dropout": 0.0}, "head_units": plain.UNITS,
            "head_pool": "flatten", "head_dropout": 0.0, "loss": "mse", "augmentation": (True, True, 0.0, 0.0),
            "frames": (3, 0.0, 0.0, None, None, False), "optimizer": ("adam", "cosine", True)}
    _exit_if_drifted("plain_keras_steering.py", twin, task)


def check_same_segmentation_defaults(config):
    """The segmentation twin (plain_keras_segmentation.py) restates medical-segmentation's 2D
    defaults on the shipped hippocampus volumes."""
    import plain_keras_segmentation as plain

    from pipelines import workflow

    config = workflow.get_task("medical-segmentation").settle(config)  # the mode's own defaults filled in
    task = {"data": config.data, "spatial_dims": config.spatial_dims, "epochs": config.epochs,
            "batch_size": config.batch_size, "learning_rate": config.learning_rate,
            "optimizer": (config.optimizer, config.lr_schedule, config.restore_best),
            "splits": (config.test_fraction, config.val_fraction, config.train_fraction, config.seed),
            "backbone": (config.backbone, config.backbone_options), "decoder_width": config.decoder_width,
            "slices": (config.image_size, config.slice_axis, config.empty_slice_fraction, config.tiling),
            "intensities": config.normalization, "loss": (config.dice_weight, config.ce_weight,
                                                          config.loss_class_weights),
            "augmentation and test-time flips": (bool(config.augment), config.test_time_flips)}
    twin = {"data": "builtin:hippocampus", "spatial_dims": 2, "epochs": plain.EPOCHS, "batch_size": plain.BATCH,
            "learning_rate": plain.LR, "optimizer": ("adam", "cosine", True),
            "splits": (plain.TEST_FRACTION, plain.VAL_FRACTION, 1.0, plain.SEED),
            "backbone": ("basic_cnn", {"batch_norm": True, "widths": list(plain.WIDTHS)}),
            "decoder_width": plain.DECODER_WIDTH,
            "slices": (plain.SIZE, plain.SLICE_AXIS, plain.EMPTY_SLICE_FRACTION, "auto"),
            "intensities": "zscore", "loss": (1.0, 1.0, None), "augmentation and test-time flips": (False, False)}
    _exit_if_drifted("plain_keras_segmentation.py", twin, task)


def check_same_volume_defaults(config):
    """The volume twin (plain_keras_volumes.py) restates volume-classification's defaults on its
    built-in generated volumes."""
    import plain_keras_volumes as plain

    task = {"data": config.data, "epochs": config.epochs, "batch_size": config.batch_size,
            "learning_rate": config.learning_rate,
            "optimizer": (config.optimizer, config.lr_schedule, config.restore_best),
            "splits": (config.test_fraction, config.val_fraction, config.train_fraction, config.seed),
            "backbone": (config.backbone, config.backbone_options),
            "head": (config.head_dropout, config.head_norm, config.class_weight),
            "intensities": (config.intensity, config.window, config.volume_size),
            "augmentation": (config.augment, config.augment_flip, config.augment_shift,
                             config.augment_intensity, config.augment_rotate),
            "test_time_flips": config.test_time_flips}
    twin = {"data": "builtin:shapes3d", "epochs": plain.EPOCHS, "batch_size": plain.BATCH, "learning_rate": plain.LR,
            "optimizer": ("adam", "cosine", True), "splits": (plain.TEST_FRACTION, plain.VAL_FRACTION, 1.0, plain.SEED),
            "backbone": ("basic_cnn3d", {"batch_norm": True, "widths": list(plain.WIDTHS)}),
            "head": (plain.DROPOUT, None, None), "intensities": ("auto", None, None),
            "augmentation": (True, True, plain.SHIFT, plain.JITTER, plain.DEGREES), "test_time_flips": True}
    _exit_if_drifted("plain_keras_volumes.py", twin, task)


def check_same_captioning_defaults(config):
    """The captioning twin (plain_keras_captioning.py) restates captioning's defaults on
    builtin:shapes."""
    import plain_keras_captioning as plain

    task = {"data": config.data, "epochs": config.epochs, "batch_size": config.batch_size,
            "learning_rate": config.learning_rate,
            "optimizer": (config.optimizer, config.lr_schedule, config.restore_best),
            "splits": (config.test_fraction, config.val_fraction, config.train_fraction, config.seed),
            "backbone": (config.backbone, config.backbone_options, config.feature_level),
            "decoder": (config.rnn, config.embedding_dim, config.units, config.attention_units,
                        config.feature_dim, config.dropout),
            "words": (config.min_count, config.max_length), "image_size": config.image_size}
    twin = {"data": "builtin:shapes", "epochs": plain.EPOCHS, "batch_size": plain.BATCH, "learning_rate": plain.LR,
            "optimizer": ("adam", "cosine", True), "splits": (plain.TEST_FRACTION, plain.VAL_FRACTION, 1.0, plain.SEED),
            "backbone": ("basic_cnn", {"batch_norm": True, "widths": list(plain.WIDTHS)}, "auto"),
            "decoder": ("gru", plain.EMBEDDING, plain.UNITS, plain.ATTENTION, plain.FEATURE_DIM, plain.DROPOUT),
            "words": (plain.MIN_COUNT, plain.MAX_LENGTH), "image_size": None}
    _exit_if_drifted("plain_keras_captioning.py", twin, task)


def _exit_if_drifted(script, twin, task):
    """Exit naming every setting where the twin's copy differs from the task's default."""
    drifted = [f"{key}: plain {twin[key]}, task {task[key]}" for key in twin if twin[key] != task[key]]
    if drifted:
        sys.exit(f"{script} no longer matches the task defaults (" + "; ".join(drifted) + ")")


def main(repeats=3):
    config = workflow.get_task("image-classification").Config()
    check_same_defaults(config)
    batch_norm = config.backbone_options["batch_norm"]
    plain, pipe = [], []
    with tempfile.TemporaryDirectory() as output:
        for _ in range(repeats):
            plain.append(plain_keras_digits.main(batch_norm=batch_norm, verbose=0))
            pipe.append(pipeline_seconds(output))
            print(f"plain {plain[-1][0]:.1f} s (acc {plain[-1][1]:.4f})   "
                  f"pipeline {pipe[-1][0]:.1f} s (acc {pipe[-1][1]:.4f})", flush=True)
    p, q = statistics.median(s for s, _ in plain), statistics.median(s for s, _ in pipe)
    print(f"| plain Keras | {p:.1f} s |\n| cnn-tasks pipeline | {q:.1f} s |\n| ratio | {q / p:.3f} |")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 3)
