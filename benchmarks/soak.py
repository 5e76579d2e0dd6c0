"""Soak (issue 17): many short trainings back to back in ONE process, as a notebook or a service
that calls ``workflow.train`` again and again would, with random valid options across every
task; the resident memory after each run shows whether anything leaks run over run.

Not a test (it takes minutes); run by hand and paste the table into benchmarks/RESULTS.md:

    python benchmarks/soak.py [--runs 20] [--seed 0] [--clear-session] [--trim] [--plain]

``--plain`` is the control: the same loop over a plain Keras script (a small CNN fitted on a
tf.data pipeline), so growth that the pipeline shares with plain Keras is told apart from
growth of its own. ``--trim`` hands freed heap pages back to the system after each run
(glibc's ``malloc_trim``), which tells memory still referenced from memory merely kept by the
allocator. Python objects alive after each run are counted too (``gc.get_objects``).
"""

import argparse
import gc
import random
import tempfile
import time
import warnings

warnings.filterwarnings("ignore")

from pipelines import workflow  # noqa: E402
from pipelines.tasks import task_names  # noqa: E402

TINY = {  # each task's builtin data at a size that trains in seconds
    "image-classification": {"backbone_options": {"widths": [4, 8]}, "train_fraction": 0.3},
    "text-classification": {"train_fraction": 0.2},
    "captioning": {"backbone_options": {"widths": [4, 8, 8]}},
    "medical-segmentation": {"data": "builtin:phantoms", "backbone_options": {"widths": [4, 8]},
                             "decoder_width": 4, "image_size": 32},
    "volume-classification": {"backbone_options": {"widths": [4, 8]}},
    "steering": {"backbone_options": {"width": 0.25}},
}


def resident_mb():
    """This process's resident memory now (not its peak), from /proc."""
    import os

    with open("/proc/self/statm") as handle:
        pages = int(handle.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2 ** 20


def trim_heap():
    """glibc's malloc_trim(0): return free pages of every arena to the system (no-op elsewhere)."""
    import ctypes
    import ctypes.util

    try:
        ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def plain_keras_run(rng):
    """The control: what a user's own loop of plain Keras trainings does, no pipeline code."""
    import keras
    import numpy as np
    import tensorflow as tf

    x = np.random.default_rng(rng.randrange(1000)).random((512, 16, 16, 1), dtype=np.float32)
    y = (x.mean(axis=(1, 2, 3)) > 0.5).astype("int32")
    data = tf.data.Dataset.from_tensor_slices((x, y)).shuffle(512).map(
        lambda a, b: (tf.image.random_flip_left_right(a), b)).batch(rng.choice([8, 16, 32]))
    model = keras.Sequential([keras.Input((16, 16, 1)), keras.layers.Conv2D(8, 3, activation="relu"),
                              keras.layers.MaxPooling2D(), keras.layers.Flatten(),
                              keras.layers.Dense(2, activation="softmax")])
    model.compile(keras.optimizers.Adam(rng.choice([1e-3, 5e-4])), "sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    model.fit(data, epochs=rng.choice([1, 2]), verbose=0)
    model.evaluate(data, verbose=0)


def random_options(task_name, rng):
    return {**TINY.get(task_name, {}), "epochs": rng.choice([1, 2]),
            "batch_size": rng.choice([8, 16, 32]), "learning_rate": rng.choice([1e-3, 5e-4, 2e-3]),
            "seed": rng.randrange(1000)}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--clear-session", action="store_true",
                        help="call keras.backend.clear_session() and gc.collect() between runs, "
                             "as Keras advises for a loop that builds many models")
    parser.add_argument("--trim", action="store_true",
                        help="malloc_trim(0) after each run (glibc), to tell kept pages from live memory")
    parser.add_argument("--plain", action="store_true",
                        help="the control: loop over a plain Keras training instead of the pipeline")
    args = parser.parse_args(argv)
    rng = random.Random(args.seed)
    names = [name for name in task_names() if name in TINY]
    print(f"start: {resident_mb():.0f} MB resident")
    print("| run | task | options | s | resident MB after | Python objects |\n|---|---|---|---|---|---|")
    memory = []
    with tempfile.TemporaryDirectory() as output:
        for run in range(1, args.runs + 1):
            start = time.monotonic()
            if args.plain:
                name, shown = "plain Keras", {}
                plain_keras_run(rng)
            else:
                name = names[(run - 1) % len(names)] if run <= len(names) else rng.choice(names)
                options = {**random_options(name, rng), "output": output}
                config = workflow.resolve_config(workflow.get_task(name), sets=options)
                workflow.train(name, config=config, quiet=True, echo=lambda *_: None)
                shown = {k: v for k, v in options.items() if k in ("epochs", "batch_size", "learning_rate", "seed")}
            if args.clear_session:
                import keras

                keras.backend.clear_session()
            gc.collect()
            if args.trim:
                trim_heap()
            memory.append(resident_mb())
            print(f"| {run} | {name} | {shown} | {time.monotonic() - start:.0f} | {memory[-1]:.0f} | "
                  f"{len(gc.get_objects())} |", flush=True)
    settled = memory[len(names):]  # after every task has run once (its imports and caches loaded)
    if len(settled) >= 2:
        growth = (settled[-1] - settled[0]) / (len(settled) - 1)
        print(f"\nresident memory after the first round of tasks: {settled[0]:.0f} MB; after the last run: "
              f"{settled[-1]:.0f} MB; {growth:+.1f} MB per run over the last {len(settled)} runs")


if __name__ == "__main__":
    main()
