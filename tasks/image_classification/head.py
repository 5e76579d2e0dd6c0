"""Image classification head: pool the backbone's deepest pyramid level, then the shared head."""

import keras

from pipelines.backbones import deepest_level, pyramid_outputs
from pipelines.heads import classifier_head, softmax


def build_classifier(backbone, n_classes, *, pool="avg", norm=False, hidden=0, dropout=0.3):
    """inputs -> backbone -> deepest level -> head (pool, [norm], logits) -> softmax."""
    level = deepest_level(backbone)
    head = classifier_head(pyramid_outputs(backbone)[level].shape[1:], n_classes, pool=pool,
                           norm=norm, hidden=hidden, dropout=dropout)
    inputs = keras.Input(backbone.input_shape[1:], name="image")
    return keras.Model(inputs, softmax(head(backbone(inputs)[level])), name="image_classifier")
