"""Figures shared by several tasks, rendered off-screen to PNG bytes (matplotlib's Agg backend)."""

import io

import numpy as np


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def to_png(fig, dpi=110):
    plt = _pyplot()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi, bbox_inches="tight")
    plt.close(fig)
    return buffer.getvalue()


def curve_panels(columns):
    """One panel per logged figure: ``NAME`` beside ``val_NAME``; a figure measured on the
    validation split alone (a task's epoch scores) gets a panel of its own."""
    skip = ("epoch", "learning_rate", "lr", "seconds")
    names = [c for c in columns if c not in skip and not c.startswith("val_")]
    return names + [c[len("val_"):] for c in columns if c.startswith("val_") and c[len("val_"):] not in names]


def learning_curves(history):
    """Loss and every other logged metric per epoch, training beside validation."""
    plt = _pyplot()
    names = curve_panels(list(history.columns))
    fig, axes = plt.subplots(1, max(1, len(names)), figsize=(4.2 * max(1, len(names)), 3.2),
                             squeeze=False)
    for ax, name in zip(axes[0], names):
        epochs = history["epoch"] + 1
        if name in history:
            ax.plot(epochs, history[name], label=f"train {name}")
        if f"val_{name}" in history:
            ax.plot(epochs, history[f"val_{name}"], label=f"validation {name}")
        ax.set_xlabel("epoch")
        ax.set_ylabel(name)
        ax.set_title(name)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    return to_png(fig)


def confusion_matrix(matrix, labels, title="Confusion matrix (rows: truth, columns: prediction)"):
    plt = _pyplot()
    matrix = np.asarray(matrix)
    n = len(labels)
    size = min(12, 2.5 + 0.45 * n)
    fig, ax = plt.subplots(figsize=(size, size * 0.85))
    image = ax.imshow(matrix, cmap="Blues")
    ax.set_xticks(range(n), labels, rotation=45 if n > 6 else 0, ha="right" if n > 6 else "center")
    ax.set_yticks(range(n), labels)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    ax.set_title(title, fontsize=10)
    threshold = matrix.max() / 2 if matrix.size else 0
    if n <= 30:
        for i in range(n):
            for j in range(n):
                ax.text(j, i, str(matrix[i, j]), ha="center", va="center", fontsize=8,
                        color="white" if matrix[i, j] > threshold else "black")
    fig.colorbar(image, ax=ax, fraction=0.046)
    fig.tight_layout()
    return to_png(fig)


def roc_curves(curves, title="ROC curve"):
    """``curves``: {label: (fpr, tpr, auc)} drawn on one set of axes."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(4.5, 4.2))
    for label, (fpr, tpr, auc) in curves.items():
        ax.plot(fpr, tpr, label=f"{label} (AUC {auc:.3f})")
    ax.plot([0, 1], [0, 1], "k--", lw=0.8, label="chance")
    return _curve_figure(fig, ax, "false positive rate", "true positive rate", title, "lower right")


def precision_recall_curves(y_true, scores, title="Precision-recall curve"):
    """``scores``: {label: positive-class scores}; average precision in the legend."""
    from sklearn.metrics import average_precision_score, precision_recall_curve

    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(4.5, 4.2))
    for label, score in scores.items():
        precision, recall, _ = precision_recall_curve(y_true, score)
        ax.plot(recall, precision, label=f"{label} (AP {average_precision_score(y_true, score):.3f})")
    ax.axhline(float(np.mean(y_true)), color="k", ls="--", lw=0.8, label="chance")
    return _curve_figure(fig, ax, "recall", "precision", title, "lower left")


def _curve_figure(fig, ax, xlabel, ylabel, title, legend_loc):
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend(fontsize=8, loc=legend_loc)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return to_png(fig)


def image_grid(images, titles, *, columns=6, overlays=None, title=None, cmap="gray"):
    """Images in a grid with a caption under each; optional heat-map overlays (same size, [0,1])."""
    plt = _pyplot()
    n = len(images)
    if n == 0:
        return None
    columns = min(columns, n)
    rows = int(np.ceil(n / columns))
    fig, axes = plt.subplots(rows, columns, figsize=(1.9 * columns, 2.1 * rows), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for i, (image, caption) in enumerate(zip(images, titles)):
        ax = axes.ravel()[i]
        image = np.asarray(image)
        if image.ndim == 3 and image.shape[-1] == 1:
            image = image[..., 0]
        ax.imshow(image, cmap=cmap if image.ndim == 2 else None, vmin=0, vmax=1,
                  interpolation="nearest")
        if overlays is not None:
            ax.imshow(overlays[i], cmap="jet", alpha=0.45, vmin=0, vmax=1, interpolation="bilinear")
        ax.set_title(caption, fontsize=7)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return to_png(fig)
