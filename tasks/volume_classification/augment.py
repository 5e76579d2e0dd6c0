"""3D augmentation of one training batch, stateless (see :mod:`pipelines.augmentation`): a flip
along each axis drawn on its own, a shift of a few voxels per axis (edges repeated), and an
intensity jitter (gain and offset)."""

import tensorflow as tf

from pipelines import augmentation


def flips(volumes, seed):
    """Each volume mirrored along depth, height and width, each with probability 1/2."""
    count = tf.shape(volumes)[0]
    for axis, part in zip((1, 2, 3), augmentation.split(seed, 3)):
        coin = tf.random.stateless_uniform([count], part) < 0.5
        volumes = tf.where(coin[:, None, None, None, None], tf.reverse(volumes, axis=[axis]), volumes)
    return volumes


def shifts(volumes, seed, fraction):
    """Each volume moved by up to ``fraction`` of its size along every axis, whole voxels, the
    edge voxels repeated into the gap (a crop of the edge-padded volume)."""
    shape = volumes.shape[1:4]
    pads = [max(1, int(round(s * fraction))) for s in shape]
    padded = tf.pad(volumes, [[0, 0]] + [[p, p] for p in pads] + [[0, 0]], mode="SYMMETRIC")
    count = tf.shape(volumes)[0]
    starts = tf.stack([tf.random.stateless_uniform([count], part, 0, 2 * p + 1, dtype=tf.int32)
                       for p, part in zip(pads, augmentation.split(seed, 3))], axis=1)

    def crop(args):
        volume, start = args
        return tf.slice(volume, tf.concat([start, [0]], 0), list(shape) + [volume.shape[-1]])

    return tf.map_fn(crop, (padded, starts), fn_output_signature=volumes.dtype)


def jitter(volumes, seed, amount):
    """Each volume scaled by 1 +/- ``amount`` and offset by +/- ``amount`` of its spread."""
    count = tf.shape(volumes)[0]
    gain_seed, offset_seed = augmentation.split(seed, 2)
    gain = tf.random.stateless_uniform([count, 1, 1, 1, 1], gain_seed, 1 - amount, 1 + amount)
    offset = tf.random.stateless_uniform([count, 1, 1, 1, 1], offset_seed, -amount, amount)
    spread = tf.math.reduce_std(volumes, axis=[1, 2, 3, 4], keepdims=True)
    return volumes * gain + offset * spread


def volume_augmentation(*, flip, shift, intensity):
    if not (flip or shift or intensity):
        return None

    def apply(x, y, seed):
        flip_seed, shift_seed, jitter_seed = augmentation.split(seed, 3)
        if flip:
            x = flips(x, flip_seed)
        if shift:
            x = shifts(x, shift_seed, shift)
        if intensity:
            x = jitter(x, jitter_seed, intensity)
        return x, y

    return apply
