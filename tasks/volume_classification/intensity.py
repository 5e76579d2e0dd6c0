"""Intensities of a volume as the network takes them, in NumPy and as graph twins for export.

``window``: clip to [low, high] in the data's units (a CT window in Hounsfield units) and scale
to [0, 1]; ``zscore``: each volume by its own mean and spread (MRI, whose units are arbitrary).
"""

import numpy as np

CT_WINDOW = (-1000.0, 400.0)  # air to soft tissue and beyond: lung nodules keep their edges
HU_AIR_BELOW = -500.0  # a volume reaching below this is taken as CT in Hounsfield units


def normalize(volumes, method, window=None):
    """(N, D, H, W, 1) in the data's units -> float32 network input."""
    volumes = np.asarray(volumes, np.float32)
    if method == "window":
        low, high = window
        return np.clip((volumes - low) / (high - low), 0.0, 1.0)
    axes = tuple(range(1, volumes.ndim))
    mean = volumes.mean(axis=axes, keepdims=True)
    std = volumes.std(axis=axes, keepdims=True)
    return ((volumes - mean) / np.maximum(std, 1e-6)).astype(np.float32)


def normalize_in_graph(volumes, method, window=None):
    """The graph twin of :func:`normalize` for a float32 (N, D, H, W, 1) tensor."""
    import tensorflow as tf

    if method == "window":
        low, high = window
        return tf.clip_by_value((volumes - low) / (high - low), 0.0, 1.0)
    mean, variance = tf.nn.moments(volumes, axes=[1, 2, 3, 4], keepdims=True)
    return (volumes - mean) / tf.maximum(tf.sqrt(variance), 1e-6)


def choose(volumes, requested, window):
    """(method, window, note): as configured, or for ``auto`` a CT window when the training
    volumes reach air in Hounsfield units, else z-scores."""
    if requested == "window" or (requested == "auto" and window):
        window = list(window or CT_WINDOW)
        return "window", window, f"Intensities: window [{window[0]:g}, {window[1]:g}] scaled to [0, 1]."
    if requested == "auto" and float(np.percentile(volumes, 1)) < HU_AIR_BELOW:
        window = list(CT_WINDOW)
        return "window", window, (f"Intensities: the volumes reach air in Hounsfield units, so the CT "
                                  f"window [{window[0]:g}, {window[1]:g}] HU scaled to [0, 1].")
    return "zscore", None, "Intensities: each volume z-scored by its own mean and spread."
