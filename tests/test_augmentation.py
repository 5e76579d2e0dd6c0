"""Stateless batch augmentation: per example, bounded, paired with masks, parallel and still seeded."""

import numpy as np
import pytest

from pipelines import augmentation
from pipelines.inputs import tf_dataset


def _seed(a, b=0):
    import tensorflow as tf

    return tf.constant([a, b], tf.int64)


def _centre(image):
    rows, cols = np.nonzero(image[..., 0] > 0.5)
    return rows.mean(), cols.mean()


def test_translate_moves_each_image_within_the_factor_both_ways_and_zero_fills():
    image = np.zeros((20, 20, 1), np.float32)
    image[8:12, 8:12] = 1.0
    batch = np.repeat(image[None], 40, axis=0)
    moved = augmentation.translate(batch, _seed(1), 0.25).numpy()
    assert moved.shape == batch.shape
    assert moved.max() <= 1.0 + 1e-6 and moved.min() >= 0.0
    moves = []
    for one in moved:
        assert one.sum() == pytest.approx(image.sum(), abs=1.5)  # the square moved, not grew
        row, col = _centre(one)
        moves.append((row - 9.5, col - 9.5))
    moves = np.array(moves)
    assert np.abs(moves).max() <= 0.25 * 20 + 0.5
    assert (moves < -1).any(axis=0).all() and (moves > 1).any(axis=0).all()  # both directions, both axes
    assert len({one.tobytes() for one in moved}) == 40  # each image its own shift
    assert np.array_equal(augmentation.translate(batch, _seed(5), 0.25).numpy(),
                          augmentation.translate(batch, _seed(5), 0.25).numpy())
    assert np.array_equal(augmentation.translate(batch, _seed(5), 0.0).numpy(), batch)


def test_translate_is_keras_random_translation_with_a_stateless_draw():
    import keras
    import tensorflow as tf

    images = np.random.default_rng(0).random((6, 9, 11, 2)).astype(np.float32)
    seed = _seed(4)
    shift = tf.random.stateless_uniform([6, 2], seed, -0.2, 0.2).numpy() * [9, 11]  # (dy, dx)
    layer = keras.layers.RandomTranslation(0.2, 0.2, fill_mode="constant")
    expected = layer.transform_images(images, {"translations": shift[:, ::-1].astype(np.float32),
                                               "input_shape": images.shape}, training=True)
    np.testing.assert_allclose(augmentation.translate(images, seed, 0.2).numpy(), expected, atol=1e-6)


def test_flip_with_mask_keeps_image_and_mask_aligned():
    mask = np.zeros((6, 6), np.int32)
    mask[0, :2], mask[5, 4] = 1, 2
    image = np.stack([mask.astype(np.float32) * 10, mask.astype(np.float32)], axis=-1)
    x, y = augmentation.flip_with_mask(np.repeat(image[None], 16, axis=0),
                                       np.repeat(mask[None], 16, axis=0), _seed(2))
    x, y = x.numpy(), y.numpy()
    assert y.dtype == np.int32
    assert np.array_equal(x[..., 0], y * 10) and np.array_equal(x[..., 1], y)
    assert len({one.tobytes() for one in y}) == 4  # per image: none, vertical, horizontal, both


def _epochs(dataset, count):
    """Each epoch's examples, put back in label order (shuffling aside)."""
    epochs = []
    for _ in range(count):
        xs, ys = zip(*[(x.numpy(), y.numpy()) for x, y in dataset])
        epochs.append(np.concatenate(xs)[np.argsort(np.concatenate(ys))])
    return epochs


