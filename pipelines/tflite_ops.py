"""A model rewritten with TFLite's builtin ops where Keras uses ops TFLite lacks, in float32.

TFLite has Conv3D but no 3D pooling kernel: MaxPool3D and AvgPool3D are TF Select ops, which the
LiteRT wheel cannot run. For a TFLite export, each 2x2x2 3D pooling layer is swapped for an exact
equivalent of builtin ops: 2D pooling of every depth slice, then the max (or mean) of each pair
of slices (an odd depth repeats its last slice, which is what "same" padding gives for both
kinds). Training and the .keras file keep Keras' own layers, which oneDNN runs fastest.
"""

import keras


class DepthSlicedPooling3D(keras.layers.Layer):
    """2x2x2 pooling (stride 2, "same" padding) out of 2D pooling and a reduction over depth."""

    def __init__(self, kind, **kwargs):
        super().__init__(**kwargs)
        self.kind = kind
        pool = keras.layers.MaxPooling2D if kind == "max" else keras.layers.AveragePooling2D
        self.pool2d = pool(2, strides=2, padding="same")

    def call(self, x):
        ops = keras.ops
        depth, height, width, channels = x.shape[1:]
        pooled = self.pool2d(ops.reshape(x, (-1, height, width, channels)))
        out_h, out_w = pooled.shape[1:3]
        pooled = ops.reshape(pooled, (-1, depth, out_h * out_w, channels))
        if depth % 2:
            pooled = ops.concatenate([pooled, pooled[:, -1:]], axis=1)
        pairs = ops.reshape(pooled, (-1, (depth + 1) // 2, 2, out_h * out_w, channels))
        reduced = ops.max(pairs, axis=2) if self.kind == "max" else ops.mean(pairs, axis=2)
        return ops.reshape(reduced, (-1, (depth + 1) // 2, out_h, out_w, channels))

    def compute_output_shape(self, input_shape):
        return (input_shape[0],) + tuple(None if s is None else (s + 1) // 2 for s in input_shape[1:4]) + input_shape[4:]


def _replacement(layer):
    """The builtin-op twin of a 3D pooling layer, or None when the layer can stay."""
    kinds = {keras.layers.MaxPooling3D: "max", keras.layers.AveragePooling3D: "average"}
    kind = kinds.get(type(layer))
    if kind is None:
        return None
    config = layer.get_config()
    if (tuple(config["pool_size"]) != (2, 2, 2) or tuple(config["strides"]) != (2, 2, 2)
            or config["padding"] != "same"):
        raise ValueError(f"layer {layer.name}: only 2x2x2 pooling with stride 2 and 'same' padding "
                         f"has a TFLite rewrite")
    return DepthSlicedPooling3D(kind, name=layer.name)


def _bfloat16(layer):
    return getattr(layer, "compute_dtype", "float32") == "bfloat16"


def for_tflite(model):
    """``model`` itself, or a clone (same weights) whose 3D pooling uses TFLite builtin ops and
    whose layers compute in float32 (a ``mixed_bfloat16`` run's layers included: TFLite's float
    kernels are float32)."""
    if not any(_replacement(layer) or _bfloat16(layer) for layer in _all_layers(model)):
        return model

    def clone(layer):
        replacement = _replacement(layer)
        if replacement is not None:
            return replacement
        config = layer.get_config()
        if _bfloat16(layer):
            config["dtype"] = "float32"
        return layer.__class__.from_config(config)

    twin = keras.models.clone_model(model, clone_function=clone, recursive=True)
    twin.set_weights(model.get_weights())
    return twin


def _all_layers(model):
    for layer in model.layers:
        yield layer
        if isinstance(layer, keras.Model):
            yield from _all_layers(layer)
