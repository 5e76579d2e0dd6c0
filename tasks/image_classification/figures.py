"""Image-classification figures: Grad-CAM heat maps and the most confident mistakes."""

import keras
import numpy as np
import tensorflow as tf

from pipelines import plots
from pipelines.backbones import BACKBONE_LAYER_NAME, pyramid_outputs
from pipelines.heads import HEAD_LAYER_NAME


def gradcam_level(backbone):
    """The deepest pyramid level with more than one pixel (a 1x1 map cannot localise)."""
    levels = sorted(pyramid_outputs(backbone), key=lambda k: int(k[1:]))
    spatial = [k for k in levels if max(pyramid_outputs(backbone)[k].shape[1:3]) > 1]
    return (spatial or levels)[-1], levels[-1]


def gradcam(model, images, classes):
    """Grad-CAM (Selvaraju et al. 2017) maps in [0, 1] at image resolution, and the level used."""
    backbone = model.get_layer(BACKBONE_LAYER_NAME)
    head = model.get_layer(HEAD_LAYER_NAME)
    level, deepest = gradcam_level(backbone)
    outputs = pyramid_outputs(backbone)
    to_level = keras.Model(backbone.input, outputs[level])
    tail = None if level == deepest else keras.Model(outputs[level], outputs[deepest])
    x = tf.convert_to_tensor(images, tf.float32)
    with tf.GradientTape() as tape:
        features = to_level(x, training=False)
        tape.watch(features)
        logits = head(tail(features, training=False) if tail else features, training=False)
        score = tf.gather(logits, tf.convert_to_tensor(classes), batch_dims=1)
    grads = tape.gradient(score, features)
    weights = tf.reduce_mean(grads, axis=(1, 2), keepdims=True)
    cam = tf.nn.relu(tf.reduce_sum(weights * features, axis=-1, keepdims=True))
    cam = tf.image.resize(cam, images.shape[1:3], method="bilinear")[..., 0].numpy()
    peak = cam.reshape(len(cam), -1).max(axis=1).reshape(-1, 1, 1)
    return np.where(peak > 0, cam / np.maximum(peak, 1e-12), 0.0), level


def spread_over_classes(y_true, count):
    """Up to ``count`` test indices taken in turn from each true class, in split order.

    The first images of a split can all be one class; a user reading the heat maps wants to see
    what the network looks at for every class.
    """
    y_true = np.asarray(y_true)
    queues = [list(np.flatnonzero(y_true == c)) for c in np.unique(y_true)]
    pick = []
    while len(pick) < min(count, len(y_true)):
        for queue in queues:
            if queue and len(pick) < count:
                pick.append(queue.pop(0))
    return np.array(sorted(pick), dtype=int)


def gradcam_figure(model, images, y_true, proba, class_names, count=6):
    if len(images) == 0:
        return None, ""
    pick = spread_over_classes(y_true, count)
    predicted = proba[pick].argmax(axis=1)
    maps, level = gradcam(model, images[pick], predicted)
    titles = [f"true {class_names[y_true[i]]}\npred {class_names[c]} ({proba[i, c]:.2f})"
              for i, c in zip(pick, predicted)]
    png = plots.image_grid(images[pick], titles, overlays=maps, columns=6,
                           title=f"Grad-CAM on {level} for the predicted class")
    return png, (f"Grad-CAM heat maps from pyramid level {level} (the deepest level with spatial "
                 f"extent) for {len(pick)} test images taken in turn from each class; red = evidence for "
                 f"the predicted class.")


def mistakes_figure(images, y_true, proba, class_names, count=12):
    predicted = proba.argmax(axis=1)
    wrong = np.flatnonzero(predicted != y_true)
    if len(wrong) == 0:
        return None, ""
    wrong = wrong[np.argsort(-proba[wrong, predicted[wrong]])][:count]
    titles = [f"true {class_names[y_true[i]]}\npred {class_names[predicted[i]]} "
              f"({proba[i, predicted[i]]:.2f})" for i in wrong]
    return (plots.image_grid(images[wrong], titles, columns=6, title="Most confident mistakes"),
            f"The {len(wrong)} most confident wrong predictions on the test split "
            f"({len(np.flatnonzero(predicted != y_true))} mistakes in all).")
