"""ResNet-18 (He et al. 2016): basic residual blocks with batch norm, built from Keras layers."""

import keras
from keras import layers

from pipelines.backbones.base import make_backbone, register_backbone


def basic_block(x, width, stride, name):
    shortcut = x
    y = layers.Conv2D(width, 3, strides=stride, padding="same", use_bias=False, name=f"{name}_conv1")(x)
    y = layers.BatchNormalization(name=f"{name}_bn1")(y)
    y = layers.ReLU(name=f"{name}_relu1")(y)
    y = layers.Conv2D(width, 3, padding="same", use_bias=False, name=f"{name}_conv2")(y)
    y = layers.BatchNormalization(name=f"{name}_bn2")(y)
    if stride != 1 or shortcut.shape[-1] != width:
        shortcut = layers.Conv2D(width, 1, strides=stride, use_bias=False, name=f"{name}_proj")(x)
        shortcut = layers.BatchNormalization(name=f"{name}_proj_bn")(shortcut)
    y = layers.Add(name=f"{name}_add")([y, shortcut])
    return layers.ReLU(name=f"{name}_out")(y)


@register_backbone("resnet18", modality="image", min_size=32,
                   note="ResNet-18: 7x7/2 stem, max pool, 4 stages of 2 basic blocks, width multiplier")
def resnet18(input_shape, width=1.0, blocks=(2, 2, 2, 2)):
    inputs = keras.Input(input_shape, name="image")
    widths = [max(4, int(w * width)) for w in (64, 128, 256, 512)]
    x = layers.Conv2D(widths[0], 7, strides=2, padding="same", use_bias=False, name="stem_conv")(inputs)
    x = layers.BatchNormalization(name="stem_bn")(x)
    x = layers.ReLU(name="stem_relu")(x)
    pyramid = {"P1": x}
    x = layers.MaxPooling2D(3, strides=2, padding="same", name="stem_pool")(x)
    for stage, (w, n) in enumerate(zip(widths, blocks)):
        for b in range(n):
            stride = 2 if (b == 0 and stage > 0) else 1
            x = basic_block(x, w, stride, name=f"stage{stage + 1}_block{b + 1}")
        pyramid[f"P{stage + 2}"] = x
    return make_backbone(inputs, pyramid)
