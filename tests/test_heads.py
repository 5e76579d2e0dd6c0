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


def test_feature_norm_lets_a_head_learn_offset_features():
    """Reused frozen features share a large offset and differ by little; a plain linear head
    stays near chance, the normalised head does not."""
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 512)
    x = (5.0 + 0.05 * rng.normal(size=(512, 16)) + 0.1 * y[:, None] * (np.arange(16) < 4)).astype("float32")

    def accuracy(norm):
        keras.utils.set_random_seed(0)
        head = classifier_head((16,), 2, norm=norm)
        head.compile(optimizer=keras.optimizers.Adam(2e-3),
                     loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        head.fit(x, y, epochs=20, batch_size=32, verbose=0)
        return float((head.predict(x, verbose=0).argmax(1) == y).mean())

    assert accuracy(norm=True) >= 0.9
    assert accuracy(norm=False) <= 0.7


def test_feature_norm_is_on_by_default_only_for_a_frozen_backbone():
    from pipelines.classification_task import ClassificationTask
    from tasks.image_classification.task import ImageClassificationConfig

    assert not ClassificationTask.head_norm(ImageClassificationConfig())
    assert ClassificationTask.head_norm(ImageClassificationConfig(freeze_backbone=True))
    assert not ClassificationTask.head_norm(ImageClassificationConfig(freeze_backbone=True, head_norm=False))
    head = classifier_head((4, 4, 8), 3, pool="avg", norm=True)
    assert [layer.name for layer in head.layers][1:3] == ["global_avg_pool", "features_norm"]
