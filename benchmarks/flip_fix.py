"""Segmentation's flips before and after the fix of issue 17 (dsb2018 nuclei Dice).

Before the fix, up-down and left-right flips were drawn with one seed, so an image was either
left as it was or turned by 180 degrees, never mirrored along one axis. This trains the same
2D segmentation twice per seed in one process, alternated: once with today's independent flips
(``augmentation.flip_with_mask``) and once with the old correlated draw put back for the run,
everything else equal. Not a test (minutes per run); paste the table into RESULTS.md:

    python benchmarks/flip_fix.py [--seeds 0 1] [--epochs 8] [--data ../shared/datasets/dsb2018_nuclei]
"""

import argparse
import json
import tempfile
import time
import warnings
from pathlib import Path

warnings.filterwarnings("ignore")

from pipelines import augmentation, workflow  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def correlated_flip_with_mask(images, masks, seed, axes=("vertical", "horizontal")):
    """The old draw: every axis flipped with the SAME seed (identity or a 180-degree turn)."""
    import tensorflow as tf

    both = tf.concat([images, tf.cast(masks[..., None], images.dtype)], axis=-1)
    for axis in axes:
        both = augmentation.flip(both, seed, axis)
    return both[..., :-1], tf.cast(tf.round(both[..., -1]), masks.dtype)


def train_once(data, seed, epochs, output, flips):
    fixed = augmentation.flip_with_mask
    if flips == "correlated (before)":
        augmentation.flip_with_mask = correlated_flip_with_mask
    try:
        task = workflow.get_task("medical-segmentation")
        config = workflow.resolve_config(task, sets={"data": data, "seed": seed, "epochs": epochs,
                                                     "image_size": 64, "output": output})
        start = time.monotonic()
        run_dir = workflow.train("medical-segmentation", config=config, quiet=True, echo=lambda *_: None)
        seconds = time.monotonic() - start
    finally:
        augmentation.flip_with_mask = fixed
    metrics = json.loads((Path(run_dir) / "metrics.json").read_text())
    return metrics, seconds


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--data", default=str(REPO.parent / "shared" / "datasets" / "dsb2018_nuclei"))
    args = parser.parse_args(argv)
    print("| seed | flips | Dice | IoU | HD95 px | baseline (Otsu) Dice | train s |\n|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as output:
        for seed in args.seeds:
            order = ["correlated (before)", "independent (after)"]
            for flips in order if seed % 2 == 0 else order[::-1]:
                metrics, seconds = train_once(args.data, seed, args.epochs, output, flips)
                m, b = metrics["metrics"], (metrics.get("baseline") or {}).get("metrics", {})
                print(f"| {seed} | {flips} | {m['dice']:.4f} | {m['iou']:.4f} | {m['hd95']:.2f} | "
                      f"{b.get('dice', float('nan')):.4f} | {seconds:.0f} |", flush=True)


if __name__ == "__main__":
    main()
