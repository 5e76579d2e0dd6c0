"""Pretrained word vectors from a local text file (GloVe or word2vec text format). No download.

GloVe: ``word v1 v2 ... vD`` per line. word2vec text: the same after a ``COUNT DIM`` header line.
Only the words of the run's vocabulary are kept, so a large file costs one streaming pass.
"""

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipelines.errors import UserError


@dataclass
class WordVectors:
    matrix: np.ndarray  # (vocabulary size, dim), rows of unknown words drawn at random
    found: int  # vocabulary words (reserved tokens excluded) found in the file
    missing: int  # vocabulary words initialised randomly
    dim: int
    path: str

    def summary(self):
        total = self.found + self.missing
        return (f"{self.path}: {self.dim}-d vectors for {self.found:,} of {total:,} vocabulary words; "
                f"{self.missing:,} out-of-vocabulary words initialised randomly")


def _vector_lines(path):
    """(line number, [word, numbers...]) per data line; the word2vec header and blanks skipped.

    A missing file names the option; a non-UTF-8 file or a line without a vector names the file.
    """
    path = Path(path)
    if not path.is_file():
        raise UserError(f"--set word_vectors={path}: no such file")
    try:
        with open(path, encoding="utf-8") as handle:
            for number, line in enumerate(handle, 1):
                parts = line.rstrip("\n").rstrip(" ").split(" ")
                if number == 1 and len(parts) == 2 and all(p.isdigit() for p in parts):
                    continue  # word2vec header: COUNT DIM
                if len(parts) < 2:
                    if line.strip():
                        raise UserError(f"{path}, line {number}: expected a word and its vector")
                    continue
                yield number, parts
    except UnicodeDecodeError as error:
        raise UserError(f"{path}: not UTF-8 text ({error.reason} at byte {error.start}); word "
                        f"vectors must be a GloVe/word2vec text file") from None


def peek_dim(path):
    """The vectors' dimension from the first data line (before the model is built)."""
    for _, parts in _vector_lines(path):
        return len(parts) - 1
    raise UserError(f"{path}: no word vectors in the file")


def load(path, vocabulary, *, reserved=2, seed=0):
    """An embedding matrix for ``vocabulary`` (row i = token i) from the vectors file at ``path``."""
    wanted = {token: i for i, token in enumerate(vocabulary) if i >= reserved}
    rows, dim = {}, None
    for number, parts in _vector_lines(path):
        if dim is None:
            dim = len(parts) - 1
        elif len(parts) - 1 != dim:
            raise UserError(f"{path}, line {number}: {len(parts) - 1} numbers, expected {dim} "
                            f"like the lines before")
        word = parts[0]
        if word in wanted and word not in rows:
            try:
                rows[word] = np.asarray(parts[1:], dtype=np.float32)
            except ValueError:
                raise UserError(f"{path}, line {number}: the vector of {word!r} holds a "
                                f"non-number") from None
    if dim is None:
        raise UserError(f"{path}: no word vectors in the file")
    found = np.stack(list(rows.values())) if rows else np.zeros((1, dim), np.float32)
    scale = float(found.std()) or 0.1
    matrix = np.random.default_rng(seed).normal(0.0, scale, (len(vocabulary), dim)).astype(np.float32)
    matrix[0] = 0.0  # padding
    for word, vector in rows.items():
        matrix[wanted[word]] = vector
    return WordVectors(matrix, found=len(rows), missing=len(wanted) - len(rows), dim=dim, path=str(path))
