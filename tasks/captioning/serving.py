"""Captioning endpoints that write the caption inside the graph, for TF Serving and TFLite.

``serving_default`` takes encoded image files and answers a sentence: the image is decoded and
resized in the graph, and greedy decoding runs as a ``tf.while_loop`` of
:meth:`AttentionDecoder.step`, the same steps and the same never-emitted tokens as
:class:`tasks.captioning.decoding.CaptionWriter` (greedy is its beam search of width 1). ``encode``
and ``decode_step`` expose the two halves so a client can run its own beam search; they are
also what the TFLite export holds (one signature runner each).
"""

from pipelines import imaging
from pipelines.serving import Signature
from tasks.captioning import vocabulary as vocab
from tasks.captioning.model import DECODER, encoder_of

NEVER = -1e9  # added to the log-probabilities of padding, unknown and start: never chosen


def _never_mask(vocabulary_size):
    import tensorflow as tf

    banned = tf.scatter_nd([[vocab.PAD_ID], [vocab.UNK_ID], [vocab.START_ID]], [NEVER] * 3,
                           [vocabulary_size])
    return tf.cast(banned, tf.float32)


def _state_names(decoder):
    return ["state_h"] if decoder.rnn == "gru" else ["state_h", "state_c"]


class CaptionGraph:
    """The pieces of a trained captioner as graph functions: encode, one step, greedy."""

    def __init__(self, model, info):
        self.decoder = model.get_layer(DECODER)
        self.encoder = encoder_of(model)
        self.vocabulary = list(info.vocabulary)
        self.max_length = int(info.max_length)
        self.size = int(info.image_size)
        self.states = _state_names(self.decoder)

    def encode(self, pixels):
        features = self.encoder(pixels, training=False)
        keys = self.decoder.attention.keys(features)
        state = self.decoder.initial_state(features)
        return {"features": features, "keys": keys, **dict(zip(self.states, state))}

    def step(self, features, keys, tokens, state):
        import tensorflow as tf

        logits, state, weights = self.decoder.step(features, keys, tokens, list(state))
        log_probs = tf.nn.log_softmax(logits) + _never_mask(len(self.vocabulary))
        return log_probs, state, weights

    def greedy(self, pixels):
        """{caption: string[N], token_ids: int32[N, max_length] (0 after the end), length: int32[N]}."""
        import tensorflow as tf

        encoded = self.encode(pixels)
        features, keys = encoded["features"], encoded["keys"]
        state = [encoded[name] for name in self.states]
        n = tf.shape(features)[0]

        def more(t, tokens, done, state, ids):
            return (t < self.max_length) & ~tf.reduce_all(done)

        def one_word(t, tokens, done, state, ids):
            log_probs, state, _ = self.step(features, keys, tokens, state)
            word = tf.argmax(log_probs, axis=-1, output_type=tf.int32)
            done = done | (word == vocab.END_ID)
            return t + 1, word, done, state, ids.write(t, tf.where(done, vocab.PAD_ID, word))

        start = (tf.constant(0), tf.fill([n], vocab.START_ID), tf.zeros([n], tf.bool), state,
                 tf.TensorArray(tf.int32, size=0, dynamic_size=True, element_shape=[None]))
        *_, ids = tf.while_loop(more, one_word, start)
        ids = tf.transpose(ids.stack())  # (N, steps taken)
        ids = tf.pad(ids, [[0, 0], [0, self.max_length - tf.shape(ids)[1]]])
        ids = tf.ensure_shape(ids, [None, self.max_length])
        length = tf.reduce_sum(tf.cast(ids != vocab.PAD_ID, tf.int32), axis=1)
        words = tf.RaggedTensor.from_tensor(tf.gather(tf.constant(self.vocabulary), ids), lengths=length)
        return {"caption": tf.strings.reduce_join(words, axis=1, separator=" "), "token_ids": ids,
                "length": length}

    # -- endpoint specs ----------------------------------------------------------------------
    def pixel_spec(self):
        import tensorflow as tf

        return tf.TensorSpec([None, self.size, self.size, 3], tf.float32, name="pixels")

    def step_specs(self):
        import tensorflow as tf

        positions, depth = self.encoder.output.shape[1:]
        features = tf.TensorSpec([None, positions, depth], tf.float32, name="features")
        keys = tf.TensorSpec([None, positions, self.decoder.attention_units], tf.float32, name="keys")
        tokens = tf.TensorSpec([None], tf.int32, name="tokens")
        states = [tf.TensorSpec([None, self.decoder.units], tf.float32, name=name) for name in self.states]
        return [features, keys, tokens, *states]

    def decode_step_signature(self):
        graph, names = self, self.states

        def decode_step(features, keys, tokens, *state):
            log_probs, state, weights = graph.step(features, keys, tokens, state)
            return {"log_probs": log_probs, **dict(zip(names, state)), "attention": weights}

        if len(names) == 1:  # the exported argument names become the signature's input names
            def function(features, keys, tokens, state_h):
                return decode_step(features, keys, tokens, state_h)
        else:
            def function(features, keys, tokens, state_h, state_c):
                return decode_step(features, keys, tokens, state_h, state_c)
        return Signature(function, self.step_specs(),
                         "one word for every row: the previous token and state -> log-probabilities "
                         f"of the next word (ids {vocab.PAD_ID}-{vocab.START_ID}, padding/unknown/start, "
                         f"get {NEVER:g}), the new state and the attention weights")

    def encode_pixels_signature(self):
        def encode_pixels(pixels):
            return self.encode(pixels)

        return Signature(encode_pixels, [self.pixel_spec()],
                         f"float32 RGB images {self.size}x{self.size} in [0, 1] -> annotation "
                         "vectors, attention keys and the decoder's first state")


def serving_signatures(model, info):
    import tensorflow as tf

    graph = CaptionGraph(model, info)
    size = graph.size
    image_bytes = tf.TensorSpec([None], tf.string, name="image_bytes")

    def serving_default(image_bytes):
        return graph.greedy(imaging.decode_batch_in_graph(image_bytes, 3, size))

    def caption_pixels(pixels):
        return graph.greedy(pixels)

    def encode(image_bytes):
        return graph.encode(imaging.decode_batch_in_graph(image_bytes, 3, size))

    return {
        "serving_default": Signature(
            serving_default, [image_bytes],
            f"encoded image files -> caption by greedy decoding (up to {graph.max_length} words); "
            f"decoded to RGB and resized to {size}x{size} in the graph"),
        "caption_pixels": Signature(caption_pixels, [graph.pixel_spec()],
                                    f"float32 RGB images {size}x{size} in [0, 1] -> caption (greedy)"),
        "encode": Signature(encode, [image_bytes], "encoded image files -> what decode_step starts "
                                                   "from (for a client's own beam search)"),
        "encode_pixels": graph.encode_pixels_signature(),
        "decode_step": graph.decode_step_signature(),
    }


def tflite_signatures(model, info):
    graph = CaptionGraph(model, info)
    return {"encode_pixels": graph.encode_pixels_signature(),
            "decode_step": graph.decode_step_signature()}
