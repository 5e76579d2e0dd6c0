"""Captioning figures: a gallery of generated vs reference captions, and per-word attention maps."""

import textwrap

import numpy as np

from pipelines import plots


def gallery(images, generated, references, cider, *, per_side=4):
    """The best and the worst test images by CIDEr-D: generated caption over the first reference."""
    order = np.argsort(cider)
    chosen = [("best", i) for i in order[::-1][:per_side]] + [("worst", i) for i in order[:per_side]]
    plt = plots._pyplot()
    fig, axes = plt.subplots(2, per_side, figsize=(3.1 * per_side, 8.0))
    for ax, (kind, i) in zip(np.ravel(axes), chosen):
        ax.imshow(np.clip(images[i], 0, 1), interpolation="nearest")
        ax.set_axis_off()
        text = (f"{kind}, CIDEr-D {cider[i]:.2f}\nmodel: {textwrap.fill(generated[i], 34)}\n"
                f"ref: {textwrap.fill(references[i][0], 34)}")
        ax.set_title(text, fontsize=7.5, loc="left")
    for ax in np.ravel(axes)[len(chosen):]:
        ax.set_axis_off()
    fig.tight_layout(h_pad=2.0)
    return plots.to_png(fig)


def attention_maps(examples, grid_shape, *, max_words=8):
    """One row per example: the image, then each word with its attention weights overlaid."""
    if not examples:
        return None
    columns = 1 + min(max_words, max(len(c.words) + 1 for _, c in examples))
    plt = plots._pyplot()
    fig, axes = plt.subplots(len(examples), columns, figsize=(1.7 * columns, 1.9 * len(examples)),
                             squeeze=False)
    for row, (image, caption) in zip(axes, examples):
        height, width = image.shape[:2]
        row[0].imshow(np.clip(image, 0, 1), interpolation="nearest")
        row[0].set_title("image", fontsize=8)
        words = (caption.words + ["<end>"])[:columns - 1]
        for ax, word, weights in zip(row[1:], words, caption.attention):
            ax.imshow(np.clip(image, 0, 1), interpolation="nearest")
            ax.imshow(np.asarray(weights).reshape(grid_shape), cmap="inferno", alpha=0.55,
                      extent=(0, width, height, 0), interpolation="bilinear")
            ax.set_title(word, fontsize=8)
        for ax in row:
            ax.set_axis_off()
    fig.tight_layout()
    return plots.to_png(fig)
