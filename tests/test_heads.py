"""The shared classifier head."""

import keras
import numpy as np

from pipelines.heads import classifier_head


def test_pooling_by_rank_and_logits():
    assert classifier_head((4, 4, 8), 3, pool="avg").output_shape == (None, 3)
    assert classifier_head((10, 8), 2, pool="max").output_shape == (None, 2)
    head = classifier_head((8,), 5, hidden=6, dropout=0.5)
    assert [layer.name for layer in head.layers][-3:] == ["fc", "dropout", "logits"]


def test_max_norm_caps_each_class_weight_vector_after_updates():
    keras.utils.set_random_seed(0)
    head = classifier_head((16,), 2, max_norm=0.5)
    head.compile(optimizer=keras.optimizers.SGD(5.0),
                 loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    x = np.random.default_rng(0).normal(size=(64, 16)).astype("float32") * 10
    head.fit(x, (x[:, 0] > 0).astype(int), epochs=3, verbose=0)
    kernel = head.get_layer("logits").kernel.numpy()
    assert np.linalg.norm(kernel, axis=0).max() <= 0.5 + 1e-5
