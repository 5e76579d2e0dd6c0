"""The default volume classifier written as a plain Keras script: no cnn-tasks code at all.

`cnn-tasks train volume-classification` with defaults, on its built-in data: 160 generated
16x24x24 volumes in Hounsfield-like units, a bright sphere or a bright cube in noise (the same
generator, restated here). Stratified split (seed 0, test 20 %, validation 10 % of the rest);
intensities through the CT window [-1000, 400] HU scaled to [0, 1]; the registry's basic_cnn3d
(widths 16/32/64, two conv3x3x3-BN-ReLU a stage, 2x2x2 max pooling), global average pooling,
dropout 0.3, softmax; each training batch mirrored along depth, height and width (each on its
own), turned by up to 15 degrees about the depth axis, shifted by up to 10 % (edges mirrored in)
and its intensities jittered by 10 %; Adam at 1e-3 with cosine decay, batch 16, 40 epochs, the
best validation epoch's weights restored; test predictions averaged over the 8 mirror images.

Run: python benchmarks/plain_keras_volumes.py
"""

import itertools
import math
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from keras import layers  # noqa: E402
from sklearn.model_selection import train_test_split  # noqa: E402
from twin_curve import callbacks as curve_callbacks  # noqa: E402

EPOCHS, BATCH, LR, SEED = 40, 16, 1e-3, 0  # the task defaults
TEST_FRACTION, VAL_FRACTION = 0.2, 0.1
WIDTHS, DROPOUT, WINDOW = (16, 32, 64), 0.3, (-1000.0, 400.0)
SHIFT, JITTER, DEGREES = 0.1, 0.1, 15.0
N_VOLUMES, SIZE = 160, (16, 24, 24)


def generated_volumes():
    """(volumes (160, 16, 24, 24), labels): spheres (0) and cubes (1) alternating."""
    rng = np.random.default_rng(0)
    grid = np.stack(np.meshgrid(*[np.arange(s) for s in SIZE], indexing="ij"), axis=-1).astype(np.float32)
    volumes = []
    for i in range(N_VOLUMES):
        radius = rng.uniform(0.2, 0.35) * min(SIZE)
        centre = np.array([rng.uniform(radius, s - radius) for s in SIZE])
        offset = np.abs(grid - centre)
        inside = np.sqrt((offset ** 2).sum(-1)) <= radius if i % 2 == 0 else offset.max(-1) <= radius * 0.85
        volumes.append(np.where(inside, 40.0, -1000.0) + rng.normal(0, 60, SIZE))
    return np.stack(volumes).astype(np.float32), np.arange(N_VOLUMES) % 2


def splits(labels):
    """Indices of train, validation and test: scikit-learn's stratified split, rounded up as the
    pipeline rounds."""
    everything = np.arange(len(labels))
    rest, test = train_test_split(everything, test_size=math.ceil(len(labels) * TEST_FRACTION),
                                  random_state=SEED, stratify=labels)
    rest = np.sort(rest)
    train, val = train_test_split(rest, test_size=math.ceil(len(rest) * VAL_FRACTION), random_state=SEED,
                                  stratify=labels[rest])
    return np.sort(train), np.sort(val), np.sort(test)


