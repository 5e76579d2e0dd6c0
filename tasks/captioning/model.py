"""Show, Attend and Tell on the registry: a backbone's feature grid, an attention RNN decoder.

The encoder is any image backbone; one level of its ``pyramid_outputs`` (P4 or P5 by default the
deepest) is flattened into a set of annotation vectors and projected. The decoder embeds the
previous word, attends over the annotation vectors with additive (Bahdanau) attention using the
previous hidden state, feeds ``[embedding, context]`` to a GRU or LSTM cell, and predicts the next
word from ``[hidden, context]`` (a "deep output"). Training uses teacher forcing: the whole
shifted caption goes in at once and ``tf.scan`` runs the recurrence. Inference
(:mod:`tasks.captioning.decoding`) calls :meth:`AttentionDecoder.step` one word at a time.

Token ids: 0 padding, 1 unknown, 2 start, 3 end (see :mod:`tasks.captioning.vocabulary`).
"""

import keras
from keras import layers, ops

from pipelines.backbones import pyramid_outputs

ENCODER_OUTPUT = "encoder_projection"
DECODER = "decoder"


@keras.saving.register_keras_serializable(package="cnn_tasks")
class AdditiveAttention(layers.Layer):
    """score_i = v^T tanh(W_f f_i + W_h h); weights = softmax over the grid positions i."""

    def __init__(self, units, **kwargs):
        super().__init__(**kwargs)
        self.units = units
        self.key_projection = layers.Dense(units, use_bias=False, name="key_projection")
        self.query_projection = layers.Dense(units, name="query_projection")
        self.score = layers.Dense(1, use_bias=False, name="score")

    def build(self, features_shape, state_shape=None):
        self.key_projection.build(features_shape)
        self.query_projection.build(state_shape or (None, self.units))
        self.score.build((None, None, self.units))

    def keys(self, features):
        """W_f f_i, computed once per image rather than at every word."""
        return self.key_projection(features)

    def call(self, features, keys, state):
        query = ops.expand_dims(self.query_projection(state), 1)
        weights = ops.softmax(ops.squeeze(self.score(ops.tanh(keys + query)), -1), axis=-1)
        context = ops.sum(features * ops.expand_dims(weights, -1), axis=1)
        return context, weights

    def get_config(self):
        return {**super().get_config(), "units": self.units}


