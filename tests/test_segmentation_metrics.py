"""Dice, IoU and HD95 pinned by hand-computed cases, including the empty-structure conventions."""

import numpy as np
import pytest

from tasks.medical_segmentation import metrics


def _square(shape, top, left, size):
    mask = np.zeros(shape, bool)
    mask[top:top + size, left:left + size] = True
    return mask


def test_dice_and_iou_by_hand():
    truth = _square((10, 10), 0, 0, 4)  # 16 pixels
    prediction = _square((10, 10), 0, 2, 4)  # 16 pixels, overlap 4x2 = 8
    assert metrics.dice(truth, prediction) == pytest.approx(2 * 8 / 32)
    assert metrics.iou(truth, prediction) == pytest.approx(8 / 24)


def test_hd95_of_a_shifted_square_in_pixels_and_millimetres():
    truth = _square((20, 20), 5, 5, 6)
    prediction = _square((20, 20), 5, 8, 6)  # shifted 3 columns
    # Surface distances: the far edges of each square lie 3 pixels from the other's surface;
    # every other surface pixel lies on or next to the other surface, so the 95th percentile
    # of the pooled distances is 3.
    assert metrics.hd95(truth, prediction) == pytest.approx(3.0)
    assert metrics.hd95(truth, prediction, spacing=(1.0, 2.0)) == pytest.approx(6.0)
    assert metrics.hd95(truth, truth) == 0.0


def test_hd95_3d_with_anisotropic_spacing():
    truth = np.zeros((5, 8, 8), bool)
    truth[1:4, 2:6, 2:6] = True
    prediction = np.roll(truth, 1, axis=0)  # one slice further along axis 0
    assert metrics.hd95(truth, prediction, spacing=(3.0, 1.0, 1.0)) == pytest.approx(3.0)


def test_empty_structure_conventions():
    empty = np.zeros((4, 6), bool)
    full = _square((4, 6), 0, 0, 2)
    assert metrics.dice(empty, empty) == 1.0 and metrics.iou(empty, empty) == 1.0
    assert metrics.hd95(empty, empty) == 0.0
    assert metrics.dice(full, empty) == 0.0 and metrics.iou(empty, full) == 0.0
    assert metrics.hd95(full, empty) == pytest.approx(np.hypot(3, 5))
    assert metrics.hd95(empty, full, spacing=(2, 1)) == pytest.approx(np.hypot(6, 5))


def test_case_and_mean_metrics_over_classes():
    truth = np.array([[0, 1, 1, 2], [0, 1, 1, 2]])
    prediction = np.array([[0, 1, 1, 1], [0, 1, 1, 2]])
    case = metrics.case_metrics(truth, prediction, classes=(1, 2))
    assert case[1]["dice"] == pytest.approx(2 * 4 / 9) and case[2]["dice"] == pytest.approx(2 / 3)
    mean = metrics.mean_metrics([case])
    assert mean["dice"] == pytest.approx((8 / 9 + 2 / 3) / 2)
    assert metrics.class_mean(case, "dice") == pytest.approx(mean["dice"])
    with pytest.raises(ValueError, match="differ in shape"):
        metrics.case_metrics(truth, prediction[:, :3], classes=(1,))
