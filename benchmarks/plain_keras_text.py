"""The default SMS spam model written as a plain Keras script: no cnn-tasks code at all.

Kim's CNN as `cnn-tasks train text-classification` builds it with defaults on the shipped SMS
spam CSV: a vocabulary of at most 20,000 words from the training split, texts cut or padded to
the 99th percentile of their token counts (rounded up to 8), 300-d embeddings drawn from
U(-0.25, 0.25), word dropout 0.1, convolutions of widths 3/4/5 with 100 maps each, max over
time, dropout 0.5, softmax; Adam at 1e-3 with cosine decay, batch 50, 10 epochs (the task's
size rule gives 10 on SMS). Splits are stratified like the pipeline's: 20 % test, then 10 % of
the rest for validation.

What differs, on purpose: words are split by Keras' TextVectorization in tf.data here, by
tensorflow-text inside the model there (so a saved model takes raw strings); that is part of
what the overhead ratio measures. Run: python benchmarks/plain_keras_text.py
"""

import os
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import tensorflow as tf  # noqa: E402
from keras import layers  # noqa: E402
from sklearn.model_selection import train_test_split  # noqa: E402
from twin_curve import callbacks as curve_callbacks  # noqa: E402

DATA = Path(__file__).resolve().parents[1] / "data" / "sms_spam" / "sms_spam.csv"
EPOCHS, BATCH, LR, SEED = 10, 50, 1e-3, 0  # the task defaults on SMS spam
VOCABULARY, EMBEDDING, WINDOWS, FILTERS, DROPOUT, WORD_DROPOUT = 20000, 300, (3, 4, 5), 100, 0.5, 0.1


def standardize(texts):
    """Lower case, punctuation split off as its own token (as the pipeline's tokenizer does)."""
    return tf.strings.regex_replace(tf.strings.lower(texts), r"([^\s\w])", r" \1 ")


class WordDropout(layers.Layer):
    """Replace real token ids (> 1) by the unknown id 1 with probability ``rate`` while training."""

    def __init__(self, rate, **kwargs):
        super().__init__(**kwargs)
        self.rate = rate
        self.seeds = keras.random.SeedGenerator(SEED)

    def call(self, ids, training=False):
        if not training:
            return ids
        drop = (keras.random.uniform(keras.ops.shape(ids), seed=self.seeds) < self.rate) & (ids > 1)
        return keras.ops.where(drop, keras.ops.ones_like(ids), ids)


def model(vocabulary_size, length, n_classes):
    ids = keras.Input((length,), dtype="int64")
    kept = WordDropout(WORD_DROPOUT)(ids)
    vectors = layers.Embedding(vocabulary_size, EMBEDDING,
                               embeddings_initializer=keras.initializers.RandomUniform(-0.25, 0.25))(kept)
    maps = [layers.Conv1D(FILTERS, w, padding="same", activation="relu")(vectors) for w in WINDOWS]
    mask = keras.ops.expand_dims(keras.ops.cast(keras.ops.not_equal(ids, 0), "float32"), -1)
    features = layers.Concatenate()(maps) * mask  # padding never wins the max over time
    sentence = layers.Dropout(DROPOUT)(layers.GlobalMaxPooling1D()(features))
    return keras.Model(ids, layers.Activation("softmax")(layers.Dense(n_classes)(sentence)))


def main(verbose=2, epochs=EPOCHS, curve=None):
    """Train and test; returns (training seconds, test accuracy). ``curve``, a list, receives
    (seconds since training began, validation accuracy) after each epoch."""
    keras.utils.set_random_seed(SEED)
    table = pd.read_csv(DATA)
    texts, labels = table["text"].astype(str).to_numpy(), table["label"].astype(str).to_numpy()
    names = sorted(set(labels))
    y = np.array([names.index(label) for label in labels], dtype="int32")
    x_rest, x_test, y_rest, y_test = train_test_split(texts, y, test_size=0.2, stratify=y, random_state=SEED)
    x_train, x_val, y_train, y_val = train_test_split(x_rest, y_rest, test_size=0.1, stratify=y_rest,
                                                      random_state=SEED)
    counts = [len(standardize(t).numpy().split()) for t in x_train]
    length = int(8 * np.ceil(np.quantile(counts, 0.99) / 8))
    vectorize = layers.TextVectorization(VOCABULARY, standardize=standardize, output_sequence_length=length)
    vectorize.adapt(x_train, batch_size=1024)

    def batches(x, y_, shuffle=False):
        data = tf.data.Dataset.from_tensor_slices((x, y_))
        if shuffle:
            data = data.shuffle(len(y_), seed=SEED)
        return data.batch(BATCH).map(lambda a, b: (vectorize(a), b)).prefetch(tf.data.AUTOTUNE)

    net = model(vectorize.vocabulary_size(), length, len(names))
    steps = int(np.ceil(len(y_train) / BATCH)) * epochs
    net.compile(optimizer=keras.optimizers.Adam(keras.optimizers.schedules.CosineDecay(LR, steps)),
                loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    start = time.perf_counter()
    net.fit(batches(x_train, y_train, shuffle=True), validation_data=batches(x_val, y_val),
            epochs=epochs, verbose=verbose,
            callbacks=curve_callbacks(curve, "val_accuracy"))
    seconds = time.perf_counter() - start
    accuracy = net.evaluate(batches(x_test, y_test), verbose=0)[1]
    print(f"plain keras: {seconds:.1f} s training, test accuracy {accuracy:.4f}")
    return seconds, accuracy


if __name__ == "__main__":
    main()
