"""The verbs behind the CLI, written once for every task: train, evaluate, predict, export.

Data flows one way: configuration -> task.load -> splits -> preprocessing -> backbone + head ->
training.fit -> evaluation -> reports, all into one run directory (:mod:`pipelines.runs`).
"""

import dataclasses
import datetime
import importlib
import platform
from dataclasses import dataclass
from pathlib import Path

from pipelines import config as config_lib
from pipelines import distribute, evaluation, reports, runs, training, transfer
from pipelines.backbones import BACKBONES
from pipelines.backbones.base import check_input
from pipelines.data import Splits, make_splits
from pipelines.errors import TrainingInterrupted, UserError
from pipelines.inputs import tf_dataset
from pipelines.tasks import get_task

SPLITS_FILE = "splits.json"


def resolve_config(task, *, toml=None, sets=None, flags=None, base=None):
    """Defaults < TOML < --set < flags, then the task's :meth:`~pipelines.tasks.Task.settle`."""
    config = task.settle(config_lib.resolve(task.Config, toml=toml, sets=sets, flags=flags, base=base))
    return transfer.settle_fine_tuning(config)


def _min_size(config):
    return BACKBONES.entry(config.backbone).meta.get("min_size", 1)


def new_splits(task, dataset, config):
    """The split a new run of ``config`` makes of ``dataset``: declared by the data, else made by
    its reader, else seeded and stratified (:func:`pipelines.data.make_splits`)."""
    return make_splits(len(dataset), task.stratify_labels(dataset), test_fraction=config.test_fraction,
                       val_fraction=config.val_fraction, seed=config.seed,
                       declared=dataset.declared_splits, made=dataset.made_splits,
                       train_fraction=config.train_fraction)


def _load_split_data(task, config, run_dir, resume):
    dataset = task.load(config.data, config)
    if resume and (Path(run_dir) / SPLITS_FILE).is_file():
        splits = Splits.from_json(runs.read_json(Path(run_dir) / SPLITS_FILE))
    else:
        splits = new_splits(task, dataset, config)
    return dataset, splits


def _as_built(config, saved):
    """A resumed run's configuration with the backbone options its checkpoints were built with
    (config.json's ``backbone.options``), so a default that changed since (or a run made before
    3D runs kept their options) still finds its weights. A transferred backbone's options are
    the source's, adopted again when the source is resolved."""
    recorded = (saved.get("backbone") or {}).get("options")
    if recorded is None or config.backbone_from or config.backbone_weights:
        return config
    return dataclasses.replace(config, backbone_options=dict(recorded))


def _data_and_preprocessing(task, config, run_dir, resume):
    """The data and its splits, the (train, val, test) subsets, the configuration completed from
    the training split (``fit_config``) and the preprocessing learned from it."""
    dataset, splits = _load_split_data(task, config, run_dir, resume)
    subsets = tuple(dataset.subset(s) for s in (splits.train, splits.val, splits.test))
    config = task.fit_config(config, subsets[0])
    return dataset, splits, subsets, config, task.fit_preprocessing(subsets[0], config, _min_size(config))


def _build_model(task, config, info, source, strategy, arguments):
    """(model, backbone origin): the backbone (new, or from ``source``; ``arguments`` are the
    data's builder arguments, task.backbone_arguments) and the task's head, built in
    ``strategy``'s scope and the configured precision."""
    with strategy.scope(), training.compute_precision(config.precision):
        backbone, origin = transfer.build_backbone(config, task.input_shape(info), source, arguments=arguments,
                                                   vocabulary=task.embedding_tokens(info))
        return task.build(backbone, info, config), origin


def _input_pipeline(task, config, info, subset, *, training, cache_dir):
    """(tf.data pipeline, targets) of one split as ``train`` fits on it: the training split
    shuffled and augmented, the validation split as it is."""
    x, y = task.encode(subset, info)
    data = tf_dataset(x, y, batch_size=config.batch_size, training=training, seed=config.seed,
                      augment=task.augment(config, info) if training else None, cache=config.cache,
                      cache_dir=cache_dir)
    return data, y


@dataclass
class TrainingSetup:
    """What ``train`` builds before it fits: for measuring one side against the other
    (benchmarks time the input pipeline alone against the model consuming it)."""

    task: object
    config: object  # settled and completed from the training split
    info: object  # the task's Preprocessing record
    model: object  # built, not compiled
    train_ds: object  # the training tf.data pipeline, augmentation included
    n_train: int  # training examples an epoch


