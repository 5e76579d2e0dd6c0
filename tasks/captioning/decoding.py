"""Writing captions with a trained captioner: greedy and length-normalised beam search.

Both run the decoder one word at a time (:meth:`AttentionDecoder.step`) for a batch of images,
keeping every word's attention weights so the report and ``predict --json`` can show where the
model looked. Padding, start and unknown tokens are never emitted (a caption reading "[UNK]"
tells the user nothing). Greedy decoding is beam search of width 1.

Beam search keeps ``width`` live hypotheses per image. A hypothesis ends when it emits the end
token; it is then scored by its summed log-probability divided by ``length ** alpha`` (``alpha``
0: raw sum, which favours short captions; 1: mean per word). An image is done once ``width``
hypotheses have ended, or at ``max_length`` words.
"""

from dataclasses import dataclass

import numpy as np

from tasks.captioning import vocabulary as vocab
from tasks.captioning.model import DECODER, encoder_of


@dataclass
class Caption:
    words: list
    attention: np.ndarray  # (len(words) + 1, grid positions): one row per emitted token incl. end
    score: float

    @property
    def text(self):
        return " ".join(self.words)


class CaptionWriter:
    """Greedy and beam decoding over a (possibly reloaded) captioner."""

    def __init__(self, model, vocabulary, *, max_length=20, batch_size=64):
        import tensorflow as tf

        self.vocabulary, self.max_length, self.batch_size = list(vocabulary), max_length, batch_size
        self.encoder = encoder_of(model)
        self.decoder = model.get_layer(DECODER)
        decoder = self.decoder

        @tf.function(reduce_retracing=True)
        def step(features, keys, tokens, state):
            logits, state, weights = decoder.step(features, keys, tokens, list(state))
            return tf.nn.log_softmax(logits), state, weights

        @tf.function(reduce_retracing=True)
        def start(features):
            return decoder.attention.keys(features), decoder.initial_state(features)

        encoder = self.encoder

        @tf.function(reduce_retracing=True)
        def encode(images):
            return encoder(images, training=False)

        self._step, self._start, self._encode = step, start, encode

    def annotations(self, images):
        """One batch (``write`` batches): a traced call, not ``predict``, whose per-call dataset
        set-up took longer than the encoding of a validation batch."""
        return self._encode(np.asarray(images, np.float32)).numpy()

    def greedy(self, images):
        return self.beam(images, width=1)

    def beam(self, images, width=3, alpha=1.0):
        """One :class:`Caption` per image."""
        return self.write(images, {"beam": (width, alpha)})["beam"]

    def greedy_and_beam(self, images, width, alpha=1.0, progress=None):
        """``{"greedy": [...], "beam W": [...]}`` (the beam only when W > 1), from one encoding."""
        searches = {"greedy": (1, 1.0)}
        if width > 1:
            searches[f"beam {width}"] = (width, alpha)
        return self.write(images, searches, progress)

    def write(self, images, searches, progress=None):
        """Several searches over one encoding of the images: ``{name: (width, alpha)}`` ->
        ``{name: [Caption per image]}`` (the encoder is the costly part; run it once).
        ``images`` is an array or lazily read files: a batch at a time is decoded, and
        ``progress(done, total, what)`` (if given) hears after each batch."""
        captions = {name: [] for name in searches}
        for begin in range(0, len(images), self.batch_size):
            features = self.annotations(images[begin:begin + self.batch_size])
            for name, (width, alpha) in searches.items():
                captions[name] += self._search(features, width, alpha)
            if progress is not None:
                progress(min(begin + self.batch_size, len(images)), len(images),
                         f"images captioned ({', '.join(searches)})")
        return captions

    def _search(self, features, width, alpha):
        return self._greedy(features, alpha) if width == 1 else self._beam_search(features, width, alpha)

    def _greedy(self, features, alpha):
        """Beam search of width 1, vectorised over the images (no per-image Python loop): the
        same words, attention and score."""
        n, positions = features.shape[0], features.shape[1]
        keys, state = self._start(features)
        tokens = np.full(n, vocab.START_ID, np.int32)
        total = np.zeros(n, np.float32)
        sequences = np.zeros((n, 0), np.int32)
        attention = np.zeros((n, 0, positions), np.float32)
        captions, ended = [None] * n, np.zeros(n, bool)
        for length in range(1, self.max_length + 2):
            log_probs, state, weights = self._step(features, keys, tokens, state)
            log_probs = np.array(log_probs)
            log_probs[:, [vocab.PAD_ID, vocab.UNK_ID, vocab.START_ID]] = -np.inf  # never emitted
            weights = np.asarray(weights)
            word = log_probs.argmax(axis=1).astype(np.int32)
            total = total + log_probs[np.arange(n), word]
            ending = ~ended & ((word == vocab.END_ID) | (length > self.max_length))
            for b in np.flatnonzero(ending):
                captions[b] = Caption(vocab.decode(sequences[b], self.vocabulary),
                                      np.concatenate([attention[b], weights[b][None]]),
                                      float(total[b]) / length ** alpha)
            ended |= ending
            if ended.all():
                break
            sequences = np.concatenate([sequences, word[:, None]], axis=1)
            attention = np.concatenate([attention, weights[:, None]], axis=1)
            tokens = word
        return captions

    def _beam_search(self, features, width, alpha):
        n, positions = features.shape[0], features.shape[1]
        features = np.repeat(features, width, axis=0)  # row b * width + k: image b, beam k
        keys, state = self._start(features)
        state = [np.asarray(s) for s in state]
        tokens = np.full(n * width, vocab.START_ID, np.int32)
        scores = np.full((n, width), -np.inf, np.float32)
        scores[:, 0] = 0.0  # all beams start identical: expand only the first
        sequences = np.zeros((n, width, 0), np.int32)
        attention = np.zeros((n, width, 0, positions), np.float32)
        finished = [[] for _ in range(n)]
        for length in range(1, self.max_length + 2):
            log_probs, state, weights = self._step(features, keys, tokens, state)
            log_probs = np.array(log_probs).reshape(n, width, -1)
            log_probs[..., [vocab.PAD_ID, vocab.UNK_ID, vocab.START_ID]] = -np.inf  # never emitted
            weights = np.asarray(weights).reshape(n, width, positions)
            vocabulary_size = log_probs.shape[-1]
            total = (scores[..., None] + log_probs).reshape(n, -1)
            order = np.argsort(-total, axis=1)[:, :2 * width]
            parents = np.zeros((n, width), np.int64)
            chosen = np.full((n, width), vocab.END_ID, np.int32)
            new_scores = np.full((n, width), -np.inf, np.float32)
            for b in range(n):
                alive = 0
                for flat in order[b]:
                    if alive == width or len(finished[b]) >= width or not np.isfinite(total[b, flat]):
                        break
                    parent, word = divmod(int(flat), vocabulary_size)
                    if word == vocab.END_ID or length > self.max_length:
                        finished[b].append(Caption(
                            vocab.decode(sequences[b, parent], self.vocabulary),
                            np.concatenate([attention[b, parent], weights[b, parent][None]]),
                            float(total[b, flat]) / length ** alpha))
                    else:
                        parents[b, alive], chosen[b, alive], new_scores[b, alive] = parent, word, total[b, flat]
                        alive += 1
            done = all(len(f) >= width for f in finished)
            rows = np.arange(n)[:, None]
            sequences = np.concatenate([sequences[rows, parents], chosen[..., None]], axis=-1)
            attention = np.concatenate([attention[rows, parents], weights[rows, parents][:, :, None]], axis=2)
            scores = new_scores
            flat_parents = (np.arange(n)[:, None] * width + parents).reshape(-1)
            state = [np.asarray(s)[flat_parents] for s in state]
            tokens = chosen.reshape(-1)
            if done:
                break
        return [max(f, key=lambda c: c.score) if f else
                Caption(vocab.decode(sequences[b, 0], self.vocabulary), attention[b, 0], float(scores[b, 0]))
                for b, f in enumerate(finished)]
