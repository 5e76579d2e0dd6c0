"""The plain-Keras twin in benchmarks/ must time the same model as the task defaults."""

import dataclasses
from pathlib import Path

import pytest

from pipelines import workflow


TWINS = [  # (task, twin script, its check, a constant of the script to drift, a drifted value, setting named)
    ("image-classification", "plain_keras_digits", "check_same_defaults", "SHIFT", 0.125, "augment_shift"),
    ("text-classification", "plain_keras_text", "check_same_text_defaults", "WINDOWS", (2, 3, 4), "windows"),
    ("steering", "plain_keras_steering", "check_same_steering_defaults", "UNITS", (100, 10), "head_units"),
    ("medical-segmentation", "plain_keras_segmentation", "check_same_segmentation_defaults",
     "EMPTY_SLICE_FRACTION", 0.5, "slices"),
    ("volume-classification", "plain_keras_volumes", "check_same_volume_defaults", "DEGREES", 0.0, "augmentation"),
    ("captioning", "plain_keras_captioning", "check_same_captioning_defaults", "UNITS", 512, "decoder"),
]


@pytest.mark.parametrize("task, script, check, constant, drifted, setting", TWINS)
def test_each_plain_twin_restates_its_tasks_defaults(monkeypatch, task, script, check, constant, drifted, setting):
    import importlib

    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[1] / "benchmarks"))
    import pipeline_vs_plain

    twin = importlib.import_module(script)
    config = workflow.get_task(task).Config()
    getattr(pipeline_vs_plain, check)(config)  # exits if a copy drifted
    monkeypatch.setattr(twin, constant, drifted)
    with pytest.raises(SystemExit, match=f"{setting}: plain"):
        getattr(pipeline_vs_plain, check)(config)


@pytest.mark.parametrize("task, check, changed, message", [
    ("text-classification", "check_same_text_defaults", {"epochs": 3}, "epochs: plain 10, task 3"),
    ("steering", "check_same_steering_defaults", {"augment_brightness": 0.2}, "augmentation: plain"),
    ("medical-segmentation", "check_same_segmentation_defaults", {"spatial_dims": 3}, "spatial_dims: plain 2, task 3"),
])
def test_a_changed_task_default_is_named_by_its_twins_check(monkeypatch, task, check, changed, message):
    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[1] / "benchmarks"))
    import pipeline_vs_plain

    config = dataclasses.replace(workflow.get_task(task).Config(), **changed)
    with pytest.raises(SystemExit, match=message):
        getattr(pipeline_vs_plain, check)(config)


def test_the_plain_text_model_has_the_pipelines_parameter_count(monkeypatch):
    """Same vocabulary and length -> the same number of weights as the task's text_cnn model."""
    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[1] / "benchmarks"))
    import plain_keras_text

    from pipelines.backbones import create_backbone
    from pipelines.heads import classifier_head

    backbone = create_backbone("text_cnn", (40,), vocab_size=500)
    head = classifier_head(backbone.output["sentence"].shape[1:], 2)
    twin = plain_keras_text.model(500, 40, 2)
    assert twin.count_params() == backbone.count_params() + head.count_params()


