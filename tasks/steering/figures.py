"""Steering figures: predicted against true, the test drive in time order, the error histogram,
and VisualBackProp saliency (what the network looks at, as in the PilotNet papers)."""

import numpy as np

from pipelines import plots
from pipelines.backbones import BACKBONE_LAYER_NAME, pyramid_outputs


def scatter_figure(y_true, predictions):
    """``predictions``: {name: values}; the diagonal is a perfect prediction."""
    plt = plots._pyplot()
    fig, ax = plt.subplots(figsize=(4.6, 4.4))
    low, high = float(np.min(y_true)), float(np.max(y_true))
    for name, values in predictions.items():
        ax.scatter(y_true, values, s=8, alpha=0.6, label=name)
    ax.plot([low, high], [low, high], color="black", linewidth=1, label="perfect")
    ax.set_xlabel("true steering")
    ax.set_ylabel("predicted steering")
    ax.set_title("Predicted vs true (test frames)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return plots.to_png(fig)


def drive_figure(order, group, y_true, predictions):
    """Steering over the test drive in time order; a dotted line where a new episode starts."""
    plt = plots._pyplot()
    ranked = np.argsort(order, kind="stable")
    steps = np.arange(len(ranked))
    fig, ax = plt.subplots(figsize=(9.5, 3.4))
    ax.plot(steps, np.asarray(y_true)[ranked], color="black", linewidth=1.6, label="true")
    for name, values in predictions.items():
        ax.plot(steps, np.asarray(values)[ranked], linewidth=1, label=name)
    for start in np.flatnonzero(np.diff(np.asarray(group)[ranked]) != 0) + 1:
        ax.axvline(start - 0.5, color="gray", linestyle=":", linewidth=0.6)
    ax.set_xlabel("test frame, in time order (dotted: a new episode or block)")
    ax.set_ylabel("steering")
    ax.set_title("Steering over the test drive")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, ncol=3)
    return plots.to_png(fig)


def error_histogram(errors, tolerance):
    """``errors``: {name: predicted - true}."""
    plt = plots._pyplot()
    fig, ax = plt.subplots(figsize=(5.2, 3.4))
    every = np.concatenate([np.asarray(e) for e in errors.values()])
    bins = np.linspace(every.min(), every.max(), 41) if every.max() > every.min() else 10
    for name, values in errors.items():
        ax.hist(values, bins=bins, alpha=0.55, label=name)
    for edge in (-tolerance, tolerance):
        ax.axvline(edge, color="black", linestyle="--", linewidth=0.8)
    ax.set_xlabel("prediction error (predicted - true); dashed: the tolerance")
    ax.set_ylabel("test frames")
    ax.set_title("Error histogram")
    ax.legend(fontsize=8)
    return plots.to_png(fig)


def visual_backprop(model, images):
    """VisualBackProp (Bojarski et al. 2017) over the backbone's pyramid: each level's feature
    maps averaged over channels; from the deepest level up, the mask is scaled up to the next
    finer level and multiplied with it, then scaled to the frame. Maps in [0, 1]."""
    import keras
    import tensorflow as tf

    backbone = model.get_layer(BACKBONE_LAYER_NAME)
    levels = pyramid_outputs(backbone)
    names = sorted(levels, key=lambda k: int(k[1:]))
    probe = keras.Model(backbone.input, [levels[k] for k in names])
    normalise = _input_normalization(model)
    x = tf.convert_to_tensor(images, tf.float32)
    features = probe(normalise(x) if normalise else x, training=False)
    mask = None
    for feature in reversed(features):
        averaged = tf.reduce_mean(feature, axis=-1, keepdims=True)
        if mask is not None:
            averaged = averaged * tf.image.resize(mask, tf.shape(averaged)[1:3], method="bilinear")
        mask = averaged
    mask = tf.image.resize(mask, images.shape[1:3], method="bilinear")[..., 0].numpy()
    low = mask.reshape(len(mask), -1).min(axis=1).reshape(-1, 1, 1)
    high = mask.reshape(len(mask), -1).max(axis=1).reshape(-1, 1, 1)
    return np.where(high > low, (mask - low) / np.maximum(high - low, 1e-12), 0.0)


def _input_normalization(model):
    from tasks.steering.head import INPUT_NORMALIZATION

    try:
        return model.get_layer(INPUT_NORMALIZATION)
    except ValueError:
        return None


def saliency_figure(model, images, y_true, y_pred, count):
    if len(images) == 0 or count == 0:
        return None, ""
    pick = np.unique(np.linspace(0, len(images) - 1, min(count, len(images))).round().astype(int))
    maps = visual_backprop(model, images[pick])
    titles = [f"true {y_true[i]:+.4f}\npred {y_pred[i]:+.4f}" for i in pick]
    png = plots.image_grid(images[pick], titles, overlays=maps, columns=min(6, len(pick)),
                           title="VisualBackProp: where the network looks")
    return png, (f"VisualBackProp saliency (Bojarski et al. 2017) over the backbone's pyramid "
                 f"levels for {len(pick)} test frames spread over the drive; red = the pixels the "
                 f"deepest features depend on most.")
