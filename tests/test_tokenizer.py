"""The in-graph tokenizer: normalisation, vocabularies, and the saved-and-reloaded round trip."""

import keras
import numpy as np
import pytest

from pipelines import runs
from pipelines import tokenizer as tok
from pipelines.errors import UserError

TEXTS = ["Free ENTRY to win a Prize!!", "what's the Café?", "Call 09099726395 now, £150/wk",
         "free prize call now", "win win win"]


def test_words_are_normalised_lowercased_and_split_on_punctuation():
    (words,) = tok.word_lists(["Ｆｒｅｅ CAFÉ what's 2nite!"])
    assert words == ["free", "café", "what", "'", "s", "2", "nite", "!"]


def test_long_digit_runs_are_masked():
    (words,) = tok.word_lists(["Call 09099726395 or 87121, £150 at 1st"])
    assert words == ["call", "0000000", "or", "000", ",", "£", "000", "at", "1", "st"]
    (raw,) = tok.word_lists(["Call 87121"], mask_numbers=False)
    assert raw == ["call", "87121"]


def test_vocabulary_is_from_counts_with_reserved_tokens_first():
    vocabulary = tok.build_vocabulary(TEXTS, max_size=6, min_count=1)
    assert vocabulary[:2] == ["[PAD]", "[UNK]"]
    # win x4, then the tokens seen twice in alphabetical order
    assert vocabulary[2:] == ["win", "!", "call", "free"]
    rare = tok.build_vocabulary(TEXTS, min_count=2)
    assert "café" not in rare and "free" in rare and "prize" in rare


def test_ids_pad_truncate_and_mark_unknown_words():
    vocabulary = tok.build_vocabulary(TEXTS)
    layer = tok.TextTokenizer(vocabulary, 4)
    ids = keras.ops.convert_to_numpy(layer(np.array(["free prize", "zebra free win win win"], dtype=object)))
    index = {t: i for i, t in enumerate(vocabulary)}
    assert ids.tolist() == [[index["free"], index["prize"], 0, 0],
                            [1, index["free"], index["win"], index["win"]]]


def test_vocabulary_file_round_trip_gives_the_same_ids(tmp_path):
    vocabulary = tok.build_vocabulary(TEXTS)
    tok.write_vocabulary(vocabulary, tmp_path / "assets" / "vocabulary.txt", runs.write_text)
    reloaded = tok.read_vocabulary(tmp_path / "assets" / "vocabulary.txt")
    assert reloaded == vocabulary
    texts = np.array(TEXTS + ["never seen words"], dtype=object)
    first = keras.ops.convert_to_numpy(tok.TextTokenizer(vocabulary, 12)(texts))
    again = keras.ops.convert_to_numpy(tok.TextTokenizer(reloaded, 12)(texts))
    np.testing.assert_array_equal(first, again)


def test_saved_model_takes_raw_strings_after_reload(tmp_path):
    vocabulary = tok.build_vocabulary(TEXTS)
    inputs = keras.Input(shape=(), dtype="string")
    layer = tok.TextTokenizer(vocabulary, 8, name="tokenizer")
    model = keras.Model(inputs, layer(inputs))
    model.save(tmp_path / "m.keras")
    loaded = keras.models.load_model(tmp_path / "m.keras", safe_mode=True)
    texts = np.array(TEXTS, dtype=object)
    np.testing.assert_array_equal(loaded.predict(texts, verbose=0), model.predict(texts, verbose=0))
    assert loaded.get_layer("tokenizer").vocabulary == vocabulary


def test_wordpiece_vocabulary_splits_unseen_words_into_known_pieces():
    texts = ["playing played player plays", "running runner runs", "play run"] * 20
    vocabulary = tok.build_vocabulary(texts, tokenizer="wordpiece", max_size=60)
    layer = tok.TextTokenizer(vocabulary, 6, tokenizer="wordpiece")
    (pieces,) = tok.token_strings(layer, ["replaying"])
    assert len(pieces) > 1 and all(p in vocabulary for p in pieces)
    ids = keras.ops.convert_to_numpy(layer(np.array(["playing runs"], dtype=object)))
    assert (ids[0] > 1).sum() >= 2


def test_fixed_length_covers_the_quantile_rounded_up():
    assert tok.fixed_length([[0] * n for n in range(1, 101)], quantile=0.99) == 104
    assert tok.fixed_length([[0]]) == 8


def test_a_bad_vocabulary_file_is_a_user_error(tmp_path):
    (tmp_path / "v.txt").write_text("hello\nworld\n")
    with pytest.raises(UserError, match="must start with"):
        tok.read_vocabulary(tmp_path / "v.txt")


def test_case_can_be_kept():
    (words,) = tok.word_lists(["Who is Tom ?"], lowercase=False)
    assert words == ["Who", "is", "Tom", "?"]
    vocabulary = tok.build_vocabulary(["Who is Tom ?", "who"], lowercase=False)
    layer = tok.TextTokenizer(vocabulary, 4, lowercase=False)
    ids = keras.ops.convert_to_numpy(layer(np.array(["Who who"], dtype=object)))[0]
    assert ids[0] != ids[1] and ids[0] > 1 and ids[1] > 1
    assert tok.TextTokenizer.from_config(layer.get_config()).lowercase is False


def _char_ids(texts, length=6, **spec):
    layer = tok.TextTokenizer(tok.build_vocabulary(TEXTS), length,
                              char_ngrams={"buckets": 1000, "per_token": 20, **spec})
    out = layer(np.array(texts, dtype=object))
    return {k: keras.ops.convert_to_numpy(v) for k, v in out.items()}, layer


def test_char_ngrams_are_hashed_per_token_and_zero_padded():
    out, layer = _char_ids(["Prize prize prizee", "a"])
    grams = out["char_ngrams"]
    assert grams.shape == (2, 6, 20) and out["token_ids"].shape == (2, 6)
    assert grams.min() >= 0 and grams.max() <= 1000
    np.testing.assert_array_equal(grams[0, 0], grams[0, 1])  # case folded, then hashed alike
    # "<prize>": 6 + 5 + 4 + 3 n-grams of widths 2..5; "<a>": 2 + 1
    assert (grams[0, 0] > 0).sum() == 18 and (grams[1, 0] > 0).sum() == 3
    assert (grams[0, 3:] == 0).all() and (grams[1, 1:] == 0).all()  # no token, no n-grams
    shared = set(grams[0, 0][grams[0, 0] > 0]) & set(grams[0, 2][grams[0, 2] > 0])
    assert len(shared) >= 14  # a misspelling keeps most of the word's n-grams
    again = tok.TextTokenizer.from_config(layer.get_config())
    np.testing.assert_array_equal(
        keras.ops.convert_to_numpy(again(np.array(["Prize prize prizee", "a"], dtype=object))["char_ngrams"]),
        grams)


def test_char_ngram_widths_and_cap_are_honoured():
    out, _ = _char_ids(["prize"], min_n=3, max_n=3, per_token=4)
    assert (out["char_ngrams"][0, 0] > 0).sum() == 4  # five trigrams of "<prize>", cut to 4
    with pytest.raises(ValueError, match="not a range"):
        tok.CharNgrams(min_n=4, max_n=2)
