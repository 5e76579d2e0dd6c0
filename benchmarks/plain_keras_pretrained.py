"""ImageNet EfficientNet-Lite0 fine-tuned on chest X-rays as a plain Keras script: no cnn-tasks
code at all.

The same network, weights, split, epochs, batch, optimisers, schedules, augmentation and
two phases as `cnn-tasks train image-classification --data pneumoniamnist --backbone
efficientnet_lite0 --backbone-weights imagenet --set image_size=64 --epochs 20` (a head warm-up
on the frozen backbone, then fine-tuning with its batch norm frozen), so
benchmarks/suite.py can compare training time. The ImageNet weights are read from the Keras
file cnn-tasks converts them into (``$KERAS_HOME/models/cnn_tasks/``): data, not code.
Run: python benchmarks/plain_keras_pretrained.py
"""

import os
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from keras import layers  # noqa: E402
from PIL import Image  # noqa: E402
from sklearn.model_selection import train_test_split  # noqa: E402
from twin_curve import callbacks as curve_callbacks  # noqa: E402

DATA = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "pneumoniamnist"
SIZE, EPOCHS, BATCH, LR, SHIFT, SEED = 64, 20, 32, 5e-4, 0.1, 0
WARMUP_SHARE, HEAD_LR_SCALE, FINE_TUNE_LR_SCALE, DROPOUT = 0.2, 10.0, 1.0, 0.3  # the pretrained recipe
STAGES = ((3, 1, 1, 16, 1), (3, 2, 6, 24, 2), (5, 2, 6, 40, 2), (3, 2, 6, 80, 3),
          (5, 1, 6, 112, 3), (5, 2, 6, 192, 4), (3, 1, 6, 320, 1))  # EfficientNet-B0's stages


def warmup_epochs(epochs):
    """The head's warm-up: a fifth of the epochs, at least one."""
    return max(1, round(epochs * WARMUP_SHARE))


def lite0(input_shape):
    """EfficientNet-Lite0 without its top; the input normalisation is its first layer."""
    def conv_bn(x, filters, kernel, stride, activate=True):
        x = layers.Conv2D(filters, kernel, strides=stride, padding="same", use_bias=False)(x)
        x = layers.BatchNormalization(epsilon=1e-3)(x)
        return layers.ReLU(6.0)(x) if activate else x

    inputs = keras.Input(input_shape)
    x = conv_bn(layers.Rescaling(255.0 / 128.0, offset=-127.0 / 128.0)(inputs), 32, 3, 2)
    for kernel, first_stride, expansion, filters, repeats in STAGES:
        for i in range(repeats):
            stride, channels = (first_stride if i == 0 else 1), x.shape[-1]
            y = conv_bn(x, channels * expansion, 1, 1) if expansion != 1 else x
            y = layers.DepthwiseConv2D(kernel, strides=stride, padding="same", use_bias=False)(y)
            y = layers.ReLU(6.0)(layers.BatchNormalization(epsilon=1e-3)(y))
            y = conv_bn(y, filters, 1, 1, activate=False)
            x = layers.Add()([x, y]) if stride == 1 and channels == filters else y
    return keras.Model(inputs, conv_bn(x, 1280, 1, 1))


def imagenet_lite0(channels):
    """The ImageNet backbone for ``channels`` (a grey image: the RGB stem summed)."""
    home = Path(os.environ.get("KERAS_HOME") or Path.home() / ".keras")
    (weights,) = sorted((home / "models" / "cnn_tasks").glob("efficientnet_lite0_imagenet_*[0-9a-f].weights.h5"))
    rgb = lite0((224, 224, 3))
    rgb.load_weights(str(weights))
    backbone = lite0((SIZE, SIZE, channels))
    for mine, theirs in zip(backbone.layers, rgb.layers):
        values = theirs.get_weights()
        if values and values[0].ndim == 4 and values[0].shape[2] == 3 and channels == 1:
            values[0] = values[0].sum(axis=2, keepdims=True)
        mine.set_weights(values)
    return backbone


