"""Heads shared by tasks: a nested ``"head"`` model from backbone features to logits.

The head is its own nested model (``model.get_layer("head")``) and the softmax a separate final
layer, so explanations (Grad-CAM for images, n-gram contributions for text) can reach the logits.
"""

import keras
from keras import layers

from pipelines.backbones import deepest_level, pyramid_outputs
from pipelines.backbones.spatial import layer

HEAD_LAYER_NAME = "head"
PROBABILITIES_LAYER_NAME = "probabilities"


def classifier_head(features_shape, n_classes, *, pool=None, norm=False, hidden=0, dropout=0.0,
                    max_norm=0.0):
    """features -> [global pooling] -> [batch norm] -> [fully connected + ReLU] -> [dropout] -> logits.

    ``norm`` batch-normalises the pooled features. A head trained on a frozen backbone needs it:
    reused features share a large offset and differ by little, and plain gradient descent on
    them barely moves (the linear probe of He et al. 2022, MAE, uses the same layer).
    ``max_norm`` > 0 rescales each class's weight vector to at most that l2 norm after every
    update (Kim 2014 uses 3 with dropout 0.5).
    """
    inputs = keras.Input(tuple(features_shape), name="features")
    x = inputs
    if pool:
        kind = {"avg": "global_average_pool", "max": "global_max_pool"}[pool]
        x = layer(kind, len(features_shape) - 1)(name=f"global_{pool}_pool")(x)
    if norm:
        # momentum 0.9: with few labels a head sees few steps, and Keras' 0.99 would leave the
        # moving statistics far from the data's at inference (as in basic_cnn)
        x = layers.BatchNormalization(momentum=0.9, name="features_norm")(x)
    if hidden:
        x = layers.Dense(hidden, activation="relu", name="fc")(x)
    if dropout:
        x = layers.Dropout(dropout, name="dropout")(x)
    constraint = keras.constraints.MaxNorm(max_norm, axis=0) if max_norm else None
    logits = layers.Dense(n_classes, kernel_constraint=constraint, name="logits")(x)
    return keras.Model(inputs, logits, name=HEAD_LAYER_NAME)


def softmax(logits):
    return layers.Activation("softmax", name=PROBABILITIES_LAYER_NAME, dtype="float32")(logits)


def build_classifier(backbone, n_classes, *, pool="avg", norm=False, hidden=0, dropout=0.3):
    """inputs -> backbone -> deepest level -> head (global pool, [norm], logits) -> softmax; for
    images and volumes alike (every classifier of an image-modality backbone)."""
    level = deepest_level(backbone)
    head = classifier_head(pyramid_outputs(backbone)[level].shape[1:], n_classes, pool=pool,
                           norm=norm, hidden=hidden, dropout=dropout)
    inputs = keras.Input(backbone.input_shape[1:], name="image")
    return keras.Model(inputs, softmax(head(backbone(inputs)[level])), name="image_classifier")
