"""Grad-CAM (Selvaraju et al. 2017) for every classifier built by :func:`pipelines.heads.build_classifier`,
images and volumes alike: the deepest pyramid level with spatial extent, weighted by the mean
gradient of the class score. Tasks scale the maps to their inputs and draw them."""

import keras
import numpy as np
import tensorflow as tf

from pipelines.backbones import BACKBONE_LAYER_NAME, pyramid_outputs
from pipelines.heads import HEAD_LAYER_NAME


def gradcam_level(backbone):
    """(the deepest level with more than one pixel or voxel, the deepest level): a 1x1 map
    cannot localise."""
    levels = sorted(pyramid_outputs(backbone), key=lambda k: int(k[1:]))
    spatial = [k for k in levels if max(pyramid_outputs(backbone)[k].shape[1:-1]) > 1]
    return (spatial or levels)[-1], levels[-1]


def class_activation_maps(model, inputs, classes):
    """(maps at the level's resolution, ReLU'd, not yet normalised; the level's name)."""
    backbone = model.get_layer(BACKBONE_LAYER_NAME)
    head = model.get_layer(HEAD_LAYER_NAME)
    level, deepest = gradcam_level(backbone)
    outputs = pyramid_outputs(backbone)
    to_level = keras.Model(backbone.input, outputs[level])
    tail = None if level == deepest else keras.Model(outputs[level], outputs[deepest])
    x = tf.convert_to_tensor(inputs, tf.float32)
    with tf.GradientTape() as tape:
        features = to_level(x, training=False)
        tape.watch(features)
        logits = head(tail(features, training=False) if tail else features, training=False)
        score = tf.gather(logits, tf.convert_to_tensor(classes), batch_dims=1)
    grads = tape.gradient(score, features)
    spatial_axes = tuple(range(1, len(features.shape) - 1))
    weights = tf.reduce_mean(grads, axis=spatial_axes, keepdims=True)
    return tf.nn.relu(tf.reduce_sum(weights * features, axis=-1)).numpy(), level


def normalise_each(maps):
    """Each map divided by its own peak (all-zero maps stay zero)."""
    maps = np.asarray(maps, np.float64)
    peak = maps.reshape(len(maps), -1).max(axis=1).reshape((-1,) + (1,) * (maps.ndim - 1))
    return np.where(peak > 0, maps / np.maximum(peak, 1e-12), 0.0)
