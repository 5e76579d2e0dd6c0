"""Backbone export and import: ``backbone.weights.h5`` + ``backbone.json`` feed any task.

Weights are copied layer by layer by name, so another input size works unchanged (convolution
kernels are size-free) and a grayscale <-> RGB change adapts the first convolution (kernels summed
over RGB, or replicated / 3). A text task with its own vocabulary takes the source's embedding
row of every token both vocabularies share. A 2D backbone starts its 3D twin (the registry entry
says which it ``inflates``): each 2D kernel is repeated along depth and divided by the depth, as
I3D inflates ImageNet networks (Carreira & Zisserman 2017), so a volume of identical slices gets
the 2D response. Any other shape mismatch names the layer.
"""

import dataclasses
import json
import typing
from pathlib import Path

import numpy as np

from pipelines import runs
from pipelines.backbones import BACKBONE_LAYER_NAME, BACKBONES, create_backbone
from pipelines.backbones.text_cnn import EMBEDDING_LAYER_NAME
from pipelines.errors import UserError
from pipelines.tokenizer import VOCABULARY_FILE, read_vocabulary
from pipelines.weights.declarations import is_pretrained_spec

WEIGHTS_FILE = "backbone.weights.h5"
META_FILE = "backbone.json"


def backbone_meta(config, input_shape, run_dir=None, arguments=None):
    entry = BACKBONES.entry(config.backbone)
    return {"name": config.backbone, "modality": entry.meta["modality"],
            "spatial_dims": entry.meta["spatial_dims"], "input_shape": list(input_shape),
            "options": builder_options(config, arguments),
            "run_dir": str(run_dir) if run_dir else None}


def save_backbone(model, run_dir, meta):
    """backbone.weights.h5, and backbone.json: ``meta`` plus each level's strides per axis."""
    from pipelines.backbones.base import level_strides

    backbone = model.get_layer(BACKBONE_LAYER_NAME)
    runs.save_weights(backbone, Path(run_dir) / WEIGHTS_FILE)
    strides = level_strides(backbone)  # None or {} for text backbones
    runs.write_json(Path(run_dir) / META_FILE, {**meta, **({"strides": strides} if strides else {})})


def builder_options(config, arguments=None):
    """The backbone builder's keyword arguments: the user's options, then the data's arguments.

    A task's default ``backbone_options`` are tuned for its default backbone (basic_cnn widths,
    batch norm) and its 2D/3D twin (one builder); with another backbone and options left at that
    default, none are passed."""
    from pipelines.config import same_builder

    options = config.backbone_options
    defaults = type(config)()
    if not same_builder(config.backbone, defaults.backbone) and options == defaults.backbone_options:
        options = {}
    return {**options, **(arguments or {})}


@dataclasses.dataclass
class Source:
    """A trained backbone to start from: its weights, its ``backbone.json`` and where it came from."""

    flag: str  # how the user named it, for messages: "--backbone-from RUN" / "--backbone-weights FILE"
    weights: Path
    meta: dict
    vocabulary: typing.Optional[Path]  # the source's token list (text backbones), if known
    lineage: dict


def _beside(weights_path, suffix):
    """``X.weights.h5`` -> ``X<suffix>``: a file that travels with a weights file."""
    weights_path = Path(weights_path)
    return weights_path.with_name(weights_path.name[:-len(".weights.h5")] + suffix)


def sidecar(weights_path):
    """``X.weights.h5`` -> ``X.json``: the architecture file beside a weights file (a run's
    ``backbone.weights.h5`` has ``backbone.json``; ``export-backbone`` writes the same pair)."""
    return _beside(weights_path, ".json")


def _vocabulary_beside(weights_path):
    """The token list of a text backbone: ``X.vocabulary.txt`` (exported) or the run's assets."""
    in_run = Path(weights_path).parent / "assets" / VOCABULARY_FILE
    return next((p for p in (_beside(weights_path, ".vocabulary.txt"), in_run) if p.is_file()), None)


def _require_backbone_files(run_dir, where, hint):
    if not (run_dir / WEIGHTS_FILE).is_file() or not (run_dir / META_FILE).is_file():
        raise UserError(f"{where}: no {WEIGHTS_FILE} + {META_FILE} there ({hint})")


