"""Data larger than memory: peak resident memory and time per epoch as a folder of PNGs grows.

Writes class folders of 64x64 PNG files (two classes: a brighter top or bottom half under noise),
at 2k, 8k and 32k files, then trains image classification on each for two epochs with the files
streamed (cache=none) and measures the whole command's peak resident set size and the epoch's
seconds. If reading were eager, memory would grow with the data. Streamed, it should stay flat
while the time grows linearly. Prints a Markdown table for benchmarks/RESULTS.md. Run by hand:

    python benchmarks/large_folder.py [SIZES...]        # default 2000 8000 32000
"""

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

ARGS = ["--epochs", "2", "--set", "cache=none", "--set", "image_size=32", "--batch-size", "64",
        "--set", "backbone_options.widths=[16,32,32]", "--quiet"]


def write_folder(root, count, seed=0):
    rng = np.random.default_rng(seed)
    for i in range(count):
        label = ("top", "bottom")[i % 2]
        image = rng.integers(0, 120, (64, 64, 3), dtype=np.uint8)
        rows = slice(0, 32) if label == "top" else slice(32, 64)
        image[rows] += 60
        folder = Path(root) / label
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(folder / f"{i:06d}.png")


def train(data, output):
    """One training in a child process: (peak RSS MiB, s per epoch, images/s, wall s, accuracy)."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    start = time.perf_counter()
    code = subprocess.run([sys.executable, "-c", "import resource, sys\n"
                           "from pipelines.cli import main\n"
                           "code = main(sys.argv[1:])\n"
                           "print('maxrss_kib', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)\n"
                           "sys.exit(code)\n",
                           "train", "image-classification", "--data", str(data), "--output", str(output),
                           *ARGS], env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if code.returncode:
        sys.exit(code.stderr[-2000:])
    rss_kib = int(next(l.split()[1] for l in code.stdout.splitlines() if l.startswith("maxrss_kib")))
    (run_dir,) = list((Path(output) / "image-classification").iterdir())
    metrics = json.loads((run_dir / "metrics.json").read_text())
    return (rss_kib / 1024, metrics["train"]["seconds"] / metrics["train"]["epochs"],
            metrics["train"]["samples_per_second"], wall, metrics["metrics"]["accuracy"])


def main(sizes):
    print("| files (64x64 PNG) | peak RSS (MiB) | s per epoch (2 epochs, validation included) | "
          "training images/s | whole command s | test accuracy |\n|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as scratch:
        for count in sizes:
            data = Path(scratch) / f"data_{count}"
            write_folder(data, count)
            rss, seconds, rate, wall, accuracy = train(data, Path(scratch) / f"runs_{count}")
            print(f"| {count:,} | {rss:.0f} | {seconds:.1f} | {rate:.0f} | {wall:.1f} | {accuracy:.4f} |",
                  flush=True)
            shutil.rmtree(data)


if __name__ == "__main__":
    main([int(a) for a in sys.argv[1:]] or [2000, 8000, 32000])
