"""Pretrained weights converted once into a backbone's own layers and cached where Keras caches.

``$KERAS_HOME/models/cnn_tasks/NAME[_OPTIONS]_SPEC_SHA12.weights.h5`` holds the backbone built at
the weights' input size (loadable with ``backbone.load_weights``), and ``..._top.npz`` beside it
the ImageNet classifier where the source has one. Both are written atomically; the source
file's sha256 is part of the name, so another release is converted again, never mixed up.
"""

from pathlib import Path

import numpy as np

from pipelines import runs
from pipelines.errors import UserError
from pipelines.weights.declarations import pretrained_of
from pipelines.weights.sources import keras_home, sha256_of

CACHE_SUBDIR = Path("models") / "cnn_tasks"


def _stem(name, spec, options, sha):
    suffix = "".join(f"_{k}{v}" for k, v in sorted((options or {}).items()))
    return f"{name}{suffix}_{spec}_{sha[:12]}"


def cached_weights(name, spec, options=None, flag=None):
    """(backbone weights file, record) of backbone ``name``'s ``spec`` weights, converting them
    on first use. The record says what was loaded: origin, files, sha256 and preprocessing."""
    flag = flag or f"--backbone-weights {spec}"
    pretrained = pretrained_of(name, spec, options, flag)
    origin = pretrained.source.fetch(flag)
    sha = sha256_of(origin)
    folder = keras_home() / CACHE_SUBDIR
    weights = folder / f"{_stem(name, spec, options, sha)}.weights.h5"
    top = folder / f"{_stem(name, spec, options, sha)}_top.npz"
    if not weights.is_file():
        _convert(name, options, pretrained, origin, weights, top)
    record = {"spec": spec, "backbone": name, "options": dict(options or {}), **pretrained.record(),
              "file": str(origin), "sha256": sha, "cache": str(weights),
              "top": str(top) if top.is_file() else None}
    return weights, record


def _convert(name, options, pretrained, origin, weights, top):
    from pipelines.backbones import create_backbone

    converted = pretrained.source.layer_weights(origin)
    backbone = create_backbone(name, pretrained.input_size, **(options or {}))
    missing = [layer.name for layer in backbone.layers if layer.weights and layer.name not in converted]
    if missing:
        raise UserError(f"{origin}: holds no weights for layer(s) {', '.join(missing[:4])} of backbone "
                        f"{name!r}; it is not this architecture's file")
    for layer in backbone.layers:
        if layer.weights:
            values = converted[layer.name]
            shapes = [tuple(w.shape) for w in layer.get_weights()]
            if [tuple(np.shape(v)) for v in values] != shapes:
                raise UserError(f"{origin}: layer {layer.name!r} has weights of "
                                f"{[np.shape(v) for v in values]}, the backbone {shapes}")
            layer.set_weights(values)
    weights.parent.mkdir(parents=True, exist_ok=True)
    partial = weights.with_name(weights.name + ".partial.weights.h5")
    backbone.save_weights(str(partial))
    partial.replace(weights)
    if pretrained.classes and "predictions" in converted:
        kernel, bias = converted["predictions"]
        runs.write_bytes(top, _npz_bytes(kernel=kernel, bias=bias))


def _npz_bytes(**arrays):
    import io

    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def imagenet_classifier(name, spec="imagenet", options=None):
    """Backbone ``name`` with its pretrained ImageNet top (global pooling + the 1000-way softmax),
    at the weights' input size: the check that a conversion is right (a coffee photo is
    "espresso"). UserError when the source has no top."""
    import keras

    from pipelines.backbones import create_backbone, deepest_level

    weights, record = cached_weights(name, spec, options)
    if not record["top"]:
        raise UserError(f"backbone {name!r}: its {spec} weights come without a classifier top")
    with np.load(record["top"], allow_pickle=False) as top:
        kernel, bias = top["kernel"], top["bias"]
    backbone = create_backbone(name, tuple(record["input_size"]), **(options or {}))
    backbone.load_weights(str(weights))
    features = backbone.output[deepest_level(backbone)]
    pooled = keras.layers.GlobalAveragePooling2D()(features)
    dense = keras.layers.Dense(kernel.shape[1], activation="softmax", name="predictions")
    model = keras.Model(backbone.input, dense(pooled))
    dense.set_weights([kernel, bias])
    return model


def describe(record):
    """One line for a report: what the backbone's weights are and where they came from."""
    if "preset" in record:
        return (f"{record['spec']}: KerasHub {record['class']} (levels {', '.join(record['levels'])}); "
                f"preprocessing {record['preprocessing']}")
    return (f"{record['spec']}: {record['description']}; {record['origin']} (sha256 "
            f"{record['sha256'][:12]}...), {record['licence']}; preprocessing {record['preprocessing']}")
