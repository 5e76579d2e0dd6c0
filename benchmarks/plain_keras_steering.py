"""The default steering model written as a plain Keras script: no cnn-tasks code at all.

PilotNet as `cnn-tasks train steering` builds it with defaults on the shipped driving frames
(data/driving_steering, 32x64 RGB): the file's own train/test split by episode, validation the
last 10 % of the training episodes (real frames only), the data's mirror copies kept for
training; pixels standardised per channel with statistics of 512 training frames, the angle
predicted in units of the training angles' spread and rescaled to the data's units in the model;
five convolutions (24/36/48 at 5x5 stride 2, 64/64 at 3x3), flatten, dense 100/50/10 with ReLU,
one linear output; random left-right mirror images (angle negated) while training; MSE, Adam at
1e-3 with cosine decay, batch 32, 40 epochs, the best validation epoch's weights restored.

Frames are decoded by TensorFlow in tf.data and cached in memory, as the pipeline does with the
same files. Run: python benchmarks/plain_keras_steering.py
"""

import math
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import tensorflow as tf  # noqa: E402
from keras import layers  # noqa: E402
from twin_curve import callbacks as curve_callbacks  # noqa: E402

DATA = Path(__file__).resolve().parents[1] / "data" / "driving_steering" / "labels.csv"
EPOCHS, BATCH, LR, SEED, VAL_FRACTION = 40, 32, 1e-3, 0, 0.1  # the task defaults
CONVOLUTIONS = ((24, 5, 2), (36, 5, 2), (48, 5, 2), (64, 3, 1), (64, 3, 1))  # (filters, kernel, stride)
UNITS = (100, 50, 10)
STATISTICS_FRAMES = 512


def splits(table):
    """Row numbers of train (mirror copies included), validation and test (real frames only)."""
    episodes = table["episode"].to_numpy()
    train_episodes = pd.unique(episodes[table["split"] == "train"])  # in time order
    val_episodes = train_episodes[len(train_episodes) - math.ceil(len(train_episodes) * VAL_FRACTION):]
    real = table["flipped"].to_numpy() == 0
    is_val = np.isin(episodes, val_episodes)
    train = np.flatnonzero((table["split"] == "train").to_numpy() & ~is_val)
    return train, np.flatnonzero(is_val & real), np.flatnonzero((table["split"] == "test").to_numpy() & real)


def decode(path):
    return tf.image.convert_image_dtype(tf.io.decode_png(tf.io.read_file(path), channels=3), tf.float32)


def mirror(images, angles):
    """Each frame flipped left-right with probability 1/2, its angle negated."""
    flipped = tf.random.uniform([tf.shape(images)[0]]) < 0.5
    images = tf.where(flipped[:, None, None, None], tf.reverse(images, axis=[2]), images)
    return images, tf.where(flipped[:, None], -angles, angles)


def batches(paths, angles, training=False):
    data = tf.data.Dataset.from_tensor_slices((paths, angles[:, None]))
    data = data.map(lambda p, a: (decode(p), a), num_parallel_calls=tf.data.AUTOTUNE).cache()
    if training:
        data = data.shuffle(len(angles), seed=SEED).batch(BATCH).map(mirror, num_parallel_calls=tf.data.AUTOTUNE)
    else:
        data = data.batch(BATCH)
    return data.prefetch(tf.data.AUTOTUNE)


def model(input_shape, pixel_mean, pixel_variance, target_mean, target_std):
    frames = keras.Input(input_shape)
    x = layers.Normalization(mean=pixel_mean, variance=pixel_variance)(frames)
    for filters, kernel, stride in CONVOLUTIONS:
        x = layers.Conv2D(filters, kernel, strides=stride, padding="same", activation="relu")(x)
    x = layers.Flatten()(x)
    for units in UNITS:
        x = layers.Dense(units, activation="relu")(x)
    angle = layers.Rescaling(target_std, offset=target_mean)(layers.Dense(1)(x))
    return keras.Model(frames, angle)


def main(verbose=2, epochs=EPOCHS, curve=None):
    """Train and test; returns (training seconds, test RMSE). ``curve``, a list, receives
    (seconds since training began, validation RMSE) after each epoch."""
    keras.utils.set_random_seed(SEED)
    table = pd.read_csv(DATA)
    paths = np.asarray([str(DATA.parent / p) for p in table["path"]])
    angles = table["steering"].to_numpy(np.float32)
    train, val, test = splits(table)
    sample = np.stack([decode(p).numpy() for p in paths[train][np.unique(
        np.linspace(0, len(train) - 1, STATISTICS_FRAMES).astype(int))]])
    net = model(sample.shape[1:], sample.mean(axis=(0, 1, 2)).tolist(),
                np.maximum(sample.var(axis=(0, 1, 2)), 1e-6).tolist(),
                float(angles[train].mean()), float(angles[train].astype(np.float64).std()))
    steps = math.ceil(len(train) / BATCH) * epochs
    net.compile(optimizer=keras.optimizers.Adam(keras.optimizers.schedules.CosineDecay(LR, steps)),
                loss="mse", metrics=[keras.metrics.RootMeanSquaredError(name="rmse")])
    with tempfile.TemporaryDirectory() as folder:
        best = keras.callbacks.ModelCheckpoint(str(Path(folder) / "best.weights.h5"), monitor="val_loss",
                                               save_best_only=True, save_weights_only=True)
        start = time.perf_counter()
        net.fit(batches(paths[train], angles[train], training=True), epochs=epochs, verbose=verbose,
                validation_data=batches(paths[val], angles[val]),
                callbacks=[best] + curve_callbacks(curve, "val_rmse"))
        net.load_weights(best.filepath)
        seconds = time.perf_counter() - start
    rmse = net.evaluate(batches(paths[test], angles[test]), verbose=0)[1]
    print(f"plain keras: {seconds:.1f} s training, test RMSE {rmse:.5f}")
    return seconds, rmse


if __name__ == "__main__":
    main()
