"""Volume-classification figures: orthogonal mid-slices of right and wrong test cases with 3D
Grad-CAM (Selvaraju et al. 2017, over depth, height and width) laid on them."""

import numpy as np

from pipelines import plots
from pipelines.gradcam import class_activation_maps, normalise_each

VIEWS = ("axial", "coronal", "sagittal")


def gradcam3d(model, volumes, classes):
    """Grad-CAM maps in [0, 1] at the volume's size (trilinear), and the level used."""
    from scipy.ndimage import zoom

    cams, level = class_activation_maps(model, volumes, classes)
    scaled = [zoom(cam, [t / s for t, s in zip(volumes.shape[1:4], cam.shape)], order=1) for cam in cams]
    return normalise_each(np.stack(scaled)), level


def mid_slices(volume):
    """The three orthogonal slices through the middle of a (D, H, W) array."""
    d, h, w = (s // 2 for s in volume.shape[:3])
    return volume[d], volume[:, h], volume[:, :, w]


def _display(image):
    low, high = float(image.min()), float(image.max())
    return (image - low) / (high - low) if high > low else np.zeros_like(image)


def slices_figure(model, volumes, y_true, proba, class_names, count=6):
    """Up to ``count`` test cases (correct and wrong ones in turn), each as three mid-slices with
    the Grad-CAM of the predicted class."""
    if len(volumes) == 0:
        return None, ""
    predicted = proba.argmax(axis=1)
    right, wrong = np.flatnonzero(predicted == y_true), np.flatnonzero(predicted != y_true)
    pick = [i for pair in zip(right, wrong) for i in pair][:count]
    pick += [i for i in np.concatenate([right, wrong]) if i not in pick][:count - len(pick)]
    pick = np.array(sorted(pick[:count]), int)
    maps, level = gradcam3d(model, volumes[pick], predicted[pick])
    images, overlays, titles = [], [], []
    for n, i in enumerate(pick):
        verdict = "right" if predicted[i] == y_true[i] else "WRONG"
        for view, image, heat in zip(VIEWS, mid_slices(volumes[i, ..., 0]), mid_slices(maps[n])):
            images.append(_display(image))
            overlays.append(heat)
            titles.append(f"{view}: true {class_names[y_true[i]]}\npred {class_names[predicted[i]]} "
                          f"({proba[i, predicted[i]]:.2f}, {verdict})")
    png = plots.image_grid(images, titles, overlays=overlays, columns=6,
                           title=f"Mid-slices with 3D Grad-CAM on {level}")
    return png, (f"Axial, coronal and sagittal mid-slices of {len(pick)} test volumes, right and "
                 f"wrong in turn, with 3D Grad-CAM from pyramid level {level} for the predicted "
                 f"class (red: evidence for it).")
