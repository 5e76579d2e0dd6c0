"""The default captioner written as a plain Keras script: no cnn-tasks code but the data.

`cnn-tasks train captioning` with defaults, on builtin:shapes: 2,000 generated 32x32 images
with 3-5 captions each (the task's own generator is imported: it makes the data both sides
read, and is not what is timed). Split by image, seed 0: 20 % test, 10 % of the rest for
validation. Words are lower-cased letter and digit runs; the vocabulary keeps words seen twice
in the training captions, most frequent first. The encoder is the registry's basic_cnn restated
(widths 16/32/64, two conv3x3-BN-ReLU a stage, 2x2 max pooling); its 4x4 grid of 64-d vectors is
projected to 128-d (ReLU). The decoder is Show, Attend and Tell: 128-d word embeddings, additive
attention of 128 units over the grid from the previous state, a 256-unit GRU fed [word, context],
the next word from [state, context], dropout 0.3 on embeddings and outputs, initial state from
the mean annotation; teacher forcing with tf.scan over the words. Cross-entropy ignoring
padding; Adam at 2e-3 with cosine decay, batch 64, 12 epochs, the best validation loss's
weights restored. After every epoch the validation images are captioned greedily and scored
with pycocoevalcap's BLEU-4, as the pipeline logs ``val_bleu4``; the test figure is BLEU-4 of
greedy captions (the pipeline's report leads with beam 3; its greedy figure is in the report).

Run: python benchmarks/plain_keras_captioning.py
"""

import collections
import math
import os
import re
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from keras import layers, ops  # noqa: E402
from pycocoevalcap.bleu.bleu import Bleu  # noqa: E402
from sklearn.model_selection import train_test_split  # noqa: E402
from twin_curve import callbacks as curve_callbacks  # noqa: E402

from tasks.captioning.shapes import generate  # noqa: E402  (the data only)

EPOCHS, BATCH, LR, SEED = 12, 64, 2e-3, 0  # the task defaults
TEST_FRACTION, VAL_FRACTION, MIN_COUNT, MAX_LENGTH = 0.2, 0.1, 2, 20
WIDTHS, FEATURE_DIM, EMBEDDING, UNITS, ATTENTION, DROPOUT = (16, 32, 64), 128, 128, 256, 128, 0.3
PAD, UNK, START, END = 0, 1, 2, 3


def words(caption):
    return re.findall(r"[^\W_]+", caption.lower())


def vocabulary(captions):
    counts = collections.Counter(w for c in captions for w in words(c))
    kept = sorted((w for w, n in counts.items() if n >= MIN_COUNT), key=lambda w: (-counts[w], w))
    return ["[PAD]", "[UNK]", "<start>", "<end>"] + kept


def token_ids(captions, index):
    rows = [[START] + [index.get(w, UNK) for w in words(c)[:MAX_LENGTH]] + [END] for c in captions]
    ids = np.zeros((len(rows), max(map(len, rows))), np.int32)
    for i, row in enumerate(rows):
        ids[i, :len(row)] = row
    return ids


def splits(n):
    rest, test = train_test_split(np.arange(n), test_size=math.ceil(n * TEST_FRACTION), random_state=SEED)
    rest = np.sort(rest)
    train, val = train_test_split(rest, test_size=math.ceil(len(rest) * VAL_FRACTION), random_state=SEED)
    return np.sort(train), np.sort(val), np.sort(test)


class Decoder(layers.Layer):
    """(annotations (B, N, D), input words (B, T)) -> logits (B, T, V); ``step`` for decoding."""

    def __init__(self, vocabulary_size, **kwargs):
        super().__init__(**kwargs)
        self.embed = layers.Embedding(vocabulary_size, EMBEDDING)
        self.keys = layers.Dense(ATTENTION, use_bias=False)
        self.query = layers.Dense(ATTENTION)
        self.energy = layers.Dense(1, use_bias=False)
        self.gru = layers.GRUCell(UNITS)
        self.start_state = layers.Dense(UNITS, activation="tanh")
        self.drop = layers.Dropout(DROPOUT)
        self.words = layers.Dense(vocabulary_size)

    def attend_and_advance(self, annotations, keys, word, state):
        energy = self.energy(ops.tanh(keys + ops.expand_dims(self.query(state), 1)))
        weights = ops.softmax(ops.squeeze(energy, -1), axis=-1)
        context = ops.sum(annotations * ops.expand_dims(weights, -1), axis=1)
        state, _ = self.gru(ops.concatenate([word, context], -1), state)
        return ops.concatenate([state, context], -1), state

    def call(self, annotations, tokens, training=False):
        keys = self.keys(annotations)
        words_in = self.drop(self.embed(tokens), training=training)

        def one(carry, word):
            return self.attend_and_advance(annotations, keys, word, carry[1])

        state = self.start_state(ops.mean(annotations, 1))
        blank = ops.zeros_like(ops.concatenate([state, annotations[:, 0]], -1))
        outputs = tf.scan(one, ops.transpose(words_in, (1, 0, 2)), initializer=(blank, state))[0]
        return self.words(self.drop(ops.transpose(outputs, (1, 0, 2)), training=training))


