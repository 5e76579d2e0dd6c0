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