def test_the_benchmark_command_writes_results_json_and_its_markdown_section(tmp_path):
    """`python -m benchmarks run` (issue 18): the smallest case, for the files' shape, not the speed."""
    import json
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[1]
    results, page = tmp_path / "results.json", tmp_path / "RESULTS.md"
    page.write_text("# Benchmark results\n\nProse of earlier sessions stays.\n")
    command = [sys.executable, "-m", "benchmarks", "run", "--quick", "--only", "matmul_peak", "input_pipeline",
               "--repeats", "2", "--json", str(results), "--markdown", str(page)]
    done = subprocess.run(command, cwd=root, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    document = json.loads(results.read_text())
    assert document["schema"] == 1 and document["quick"] is True and document["repeats"] == 2
    assert {"cpu", "cores", "python", "tensorflow", "keras"} <= set(document["machine"])
    figure = document["benchmarks"]["matmul_peak"]["figures"]["matmul_flops_per_s"]
    assert figure["unit"] == "FLOP/s" and len(figure["values"]) == 2 and all(v > 0 for v in figure["values"])
    assert min(figure["values"]) <= figure["median"] <= max(figure["values"])
    pipeline = document["benchmarks"]["input_pipeline"]["figures"]  # it reads the pipeline's own data path
    headroom = pipeline["image-classification: headroom"]
    assert headroom["unit"] == "ratio" and headroom["median"] > 0
    assert len(pipeline["image-classification: pipeline samples/s"]["values"]) == 2
    text = page.read_text()
    assert text.startswith("# Benchmark results\n\nProse of earlier sessions stays.")
    assert text.count("<!-- benchmarks run: begin -->") == 1 and text.count("| matmul_flops_per_s |") == 1
    assert document["machine"]["tensorflow"] in text and document["date"] in text


def test_a_partial_run_keeps_the_other_benchmarks_with_their_dates(tmp_path):
    """`--only NAME` replaces NAME's figures and keeps the rest (their own date shown); figures
    from another CPU are dropped."""
    import json

    from benchmarks import suite

    def document(date, names, cpu="cpu A"):
        figure = {"unit": "s", "values": [1.0], "median": 1.0, "note": ""}
        return {"schema": suite.SCHEMA_VERSION, "date": date, "quick": False, "repeats": 3,
                "machine": {"cpu": cpu, "cores": 2, "python": "3", "tensorflow": "2", "keras": "3"},
                "benchmarks": {n: {"summary": n, "seconds": 1.0, "figures": {f"{n}_figure": figure}} for n in names}}

    results, page = tmp_path / "results.json", tmp_path / "RESULTS.md"
    suite.write(document("2026-01-01", ["matmul_peak", "digits_overhead"]), results, page)
    suite.write(document("2026-02-02", ["matmul_peak"]), results, page)
    kept = json.loads(results.read_text())
    assert list(kept["benchmarks"]) == ["matmul_peak", "digits_overhead"]  # the registry's order
    assert kept["date"] == "2026-02-02" and kept["benchmarks"]["digits_overhead"]["date"] == "2026-01-01"
    text = page.read_text()
    assert "**digits_overhead**: digits_overhead (1.0 s; measured 2026-01-01, 3 repetitions)" in text
    assert "**matmul_peak**: matmul_peak (1.0 s)." in text
    assert text.count(suite.BEGIN) == 1 and text.count(suite.END) == 1  # replaced, not added
    earlier = json.loads(results.read_text())  # a benchmark since renamed or retired is not kept
    earlier["benchmarks"]["retired_benchmark"] = earlier["benchmarks"]["digits_overhead"]
    results.write_text(json.dumps(earlier))
    suite.write(document("2026-02-04", ["matmul_peak"]), results, page)
    assert list(json.loads(results.read_text())["benchmarks"]) == ["matmul_peak", "digits_overhead"]
    suite.write(document("2026-03-03", ["matmul_peak"], cpu="cpu B"), results, page)
    assert list(json.loads(results.read_text())["benchmarks"]) == ["matmul_peak"]


def test_flops_are_counted_from_the_model():
    """The profiler's count for a known layer: a 3x3 convolution, 1 -> 4 channels, 'same' on 8x8
    is 2 * 9 * 1 * 4 * 64 multiply-adds' FLOPs (plus the bias adds)."""
    import keras

    from benchmarks.suite import forward_flops

    model = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Conv2D(4, 3, padding="same", use_bias=False)])
    assert forward_flops(model, (8, 8, 1)) == 2 * 9 * 1 * 4 * 64


def test_text_flops_count_the_convolutions_from_token_ids():
    """A text model's FLOPs start after the tokenizer: the windows' multiply-adds over every
    position (2 each), plus bias adds and the head, a few percent at most."""
    from benchmarks import suite

    sets = {"data": "builtin:sms_spam", "backbone_options": {"embedding_dim": 8, "filters": 4, "windows": [2, 3]},
            "max_length": 16}
    setup = workflow.training_setup("text-classification", sets=sets)
    flops = suite._example_flops(setup.task, setup.model, setup.info, setup.train_ds)
    convolutions = 2 * 16 * (2 + 3) * 8 * 4
    assert convolutions <= flops <= 1.1 * convolutions


