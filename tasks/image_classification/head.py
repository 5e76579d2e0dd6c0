"""Classification head: pool the backbone's deepest pyramid level, dropout, fully connected."""

import keras
from keras import layers

from pipelines.backbones import deepest_level, pyramid_outputs

HEAD_LAYER_NAME = "head"


def build_classifier(backbone, n_classes, *, pool="avg", hidden=0, dropout=0.3):
    """inputs -> backbone -> deepest level -> head (logits) -> softmax.

    The head is its own nested model so Grad-CAM can differentiate the logits with respect to a
    pyramid level, and the softmax is a separate final layer (Grad-CAM wants the logits).
    """
    level = deepest_level(backbone)
    features = pyramid_outputs(backbone)[level]
    head_in = keras.Input(features.shape[1:], name="features")
    x = (layers.GlobalAveragePooling2D(name="gap") if pool == "avg"
         else layers.GlobalMaxPooling2D(name="gmp"))(head_in)
    if hidden:
        x = layers.Dense(hidden, activation="relu", name="fc")(x)
    if dropout:
        x = layers.Dropout(dropout, name="dropout")(x)
    logits = layers.Dense(n_classes, name="logits")(x)
    head = keras.Model(head_in, logits, name=HEAD_LAYER_NAME)
    inputs = keras.Input(backbone.input_shape[1:], name="image")
    probabilities = layers.Activation("softmax", name="probabilities", dtype="float32")(
        head(backbone(inputs)[level]))
    return keras.Model(inputs, probabilities, name="image_classifier")
