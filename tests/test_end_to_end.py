"""Train -> evaluate -> predict -> export -> runs through the real CLI on small data."""

import json

import keras
import numpy as np
import pytest

from conftest import evaluate_document, run_cli, write_png
from pipelines import training, workflow

CONTRACT_FILES = ["config.json", "model.keras", "backbone.weights.h5", "backbone.json", "assets",
                  "history.csv", "metrics.json", "report.html", "report.md", "figures"]

pytestmark = pytest.mark.slow


def test_run_directory_holds_the_contract(digits_run):
    for name in CONTRACT_FILES:
        assert (digits_run / name).exists(), name
    metrics = json.loads((digits_run / "metrics.json").read_text())
    assert metrics["task"] == "image-classification" and metrics["split"] == "test"
    assert metrics["n_samples"] == 360 and metrics["data"] == "builtin:digits"
    assert set(metrics["metrics"]) == {"accuracy", "macro_f1", "top5_accuracy"}
    assert metrics["baseline"]["name"] == "logistic_regression_pixels"
    assert set(metrics["baseline"]["metrics"]) == set(metrics["metrics"])
    assert metrics["backbone"]["name"] == "basic_cnn" and metrics["backbone"]["params"] > 0
    assert metrics["train"]["epochs"] == 2 and metrics["train"]["seconds"] > 0
    config = json.loads((digits_run / "config.json").read_text())
    assert config["config"]["backbone_options"] == {"batch_norm": True, "widths": [8, 16, 16]}
    assert config["split"]["counts"]["test"] == 360
    history = (digits_run / "history.csv").read_text().strip().splitlines()
    assert len(history) == 3 and history[0].startswith("epoch")
    for figure in ("confusion_matrix", "gradcam", "learning_curves"):
        assert (digits_run / "figures" / f"{figure}.png").stat().st_size > 1000


def test_report_html_is_self_contained(digits_run):
    html = (digits_run / "report.html").read_text()
    assert html.count("data:image/png;base64,") >= 3
    assert "<script" not in html and "http://" not in html and "https://" not in html
    assert "Grad-cam" in html or "Gradcam" in html
    assert "Confusion matrix" in html and "logistic_regression_pixels" in html


def test_evaluate_writes_a_new_evaluation_and_leaves_the_run_alone(digits_run, capsys):
    before = (digits_run / "metrics.json").read_text()
    assert run_cli("evaluate", digits_run, "--json") == 0
    document = json.loads(capsys.readouterr().out)
    assert document["n_samples"] == 360
    saved = json.loads(before)
    assert document["metrics"]["accuracy"] == pytest.approx(saved["metrics"]["accuracy"], abs=1e-6)
    assert (digits_run / "metrics.json").read_text() == before
    (evaluation,) = (digits_run / "evaluations").iterdir()
    assert (evaluation / "report.html").is_file() and (evaluation / "metrics.json").is_file()


def test_evaluate_on_other_data(digits_run, tmp_path, capsys):
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (12, 8, 8), dtype=np.uint8)
    np.savez(tmp_path / "other.npz", x=x, y=np.arange(12) % 10)
    assert run_cli("evaluate", digits_run, "--data", tmp_path / "other.npz", "--json") == 0
    document = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert document["n_samples"] == 12 and document["split"] == "all"


def test_evaluate_on_data_that_declares_a_split_scores_its_test_part(digits_run, tmp_path, capsys):
    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, (20, 8, 8), dtype=np.uint8)
    labels = (np.arange(20) % 10)[:, None]  # MedMNIST's (N, 1) labels
    np.savez(tmp_path / "medmnist.npz", train_images=images[:14], train_labels=labels[:14],
             test_images=images[14:], test_labels=labels[14:])
    document = evaluate_document(capsys, digits_run, "--data", tmp_path / "medmnist.npz")
    assert document["split"] == "test" and document["n_samples"] == 6
    document = evaluate_document(capsys, digits_run, "--data", tmp_path / "medmnist.npz", "--split", "all")
    assert document["split"] == "all" and document["n_samples"] == 20
    assert run_cli("evaluate", digits_run, "--split", "all") == 2  # --split goes with --data
    assert "--split goes with --data" in capsys.readouterr().err


