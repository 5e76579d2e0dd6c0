"""Stateless random augmentation of training batches, run by tf.data on every core.

A task's ``augment(config, info)`` returns ``apply(x, y, seed) -> (x, y)`` for one BATCH; the
pipeline hands each batch its own ``seed`` (a ``[2]`` int64 tensor drawn from ``--seed`` and the
epoch, in batch order) and maps ``apply`` in parallel with a fixed output order. ``apply`` draws
per-example values from that seed with stateless ops (``tf.random.stateless_*``,
``tf.image.stateless_*``), so each example gets its own shift or flip, the same seed gives the
same pixels whichever thread runs the batch, and the batch is transformed in one vectorised call.
"""

import numpy as np


def batch_seeds(seed):
    """An endless dataset of ``[2]`` int64 seeds, a new sequence each epoch (iteration), the
    same sequences for the same ``seed``."""
    import tensorflow as tf

    return tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True).batch(2)


def split(seed, count):
    """``count`` independent seeds from one (one per random decision)."""
    import tensorflow as tf

    return tf.unstack(tf.random.experimental.stateless_split(seed, num=count))


def translate(images, seed, factor):
    """Shift each ``[N, H, W, C]`` image by up to ``factor`` of its height and width (uniform,
    bilinear, zero fill): ``keras.layers.RandomTranslation(factor, factor, fill_mode="constant")``
    with a stateless draw."""
    import keras
    import tensorflow as tf

    count = tf.shape(images)[0]
    size = tf.cast(tf.shape(images)[1:3], tf.float32)  # (height, width)
    shift = tf.random.stateless_uniform(tf.stack([count, 2]), seed, -factor, factor) * size
    one, zero = tf.ones([count, 1]), tf.zeros([count, 1])
    transforms = tf.concat([one, zero, -shift[:, 1:], zero, one, -shift[:, :1], zero, zero], axis=1)
    return keras.ops.image.affine_transform(images, transforms, interpolation="bilinear",
                                            fill_mode="constant", fill_value=0)


def flip(images, seed, axis):
    """Mirror each ``[N, H, W, C]`` image along ``axis`` ("horizontal" or "vertical") with
    probability 1/2, independently."""
    import tensorflow as tf

    if axis == "horizontal":
        return tf.image.stateless_random_flip_left_right(images, seed)
    if axis == "vertical":
        return tf.image.stateless_random_flip_up_down(images, seed)
    raise ValueError(f"flip axis {axis!r}: horizontal or vertical")


def flip_with_mask(images, masks, seed, axes=("vertical", "horizontal")):
    """The same random flips applied to each image and its ``[N, H, W]`` label mask."""
    import tensorflow as tf

    both = tf.concat([images, tf.cast(masks[..., None], images.dtype)], axis=-1)
    for axis, part in zip(axes, split(seed, len(axes))):
        both = flip(both, part, axis)
    return both[..., :-1], tf.cast(tf.round(both[..., -1]), masks.dtype)


def apply_per_batch(ds, augment, seed):
    """``ds`` of ``(x, y, *rest)`` batches, each augmented by ``augment(x, y, seed)`` on as many
    threads as tf.data likes, in a fixed order."""
    import tensorflow as tf

    def one(batch, batch_seed):
        x, y, *rest = batch
        x, y = augment(x, y, batch_seed)
        return (x, y, *rest)

    return tf.data.Dataset.zip((ds, batch_seeds(seed))).map(
        one, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)


# -- any spatial dimensions: [N, *spatial, C] (2D images or 3D volumes) -------------------------
def axis_flips(images, seed, axes=None):
    """Each example mirrored along every spatial axis (or only those in ``axes``, 0 = the first
    spatial axis), each axis with probability 1/2 drawn on its own."""
    import tensorflow as tf

    count = tf.shape(images)[0]
    spatial = range(len(images.shape) - 2)
    ones = [1] * (len(images.shape) - 1)
    for axis, part in zip(spatial, split(seed, len(spatial))):  # one draw per axis, used or not
        if axes is None or axis in axes:
            coin = tf.random.stateless_uniform([count], part) < 0.5
            images = tf.where(tf.reshape(coin, [-1] + ones), tf.reverse(images, axis=[axis + 1]), images)
    return images


