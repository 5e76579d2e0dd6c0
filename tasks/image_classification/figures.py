"""Image-classification figures: Grad-CAM heat maps and the most confident mistakes."""

import numpy as np
import tensorflow as tf

from pipelines import plots
from pipelines.gradcam import class_activation_maps, normalise_each


def gradcam(model, images, classes):
    """Grad-CAM maps in [0, 1] at image resolution, and the level used."""
    cams, level = class_activation_maps(model, images, classes)
    cams = tf.image.resize(cams[..., None], images.shape[1:3], method="bilinear")[..., 0].numpy()
    return normalise_each(cams), level


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