def test_predict_prints_top_classes(digits_run, tmp_path, capsys):
    from sklearn.datasets import load_digits

    digits = load_digits()
    for i in range(2):
        write_png(tmp_path / f"d{i}.png", digits.images[i] * 255 / 16)
    assert run_cli("predict", digits_run, tmp_path / "d0.png", tmp_path / "d1.png", "--json") == 0
    lines = capsys.readouterr().out.strip().splitlines()
    records = [json.loads(line) for line in lines]
    assert len(records) == 2
    assert records[0]["class"] in [str(i) for i in range(10)]
    assert abs(sum(t["probability"] for t in records[0]["top"]) - 1) < 0.5
    assert records[0]["top"][0]["probability"] >= records[0]["top"][1]["probability"]


def test_export_saved_model_and_refuse_overwrite(digits_run, tmp_path, capsys):
    target = tmp_path / "exported"
    assert run_cli("export", digits_run, "--format", "saved_model", "--out", target) == 0
    assert (target / "1" / "saved_model.pb").is_file() and (target / "metadata.json").is_file()
    assert run_cli("export", digits_run, "--format", "saved_model", "--out", target) == 2
    assert "already exists" in capsys.readouterr().err


def test_runs_lists_the_run(digits_run, capsys):
    assert run_cli("runs", "--root", digits_run.parent.parent) == 0
    out = capsys.readouterr().out
    assert digits_run.name in out and "accuracy" in out


def test_rerun_never_overwrites(digits_run, tmp_path):
    root = tmp_path / "r"
    for _ in range(2):
        assert run_cli("train", "image-classification", "--epochs", 1, "--output", root, "--quiet",
                       "--set", "backbone_options.widths=[4,4,4]") == 0
    assert len(list((root / "image-classification").iterdir())) == 2


def test_backbone_from_run_loads_identical_weights(digits_run, tmp_path):
    root = tmp_path / "t"
    assert run_cli("train", "image-classification", "--epochs", 1, "--output", root, "--quiet",
                   "--backbone-from", digits_run, "--freeze-backbone") == 0
    (child,) = (root / "image-classification").iterdir()
    source = keras.models.load_model(digits_run / "model.keras").get_layer("backbone")
    reused = keras.models.load_model(child / "model.keras").get_layer("backbone")
    for a, b in zip(source.get_weights(), reused.get_weights()):
        np.testing.assert_array_equal(a, b)  # frozen: unchanged by training
    metrics = json.loads((child / "metrics.json").read_text())
    assert metrics["backbone"]["from_run"] == str(digits_run)
    assert json.loads((child / "config.json").read_text())["lineage"]["task"] == "image-classification"


def test_backbone_weights_file_shape_mismatch_names_the_layer(digits_run, tmp_path, capsys):
    """A bare weights file (no .json beside it) goes into the backbone named on the command line."""
    bare = tmp_path / "bare.weights.h5"
    bare.write_bytes((digits_run / "backbone.weights.h5").read_bytes())
    code = run_cli("train", "image-classification", "--epochs", 1, "--output", tmp_path, "--quiet",
                   "--backbone-weights", bare)  # the default widths differ from the file's
    assert code == 2
    err = capsys.readouterr().err
    assert "bare.weights.h5: does not fit backbone" in err and "stage1_conv1" in err


