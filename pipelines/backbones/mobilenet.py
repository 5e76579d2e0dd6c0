"""MobileNetV2 (Sandler et al. 2018): inverted residuals of depthwise-separable convolutions."""

import keras
from keras import layers

from pipelines.backbones.base import make_backbone, register_backbone

# (expansion t, channels c, repeats n, first stride s), as in the paper's Table 2.
SETTINGS = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1),
            (6, 160, 3, 2), (6, 320, 1, 1))


def make_divisible(value, divisor=8):
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * value else rounded


def inverted_residual(x, expansion, width, stride, name):
    channels = x.shape[-1]
    y = x
    if expansion != 1:
        y = layers.Conv2D(channels * expansion, 1, use_bias=False, name=f"{name}_expand")(y)
        y = layers.BatchNormalization(name=f"{name}_expand_bn")(y)
        y = layers.ReLU(6.0, name=f"{name}_expand_relu")(y)
    y = layers.DepthwiseConv2D(3, strides=stride, padding="same", use_bias=False, name=f"{name}_dw")(y)
    y = layers.BatchNormalization(name=f"{name}_dw_bn")(y)
    y = layers.ReLU(6.0, name=f"{name}_dw_relu")(y)
    y = layers.Conv2D(width, 1, use_bias=False, name=f"{name}_project")(y)
    y = layers.BatchNormalization(name=f"{name}_project_bn")(y)
    if stride == 1 and channels == width:
        y = layers.Add(name=f"{name}_add")([x, y])
    return y


@register_backbone("mobilenet_v2", modality="image", min_size=32,
                   note="MobileNetV2: inverted residuals, depthwise-separable convs, width multiplier")
def mobilenet_v2(input_shape, width=1.0):
    inputs = keras.Input(input_shape, name="image")
    x = layers.Conv2D(make_divisible(32 * width), 3, strides=2, padding="same", use_bias=False,
                      name="stem_conv")(inputs)
    x = layers.BatchNormalization(name="stem_bn")(x)
    x = layers.ReLU(6.0, name="stem_relu")(x)
    pyramid, stride_so_far, block = {}, 2, 0
    for t, c, n, s in SETTINGS:
        for i in range(n):
            stride = s if i == 0 else 1
            x = inverted_residual(x, t, make_divisible(c * width), stride, name=f"block{block}")
            block += 1
        stride_so_far *= s
        level = f"P{stride_so_far.bit_length() - 1}"
        pyramid[level] = x  # the last block of each resolution is that level's tap
    x = layers.Conv2D(make_divisible(1280 * max(width, 1.0)), 1, use_bias=False, name="top_conv")(x)
    x = layers.BatchNormalization(name="top_bn")(x)
    pyramid["P5"] = layers.ReLU(6.0, name="top_relu")(x)
    return make_backbone(inputs, pyramid)