def training_setup(task_name, *, sets=None, cache_dir=None):
    """The default run of ``task_name`` (changed by ``sets``, as ``--set``) up to its first
    epoch, without a run directory: data, preprocessing, model and training pipeline
    (``cache_dir``: where ``cache=disk`` keeps its files)."""
    import keras
    import tensorflow as tf

    task = get_task(task_name)
    config = resolve_config(task, sets=sets)
    keras.utils.set_random_seed(config.seed)
    _, _, (train_set, _, _), config, info = _data_and_preprocessing(task, config, None, False)
    model, _ = _build_model(task, config, info, None, tf.distribute.get_strategy(),
                            task.backbone_arguments(info, config))
    train_ds, y_train = _input_pipeline(task, config, info, train_set, training=True, cache_dir=cache_dir)
    return TrainingSetup(task, config, info, model, train_ds, len(y_train))


@dataclass
class _Training:
    """What the three steps of :func:`train` hand on: the settled task, configuration,
    placement, data and preprocessing, and the folder this process writes."""

    task: object
    config: object
    placement: object
    source: object  # the backbone's origin (transfer.resolve_source)
    dataset: object
    splits: Splits
    train_set: object
    val_set: object
    test_set: object
    info: object  # the task's Preprocessing record
    run_dir: Path
    resumed: bool
    quiet: bool


def train(task_name, *, config=None, resume=None, quiet=False, echo=print, run_id=None):
    """Train a task end to end and return the run directory (None on a non-chief worker, which
    trains its share and leaves the run directory to the chief)."""
    state = _prepare(task_name, config=config, resume=resume, quiet=quiet, run_id=run_id)
    try:
        model, fitted, meta, origin = _build_and_fit(state, echo)
        if not state.placement.is_chief:
            import shutil

            shutil.rmtree(state.run_dir, ignore_errors=True)  # the worker's temporary folder
            return None
        return _save_and_report(state, model, fitted, meta, origin, echo)
    except BaseException as error:  # the run says how it ended, then the error goes on up
        _mark_ended(state, error)
        if isinstance(error, KeyboardInterrupt) and state.placement.is_chief and state.run_dir.is_dir():
            raise TrainingInterrupted(runs.resume_command(state.run_dir)) from None
        raise


def _mark_ended(state, error):
    """A run that did not finish is "interrupted" (Ctrl-C: resumable) or "failed" with the
    reason, so `runs` never shows a dead run as training. Bad input found before the first
    epoch leaves no run directory at all."""
    if not state.placement.is_chief or not state.run_dir.is_dir():
        return
    progress = (runs.CHECKPOINTS_DIR, runs.BACKUP_DIR, training.HISTORY_FILE, runs.MODEL_FILE)
    if isinstance(error, UserError) and not state.resumed and \
            not any((state.run_dir / name).exists() for name in progress):
        import shutil

        shutil.rmtree(state.run_dir, ignore_errors=True)  # refused before any training: nothing to keep
        return
    if isinstance(error, KeyboardInterrupt):
        runs.set_status(state.run_dir, "interrupted", resume=runs.resume_command(state.run_dir))
    else:
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        runs.set_status(state.run_dir, "failed", reason=f"{type(error).__name__}: {reason}"[:500])


def _prepare(task_name, *, config, resume, quiet, run_id):
    """Step 1: the task and configuration (new, or the run being resumed), the strategy (before
    any TensorFlow op), the data, its splits and preprocessing, and the run directory."""
    import keras

    if resume:
        run_dir, saved = runs.open_run(resume, finished=False)
        if (run_dir / runs.METRICS_FILE).is_file():
            raise UserError(f"--resume {resume}: that run already finished; start a new one")
        task = get_task(saved["task"])
        config = _as_built(resolve_config(task, base=saved["config"]), saved)
    else:
        task = get_task(task_name)
        config = config or resolve_config(task)
    if run_id is not None:
        runs.check_run_id(config.output, task.name, run_id)  # before any work
    placement = distribute.setup(config.strategy)  # before any TensorFlow op (collectives)
    source = transfer.resolve_source(config, task.modality)  # fail on a mismatch before reading data
    keras.utils.set_random_seed(config.seed)
    run_dir = run_dir if resume else None
    dataset, splits, (train_set, val_set, test_set), config, info = _data_and_preprocessing(task, config, run_dir,
                                                                                          resume)
    check_input(config.backbone, task.input_shape(info), config.backbone_options)  # refused before the run exists
    run_dir = _place_run(placement, config.output, task.name, run_dir, run_id)
    return _Training(task, config, placement, source, dataset, splits, train_set, val_set, test_set,
                     info, run_dir, bool(resume), quiet or not placement.is_chief)


