"""Data larger than memory: peak resident memory and time per epoch as a dataset grows.

Images: writes class folders of 64x64 PNG files (two classes: a brighter top or bottom half
under noise), at 2k, 8k and 32k files, then trains image classification on each for two epochs
with the files streamed (cache=none). Volumes (``--volumes``): writes an MSD-layout folder of
64x64x32 NIfTI volumes (an ellipsoid to segment, under noise), at 20, 80 and 320 volumes, and
trains segmentation the same way. Both measure the whole command's peak resident set size and
the epoch's seconds. If reading were eager, memory would grow with the data. Streamed, it should
stay flat while the time grows linearly. Prints a Markdown table for benchmarks/RESULTS.md.
Run by hand:

    python benchmarks/large_folder.py [SIZES...]              # default 2000 8000 32000
    python benchmarks/large_folder.py --volumes [COUNTS...]   # default 20 80 320
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
VOLUME_SHAPE = (64, 64, 32)


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


def write_volumes(root, count, seed=0):
    """MSD layout: imagesTr/ and labelsTr/ of ``count`` noisy volumes with one ellipsoid each."""
    import nibabel as nib

    rng = np.random.default_rng(seed)
    grid = np.stack(np.meshgrid(*[np.linspace(-1, 1, n) for n in VOLUME_SHAPE], indexing="ij"))
    for folder in ("imagesTr", "labelsTr"):
        (Path(root) / folder).mkdir(parents=True, exist_ok=True)
    for i in range(count):
        centre, radii = rng.uniform(-0.3, 0.3, 3), rng.uniform(0.2, 0.4, 3)
        inside = (((grid - centre[:, None, None, None]) / radii[:, None, None, None]) ** 2).sum(0) < 1
        image = (100 + 60 * inside + rng.normal(0, 20, VOLUME_SHAPE)).astype(np.float32)
        nib.save(nib.Nifti1Image(image, np.eye(4)), str(Path(root) / "imagesTr" / f"case_{i:04d}.nii.gz"))
        nib.save(nib.Nifti1Image(inside.astype(np.uint8), np.eye(4)),
                 str(Path(root) / "labelsTr" / f"case_{i:04d}.nii.gz"))


def train(data, output, task="image-classification", key="accuracy"):
    """One training in a child process: (peak RSS MiB, s per epoch, examples/s, wall s, ``key``)."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    start = time.perf_counter()
    code = subprocess.run([sys.executable, "-c", "import resource, sys\n"
                           "from pipelines.cli import main\n"
                           "code = main(sys.argv[1:])\n"
                           "print('maxrss_kib', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)\n"
                           "sys.exit(code)\n",
                           "train", task, "--data", str(data), "--output", str(output),
                           *ARGS], env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if code.returncode:
        sys.exit(code.stderr[-2000:])
    rss_kib = int(next(l.split()[1] for l in code.stdout.splitlines() if l.startswith("maxrss_kib")))
    (run_dir,) = list((Path(output) / task).iterdir())
    metrics = json.loads((run_dir / "metrics.json").read_text())
    return (rss_kib / 1024, metrics["train"]["seconds"] / metrics["train"]["epochs"],
            metrics["train"]["samples_per_second"], wall, metrics["metrics"][key])


def main(sizes, volumes=False):
    what = "NIfTI volumes (64x64x32)" if volumes else "files (64x64 PNG)"
    examples, key = ("training slices/s", "dice") if volumes else ("training images/s", "accuracy")
    print(f"| {what} | peak RSS (MiB) | s per epoch (2 epochs, validation included) | "
          f"{examples} | whole command s | test {key} |\n|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as scratch:
        for count in sizes:
            data = Path(scratch) / f"data_{count}"
            (write_volumes if volumes else write_folder)(data, count)
            rss, seconds, rate, wall, score = train(
                data, Path(scratch) / f"runs_{count}", *(("medical-segmentation", "dice") if volumes else ()))
            print(f"| {count:,} | {rss:.0f} | {seconds:.1f} | {rate:.0f} | {wall:.1f} | {score:.4f} |",
                  flush=True)
            shutil.rmtree(data)


if __name__ == "__main__":
    volumes = "--volumes" in sys.argv[1:]
    counts = [int(a) for a in sys.argv[1:] if a != "--volumes"]
    main(counts or ([20, 80, 320] if volumes else [2000, 8000, 32000]), volumes)