def find_source(config):
    """The Source named by ``backbone_from`` (a run) or ``backbone_weights`` (a file with its
    ``.json`` beside it); None for a fresh backbone or a bare weights file."""
    if config.backbone_from and config.backbone_weights:
        raise UserError("give either --backbone-from RUN_DIR or --backbone-weights FILE, not both")
    if config.backbone_from:
        run_dir = Path(config.backbone_from)
        flag = f"--backbone-from {run_dir}"
        _require_backbone_files(run_dir, flag, "is it a finished cnn-tasks run?")
        return Source(flag, run_dir / WEIGHTS_FILE, runs.read_json(run_dir / META_FILE),
                      _vocabulary_beside(run_dir / WEIGHTS_FILE), lineage(run_dir))
    if is_pretrained_spec(config.backbone_weights):
        return pretrained_source(config)
    if config.backbone_weights:
        path = Path(config.backbone_weights)
        _check_weights_file(path)
        if not sidecar(path).is_file():
            return None
        meta = runs.read_json(sidecar(path))
        origin = lineage(meta["run_dir"]) if meta.get("run_dir") else {"run_dir": None}
        return Source(f"--backbone-weights {path}", path, meta, _vocabulary_beside(path),
                      {**origin, "weights_file": str(path)})
    return None


def pretrained_source(config):
    """The Source of ``--backbone-weights imagenet``: the registry entry's declared weights,
    converted once into its own layers (:mod:`pipelines.weights.cache`), at the size they were
    trained at; :func:`build_backbone` copies them into the task's input shape and channels."""
    from pipelines.weights.cache import cached_weights
    from pipelines.weights.declarations import KERAS_HUB_PREFIX

    spec, name = config.backbone_weights, config.backbone
    if spec.startswith(KERAS_HUB_PREFIX):
        return _keras_hub_source(spec, spec[len(KERAS_HUB_PREFIX):])
    entry = BACKBONES.entry(name)
    if entry.meta.get("inflates") and not entry.meta.get("pretrained"):
        # a 3D entry takes its 2D twin's weights, inflated as a 2D run's would be (I3D)
        name, entry = entry.meta["inflates"], BACKBONES.entry(entry.meta["inflates"])
    options = builder_options(config)
    weights, record = cached_weights(name, spec, options, flag=f"--backbone-weights {spec}")
    meta = {"name": name, "modality": entry.meta["modality"], "spatial_dims": entry.meta["spatial_dims"],
            "input_shape": record["input_size"], "options": options}
    return Source(f"--backbone-weights {spec}", weights, meta, None, {"run_dir": None, "weights": record})


WARMUP_SHARE = 0.2  # of the epochs, the head's warm-up on a frozen pretrained backbone
# After the warm-up, fine-tuning ImageNet Lite0 at the full (cosine-decayed) learning rate beat 0.3
# and 0.1 of it on pneumoniamnist (test accuracy 0.94 / 0.915 / 0.885 at 100 %, 0.875 / 0.80 at
# 10 % of the labels; benchmarks/RESULTS.md)
PRETRAINED_FINE_TUNE_LR_SCALE = 1.0


def settle_fine_tuning(config):
    """The configuration with the fine-tuning recipe made concrete (idempotent). With pretrained
    weights (``imagenet``) and nothing chosen, as the Keras transfer-learning guide and KerasHub
    do it: the head warms up on the frozen backbone (batch norm in inference mode) for a fifth of
    ``epochs``, then the whole network fine-tunes for the rest at ``fine_tune_lr_scale`` (1) times
    the learning rate with the backbone's batch norm still frozen. Otherwise nothing is frozen and
    a fine-tuning phase, if asked for, runs at 0.1 times the learning rate."""
    pretrained = is_pretrained_spec(config.backbone_weights)
    freeze = pretrained if config.freeze_backbone is None else bool(config.freeze_backbone)
    changes = {"freeze_backbone": freeze}
    if config.fine_tune_epochs is None:
        if pretrained and freeze and config.freeze_backbone is None and config.epochs and config.epochs > 1:
            warmup = max(1, round(config.epochs * WARMUP_SHARE))
            changes.update(epochs=warmup, fine_tune_epochs=config.epochs - warmup)
        else:
            changes["fine_tune_epochs"] = 0
    if config.fine_tune_batch_norm is None:
        changes["fine_tune_batch_norm"] = "frozen" if pretrained else "trainable"
    if config.fine_tune_lr_scale is None:
        changes["fine_tune_lr_scale"] = PRETRAINED_FINE_TUNE_LR_SCALE if pretrained else 0.1
    return dataclasses.replace(config, **changes)


