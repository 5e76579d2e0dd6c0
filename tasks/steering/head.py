"""The steering model: standardise the frame, the backbone's deepest level, PilotNet's fully
connected layers, one linear output scaled back to the data's steering units.

Inputs are standardised per channel with the training frames' statistics (the paper's fixed
normalisation layer, learnt from the data), and the output layer predicts the angle in units of
the training angles' spread, so the same learning rate suits angles of +/-0.1 and of +/-25
degrees; a final fixed rescaling turns it back into the data's units, so the saved model, its
export and ``predict`` all answer in them.
"""

import keras
from keras import layers

from pipelines.backbones import deepest_level, pyramid_outputs
from pipelines.heads import HEAD_LAYER_NAME

INPUT_NORMALIZATION = "input_normalization"
OUTPUT_NAME = "steering"


def build_regressor(backbone, *, pixel_mean, pixel_variance, target_mean, target_std,
                    units=(100, 50, 10), pool="flatten", dropout=0.0, standardise_pixels=True):
    """Frames -> [pixel standardisation] -> backbone -> head -> angle. A backbone that normalises
    its input itself (pretrained weights expect their own scaling) gets the frames as they are."""
    level = deepest_level(backbone)
    features = pyramid_outputs(backbone)[level]
    head_in = keras.Input(tuple(features.shape[1:]), name="features")
    x = layers.Flatten(name="flatten")(head_in) if pool == "flatten" else \
        layers.GlobalAveragePooling2D(name="global_avg_pool")(head_in)
    for i, width in enumerate(units, start=1):
        if dropout:
            x = layers.Dropout(dropout, name=f"dropout{i}")(x)
        x = layers.Dense(int(width), activation="relu", name=f"fc{i}")(x)
    standardised = layers.Dense(1, name="standardised_steering")(x)
    head = keras.Model(head_in, standardised, name=HEAD_LAYER_NAME)

    inputs = keras.Input(backbone.input_shape[1:], name="image")
    normalised = layers.Normalization(mean=list(pixel_mean), variance=list(pixel_variance),
                                      name=INPUT_NORMALIZATION)(inputs) if standardise_pixels else inputs
    angle = layers.Rescaling(scale=float(target_std), offset=float(target_mean), name=OUTPUT_NAME,
                             dtype="float32")(head(backbone(normalised)[level]))
    return keras.Model(inputs, angle, name="steering_regressor")