def test_captioning_flops_count_the_decoder_once_per_word():
    """The decoder's recurrence is unrolled: one more word adds one step's FLOPs, at least the
    GRU's multiply-adds (3 gates over [word, context] and the state)."""
    from benchmarks import suite

    sets = {"backbone_options": {"widths": [4, 8]}, "units": 8, "embedding_dim": 4, "attention_units": 4,
            "feature_dim": 4, "image_size": 16}
    setup = workflow.training_setup("captioning", sets=sets)

    class Shorter:  # the same rows, one word fewer
        def __iter__(self):
            for (x, y) in setup.train_ds.take(1):
                yield {**x, "tokens": x["tokens"][:, :-1]}, y

    longer = suite._example_flops(setup.task, setup.model, setup.info, setup.train_ds)
    shorter = suite._example_flops(setup.task, setup.model, setup.info, Shorter())
    assert longer - shorter >= 3 * 2 * 8 * (4 + 4 + 8)


def test_the_plain_steering_model_has_the_pipelines_parameter_count(monkeypatch):
    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[1] / "benchmarks"))
    import plain_keras_steering

    from pipelines.backbones import create_backbone
    from tasks.steering.head import build_regressor

    statistics = dict(pixel_mean=[0.5] * 3, pixel_variance=[0.1] * 3, target_mean=0.0, target_std=0.05)
    pipeline = build_regressor(create_backbone("pilotnet", (32, 64, 3)), **statistics)
    twin = plain_keras_steering.model((32, 64, 3), statistics["pixel_mean"], statistics["pixel_variance"],
                                      statistics["target_mean"], statistics["target_std"])
    assert twin.count_params() == pipeline.count_params()


def test_the_steering_twins_splits_are_the_tasks(monkeypatch):
    """Same frames for training, validation and test as `cnn-tasks train steering`."""
    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[1] / "benchmarks"))
    import numpy as np
    import pandas as pd
    import plain_keras_steering as plain

    from pipelines import workflow as flow

    task = flow.get_task("steering")
    config = flow.resolve_config(task)
    dataset = task.load(config.data, config)
    twin = plain.splits(pd.read_csv(plain.DATA))
    for name, rows in zip(("train", "val", "test"), twin):
        mine = sorted(Path(p).name for p in dataset.x["frames"].paths[dataset.training_splits()[name]])
        assert mine == sorted(Path(p).name for p in pd.read_csv(plain.DATA)["path"].to_numpy()[rows]), name
        assert len(rows) and np.all(np.diff(rows) > 0)


def test_time_to_quality_reads_the_first_epoch_at_the_target():
    from benchmarks.suite import seconds_to_target

    curve = [(1.0, 0.90), (2.5, 0.986), (4.0, 0.97), (5.0, 0.99)]
    assert seconds_to_target(curve, 0.985, higher_is_better=True) == 2.5
    assert seconds_to_target(curve, 0.995, higher_is_better=True) is None
    assert seconds_to_target([(1.0, 0.004), (2.0, 0.0025)], 0.0026, higher_is_better=False) == 2.0


