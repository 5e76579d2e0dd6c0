"""The default segmentation model written as a plain Keras script: no cnn-tasks code at all.

A 2D U-Net on the shipped hippocampus MRI (data/hippocampus, MSD Task04, NIfTI), as
`cnn-tasks train medical-segmentation` builds it with defaults: cases split at random (seed 0,
test 20 %, validation 10 % of the rest, so slices of one volume stay on one side); each volume
z-scored on its own and cut into slices along its last axis; every slice with foreground kept
for training and a quarter of the others (one seeded draw per slice); slices resized to 48x48
(bilinear, masks nearest). The network is the registry's basic_cnn (widths 16/32/64, two
conv3x3-BN-ReLU a stage, 2x2 max pooling) under a U-Net decoder (bilinear upsampling, skip
concatenation, two conv3x3-BN-ReLU per stage, widths 32/16/16), softmax over 3 classes; loss
cross-entropy + (1 - soft Dice of the foreground classes); Adam at 1e-3 with cosine decay,
batch 32, 12 epochs, the best validation epoch's weights restored. The test figure is the mean
foreground Dice per case, each case predicted slice by slice and the probabilities resized back
to its own size, as metrics.json's ``dice``.

Run: python benchmarks/plain_keras_segmentation.py
"""

import math
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import nibabel as nib  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from keras import layers  # noqa: E402
from sklearn.model_selection import train_test_split  # noqa: E402
from twin_curve import callbacks as curve_callbacks  # noqa: E402

DATA = Path(__file__).resolve().parents[1] / "data" / "hippocampus"
EPOCHS, BATCH, LR, SEED = 12, 32, 1e-3, 0  # the task defaults in 2D
TEST_FRACTION, VAL_FRACTION = 0.2, 0.1
SIZE, SLICE_AXIS, EMPTY_SLICE_FRACTION = 48, 2, 0.25
WIDTHS, DECODER_WIDTH, CLASSES = (16, 32, 64), 16, 3
SHUFFLE_BUFFER = 10_000


def case_files():
    """(image, label) NIfTI paths, in file-name order."""
    images = sorted(p for p in (DATA / "imagesTr").iterdir() if p.name.endswith(".nii.gz")
                    and not p.name.startswith("."))
    return [(path, DATA / "labelsTr" / path.name) for path in images]


def splits(n):
    """Case numbers of train, validation and test: scikit-learn's split, rounded up as the
    pipeline rounds."""
    rest, test = train_test_split(np.arange(n), test_size=math.ceil(n * TEST_FRACTION), random_state=SEED)
    rest = np.sort(rest)
    train, val = train_test_split(rest, test_size=math.ceil(len(rest) * VAL_FRACTION), random_state=SEED)
    return np.sort(train), np.sort(val), np.sort(test)


def read_case(image_path, label_path):
    """(z-scored volume float32, labels int16), both as stored (x, y, z)."""
    volume = np.asarray(nib.load(str(image_path)).dataobj, np.float32)
    labels = np.rint(np.asarray(nib.load(str(label_path)).dataobj)).astype(np.int16)
    std = float(volume.std())
    return (volume - float(volume.mean())) / (std if std > 0 else 1.0), labels


def resize(images, method):
    return tf.image.resize(images, (SIZE, SIZE), method=method).numpy()


def training_slices(cases):
    """Resized (images (n, 48, 48, 1), masks (n, 48, 48)) of the kept slices of ``cases``."""
    rng = np.random.default_rng(0)
    images, masks = [], []
    for volume, labels in cases:
        slices, slice_masks = np.moveaxis(volume, SLICE_AXIS, 0), np.moveaxis(labels, SLICE_AXIS, 0)
        keep = slice_masks.reshape(len(slice_masks), -1).any(axis=1) | (rng.random(len(slice_masks)) < EMPTY_SLICE_FRACTION)
        if not keep.any():
            keep[:] = True
        images.append(resize(slices[keep][..., None], "bilinear"))
        masks.append(resize(slice_masks[keep][..., None].astype(np.float32), "nearest")[..., 0].astype(np.int32))
    return np.concatenate(images), np.concatenate(masks)


def batches(images, masks, training=False):
    data = tf.data.Dataset.from_tensor_slices((images, masks)).cache()
    if training:
        data = data.shuffle(min(len(masks), SHUFFLE_BUFFER), seed=SEED)
    return data.batch(BATCH).prefetch(tf.data.AUTOTUNE)


def conv_block(x, width):
    for _ in range(2):
        x = layers.Conv2D(width, 3, padding="same", use_bias=False)(x)
        x = layers.BatchNormalization(momentum=0.9)(x)
        x = layers.ReLU()(x)
    return x