def _build_and_fit(state, echo):
    """Step 2: backbone and head in the strategy's scope, config.json, and training.fit on the
    tf.data pipelines. Returns (model, fitted, backbone metadata, backbone origin)."""
    task, config, placement, info, run_dir = state.task, state.config, state.placement, state.info, state.run_dir
    arguments = task.backbone_arguments(info, config)
    meta = transfer.backbone_meta(config, task.input_shape(info), arguments=arguments)
    model, origin = _build_model(task, config, info, state.source, placement.strategy, arguments)
    if placement.multi_worker:
        model = distribute.detach(model)  # predicts and saves on the chief alone
    splits = state.splits
    runs.write_json(run_dir / runs.CONFIG_FILE, {
        "task": task.name, "config": config_lib.to_dict(config),
        "split": {"method": splits.method, "counts": splits.counts(), "file": SPLITS_FILE},
        "data_description": state.dataset.description, "preprocessing": info.to_json(),
        "backbone": meta, "lineage": origin,
        "distribution": placement.describe(config.batch_size, config.lr_scaling),
        "versions": _versions(), "created": datetime.datetime.now(datetime.timezone.utc).isoformat()})
    runs.write_json(run_dir / SPLITS_FILE, splits.to_json())
    runs.set_status(run_dir, "training", **runs.this_process())
    if not state.quiet:
        echo(f"run directory: {run_dir}")
        echo(f"data: {state.dataset.description}; split {splits.method} {splits.counts()}")
        echo(f"model: {config.backbone} backbone, {model.count_params():,} parameters")
        if placement.distributed:
            echo(f"strategy: {placement.name}, {placement.replicas} replicas on {placement.workers} "
                 f"worker(s), global batch {config.batch_size}")
    cache_dir = run_dir / "cache"  # a disk cache left by an interrupted run is not reused
    _cleanup_cache(cache_dir)
    train_ds, y_train = _input_pipeline(task, config, info, state.train_set, training=True, cache_dir=cache_dir)
    val_ds, _ = _input_pipeline(task, config, info, state.val_set, training=False, cache_dir=cache_dir)
    monitor, mode = task.monitor
    fitted = training.fit(model, train_ds, val_ds, config=config, run_dir=run_dir,
                          loss=task.loss(config, info), metrics=task.compile_metrics(config, info),
                          monitor=monitor, mode=mode, n_train=len(y_train), quiet=state.quiet,
                          resume=state.resumed, class_weight=task.class_weight(y_train, config),
                          placement=placement, epoch_scores=task.epoch_scores(state.val_set, info, config))
    return model, fitted, meta, origin


def _save_and_report(state, model, fitted, meta, origin, echo):
    """Step 3 (the chief): model, backbone and assets; evaluation on the test split; metrics.json
    and the reports; the run marked finished."""
    task, config, info, run_dir = state.task, state.config, state.info, state.run_dir
    runs.save_model(model, run_dir / runs.MODEL_FILE)
    transfer.save_backbone(model, run_dir, {**meta, "run_dir": str(run_dir)})
    info.save_assets(run_dir / "assets", runs.write_json)
    result = evaluation.evaluate(task, model, state.test_set, info, config, train=state.train_set,
                                 history=training.read_history(run_dir),
                                 progress=None if state.quiet else _stderr)
    train_figures = {"epochs": fitted.epochs, "seconds": round(fitted.seconds, 2),
                     "samples_per_second": round(fitted.samples_per_second, 1),
                     "best_epoch": fitted.best_epoch, "monitor": fitted.monitor}
    document = reports.metrics_document(
        task=task.name, run_dir=run_dir, data=config.data, split="test", evaluation=result,
        train=train_figures, backbone=_backbone_summary(model, config, origin))
    report = reports.write(run_dir, document, result, title=f"{task.name}: {run_dir.name}",
                           context=_context(task, config, state.dataset.description, state.splits, origin,
                                            train_figures))
    runs.set_status(run_dir, "finished")
    _cleanup(run_dir)
    if not state.quiet:
        echo(summary_table(document))
        echo(f"report: {report}")
    else:
        echo(str(run_dir))
    return run_dir


def _place_run(placement, output, task_name, resumed, run_id):
    """The folder this process writes: the run directory on the chief (new, or the one being
    resumed); on another worker a temporary folder, seeded on resume with the chief's backups
    so every worker restarts from the same epoch."""
    if placement.is_chief:
        if resumed is not None:
            return resumed
        run_dir = runs.create_run_dir(output, task_name, run_id=run_id)
        distribute.agree_on_run_id(placement, run_dir.name)
        return run_dir
    chief_dir = resumed or Path(output) / task_name / distribute.agree_on_run_id(placement, None)
    folder = distribute.worker_folder(placement)
    if resumed is not None and (resumed / runs.BACKUP_DIR).is_dir():
        import shutil

        shutil.copytree(resumed / runs.BACKUP_DIR, folder / runs.BACKUP_DIR)
    print(f"{placement.cluster.task_type} {placement.cluster.index}: training for run {chief_dir} "
          f"(the chief writes it); backups in {folder}, deleted at the end", flush=True)
    return folder


