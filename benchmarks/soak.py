"""Soak (issue 17): many short trainings back to back in ONE process, as a notebook or a service
that calls ``workflow.train`` again and again would, with random valid options across every
task; the resident memory after each run shows whether anything leaks run over run.

Not a test (it takes minutes); run by hand and paste the table into benchmarks/RESULTS.md:

    python benchmarks/soak.py [--runs 20] [--seed 0]
"""

import argparse
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
    args = parser.parse_args(argv)
    rng = random.Random(args.seed)
    names = [name for name in task_names() if name in TINY]
    print(f"start: {resident_mb():.0f} MB resident")
    print("| run | task | options | s | resident MB after |\n|---|---|---|---|---|")
    memory = []
    with tempfile.TemporaryDirectory() as output:
        for run in range(1, args.runs + 1):
            name = names[(run - 1) % len(names)] if run <= len(names) else rng.choice(names)
            options = {**random_options(name, rng), "output": output}
            task = workflow.get_task(name)
            config = workflow.resolve_config(task, sets=options)
            start = time.monotonic()
            workflow.train(name, config=config, quiet=True, echo=lambda *_: None)
            if args.clear_session:
                import gc

                import keras

                keras.backend.clear_session()
                gc.collect()
            memory.append(resident_mb())
            shown = {k: v for k, v in options.items() if k in ("epochs", "batch_size", "learning_rate", "seed")}
            print(f"| {run} | {name} | {shown} | {time.monotonic() - start:.0f} | {memory[-1]:.0f} |", flush=True)
    settled = memory[len(names):]  # after every task has run once (its imports and caches loaded)
    if len(settled) >= 2:
        growth = (settled[-1] - settled[0]) / (len(settled) - 1)
        print(f"\nresident memory after the first round of tasks: {settled[0]:.0f} MB; after the last run: "
              f"{settled[-1]:.0f} MB; {growth:+.1f} MB per run over the last {len(settled)} runs")


if __name__ == "__main__":
    main()
