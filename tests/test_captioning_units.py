"""Captioning pieces without training: scores pinned by hand, vocabulary, shapes, beam search."""

import numpy as np
import pytest

from tasks.captioning import scores, shapes
from tasks.captioning import vocabulary as vocab
from tasks.captioning.decoding import CaptionWriter


def test_bleu_and_rouge_match_a_hand_computed_example():
    """Hypothesis 'the cat sat on a mat' vs 'The cat sat on the mat.': 5 of 6 unigrams and 3 of 5
    bigrams match, equal lengths (no brevity penalty): BLEU-1 5/6, BLEU-2 sqrt(5/6 * 3/5);
    the longest common subsequence has 5 words, so ROUGE-L's P = R = F = 5/6."""
    values, _ = scores.caption_scores([["The cat sat on the mat."]], ["the cat sat on a mat"])
    assert values["bleu1"] == pytest.approx(5 / 6, abs=1e-6)
    assert values["bleu2"] == pytest.approx(np.sqrt(5 / 6 * 3 / 5), abs=1e-6)
    assert values["rouge_l"] == pytest.approx(5 / 6, abs=1e-6)
    assert set(values) == set(scores.KEYS)


def test_cider_rewards_consensus_and_may_exceed_one():
    references = [["a red circle", "there is a red circle"], ["two blue squares", "a pair of blue squares"],
                  ["a green triangle left of a red square"]]
    good, per_image = scores.caption_scores(references, ["a red circle", "two blue squares",
                                                         "a green triangle left of a red square"])
    bad, _ = scores.caption_scores(references, ["a blue square", "a red circle", "a red circle"])
    assert good["cider"] > 1 > bad["cider"] >= 0
    assert per_image.shape == (3,) and np.all(per_image > 0)


def test_vocabulary_round_trip_drops_punctuation_and_keeps_unknown_words():
    words = vocab.build(["A red circle.", "a red square", "a blue circle"], min_count=2)
    assert words[:4] == list(vocab.SPECIAL) and "blue" not in words and "." not in words
    ids = vocab.encode(["a blue circle!"], words, max_length=10)
    assert ids[0, 0] == vocab.START_ID and ids[0, 4] == vocab.END_ID and ids[0, 2] == vocab.UNK_ID
    assert vocab.decode(ids[0, 1:], words) == ["a", "[UNK]", "circle"]
    assert vocab.encode(["a red circle a red circle"], words, max_length=2).tolist() == [[2, words.index("a"),
                                                                                        words.index("red"), 3]]


def test_shapes_are_deterministic_and_described():
    images, references = shapes.generate(n=40, seed=3)
    again, same = shapes.generate(n=40, seed=3)
    np.testing.assert_array_equal(images, again)
    assert references == same and images.shape == (40, 32, 32, 3)
    assert all(3 <= len(r) <= 5 for r in references)
    assert any(r[0].startswith("two ") for r in references)
    assert any(" left of " in r[0] or " above " in r[0] for r in references)
    for image, refs in zip(images, references):  # the colour named first is drawn
        colour = next(c for c in shapes.COLOURS if c in refs[0])
        target = np.asarray(shapes.COLOURS[colour])
        assert (np.abs(image - target).max(axis=-1) < 0.2).sum() > 10


class _TableWriter(CaptionWriter):
    """A decoder whose next-word log-probabilities depend only on the previous word."""

    def __init__(self, table, words, max_length=5):
        self.vocabulary, self.max_length, self.batch_size = words, max_length, 8
        self.table = np.log(np.asarray(table, np.float32) + 1e-12)

    def annotations(self, images):
        return np.zeros((len(images), 4, 2), np.float32)

    def _start(self, features):
        return features, [np.zeros((len(features), 1), np.float32)]

    def _step(self, features, keys, tokens, state):
        weights = np.full((len(tokens), 4), 0.25, np.float32)
        return self.table[tokens], state, weights


