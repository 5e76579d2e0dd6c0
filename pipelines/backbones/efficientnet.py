"""EfficientNet-B0 from ``keras.applications`` (random init), re-exposed with pyramid taps.

Keras' EfficientNet rescales its input by 1/255 internally; our images are floats in [0, 1], so
the wrapper multiplies by 255 first and the two cancel.
"""

import keras
from keras import layers

from pipelines.backbones.base import make_backbone, register_backbone

# The last activation at each stride (the taps KerasHub/DeepLab use for EfficientNet).
TAPS = {"P1": "block2a_expand_activation", "P2": "block3a_expand_activation",
        "P3": "block4a_expand_activation", "P4": "block6a_expand_activation",
        "P5": "top_activation"}


@register_backbone("efficientnet_b0", modality="image", min_size=32,
                   note="EfficientNet-B0 (keras.applications, weights=None): MBConv + squeeze-excite")
def efficientnet_b0(input_shape):
    inputs = keras.Input(input_shape, name="image")
    scaled = layers.Rescaling(255.0, name="to_255")(inputs)
    base = keras.applications.EfficientNetB0(include_top=False, weights=None, input_tensor=scaled)
    return make_backbone(inputs, {level: base.get_layer(name).output for level, name in TAPS.items()})
