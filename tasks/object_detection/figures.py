"""The detector's report figures: test images with true and predicted boxes, and per-class
precision-recall curves beside the baseline's; and the boxes drawn for ``predict --out``."""

from pathlib import Path

import numpy as np

from pipelines import plots

COLOURS = ("tab:red", "tab:blue", "tab:green", "tab:orange", "tab:purple", "tab:brown", "tab:pink",
           "tab:olive", "tab:cyan", "tab:gray")
SHOWN_SCORE = 0.5


def _read(path):
    from PIL import Image

    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"))


def _draw(ax, image, truth, found, class_names):
    from matplotlib.patches import Rectangle

    ax.imshow(image)
    ax.axis("off")
    for x1, y1, x2, y2, c in np.asarray(truth).reshape(-1, 5):
        ax.add_patch(Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, linestyle="--", linewidth=0.8,
                               edgecolor=COLOURS[int(c) % len(COLOURS)]))
    for x1, y1, x2, y2, score, c in np.asarray(found).reshape(-1, 6):
        if score < SHOWN_SCORE:
            continue
        colour = COLOURS[int(c) % len(COLOURS)]
        ax.add_patch(Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, linewidth=1.4, edgecolor=colour))
        ax.text(x1, y1, f"{class_names[int(c)]} {score:.2f}", fontsize=5, color="white", va="bottom",
                bbox={"facecolor": colour, "alpha": 0.7, "pad": 0.5, "linewidth": 0})


def examples_figure(paths, truths, founds, class_names, titles):
    plt = plots._pyplot()
    if not paths:
        return None
    fig, axes = plt.subplots(1, len(paths), figsize=(4.6 * len(paths), 3.8), squeeze=False)
    for ax, path, truth, found, title in zip(axes[0], paths, truths, founds, titles):
        _draw(ax, _read(path), truth, found, class_names)
        ax.set_title(f"{Path(path).name}\n{title}", fontsize=8)
    fig.tight_layout()
    return plots.to_png(fig)


def precision_recall_figure(curves, baseline_curves=None):
    plt = plots._pyplot()
    fig, ax = plt.subplots(figsize=(5.2, 4.0))
    for k, (name, (recall, precision)) in enumerate(curves.items()):
        colour = COLOURS[k % len(COLOURS)]
        ax.plot(recall, precision, color=colour, label=f"{name}")
        if baseline_curves and name in baseline_curves:
            ax.plot(*baseline_curves[name], color=colour, linestyle="--", alpha=0.7,
                    label=f"{name} (baseline)")
    ax.set_xlabel("recall")
    ax.set_ylabel("precision")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower left")
    ax.set_title("Precision-recall at IoU 0.5")
    fig.tight_layout()
    return plots.to_png(fig)


def write_drawn(path, found, class_names, out):
    """``OUT/<stem>_boxes.png``: the image with its detections drawn and labelled."""
    from PIL import Image, ImageDraw

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    with Image.open(path) as image:
        image = image.convert("RGB")
    draw = ImageDraw.Draw(image)
    palette = [(214, 39, 40), (31, 119, 180), (44, 160, 44), (255, 127, 14), (148, 103, 189)]
    for x1, y1, x2, y2, score, c in np.asarray(found).reshape(-1, 6):
        colour = palette[int(c) % len(palette)]
        draw.rectangle([x1, y1, x2, y2], outline=colour, width=2)
        draw.text((x1 + 2, max(0, y1 - 11)), f"{class_names[int(c)]} {score:.2f}", fill=colour)
    target = out / f"{Path(path).stem}_boxes.png"
    tmp = target.with_name(f".tmp-{target.name}")
    image.save(tmp, format="PNG")
    tmp.replace(target)
    return target


def box_gradcam_figure(pixels, cam, box, title):
    """The network's view of one image, its Grad-CAM for one box overlaid, the box drawn."""
    from matplotlib.patches import Rectangle

    plt = plots._pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(9.2, 3.8))
    for ax in axes:
        ax.imshow(pixels)
        ax.axis("off")
        x1, y1, x2, y2 = box
        ax.add_patch(Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, linewidth=1.5, edgecolor="white"))
    axes[1].imshow(cam, cmap="jet", alpha=0.45, vmin=0, vmax=1)
    axes[0].set_title(title, fontsize=8)
    axes[1].set_title("Grad-CAM of that box's class score", fontsize=8)
    fig.tight_layout()
    return plots.to_png(fig)