@keras.saving.register_keras_serializable(package="cnn_tasks")
class AttentionDecoder(layers.Layer):
    """(annotation vectors (B, N, D), input tokens (B, T)) -> next-word logits (B, T, V)."""

    def __init__(self, vocabulary_size, embedding_dim=128, units=256, attention_units=128,
                 rnn="gru", dropout=0.3, **kwargs):
        super().__init__(**kwargs)
        if rnn not in ("gru", "lstm"):
            raise ValueError(f"rnn must be 'gru' or 'lstm', not {rnn!r}")
        self.vocabulary_size, self.embedding_dim, self.units = vocabulary_size, embedding_dim, units
        self.attention_units, self.rnn, self.dropout_rate = attention_units, rnn, dropout
        self.embedding = layers.Embedding(vocabulary_size, embedding_dim, name="embedding")
        self.attention = AdditiveAttention(attention_units, name="attention")
        cell = layers.GRUCell if rnn == "gru" else layers.LSTMCell
        self.cell = cell(units, name=f"{rnn}_cell")
        self.init_state = [layers.Dense(units, activation="tanh", name=f"init_{k}")
                           for k in (("h",) if rnn == "gru" else ("h", "c"))]
        self.dropout = layers.Dropout(dropout)
        self.output_projection = layers.Dense(vocabulary_size, name="word_logits")

    def build(self, features_shape, tokens_shape=None):
        depth = features_shape[-1]
        self.embedding.build(tokens_shape or (None, None))
        self.attention.build(features_shape, (None, self.units))
        self.cell.build((None, self.embedding_dim + depth))
        for dense in self.init_state:
            dense.build((None, depth))
        self.output_projection.build((None, None, self.units + depth))

    def initial_state(self, features):
        """Hidden (and cell) state from the mean annotation vector, as in Show, Attend and Tell."""
        mean = ops.mean(features, axis=1)
        return [dense(mean) for dense in self.init_state]

    def _advance(self, features, keys, embedded, state):
        context, weights = self.attention(features, keys, state[0])
        hidden, new_state = self.cell(ops.concatenate([embedded, context], axis=-1), state)
        new_state = list(new_state) if isinstance(new_state, (list, tuple)) else [new_state]
        return ops.concatenate([hidden, context], axis=-1), new_state, weights

    def call(self, features, tokens, training=False):
        keys = self.attention.keys(features)
        embedded = self.dropout(self.embedding(tokens), training=training)

        import tensorflow as tf  # tf.scan: keras.ops.scan (Keras 3.15, TF backend) mis-sizes
        # outputs whose shape differs from the carry's

        def one_word(carry, word):
            outputs, state, _ = self._advance(features, keys, word, list(carry[1:]))
            return (outputs, *state)

        state = self.initial_state(features)
        first = ops.zeros_like(ops.concatenate([state[0], features[:, 0]], axis=-1))
        outputs = tf.scan(one_word, ops.transpose(embedded, (1, 0, 2)), initializer=(first, *state))[0]
        outputs = ops.transpose(outputs, (1, 0, 2))
        return self.output_projection(self.dropout(outputs, training=training))

    def step(self, features, keys, tokens, state):
        """One word for inference: (logits (B, V), new state, attention weights (B, N))."""
        outputs, state, weights = self._advance(features, keys, self.embedding(tokens), state)
        return self.output_projection(outputs), state, weights

    def compute_output_shape(self, features_shape, tokens_shape):
        return tuple(tokens_shape) + (self.vocabulary_size,)

    def get_config(self):
        return {**super().get_config(), "vocabulary_size": self.vocabulary_size,
                "embedding_dim": self.embedding_dim, "units": self.units,
                "attention_units": self.attention_units, "rnn": self.rnn, "dropout": self.dropout_rate}


def feature_level(backbone, requested="auto"):
    """The pyramid level to attend over: the deepest by default, or the one asked for."""
    levels = pyramid_outputs(backbone)
    if requested == "auto":
        return max(levels, key=lambda level: int(level[1:]))
    if requested not in levels:
        from pipelines.errors import UserError

        raise UserError(f"--set feature_level={requested}: the backbone has {', '.join(sorted(levels))}")
    return requested


def build_captioner(backbone, vocabulary_size, *, level="auto", feature_dim=128, embedding_dim=128,
                    units=256, attention_units=128, rnn="gru", dropout=0.3):
    """(image, input tokens) -> next-word logits; the backbone is the nested encoder."""
    level = feature_level(backbone, level)
    image = keras.Input(backbone.input_shape[1:], name="image")
    tokens = keras.Input((None,), dtype="int32", name="tokens")
    grid = backbone(image)[level]
    annotations = layers.Reshape((-1, grid.shape[-1]), name="annotation_vectors")(grid)
    annotations = layers.Dense(feature_dim, activation="relu", name=ENCODER_OUTPUT)(annotations)
    decoder = AttentionDecoder(vocabulary_size, embedding_dim, units, attention_units, rnn, dropout,
                               name=DECODER)
    return keras.Model({"image": image, "tokens": tokens}, decoder(annotations, tokens), name="captioner")


def encoder_of(model):
    """image -> annotation vectors, cut out of a (possibly reloaded) captioner."""
    inputs = model.input
    image = inputs["image"] if isinstance(inputs, dict) else inputs[0]
    return keras.Model(image, model.get_layer(ENCODER_OUTPUT).output, name="caption_encoder")
