"""The textbook convolutional stacks: conv 3x3 + ReLU, then 2x2 pooling with stride 2, per stage;
in 2D for images and 3D for volumes (conv 3x3x3, pooling 2x2x2), written once."""

import math

import keras
from keras import layers

from pipelines.backbones.base import make_backbone, register_backbone
from pipelines.backbones.spatial import layer, spatial_dims_of


def conv_stage(x, width, convs, *, batch_norm, name):
    conv = layer("conv", spatial_dims_of(x.shape[1:]))
    for i in range(convs):
        x = conv(width, 3, padding="same", use_bias=not batch_norm, name=f"{name}_conv{i + 1}")(x)
        if batch_norm:
            # momentum 0.9: moving statistics keep up on small datasets (Keras' 0.99 lags for
            # hundreds of steps, and validation collapses to one class meanwhile).
            x = layers.BatchNormalization(momentum=0.9, name=f"{name}_bn{i + 1}")(x)
        x = layers.ReLU(name=f"{name}_relu{i + 1}")(x)
    return x


def pool(x, kind, name, size=2):
    pooling = layer("max_pool" if kind == "max" else "average_pool", spatial_dims_of(x.shape[1:]))
    return pooling(size, strides=size, padding="same", name=name)(x)


def stage_pool_sizes(pool_sizes, stages, dims):
    """One pool size per axis for each stage: 2 everywhere by default; ``pool_sizes`` gives per
    stage an int or one size per axis, each 1 or 2 (e.g. ``[[1, 2, 2], 2, 2]`` keeps a thin
    volume's depth in the first stage)."""
    if pool_sizes is None:
        return [(2,) * dims] * stages
    if len(pool_sizes) != stages:
        raise TypeError(f"pool_sizes argument needs one entry per stage ({stages}), got {pool_sizes!r}")
    sizes = [tuple([int(p)] * dims) if isinstance(p, int) else tuple(int(v) for v in p) for p in pool_sizes]
    if any(len(size) != dims or not set(size) <= {1, 2} for size in sizes):
        raise TypeError(f"pool_sizes argument: each stage pools by 1 or 2 along each of the {dims} "
                        f"axes, got {pool_sizes!r}")
    return sizes


def basic_cnn_min_shape(spatial_dims, widths=(32, 64, 128), pool_sizes=None, **_):
    """Each axis at least its total stride (1 pixel at the deepest level): 8 for three stages of
    2x2 pooling, less along an axis that some stages leave alone."""
    sizes = stage_pool_sizes(pool_sizes, len(widths), spatial_dims)
    return tuple(math.prod(size[axis] for size in sizes) for axis in range(spatial_dims))


@register_backbone("basic_cnn", modality="image", min_size=8, min_shape=basic_cnn_min_shape,
                   note="[conv3x3-ReLU]xN + 2x2 pool per stage; widths/depth/pool configurable")
def basic_cnn(input_shape, widths=(32, 64, 128), convs_per_stage=2, pool_type="max",
              batch_norm=False, pool_sizes=None):
    """The classic LeNet/VGG-style stack; ``pool_type`` is ``"max"`` or ``"average"``. The input's
    rank decides 2D or 3D (``basic_cnn3d`` below is the same function); ``pool_sizes`` (see
    :func:`stage_pool_sizes`) makes the strides anisotropic."""
    if pool_type not in ("max", "average"):
        raise TypeError(f"pool_type argument must be 'max' or 'average', got {pool_type!r}")
    dims = spatial_dims_of(input_shape)
    inputs = keras.Input(input_shape, name="image")
    x, pyramid, strides, stride = inputs, {}, {}, (1,) * dims
    for k, (width, size) in enumerate(zip(widths, stage_pool_sizes(pool_sizes, len(widths), dims)), start=1):
        x = conv_stage(x, int(width), int(convs_per_stage), batch_norm=batch_norm, name=f"stage{k}")
        x = pool(x, pool_type, name=f"stage{k}_pool", size=size)
        stride = tuple(s * p for s, p in zip(stride, size))
        pyramid[f"P{k}"], strides[f"P{k}"] = x, stride
    return make_backbone(inputs, pyramid, strides=strides)


@register_backbone("vgg_small", modality="image", min_size=16,
                   note="VGG-style: 4 stages of 2 conv3x3-BN-ReLU + max pool, width multiplier")
def vgg_small(input_shape, width=1.0, widths=(32, 64, 128, 256), convs_per_stage=2):
    inputs = keras.Input(input_shape, name="image")
    x, pyramid = inputs, {}
    for k, base in enumerate(widths, start=1):
        x = conv_stage(x, max(4, int(base * width)), int(convs_per_stage), batch_norm=True,
                       name=f"stage{k}")
        x = pool(x, "max", name=f"stage{k}_pool")
        pyramid[f"P{k}"] = x
    return make_backbone(inputs, pyramid)


register_backbone("basic_cnn3d", modality="image", spatial_dims=3, min_size=8, inflates="basic_cnn",
                  min_shape=basic_cnn_min_shape,
                  note="basic_cnn on volumes: [conv3x3x3-ReLU]xN + 2x2x2 pool per stage")(basic_cnn)
