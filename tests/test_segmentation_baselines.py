"""The classical segmentation baselines."""

import numpy as np

from tasks.medical_segmentation import baselines


def test_otsu_separates_two_intensity_populations():
    image = np.full((10, 10), 0.2, np.float32)
    image[3:7, 3:7] = 0.8
    mask = baselines.otsu(image)
    assert mask.sum() == 16 and mask[4, 4] == 1 and mask[0, 0] == 0
    dark = baselines.otsu(image, bright_foreground=False)
    assert dark.sum() == 84
    assert baselines.otsu(np.zeros((4, 4))).sum() == 0


def test_polarity_follows_the_training_masks():
    image = np.full((6, 6), 0.9)
    image[2:4, 2:4] = 0.1
    mask = np.zeros((6, 6), int)
    mask[2:4, 2:4] = 1
    assert baselines.otsu_polarity([image], [mask]) is False
    assert baselines.otsu_polarity([1 - image], [mask]) is True


def test_atlas_is_the_mean_mask_and_predicts_the_majority():
    a = np.zeros((4, 4), int)
    a[:2, :2] = 1
    b = np.zeros((4, 4), int)
    b[:2, :3] = 1
    frequencies = baselines.atlas([a, b, a], 2, (4, 4))
    np.testing.assert_allclose(frequencies[0, 0], [0, 1])
    np.testing.assert_allclose(frequencies[0, 2], [2 / 3, 1 / 3], atol=1e-6)
    predicted = baselines.atlas_predict(frequencies, (4, 4))
    np.testing.assert_array_equal(predicted, a)
    assert baselines.atlas_predict(frequencies, (8, 8)).shape == (8, 8)
