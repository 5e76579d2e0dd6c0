"""Two local workers vs one process: the same digits run, timed side by side.

Both train image classification on builtin:digits with the task's defaults and the same global
batch; the two workers share this machine's cores, so on 2 cores expect no speed-up: the
figure says what the collective all-reduce costs, not what a real cluster gains. Prints a
Markdown table for benchmarks/RESULTS.md. Run by hand:

    python benchmarks/multi_worker.py [EPOCHS] [REPEATS]
"""

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from pipelines.distribute import local_cluster


def train(workers, epochs, output):
    argv = [sys.executable, "-m", "pipelines.cli", "train", "image-classification", "--epochs",
            str(epochs), "--output", str(output), "--quiet"]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    start = time.perf_counter()
    if workers == 1:
        subprocess.run(argv + ["--strategy", "default"], env=env, check=True, capture_output=True)
    else:
        processes = [subprocess.Popen(argv + ["--strategy", "multi-worker"], env={**env, "TF_CONFIG": c},
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                     for c in local_cluster(workers)]
        if any(p.wait(timeout=1800) for p in processes):
            sys.exit("a worker failed")
    wall = time.perf_counter() - start
    (run_dir,) = [p for p in (Path(output) / "image-classification").iterdir()]
    metrics = json.loads((run_dir / "metrics.json").read_text())
    return wall, metrics["train"]["seconds"], metrics["metrics"]["accuracy"]


def main(epochs=10, repeats=3):
    rows = {1: [], 2: []}
    for _ in range(repeats):  # alternated, so drift in the machine's load hits both alike
        for workers in (1, 2):
            with tempfile.TemporaryDirectory() as output:
                rows[workers].append(train(workers, epochs, output))
    print(f"| processes | training s ({epochs} epochs, median of {repeats}) | wall s | test accuracy |")
    print("|---|---|---|---|")
    for workers, results in rows.items():
        train_s = sorted(r[1] for r in results)[len(results) // 2]
        wall = sorted(r[0] for r in results)[len(results) // 2]
        accuracy = ", ".join(f"{r[2]:.4f}" for r in results)
        print(f"| {workers} | {train_s:.1f} | {wall:.1f} | {accuracy} |")
    one = sorted(r[1] for r in rows[1])[len(rows[1]) // 2]
    two = sorted(r[1] for r in rows[2])[len(rows[2]) // 2]
    print(f"\nratio of training seconds, 2 workers / 1 process: {two / one:.2f}")


if __name__ == "__main__":
    main(*(int(a) for a in sys.argv[1:3]))