def _keras_hub_source(spec, preset):
    """A KerasHub preset's backbone: checked now (before any data is read), built with its
    weights by the ``keras_hub`` registry entry (Source.weights is None: nothing to copy)."""
    from pipelines.backbones.hub import load_preset, preset_scaling

    hub, scaling = load_preset(preset, load_weights=False), preset_scaling(preset)
    record = {"spec": spec, "backbone": "keras_hub", "preset": preset, "class": type(hub).__name__,
              "levels": sorted(hub.pyramid_outputs), "image_converter": scaling,
              "preprocessing": "the preset's image converter scaling (scale, offset on 0..255), in "
                               "the backbone" if scaling else "none (the preset ships no image converter)"}
    meta = {"name": "keras_hub", "modality": "image", "spatial_dims": 2, "input_shape": None,
            "options": {"preset": preset}}
    return Source(f"--backbone-weights {spec}", None, meta, None, {"run_dir": None, "weights": record})


def _a(word):
    return f"{'an' if word[0] in 'aeiou' else 'a'} {word}"


def resolve_source(config, modality):
    """Check the backbone against the task before any data is read, and adopt a source's
    architecture. Returns the Source or None.

    A source's architecture and options win over the task's defaults; naming another
    ``--backbone`` with it is a mismatch (exit 2), as is a backbone of another modality."""
    source = find_source(config)
    if source is None:
        name = config.backbone
        have = BACKBONES.entry(name).meta["modality"]
        if have != modality:
            fits = ", ".join(n for n in BACKBONES.names() if BACKBONES.entry(n).meta["modality"] == modality)
            raise UserError(f"--backbone {name} is {_a(have)} backbone; this task needs "
                            f"{_a(modality)} backbone ({fits})")
        if config.backbone_weights and have == "image":
            _check_bare_file(Path(config.backbone_weights), name, builder_options(config))
        return None
    meta = source.meta
    if meta["modality"] != modality:
        raise UserError(f"{source.flag}: that holds {_a(meta['modality'])} backbone ({meta['name']}, "
                        f"from {source.lineage.get('task') or 'an unknown task'}); this task needs "
                        f"{_a(modality)} backbone")
    BACKBONES.entry(meta["name"])  # a name this version does not know is an error, not a crash
    if BACKBONES.entry(config.backbone).meta.get("inflates") == meta["name"]:
        config.backbone_options = dict(meta.get("options") or {})  # the 3D twin of the source
        return source
    if config.backbone not in (type(config)().backbone, meta["name"]):
        raise UserError(f"{source.flag}: that holds {_a(meta['name'])} backbone, but --backbone asks "
                        f"for {config.backbone}; leave --backbone out to reuse {meta['name']}")
    config.backbone, config.backbone_options = meta["name"], dict(meta.get("options") or {})
    return source


def build_backbone(config, input_shape, source=None, arguments=None, vocabulary=None):
    """The task's backbone: fresh, from a Source (see :func:`resolve_source`) or a bare weights file.

    Returns (backbone, lineage dict or None). ``arguments`` are builder arguments that come from
    the data (a text vocabulary size) and win over ``backbone_options``. With a ``vocabulary``
    (text), embedding rows are matched by token with the source's vocabulary; the lineage counts
    how many were carried over.
    """
    target = create_backbone(config.backbone, input_shape, **builder_options(config, arguments))
    if source is None:
        if config.backbone_weights:
            _load_exact(target, Path(config.backbone_weights), config.backbone)
        return target, None
    if source.weights is None:  # the builder loaded them itself (a KerasHub preset)
        return target, dict(source.lineage)
    built = create_backbone(source.meta["name"], tuple(source.meta["input_shape"]),
                           **(source.meta.get("options") or {}))
    _load_exact(built, source.weights)
    rows = _vocabulary_rows(source.vocabulary, vocabulary)
    copy_weights(built, target, where=source.flag, rows=rows)
    origin = dict(source.lineage)
    if source.meta["name"] != config.backbone:
        origin["inflated"] = {"from": source.meta["name"], "to": config.backbone,
                              "how": "2D kernels repeated along depth / depth (I3D)"}
    if rows is not None:
        origin["vocabulary"] = {"matched": int(len(rows[0])), "new": int(len(vocabulary) - len(rows[0]))}
    return target, origin


