"""Test-time augmentation: a classifier's probabilities averaged over the mirror images it was
trained on (nnU-Net mirrors at test time for the same reason). A network that learnt from
random flips has seen every mirror image as the same class; averaging them removes the part of
its answer that depends on which way round the input happens to be.

The average is a Keras model wrapped around the trained one at prediction and export time, so
evaluation, ``predict``, the SavedModel and TFLite all answer the same. It is not saved in
``model.keras``: the run records whether to wrap, and a run without it predicts as before.
"""

import itertools

import keras


@keras.saving.register_keras_serializable(package="cnn_tasks")
class Mirror(keras.layers.Layer):
    """The input reversed along ``axes`` (batch axis excluded); the identity for no axes. One
    reversal per axis: TFLite's REVERSE_V2 refuses non-contiguous axes in one op."""

    def __init__(self, axes=(), **kwargs):
        super().__init__(**kwargs)
        self.axes = tuple(int(a) for a in axes)

    def call(self, inputs):
        for axis in self.axes:
            inputs = keras.ops.flip(inputs, axis=axis)
        return inputs

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "axes": list(self.axes)}


def mirror_averaged(model, axes, dense=False):
    """``model``'s output averaged over the input mirrored along every subset of ``axes``
    (2 ** len(axes) passes: 8 for a volume's depth, height and width). A ``dense`` output (a
    segmentation's map, aligned with the input) is mirrored back before the average."""
    axes = tuple(axes)
    if not axes:
        return model
    inputs = keras.Input(model.input_shape[1:], dtype=model.inputs[0].dtype, name=model.inputs[0].name)
    subsets = [c for n in range(len(axes) + 1) for c in itertools.combinations(axes, n)]
    outputs = []
    for subset in subsets:
        tag = "".join(map(str, subset)) or "none"
        output = model(Mirror(subset, name=f"mirror_{tag}")(inputs))
        outputs.append(Mirror(subset, name=f"unmirror_{tag}")(output) if dense else output)
    return keras.Model(inputs, keras.layers.Average(name="mirror_average")(outputs),
                       name=f"{model.name}_mirror_averaged")
