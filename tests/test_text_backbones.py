"""The text backbone contract: features aligned with tokens, zero at padding, sentence = max."""

import keras
import numpy as np
import pytest

from pipelines.backbones import BACKBONES, create_backbone

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
