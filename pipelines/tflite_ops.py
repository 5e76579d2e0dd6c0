"""A model rewritten with TFLite's builtin ops where Keras uses ops TFLite lacks, in float32.

TFLite has Conv3D but no 3D pooling kernel: MaxPool3D and AvgPool3D are TF Select ops, which the
LiteRT wheel cannot run. For a TFLite export, each 3D pooling layer (2x2x2, or 1x2x2 and the like
where a backbone pools anisotropically) is swapped for an exact equivalent of builtin ops: 2D
pooling of every depth slice, then the max (or mean) of each pair of slices (an odd depth
repeats its last slice, which is what "same" padding gives for both kinds). Training and the .keras file keep Keras' own layers, which oneDNN runs fastest.
"""

import keras


class DepthSlicedPooling3D(keras.layers.Layer):
    """3D pooling with pool size = strides of 1 or 2 per axis and "same" padding, out of 2D
    pooling of each depth slice and a reduction over pairs of slices."""

    def __init__(self, kind, pool_size=(2, 2, 2), **kwargs):
        super().__init__(**kwargs)
        self.kind, self.pool_size = kind, tuple(int(p) for p in pool_size)
        pool = keras.layers.MaxPooling2D if kind == "max" else keras.layers.AveragePooling2D
        self.pool2d = pool(self.pool_size[1:], strides=self.pool_size[1:], padding="same")

    def call(self, x):
        ops = keras.ops
        depth, height, width, channels = x.shape[1:]
        pooled = self.pool2d(ops.reshape(x, (-1, height, width, channels)))
        out_h, out_w = pooled.shape[1:3]
        pooled = ops.reshape(pooled, (-1, depth, out_h * out_w, channels))
        if self.pool_size[0] == 2:
            if depth % 2:
                pooled = ops.concatenate([pooled, pooled[:, -1:]], axis=1)
            depth = (depth + 1) // 2
            pairs = ops.reshape(pooled, (-1, depth, 2, out_h * out_w, channels))
            pooled = ops.max(pairs, axis=2) if self.kind == "max" else ops.mean(pairs, axis=2)
        return ops.reshape(pooled, (-1, depth, out_h, out_w, channels))

    def compute_output_shape(self, input_shape):
        spatial = tuple(None if s is None else -(-s // p) for s, p in zip(input_shape[1:4], self.pool_size))
        return (input_shape[0],) + spatial + tuple(input_shape[4:])


def _replacement(layer):
    """The builtin-op twin of a 3D pooling layer, or None when the layer can stay."""
    kinds = {keras.layers.MaxPooling3D: "max", keras.layers.AveragePooling3D: "average"}
    kind = kinds.get(type(layer))
    if kind is None:
        return None
    config = layer.get_config()
    size = tuple(config["pool_size"])
    if size != tuple(config["strides"]) or not set(size) <= {1, 2} or config["padding"] != "same":
        raise ValueError(f"layer {layer.name}: only pooling by 1 or 2 per axis, strides equal to the "
                         f"pool size and 'same' padding have a TFLite rewrite")
    return DepthSlicedPooling3D(kind, size, name=layer.name)


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