def test_a_benchmark_against_its_twin_times_both_and_draws_their_curves(monkeypatch, tmp_path):
    """The alternation, the overhead ratio, time to quality and the learning-curve PNG, with
    stand-ins for the twin and the pipeline (the real ones are minutes of training)."""
    import json

    from benchmarks import suite

    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[1] / "benchmarks"))
    import pipeline_vs_plain

    order = []

    def plain_main(verbose, epochs, curve):
        order.append("plain")
        curve.extend([(1.0, 0.9), (2.0, 0.99)][:epochs])
        return 2.0, 0.98

    def pipeline_seconds(output, *, epochs, task, metric, curve, curve_metric, sets):
        order.append("pipeline")
        assert (task, metric, curve_metric, sets) == ("image-classification", "accuracy", "val_accuracy", None)
        curve.extend([(1.5, 0.95), (3.0, 0.97)][:epochs])
        return 3.0, 0.97

    monkeypatch.setattr(pipeline_vs_plain, "pipeline_seconds", pipeline_seconds)
    measured = suite._against_twin(plain_main, "image-classification", 2, 2,
                                   suite.Quality("accuracy", "val_accuracy", 0.985))
    assert order == ["plain", "pipeline", "plain", "pipeline"]
    assert measured["ratio"].values == [1.5]
    assert measured["plain_keras_seconds_to_target"].values == [2.0, 2.0]
    assert measured["plain_keras_runs_reaching_target"].values == [2]
    assert measured["pipeline_runs_reaching_target"].values == [0]
    assert "pipeline_seconds_to_target" not in measured  # never reached: no figure made up
    assert measured["pipeline_accuracy"].values == [0.97, 0.97]

    monkeypatch.setitem(suite.BENCHMARKS, "fake_overhead", (lambda quick, repeats: measured, "a fake"))
    monkeypatch.setattr(suite, "machine", lambda: {"cpu": "c", "cores": 2, "python": "3", "tensorflow": "2",
                                                   "keras": "3", "platform": "p"})
    results, page = tmp_path / "results.json", tmp_path / "RESULTS.md"
    suite.write(suite.run(["fake_overhead"], quick=True, repeats=2, echo=lambda _: None), results, page)
    entry = json.loads(results.read_text())["benchmarks"]["fake_overhead"]
    assert entry["curves"]["learning_curves"]["series"]["pipeline 2"] == [[1.5, 0.95], [3.0, 0.97]]
    assert "learning_curves" not in entry["figures"]
    png = tmp_path / "plots" / "fake_overhead_learning_curves.png"
    assert png.read_bytes().startswith(b"\x89PNG")
    assert "![fake_overhead: learning_curves](plots/fake_overhead_learning_curves.png)" in page.read_text()


def test_peak_memory_is_measured_on_the_command_alone_and_failures_are_named(monkeypatch):
    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[1] / "benchmarks"))
    from benchmarks import suite

    import numpy as np

    ballast = np.ones(300 * 2 ** 20 // 8)  # this process now holds 300 MiB more than the child
    assert 10 < suite._peak_mib(["--help"]) < 250, "the child's peak must not be the parent's"
    del ballast
    with pytest.raises(RuntimeError, match="cnn-tasks --no-such-flag failed: .*arguments are required"):
        suite._peak_mib(["--no-such-flag"])


def test_a_step_timing_process_times_the_tasks_default_model(monkeypatch):
    """step_timing.py (one setting of the training-step sweep) builds the digits default: the
    same forward FLOPs as the plain twin's model, which the overhead benchmark pins to the task."""
    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[1] / "benchmarks"))
    import plain_keras_digits

    from benchmarks import suite

    seconds, flops, batch = suite._step_seconds("digits", ["--batch", "4"], {})
    assert seconds > 0 and batch == 4
    assert flops == suite.forward_flops(plain_keras_digits.model(batch_norm=True), (8, 8, 1))
    with pytest.raises(RuntimeError, match="invalid int value: 'x'"):
        suite._step_seconds("digits", ["--batch", "x"], {})


def test_the_plain_segmentation_model_has_the_pipelines_parameter_count(monkeypatch):
    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[1] / "benchmarks"))
    import plain_keras_segmentation as plain

    from pipelines.backbones import create_backbone
    from tasks.medical_segmentation.unet import build_unet

    task = workflow.get_task("medical-segmentation")
    config = task.settle(task.Config())
    backbone = create_backbone("basic_cnn", (plain.SIZE, plain.SIZE, 1), **config.backbone_options)
    pipeline = build_unet(backbone, plain.CLASSES, decoder_width=config.decoder_width)
    assert plain.model().count_params() == pipeline.count_params()


