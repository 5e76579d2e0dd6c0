"""Transfer: channel adaptation keeps features, fine-tuning moves a frozen backbone, and a
classification backbone feeds segmentation."""

import json

import keras
import numpy as np
import pytest

from conftest import run_cli
from pipelines.backbones import create_backbone
from pipelines.transfer import copy_weights


def _features(backbone, images):
    return {k: np.asarray(v) for k, v in backbone(images).items()}


@pytest.mark.parametrize("source_channels,target_channels", [(1, 3), (3, 1)])
def test_channel_adaptation_gives_the_same_features_on_equivalent_images(source_channels, target_channels):
    """1 -> 3: kernels replicated / 3, so an RGB copy of a gray image gives the gray features;
    3 -> 1: kernels summed, so a gray image gives the features of its gray RGB copy."""
    keras.utils.set_random_seed(0)
    options = {"widths": [4, 8], "batch_norm": False}
    source = create_backbone("basic_cnn", (16, 16, source_channels), **options)
    target = create_backbone("basic_cnn", (16, 16, target_channels), **options)
    copy_weights(source, target, where="test")
    gray = np.random.default_rng(0).random((2, 16, 16, 1)).astype(np.float32)
    as_input = {1: gray, 3: np.repeat(gray, 3, axis=-1)}
    theirs, mine = _features(source, as_input[source_channels]), _features(target, as_input[target_channels])
    for level in theirs:
        np.testing.assert_allclose(mine[level], theirs[level], rtol=1e-4, atol=1e-6)


def test_another_input_size_takes_the_kernels_unchanged():
    keras.utils.set_random_seed(0)
    source = create_backbone("resnet18", (32, 32, 3))
    target = create_backbone("resnet18", (64, 48, 3))
    copy_weights(source, target, where="test")
    for a, b in zip(source.get_weights(), target.get_weights()):
        np.testing.assert_array_equal(a, b)


@pytest.mark.slow
def test_fine_tuning_moves_the_frozen_backbone_in_one_history(digits_run, tmp_path, monkeypatch):
    from pipelines import training

    scales, original = [], training.make_optimizer
    monkeypatch.setattr(training, "make_optimizer",
                        lambda config, **kw: scales.append(kw["lr_scale"]) or original(config, **kw))
    assert run_cli("train", "image-classification", "--epochs", 1, "--fine-tune-epochs", 1,
                   "--output", tmp_path, "--quiet", "--backbone-from", digits_run,
                   "--freeze-backbone") == 0
    (child,) = (tmp_path / "image-classification").iterdir()
    source = keras.models.load_model(digits_run / "model.keras").get_layer("backbone")
    tuned = keras.models.load_model(child / "model.keras").get_layer("backbone")
    kernels = [(a, b) for a, b in zip(source.get_weights(), tuned.get_weights()) if a.ndim == 4]
    assert kernels and all(not np.array_equal(a, b) for a, b in kernels)
    history = (child / "history.csv").read_text().strip().splitlines()
    assert len(history) == 3  # header + frozen epoch + fine-tuning epoch
    assert scales == [10.0, 0.1]  # the head alone at frozen_lr_scale, then fine_tune_lr_scale


@pytest.mark.slow
def test_a_classification_backbone_becomes_a_segmentation_encoder(digits_run, tmp_path):
    assert run_cli("train", "medical-segmentation", "--data", "builtin:phantoms", "--epochs", 1,
                   "--output", tmp_path, "--quiet", "--backbone-from", digits_run, "--set",
                   "decoder_width=4", "--set", "image_size=32") == 0
    (child,) = (tmp_path / "medical-segmentation").iterdir()
    metrics = json.loads((child / "metrics.json").read_text())
    assert metrics["backbone"]["from_run"] == str(digits_run)
    assert json.loads((child / "config.json").read_text())["lineage"]["task"] == "image-classification"


def _forged_run(root, task, name, modality):
    """A run directory holding only backbone.json (+ an empty weights file): enough for the
    checks that must fail before any data is read or any weights are loaded."""
    root.mkdir(parents=True)
    (root / "config.json").write_text(json.dumps({"task": task, "config": {"data": "x"}}))
    (root / "backbone.weights.h5").write_bytes(b"")
    (root / "backbone.json").write_text(json.dumps(
        {"name": name, "modality": modality, "input_shape": [8, 8, 1], "options": {}, "run_dir": str(root)}))
    return root


@pytest.mark.parametrize("task,held,needed", [
    ("image-classification", "text", "image"), ("captioning", "text", "image"),
    ("medical-segmentation", "text", "image"), ("text-classification", "image", "text")])
def test_every_task_refuses_a_backbone_of_another_modality(task, held, needed, tmp_path, capsys):
    source = _forged_run(tmp_path / "source",
                         "text-classification" if held == "text" else "image-classification",
                         "text_cnn" if held == "text" else "basic_cnn", held)
    code = run_cli("train", task, "--backbone-from", source, "--output", tmp_path / "out", "--quiet")
    err = capsys.readouterr().err
    assert code == 2, err
    named = {"image": "an image", "text": "a text"}
    assert f"holds {named[held]} backbone" in err and f"this task needs {named[needed]} backbone" in err
    assert not (tmp_path / "out").exists()  # refused before a run directory was made


def test_naming_another_architecture_beside_a_source_is_refused(tmp_path, capsys):
    source = _forged_run(tmp_path / "source", "image-classification", "basic_cnn", "image")
    code = run_cli("train", "medical-segmentation", "--backbone-from", source, "--backbone", "resnet18",
                   "--output", tmp_path / "out", "--quiet")
    err = capsys.readouterr().err
    assert code == 2 and "holds a basic_cnn backbone, but --backbone asks for resnet18" in err


