"""Measure the choices behind the image-classification defaults on this machine.

Trains builtin:digits for a few epochs under each variant (jit_compile, batch size, caching) and
prints training seconds per epoch and test accuracy as a Markdown table for benchmarks/RESULTS.md.
Run by hand: python benchmarks/defaults.py [EPOCHS]
"""

import json
import sys
import tempfile
import warnings

warnings.filterwarnings("ignore")

from pipelines import workflow  # noqa: E402

VARIANTS = {
    "defaults": {},
    "jit_compile=true": {"jit_compile": True},
    "batch_size=64": {"batch_size": 64},
    "batch_size=128": {"batch_size": 128},
    "cache=none": {"cache": "none"},
}


def main(epochs=10):
    task = workflow.get_task("image-classification")
    print(f"| variant ({epochs} epochs) | s/epoch | samples/s | test accuracy |\n|---|---|---|---|")
    with tempfile.TemporaryDirectory() as output:
        for name, sets in VARIANTS.items():
            config = workflow.resolve_config(task, sets={**sets, "epochs": epochs, "output": output})
            run_dir = workflow.train(task.name, config=config, quiet=True, echo=lambda *_: None)
            m = json.loads((run_dir / "metrics.json").read_text())
            print(f"| {name} | {m['train']['seconds'] / epochs:.2f} | "
                  f"{m['train']['samples_per_second']:.0f} | {m['metrics']['accuracy']:.4f} |",
                  flush=True)


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 10)
