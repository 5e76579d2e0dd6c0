"""Text classification over seeds: the network against its TF-IDF baseline, full and 1,000 texts.

Issue 19's acceptance table. Trains ``cnn-tasks train text-classification`` with its defaults
(plus any ``KEY=VALUE`` overrides), one process per training, on SMS spam and TREC, each on the
full training split and subsampled to about 1,000 training texts (``train_fraction``: SMS 0.25
of 4,459 train + validation texts -> 1,003 training texts; TREC 0.204 of 5,452 -> 1,001), and
prints a Markdown table for benchmarks/RESULTS.md: accuracy, macro-F1 and (SMS) spam F1 of the
network and the baseline on the same split, the epochs run (early stopping) of those chosen, and
the training seconds. Run by
hand (TREC needs ../shared/datasets/trec_questions):

    python benchmarks/text_seeds.py [--seeds 0 1 2] [--only sms trec sms-1000 trec-1000] [KEY=VALUE ...]
"""

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

TREC = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "trec_questions"
SETUPS = {"sms": ("builtin:sms_spam", 1.0), "trec": (str(TREC), 1.0),
          "sms-1000": ("builtin:sms_spam", 0.25), "trec-1000": (str(TREC), 0.204)}


def train(data, fraction, seed, sets, output):
    command = [sys.executable, "-m", "pipelines.cli", "train", "text-classification", "--data", data,
               "--seed", str(seed), "--output", output, "--json", "--set", f"train_fraction={fraction}"]
    for item in sets:
        command += ["--set", item]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout)


def row(name, seed, document, config):
    net, base = document["metrics"], document["baseline"]["metrics"]
    f1 = (f"{net['positive_f1']:.4f} / {base['positive_f1']:.4f}" if "positive_f1" in net else "–")
    return (f"| {name} | {seed} | {net['accuracy']:.4f} / {base['accuracy']:.4f} | "
            f"{net['macro_f1']:.4f} / {base['macro_f1']:.4f} | {f1} | "
            f"{document['train']['epochs']} of {config['epochs']} | "
            f"{document['train']['seconds']:.0f} | {document['comparison']['winner']} |")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--only", nargs="+", choices=list(SETUPS), default=list(SETUPS))
    parser.add_argument("sets", nargs="*", metavar="KEY=VALUE")
    args = parser.parse_args(argv)
    if any(name.startswith("trec") for name in args.only) and not TREC.is_dir():
        raise SystemExit(f"{TREC}: not here; run with --only sms sms-1000")
    print(f"overrides: {' '.join(args.sets) or 'none'}")
    print("| data | seed | accuracy (network / TF-IDF) | macro-F1 | spam F1 | epochs run | train s | "
          "winner |\n|---|---|---|---|---|---|---|---|", flush=True)
    with tempfile.TemporaryDirectory() as output:
        for name in args.only:
            data, fraction = SETUPS[name]
            for seed in args.seeds:
                document = train(data, fraction, seed, args.sets, output)
                config = json.loads((Path(document["run_dir"]) / "config.json").read_text())["config"]
                print(row(name, seed, document, config), flush=True)


if __name__ == "__main__":
    main()
