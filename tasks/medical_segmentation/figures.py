"""Segmentation figures: the per-case Dice distribution, and contour overlays of chosen cases."""

import numpy as np

from pipelines import plots


def dice_distribution(dice, baseline_dice=None, baseline_name=None):
    plt = plots._pyplot()
    fig, ax = plt.subplots(figsize=(5, 3.4))
    bins = np.linspace(0, 1, 21)
    ax.hist(dice, bins=bins, alpha=0.7, label=f"network (mean {np.mean(dice):.3f})")
    if baseline_dice is not None:
        ax.hist(baseline_dice, bins=bins, alpha=0.5,
                label=f"{baseline_name} (mean {np.mean(baseline_dice):.3f})")
    ax.set_xlabel("per-case mean foreground Dice")
    ax.set_ylabel("cases")
    ax.yaxis.get_major_locator().set_params(integer=True)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return plots.to_png(fig)


def _display_slice(case, predicted, info):
    """A 2D view: the image itself, or the volume slice with the most foreground."""
    if not info.volumes:
        return case.image.mean(axis=-1), case.mask, predicted
    axis = info.slice_axis
    truth = np.moveaxis(case.mask, axis, 0)
    index = int(np.argmax(truth.reshape(len(truth), -1).sum(axis=1)))
    image = np.moveaxis(case.image, axis, 0)[index].astype(np.float32)
    return image, truth[index], np.moveaxis(predicted, axis, 0)[index]


def overlays(cases, predictions, dice, info):
    """Best, median and worst cases by Dice, with truth and prediction contours."""
    order = np.argsort(dice)
    chosen = [("worst", order[0]), ("median", order[len(order) // 2]), ("best", order[-1])]
    plt = plots._pyplot()
    fig, axes = plt.subplots(1, 3, figsize=(9, 3.4))
    colours = plt.cm.tab10.colors
    for ax, (label, i) in zip(axes, chosen):
        image, truth, predicted = _display_slice(cases[i], predictions[i], info)
        ax.imshow(image, cmap="gray")
        for c in range(1, info.n_classes):
            colour = colours[(c - 1) % len(colours)]
            if (truth == c).any():
                ax.contour(truth == c, levels=[0.5], colors=[colour], linewidths=1.2)
            if (predicted == c).any():
                ax.contour(predicted == c, levels=[0.5], colors=[colour], linewidths=1.2,
                           linestyles="dashed")
        ax.set_title(f"{label}: {cases[i].case_id}\nDice {dice[i]:.3f}", fontsize=8)
        ax.axis("off")
    from matplotlib.lines import Line2D

    handles = [Line2D([], [], color=colours[(c - 1) % len(colours)], label=info.class_names[c])
               for c in range(1, info.n_classes)]
    handles += [Line2D([], [], color="gray", label="truth"),
                Line2D([], [], color="gray", ls="--", label="prediction")]
    fig.legend(handles=handles, loc="lower center", ncol=len(handles), fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0.08, 1, 1))
    return plots.to_png(fig)