def _cleanup(run_dir):
    import shutil

    shutil.rmtree(Path(run_dir) / runs.BACKUP_DIR, ignore_errors=True)
    _cleanup_cache(Path(run_dir) / "cache")


def _cleanup_cache(folder):
    import shutil

    shutil.rmtree(folder, ignore_errors=True)


def _versions():
    import keras
    import tensorflow as tf

    return {"python": platform.python_version(), "tensorflow": tf.__version__,
            "keras": keras.__version__}


def _backbone_summary(model, config, origin):
    from pipelines.backbones import BACKBONE_LAYER_NAME

    return {"name": config.backbone, "from_run": origin["run_dir"] if origin else None,
            "params": int(model.get_layer(BACKBONE_LAYER_NAME).count_params()),
            "frozen": bool(config.freeze_backbone) and not config.fine_tune_epochs,  # never unfrozen
            "weights_file": config.backbone_weights}


def _context(task, config, description, splits, origin, train_figures=None):
    lines = [("Task", task.name), ("Data", f"{config.data}: {description}"),
             ("Split", f"{splits.method}; {splits.counts()}"),
             ("Backbone", f"{config.backbone} {config.backbone_options or ''}".strip())]
    if origin and origin.get("weights"):
        from pipelines.weights.cache import describe

        lines.append(("Backbone weights", describe(origin["weights"])))
    elif origin:
        metrics = ", ".join(f"{k} {v:.4g}" if isinstance(v, (int, float)) else f"{k} {v}"
                            for k, v in (origin.get("metrics") or {}).items()) or "unknown"
        lines.append(("Backbone from", f"{origin.get('run_dir')} (task {origin.get('task')}, data "
                                       f"{origin.get('data')}, test {metrics})"))
        if origin.get("vocabulary"):
            rows = origin["vocabulary"]
            lines.append(("Embedding rows", f"{rows['matched']} tokens carried over from the source "
                                            f"vocabulary, {rows['new']} initialised fresh"))
    if train_figures:
        lines.append(("Training", f"{train_figures['epochs']} epochs in {train_figures['seconds']} s "
                                  f"({train_figures['samples_per_second']} samples/s), best epoch "
                                  f"{train_figures['best_epoch']} by {train_figures['monitor']}; "
                                  f"weights of the {'best' if config.restore_best else 'last'} "
                                  f"epoch kept"))
    return lines


def summary_table(document):
    baseline = document.get("baseline") or {}
    base_metrics = baseline.get("metrics", {})
    width = max(len(k) for k in document["metrics"]) + 2
    lines = [f"{'metric':<{width}}{'network':>10}{'baseline':>12}   ({baseline.get('name', 'none')}, "
             f"{document['split']} n={document['n_samples']})"]
    for key, value in document["metrics"].items():
        base = base_metrics.get(key)
        lines.append(f"{key:<{width}}{_num(value):>10}{_num(base):>12}")
    if document.get("comparison"):
        lines.append(document["comparison"]["sentence"])
    return "\n".join(lines)


def _num(value):
    return "n/a" if value is None else f"{value:.4f}"


def load_run(run_dir):
    """(run path, saved config.json, task, resolved config, info, model) of a finished run."""
    import keras

    path, saved = runs.open_run(run_dir)
    task = get_task(saved["task"])
    config = resolve_config(task, base=saved["config"])
    for module in BACKBONES.entry(config.backbone).meta.get("requires", ()):
        importlib.import_module(module)  # registers the classes the saved model names (KerasHub's)
    info = task.Preprocessing.load_assets(path / "assets")
    try:
        model = keras.models.load_model(path / runs.MODEL_FILE, safe_mode=True)
    except (ValueError, OSError) as error:
        raise UserError(f"{path / 'model.keras'}: cannot load the model ({error})") from None
    return path, saved, task, config, info, model


def run_data(path, task, config):
    """(dataset, splits) of a saved run: its data read again, split as its splits.json records
    (UserError if the data is not here)."""
    return _load_split_data(task, config, path, resume=True)


def _stderr(line):
    import sys

    print(line, file=sys.stderr, flush=True)


