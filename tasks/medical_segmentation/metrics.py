"""Segmentation metrics per case and per foreground class: Dice, IoU and HD95.

Computed on whole cases (a reassembled 3D volume, or a 2D image) in physical units from the
voxel spacing (pixels when no spacing is known), then averaged over classes and cases.

Conventions for empty structures (documented in docs, pinned by tests):
- truth and prediction both empty: Dice 1, IoU 1, HD95 0 (nothing to find, nothing found);
- exactly one empty: Dice 0, IoU 0, HD95 = the case's diagonal in physical units (the largest
  distance possible inside the volume), so a miss is the worst score rather than left out.

HD95 is the 95th percentile of the symmetric surface distances: the distances from every
surface voxel of the prediction to the truth's surface together with those from the truth's
surface to the prediction's (the convention of medpy's ``hd95``).
"""

import numpy as np


def dice(truth, prediction):
    truth, prediction = np.asarray(truth, bool), np.asarray(prediction, bool)
    total = truth.sum() + prediction.sum()
    return 1.0 if total == 0 else float(2.0 * np.logical_and(truth, prediction).sum() / total)


def iou(truth, prediction):
    truth, prediction = np.asarray(truth, bool), np.asarray(prediction, bool)
    union = np.logical_or(truth, prediction).sum()
    return 1.0 if union == 0 else float(np.logical_and(truth, prediction).sum() / union)


def surface(mask):
    """Voxels of ``mask`` with at least one face-neighbour outside it."""
    from scipy import ndimage

    mask = np.asarray(mask, bool)
    if not mask.any():
        return mask
    eroded = ndimage.binary_erosion(mask, structure=ndimage.generate_binary_structure(mask.ndim, 1),
                                    border_value=0)
    return mask & ~eroded


def hd95(truth, prediction, spacing=None):
    from scipy import ndimage

    truth, prediction = np.asarray(truth, bool), np.asarray(prediction, bool)
    spacing = np.ones(truth.ndim) if spacing is None else np.asarray(spacing, float)
    if not truth.any() and not prediction.any():
        return 0.0
    if not truth.any() or not prediction.any():
        return float(np.sqrt((((np.array(truth.shape) - 1) * spacing) ** 2).sum()))
    truth_surface, prediction_surface = surface(truth), surface(prediction)
    to_truth = ndimage.distance_transform_edt(~truth_surface, sampling=spacing)
    to_prediction = ndimage.distance_transform_edt(~prediction_surface, sampling=spacing)
    distances = np.concatenate([to_truth[prediction_surface], to_prediction[truth_surface]])
    return float(np.percentile(distances, 95))


def case_metrics(truth, prediction, classes, spacing=None):
    """{class: {"dice", "iou", "hd95"}} for each foreground class id in ``classes``."""
    truth, prediction = np.asarray(truth), np.asarray(prediction)
    if truth.shape != prediction.shape:
        raise ValueError(f"truth {truth.shape} and prediction {prediction.shape} differ in shape")
    return {c: {"dice": dice(truth == c, prediction == c), "iou": iou(truth == c, prediction == c),
                "hd95": hd95(truth == c, prediction == c, spacing)} for c in classes}


def class_mean(case_result, key):
    """One case's mean of ``key`` over its foreground classes."""
    return float(np.mean([m[key] for m in case_result.values()]))


def mean_metrics(per_case):
    """Mean over classes and cases of a list of :func:`case_metrics` results."""
    keys = ("dice", "iou", "hd95")
    values = {k: [m[k] for case in per_case for m in case.values()] for k in keys}
    return {k: float(np.mean(v)) if v else float("nan") for k, v in values.items()}
