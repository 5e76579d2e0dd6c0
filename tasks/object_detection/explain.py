"""Grad-CAM for one detected box (Selvaraju et al. 2017, as detectors adapt it): the class logit
of the anchor that produced the box, differentiated with respect to the feature-pyramid level that
anchor sits on, channels weighted by their mean gradient. It shows which part of the image made
the detector call the box what it called it."""

import keras
import numpy as np
import tensorflow as tf

from tasks.object_detection.anchors import pairwise_iou
from tasks.object_detection.model import BOX_VARIANCE


def box_activation_map(model, pixels, box, class_id, anchors, spec):
    """(map at the network's input size, normalised to [0, 1]; the level's name) for ``box``
    (x1, y1, x2, y2 in network pixels) of class ``class_id`` on one image ``pixels`` (H, W, 3)."""
    x = tf.convert_to_tensor(pixels[None], tf.float32)
    raw = model(x, training=False).numpy()[0]
    decoded = keras.utils.bounding_boxes.decode_deltas_to_boxes(
        anchors=tf.constant(anchors), boxes_delta=tf.constant(raw[None, :, :4]), anchor_format="xyxy",
        box_format="xyxy", encoded_format="center_xywh", variance=list(BOX_VARIANCE))
    overlap = pairwise_iou(np.asarray(box, np.float32)[None], np.asarray(decoded)[0])[0]
    candidates = np.flatnonzero(overlap >= 0.5)
    if not candidates.size:
        candidates = np.arange(len(anchors))
    anchor = int(candidates[np.argmax(raw[candidates, 4 + class_id])])
    counts = [(-(-spec.height // 2 ** k)) * (-(-spec.width // 2 ** k)) * spec.per_location
              for k in range(spec.min_level, spec.max_level + 1)]
    level = spec.min_level + int(np.searchsorted(np.cumsum(counts), anchor, side="right"))
    features_layer = model.get_layer(f"fpn_output_P{level}") if _has(model, f"fpn_output_P{level}") \
        else model.get_layer(f"fpn_extra_P{level}")
    probe = keras.Model(model.input, [features_layer.output, model.output])
    with tf.GradientTape() as tape:
        features, outputs = probe(x, training=False)
        score = outputs[0, anchor, 4 + class_id]
    grads = tape.gradient(score, features)
    weights = tf.reduce_mean(grads, axis=(1, 2), keepdims=True)
    cam = tf.nn.relu(tf.reduce_sum(weights * features, axis=-1))[0].numpy()
    cam = tf.image.resize(cam[..., None], (spec.height, spec.width), method="bilinear").numpy()[..., 0]
    peak = cam.max()
    return (cam / peak if peak > 0 else cam), f"P{level}"


def _has(model, name):
    return any(layer.name == name for layer in model.layers)
