"""MobileNet v1 (Howard et al. 2017) and MobileNetV2 (Sandler et al. 2018) from
``keras.applications``, re-exposed with pyramid taps, so their ImageNet files fit.

Both take RGB scaled to [-1, 1] (``keras.applications.mobilenet.preprocess_input``); our images
are floats in [0, 1], so the backbone's first layer maps them there. ``alpha`` is the width
multiplier; ImageNet weights exist at alpha 0.25/0.5/0.75/1.0 (v1) and 0.35/0.5/0.75/1.0/1.3/1.4
(v2), trained at 224 x 224 and loaded through Keras' own cache (``$KERAS_HOME/models/``) and
download (:class:`pipelines.weights.KerasApplicationFile`).
"""

import functools

import keras
from keras import layers

from pipelines.backbones.base import make_backbone, register_backbone
from pipelines.weights import KerasApplicationFile, Pretrained

V1_TAPS = {"P1": "conv_pw_1_relu", "P2": "conv_pw_3_relu", "P3": "conv_pw_5_relu",
           "P4": "conv_pw_11_relu", "P5": "conv_pw_13_relu"}
V2_TAPS = {"P1": "block_1_expand_relu", "P2": "block_3_expand_relu", "P3": "block_6_expand_relu",
           "P4": "block_13_expand_relu", "P5": "out_relu"}  # the taps DeepLab and U-Net tutorials use
V1_URL = "https://storage.googleapis.com/tensorflow/keras-applications/mobilenet/"
V2_URL = "https://storage.googleapis.com/tensorflow/keras-applications/mobilenet_v2/"
V1_ALPHAS = {0.25: "2_5", 0.5: "5_0", 0.75: "7_5", 1.0: "1_0"}
V2_ALPHAS = (0.35, 0.5, 0.75, 1.0, 1.3, 1.4)
IMAGENET_SIZE = (224, 224, 3)
LICENCE = "Apache-2.0 (Keras applications; Google's TF-slim checkpoints)"
PREPROCESSING = "RGB, x / 127.5 - 1 on 0..255: the backbone's first layer"


def _wrap(application, input_shape, taps, **arguments):
    inputs = keras.Input(input_shape, name="image")
    scaled = layers.Rescaling(2.0, offset=-1.0, name="to_signed")(inputs)
    base = application(include_top=False, weights=None, input_tensor=scaled, **arguments)
    return make_backbone(inputs, {level: base.get_layer(name).output for level, name in taps.items()})


def _imagenet(application, alpha, alphas, file, url, name):
    """{"imagenet": Pretrained} of ``application`` at width ``alpha``, if Keras has that file."""
    if float(alpha) not in alphas:
        return {}
    build = functools.partial(application, input_shape=IMAGENET_SIZE, alpha=float(alpha), include_top=False,
                              weights=None)
    return {"imagenet": Pretrained(
        description=f"ImageNet-1k ({name}, alpha {float(alpha)}, 224 px)", licence=LICENCE,
        source=KerasApplicationFile(file=file, url=url + file, build=build),
        input_size=IMAGENET_SIZE, mean=(127.5,) * 3, std=(127.5,) * 3, preprocessing=PREPROCESSING)}


def mobilenet_weights(alpha=1.0):
    """The ImageNet file keras.applications.MobileNet(alpha) loads without its top, if any."""
    file = f"mobilenet_{V1_ALPHAS.get(float(alpha))}_224_tf_no_top.h5"
    return _imagenet(keras.applications.MobileNet, alpha, V1_ALPHAS, file, V1_URL, "MobileNet v1")


def mobilenet_v2_weights(alpha=1.0):
    """The ImageNet file keras.applications.MobileNetV2(alpha) loads without its top, if any."""
    file = f"mobilenet_v2_weights_tf_dim_ordering_tf_kernels_{float(alpha)}_224_no_top.h5"
    return _imagenet(keras.applications.MobileNetV2, alpha, V2_ALPHAS, file, V2_URL, "MobileNetV2")


@register_backbone("mobilenet", modality="image", min_size=32, size_multiple=32, pretrained=mobilenet_weights,
                   normalises_input=True,
                   note="MobileNet v1 (keras.applications): depthwise-separable convs, width alpha")
def mobilenet(input_shape, alpha=1.0):
    return _wrap(keras.applications.MobileNet, input_shape, V1_TAPS, alpha=float(alpha))


@register_backbone("mobilenet_v2", modality="image", min_size=32, pretrained=mobilenet_v2_weights,
                   normalises_input=True,
                   note="MobileNetV2 (keras.applications): inverted residuals, width alpha")
def mobilenet_v2(input_shape, alpha=1.0):
    return _wrap(keras.applications.MobileNetV2, input_shape, V2_TAPS, alpha=float(alpha))
