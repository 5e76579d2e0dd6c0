"""The ``cnn-tasks`` command: argument parsing, exit codes (0 / 1 / 2), verbs -> workflow.

Bad input (``UserError``, argparse mistakes) prints one line on stderr and exits 2 without a
traceback; anything else is an internal error (exit 1).
"""

import argparse
import json
import os
import sys

from pipelines.distribute import STRATEGIES
from pipelines.serving import FORMATS, QUANTIZATIONS
from pipelines.tasks import task_names


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _int_at_least(minimum):
    def parse(text):
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be >= {minimum}, got {value}")
        return value

    return parse


_non_negative_int = _int_at_least(0)
_positive_int = _int_at_least(1)


def _positive_float(text):
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
    return value


def build_parser():
    parser = _Parser(prog="cnn-tasks", description="Convolutional networks on one backbone registry "
                     f"and one train/evaluate pipeline, for: {', '.join(task_names())}.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    verbs = parser.add_subparsers(dest="verb", required=True, parser_class=_Parser)
    common = argparse.ArgumentParser(add_help=False)  # every verb takes these
    common.add_argument("-q", "--quiet", action="store_true",
                        help="print only the result (train: the run directory; no progress)")
    common.add_argument("-v", "--verbose", action="store_true",
                        help="also show TensorFlow's and Keras' own log lines and warnings")

    def verb(name, **options):
        return verbs.add_parser(name, parents=[common], **options)

    p = verb("tasks", help="the tasks, their default data and backbone")
    p.add_argument("--options", metavar="TASK", help="list every configuration key of TASK")
    p.add_argument("--json", action="store_true", help="one JSON document on stdout")

    p = verb("backbones", help="the backbone registry")
    p.add_argument("--modality", choices=("image", "text"), help="only backbones of this modality")
    p.add_argument("--input-size", type=_positive_int, default=32,
                   help="image size used to count parameters (default 32)")
    p.add_argument("--json", action="store_true", help="one JSON document on stdout")

    p = verb("train", help="train, then evaluate on the held-out test split")
    p.add_argument("task", nargs="?", metavar="TASK", help=" | ".join(task_names()))
    p.add_argument("--data", help="dataset: a path, or builtin:NAME (default: the task's own)")
    p.add_argument("--backbone", help=_help("backbone"))
    p.add_argument("--backbone-from", metavar="RUN_DIR", help=_help("backbone_from"))
    p.add_argument("--backbone-weights", metavar="FILE|imagenet", help=_help("backbone_weights"))
    p.add_argument("--freeze-backbone", action="store_true", default=None,
                   help=_help("freeze_backbone"))
    p.add_argument("--fine-tune-epochs", type=_non_negative_int, metavar="N",
                   help=_help("fine_tune_epochs"))
    p.add_argument("--epochs", type=_positive_int, metavar="N", help=_help("epochs"))
    p.add_argument("--batch-size", type=_positive_int, metavar="N", help=_help("batch_size"))
    p.add_argument("--learning-rate", type=_positive_float, metavar="LR", help=_help("learning_rate"))
    p.add_argument("--seed", type=int, metavar="N", help=_help("seed"))
    p.add_argument("--config", metavar="FILE.toml", help="configuration file (below --set and flags)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="any configuration key (cnn-tasks tasks --options TASK lists them)")
    p.add_argument("--output", metavar="DIR", help=_help("output"))
    p.add_argument("--resume", metavar="RUN_DIR", help="continue an interrupted run")
    p.add_argument("--strategy", choices=STRATEGIES,
                   help="tf.distribute strategy; multi-worker reads TF_CONFIG (docs/scaling.md)")
    p.add_argument("--run-id", metavar="ID", help="name the run directory (default: a new UTC "
                   "time + hex id; a cluster's workers take the chief's)")
    p.add_argument("--json", action="store_true",
                   help="quiet, then the run's metrics.json document on stdout")

    p = verb("evaluate", help="evaluate a saved run")
    p.add_argument("run_dir", metavar="RUN_DIR", help="a run directory (cnn-tasks runs lists them)")
    p.add_argument("--data", metavar="SPEC", help="score another dataset instead of the run's own "
                   "test split: the test part of a split the data declares, else all of it")
    p.add_argument("--split", choices=("all", "test"), metavar="all|test",
                   help="with --data: score all of it, or the test part the data declares (a split "
                   "column, train/test folders, MedMNIST arrays); default test where declared, else all")
    p.add_argument("--json", action="store_true", help="the evaluation's metrics document on stdout")

    p = verb("predict", help="predictions for files or strings")
    p.add_argument("run_dir", metavar="RUN_DIR", help="a run directory (cnn-tasks runs lists them)")
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="files (images, volumes, frames) or, "
                   "for text, strings")
    p.add_argument("--json", action="store_true", help="one JSON record per input on stdout")
    p.add_argument("--out", metavar="PATH", help="where masks go (a folder, or one file for one input)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="prediction options of the task (e.g. captioning beam_width=5)")

    p = verb("export", help="export a run's model")
    p.add_argument("run_dir", metavar="RUN_DIR")
    p.add_argument("--format", required=True, choices=FORMATS,
                   help="saved_model (TF Serving, whole job in the graph) or tflite (the network)")
    p.add_argument("--out", metavar="DIR", help="export folder (default RUN_DIR/export/FORMAT); "
                   "the model goes to DIR/VERSION/, metadata.json beside it")
    p.add_argument("--version", type=int, default=1, metavar="N",
                   help="version folder for TF Serving (default 1); an existing one is refused")
    p.add_argument("--quantize", default="none", choices=QUANTIZATIONS,
                   help="TFLite weight quantisation")
    p.add_argument("--json", action="store_true", help="the export's metadata.json on stdout")

    p = verb("export-backbone", help="copy a run's backbone to a .weights.h5 file "
                         "(+ .json) for --backbone-weights")
    p.add_argument("run_dir", metavar="RUN_DIR")
    p.add_argument("--out", required=True, metavar="FILE.weights.h5",
                   help="the weights file to write (its .json description goes beside it)")

    p = verb("runs", help="saved runs with their key metrics and backbone lineage")
    p.add_argument("task", nargs="?", metavar="TASK")
    p.add_argument("--output", "--root", dest="root", default="saved_models", metavar="DIR",
                   help="root folder of the runs, as train --output (--root is kept as an alias)")
    p.add_argument("--json", action="store_true", help="one JSON document on stdout")
    return parser


def _help(key):
    """A train flag's help: the configuration field's own line (one source for both), and for
    the keys tasks set their own defaults for, where to read them."""
    from dataclasses import fields

    from pipelines.config import TrainConfig

    text = next(f.metadata.get("help", "") for f in fields(TrainConfig) if f.name == key)
    per_task = key in ("backbone", "epochs", "batch_size", "learning_rate")
    return f"{text} (default per task: tasks --options TASK)" if per_task else text


def _version():
    from pipelines import __version__

    return __version__


def _quiet_tensorflow():
    """Keep TensorFlow's start-up chatter out of the way of the command's own output.

    TF's C++ start-up lines (no CUDA driver, absl not initialised) are written to file descriptor
    2 before TF_CPP_MIN_LOG_LEVEL applies (tensorflow/tensorflow#100442), so they are held back
    while TensorFlow starts and shown only if it fails to start. TF_CPP_MIN_LOG_LEVEL=0 shows
    everything."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    import warnings

    warnings.filterwarnings("ignore", category=UserWarning, module="keras")
    if os.environ["TF_CPP_MIN_LOG_LEVEL"] == "0" or "tensorflow" in sys.modules:
        return
    import tempfile

    with tempfile.TemporaryFile() as held:
        sys.stderr.flush()
        saved = os.dup(2)
        os.dup2(held.fileno(), 2)
        try:
            import tensorflow as tf

            tf.config.list_physical_devices()  # the CUDA probe logs here, once
        except BaseException:
            os.dup2(saved, 2)
            held.seek(0)
            sys.stderr.write(held.read().decode("utf-8", "replace"))
            raise
        finally:
            os.dup2(saved, 2)
            os.close(saved)


def cmd_tasks(args):
    from pipelines import config as config_lib
    from pipelines.tasks import get_task

    if args.options:
        task = get_task(args.options)
        described = config_lib.describe(task.Config)
        if args.json:
            print(json.dumps([{"key": name, "type": type_name, "default": default, "help": help_text}
                              for name, type_name, default, help_text in described], default=str))
            return
        width = min(28, max(len(str(row[2])) for row in described)) + 2
        type_width = max(len(row[1]) for row in described) + 2
        for name, type_name, default, help_text in described:
            shown = str(default)
            if len(shown) >= width:  # a long default gets its own line; the columns stay put
                print(f"{name:<26}{type_name:<{type_width}}{shown}")
                print(f"{'':<{26 + type_width + width}}{help_text}")
            else:
                print(f"{name:<26}{type_name:<{type_width}}{shown:<{width}}{help_text}")
        return
    rows = []
    for name in task_names():
        task = get_task(name)
        cfg = task.Config()
        rows.append({"task": name, "default_data": cfg.data, "backbone": cfg.backbone,
                     "summary": task.summary, "key_metrics": list(task.key_metrics),
                     "lower_is_better": list(task.lower_is_better)})
    if args.json:
        print(json.dumps(rows))
        return
    widths = [max(len(str(r[key])) for r in rows + [{"task": "task", "default_data": "default data",
                                                          "backbone": "backbone"}]) + 2
              for key in ("task", "default_data", "backbone")]
    print(f"{'task':<{widths[0]}}{'default data':<{widths[1]}}{'backbone':<{widths[2]}}summary")
    for row in rows:
        print(f"{row['task']:<{widths[0]}}{row['default_data']:<{widths[1]}}{row['backbone']:<{widths[2]}}"
              f"{row['summary']}")


def cmd_backbones(args):
    from pipelines.backbones import BACKBONES, count_params
    from pipelines.backbones.text_cnn import DEFAULT_VOCABULARY
    from pipelines.errors import UserError
    from pipelines.weights import weights_table

    rows = []
    for entry in BACKBONES.entries():
        if args.modality and entry.meta["modality"] != args.modality:
            continue
        dims = entry.meta.get("spatial_dims")
        if entry.meta["modality"] == "image":
            size = max(args.input_size, entry.meta.get("min_size", 1))
            shape = (size, size, 3) if dims == 2 else (size, size, size, 1)
        else:
            shape = (None,)
        try:
            params = count_params(entry.name, shape)
        except UserError:  # built from what the user names (a KerasHub preset), not by itself
            params = None
        rows.append({"name": entry.name, "modality": entry.meta["modality"], "spatial_dims": dims,
                     "params": params, "counted_for": list(shape),
                     "min_size": entry.meta.get("min_size"), "note": entry.meta.get("note", ""),
                     "weights": {spec: {"description": p.description, "source": p.source.describe(),
                                        "licence": p.licence, "input_size": list(p.input_size),
                                        "preprocessing": p.preprocessing, "state": state}
                                 for spec, p, state in weights_table(entry.name)}})
    if args.json:
        print(json.dumps(rows))
        return
    print(f"{'name':<20}{'modality':<10}{'dims':<6}{'params':>12}  {'min size':<9}note")
    for row in rows:
        print(f"{row['name']:<20}{row['modality']:<10}{row['spatial_dims'] or '-'!s:<6}"
              f"{'-' if row['params'] is None else format(row['params'], ','):>12}  "
              f"{row['min_size'] or '-'!s:<9}{row['note']}")
        for spec, weights in row["weights"].items():
            print(f"{'':<20}--backbone-weights {spec}: {weights['description']}; {weights['source']}; "
                  f"{weights['licence']}; {weights['state']}")
    if args.modality != "text":
        size = args.input_size
        print(f"(image parameters counted for {size}x{size}x3 images and {size}x{size}x{size}x1 "
              f"volumes)")
    if args.modality != "image":
        print(f"(text parameters counted for a {DEFAULT_VOCABULARY:,}-token vocabulary; the "
              f"embedding table grows with the run's vocabulary)")


def cmd_train(args):
    from pipelines import config as config_lib
    from pipelines import workflow
    from pipelines.errors import UserError
    from pipelines.tasks import get_task

    if args.resume:
        if args.task or args.config or args.set or args.run_id:
            raise UserError("--resume RUN_DIR continues a run with its saved configuration; "
                            "give no TASK, --config, --set or --run-id with it")
        _print_document(workflow.train(None, resume=args.resume, quiet=args.quiet or args.json,
                                       echo=_echo(args)), args)
        return
    if not args.task:
        raise UserError(f"train needs a TASK: {', '.join(task_names())}")
    task = get_task(args.task)
    flags = {"data": args.data, "backbone": args.backbone, "backbone_from": args.backbone_from,
             "backbone_weights": args.backbone_weights, "freeze_backbone": args.freeze_backbone,
             "fine_tune_epochs": args.fine_tune_epochs, "epochs": args.epochs,
             "batch_size": args.batch_size, "learning_rate": args.learning_rate, "seed": args.seed,
             "output": args.output, "strategy": args.strategy}
    config = workflow.resolve_config(task, toml=args.config, sets=config_lib.parse_set(args.set),
                                     flags=flags)
    _print_document(workflow.train(task.name, config=config, quiet=args.quiet or args.json,
                                   run_id=args.run_id, echo=_echo(args)), args)


def _echo(args):
    """Where train's lines go: stdout, or stderr when stdout carries the --json document."""
    return (lambda line: print(line, file=sys.stderr)) if args.json else print


def _print_document(run_dir, args):
    if args.json and run_dir is not None:  # a non-chief worker has no run directory to show
        from pipelines import runs

        print(json.dumps(runs.read_json(run_dir / runs.METRICS_FILE)))


def cmd_evaluate(args):
    from pipelines import workflow

    workflow.evaluate(args.run_dir, data=args.data, split=args.split, as_json=args.json,
                      quiet=args.quiet)


def cmd_predict(args):
    from pipelines import config as config_lib
    from pipelines import workflow

    task, records, notice = workflow.predict(args.run_dir, args.inputs,
                                             options=config_lib.parse_set(args.set), out=args.out)
    if not args.quiet:
        print(notice, file=sys.stderr)
    for record in records:
        print(json.dumps(record) if args.json else task.format_prediction(record))


def cmd_export(args):
    from pipelines import workflow

    written = workflow.export(args.run_dir, args.format, args.out, version=args.version,
                              quantize=args.quantize)
    if args.json:
        from pipelines import runs

        metadata = runs.read_json(written.parent / "metadata.json")
        print(json.dumps({"path": str(written), "metadata": metadata}))
    else:
        print(written)


def cmd_export_backbone(args):
    from pipelines import transfer

    written = transfer.export_backbone(args.run_dir, args.out)
    for path in written:
        print(path)
    if not args.quiet:
        print(f"reuse it with: cnn-tasks train TASK --backbone-weights {written[0]}", file=sys.stderr)


def cmd_runs(args):
    from pipelines import runs
    from pipelines.tasks import get_task

    rows = runs.list_runs(args.root, args.task)
    if args.json:
        print(json.dumps([_run_record(row) for row in rows]))
        return
    if not rows:
        print(f"no runs under {args.root}" + (f"/{args.task}" if args.task else ""))
        return
    names = [((row["metrics"] or {}).get("backbone") or {}).get("name", "") for row in rows]
    width = max([len("backbone")] + [len(n) for n in names]) + 2
    print(f"{'task':<22}{'run':<26}{'state':<10}{'data':<26}{'backbone':<{width}}metrics (network / baseline)")
    for row in rows:
        doc = row["metrics"]
        keys = get_task(row["task"]).key_metrics if doc else ()
        base = (doc.get("baseline") or {}).get("metrics", {}) if doc else {}
        shown = "  ".join(f"{k} {_fmt(doc['metrics'].get(k))}/{_fmt(base.get(k))}" for k in keys)
        backbone = (doc.get("backbone") or {}) if doc else {}
        origin = "".join(f" <- {_run_name(source)}" for source in runs.backbone_chain(row["run_dir"]))
        print(f"{row['task']:<22}{row['run_dir'].name:<26}{row['state']:<10}"
              f"{_clip(str(doc.get('data', '')), 25):<26}{backbone.get('name', ''):<{width}}{shown}{origin}")


def _run_record(row):
    """One flat JSON record of a run: its task, folder and state, then its metrics.json fields
    (data, split, n_samples, metrics, train, backbone, baseline, ...; none before it finished),
    then the backbone's chain."""
    from pipelines import runs

    document = {k: v for k, v in (row["metrics"] or {}).items() if k not in ("task", "run_dir")}
    return {"task": row["task"], "run_dir": str(row["run_dir"]), "state": row["state"],
            **{key: row[key] for key in ("reason", "resume") if key in row},
            **document, "metrics": document.get("metrics"),
            "backbone_chain": [str(p) for p in runs.backbone_chain(row["run_dir"])]}


def _run_name(path):
    """TASK/RUN_ID for a run directory (enough to find it under a root); a gone run says so."""
    return f"{path.parent.name}/{path.name}" + ("" if path.is_dir() else " (gone)")


def _clip(text, width):
    """Keep the end of a long path (its most telling part) so columns stay aligned."""
    return text if len(text) <= width else "…" + text[-(width - 1):]


def _fmt(value):
    return "n/a" if value is None else f"{value:.4f}"


COMMANDS = {"tasks": cmd_tasks, "backbones": cmd_backbones, "train": cmd_train,
            "evaluate": cmd_evaluate, "predict": cmd_predict, "export": cmd_export,
            "export-backbone": cmd_export_backbone, "runs": cmd_runs}


def main(argv=None):
    args = build_parser().parse_args(argv)
    if args.verbose:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "0")
    else:
        _quiet_tensorflow()
    from pipelines.errors import UserError

    try:
        COMMANDS[args.verb](args)
    except UserError as error:
        print(f"cnn-tasks: error: {error}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # `cnn-tasks runs | head`: the reader left; say nothing more
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 141
    except KeyboardInterrupt as stop:
        resume = getattr(stop, "resume", None)
        print(f"cnn-tasks: interrupted; the best weights so far are kept; continue with: {resume}" if resume
              else "cnn-tasks: interrupted; a training run can be continued with --resume RUN_DIR",
              file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
