"""Flat configuration dataclasses, resolved as defaults < TOML file < ``--set`` < explicit flags.

Each task subclasses :class:`TrainConfig` with its own fields (one flat dataclass, no hierarchy).
Values are validated once here: unknown keys, wrong types and out-of-range values raise
:class:`UserError` naming the key and where it came from.
"""

import dataclasses
import tomllib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path

from pipelines.distribute import STRATEGIES
from pipelines.errors import UserError
from pipelines.inputs import CACHE_MODES


def option(default, *, help="", choices=None, minimum=None, maximum=None, exclusive_min=False):
    """A dataclass field carrying its validation rules and one line of help."""
    meta = {"help": help, "choices": choices, "minimum": minimum, "maximum": maximum,
            "exclusive_min": exclusive_min}
    if isinstance(default, (dict, list)):
        return field(default_factory=lambda: type(default)(default), metadata=meta)
    return field(default=default, metadata=meta)


@dataclass
class TrainConfig:
    """Fields shared by every task. Tasks override defaults by redeclaring a field."""

    data: str = option("", help="dataset: a path or builtin:NAME")
    backbone: str = option("basic_cnn", help="registered backbone name")
    backbone_options: dict = option({}, help="keyword arguments for the backbone builder")
    backbone_from: typing.Optional[str] = option(None, help="run directory whose backbone to reuse")
    backbone_weights: typing.Optional[str] = option(
        None, help="a local .weights.h5 for the backbone, or imagenet: the backbone's own pretrained "
                   "weights (cnn-tasks backbones lists them); none: random (a task's default may be "
                   "imagenet)")
    freeze_backbone: typing.Optional[bool] = option(
        None, help="train the head only (batch norm in inference mode); default: on with pretrained "
                   "(imagenet) weights, as the head's warm-up, else off")
    frozen_lr_scale: float = option(1.0, minimum=0, exclusive_min=True,
                                    help="learning-rate factor while the backbone is frozen")
    fine_tune_epochs: typing.Optional[int] = option(
        None, minimum=0, help="epochs after unfreezing the backbone; default: with pretrained weights "
                              "and no other choice, epochs split 1:4 into head warm-up and fine-tuning, "
                              "else 0")
    fine_tune_batch_norm: typing.Optional[str] = option(
        None, choices=(None, "frozen", "trainable"),
        help="the backbone's batch norm while fine-tuning: frozen (inference mode, its statistics "
             "kept) or trainable; default: frozen with pretrained weights, else trainable")
    fine_tune_lr_scale: typing.Optional[float] = option(
        None, minimum=0, exclusive_min=True,
        help="learning-rate factor for fine-tuning; default: 1 with pretrained weights (after the "
             "head's warm-up, measured best on pneumoniamnist), else 0.1")
    epochs: int = option(30, minimum=1, help="training epochs")
    batch_size: int = option(32, minimum=1, help="examples per step")
    learning_rate: float = option(1e-3, minimum=0, exclusive_min=True, help="peak learning rate")
    optimizer: str = option("adam", choices=("adam", "adamw", "sgd"), help="optimizer")
    weight_decay: float = option(0.0, minimum=0, help="decoupled weight decay (adamw)")
    lr_schedule: str = option("cosine", choices=("cosine", "plateau", "constant"),
                              help="learning-rate schedule")
    restore_best: bool = option(True, help="end with the best validation epoch's weights "
                                "(false: keep the last epoch's)")
    early_stopping_patience: int = option(0, minimum=0, help="epochs without improvement; 0 = off")
    class_weight: typing.Optional[str] = option(None, choices=(None, "balanced"),
                                                help="'balanced' weights classes by inverse frequency")
    seed: int = option(0, help="seed for splits, initialisation and shuffling")
    test_fraction: float = option(0.2, minimum=0, maximum=0.9, exclusive_min=True,
                                  help="held-out test share when the data has no split")
    val_fraction: float = option(0.1, minimum=0, maximum=0.9, exclusive_min=True,
                                 help="validation share of the training part")
    train_fraction: float = option(1.0, minimum=0, maximum=1, exclusive_min=True,
                                   help="share of the training and validation examples used "
                                        "(stratified); the test split is unchanged")
    cache: str = option("auto", choices=CACHE_MODES,
                        help="keep decoded inputs in memory, on disk (RUN_DIR/cache, removed at the "
                             "end) or nowhere; auto: memory unless files read lazily exceed 2 GiB")
    jit_compile: bool = option(False, help="XLA-compile the train step (see benchmarks/RESULTS.md)")
    precision: str = option("float32", choices=("float32", "mixed_bfloat16"),
                            help="layers compute in bfloat16 with float32 weights and outputs "
                                 "(faster convolutions on CPUs with AVX512-BF16 or AMX)")
    backup_interval_s: float = option(30.0, minimum=0,
                                      help="seconds between resumable backups; 0 = every epoch")
    tensorboard: bool = option(False, help="write TensorBoard logs to RUN_DIR/logs")
    strategy: str = option("auto", choices=STRATEGIES,
                           help="tf.distribute strategy (docs/scaling.md); batch_size is global")
    lr_scaling: str = option("none", choices=("none", "linear"),
                             help="learning rate x replicas under a distributed strategy (linear)")
    output: str = option("saved_models", help="root folder for run directories")


def _type_name(tp):
    """A type as a user reads it: int, list, "str or none" (not typing's Optional[...])."""
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        named = " or ".join(_type_name(a) for a in args)
        return f"{named} or none" if len(args) < len(typing.get_args(tp)) else named
    return getattr(tp, "__name__", str(tp))


