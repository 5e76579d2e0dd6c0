"""The text backbone contract: features aligned with tokens, zero at padding, sentence = max."""

import keras
import numpy as np
import pytest

from pipelines.backbones import BACKBONES, create_backbone
from pipelines.errors import UserError

TEXT_BACKBONES = [n for n in BACKBONES.names() if BACKBONES.entry(n).meta["modality"] == "text"]
TINY = {"text_cnn": {"embedding_dim": 8, "filters": 4},
        "dilated_cnn": {"embedding_dim": 8, "filters": 6}}


def test_at_least_two_text_backbones():
    assert {"text_cnn", "dilated_cnn"} <= set(TEXT_BACKBONES)


@pytest.mark.parametrize("name", TEXT_BACKBONES)
def test_contract(name):
    keras.utils.set_random_seed(0)
    backbone = create_backbone(name, (10,), vocab_size=30, **TINY.get(name, {}))
    ids = np.array([[5, 6, 7, 0, 0, 0, 0, 0, 0, 0], [3] * 10], dtype="int32")
    out = backbone(ids)
    features, sentence = keras.ops.convert_to_numpy(out["features"]), keras.ops.convert_to_numpy(out["sentence"])
    assert features.shape[:2] == (2, 10) and sentence.shape == (2, features.shape[-1])
    assert (features >= 0).all() and (features[0, 3:] == 0).all()
    np.testing.assert_allclose(sentence, features.max(axis=1), rtol=1e-6)
    spans = BACKBONES.entry(name).meta["spans"](**TINY.get(name, {}))
    assert spans.shape == (features.shape[-1], 2)
    assert backbone.get_layer("embedding").input_dim == 30


def test_text_cnn_spans_follow_the_windows():
    spans = BACKBONES.entry("text_cnn").meta["spans"](windows=(3, 4), filters=2)
    assert spans.tolist() == [[1, 1], [1, 1], [1, 2], [1, 2]]


def test_dilated_receptive_field():
    spans = BACKBONES.entry("dilated_cnn").meta["spans"](filters=1)
    assert spans.tolist() == [[16, 16]]


@pytest.mark.parametrize("channels", ["char", "word+char"])
def test_char_channel_takes_ngram_ids_and_keeps_the_contract(channels):
    from pipelines.backbones.text_cnn import char_ngram_spec

    keras.utils.set_random_seed(0)
    backbone = create_backbone("text_cnn", (5,), vocab_size=30, embedding_dim=8, filters=4,
                               channels=channels, char={"dim": 6, "buckets": 50, "per_token": 3})
    assert char_ngram_spec(backbone) == {"buckets": 50, "min_n": 2, "max_n": 5, "per_token": 3}
    ids = np.array([[5, 6, 0, 0, 0]], dtype="int32")
    grams = np.array([[[1, 2, 0], [3, 0, 0], [0, 0, 0], [0, 0, 0], [0, 0, 0]]], dtype="int32")
    out = backbone({"token_ids": ids, "char_ngrams": grams})
    features = keras.ops.convert_to_numpy(out["features"])
    assert features.shape[:2] == (1, 5) and (features[0, 2:] == 0).all()
    # a token's character vector: its n-grams' rows summed over sqrt(count); padding counts for nothing
    layer = backbone.get_layer("char_ngram_embedding")
    table = keras.ops.convert_to_numpy(layer.embeddings)
    vectors = keras.ops.convert_to_numpy(layer(grams))
    np.testing.assert_allclose(vectors[0, 0], table[[1, 2]].sum(axis=0) / np.sqrt(2), rtol=1e-6)
    np.testing.assert_allclose(vectors[0, 1], table[3], rtol=1e-6)
    assert (vectors[0, 2:] == 0).all()
    has_words = channels != "char"
    assert any(layer.name == "embedding" for layer in backbone.layers) == has_words


def test_word_only_backbones_take_plain_ids_and_have_no_char_spec():
    from pipelines.backbones.text_cnn import char_ngram_spec

    backbone = create_backbone("text_cnn", (5,), vocab_size=30, embedding_dim=8, filters=4)
    assert char_ngram_spec(backbone) is None
    with pytest.raises(UserError, match="channels must be one of"):
        create_backbone("text_cnn", (5,), vocab_size=30, channels="letters")