def test_the_segmentation_twin_trains_on_the_tasks_cases_and_slices(monkeypatch):
    """Same cases in train, validation and test as `cnn-tasks train medical-segmentation`, and
    the same number of training slices kept."""
    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[1] / "benchmarks"))
    import numpy as np
    import plain_keras_segmentation as plain

    from pipelines.data import make_splits

    task = workflow.get_task("medical-segmentation")
    config = task.settle(workflow.resolve_config(task))
    dataset = task.load(config.data, config)
    splits = make_splits(len(dataset.x), test_fraction=config.test_fraction, val_fraction=config.val_fraction,
                         seed=config.seed)
    files = plain.case_files()
    assert [plain.DATA / "imagesTr" / Path(c.source).name for c in dataset.x] == [image for image, _ in files]
    twin = plain.splits(len(files))
    for mine, theirs in zip((splits.train, splits.val, splits.test), twin):
        assert list(mine) == list(theirs)
    val = dataset.subset(splits.val)
    info = task.fit_preprocessing(dataset.subset(splits.train), config, 8)
    images, masks = task.encode(val, info)[0].load()
    twin_images, twin_masks = plain.training_slices([plain.read_case(*files[i]) for i in twin[1]])
    np.testing.assert_array_equal(twin_masks, masks)
    np.testing.assert_allclose(twin_images, images, atol=1e-5)


def test_the_volume_twin_has_the_tasks_model_volumes_and_splits(monkeypatch):
    """The same parameter count, generated volumes and stratified split as
    `cnn-tasks train volume-classification`."""
    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[1] / "benchmarks"))
    import numpy as np
    import plain_keras_volumes as plain

    from pipelines.backbones import create_backbone
    from pipelines.heads import build_classifier

    task = workflow.get_task("volume-classification")
    config = workflow.resolve_config(task)
    pipeline = build_classifier(create_backbone("basic_cnn3d", (*plain.SIZE, 1), **config.backbone_options), 2,
                                dropout=config.head_dropout)
    assert plain.model().count_params() == pipeline.count_params()
    dataset = task.load(config.data, config)
    volumes, labels = plain.generated_volumes()
    np.testing.assert_array_equal(volumes, dataset.x["volumes"][..., 0])
    np.testing.assert_array_equal(labels, dataset.y)
    splits = workflow.new_splits(task, dataset, config)
    for mine, theirs in zip((splits.train, splits.val, splits.test), plain.splits(labels)):
        assert list(mine) == list(theirs)


def test_the_captioning_twin_has_the_tasks_model_splits_and_words(monkeypatch):
    """The same parameter count, image split, vocabulary and token ids as
    `cnn-tasks train captioning` on builtin:shapes."""
    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[1] / "benchmarks"))
    import numpy as np
    import plain_keras_captioning as plain

    from pipelines.backbones import create_backbone

    task = workflow.get_task("captioning")
    config = workflow.resolve_config(task)
    dataset = task.load(config.data, config)
    splits = workflow.new_splits(task, dataset, config)
    twin_splits = plain.splits(len(dataset))
    for mine, theirs in zip((splits.train, splits.val, splits.test), twin_splits):
        assert list(mine) == list(theirs)
    train = dataset.subset(splits.train)
    info = task.fit_preprocessing(train, config, 8)
    names = plain.vocabulary([c for refs in train.y for c in refs])
    assert names == list(info.vocabulary)
    inputs, targets = task.encode(train, info)
    index = {w: i for i, w in enumerate(names)}
    twin_ids = plain.token_ids([c for refs in train.y for c in refs], index)
    np.testing.assert_array_equal(twin_ids[:, 1:], targets)
    backbone = create_backbone(config.backbone, task.input_shape(info), **config.backbone_options)
    assert plain.captioner(len(names))[0].count_params() == task.build(backbone, info, config).count_params()


