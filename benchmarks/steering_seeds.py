"""Steering on builtin:driving over seeds: the network against ridge and the training mean.

Trains ``cnn-tasks train steering`` with its defaults (plus any ``KEY=VALUE`` overrides) once
per seed and prints a Markdown table for benchmarks/RESULTS.md: test RMSE / MAE / R² of the
network, the ridge baseline's and the mean predictor's RMSE, training seconds and the whole
command's wall time (data, baselines, report included). Run by hand:

    python benchmarks/steering_seeds.py [--seeds 0 1 2] [KEY=VALUE ...]
"""

import argparse
import json
import tempfile
import time
import warnings

warnings.filterwarnings("ignore")

from pipelines import workflow  # noqa: E402


def _value(text):
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("sets", nargs="*", metavar="KEY=VALUE")
    args = parser.parse_args(argv)
    sets = {k: _value(v) for k, v in (s.split("=", 1) for s in args.sets)}
    task = workflow.get_task("steering")
    print(f"overrides: {sets or 'none'}")
    print("| seed | network RMSE | MAE | R² | ridge RMSE | mean RMSE | train s | wall s |\n"
          "|---|---|---|---|---|---|---|---|")
    rows = []
    with tempfile.TemporaryDirectory() as output:
        for seed in args.seeds:
            config = workflow.resolve_config(task, sets={**sets, "seed": seed, "output": output})
            start = time.perf_counter()
            run_dir = workflow.train(task.name, config=config, quiet=True, echo=lambda *_: None)
            wall = time.perf_counter() - start
            m = json.loads((run_dir / "metrics.json").read_text())
            report = (run_dir / "report.md").read_text()
            mean = float(report.split("| training_mean")[1].split("|")[1])
            net, ridge = m["metrics"], m["baseline"]["metrics"]
            rows.append((net["rmse"], ridge["rmse"]))
            print(f"| {seed} | {net['rmse']:.5f} | {net['mae']:.5f} | {net['r2']:.4f} | "
                  f"{ridge['rmse']:.5f} | {mean:.4f} | {m['train']['seconds']:.0f} | {wall:.0f} |",
                  flush=True)
    wins = sum(net <= ridge for net, ridge in rows)
    print(f"\nnetwork at or below ridge on {wins} of {len(rows)} seeds; mean RMSE network "
          f"{sum(r[0] for r in rows) / len(rows):.5f}, ridge {sum(r[1] for r in rows) / len(rows):.5f}")


if __name__ == "__main__":
    main()
