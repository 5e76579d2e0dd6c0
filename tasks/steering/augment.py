"""Steering augmentation on one training batch, stateless (see :mod:`pipelines.augmentation`):
a mirror image with the angle negated, brightness, and a sideways shift with the angle
corrected (the car is then off-centre and should steer back)."""

import tensorflow as tf

from pipelines import augmentation


def mirror(images, angles, seed):
    """Each frame flipped left-right with probability 1/2; a flipped frame's angle negated."""
    flipped = tf.random.stateless_uniform([tf.shape(images)[0]], seed) < 0.5
    images = tf.where(flipped[:, None, None, None], tf.reverse(images, axis=[2]), images)
    return images, tf.where(flipped[:, None], -angles, angles)


def brightness(images, seed, factor):
    """Each frame's pixels multiplied by one factor in [1 - factor, 1 + factor]."""
    gain = tf.random.stateless_uniform([tf.shape(images)[0], 1, 1, 1], seed, 1 - factor, 1 + factor)
    return tf.clip_by_value(images * gain, 0.0, 1.0)


def shift(images, angles, seed, factor, steering_per_width):
    """Shift each frame sideways by up to ``factor`` of its width (bilinear, edge pixels
    repeated), adding ``steering_per_width`` x the shift (as a fraction of the width) to its
    angle: a frame moved right shows the car left of where it was."""
    import keras

    count = tf.shape(images)[0]
    fraction = tf.random.stateless_uniform([count, 1], seed, -factor, factor)
    pixels = fraction * tf.cast(tf.shape(images)[2], tf.float32)
    one, zero = tf.ones([count, 1]), tf.zeros([count, 1])
    transforms = tf.concat([one, zero, -pixels, zero, one, zero, zero, zero], axis=1)
    moved = keras.ops.image.affine_transform(images, transforms, interpolation="bilinear",
                                             fill_mode="nearest")
    return moved, angles + fraction * steering_per_width


def steering_augmentation(*, flip, brightness_factor, shift_factor, steering_per_width):
    """``apply(x, y, seed)`` for the pipeline, or None when every part is off."""
    if not (flip or brightness_factor or shift_factor):
        return None

    def apply(x, y, seed):
        flip_seed, light_seed, shift_seed = augmentation.split(seed, 3)
        if flip:
            x, y = mirror(x, y, flip_seed)
        if brightness_factor:
            x = brightness(x, light_seed, brightness_factor)
        if shift_factor:
            x, y = shift(x, y, shift_seed, shift_factor, steering_per_width)
        return x, y

    return apply