def evaluated_part(task, dataset, split, spec):
    """(indices, split name) of ``dataset`` (another dataset, ``evaluate --data``) to score: the
    test part of the split the data declares, or all of it (its scorable examples). A split a
    reader made (by patient, by episode) is the run's choice for training data, never the data's,
    so it never decides what a new cohort is scored on."""
    declared = dataset.declared_splits or {}
    split = split or ("test" if "test" in declared else "all")
    if split == "test":
        if "test" not in declared:
            raise UserError(f"--split test: {spec} declares no test split (a split column, "
                            f"train/ and test/ folders, MedMNIST test arrays); score it all with "
                            f"--split all")
        return declared["test"], "test"
    return task.scorable(dataset), "all"


def evaluate(run_dir, data=None, split=None, echo=print, as_json=False, quiet=False):
    """Evaluate a saved run on its own test split or on ``data`` (``split``: see
    :func:`evaluated_part`); writes evaluations/<id>/."""
    if split and not data:
        raise UserError("--split goes with --data: without it the run's own test split is scored")
    path, saved, task, config, info, model = load_run(run_dir)
    train_set = None
    try:
        own, splits = run_data(path, task, config)
        train_set = task.align(own.subset(splits.train), info)
    except UserError:
        own = splits = None  # the original data is not here: no baseline, and --data is needed
    if data:
        dataset = task.load(data, config)
        part, split_name = evaluated_part(task, dataset, split, data)
        test, description = task.align(dataset.subset(part), info), dataset.description
    else:
        if own is None:
            raise UserError(f"{path}: the run's data {config.data!r} is not available here; "
                            f"pass --data SPEC")
        test, split_name, description = task.align(own.subset(splits.test), info), "test", own.description
    result = evaluation.evaluate(task, model, test, info, config, train=train_set,
                                 progress=None if quiet or as_json else _stderr)
    eval_dir = path / "evaluations" / runs.new_run_id()
    eval_dir.mkdir(parents=True)
    origin = saved.get("lineage")
    document = reports.metrics_document(
        task=task.name, run_dir=path, data=data or config.data, split=split_name, evaluation=result,
        train=runs.read_optional_json(path / runs.METRICS_FILE).get("train"),
        backbone=_backbone_summary(model, config, origin))
    report = reports.write(eval_dir, document, result,
                           title=f"{task.name}: evaluation of {path.name}",
                           context=[("Task", task.name), ("Run", str(path)),
                                    ("Data", f"{data or config.data}: {description}"),
                                    ("Split", f"{split_name}: {result.n_samples} examples")])
    if as_json:
        import json

        echo(json.dumps(document, default=runs._json_default))
    else:
        echo(summary_table(document))
        echo(f"report: {report}")
    return eval_dir


def predict(run_dir, inputs, *, options=None, out=None):
    """(task, records, notice): each record says which model answered (``answered_by``), and the
    notice (for stderr) also says when the run's own test split favoured its baseline."""
    path, saved, task, config, info, model = load_run(run_dir)
    records = task.predict_inputs(model, list(inputs), info, options or {}, out=out)
    who = answered_by(path, config)
    notice = f"Answered by {who}."
    comparison = runs.read_optional_json(path / runs.METRICS_FILE).get("comparison") or {}
    if comparison.get("winner") in ("baseline", "mixed"):
        sentence = comparison["sentence"]
        notice += f" On the run's test split, {sentence[0].lower()}{sentence[1:]}"
    return task, [{**record, "answered_by": who} for record in records], notice


def answered_by(path, config):
    """The model behind a run's predictions, in words: always the network (a classical baseline
    is fitted for the report only and never saved)."""
    options = ", ".join(f"{k}={v}" for k, v in sorted(config.backbone_options.items())
                        if isinstance(v, (str, int, float, bool)))
    return f"the network ({config.backbone}{' ' + options if options else ''}) of run {Path(path).name}"


def export(run_dir, fmt, out=None, *, version=1, quantize="none"):
    """Export a finished run for serving (:mod:`pipelines.serving`): ``OUT/<version>/`` holds a
    SavedModel whose signatures take raw inputs, or a ``model.tflite``; ``OUT/metadata.json``."""
    from pipelines import serving

    path, _ = runs.open_run(run_dir)  # a missing or unfinished run is refused first, by name
    if not (path / runs.METRICS_FILE).is_file():
        raise UserError(f"{path}: the run has not finished (no {runs.METRICS_FILE}); resume it "
                        f"with --resume or export another run")
    request = serving.plan(run_dir, fmt, out, version=version, quantize=quantize)
    path, saved, task, config, info, model = load_run(run_dir)
    return serving.write(request, run_dir=path, task=task, model=model, info=info, saved=saved)