def test_the_pretrained_twin_restates_the_recipe_and_builds_the_same_network(monkeypatch, tmp_path):
    """plain_keras_pretrained.py: the fine-tuning recipe the task settles for ImageNet Lite0,
    and the same network and ImageNet features as the product's backbone."""
    import numpy as np

    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[1] / "benchmarks"))
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    import pipeline_vs_plain
    import plain_keras_pretrained as plain

    from pipelines import transfer
    from pipelines.backbones import create_backbone

    task = workflow.get_task("image-classification")
    config = workflow.resolve_config(task, sets=pipeline_vs_plain.PRETRAINED_SETS)
    pipeline_vs_plain.check_same_pretrained_defaults(config)  # converts the weights into tmp_path
    monkeypatch.setattr(plain, "FINE_TUNE_LR_SCALE", 0.1)
    with pytest.raises(SystemExit, match="fine_tune_lr_scale: plain 0.1"):
        pipeline_vs_plain.check_same_pretrained_defaults(config)
    source = transfer.resolve_source(config, "image")
    ours, _ = transfer.build_backbone(config, (64, 64, 1), source)
    theirs = plain.imagenet_lite0(1)
    assert ours.count_params() == theirs.count_params()
    x = np.random.default_rng(0).random((2, 64, 64, 1), dtype=np.float32)
    np.testing.assert_allclose(theirs.predict(x, verbose=0), ours.predict(x, verbose=0)["P5"], atol=1e-4)


def test_the_detection_twin_restates_the_defaults_and_builds_the_same_detector(monkeypatch, tmp_path):
    """plain_keras_detection.py: object-detection's defaults (the anchor size chosen on BCCD
    included), the same parameter count, the same ImageNet pyramid features and the same loss."""
    import numpy as np

    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[1] / "benchmarks"))
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    import pipeline_vs_plain
    import plain_keras_detection as plain

    from pipelines import transfer
    from tasks.object_detection.model import DetectionLoss

    task = workflow.get_task("object-detection")
    config = workflow.resolve_config(task)
    pipeline_vs_plain.check_same_detection_defaults(task.Config())  # converts the weights into tmp_path
    monkeypatch.setattr(plain, "ANCHOR_SIZE", 4.0)
    with pytest.raises(SystemExit, match="anchors: plain"):
        pipeline_vs_plain.check_same_detection_defaults(task.Config())
    monkeypatch.setattr(plain, "ANCHOR_SIZE", 2.5)
    source = transfer.resolve_source(config, "image")
    ours, _ = transfer.build_backbone(config, (plain.HEIGHT, plain.WIDTH, 3), source)
    theirs_model, theirs = plain.detector(3, 9)
    x = np.random.default_rng(0).random((1, plain.HEIGHT, plain.WIDTH, 3), dtype=np.float32)
    mine, other = ours.predict(x, verbose=0), theirs.predict(x, verbose=0)
    for level in ("P3", "P4", "P5"):
        np.testing.assert_allclose(other[level], mine[level], atol=1e-4)
    anchor_spec = {"height": plain.HEIGHT, "width": plain.WIDTH, "min_level": 3, "max_level": 5, "num_scales": 3,
                   "aspect_ratios": (0.5, 1.0, 2.0), "anchor_size": 2.5}
    info = task.Preprocessing(height=plain.HEIGHT, width=plain.WIDTH, class_names=["a", "b", "c"],
                              anchors=anchor_spec)
    product = task.build(ours, info, config)
    assert product.count_params() == theirs_model.count_params()
    truth = np.full((1, 4, 5), -1.0, np.float32)
    truth[0, :2] = [[10, 20, 40, 52, 0], [200, 100, 330, 220, 2]]
    assert plain.padded([np.ones((5, 5), np.float32)], [(10, 10)], 3).shape == (1, 3, 5)  # as the task pads
    raw = np.random.default_rng(1).normal(size=(1, len(plain.anchors()), 7)).astype(np.float32)
    np.testing.assert_allclose(float(np.sum(DetectionLoss(anchor_spec, 3)(truth, raw))),
                               float(np.sum(plain.make_loss(plain.anchors(), 3)(truth, raw))), rtol=1e-5)