def _check_bare_file(path, name, options):
    """A weights file without its ``.json`` must fit backbone ``name`` (with one input channel or
    three; kernels do not depend on the input size): checked before any run folder exists."""
    from pipelines.backbones.base import min_shape

    entry = BACKBONES.entry(name)
    spatial = min_shape(name, entry.meta["spatial_dims"], options)
    error = None
    for channels in (3, 1):
        try:
            _load_exact(create_backbone(name, (*spatial, channels), **options), path, name)
            return
        except UserError as refused:
            error = error or refused
    raise error


def _check_weights_file(path):
    if not path.is_file():
        raise UserError(f"{path}: no such weights file")
    if not path.name.endswith(".weights.h5"):
        raise UserError(f"{path}: expected a Keras .weights.h5 file")


def _load_exact(backbone, path, name=None):
    _check_weights_file(path)
    try:
        backbone.load_weights(str(path))
    except (ValueError, KeyError, OSError) as error:
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise UserError(f"{path}: does not fit backbone {name or backbone.name!r}: {first}") from None


def _vocabulary_rows(path, vocabulary):
    """(target rows, source rows) of the tokens both vocabularies hold, or None without both."""
    if vocabulary is None or path is None:
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
            if rows is not None and layer.name == EMBEDDING_LAYER_NAME and have.ndim == 2 \
                    and have.shape[1] == want.shape[1]:  # by token, even when the sizes agree
                (mine, theirs), mapped = rows, want.copy()
                mapped[mine] = have[theirs]
                have = mapped
            elif have.shape != want.shape:
                if have.ndim == 4 and want.ndim == 5 and have.shape[-1] == 1 and want.shape[-2] == 1:
                    have = have.transpose(0, 1, 3, 2)  # depthwise (kh, kw, c, 1) as grouped (kh, kw, 1, c)
                if have.ndim + 1 == want.ndim and have.shape[:-2] == want.shape[1:-2]:
                    have = inflate(have, want.shape[0])
                if have.shape != want.shape:
                    have = _adapt_channels(have, want.shape, layer.name, where)
            values.append(have)
        layer.set_weights(values)


def inflate(kernel, depth):
    """A 2D conv kernel (kh, kw, c_in, c_out) as a 3D one (depth, kh, kw, c_in, c_out): repeated
    along depth and divided by it, so a volume of identical slices gets the 2D response."""
    return np.repeat(kernel[None], depth, axis=0) / float(depth)


def _adapt_channels(kernel, shape, name, where):
    """A conv kernel (..., c_in, c_out) from 3 channels to 1 (sum) or 1 to 3 (replicate / 3)."""
    if kernel.ndim in (4, 5) and kernel.ndim == len(shape) and kernel.shape[:-2] == tuple(shape[:-2]) \
            and kernel.shape[-1] == shape[-1]:
        if kernel.shape[-2] == 3 and shape[-2] == 1:
            return kernel.sum(axis=-2, keepdims=True)
        if kernel.shape[-2] == 1 and shape[-2] == 3:
            return np.repeat(kernel, 3, axis=-2) / 3.0
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


def export_backbone(run_dir, out):
    """Copy a finished run's backbone to ``out`` (``*.weights.h5``) with its ``.json`` beside it
    (and, for text, ``.vocabulary.txt``), so ``--backbone-weights out`` rebuilds it with lineage.

    Nothing is overwritten; every file is written atomically. Returns the paths written."""
    run_dir, _ = runs.open_run(run_dir)
    out = Path(out)
    if not out.name.endswith(".weights.h5"):
        raise UserError(f"--out {out}: the file name must end with .weights.h5 (Keras' weights format)")
    _require_backbone_files(run_dir, run_dir, "the run predates backbone export")
    meta = runs.read_json(run_dir / META_FILE)
    vocabulary = _vocabulary_beside(run_dir / WEIGHTS_FILE) if meta["modality"] == "text" else None
    targets = [out, sidecar(out)] + ([_beside(out, ".vocabulary.txt")] if vocabulary else [])
    taken = [str(p) for p in targets if p.exists()]
    if taken:
        raise UserError(f"--out {out}: {', '.join(taken)} already exist{'s' if len(taken) == 1 else ''}; "
                        f"choose another name")
    if not out.parent.is_dir():
        raise UserError(f"--out {out}: no such folder {out.parent}")
    runs.write_bytes(out, (run_dir / WEIGHTS_FILE).read_bytes())
    runs.write_json(sidecar(out), {**meta, "run_dir": str(run_dir.resolve())})
    if vocabulary:
        runs.write_bytes(targets[2], vocabulary.read_bytes())
    return targets