def captioner(vocabulary_size):
    image = keras.Input((32, 32, 3))
    x = image
    for width in WIDTHS:
        for _ in range(2):
            x = layers.Conv2D(width, 3, padding="same", use_bias=False)(x)
            x = layers.ReLU()(layers.BatchNormalization(momentum=0.9)(x))
        x = layers.MaxPooling2D(2, padding="same")(x)
    grid = layers.Reshape((-1, WIDTHS[-1]))(x)
    annotations = layers.Dense(FEATURE_DIM, activation="relu", name="annotations")(grid)
    tokens = keras.Input((None,), dtype="int32")
    decoder = Decoder(vocabulary_size, name="decoder")
    return keras.Model([image, tokens], decoder(annotations, tokens)), keras.Model(image, annotations), decoder


def greedy_writer(encoder, decoder, names):
    """images -> greedy captions, a batch at a time (padding, unknown and start never emitted);
    traced once, reused every epoch."""
    @tf.function
    def write(images):
        annotations = encoder(images, training=False)
        keys = decoder.keys(annotations)
        state = decoder.start_state(ops.mean(annotations, 1))
        word = tf.fill([tf.shape(images)[0]], START)
        chosen = []
        for _ in range(MAX_LENGTH + 1):
            out, state = decoder.attend_and_advance(annotations, keys, decoder.embed(word), state)
            logits = decoder.words(out)
            logits += tf.constant([-1e9, -1e9, -1e9] + [0.0] * (len(names) - 3))
            word = tf.cast(tf.argmax(logits, -1), tf.int32)
            chosen.append(word)
        return tf.stack(chosen, 1)

    def captions(images):
        texts = []
        for begin in range(0, len(images), 256):
            for row in write(tf.constant(images[begin:begin + 256])).numpy():
                ended = list(row).index(END) if END in row else len(row)
                texts.append(" ".join(names[i] for i in row[:ended]))
        return texts

    return captions


def bleu4(references, hypotheses):
    gts = {i: [" ".join(words(r)) for r in refs] for i, refs in enumerate(references)}
    res = {i: [" ".join(words(h)) or "<empty>"] for i, h in enumerate(hypotheses)}
    return float(Bleu(4).compute_score(gts, res, verbose=0)[0][3])


class ValidationBleu(keras.callbacks.Callback):
    """val_bleu4 after every epoch (before the checkpoint and the curve read the logs)."""

    def __init__(self, write, images, references):
        super().__init__()
        self.write, self.images, self.references = write, images, references

    def on_epoch_end(self, epoch, logs=None):
        logs["val_bleu4"] = bleu4(self.references, self.write(self.images))


def pairs(references, index, rows):
    """tf.data of (image row, words in, words out): every caption of every image in ``rows``."""
    image_of = np.repeat(rows, [len(references[i]) for i in rows])
    ids = token_ids([c for i in rows for c in references[i]], index)
    return tf.data.Dataset.from_tensor_slices((image_of, ids[:, :-1], ids[:, 1:])), len(ids)


def main(verbose=2, epochs=EPOCHS, curve=None):
    """Train and test; returns (training seconds, test BLEU-4 of greedy captions). ``curve``, a
    list, receives (seconds since training began, validation BLEU-4) after each epoch."""
    keras.utils.set_random_seed(SEED)
    images, references = generate()
    train, val, test = splits(len(images))
    names = vocabulary([c for i in train for c in references[i]])
    index = {w: i for i, w in enumerate(names)}

    table = tf.constant(images)

    def batches(rows, shuffle):
        data, n = pairs(references, index, rows)
        if shuffle:
            data = data.shuffle(n, seed=SEED)
        data = data.batch(BATCH).map(lambda i, x, y: ((tf.gather(table, i), x), y))
        return data.prefetch(tf.data.AUTOTUNE), n

    train_ds, n_train = batches(train, True)
    val_ds, _ = batches(val, False)
    net, encoder, decoder = captioner(len(names))
    steps = math.ceil(n_train / BATCH) * epochs
    net.compile(optimizer=keras.optimizers.Adam(keras.optimizers.schedules.CosineDecay(LR, steps)),
                loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True, ignore_class=PAD))
    with tempfile.TemporaryDirectory() as folder:
        best = os.path.join(folder, "best.weights.h5")
        write = greedy_writer(encoder, decoder, names)
        callbacks = [ValidationBleu(write, images[val], [references[i] for i in val]),
                     *curve_callbacks(curve, "val_bleu4"),
                     keras.callbacks.ModelCheckpoint(best, save_best_only=True, save_weights_only=True)]
        start = time.perf_counter()
        net.fit(train_ds, validation_data=val_ds, epochs=epochs, verbose=verbose, callbacks=callbacks)
        seconds = time.perf_counter() - start
        net.load_weights(best)
    score = bleu4([references[i] for i in test], write(images[test]))
    print(f"plain keras: {seconds:.1f} s training, test BLEU-4 (greedy) {score:.4f}")
    return seconds, score


if __name__ == "__main__":
    main()