def shifts(images, seed, fraction):
    """Each example moved by up to ``fraction`` of its size along every spatial axis, whole
    pixels (voxels), the edge mirrored into the gap (a crop of the symmetrically padded input)."""
    import tensorflow as tf

    shape = images.shape[1:-1]
    pads = [max(1, int(round(s * fraction))) for s in shape]
    padded = tf.pad(images, [[0, 0]] + [[p, p] for p in pads] + [[0, 0]], mode="SYMMETRIC")
    count = tf.shape(images)[0]
    starts = tf.stack([tf.random.stateless_uniform([count], part, 0, 2 * p + 1, dtype=tf.int32)
                       for p, part in zip(pads, split(seed, len(pads)))], axis=1)

    def crop(args):
        image, start = args
        return tf.slice(image, tf.concat([start, [0]], 0), list(shape) + [image.shape[-1]])

    return tf.map_fn(crop, (padded, starts), fn_output_signature=images.dtype)


def intensity_jitter(images, seed, amount):
    """Each example scaled by 1 +/- ``amount`` and offset by +/- ``amount`` of its spread."""
    import tensorflow as tf

    count = tf.shape(images)[0]
    ones = [1] * (len(images.shape) - 1)
    gain_seed, offset_seed = split(seed, 2)
    gain = tf.random.stateless_uniform([count] + ones, gain_seed, 1 - amount, 1 + amount)
    offset = tf.random.stateless_uniform([count] + ones, offset_seed, -amount, amount)
    spread = tf.math.reduce_std(images, axis=list(range(1, len(images.shape))), keepdims=True)
    return images * gain + offset * spread


def rotations(images, seed, degrees, interpolation="bilinear"):
    """Each example turned by up to +/- ``degrees`` about its centre, in the plane of the last
    two spatial axes (height, width): a 2D image in its plane, a volume about its depth axis,
    every slice by the same angle. Edges are mirrored into the corners."""
    import keras
    import tensorflow as tf

    count = tf.shape(images)[0]
    angle = tf.random.stateless_uniform([count], seed, -degrees, degrees) * (np.pi / 180.0)
    height, width = images.shape[-3], images.shape[-2]
    cy, cx = (height - 1) / 2.0, (width - 1) / 2.0
    cos, sin = tf.cos(angle), tf.sin(angle)
    zero = tf.zeros_like(angle)
    # output (x, y) reads input (cos*(x-cx) - sin*(y-cy) + cx, sin*(x-cx) + cos*(y-cy) + cy)
    transforms = tf.stack([cos, -sin, cx - cos * cx + sin * cy,
                           sin, cos, cy - sin * cx - cos * cy, zero, zero], axis=1)
    planes = images
    depth = 1
    if len(images.shape) == 5:  # [N, D, H, W, C]: every slice of a volume by its volume's angle
        depth = images.shape[1]
        planes = tf.reshape(images, [-1, height, width, images.shape[-1]])
        transforms = tf.repeat(transforms, depth, axis=0)
    turned = keras.ops.image.affine_transform(planes, transforms, interpolation=interpolation,
                                              fill_mode="reflect")
    return tf.reshape(turned, tf.shape(images))


def with_mask(transform, images, masks, *args):
    """A geometric ``transform(images, *args)`` applied to images and their label masks
    ``[N, *spatial]`` together (the mask rides as one more channel and is rounded back)."""
    import tensorflow as tf

    both = transform(tf.concat([images, tf.cast(masks[..., None], images.dtype)], axis=-1), *args)
    return both[..., :-1], tf.cast(tf.round(both[..., -1]), masks.dtype)


def spatial_augmentation(*, flip, shift, intensity, rotate=0, masks=False):
    """``apply(x, y, seed)`` for batches of images or volumes ``[N, *spatial, C]``: flips along
    each axis (if ``flip`` is true; only the spatial axes listed, if it is a list), a rotation
    by up to ``rotate`` degrees, a shift by up to ``shift`` of the size, an intensity jitter of
    ``intensity``; with ``masks`` the targets are label maps moved with their inputs (rotated
    with nearest-neighbour, so labels stay labels). None when nothing is asked."""
    import tensorflow as tf

    if not (flip or shift or intensity or rotate):
        return None

    def geometric(transform, x, y, *args):
        return with_mask(transform, x, y, *args) if masks else (transform(x, *args), y)

    def apply(x, y, seed):
        flip_seed, shift_seed, jitter_seed = split(seed, 3)
        rotate_seed = tf.random.experimental.stateless_fold_in(seed, 4)  # the others' draws unchanged
        if flip:
            x, y = geometric(axis_flips, x, y, flip_seed, None if flip is True else tuple(flip))
        if rotate:
            x = rotations(x, rotate_seed, rotate)
            if masks:
                labels = rotations(tf.cast(y[..., None], x.dtype), rotate_seed, rotate, "nearest")
                y = tf.cast(tf.round(labels[..., 0]), y.dtype)
        if shift:
            x, y = geometric(shifts, x, y, shift_seed, shift)
        if intensity:
            x = intensity_jitter(x, jitter_seed, intensity)
        return x, y

    return apply
