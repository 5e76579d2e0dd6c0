"""Pretrained word vectors from a local GloVe / word2vec text file."""

import numpy as np
import pytest

from pipelines import word_vectors
from pipelines.errors import UserError

VOCABULARY = ["[PAD]", "[UNK]", "free", "prize", "zebra"]


def test_glove_file_fills_known_rows_and_counts_the_rest(tmp_path):
    path = tmp_path / "glove.txt"
    path.write_text("free 1 2 3\nother 9 9 9\nprize -1 0.5 2\n")
    vectors = word_vectors.load(path, VOCABULARY, seed=0)
    assert vectors.dim == 3 and vectors.found == 2 and vectors.missing == 1
    np.testing.assert_allclose(vectors.matrix[2], [1, 2, 3])
    np.testing.assert_allclose(vectors.matrix[3], [-1, 0.5, 2])
    np.testing.assert_array_equal(vectors.matrix[0], 0)
    assert np.abs(vectors.matrix[4]).sum() > 0  # zebra: random
    assert "1 of 3" not in vectors.summary() and "2 of 3" in vectors.summary()
    assert word_vectors.peek_dim(path) == 3


def test_word2vec_header_is_skipped(tmp_path):
    path = tmp_path / "w2v.txt"
    path.write_text("2 4\nfree 1 1 1 1\nzebra 2 2 2 2\n")
    vectors = word_vectors.load(path, VOCABULARY)
    assert vectors.dim == 4 and vectors.found == 2
    assert word_vectors.peek_dim(path) == 4


@pytest.mark.parametrize("content, message", [
    ("free 1 2 3\nprize 1 2\n", "line 2: 2 numbers, expected 3"),
    ("free 1 x 3\n", "line 1: the vector of 'free' holds a non-number"),
    ("", "no word vectors"),
])
def test_bad_vector_files_name_the_line(tmp_path, content, message):
    path = tmp_path / "bad.txt"
    path.write_text(content)
    with pytest.raises(UserError, match=message):
        word_vectors.load(path, VOCABULARY)


def test_missing_file_names_the_option(tmp_path):
    with pytest.raises(UserError, match="word_vectors=.*no such file"):
        word_vectors.peek_dim(tmp_path / "none.txt")