def augment(volumes, labels):
    """Random mirror images, a turn about depth, a shift and an intensity jitter per volume."""
    n = tf.shape(volumes)[0]
    for axis in (1, 2, 3):
        coin = tf.random.uniform([n, 1, 1, 1, 1]) < 0.5
        volumes = tf.where(coin, tf.reverse(volumes, [axis]), volumes)
    depth, height, width = SIZE
    angle = tf.random.uniform([n], -DEGREES, DEGREES) * (math.pi / 180.0)
    cy, cx = (height - 1) / 2.0, (width - 1) / 2.0
    cos, sin, zero = tf.cos(angle), tf.sin(angle), tf.zeros([n])
    matrix = tf.stack([cos, -sin, cx - cos * cx + sin * cy, sin, cos, cy - sin * cx - cos * cy, zero, zero], 1)
    planes = keras.ops.image.affine_transform(tf.reshape(volumes, [-1, height, width, 1]),
                                              tf.repeat(matrix, depth, axis=0), fill_mode="reflect")
    volumes = tf.reshape(planes, tf.shape(volumes))
    pads = [max(1, round(s * SHIFT)) for s in SIZE]
    padded = tf.pad(volumes, [[0, 0]] + [[p, p] for p in pads] + [[0, 0]], mode="SYMMETRIC")
    starts = tf.stack([tf.random.uniform([n], 0, 2 * p + 1, dtype=tf.int32) for p in pads], 1)
    volumes = tf.map_fn(lambda a: tf.slice(a[0], tf.concat([a[1], [0]], 0), [*SIZE, 1]), (padded, starts),
                        fn_output_signature=tf.float32)
    gain = tf.random.uniform([n, 1, 1, 1, 1], 1 - JITTER, 1 + JITTER)
    offset = tf.random.uniform([n, 1, 1, 1, 1], -JITTER, JITTER)
    spread = tf.math.reduce_std(volumes, axis=[1, 2, 3, 4], keepdims=True)
    return volumes * gain + offset * spread, labels


def batches(volumes, labels, training=False):
    data = tf.data.Dataset.from_tensor_slices((volumes, labels)).cache()
    if training:
        data = data.shuffle(len(labels), seed=SEED).batch(BATCH).map(augment, num_parallel_calls=tf.data.AUTOTUNE)
    else:
        data = data.batch(BATCH)
    return data.prefetch(tf.data.AUTOTUNE)


def model():
    inputs = keras.Input((*SIZE, 1))
    x = inputs
    for width in WIDTHS:
        for _ in range(2):
            x = layers.Conv3D(width, 3, padding="same", use_bias=False)(x)
            x = layers.BatchNormalization(momentum=0.9)(x)
            x = layers.ReLU()(x)
        x = layers.MaxPooling3D(2, strides=2, padding="same")(x)
    x = layers.Dropout(DROPOUT)(layers.GlobalAveragePooling3D()(x))
    return keras.Model(inputs, layers.Activation("softmax")(layers.Dense(2)(x)))


def mirror_average(net, volumes):
    """Class probabilities averaged over the 8 mirror images of each volume."""
    axes = [c for k in range(4) for c in itertools.combinations((1, 2, 3), k)]
    return np.mean([net.predict(np.flip(volumes, axis) if axis else volumes, batch_size=64, verbose=0)
                    for axis in axes], axis=0)


def main(verbose=2, epochs=EPOCHS, curve=None):
    """Train and test; returns (training seconds, test accuracy). ``curve``, a list, receives
    (seconds since training began, validation accuracy) after each epoch."""
    keras.utils.set_random_seed(SEED)
    volumes, labels = generated_volumes()
    low, high = WINDOW
    x = np.clip((volumes - low) / (high - low), 0.0, 1.0)[..., None].astype(np.float32)
    y = labels.astype(np.int32)
    train, val, test = splits(y)
    net = model()
    steps = math.ceil(len(train) / BATCH) * epochs
    net.compile(optimizer=keras.optimizers.Adam(keras.optimizers.schedules.CosineDecay(LR, steps)),
                loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    with tempfile.TemporaryDirectory() as folder:
        best = keras.callbacks.ModelCheckpoint(str(Path(folder) / "best.weights.h5"), monitor="val_loss",
                                               save_best_only=True, save_weights_only=True)
        start = time.perf_counter()
        net.fit(batches(x[train], y[train], training=True), epochs=epochs, verbose=verbose,
                validation_data=batches(x[val], y[val]), callbacks=[best] + curve_callbacks(curve, "val_accuracy"))
        net.load_weights(best.filepath)
        seconds = time.perf_counter() - start
    accuracy = float((mirror_average(net, x[test]).argmax(-1) == y[test]).mean())
    print(f"plain keras: {seconds:.1f} s training, test accuracy {accuracy:.4f}")
    return seconds, accuracy


if __name__ == "__main__":
    main()
