"""Text backbones: token ids -> per-position feature maps -> one fixed-size sentence vector.

The text contract (the counterpart of the image pyramid): a functional ``keras.Model`` named
``"backbone"`` taking int token ids ``(batch, length)`` (0 = padding) and returning a dict

- ``"features"``: ``(batch, length, channels)``, non-negative, aligned with the tokens (``same``
  padding), zero at padding positions;
- ``"sentence"``: ``(batch, channels)``, the max over time of ``features``.

The first layer is the word-embedding table named ``"embedding"`` (pretrained vectors are set
there). A backbone with a character channel (``channels="char"`` or ``"word+char"``) takes a
dict ``{"token_ids": (batch, length), "char_ngrams": (batch, length, per_token)}`` instead, and
its :class:`CharNgramEmbedding` layer (named ``"char_ngram_embedding"``) says how the tokenizer
must hash them (:func:`char_ngram_spec`).

Each channel of ``features`` at position ``i`` sees tokens ``i - left .. i + right``; the
registry entry's ``spans(**options)`` gives ``(left, right)`` per channel, which is what lets a
report name the n-gram that won the max-over-time pooling for each channel.
"""

import dataclasses

import keras
import numpy as np
from keras import layers

from pipelines.backbones.base import BACKBONE_LAYER_NAME, register_backbone
from pipelines.tokenizer import CharNgrams

EMBEDDING_LAYER_NAME = "embedding"
CHAR_EMBEDDING_LAYER_NAME = "char_ngram_embedding"
DEFAULT_VOCABULARY = 20000
CHANNELS = ("word", "char", "word+char")


@keras.saving.register_keras_serializable(package="cnn_tasks")
class ZeroPadding(layers.Layer):
    """features * (ids != 0): padding positions can never win the max-over-time pooling."""

    def call(self, features, ids):
        mask = keras.ops.cast(keras.ops.not_equal(ids, 0), features.dtype)
        return features * keras.ops.expand_dims(mask, -1)

    def compute_output_shape(self, features_shape, ids_shape=None):
        return features_shape


@keras.saving.register_keras_serializable(package="cnn_tasks")
class WordDropout(layers.Layer):
    """While training, replace each real token id by the unknown id (1) with probability ``rate``.

    Unseen test words all map to the unknown token; without this its embedding is never trained
    (the vocabulary covers every training word), and small data sets are memorised word by word.
    """

    def __init__(self, rate, seed=None, **kwargs):
        super().__init__(**kwargs)
        self.rate = float(rate)
        self.seed = seed
        self._generator = keras.random.SeedGenerator(seed)

    def call(self, ids, training=False):
        if not training or self.rate <= 0:
            return ids
        drop = keras.random.uniform(keras.ops.shape(ids), seed=self._generator) < self.rate
        drop = keras.ops.logical_and(drop, keras.ops.greater(ids, 1))
        return keras.ops.where(drop, keras.ops.ones_like(ids), ids)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "rate": self.rate, "seed": self.seed}


@keras.saving.register_keras_serializable(package="cnn_tasks")
class CharNgramEmbedding(layers.Layer):
    """Hashed character n-gram ids (batch, length, per_token) -> one vector per token (batch,
    length, dim): the sum of its n-grams' embeddings over the square root of their number
    (fastText's subword vector, scaled so that a long word's vector does not grow with its
    length and each row still learns at the word table's pace; a plain mean learnt too slowly
    to move a misspelling). Id 0 pads; a token without n-grams (padding) gets zeros. Its
    ``spec`` is the hashing the tokenizer must apply."""

    def __init__(self, dim=64, buckets=32768, min_n=2, max_n=5, per_token=48, scale=0.25, **kwargs):
        super().__init__(**kwargs)
        self.spec = CharNgrams(buckets=int(buckets), min_n=int(min_n), max_n=int(max_n),
                               per_token=int(per_token))
        self.dim = int(dim)
        self.scale = float(scale)

    def build(self, input_shape):
        self.embeddings = self.add_weight(
            shape=(self.spec.buckets + 1, self.dim), name="embeddings",
            initializer=keras.initializers.RandomUniform(-self.scale, self.scale))

    def call(self, ids):
        vectors = keras.ops.take(self.embeddings, ids, axis=0)  # (batch, length, per_token, dim)
        present = keras.ops.expand_dims(keras.ops.cast(keras.ops.greater(ids, 0), vectors.dtype), -1)
        total = keras.ops.sum(vectors * present, axis=-2)
        return total / keras.ops.sqrt(keras.ops.maximum(keras.ops.sum(present, axis=-2), 1.0))

    def compute_output_shape(self, input_shape):
        return (*input_shape[:-1], self.dim)

    def get_config(self):
        return {**super().get_config(), "dim": self.dim, "buckets": self.spec.buckets,
                "min_n": self.spec.min_n, "max_n": self.spec.max_n,
                "per_token": self.spec.per_token, "scale": self.scale}


def char_ngram_spec(backbone):
    """The :class:`~pipelines.tokenizer.CharNgrams` a backbone's character channel expects (as a
    dict for the tokenizer's config), or None for a word-only backbone."""
    try:
        layer = backbone.get_layer(CHAR_EMBEDDING_LAYER_NAME)
    except ValueError:
        return None
    return dataclasses.asdict(layer.spec)


def same_span(kernel, dilation=1):
    """(left, right) tokens seen by a ``same``-padded 1-D convolution (Keras pads right first)."""
    total = (kernel - 1) * dilation
    return total // 2, total - total // 2


