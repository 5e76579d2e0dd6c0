"""Every registered image backbone builds, honours the pyramid strides and trains one epoch."""

import math

import keras
import numpy as np
import pytest

from pipelines.backbones import BACKBONES, create_backbone, pyramid_outputs
from pipelines.errors import UserError
from tasks.image_classification.head import build_classifier

TINY = {"basic_cnn": {"widths": [4, 8, 8]}, "vgg_small": {"width": 0.125},
        "resnet18": {"width": 0.0625}, "mobilenet_v2": {"width": 0.25}, "efficientnet_b0": {},
        "pilotnet": {"width": 0.25}}
IMAGE_BACKBONES = [e.name for e in BACKBONES.entries() if e.meta["modality"] == "image"]


def test_every_image_backbone_has_tiny_settings():
    assert set(IMAGE_BACKBONES) == set(TINY), "add tiny options for the new backbone to TINY"


@pytest.mark.parametrize("name", IMAGE_BACKBONES)
@pytest.mark.parametrize("size, channels", [(32, 3), (8, 1)])
def test_backbone_trains_one_epoch_with_documented_strides(name, size, channels):
    keras.utils.set_random_seed(0)
    size = max(size, BACKBONES.entry(name).meta["min_size"])  # digits are resized up to the minimum
    backbone = create_backbone(name, (size, size, channels), **TINY[name])
    levels = pyramid_outputs(backbone)
    assert list(levels)[0] == "P1" and len(levels) >= 3
    for level, tensor in levels.items():
        stride = 2 ** int(level[1:])
        assert tuple(tensor.shape[1:3]) == (math.ceil(size / stride),) * 2
    model = build_classifier(backbone, 3)
    model.compile("adam", loss="sparse_categorical_crossentropy")
    x = np.random.default_rng(0).random((8, size, size, channels), dtype=np.float32)
    history = model.fit(x, np.arange(8) % 3, epochs=1, batch_size=4, verbose=0)
    assert np.isfinite(history.history["loss"][0])


def test_too_small_input_is_a_user_error():
    with pytest.raises(UserError, match="at least 32x32"):
        create_backbone("resnet18", (8, 8, 1))


def test_bad_backbone_option_is_a_user_error():
    with pytest.raises(UserError, match="backbone_options"):
        create_backbone("basic_cnn", (8, 8, 1), depth=3)


def test_task_default_backbone_options_apply_to_the_default_backbone_only():
    from pipelines.transfer import builder_options
    from tasks.medical_segmentation.task import MedicalSegmentationConfig

    tuned = MedicalSegmentationConfig()
    assert builder_options(tuned) == tuned.backbone_options != {}
    assert builder_options(MedicalSegmentationConfig(backbone="resnet18")) == {}
    chosen = MedicalSegmentationConfig(backbone="resnet18", backbone_options={"width": 16})
    assert builder_options(chosen, {"extra": 1}) == {"width": 16, "extra": 1}
