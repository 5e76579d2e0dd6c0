"""Stateless random augmentation, one example at a time, so tf.data can run it on every core.

A task's ``augment(config, info)`` returns ``apply(x, y, seed) -> (x, y)`` for ONE example; the
pipeline hands each example its own ``seed`` (a ``[2]`` int64 tensor drawn from ``--seed``, the
epoch and the example's position) and maps ``apply`` in parallel with a fixed output order. The
ops here are ``tf.image.stateless_*`` style: the same seed gives the same pixels whichever
thread runs them, so a seed still names one run.
"""


def example_seeds(seed):
    """An endless dataset of ``[2]`` int64 seeds, a new sequence each epoch (iteration), the
    same sequences for the same ``seed``."""
    import tensorflow as tf

    return tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True).batch(2)


def split(seed, count):
    """``count`` independent seeds from one (one per random decision of an example)."""
    import tensorflow as tf

    return tf.unstack(tf.random.experimental.stateless_split(seed, num=count))


def translate(image, seed, factor):
    """Shift an ``[H, W, C]`` image by up to ``factor`` of its height and width (uniform,
    bilinear, zero fill): ``keras.layers.RandomTranslation(factor, factor, fill_mode="constant")``
    with a stateless draw."""
    import keras
    import tensorflow as tf

    size = tf.cast(tf.shape(image)[:2], tf.float32)  # (height, width)
    shift = tf.random.stateless_uniform([2], seed, -factor, factor) * size
    dy, dx = shift[0], shift[1]
    transform = tf.stack([1.0, 0.0, -dx, 0.0, 1.0, -dy, 0.0, 0.0])[None]
    moved = keras.ops.image.affine_transform(image[None], transform, interpolation="bilinear",
                                             fill_mode="constant", fill_value=0)
    return moved[0]


def flip(image, seed, axis):
    """Mirror an ``[H, W, C]`` image along ``axis`` ("horizontal" or "vertical") with
    probability 1/2."""
    import tensorflow as tf

    if axis == "horizontal":
        return tf.image.stateless_random_flip_left_right(image, seed)
    if axis == "vertical":
        return tf.image.stateless_random_flip_up_down(image, seed)
    raise ValueError(f"flip axis {axis!r}: horizontal or vertical")


def flip_with_mask(image, mask, seed, axes=("vertical", "horizontal")):
    """The same random flips applied to an image and its ``[H, W]`` label mask."""
    import tensorflow as tf

    both = tf.concat([image, tf.cast(mask[..., None], image.dtype)], axis=-1)
    for axis, part in zip(axes, split(seed, len(axes))):
        both = flip(both, part, axis)
    return both[..., :-1], tf.cast(tf.round(both[..., -1]), mask.dtype)


def apply_per_example(ds, augment, seed):
    """``ds`` of ``(x, y, *rest)`` examples, each augmented by ``augment(x, y, seed)`` on as
    many threads as tf.data likes, in a fixed order."""
    import tensorflow as tf

    def one(example, example_seed):
        x, y, *rest = example
        x, y = augment(x, y, example_seed)
        return (x, y, *rest)

    return tf.data.Dataset.zip((ds, example_seeds(seed))).map(
        one, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
