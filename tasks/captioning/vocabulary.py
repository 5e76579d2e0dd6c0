"""Caption words and ids: tensorflow-text word splitting, a vocabulary from training captions.

Captions are normalised and split by :mod:`pipelines.tokenizer` (NFKC, case folding, letter and
digit runs); punctuation is dropped, as the COCO evaluation's tokenizer does, so training targets
and scored words are the same tokens. Ids: 0 padding, 1 unknown, 2 start, 3 end, then words by
frequency (ties alphabetical).
"""

import collections

import numpy as np

from pipelines import tokenizer
from pipelines.errors import UserError

START, END = "<start>", "<end>"
PAD_ID, UNK_ID, START_ID, END_ID = 0, 1, 2, 3
SPECIAL = tokenizer.RESERVED + (START, END)


def words(texts):
    """Lists of lower-cased words per caption, punctuation left out."""
    return [[w for w in row if any(ch.isalnum() for ch in w)]
            for row in tokenizer.word_lists(texts, mask_numbers=False)]


def build(captions, *, min_count=2, max_size=10000):
    """Special tokens, then words seen at least ``min_count`` times in ``captions``."""
    counts = collections.Counter(w for row in words(captions) for w in row)
    kept = sorted((w for w, c in counts.items() if c >= min_count), key=lambda w: (-counts[w], w))
    if not kept:
        raise UserError(f"no caption word occurs {min_count}+ times in the training captions; "
                        f"lower --set min_count")
    return list(SPECIAL) + kept[:max(0, max_size - len(SPECIAL))]


def encode(captions, vocabulary, max_length):
    """(n, length) int32 ids: start, up to ``max_length`` words, end, padding. ``length`` is the
    longest caption's (so short-caption data runs short sequences)."""
    index = {w: i for i, w in enumerate(vocabulary)}
    rows = [[START_ID] + [index.get(w, UNK_ID) for w in row[:max_length]] + [END_ID]
            for row in words(captions)]
    ids = np.zeros((len(rows), max(len(r) for r in rows)), np.int32)
    for i, row in enumerate(rows):
        ids[i, :len(row)] = row
    return ids


def decode(ids, vocabulary):
    """Words up to (not including) the end token; special tokens other than unknown dropped."""
    out = []
    for i in ids:
        if i == END_ID:
            break
        if i >= len(SPECIAL) or i == UNK_ID:
            out.append(vocabulary[i])
    return out


def coverage(captions, vocabulary):
    """Share of caption words that are in the vocabulary (the report states it)."""
    known = set(vocabulary)
    tokens = [w for row in words(captions) for w in row]
    return sum(w in known for w in tokens) / max(1, len(tokens))
