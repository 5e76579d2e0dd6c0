"""A KerasHub image backbone from a preset, behind our pyramid contract.

``--backbone-weights keras_hub:PRESET`` names a KerasHub preset: a built-in name or Kaggle /
Hugging Face handle (downloaded by KerasHub when online) or a local preset folder (what
``Backbone.save_to_preset`` writes). Any preset whose backbone has ``pyramid_outputs`` (KerasHub's
ResNet, EfficientNet, MobileNet, CSPNet, ...) gives the P-levels our heads tap; the preset's
image converter's scaling (applied to 0..255 pixels), if it ships one, is the backbone's first
layer, and a grey image is repeated over the three channels the preset expects.
"""

import keras
import numpy as np
from keras import layers

from pipelines.backbones.base import make_backbone, register_backbone
from pipelines.errors import UserError

PREFIX = "keras_hub:"


def load_preset(preset, load_weights=True):
    """The KerasHub backbone of ``preset``; a UserError (naming the preset) when there is none,
    it cannot be downloaded, or it has no ``pyramid_outputs``."""
    try:
        import keras_hub
    except ImportError:
        raise UserError(f"--backbone-weights {PREFIX}{preset}: KerasHub is not installed here; "
                        f"pip install keras-hub (or this package's [hub] extra)") from None
    try:
        backbone = keras_hub.models.Backbone.from_preset(preset, load_weights=load_weights)
    except Exception as error:  # noqa: BLE001 -- unknown names, files, downloads: one line each
        first = str(error).strip().splitlines()[0][:200] if str(error).strip() else type(error).__name__
        raise UserError(f"--backbone-weights {PREFIX}{preset}: cannot load that KerasHub preset "
                        f"({type(error).__name__}: {first}); give a preset name, a handle, or a "
                        f"local preset folder") from None
    if not getattr(backbone, "pyramid_outputs", None):
        raise UserError(f"--backbone-weights {PREFIX}{preset}: its {type(backbone).__name__} has no "
                        f"pyramid_outputs (an image backbone's feature levels), so no head can tap it")
    return backbone


def preset_scaling(preset):
    """(scale, offset) per RGB channel on 0..255 from the preset's image converter, or None."""
    import keras_hub

    try:
        converter = keras_hub.layers.ImageConverter.from_preset(preset)
    except (FileNotFoundError, ValueError):
        return None
    scale = np.broadcast_to(np.asarray(converter.scale if converter.scale is not None else 1.0, float), 3)
    offset = np.broadcast_to(np.asarray(converter.offset if converter.offset is not None else 0.0, float), 3)
    return scale.tolist(), offset.tolist()


@register_backbone("keras_hub", modality="image", min_size=32, requires=("keras_hub",), normalises_input=True,
                   note="a KerasHub image backbone from a preset: --backbone-weights keras_hub:PRESET")
def keras_hub_backbone(input_shape, preset=None, load_weights=True):
    if not preset:
        raise ValueError("give backbone_options.preset, or --backbone-weights keras_hub:PRESET")
    hub = load_preset(preset, load_weights=load_weights)
    inputs = keras.Input(input_shape, name="image")
    x = layers.Concatenate(name="grey_to_rgb")([inputs] * 3) if input_shape[-1] == 1 else inputs
    scaling = preset_scaling(preset)
    if scaling:  # y = 255 x scale + offset, written as a normalisation (mean, variance per channel)
        scale, offset = np.asarray(scaling[0]) * 255.0, np.asarray(scaling[1])
        x = layers.Normalization(mean=(-offset / scale).tolist(), variance=(1.0 / scale ** 2).tolist(),
                                 name="preset_scaling")(x)
    features = keras.Model(hub.inputs, hub.pyramid_outputs)
    # The preset's own layers called again on our input, one by one: a flat graph in which every
    # level connects to the next (Grad-CAM taps a level and runs the rest), the weights kept.
    # Keras' Function._run_through_graph is private (setup.cfg pins the Keras versions tested);
    # calling ``features(x)`` instead nests the model and its levels stop connecting.
    pyramid = features._run_through_graph([x], operation_fn=lambda operation: operation)
    return make_backbone(inputs, dict(pyramid))