def _coerce(key, value, tp, source):
    """Convert a TOML/flag value to the field's declared type, or explain what was expected."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if value is None or (isinstance(value, str) and value.lower() in ("none", "null", "")):
            return None
        return _coerce(key, value, args[0], source)
    bad = UserError(f"{source}: {key} must be {_type_name(tp)}, got {value!r}")
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "1", "0", "yes", "no"):
            return value.lower() in ("true", "1", "yes")
        raise bad
    if tp is int:
        if isinstance(value, bool):
            raise bad
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise bad
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise bad
        return float(value)
    if tp is str:
        if isinstance(value, (dict, list)):
            raise bad
        return str(value)
    if tp is dict:
        if not isinstance(value, dict):
            raise bad
        return dict(value)
    if tp is list or origin is list:
        if not isinstance(value, (list, tuple)):
            raise bad
        return list(value)
    return value


def _check_range(key, value, meta, source):
    if value is None:
        if meta.get("choices") and None not in meta["choices"]:
            raise UserError(f"{source}: {key} must be one of {list(meta['choices'])}")
        return
    choices = meta.get("choices")
    if choices and value not in choices:
        shown = ", ".join(repr(c) for c in choices if c is not None)
        raise UserError(f"{source}: {key}={value!r} is not one of {shown}")
    low, high = meta.get("minimum"), meta.get("maximum")
    if low is not None and (value < low or (meta.get("exclusive_min") and value == low)):
        relation = ">" if meta.get("exclusive_min") else ">="
        raise UserError(f"{source}: {key} must be {relation} {low}, got {value!r}")
    if high is not None and value > high:
        raise UserError(f"{source}: {key} must be <= {high}, got {value!r}")


def parse_value(text):
    """Parse a ``--set`` value as a TOML value (numbers, booleans, lists, strings), else a string."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def parse_set(items):
    """Turn repeated ``KEY=VALUE`` strings into a dict; ``a.b=v`` sets key b of dict field a."""
    result = {}
    for item in items or ():
        if "=" not in item:
            raise UserError(f"--set {item!r}: expected KEY=VALUE")
        key, text = item.split("=", 1)
        key = key.strip()
        if not key:
            raise UserError(f"--set {item!r}: empty key")
        value = parse_value(text.strip())
        if "." in key:
            outer, inner = key.split(".", 1)
            result.setdefault(outer, {})
            if not isinstance(result[outer], dict):
                raise UserError(f"--set {item!r}: {outer} is set twice with different shapes")
            result[outer][inner] = value
        else:
            result[key] = value
    return result


def read_toml(path):
    path = Path(path)
    if not path.is_file():
        raise UserError(f"--config {path}: no such file")
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except tomllib.TOMLDecodeError as error:
        raise UserError(f"--config {path}: invalid TOML ({error})") from None
    except UnicodeDecodeError:
        raise UserError(f"--config {path}: not UTF-8 text") from None


def resolve(config_cls, *, toml=None, sets=None, flags=None, base=None):
    """Build a validated config: defaults (or ``base``) < toml < sets < flags (None flags ignored).

    ``toml`` is a path or a dict; ``sets`` a dict from :func:`parse_set`; ``flags`` a dict of
    explicit command-line values. Unknown keys in any layer are errors naming the key.
    """
    hints = typing.get_type_hints(config_cls)
    fields = {f.name: f for f in dataclasses.fields(config_cls)}
    values = dict(base) if base else {f: getattr(config_cls(), f) for f in fields}
    layers = []
    if toml is not None:
        layers.append((read_toml(toml) if not isinstance(toml, dict) else toml,
                       f"config file {toml}" if not isinstance(toml, dict) else "config"))
    if sets:
        layers.append((sets, "--set"))
    if flags:
        layers.append(({k: v for k, v in flags.items() if v is not None}, "option"))
    chosen = [layer["backbone"] for layer, _ in layers if layer.get("backbone") is not None]
    if base is None and chosen and not same_builder(chosen[-1], values["backbone"]):
        values["backbone_options"] = {}  # the task's default options belong to its default backbone
    for layer, source in layers:
        for key, value in layer.items():
            if key not in fields:
                close = [k for k in fields if k.startswith(key[:3])]
                hint = f" (did you mean {close[0]}?)" if close else ""
                raise UserError(f"{source}: unknown key {key!r}{hint}; "
                                f"see `cnn-tasks tasks --options` for the list")
            label = f"--{key.replace('_', '-')}" if source == "option" else source
            coerced = _coerce(key, value, hints[key], label)
            if hints[key] is dict and source == "--set":
                coerced = {**values.get(key, {}), **coerced}
            _check_range(key, coerced, fields[key].metadata, label)
            values[key] = coerced
    return config_cls(**values)


def same_builder(chosen, default):
    """True for the default backbone itself and for its 2D/3D twin (one builder, the same
    arguments), whose options then still apply."""
    if chosen == default:
        return True
    from pipelines.backbones import BACKBONES
    from pipelines.backbones.base import twin

    if chosen not in BACKBONES.names() or default not in BACKBONES.names():
        return False
    return chosen in (twin(default, 2), twin(default, 3))


def to_dict(config):
    return dataclasses.asdict(config)


def describe(config_cls):
    """(name, type, default, help) rows for documentation and `cnn-tasks tasks --options`."""
    hints = typing.get_type_hints(config_cls)
    rows = []
    for f in dataclasses.fields(config_cls):
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        rows.append((f.name, _type_name(hints[f.name]), default, f.metadata.get("help", "")))
    return rows
