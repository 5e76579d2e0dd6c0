"""Text to token ids inside the model graph, with tensorflow-text.

A saved text model starts from raw strings: :class:`TextTokenizer` is its first layer. It
normalises (Unicode NFKC + case folding, long digit runs masked), splits into words (letter
runs; each digit run and each punctuation mark is a token of its own) or further into WordPiece sub-words, looks
the tokens up in a vocabulary learnt from the training split only, and pads or truncates to a fixed
length. Ids: 0 is padding, 1 is the unknown token, the vocabulary starts at 2.

The vocabulary is part of the layer's config (so ``model.keras`` is self-contained) and is also
written as one token per line to the run's ``assets/vocabulary.txt``.

With ``char_ngrams`` the layer also gives each token the hashed ids of its character n-grams
(fastText's subword scheme: the token between ``<`` and ``>``, every n-gram of the given
widths, hashed into a fixed number of buckets). A word never seen in training still shares
most of its n-grams with the words it is a misspelling or an inflection of, and hashing needs
no vocabulary, so the ids mean the same in every run.
"""

import collections
import dataclasses
from pathlib import Path

import keras
import numpy as np

from pipelines.errors import UserError
from pipelines.preprocessing import Preprocessing

PAD, UNK = "[PAD]", "[UNK]"
RESERVED = (PAD, UNK)
TOKENIZERS = ("word", "wordpiece")
VOCABULARY_FILE = "vocabulary.txt"  # in a run's assets/, one token per line


def normalize(texts, mask_numbers=True, lowercase=True):
    """NFKC (+ case folding when ``lowercase``), as a tf string tensor.

    ``mask_numbers``: runs of 7+ digits become ``0000000`` and runs of 3-6 digits ``000``, so
    phone numbers, short codes and prices never seen in training still share a token.
    """
    import tensorflow as tf
    import tensorflow_text as tf_text

    texts = tf_text.normalize_utf8(tf.convert_to_tensor(texts), "NFKC")
    if lowercase:
        texts = tf_text.case_fold_utf8(texts)
    if mask_numbers:
        texts = tf.strings.regex_replace(texts, r"[0-9]{7,}", " 0000000 ")
        texts = tf.strings.regex_replace(texts, r"(^|[^0-9])[0-9]{3,6}([^0-9]|$)", r"\1 000 \2")
    return texts


# Letter runs are words; every digit run and every other non-space character is its own token.
# (UnicodeScriptTokenizer would glue "! £ 000 /" into one token: its Common-script runs ignore
# the spaces between them.)
SPLIT_PATTERN = r"\s+|[^\s\p{L}\p{M}\p{N}]|\p{N}+"
KEEP_PATTERN = r"[^\s\p{L}\p{M}\p{N}]|\p{N}+"


def split_words(texts, mask_numbers=True, lowercase=True):
    """Normalised texts -> ragged (batch, words) of byte strings."""
    import tensorflow_text as tf_text

    return tf_text.regex_split(normalize(texts, mask_numbers, lowercase), SPLIT_PATTERN, KEEP_PATTERN)


def _token_lists(tokenize, texts, batch_size=4096):
    """Python lists of token strings per text from ``tokenize`` (strings -> ragged), in batches."""
    texts = np.asarray(texts, dtype=object).astype(str)
    result = []
    for start in range(0, len(texts), batch_size):
        rows = tokenize(texts[start:start + batch_size]).to_list()
        result += [[t.decode("utf-8", "replace") for t in row] for row in rows]
    return result


def word_lists(texts, mask_numbers=True, lowercase=True):
    """Python lists of word strings per text (eager; for vocabularies, baselines and reports)."""
    return _token_lists(lambda chunk: split_words(chunk, mask_numbers, lowercase), texts)