def _interrupt_after_epoch(monkeypatch, last):
    """Training raises KeyboardInterrupt (Ctrl-C) at the end of epoch ``last`` (0-based); returns
    the original callbacks maker, to put back before resuming."""
    class Interrupt(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if epoch == last:
                raise KeyboardInterrupt

    original = training._callbacks
    monkeypatch.setattr(training, "_callbacks", lambda *a, **k: original(*a, **k) + [Interrupt()])
    return original


def test_interrupted_training_resumes(tmp_path, monkeypatch):
    original = _interrupt_after_epoch(monkeypatch, 1)
    args = ["train", "image-classification", "--epochs", 4, "--output", tmp_path, "--quiet",
            "--set", "backbone_options.widths=[4,8,8]", "--set", "backup_interval_s=0"]
    assert run_cli(*args) == 130
    (run_dir,) = (tmp_path / "image-classification").iterdir()
    assert not (run_dir / "metrics.json").exists()
    monkeypatch.setattr(training, "_callbacks", original)
    assert run_cli("train", "--resume", run_dir, "--quiet") == 0
    epochs = [line.split(",")[0] for line in (run_dir / "history.csv").read_text().splitlines()[1:]]
    assert epochs == ["0", "1", "2", "3"]
    seconds = [float(row["seconds"]) for row in _rows(run_dir)]  # the clock counts on after resuming
    assert all(0 < a < b for a, b in zip(seconds, seconds[1:])), seconds
    assert json.loads((run_dir / "metrics.json").read_text())["train"]["epochs"] == 2
    assert not (run_dir / "backup").exists()
    assert run_cli("train", "--resume", run_dir) == 2  # a finished run is not resumed


def test_a_resumed_run_rebuilds_the_backbone_it_recorded(tmp_path, monkeypatch):
    """Checkpoints fit the backbone config.json says was built (``backbone.options``), even when
    the options in its configuration would now build another one (a default changed since)."""
    original = _interrupt_after_epoch(monkeypatch, 0)
    assert run_cli("train", "image-classification", "--epochs", 2, "--output", tmp_path, "--quiet",
                   "--set", "backbone_options.widths=[4,8,8]", "--set", "backup_interval_s=0") == 130
    (run_dir,) = (tmp_path / "image-classification").iterdir()
    saved = json.loads((run_dir / "config.json").read_text())
    assert saved["backbone"]["options"]["widths"] == [4, 8, 8]
    saved["config"]["backbone_options"]["widths"] = [8, 8, 8]  # what a newer default would build
    (run_dir / "config.json").write_text(json.dumps(saved))
    monkeypatch.setattr(training, "_callbacks", original)
    assert run_cli("train", "--resume", run_dir, "--quiet") == 0
    finished = json.loads((run_dir / "config.json").read_text())
    assert finished["config"]["backbone_options"]["widths"] == finished["backbone"]["options"]["widths"] == [4, 8, 8]
    assert json.loads((run_dir / "metrics.json").read_text())["train"]["epochs"] == 1


def test_pixel_baseline_and_network_on_two_class_folder(class_folder, tmp_path):
    config = workflow.resolve_config(workflow.get_task("image-classification"), sets={
        "data": str(class_folder), "epochs": 3, "output": str(tmp_path),
        "backbone_options": {"widths": [4, 8]},
        "test_fraction": 0.25})
    run_dir = workflow.train("image-classification", config=config, quiet=True, echo=lambda *_: None)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert set(metrics["metrics"]) == {"accuracy", "macro_f1", "positive_f1", "roc_auc"}
    assert (run_dir / "figures" / "roc_curve.png").is_file()


def test_defaults_reach_acceptance_accuracy_on_digits(tmp_path):
    """Issue 2 acceptance: defaults on builtin:digits reach test accuracy >= 0.985 (seed 0)."""
    assert run_cli("train", "image-classification", "--output", tmp_path, "--quiet") == 0
    (run_dir,) = (tmp_path / "image-classification").iterdir()
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["metrics"]["accuracy"] >= 0.985
    assert metrics["metrics"]["accuracy"] > metrics["baseline"]["metrics"]["accuracy"]


def test_the_same_seed_gives_the_same_run(tmp_path):
    """Augmentation runs in parallel on stateless per-example seeds, so two runs with one --seed
    agree exactly."""
    for _ in range(2):
        assert run_cli("train", "image-classification", "--epochs", 2, "--output", tmp_path, "--quiet",
                       "--seed", 3, "--set", "backbone_options.widths=[4,8,8]") == 0
    first, second = sorted((tmp_path / "image-classification").iterdir())
    assert _history_without_clock(first) == _history_without_clock(second)
    metrics = [json.loads((run / "metrics.json").read_text())["metrics"] for run in (first, second)]
    assert metrics[0] == metrics[1]


def _train_process(tmp_path, *extra):
    import subprocess
    import sys

    argv = [sys.executable, "-m", "pipelines.cli", "train", "image-classification", "--epochs", 30,
            "--output", tmp_path, "--set", "backbone_options.widths=[4,8,8]",
            "--set", "backup_interval_s=0", *extra]
    def default_sigint():  # a shell's background job inherits SIGINT ignored; a user's terminal does not
        import signal

        signal.signal(signal.SIGINT, signal.SIG_DFL)

    return subprocess.Popen([str(a) for a in argv], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, preexec_fn=default_sigint)


def _after_epochs(tmp_path, process, epochs, timeout=180):
    """The run directory once its backup says ``epochs`` epochs are done."""
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and process.poll() is None:
        found = list(tmp_path.glob("image-classification/*/backup/train/training_metadata.json"))
        if found and json.loads(found[0].read_text() or "{}").get("epoch", -1) >= epochs - 1:
            return found[0].parents[2]
        time.sleep(0.1)
    process.kill()
    raise AssertionError(f"no backup after {epochs} epochs: {process.communicate()[1][-2000:]}")


@pytest.mark.slow
def test_sigkill_mid_training_then_resume_finishes_like_an_uninterrupted_run(tmp_path, capsys):
    import signal

    process = _train_process(tmp_path / "killed", "--epochs", 5)
    run_dir = _after_epochs(tmp_path / "killed", process, 2)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)
    assert run_cli("runs", "--output", tmp_path / "killed", "--json") == 0
    (row,) = json.loads(capsys.readouterr().out)
    assert row["state"] == "interrupted" and "is gone" in row["reason"]
    assert row["resume"] == f"cnn-tasks train --resume {run_dir}"
    assert run_cli("train", "--resume", run_dir, "--quiet") == 0
    epochs = [int(line.split(",")[0]) for line in (run_dir / "history.csv").read_text().splitlines()[1:]]
    assert epochs == [0, 1, 2, 3, 4]
    resumed = json.loads((run_dir / "metrics.json").read_text())["metrics"]["accuracy"]
    assert run_cli("train", "image-classification", "--epochs", 5, "--output", tmp_path / "whole",
                   "--quiet", "--set", "backbone_options.widths=[4,8,8]") == 0
    (whole,) = (tmp_path / "whole" / "image-classification").iterdir()
    uninterrupted = json.loads((whole / "metrics.json").read_text())["metrics"]["accuracy"]
    assert abs(resumed - uninterrupted) <= 0.03, (resumed, uninterrupted)


