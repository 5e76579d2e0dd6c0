"""Transfer: channel adaptation keeps features, fine-tuning moves a frozen backbone, and a
classification backbone feeds segmentation."""

import json

import keras
import numpy as np
import pytest

from conftest import run_cli
from pipelines.backbones import create_backbone
from pipelines.transfer import copy_weights


def _features(backbone, images):
    return {k: np.asarray(v) for k, v in backbone(images).items()}


@pytest.mark.parametrize("source_channels,target_channels", [(1, 3), (3, 1)])
def test_channel_adaptation_gives_the_same_features_on_equivalent_images(source_channels, target_channels):
    """1 -> 3: kernels replicated / 3, so an RGB copy of a gray image gives the gray features;
    3 -> 1: kernels summed, so a gray image gives the features of its gray RGB copy."""
    keras.utils.set_random_seed(0)
    options = {"widths": [4, 8], "batch_norm": False}
    source = create_backbone("basic_cnn", (16, 16, source_channels), **options)
    target = create_backbone("basic_cnn", (16, 16, target_channels), **options)
    copy_weights(source, target, where="test")
    gray = np.random.default_rng(0).random((2, 16, 16, 1)).astype(np.float32)
    as_input = {1: gray, 3: np.repeat(gray, 3, axis=-1)}
    theirs, mine = _features(source, as_input[source_channels]), _features(target, as_input[target_channels])
    for level in theirs:
        np.testing.assert_allclose(mine[level], theirs[level], rtol=1e-4, atol=1e-6)


def test_another_input_size_takes_the_kernels_unchanged():
    keras.utils.set_random_seed(0)
    source = create_backbone("resnet18", (32, 32, 3))
    target = create_backbone("resnet18", (64, 48, 3))
    copy_weights(source, target, where="test")
    for a, b in zip(source.get_weights(), target.get_weights()):
        np.testing.assert_array_equal(a, b)


@pytest.mark.slow
def test_fine_tuning_moves_the_frozen_backbone_in_one_history(digits_run, tmp_path):
    assert run_cli("train", "image-classification", "--epochs", 1, "--fine-tune-epochs", 1,
                   "--output", tmp_path, "--quiet", "--backbone-from", digits_run,
                   "--freeze-backbone") == 0
    (child,) = (tmp_path / "image-classification").iterdir()
    source = keras.models.load_model(digits_run / "model.keras").get_layer("backbone")
    tuned = keras.models.load_model(child / "model.keras").get_layer("backbone")
    kernels = [(a, b) for a, b in zip(source.get_weights(), tuned.get_weights()) if a.ndim == 4]
    assert kernels and all(not np.array_equal(a, b) for a, b in kernels)
    history = (child / "history.csv").read_text().strip().splitlines()
    assert len(history) == 3  # header + frozen epoch + fine-tuning epoch


@pytest.mark.slow
def test_a_classification_backbone_becomes_a_segmentation_encoder(digits_run, tmp_path):
    assert run_cli("train", "medical-segmentation", "--data", "builtin:phantoms", "--epochs", 1,
                   "--output", tmp_path, "--quiet", "--backbone-from", digits_run, "--set",
                   "decoder_width=4", "--set", "image_size=32") == 0
    (child,) = (tmp_path / "medical-segmentation").iterdir()
    metrics = json.loads((child / "metrics.json").read_text())
    assert metrics["backbone"]["from_run"] == str(digits_run)
    assert json.loads((child / "config.json").read_text())["lineage"]["task"] == "image-classification"