def model():
    inputs = keras.Input((SIZE, SIZE, 1))
    x, skips = inputs, []
    for width in WIDTHS:
        x = layers.MaxPooling2D(2, strides=2, padding="same")(conv_block(x, width))
        skips.append(x)
    for k in range(len(WIDTHS) - 1, 0, -1):  # from the deepest level up to the first
        x = layers.UpSampling2D(2, interpolation="bilinear")(x)
        x = conv_block(layers.Concatenate()([x, skips[k - 1]]), DECODER_WIDTH * 2 ** (k - 1))
    x = conv_block(layers.UpSampling2D(2, interpolation="bilinear")(x), DECODER_WIDTH)
    return keras.Model(inputs, layers.Activation("softmax")(layers.Conv2D(CLASSES, 1)(x)))


def dice_cross_entropy(y_true, y_pred, smooth=1.0):
    onehot = tf.one_hot(tf.cast(y_true, tf.int32), CLASSES)
    y_pred = tf.clip_by_value(y_pred, 1e-7, 1.0)
    ce = tf.reduce_mean(-tf.reduce_sum(onehot * tf.math.log(y_pred), axis=-1), axis=(1, 2))
    overlap = tf.reduce_sum(onehot * y_pred, axis=(1, 2))[:, 1:]
    total = tf.reduce_sum(onehot, axis=(1, 2))[:, 1:] + tf.reduce_sum(y_pred, axis=(1, 2))[:, 1:]
    return ce + 1.0 - tf.reduce_mean((2.0 * overlap + smooth) / (total + smooth), axis=-1)


class EpochDice(keras.metrics.Metric):
    """Hard Dice per foreground class over every pixel of the epoch, averaged over classes."""

    def __init__(self, name="dice"):
        super().__init__(name=name)
        self.overlap = self.add_variable((CLASSES - 1,), initializer="zeros")
        self.total = self.add_variable((CLASSES - 1,), initializer="zeros")

    def update_state(self, y_true, y_pred, sample_weight=None):
        truth = tf.one_hot(tf.cast(y_true, tf.int32), CLASSES)[..., 1:]
        predicted = tf.one_hot(tf.argmax(y_pred, axis=-1), CLASSES)[..., 1:]
        self.overlap.assign_add(tf.reduce_sum(truth * predicted, axis=(0, 1, 2)))
        self.total.assign_add(tf.reduce_sum(truth, axis=(0, 1, 2)) + tf.reduce_sum(predicted, axis=(0, 1, 2)))

    def result(self):
        return tf.reduce_mean(tf.where(self.total > 0, 2.0 * self.overlap / tf.maximum(self.total, 1.0), 1.0))

    def reset_state(self):
        self.overlap.assign(tf.zeros_like(self.overlap))
        self.total.assign(tf.zeros_like(self.total))


def case_dice(net, volume, labels):
    """Mean foreground Dice of one case predicted slice by slice at its own size."""
    slices = np.moveaxis(volume, SLICE_AXIS, 0)[..., None]
    proba = net.predict(resize(slices, "bilinear"), batch_size=BATCH, verbose=0)
    predicted = np.moveaxis(tf.image.resize(proba, slices.shape[1:3], method="bilinear").numpy().argmax(-1),
                            0, SLICE_AXIS)
    scores = []
    for c in range(1, CLASSES):
        truth, guess = labels == c, predicted == c
        total = truth.sum() + guess.sum()
        scores.append(1.0 if total == 0 else 2.0 * (truth & guess).sum() / total)
    return float(np.mean(scores))


def main(verbose=2, epochs=EPOCHS, curve=None):
    """Train and test; returns (training seconds, test mean foreground Dice). ``curve``, a
    list, receives (seconds since training began, validation Dice) after each epoch."""
    keras.utils.set_random_seed(SEED)
    cases = [read_case(*files) for files in case_files()]
    train, val, test = splits(len(cases))
    x_train, y_train = training_slices([cases[i] for i in train])
    x_val, y_val = training_slices([cases[i] for i in val])
    net = model()
    steps = math.ceil(len(y_train) / BATCH) * epochs
    net.compile(optimizer=keras.optimizers.Adam(keras.optimizers.schedules.CosineDecay(LR, steps)),
                loss=dice_cross_entropy, metrics=[EpochDice()])
    with tempfile.TemporaryDirectory() as folder:
        best = keras.callbacks.ModelCheckpoint(str(Path(folder) / "best.weights.h5"), monitor="val_loss",
                                               save_best_only=True, save_weights_only=True)
        start = time.perf_counter()
        net.fit(batches(x_train, y_train, training=True), epochs=epochs, verbose=verbose,
                validation_data=batches(x_val, y_val), callbacks=[best] + curve_callbacks(curve, "val_dice"))
        net.load_weights(best.filepath)
        seconds = time.perf_counter() - start
    dice = float(np.mean([case_dice(net, *cases[i]) for i in test]))
    print(f"plain keras: {seconds:.1f} s training, test Dice {dice:.4f}")
    return seconds, dice


if __name__ == "__main__":
    main()
