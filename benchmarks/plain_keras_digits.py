"""The default digits model written as a plain Keras script: no cnn-tasks code at all.

Same layers, split, epochs, batch size, optimizer, schedule and augmentation as
`cnn-tasks train image-classification` with defaults, so benchmarks/pipeline_vs_plain.py can
compare training time. Run: python benchmarks/plain_keras_digits.py
"""

import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from keras import layers  # noqa: E402
from sklearn.datasets import load_digits  # noqa: E402
from sklearn.model_selection import train_test_split  # noqa: E402
from twin_curve import callbacks as curve_callbacks  # noqa: E402

EPOCHS, BATCH, LR, SHIFT, SEED = 40, 32, 5e-4, 0.1, 0  # the task defaults


def model(batch_norm):
    inputs = keras.Input((8, 8, 1))
    x = inputs
    for width in (32, 64, 128):
        for _ in range(2):
            x = layers.Conv2D(width, 3, padding="same", use_bias=not batch_norm)(x)
            if batch_norm:
                x = layers.BatchNormalization(momentum=0.9)(x)
            x = layers.ReLU()(x)
        x = layers.MaxPooling2D(2, strides=2, padding="same")(x)
    x = layers.GlobalAveragePooling2D()(x)
    x = layers.Dropout(0.3)(x)
    outputs = layers.Activation("softmax")(layers.Dense(10)(x))
    return keras.Model(inputs, outputs)


def main(batch_norm=True, verbose=2, epochs=EPOCHS, curve=None):
    """Train and test; returns (training seconds, test accuracy). ``curve``, a list, receives
    (seconds since training began, validation accuracy) after each epoch."""
    keras.utils.set_random_seed(SEED)
    digits = load_digits()
    x = (digits.images / 16.0).astype("float32")[..., None]
    y = digits.target.astype("int32")
    x_rest, x_test, y_rest, y_test = train_test_split(x, y, test_size=0.2, stratify=y, random_state=SEED)
    x_train, x_val, y_train, y_val = train_test_split(x_rest, y_rest, test_size=0.1, stratify=y_rest,
                                                      random_state=SEED)
    shift = layers.RandomTranslation(SHIFT, SHIFT, fill_mode="constant", seed=SEED)
    train = (tf.data.Dataset.from_tensor_slices((x_train, y_train)).cache()
             .shuffle(len(y_train), seed=SEED).batch(BATCH)
             .map(lambda a, b: (shift(a, training=True), b), num_parallel_calls=tf.data.AUTOTUNE)
             .prefetch(tf.data.AUTOTUNE))
    val = tf.data.Dataset.from_tensor_slices((x_val, y_val)).cache().batch(BATCH).prefetch(tf.data.AUTOTUNE)
    net = model(batch_norm)
    steps = int(np.ceil(len(y_train) / BATCH)) * epochs
    net.compile(optimizer=keras.optimizers.Adam(keras.optimizers.schedules.CosineDecay(LR, steps)),
                loss="sparse_categorical_crossentropy", metrics=["accuracy"], jit_compile=False)
    start = time.perf_counter()
    net.fit(train, validation_data=val, epochs=epochs, verbose=verbose,
            callbacks=curve_callbacks(curve, "val_accuracy"))
    seconds = time.perf_counter() - start
    accuracy = net.evaluate(x_test, y_test, verbose=0)[1]
    print(f"plain keras: {seconds:.1f} s training, test accuracy {accuracy:.4f}")
    return seconds, accuracy


if __name__ == "__main__":
    main()