def test_beam_search_finds_the_likelier_caption_greedy_misses():
    # ids: 0 pad, 1 unk, 2 start, 3 end, 4 "x", 5 "y", 6 "z"
    words = list(vocab.SPECIAL) + ["x", "y", "z"]
    table = np.zeros((7, 7))
    table[2, 4], table[2, 5] = 0.55, 0.45  # greedy takes x ...
    table[4, 6], table[4, 3] = 0.5, 0.5  # ... after which everything is uncertain
    table[6, 3] = 1.0
    table[5, 3] = 1.0  # y then end: 0.45 in all, beats x's best path 0.55 * 0.5
    writer = _TableWriter(table, words)
    greedy = writer.greedy(np.zeros((2, 8, 8, 3)))
    beam = writer.beam(np.zeros((2, 8, 8, 3)), width=2, alpha=0.0)
    assert [c.words for c in greedy] == [["x"], ["x"]]
    assert [c.words for c in beam] == [["y"], ["y"]]
    assert beam[0].score == pytest.approx(np.log(0.45), abs=1e-4)
    assert beam[0].attention.shape == (2, 4)  # one row per emitted token, the end included

    encoded = []
    writer.annotations = lambda images: encoded.append(len(images)) or np.zeros((len(images), 4, 2), np.float32)
    both = writer.write(np.zeros((2, 8, 8, 3)), {"greedy": (1, 1.0), "beam": (2, 0.0)})
    assert encoded == [2]  # one encoding serves both searches
    assert [c.words for c in both["greedy"]] == [["x"], ["x"]] and [c.words for c in both["beam"]] == [["y"], ["y"]]


def test_unknown_and_padding_tokens_are_never_emitted():
    words = list(vocab.SPECIAL) + ["x"]
    table = np.zeros((5, 5))
    table[2, 1], table[2, 0], table[2, 4] = 0.6, 0.3, 0.1  # the unknown word is likeliest
    table[4, 3] = 1.0
    writer = _TableWriter(table, words)
    assert writer.greedy(np.zeros((1, 8, 8, 3)))[0].words == ["x"]


def test_length_normalisation_lets_longer_captions_win():
    words = list(vocab.SPECIAL) + ["x", "y", "z"]
    table = np.zeros((7, 7))
    table[2, 4], table[2, 5] = 0.5, 0.5
    table[4, 3] = 1.0  # "x": log 0.5 over 2 tokens
    table[5, 6] = 0.9
    table[6, 3] = 0.9  # "y z": log 0.405 over 3 tokens, better per token
    writer = _TableWriter(table, words)
    image = np.zeros((1, 8, 8, 3))
    assert writer.beam(image, width=2, alpha=0.0)[0].words == ["x"]
    assert writer.beam(image, width=2, alpha=1.0)[0].words == ["y", "z"]


def test_vectorised_greedy_is_beam_search_of_width_one():
    """The greedy path (no per-image loop) writes what the general beam search writes with one
    beam: words, every attention row and the score, for images that end at different lengths
    and for one cut at max_length."""
    words = list(vocab.SPECIAL) + ["x", "y", "z"]
    table = np.zeros((7, 7))
    table[2, 4], table[2, 5] = 0.6, 0.4
    table[4, 5], table[4, 3] = 0.7, 0.3  # x y ...
    table[5, 6], table[5, 3] = 0.55, 0.45
    table[6, 6], table[6, 3] = 0.9, 0.1  # z z z ... until max_length cuts it
    writer = _TableWriter(table, words, max_length=4)
    rng = np.random.default_rng(0)

    def step(features, keys, tokens, state):  # the image changes its next word's odds
        weights = rng.dirichlet(np.ones(4), len(tokens)).astype(np.float32)
        noise = np.log(np.clip(table[tokens] + features[:, :1, 0] * np.eye(7)[3], 1e-12, None))
        return noise.astype(np.float32), state, weights

    writer._step = step
    features = np.zeros((3, 4, 2), np.float32)
    features[:, 0, 0] = [0.0, 0.5, 2.0]  # more of the end word for later images
    rng = np.random.default_rng(0)
    greedy = writer._greedy(features, alpha=0.7)
    rng = np.random.default_rng(0)
    beam = writer._beam_search(features, 1, alpha=0.7)
    assert len({len(c.words) for c in greedy}) > 1 and max(len(c.words) for c in greedy) == 4
    for mine, theirs in zip(greedy, beam):
        assert mine.words == theirs.words
        np.testing.assert_allclose(mine.attention, theirs.attention)
        assert mine.score == pytest.approx(theirs.score, rel=1e-6)
