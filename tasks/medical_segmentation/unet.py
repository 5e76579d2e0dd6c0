"""U-Net decoder over a backbone's ``pyramid_outputs``, and the Dice + cross-entropy loss.

The encoder is any image backbone of the registry, 2D or 3D (one code path, as MONAI's
``spatial_dims``): the decoder starts at the deepest level, and at each shallower level
upsamples (bilinear in 2D, voxel repetition in 3D) to that level's size, concatenates its
features (the skip connection) and applies two conv 3x3(x3) + batch norm + ReLU. A last stage
upsamples from the finest level to full resolution, so the softmax map has the input's size.
Layer names do not depend on the dimensions, so a 2D U-Net's weights find their 3D twins.
"""

import keras
from keras import layers

from pipelines.backbones import pyramid_outputs
from pipelines.backbones.spatial import layer, spatial_dims_of


def conv_block(x, width, name):
    conv = layer("conv", spatial_dims_of(x.shape[1:]))
    for i in (1, 2):
        x = conv(width, 3, padding="same", use_bias=False, name=f"{name}_conv{i}")(x)
        x = layers.BatchNormalization(momentum=0.9, name=f"{name}_bn{i}")(x)
        x = layers.ReLU(name=f"{name}_relu{i}")(x)
    return x


def _fit_to(x, reference, name):
    """Upsample ``x`` to ``reference``'s grid: by that level's stride ratio on each axis (2, or 1
    along an axis an anisotropic backbone did not pool), then cropped where odd sizes rounded up
    in the encoder."""
    target = tuple(reference.shape[1:-1])
    factors = tuple(max(1, -(-t // s)) for t, s in zip(target, x.shape[1:-1]))
    if len(target) == 2:
        x = layers.UpSampling2D(factors, interpolation="bilinear", name=f"{name}_up")(x)
    else:
        x = layers.UpSampling3D(factors, name=f"{name}_up")(x)
    excess = tuple(s - t for s, t in zip(x.shape[1:-1], target))
    if any(excess):
        crop = layers.Cropping2D if len(target) == 2 else layers.Cropping3D
        x = crop(tuple((0, e) for e in excess), name=f"{name}_crop")(x)
    return x


def build_unet(backbone, n_classes, *, decoder_width=32):
    """image or volume -> backbone pyramid -> U-Net decoder -> per-pixel (voxel) class
    probabilities."""
    inputs = keras.Input(backbone.input_shape[1:], name="image")
    pyramid = backbone(inputs)
    levels = sorted(pyramid_outputs(backbone), key=lambda level: int(level[1:]))
    x = pyramid[levels[-1]]
    for level in reversed(levels[:-1]):
        k = int(level[1:])
        skip = pyramid[level]
        x = _fit_to(x, skip, f"decoder_p{k}")
        x = layers.Concatenate(name=f"decoder_p{k}_skip")([x, skip])
        x = conv_block(x, decoder_width * 2 ** (k - 1), f"decoder_p{k}")
    if tuple(x.shape[1:-1]) != tuple(inputs.shape[1:-1]):
        x = _fit_to(x, inputs, "decoder_full")
        x = conv_block(x, decoder_width, "decoder_full")
    logits = layer("conv", spatial_dims_of(inputs.shape[1:]))(n_classes, 1, name="logits")(x)
    probabilities = layers.Activation("softmax", name="probabilities", dtype="float32")(logits)
    return keras.Model(inputs, probabilities, name="unet")


@keras.saving.register_keras_serializable(package="cnn_tasks")
class DiceCrossEntropy(keras.losses.Loss):
    """``ce_weight`` x cross-entropy + ``dice_weight`` x (1 - soft Dice over foreground classes).

    Labels are integer maps (batch, h, w) or (batch, d, h, w); predictions softmax maps with a
    last axis of classes.
    ``class_weights`` (one per class) weight the cross-entropy for tiny structures.
    """

    def __init__(self, n_classes, dice_weight=1.0, ce_weight=1.0, class_weights=None,
                 smooth=1.0, name="dice_cross_entropy", **kwargs):
        super().__init__(name=name, **kwargs)
        self.n_classes = int(n_classes)
        self.dice_weight, self.ce_weight, self.smooth = float(dice_weight), float(ce_weight), float(smooth)
        self.class_weights = list(class_weights) if class_weights else None

    def call(self, y_true, y_pred):
        ops = keras.ops
        labels = ops.cast(ops.reshape(y_true, ops.shape(y_pred)[:-1]), "int32")
        onehot = ops.one_hot(labels, self.n_classes)
        y_pred = ops.clip(y_pred, 1e-7, 1.0)
        ce = -ops.sum(onehot * ops.log(y_pred), axis=-1)
        if self.class_weights:
            ce = ce * ops.take(ops.convert_to_tensor(self.class_weights, "float32"), labels)
        axes = tuple(range(1, len(y_pred.shape) - 1))
        ce = ops.mean(ce, axis=axes)
        intersection = ops.sum(onehot * y_pred, axis=axes)[:, 1:]
        total = ops.sum(onehot, axis=axes)[:, 1:] + ops.sum(y_pred, axis=axes)[:, 1:]
        dice = (2.0 * intersection + self.smooth) / (total + self.smooth)
        return self.ce_weight * ce + self.dice_weight * (1.0 - ops.mean(dice, axis=-1))

    def get_config(self):
        return {**super().get_config(), "n_classes": self.n_classes, "dice_weight": self.dice_weight,
                "ce_weight": self.ce_weight, "class_weights": self.class_weights, "smooth": self.smooth}


@keras.saving.register_keras_serializable(package="cnn_tasks")
class ForegroundDice(keras.metrics.Metric):
    """Hard Dice of the predicted class map (argmax) per foreground class, over every pixel or
    voxel the epoch saw, averaged over the classes: the per-epoch figure (``dice``,
    ``val_dice``) that history.csv and the learning curves show, so a run's quality can be read
    against its wall time. It is measured on the network's inputs (resized slices or patches),
    not per case at each case's own size as metrics.json's Dice is. A class absent from both the
    labels and the predictions counts as 1."""

    def __init__(self, n_classes, name="dice", **kwargs):
        super().__init__(name=name, **kwargs)
        self.n_classes = int(n_classes)
        self.overlap = self.add_variable((self.n_classes - 1,), initializer="zeros", name="overlap")
        self.total = self.add_variable((self.n_classes - 1,), initializer="zeros", name="total")

    def update_state(self, y_true, y_pred, sample_weight=None):
        ops = keras.ops
        labels = ops.cast(ops.reshape(y_true, ops.shape(y_pred)[:-1]), "int32")
        truth = ops.one_hot(labels, self.n_classes)[..., 1:]
        predicted = ops.one_hot(ops.argmax(y_pred, axis=-1), self.n_classes)[..., 1:]
        axes = tuple(range(len(y_pred.shape) - 1))
        self.overlap.assign_add(ops.sum(truth * predicted, axis=axes))
        self.total.assign_add(ops.sum(truth, axis=axes) + ops.sum(predicted, axis=axes))

    def result(self):
        ops = keras.ops
        dice = ops.where(self.total > 0, 2.0 * self.overlap / ops.maximum(self.total, 1.0), 1.0)
        return ops.mean(dice)

    def reset_state(self):
        for variable in (self.overlap, self.total):
            variable.assign(keras.ops.zeros_like(variable))

    def get_config(self):
        return {**super().get_config(), "n_classes": self.n_classes}
