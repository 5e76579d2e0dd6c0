"""Classical segmentation baselines computed on the same split as the network.

- Otsu (binary 2D sets such as nuclei): threshold each image at its Otsu level (scikit-image);
  the brighter side is foreground unless the training masks say the structure is dark.
- Probabilistic atlas (multi-class, aligned anatomy such as cropped hippocampus volumes): the
  per-pixel class frequencies of the training masks (resized to a common grid), argmax.
"""

import numpy as np


def otsu_polarity(images, masks):
    """True when foreground is brighter than background in the training images (by mean).
    ``images`` may be a generator: one image is held at a time."""
    sums, counts = np.zeros(2), np.zeros(2)  # background, foreground
    for image, mask in zip(images, masks):
        image, foreground = np.asarray(image, np.float64), np.asarray(mask) > 0
        sums += image[~foreground].sum(), image[foreground].sum()
        counts += (~foreground).sum(), foreground.sum()
    if not counts.all():
        return True
    return bool(sums[1] / counts[1] >= sums[0] / counts[0])


def otsu(image, bright_foreground=True):
    """Binary mask of one image (2D, or (H, W, C) averaged over channels) at its Otsu threshold."""
    from skimage.filters import threshold_otsu

    gray = np.asarray(image, np.float32)
    if gray.ndim == 3:
        gray = gray.mean(axis=-1)
    if gray.max() == gray.min():
        return np.zeros(gray.shape, np.int16)
    level = threshold_otsu(gray)
    return ((gray > level) if bright_foreground else (gray <= level)).astype(np.int16)


def atlas(masks, n_classes, shape):
    """Per-pixel class frequencies of the training ``masks`` on a ``shape`` grid: (*shape, classes)."""
    from skimage.transform import resize

    counts = np.zeros((*shape, n_classes), np.float32)
    for mask in masks:
        onehot = np.eye(n_classes, dtype=np.float32)[np.asarray(mask, int)]
        counts += resize(onehot, (*shape, n_classes), order=1, mode="edge", anti_aliasing=False)
    return counts / max(len(masks), 1)


def atlas_predict(frequencies, shape):
    """The atlas resized to a case's ``shape`` and its most frequent class per pixel."""
    from skimage.transform import resize

    n_classes = frequencies.shape[-1]
    return resize(frequencies, (*shape, n_classes), order=1, mode="edge").argmax(axis=-1).astype(np.int16)