def build_vocabulary(texts, *, tokenizer="word", max_size=20000, min_count=1, mask_numbers=True,
                     lowercase=True):
    """The vocabulary learnt from ``texts`` (the training split): reserved tokens first.

    Words: the ``max_size`` most frequent with at least ``min_count`` occurrences (ties broken
    alphabetically, so the result does not depend on data order). WordPiece: tensorflow-text's
    BERT vocabulary learner over the same words.
    """
    if tokenizer not in TOKENIZERS:
        raise UserError(f"--set tokenizer={tokenizer}: choose one of {', '.join(TOKENIZERS)}")
    words = word_lists(texts, mask_numbers, lowercase)
    counts = collections.Counter(w for row in words for w in row)
    if tokenizer == "word":
        kept = sorted((w for w, c in counts.items() if c >= min_count), key=lambda w: (-counts[w], w))
        tokens = kept[:max(0, max_size - len(RESERVED))]
    else:
        from tensorflow_text.tools.wordpiece_vocab import wordpiece_tokenizer_learner_lib as learner

        word_counts = sorted(((w, c) for w, c in counts.items() if c >= min_count),
                             key=lambda wc: (-wc[1], wc[0]))
        tokens = learner.learn(word_counts, vocab_size=max_size, reserved_tokens=list(RESERVED),
                               lower_thresh=min_count)
        tokens = [t for t in tokens if t not in RESERVED]
    if not tokens:
        raise UserError("the training texts hold no tokens; is the text column empty?")
    return list(RESERVED) + tokens


def write_vocabulary(vocabulary, path, write_text):
    write_text(Path(path), "\n".join(vocabulary) + "\n")


def read_vocabulary(path):
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").split("\n")
    except (OSError, UnicodeDecodeError) as error:
        raise UserError(f"{path}: cannot read the vocabulary ({error})") from None
    vocabulary = lines[:-1] if lines and lines[-1] == "" else lines
    if vocabulary[:len(RESERVED)] != list(RESERVED):
        raise UserError(f"{path}: a vocabulary must start with {', '.join(RESERVED)}")
    return vocabulary


@dataclasses.dataclass(kw_only=True)
class VocabularyPreprocessing(Preprocessing):
    """A preprocessing record holding a token list: the list goes to ``assets/vocabulary.txt``
    (one token per line, readable and diffable), its size and file name to ``info.json``."""

    vocabulary: list = dataclasses.field(default_factory=list)

    def to_json(self):
        described = {k: v for k, v in super().to_json().items() if k != "vocabulary"}
        return {**described, "vocabulary_size": len(self.vocabulary),
                "vocabulary_file": f"assets/{VOCABULARY_FILE}"}

    def save_assets(self, folder, write_json):
        from pipelines.runs import write_text

        write_vocabulary(self.vocabulary, Path(folder) / VOCABULARY_FILE, write_text)
        super().save_assets(folder, write_json)

    @classmethod
    def load_assets(cls, folder):
        record = super().load_assets(folder)
        record.vocabulary = read_vocabulary(Path(folder) / VOCABULARY_FILE)
        return record