def images_and_labels():
    """The class folders in file order, resized to SIZE (bilinear, antialiased)."""
    classes = sorted(p for p in DATA.iterdir() if p.is_dir())
    files = [(f, i) for i, folder in enumerate(classes) for f in sorted(folder.glob("*.png"))]
    x = np.stack([np.asarray(Image.open(f).convert("L"), np.float32)[..., None] / 255.0 for f, _ in files])
    x = np.clip(tf.image.resize(x, (SIZE, SIZE), antialias=True).numpy(), 0, 1)
    return x, np.array([label for _, label in files], np.int32)


def splits(y):
    """Stratified test 20 %, then validation 10 % of the rest, seed 0, as the task splits."""
    index = np.arange(len(y))
    rest, test = train_test_split(index, test_size=int(np.ceil(len(y) * 0.2)), random_state=SEED, stratify=y)
    rest, test = np.sort(rest), np.sort(test)
    train, val = train_test_split(rest, test_size=int(np.ceil(len(rest) * 0.1)), random_state=SEED,
                                  stratify=y[rest])
    return np.sort(train), np.sort(val), test


def main(verbose=2, epochs=EPOCHS, curve=None):
    """Train and test; returns (training seconds, test accuracy). ``curve``, a list, receives
    (seconds since training began, validation accuracy) after each epoch."""
    keras.utils.set_random_seed(SEED)
    x, y = images_and_labels()
    train, val, test = splits(y)
    shift = layers.RandomTranslation(SHIFT, SHIFT, fill_mode="constant", seed=SEED)
    flip = layers.RandomFlip("horizontal", seed=SEED)
    train_ds = (tf.data.Dataset.from_tensor_slices((x[train], y[train])).cache()
                .shuffle(len(train), seed=SEED).batch(BATCH)
                .map(lambda a, b: (flip(shift(a, training=True), training=True), b),
                     num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE))
    val_ds = tf.data.Dataset.from_tensor_slices((x[val], y[val])).cache().batch(BATCH).prefetch(tf.data.AUTOTUNE)
    backbone = imagenet_lite0(x.shape[-1])
    inputs = keras.Input(x.shape[1:])
    features = layers.BatchNormalization(momentum=0.9)(layers.GlobalAveragePooling2D()(backbone(inputs)))
    net = keras.Model(inputs, layers.Softmax()(layers.Dense(2)(layers.Dropout(DROPOUT)(features))))
    steps = int(np.ceil(len(train) / BATCH))
    best = Path(os.environ.get("TMPDIR", "/tmp")) / f"plain_pretrained_{os.getpid()}.weights.h5"
    checkpoint = keras.callbacks.ModelCheckpoint(str(best), monitor="val_loss", save_best_only=True,
                                                 save_weights_only=True)
    warmup = warmup_epochs(epochs)
    recorders = [checkpoint, *curve_callbacks(curve, "val_accuracy")]  # one of each across both phases
    start = time.perf_counter()
    for phase, (first, last, scale) in enumerate(((0, warmup, HEAD_LR_SCALE), (warmup, epochs, FINE_TUNE_LR_SCALE))):
        if last <= first:
            continue
        backbone.trainable = phase == 1
        for layer in backbone.layers:  # fine-tuning keeps the ImageNet batch-norm statistics
            if isinstance(layer, layers.BatchNormalization):
                layer.trainable = False
        schedule = keras.optimizers.schedules.CosineDecay(LR * scale, steps * (last - first))
        net.compile(optimizer=keras.optimizers.Adam(schedule), loss="sparse_categorical_crossentropy",
                    metrics=["accuracy"], jit_compile=False)
        net.fit(train_ds, validation_data=val_ds, epochs=last, initial_epoch=first, verbose=verbose,
                callbacks=recorders)
    seconds = time.perf_counter() - start
    net.load_weights(str(best))
    best.unlink()
    accuracy = net.evaluate(x[test], y[test], verbose=0)[1]
    print(f"plain keras: {seconds:.1f} s training, test accuracy {accuracy:.4f}")
    return seconds, accuracy


if __name__ == "__main__":
    main()
