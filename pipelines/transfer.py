"""Backbone export and import: ``backbone.weights.h5`` + ``backbone.json`` feed any task.

Weights are copied layer by layer by name, so another input size works unchanged (convolution
kernels are size-free) and a grayscale <-> RGB change adapts the first convolution (kernels summed
over RGB, or replicated / 3). A text task with its own vocabulary takes the source's embedding
row of every token both vocabularies share. Any other shape mismatch names the layer.
"""

import json
from pathlib import Path

import numpy as np

from pipelines import runs
from pipelines.backbones import BACKBONE_LAYER_NAME, BACKBONES, create_backbone
from pipelines.errors import UserError

WEIGHTS_FILE = "backbone.weights.h5"
META_FILE = "backbone.json"


def backbone_meta(config, input_shape, run_dir=None, arguments=None):
    entry = BACKBONES.entry(config.backbone)
    return {"name": config.backbone, "modality": entry.meta["modality"],
            "input_shape": list(input_shape),
            "options": builder_options(config, arguments),
            "run_dir": str(run_dir) if run_dir else None}


def save_backbone(model, run_dir, meta):
    backbone = model.get_layer(BACKBONE_LAYER_NAME)
    runs.save_weights(backbone, Path(run_dir) / WEIGHTS_FILE)
    runs.write_json(Path(run_dir) / META_FILE, meta)


def source_run_meta(run_dir):
    run_dir = Path(run_dir)
    if not (run_dir / WEIGHTS_FILE).is_file() or not (run_dir / META_FILE).is_file():
        raise UserError(f"--backbone-from {run_dir}: no {WEIGHTS_FILE} + {META_FILE} there "
                        f"(is it a finished cnn-tasks run?)")
    return runs.read_json(run_dir / META_FILE)


def builder_options(config, arguments=None):
    """The backbone builder's keyword arguments: the user's options, then the data's arguments.

    A task's default ``backbone_options`` are tuned for its default backbone (basic_cnn widths,
    batch norm); with another backbone and options left at that default, none are passed."""
    options = config.backbone_options
    defaults = type(config)()
    if config.backbone != defaults.backbone and options == defaults.backbone_options:
        options = {}
    return {**options, **(arguments or {})}


def build_backbone(config, input_shape, modality, arguments=None, vocabulary=None):
    """The task's backbone: fresh, from ``--backbone-from RUN_DIR`` or ``--backbone-weights FILE``.

    Returns (backbone, lineage dict or None). With ``backbone_from`` the source run's
    architecture and options win over ``config.backbone``. ``arguments`` are builder arguments
    that come from the data (a text vocabulary size) and win over ``backbone_options``. With a
    ``vocabulary`` (text), embedding rows are matched by token with the source run's vocabulary;
    the lineage counts how many were carried over.
    """
    if config.backbone_from:
        meta = source_run_meta(config.backbone_from)
        if meta["modality"] != modality:
            raise UserError(f"--backbone-from {config.backbone_from}: that run holds a "
                            f"{meta['modality']} backbone ({meta['name']}); this task needs "
                            f"a {modality} backbone")
        config.backbone, config.backbone_options = meta["name"], dict(meta.get("options") or {})
        target = create_backbone(meta["name"], input_shape, **builder_options(config, arguments))
        source = create_backbone(meta["name"], tuple(meta["input_shape"]), **config.backbone_options)
        _load_exact(source, Path(config.backbone_from) / WEIGHTS_FILE)
        rows = _vocabulary_rows(config.backbone_from, vocabulary)
        copy_weights(source, target, where=config.backbone_from, rows=rows)
        origin = lineage(config.backbone_from)
        if rows is not None:
            origin["vocabulary"] = {"matched": int(len(rows[0])), "new": int(len(vocabulary) - len(rows[0]))}
        return target, origin
    entry = BACKBONES.entry(config.backbone)
    if entry.meta["modality"] != modality:
        raise UserError(f"--backbone {config.backbone} is a {entry.meta['modality']} backbone; "
                        f"this task needs a {modality} backbone "
                        f"({', '.join(n for n in BACKBONES.names() if BACKBONES.entry(n).meta['modality'] == modality)})")
    backbone = create_backbone(config.backbone, input_shape, **builder_options(config, arguments))
    if config.backbone_weights:
        _load_exact(backbone, Path(config.backbone_weights))
    return backbone, None


def _load_exact(backbone, path):
    if not path.is_file():
        raise UserError(f"{path}: no such weights file")
    if not path.name.endswith(".weights.h5"):
        raise UserError(f"{path}: expected a Keras .weights.h5 file")
    try:
        backbone.load_weights(str(path))
    except (ValueError, KeyError, OSError) as error:
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise UserError(f"{path}: does not fit backbone {backbone.name!r}: {first}") from None


def _vocabulary_rows(run_dir, vocabulary):
    """(target rows, source rows) of the tokens both vocabularies hold, or None without one."""
    from pipelines.tokenizer import VOCABULARY_FILE, read_vocabulary

    path = Path(run_dir) / "assets" / VOCABULARY_FILE
    if vocabulary is None or not path.is_file():
        return None

    source = {token: i for i, token in enumerate(read_vocabulary(path))}
    pairs = [(i, source[token]) for i, token in enumerate(vocabulary) if token in source]
    return np.array([p[0] for p in pairs], int), np.array([p[1] for p in pairs], int)


def copy_weights(source, target, *, where, rows=None):
    """Copy weights layer by layer (same names), adapting 1<->3 input channels; else name the layer.

    ``rows`` = (target rows, source rows): an embedding table whose vocabulary differs takes the
    source's row for every shared token and keeps its fresh initialisation for the others."""
    for layer in target.layers:
        if not layer.weights:
            continue
        try:
            src = source.get_layer(layer.name)
        except ValueError:
            raise UserError(f"{where}: the source backbone has no layer {layer.name!r}") from None
        values = []
        for have, want in zip(src.get_weights(), layer.get_weights()):
            if have.shape != want.shape and rows is not None and have.ndim == 2 \
                    and have.shape[1] == want.shape[1]:
                (mine, theirs), mapped = rows, want.copy()
                mapped[mine] = have[theirs]
                have = mapped
            elif have.shape != want.shape:
                have = _adapt_channels(have, want.shape, layer.name, where)
            values.append(have)
        layer.set_weights(values)


def _adapt_channels(kernel, shape, name, where):
    """A conv kernel (kh, kw, c_in, c_out) from 3 channels to 1 (sum) or 1 to 3 (replicate / 3)."""
    if kernel.ndim == 4 and kernel.shape[:2] == shape[:2] and kernel.shape[3] == shape[3]:
        if kernel.shape[2] == 3 and shape[2] == 1:
            return kernel.sum(axis=2, keepdims=True)
        if kernel.shape[2] == 1 and shape[2] == 3:
            return np.repeat(kernel, 3, axis=2) / 3.0
    raise UserError(f"{where}: layer {name!r} has shape {kernel.shape} in the source backbone but "
                    f"{tuple(shape)} here")


def lineage(run_dir):
    """Where a reused backbone came from: run, task, data and its test metrics."""
    run_dir = Path(run_dir)
    info = {"run_dir": str(run_dir)}
    try:
        config = json.loads((run_dir / runs.CONFIG_FILE).read_text())
        info.update(task=config.get("task"), data=config.get("config", {}).get("data"))
    except (OSError, json.JSONDecodeError):
        pass
    try:
        info["metrics"] = json.loads((run_dir / runs.METRICS_FILE).read_text()).get("metrics")
    except (OSError, json.JSONDecodeError):
        pass
    return info
