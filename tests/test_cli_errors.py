"""Bad input: exit code 2, one line on stderr naming the problem, no traceback, nothing written."""

import subprocess
import sys

import numpy as np
import pytest

from conftest import run_cli


def _one_error_line(capsys):
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert "Traceback" not in err[0]
    return err[0]


@pytest.fixture
def out(tmp_path):
    return tmp_path / "runs"


def test_missing_path(capsys, out, tmp_path):
    assert run_cli("train", "image-classification", "--data", tmp_path / "nope", "--output", out) == 2
    assert "nope: no such file or folder" in _one_error_line(capsys)
    assert not out.exists()


def test_empty_folder(capsys, out, tmp_path):
    (tmp_path / "empty").mkdir()
    assert run_cli("train", "image-classification", "--data", tmp_path / "empty", "--output", out) == 2
    assert "empty folder" in _one_error_line(capsys)


def test_csv_without_columns(capsys, out, tmp_path):
    (tmp_path / "m.csv").write_text("file,class\na.png,x\n")
    assert run_cli("train", "image-classification", "--data", tmp_path / "m.csv", "--output", out) == 2
    line = _one_error_line(capsys)
    assert "m.csv: missing column(s) path, label" in line


def test_unreadable_image_is_named(capsys, out, class_folder):
    (class_folder / "top" / "broken.png").write_bytes(b"not a png at all")
    assert run_cli("train", "image-classification", "--data", class_folder, "--output", out) == 2
    assert "broken.png: cannot decode image" in _one_error_line(capsys)


def test_npz_without_x(capsys, out, tmp_path):
    np.savez(tmp_path / "d.npz", images=np.zeros((4, 8, 8)), y=np.arange(4))
    assert run_cli("train", "image-classification", "--data", tmp_path / "d.npz", "--output", out) == 2
    assert "d.npz: missing array(s) x" in _one_error_line(capsys)


def test_unknown_backbone(capsys, out):
    assert run_cli("train", "image-classification", "--backbone", "resnet81", "--output", out) == 2
    line = _one_error_line(capsys)
    assert "unknown backbone 'resnet81'" in line and "resnet18" in line


def test_unknown_set_key(capsys, out):
    assert run_cli("train", "image-classification", "--set", "epohcs=3", "--output", out) == 2
    assert "unknown key 'epohcs'" in _one_error_line(capsys)


def test_negative_epochs(capsys, out):
    with pytest.raises(SystemExit) as stop:
        run_cli("train", "image-classification", "--epochs", "-3", "--output", out)
    assert stop.value.code == 2
    assert "argument --epochs: must be >= 1, got -3" in _one_error_line(capsys)


def test_unknown_task(capsys):
    assert run_cli("train", "image-clasification") == 2
    assert "Did you mean 'image-classification'" in _one_error_line(capsys)


def test_not_a_run_dir(capsys, tmp_path):
    assert run_cli("evaluate", tmp_path) == 2
    assert "not a cnn-tasks run directory" in _one_error_line(capsys)


def test_real_process_exit_code_and_no_traceback(tmp_path):
    result = subprocess.run([sys.executable, "-m", "pipelines.cli", "train", "image-classification",
                             "--data", str(tmp_path / "missing"), "--output", str(tmp_path)],
                            capture_output=True, text=True)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    # one line: TensorFlow's own start-up lines (CUDA probe, absl) are held back
    (line,) = result.stderr.splitlines()
    assert line.startswith("cnn-tasks: error: ") and "missing: no such file or folder" in line


def test_a_volume_backbone_for_images_is_refused_before_a_run_exists(capsys, out):
    assert run_cli("train", "image-classification", "--backbone", "basic_cnn3d", "--output", out,
                   "--epochs", 1) == 2
    assert "takes volumes" in _one_error_line(capsys)
    assert not out.exists()


def test_npz_with_nan_images_is_refused_before_any_run(capsys, out, tmp_path):
    x = np.random.default_rng(0).random((12, 8, 8)).astype(np.float32)
    x[3, 2, 2] = np.nan
    np.savez(tmp_path / "d.npz", x=x, y=np.arange(12) % 2)
    assert run_cli("train", "image-classification", "--data", tmp_path / "d.npz", "--output", out) == 2
    assert "d.npz: the images hold 1 NaN or infinite value(s)" in _one_error_line(capsys)
    assert not out.exists()


def test_bad_input_found_after_the_run_folder_exists_leaves_no_folder(capsys, out):
    """A bad backbone option is only found when the backbone is built, after the run directory
    was made: nothing trained, so nothing is kept."""
    assert run_cli("train", "image-classification", "--output", out, "--epochs", 1,
                   "--set", "backbone_options.depth=3") == 2
    assert "bad backbone_options" in _one_error_line(capsys)
    task_folder = out / "image-classification"
    assert not task_folder.exists() or not any(task_folder.iterdir())


def test_a_crash_marks_the_run_failed_with_its_reason(out, monkeypatch):
    from pipelines import runs, training

    def crash(*args, **kwargs):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(training, "fit", crash)
    with pytest.raises(RuntimeError):
        run_cli("train", "image-classification", "--output", out, "--epochs", 1, "--quiet")
    (run_dir,) = (out / "image-classification").iterdir()
    status = runs.read_json(run_dir / runs.STATUS_FILE)
    assert status["state"] == "failed" and status["reason"] == "RuntimeError: disk on fire"


def test_ctrl_c_marks_the_run_interrupted_and_names_the_resume_command(out, monkeypatch, capsys):
    from pipelines import runs, training

    def interrupt(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(training, "fit", interrupt)
    assert run_cli("train", "image-classification", "--output", out, "--epochs", 1, "--quiet") == 130
    (run_dir,) = (out / "image-classification").iterdir()
    status = runs.read_json(run_dir / runs.STATUS_FILE)
    assert status["state"] == "interrupted" and status["resume"].endswith(f"--resume {run_dir}")


def test_runs_takes_output_like_train(out, capsys):
    assert run_cli("runs", "--output", out) == 0
    assert f"no runs under {out}" in capsys.readouterr().out


def test_a_diverging_loss_stops_training_and_fails_the_run_with_the_reason(out, monkeypatch, capsys):
    import keras

    from pipelines import runs
    from pipelines.tasks import get_task

    task = get_task("image-classification")
    monkeypatch.setattr(type(task), "loss", lambda self, config, info: (
        lambda y_true, y_pred: keras.ops.mean(keras.ops.log(-y_pred))))  # NaN, with gradients
    assert run_cli("train", "image-classification", "--output", out, "--epochs", 5,
                   "--set", "backbone_options.widths=[4,8,8]") == 2
    line = _one_error_line(capsys)
    assert "training diverged: the loss became NaN or infinite in epoch 1;" in line
    assert "try a lower --learning-rate" in line
    (run_dir,) = (out / "image-classification").iterdir()
    status = runs.read_json(run_dir / runs.STATUS_FILE)
    assert status["state"] == "failed" and "training diverged" in status["reason"]
    assert len(runs.read_optional_json(run_dir / "metrics.json")) == 0  # no metrics for a failed run