def test_either_a_source_run_or_a_weights_file(tmp_path, capsys):
    source = _forged_run(tmp_path / "source", "image-classification", "basic_cnn", "image")
    code = run_cli("train", "image-classification", "--backbone-from", source, "--backbone-weights",
                   source / "backbone.weights.h5", "--output", tmp_path / "out", "--quiet")
    assert code == 2 and "not both" in capsys.readouterr().err


@pytest.mark.slow
def test_an_exported_backbone_carries_weights_and_lineage(digits_run, tmp_path, capsys):
    out = tmp_path / "digits.weights.h5"
    assert run_cli("export-backbone", digits_run, "--out", out) == 0
    assert out.read_bytes() == (digits_run / "backbone.weights.h5").read_bytes()
    assert json.loads((tmp_path / "digits.json").read_text())["options"]["widths"] == [8, 16, 16]
    assert run_cli("export-backbone", digits_run, "--out", out) == 2  # never overwritten
    assert f"{out}, {tmp_path / 'digits.json'} already exist;" in capsys.readouterr().err
    assert run_cli("export-backbone", digits_run, "--out", tmp_path / "digits.h5") == 2
    assert "must end with .weights.h5" in capsys.readouterr().err

    # the file alone (with its .json) rebuilds the architecture: no --backbone options needed
    assert run_cli("train", "image-classification", "--epochs", 1, "--output", tmp_path / "runs",
                   "--quiet", "--backbone-weights", out, "--freeze-backbone") == 0
    (child,) = (tmp_path / "runs" / "image-classification").iterdir()
    source = keras.models.load_model(digits_run / "model.keras").get_layer("backbone")
    reused = keras.models.load_model(child / "model.keras").get_layer("backbone")
    for a, b in zip(source.get_weights(), reused.get_weights()):
        np.testing.assert_array_equal(a, b)
    lineage = json.loads((child / "config.json").read_text())["lineage"]
    assert lineage["weights_file"] == str(out) and lineage["task"] == "image-classification"
    metrics = json.loads((child / "metrics.json").read_text())
    assert metrics["backbone"]["from_run"] == str(digits_run.resolve())


@pytest.mark.slow
def test_runs_lists_the_whole_backbone_chain(digits_run, tmp_path, capsys):
    parent = digits_run
    for _ in range(2):  # digits -> child -> grandchild
        before = set((tmp_path / "image-classification").glob("*"))
        assert run_cli("train", "image-classification", "--epochs", 1, "--output", tmp_path,
                       "--quiet", "--backbone-from", parent) == 0
        (parent,) = set((tmp_path / "image-classification").glob("*")) - before
    capsys.readouterr()
    assert run_cli("runs", "--root", tmp_path) == 0
    lines = capsys.readouterr().out.splitlines()
    (line,) = [row for row in lines if parent.name in row.split()[1]]
    (child,) = [p for p in (tmp_path / "image-classification").iterdir() if p != parent]
    assert line.endswith(f"<- image-classification/{child.name} <- image-classification/{digits_run.name}")


def test_the_chain_stops_at_a_loop_and_at_a_gone_run(tmp_path):
    from pipelines.runs import backbone_chain

    a, b = tmp_path / "t" / "a", tmp_path / "t" / "b"
    for run, source in ((a, b), (b, a)):
        run.mkdir(parents=True)
        (run / "metrics.json").write_text(json.dumps({"backbone": {"from_run": str(source)}}))
    assert backbone_chain(a) == [b, a]
    (a / "metrics.json").write_text(json.dumps({"backbone": {"from_run": str(tmp_path / "gone")}}))
    assert backbone_chain(b) == [a, tmp_path / "gone"]


def test_the_report_names_the_source_run_with_rounded_metrics():
    from pipelines.workflow import _context

    class Splits:
        method, counts = "stratified", staticmethod(lambda: {"train": 1})

    origin = {"run_dir": "runs/image-classification/r1", "task": "image-classification", "data": "builtin:digits",
              "metrics": {"accuracy": 0.98765432, "roc_auc": None}}
    config = type("Config", (), {"data": "x", "backbone": "basic_cnn", "backbone_options": {}})()
    task = type("Task", (), {"name": "medical-segmentation"})()
    (line,) = [text for name, text in _context(task, config, "d", Splits, origin) if name == "Backbone from"]
    assert line == ("runs/image-classification/r1 (task image-classification, data builtin:digits, "
                    "test accuracy 0.9877, roc_auc None)")


def test_a_2d_run_starts_its_3d_twin_and_the_lineage_says_inflated(digits_run):
    """--backbone-from a 2D run with --backbone basic_cnn3d: the source's options are adopted,
    its kernels inflated, and the lineage records it."""
    from pipelines import transfer
    from pipelines.tasks import get_task

    config = get_task("image-classification").Config(backbone="basic_cnn3d", backbone_from=str(digits_run))
    source = transfer.resolve_source(config, "image")
    assert config.backbone == "basic_cnn3d" and config.backbone_options == source.meta["options"]
    backbone, origin = transfer.build_backbone(config, (8, 16, 16, 1), source)
    assert origin["inflated"]["from"] == "basic_cnn" and origin["inflated"]["to"] == "basic_cnn3d"
    assert origin["run_dir"] == str(digits_run)
    kernel = backbone.get_layer("stage1_conv1").get_weights()[0]
    assert kernel.shape[:3] == (3, 3, 3)
    np.testing.assert_allclose(kernel[0], kernel[2])  # the same 2D kernel at every depth