@pytest.mark.slow
def test_sigint_stops_cleanly_keeps_the_best_checkpoint_and_says_how_to_resume(tmp_path):
    import signal

    process = _train_process(tmp_path)
    run_dir = _after_epochs(tmp_path, process, 2)
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 130, err[-2000:]
    assert f"cnn-tasks train --resume {run_dir}" in err and "Traceback" not in err
    status = json.loads((run_dir / "status.json").read_text())
    assert status["state"] == "interrupted"
    assert list((run_dir / "checkpoints").glob("*.weights.h5"))
    assert not (run_dir / "metrics.json").exists()


def _rows(run_dir):
    import csv

    with (run_dir / "history.csv").open(newline="") as handle:
        return list(csv.DictReader(handle))


def _history_without_clock(run_dir):
    """history.csv's rows without ``seconds`` (wall time, which no two runs share)."""
    return [{k: v for k, v in row.items() if k != "seconds"} for row in _rows(run_dir)]


def test_the_epoch_clock_leaves_a_history_without_its_column_alone(tmp_path):
    """A run resumed from a history written before the ``seconds`` column existed keeps its rows
    aligned with the header: no column is added."""
    from pipelines.training import EpochClock

    old = tmp_path / "old.csv"
    old.write_text("epoch,loss,val_loss\n0,1.0,1.1\n")
    clock, logs = EpochClock(old), {"loss": 0.5}
    clock.on_train_begin()
    clock.on_epoch_end(1, logs)
    assert logs == {"loss": 0.5}
    new = tmp_path / "new.csv"
    new.write_text("epoch,loss,seconds,val_loss\n0,1.0,12.5,1.1\n")
    clock = EpochClock(new)
    clock.on_train_begin()
    clock.on_epoch_end(1, logs)
    assert 12.5 <= logs["seconds"] < 60
    clock = EpochClock(tmp_path / "none.csv")
    clock.on_train_begin()
    clock.on_epoch_end(0, logs)
    assert 0 <= logs["seconds"] < 12.5
