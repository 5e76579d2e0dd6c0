"""NVIDIA's PilotNet / DAVE-2 convolutions (Bojarski et al. 2016, "End to End Learning for
Self-Driving Cars"): three 5x5 convolutions with stride 2 (24, 36, 48 filters), then two 3x3
convolutions with stride 1 (64, 64), each followed by ReLU.

The paper feeds 66x200 frames through "valid" convolutions down to 1x18; here padding is "same",
so any input size works and the pyramid contract holds: P1, P2 and P3 are the outputs of the
three strided convolutions (P3 after the two 3x3 convolutions at the same stride). The paper's
normalisation layer and its fully connected layers (100, 50, 10, 1) belong to the task's head
(``tasks/steering``), so the convolutions can be reused by every image task.
"""

import keras
from keras import layers

from pipelines.backbones.base import make_backbone, register_backbone

FILTERS = ((24, 5, 2), (36, 5, 2), (48, 5, 2), (64, 3, 1), (64, 3, 1))  # (filters, kernel, stride)


@register_backbone("pilotnet", modality="image", min_size=8,
                   note="NVIDIA PilotNet/DAVE-2: 3 conv5x5 stride 2 + 2 conv3x3, ReLU (Bojarski 2016)")
def pilotnet(input_shape, width=1.0, batch_norm=False, dropout=0.0):
    """``width`` scales every layer's filters; ``batch_norm`` adds BatchNormalization after each
    convolution; ``dropout`` (spatial) after each of them while training."""
    inputs = keras.Input(input_shape, name="image")
    x, pyramid, level = inputs, {}, 0
    for i, (filters, kernel, stride) in enumerate(FILTERS, start=1):
        x = layers.Conv2D(max(4, int(round(filters * width))), kernel, strides=stride, padding="same",
                          use_bias=not batch_norm, name=f"conv{i}")(x)
        if batch_norm:
            x = layers.BatchNormalization(momentum=0.9, name=f"conv{i}_bn")(x)
        x = layers.ReLU(name=f"conv{i}_relu")(x)
        if dropout:
            x = layers.SpatialDropout2D(float(dropout), name=f"conv{i}_dropout")(x)
        level += stride == 2
        pyramid[f"P{level}"] = x  # the last convolution at each stride
    return make_backbone(inputs, pyramid)