def test_the_pipeline_augments_each_example_with_its_own_seed_per_epoch():
    """Same seed: the same pixels, although the map runs in parallel; a new epoch draws anew."""
    images = np.zeros((64, 8, 8, 1), np.float32)
    images[:, 3:5, 3:5] = 1.0
    labels = np.arange(64)

    def shift_only(x, y, seed):  # a batch
        return augmentation.translate(x, seed, 0.25), y

    def make(seed):
        return tf_dataset(images, labels, batch_size=16, training=True, seed=seed, augment=shift_only)

    first, again = _epochs(make(7), 2), _epochs(make(7), 2)
    assert all(np.array_equal(a, b) for a, b in zip(first, again))
    assert not np.array_equal(first[0], first[1])  # the same example moves anew each epoch
    distinct = {example.tobytes() for example in first[0]}
    assert len(distinct) > 32  # each example its own draw, not one per batch
    # batches are augmented in parallel: one thread gives the same pixels
    one_thread = make(7)
    options = __import__("tensorflow").data.Options()
    options.threading.private_threadpool_size = 1
    assert all(np.array_equal(a, b) for a, b in zip(_epochs(one_thread.with_options(options), 2), first))
    assert not np.array_equal(_epochs(make(8), 1)[0], first[0])


def test_evaluation_data_is_never_augmented():
    images = np.random.default_rng(0).random((10, 4, 4, 1)).astype(np.float32)

    def broken(x, y, seed):
        raise AssertionError("augmented outside training")

    dataset = tf_dataset(images, np.arange(10), batch_size=4, training=False, augment=broken)
    assert np.array_equal(_epochs(dataset, 1)[0], images)


def test_flip_with_mask_draws_each_axis_on_its_own():
    """Up-down and left-right flips from split seeds: all four outcomes occur (one shared seed
    gave only the identity or a 180-degree turn, never a single flip)."""
    import tensorflow as tf

    image = np.arange(12, dtype=np.float32).reshape(1, 3, 4, 1).repeat(400, axis=0)
    mask = np.arange(12, dtype=np.int32).reshape(1, 3, 4).repeat(400, axis=0)
    flipped, _ = augmentation.flip_with_mask(tf.constant(image), tf.constant(mask), tf.constant([5, 6], tf.int64))
    flipped = flipped.numpy()[..., 0]
    base = image[0, ..., 0]
    outcomes = {"identity": base, "up-down": base[::-1], "left-right": base[:, ::-1],
                "both": base[::-1, ::-1]}
    counts = {name: int(sum(np.array_equal(f, o) for f in flipped)) for name, o in outcomes.items()}
    assert sum(counts.values()) == 400
    assert all(70 <= n <= 130 for n in counts.values()), counts


def test_volume_shifts_and_flips_move_the_mask_with_its_image():
    """3D segmentation patches: image and label map stay voxel-aligned under every draw."""
    import tensorflow as tf

    rng = np.random.default_rng(0)
    masks = rng.integers(0, 3, (12, 6, 7, 5)).astype(np.int32)
    images = masks[..., None].astype(np.float32) * 10.0
    apply = augmentation.spatial_augmentation(flip=True, shift=0.3, intensity=0, masks=True)
    x, y = apply(tf.constant(images), tf.constant(masks), tf.constant([4, 2], tf.int64))
    np.testing.assert_array_equal(x.numpy()[..., 0], y.numpy() * 10.0)
    assert y.dtype == tf.int32 and not np.array_equal(y.numpy(), masks)  # something moved


def test_rotations_turn_volumes_about_depth_and_keep_labels_labels():
    import tensorflow as tf

    masks = np.zeros((8, 3, 15, 15), np.int32)
    masks[:, :, 7, 2:13] = 2  # a horizontal bar through the centre of every slice
    images = masks[..., None].astype(np.float32)
    apply = augmentation.spatial_augmentation(flip=False, shift=0, intensity=0, rotate=90, masks=True)
    x, y = apply(tf.constant(images), tf.constant(masks), tf.constant([7, 1], tf.int64))
    x, y = x.numpy(), y.numpy()
    assert set(np.unique(y)) <= {0, 2}  # nearest neighbour: no label 1 between 0 and 2
    np.testing.assert_array_equal(y[:, 0], y[:, 2])  # one angle per volume, all slices alike
    assert y[:, :, 7, 7].all()  # the centre stays put
    assert (y != masks).any(axis=(1, 2, 3)).sum() >= 6  # most bars turned
    assert np.abs(x[..., 0] - y * 1.0).mean() < 0.2  # the image turned with its mask
