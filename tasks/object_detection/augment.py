"""Detection augmentation on one training batch, stateless (see :mod:`pipelines.augmentation`):
flips and a scale jitter that move the boxes with the pixels, exactly.

Boxes are the padded ground truth ``(batch, max_boxes, 5)`` in network pixels; padding rows
(class -1) stay padding. The scale jitter crops (zoom in) or pads (zoom out) a window of
``1 / scale`` of the image at a random place and resizes it back (``tf.image.crop_and_resize``,
per image); boxes are mapped into the window, clipped to it, and a box left with less than
``MIN_VISIBLE`` of its area, or narrower than 2 pixels, becomes padding.
"""

import tensorflow as tf

from pipelines import augmentation

MIN_VISIBLE = 0.4


def flips(images, boxes, seed, axes=("horizontal", "vertical")):
    """Each image mirrored left-right and/or top-bottom with probability 1/2 per axis."""
    height = tf.cast(tf.shape(images)[1], tf.float32)
    width = tf.cast(tf.shape(images)[2], tf.float32)
    valid = boxes[..., 4:5] >= 0
    for axis, axis_seed in zip(axes, augmentation.split(seed, len(axes))):
        flipped = tf.random.stateless_uniform([tf.shape(images)[0]], axis_seed) < 0.5
        if axis == "horizontal":
            images = tf.where(flipped[:, None, None, None], tf.reverse(images, axis=[2]), images)
            moved = tf.stack([width - boxes[..., 2], boxes[..., 1], width - boxes[..., 0], boxes[..., 3],
                              boxes[..., 4]], axis=-1)
        else:
            images = tf.where(flipped[:, None, None, None], tf.reverse(images, axis=[1]), images)
            moved = tf.stack([boxes[..., 0], height - boxes[..., 3], boxes[..., 2], height - boxes[..., 1],
                              boxes[..., 4]], axis=-1)
        boxes = tf.where(flipped[:, None, None] & valid, moved, boxes)
    return images, boxes


def scale_jitter(images, boxes, seed, low, high):
    """Each image zoomed by a factor drawn from [low, high] about a random window."""
    count = tf.shape(images)[0]
    height = tf.cast(tf.shape(images)[1], tf.float32)
    width = tf.cast(tf.shape(images)[2], tf.float32)
    scale_seed, place_seed = augmentation.split(seed, 2)
    scale = tf.random.stateless_uniform([count], scale_seed, low, high)
    window = 1.0 / scale  # the window's side, as a share of the image's
    place = tf.random.stateless_uniform([count, 2], place_seed)
    top = (1.0 - window) * place[:, 0]  # window inside the image when zooming in, around it when out
    left = (1.0 - window) * place[:, 1]
    crops = tf.stack([top, left, top + window, left + window], axis=1)
    size = tf.shape(images)[1:3]
    images = tf.image.crop_and_resize(images, crops, tf.range(count), size, extrapolation_value=0.0)
    x0, y0 = (left * width)[:, None], (top * height)[:, None]
    factor = scale[:, None]
    x1 = (boxes[..., 0] - x0) * factor
    y1 = (boxes[..., 1] - y0) * factor
    x2 = (boxes[..., 2] - x0) * factor
    y2 = (boxes[..., 3] - y0) * factor
    area = (x2 - x1) * (y2 - y1)
    cx1, cy1 = tf.clip_by_value(x1, 0.0, width), tf.clip_by_value(y1, 0.0, height)
    cx2, cy2 = tf.clip_by_value(x2, 0.0, width), tf.clip_by_value(y2, 0.0, height)
    visible = (cx2 - cx1) * (cy2 - cy1)
    keep = (boxes[..., 4] >= 0) & (visible >= MIN_VISIBLE * area) & (cx2 - cx1 >= 2.0) & (cy2 - cy1 >= 2.0)
    moved = tf.stack([cx1, cy1, cx2, cy2, boxes[..., 4]], axis=-1)
    return images, tf.where(keep[..., None], moved, tf.fill(tf.shape(boxes), -1.0))


def detection_augmentation(*, flip_axes, scale_range):
    """``apply(x, y, seed)`` for the pipeline, or None when every part is off."""
    low, high = scale_range
    if not flip_axes and low == high == 1.0:
        return None

    def apply(x, y, seed):
        flip_seed, scale_seed = augmentation.split(seed, 2)
        if flip_axes:
            x, y = flips(x, y, flip_seed, flip_axes)
        if not low == high == 1.0:
            x, y = scale_jitter(x, y, scale_seed, low, high)
        return x, y

    return apply
