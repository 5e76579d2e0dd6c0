"""ResNet-18 (He et al. 2016): basic residual blocks with batch norm, built from Keras layers; in
2D for images and 3D for volumes (``resnet18_3d``, as MONAI's ResNet with ``spatial_dims=3``)."""

import keras
from keras import layers

from pipelines.backbones.base import make_backbone, register_backbone
from pipelines.backbones.spatial import layer, spatial_dims_of


def basic_block(x, width, stride, name):
    conv = layer("conv", spatial_dims_of(x.shape[1:]))
    shortcut = x
    y = conv(width, 3, strides=stride, padding="same", use_bias=False, name=f"{name}_conv1")(x)
    y = layers.BatchNormalization(name=f"{name}_bn1")(y)
    y = layers.ReLU(name=f"{name}_relu1")(y)
    y = conv(width, 3, padding="same", use_bias=False, name=f"{name}_conv2")(y)
    y = layers.BatchNormalization(name=f"{name}_bn2")(y)
    if stride != 1 or shortcut.shape[-1] != width:
        shortcut = conv(width, 1, strides=stride, use_bias=False, name=f"{name}_proj")(x)
        shortcut = layers.BatchNormalization(name=f"{name}_proj_bn")(shortcut)
    y = layers.Add(name=f"{name}_add")([y, shortcut])
    return layers.ReLU(name=f"{name}_out")(y)


@register_backbone("resnet18", modality="image", min_size=32,
                   note="ResNet-18: 7x7/2 stem, max pool, 4 stages of 2 basic blocks, width multiplier")
def resnet18(input_shape, width=1.0, blocks=(2, 2, 2, 2)):
    """The input's rank decides 2D or 3D (``resnet18_3d`` below is the same function)."""
    dims = spatial_dims_of(input_shape)
    inputs = keras.Input(input_shape, name="image")
    widths = [max(4, int(w * width)) for w in (64, 128, 256, 512)]
    x = layer("conv", dims)(widths[0], 7, strides=2, padding="same", use_bias=False, name="stem_conv")(inputs)
    x = layers.BatchNormalization(name="stem_bn")(x)
    x = layers.ReLU(name="stem_relu")(x)
    pyramid = {"P1": x}
    x = layer("max_pool", dims)(3, strides=2, padding="same", name="stem_pool")(x)
    for stage, (w, n) in enumerate(zip(widths, blocks)):
        for b in range(n):
            stride = 2 if (b == 0 and stage > 0) else 1
            x = basic_block(x, w, stride, name=f"stage{stage + 1}_block{b + 1}")
        pyramid[f"P{stage + 2}"] = x
    return make_backbone(inputs, pyramid)


register_backbone("resnet18_3d", modality="image", spatial_dims=3, min_size=16, inflates="resnet18",
                  note="ResNet-18 on volumes: 7x7x7/2 stem, 3D basic blocks, width multiplier")(resnet18)