def _text_backbone(inputs, ids, features, dropout):
    features = ZeroPadding(name="zero_padding")(features, ids)
    sentence = layers.GlobalMaxPooling1D(name="max_over_time")(features)
    if dropout:
        sentence = layers.Dropout(dropout, name="sentence_dropout")(sentence)
    return keras.Model(inputs, {"features": features, "sentence": sentence}, name=BACKBONE_LAYER_NAME)


def _inputs(input_shape, vocab_size, embedding_dim, embedding_scale, word_dropout,
            channels="word", char=None):
    """The backbone's inputs and the per-token vectors the convolutions read.

    ``word``: token ids and their embeddings, initialised U(-scale, scale) (Kim 2014: 0.25).
    ``char``: a vector from each token's hashed character n-grams (``char`` holds
    :class:`CharNgramEmbedding`'s arguments). ``word+char``: both, concatenated per token.
    Returns (inputs, token ids, vectors)."""
    check_channels(channels, char)
    length = input_shape[0] if input_shape else None
    ids = keras.Input((length,), dtype="int32", name="token_ids")
    parts, inputs = [], ids
    if "word" in channels.split("+"):
        kept = WordDropout(word_dropout, name="word_dropout")(ids) if word_dropout else ids
        initializer = keras.initializers.RandomUniform(-float(embedding_scale), float(embedding_scale))
        parts.append(layers.Embedding(int(vocab_size), int(embedding_dim),
                                      embeddings_initializer=initializer,
                                      name=EMBEDDING_LAYER_NAME)(kept))
    if "char" in channels.split("+"):
        char = dict(char or {})
        grams = keras.Input((length, int(char.get("per_token", 48))), dtype="int32", name="char_ngrams")
        inputs = {"token_ids": ids, "char_ngrams": grams}
        parts.append(CharNgramEmbedding(scale=embedding_scale, name=CHAR_EMBEDDING_LAYER_NAME,
                                        **char)(grams))
    vectors = parts[0] if len(parts) == 1 else layers.Concatenate(name="word_and_char")(parts)
    return inputs, ids, vectors


def check_channels(channels="word", char=None, **_):
    """Refuse a channel name or character n-gram scheme that cannot be built (ValueError)."""
    if channels not in CHANNELS:
        raise ValueError(f"channels must be one of {', '.join(CHANNELS)}, got {channels!r}")
    if char is not None and not isinstance(char, dict):
        raise ValueError(f"char must be a table of n-gram options, got {char!r}")
    scheme = {k: v for k, v in (char or {}).items() if k in ("buckets", "min_n", "max_n", "per_token")}
    try:
        CharNgrams(**{k: int(v) for k, v in scheme.items()})
    except (TypeError, ValueError) as error:
        raise ValueError(f"char={char}: {error}") from None


def text_cnn_spans(windows=(3, 4, 5), filters=100, **_):
    return np.array([same_span(int(w)) for w in windows for _ in range(int(filters))])


@register_backbone("text_cnn", modality="text", spans=text_cnn_spans,
                   check_options=check_channels,
                   note="Kim (2014): embeddings, parallel conv windows 3/4/5 x 100 maps + ReLU, "
                        "max over time, dropout 0.5; channels word | char | word+char "
                        "(hashed character 2-5-gram vectors per word)")
def text_cnn(input_shape, vocab_size=DEFAULT_VOCABULARY, embedding_dim=300, windows=(3, 4, 5),
             filters=100, dropout=0.5, embedding_scale=0.25, word_dropout=0.1, channels="word",
             char=None):
    inputs, ids, vectors = _inputs(input_shape, vocab_size, embedding_dim, embedding_scale,
                                   word_dropout, channels, char)
    maps = [layers.Conv1D(int(filters), int(w), padding="same", activation="relu",
                          name=f"conv_w{int(w)}")(vectors) for w in windows]
    features = maps[0] if len(maps) == 1 else layers.Concatenate(name="windows")(maps)
    return _text_backbone(inputs, ids, features, dropout)


def dilated_cnn_spans(kernel=3, dilations=(1, 2, 4, 8), filters=128, **_):
    spans = np.array([same_span(int(kernel), int(d)) for d in dilations]).sum(axis=0)
    spans += same_span(int(kernel))  # the stem convolution
    return np.tile(spans, (int(filters), 1))


@register_backbone("dilated_cnn", modality="text", spans=dilated_cnn_spans,
                   check_options=check_channels,
                   note="residual stack of dilated conv1d (dilations 1/2/4/8, 33-token receptive "
                        "field) with layer norm, max over time")
def dilated_cnn(input_shape, vocab_size=DEFAULT_VOCABULARY, embedding_dim=128, filters=128,
                kernel=3, dilations=(1, 2, 4, 8), dropout=0.5, embedding_scale=0.25,
                word_dropout=0.1, channels="word", char=None):
    """Wider context than Kim's windows at the same cost per layer (Yu & Koltun style dilations)."""
    inputs, ids, vectors = _inputs(input_shape, vocab_size, embedding_dim, embedding_scale,
                                   word_dropout, channels, char)
    x = layers.Conv1D(int(filters), int(kernel), padding="same", activation="relu", name="stem")(vectors)
    for i, rate in enumerate(dilations, start=1):
        y = layers.LayerNormalization(name=f"block{i}_norm")(x)
        y = layers.Conv1D(int(filters), int(kernel), padding="same", dilation_rate=int(rate),
                          activation="relu", name=f"block{i}_conv")(y)
        x = layers.Add(name=f"block{i}_add")([x, y])
    features = layers.ReLU(name="features_relu")(x)
    return _text_backbone(inputs, ids, features, dropout)
