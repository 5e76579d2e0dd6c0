"""Which test images the image-classification report explains."""

import numpy as np

from tasks.image_classification.figures import spread_over_classes


def test_grad_cam_examples_come_from_every_class_in_split_order():
    y = np.array([0, 0, 0, 0, 0, 0, 0, 1, 0, 2, 1])
    pick = spread_over_classes(y, 6)
    assert list(pick) == [0, 1, 2, 7, 9, 10]
    assert set(y[pick]) == {0, 1, 2}


def test_grad_cam_examples_fill_up_from_the_larger_class_and_stop_at_the_split_size():
    y = np.array([1, 0, 0, 0, 0])
    assert list(spread_over_classes(y, 3)) == [0, 1, 2]
    assert list(spread_over_classes(y, 10)) == [0, 1, 2, 3, 4]
    assert list(spread_over_classes(np.array([], dtype=int), 6)) == []