@keras.saving.register_keras_serializable(package="cnn_tasks")
class TextTokenizer(keras.layers.Layer):
    """Raw strings (batch,) -> int32 token ids (batch, length), 0-padded; with ``char_ngrams``
    (a :class:`CharNgrams` record as a dict) a dict ``{"token_ids": (batch, length),
    "char_ngrams": (batch, length, per_token)}`` whose n-gram ids are 1-based, 0 padding."""

    def __init__(self, vocabulary, length, tokenizer="word", mask_numbers=True, lowercase=True,
                 char_ngrams=None, **kwargs):
        kwargs.setdefault("trainable", False)
        super().__init__(**kwargs)
        if tokenizer not in TOKENIZERS:
            raise ValueError(f"tokenizer must be one of {TOKENIZERS}, got {tokenizer!r}")
        self.vocabulary = list(vocabulary)
        self.length = int(length)
        self.tokenizer = tokenizer
        self.mask_numbers = bool(mask_numbers)
        self.lowercase = bool(lowercase)
        self.char_ngrams = CharNgrams(**char_ngrams) if char_ngrams else None
        self._table = None
        self._lookup()

    @property
    def vocabulary_size(self):
        return len(self.vocabulary)

    def _lookup(self):
        import tensorflow as tf

        if self._table is None:
            with tf.init_scope():  # created eagerly once, never inside a traced train step
                keys = tf.constant(self.vocabulary[len(RESERVED):], dtype=tf.string)
                values = tf.range(len(RESERVED), len(self.vocabulary), dtype=tf.int64)
                self._table = tf.lookup.StaticHashTable(
                    tf.lookup.KeyValueTensorInitializer(keys, values), default_value=1)
        return self._table

    def tokens(self, texts):
        """Ragged (batch, tokens) of token strings, before the vocabulary lookup."""
        import tensorflow as tf
        import tensorflow_text as tf_text

        words = split_words(tf.reshape(texts, [-1]), self.mask_numbers, self.lowercase)
        if self.tokenizer == "word":
            return words
        pieces = tf_text.WordpieceTokenizer(self._lookup(), token_out_type=tf.string,
                                            unknown_token=UNK).tokenize(words)
        return pieces.merge_dims(-2, -1)

    def call(self, texts):
        import tensorflow as tf

        tokens = self.tokens(texts)
        ids = tf.ragged.map_flat_values(self._lookup().lookup, tokens)
        ids = tf.cast(ids.to_tensor(0, shape=[None, self.length]), "int32")
        if self.char_ngrams is None:
            return ids
        return {"token_ids": ids, "char_ngrams": self.char_ngrams.ids(tokens, self.length)}

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.length)

    def compute_output_spec(self, texts):
        ids = keras.KerasTensor((texts.shape[0], self.length), dtype="int32")
        if self.char_ngrams is None:
            return ids
        return {"token_ids": ids, "char_ngrams": keras.KerasTensor(
            (texts.shape[0], self.length, self.char_ngrams.per_token), dtype="int32")}

    def get_config(self):
        return {**super().get_config(), "vocabulary": self.vocabulary, "length": self.length,
                "tokenizer": self.tokenizer, "mask_numbers": self.mask_numbers,
                "lowercase": self.lowercase,
                "char_ngrams": dataclasses.asdict(self.char_ngrams) if self.char_ngrams else None}


@dataclasses.dataclass(frozen=True)
class CharNgrams:
    """How tokens become character n-gram ids: widths ``min_n..max_n`` of ``<token>``, hashed
    (FarmHash fingerprint, stable across platforms) into ``buckets``; the first ``per_token``
    n-grams of each token are kept, shortest widths first."""

    buckets: int = 32768
    min_n: int = 2
    max_n: int = 5
    per_token: int = 48

    def __post_init__(self):
        if not 1 <= self.min_n <= self.max_n:
            raise ValueError(f"character n-gram widths {self.min_n}..{self.max_n} are not a range")
        if self.buckets < 1 or self.per_token < 1:
            raise ValueError("char n-grams need at least one bucket and one n-gram per token")

    def ids(self, tokens, length):
        """Ragged (batch, tokens) of token strings -> int32 (batch, length, per_token)."""
        import tensorflow as tf
        import tensorflow_text as tf_text

        chars = tf.strings.unicode_split(tf.strings.join(["<", tokens, ">"]), "UTF-8")
        grams = tf.concat([tf_text.ngrams(chars, n, axis=-1, string_separator="",
                                          reduction_type=tf_text.Reduction.STRING_JOIN)
                           for n in range(self.min_n, self.max_n + 1)], axis=-1)
        hashed = tf.ragged.map_flat_values(
            lambda g: tf.strings.to_hash_bucket_fast(g, self.buckets) + 1, grams)
        return tf.cast(hashed.to_tensor(0, shape=[None, length, self.per_token]), "int32")


def token_strings(tokenizer_layer, texts, *, clip=True):
    """Python lists of the tokens the model sees (cut to its length when ``clip``), for reports."""
    result = _token_lists(tokenizer_layer.tokens, texts)
    return [row[:tokenizer_layer.length] for row in result] if clip else result


def fixed_length(token_lists, quantile=0.99, multiple=8, cap=512):
    """A sequence length covering ``quantile`` of the (training) token lists, rounded up."""
    lengths = [len(row) for row in token_lists]
    if not lengths:
        return multiple
    needed = int(np.ceil(np.quantile(lengths, quantile)))
    return int(min(cap, max(multiple, int(np.ceil(needed / multiple)) * multiple)))
