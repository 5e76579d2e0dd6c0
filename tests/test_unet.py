"""The U-Net decoder works on every image backbone's pyramid; the Dice + CE loss by hand."""

import keras
import numpy as np
import pytest

from pipelines.backbones import BACKBONES, create_backbone
from tasks.medical_segmentation.unet import DiceCrossEntropy, ForegroundDice, build_unet
from test_backbones import IMAGE_BACKBONES, TINY


@pytest.mark.parametrize("name", IMAGE_BACKBONES)
def test_output_has_the_input_size_for_every_backbone(name):
    keras.utils.set_random_seed(0)
    size = max(32, BACKBONES.entry(name).meta.get("min_size", 1))
    taller = size + BACKBONES.entry(name).meta.get("size_multiple", 6)  # non-square; odd halvings where allowed
    backbone = create_backbone(name, (taller, size, 1), **TINY[name])
    model = build_unet(backbone, 3, decoder_width=4)
    out = model.predict(np.zeros((2, taller, size, 1), "float32"), verbose=0)
    assert out.shape == (2, taller, size, 3)
    np.testing.assert_allclose(out.sum(-1), 1.0, atol=1e-5)


def test_loss_matches_a_hand_computation():
    y_true = np.array([[[0, 1], [1, 0]]])  # one 2x2 image, class 1 on the diagonal
    p1 = np.array([[[0.2, 0.6], [0.9, 0.1]]])
    y_pred = np.stack([1 - p1, p1], axis=-1).astype("float32")
    ce = -np.mean([np.log(0.8), np.log(0.6), np.log(0.9), np.log(0.9)])
    dice = (2 * (0.6 + 0.9) + 1) / ((2 + (0.2 + 0.6 + 0.9 + 0.1)) + 1)
    loss = DiceCrossEntropy(2)(y_true, y_pred)
    assert float(loss) == pytest.approx(ce + (1 - dice), rel=1e-5)
    only_ce = DiceCrossEntropy(2, dice_weight=0.0)(y_true, y_pred)
    assert float(only_ce) == pytest.approx(ce, rel=1e-5)


def test_loss_config_round_trip():
    loss = DiceCrossEntropy(3, dice_weight=0.5, class_weights=[0.1, 1.0, 2.0])
    again = DiceCrossEntropy.from_config(loss.get_config())
    assert again.class_weights == [0.1, 1.0, 2.0] and again.dice_weight == 0.5


def test_flips_default_on_for_2d_images_and_off_for_volumes():
    from pipelines.tasks import get_task

    task = get_task("medical-segmentation")
    config = task.Config()

    def info(volumes):
        return task.Preprocessing(class_names=["background", "organ"], n_classes=2, volumes=volumes,
                                  image_size=32, tiled=False, channels=1)

    assert task.augment(config, info(True)) is None
    assert callable(task.augment(config, info(False)))
    assert callable(task.augment(task.Config(augment=True), info(True)))
    assert task.augment(task.Config(augment=False), info(False)) is None


def test_epoch_dice_pools_pixels_over_batches_per_class():
    """Class 1 over two batches: 3 true and 4 predicted pixels, 2 in both, so 2*2/(3+4); class 2
    neither labelled nor predicted (counts 1); reset starts a new epoch."""
    def probabilities(classes):
        return np.eye(3, dtype="float32")[np.array(classes)][None]

    metric = ForegroundDice(3)
    metric.update_state(np.array([[1, 1, 0]]), probabilities([1, 0, 1]))
    metric.update_state(np.array([[1, 0, 0]]), probabilities([1, 1, 0]))
    assert float(metric.result()) == pytest.approx((2 * 2 / 7 + 1.0) / 2)
    metric.reset_state()
    metric.update_state(np.array([[2, 0, 0]]), probabilities([0, 0, 0]))
    assert float(metric.result()) == pytest.approx((1.0 + 0.0) / 2)
    assert ForegroundDice.from_config(metric.get_config()).n_classes == 3
