"""tf.distribute: TF_CONFIG checks, two real workers on 127.0.0.1, mirrored replicas, resume.

Multi-worker runs need collective ops configured before TensorFlow starts, so every distributed
run here is a fresh process (``python -m pipelines.cli``), bounded in time.
"""

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import run_cli, write_png

# Small and deterministic: no batch norm (its statistics are per replica), no augmentation or
# dropout (their random draws differ per worker), so a distributed run can match one process.
EXACT = ["--set", "backbone_options.widths=[8,16,16]", "--set", "backbone_options.batch_norm=false",
         "--set", "augment=false", "--set", "head_dropout=0", "--quiet"]


def _one_error_line(capsys):
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "Traceback" not in err[0], err
    return err[0]


# -- TF_CONFIG and option checks (no TensorFlow op runs before they fail) ----------------------
@pytest.mark.parametrize("value, message", [
    ("{not json", "TF_CONFIG: not valid JSON"),
    ('{"cluster": {"worker": ["127.0.0.1:1"]}}', "needs a 'cluster' and a 'task'"),
    ('{"cluster": {"worker": ["127.0.0.1:1", "127.0.0.1:2"]}, "task": {"type": "worker", "index": 2}}',
     "task index 2 is out of range; cluster 'worker' has 2 address(es)"),
    ('{"cluster": {"worker": ["127.0.0.1:1"]}, "task": {"type": "chief", "index": 0}}',
     "task type 'chief' is not in the cluster"),
    ('{"cluster": {"ps": ["127.0.0.1:1"]}, "task": {"type": "ps", "index": 0}}',
     "cluster job 'ps' is not supported"),
    ('{"cluster": {"worker": ["nohostport"]}, "task": {"type": "worker", "index": 0}}',
     "must be a list of 'host:port' addresses"),
])
def test_a_malformed_tf_config_is_one_line_and_exit_2(monkeypatch, tmp_path, capsys, value, message):
    monkeypatch.setenv("TF_CONFIG", value)
    assert run_cli("train", "image-classification", "--strategy", "multi-worker", "--output", tmp_path) == 2
    assert message in _one_error_line(capsys)
    assert not any(tmp_path.iterdir())


def test_multi_worker_without_tf_config_is_refused_not_run_alone(monkeypatch, tmp_path, capsys):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    assert run_cli("train", "image-classification", "--strategy", "multi-worker", "--output", tmp_path) == 2
    assert "TF_CONFIG is not set" in _one_error_line(capsys)
    assert not any(tmp_path.iterdir())


def test_the_chief_is_the_chief_task_or_worker_0():
    from pipelines.distribute import read_tf_config

    two = '{"cluster": {"worker": ["a:1", "b:2"]%s}, "task": {"type": "%s", "index": %d}}'
    assert read_tf_config(two % ("", "worker", 0)).is_chief
    assert not read_tf_config(two % ("", "worker", 1)).is_chief
    assert not read_tf_config(two % (', "chief": ["c:3"]', "worker", 0)).is_chief
    chief = read_tf_config(two % (', "chief": ["c:3"]', "chief", 0))
    assert chief.is_chief and chief.size == 3


def test_a_run_id_that_exists_or_is_not_a_name_is_refused(digits_run, tmp_path, capsys):
    root = digits_run.parent.parent
    assert run_cli("train", "image-classification", "--output", root, "--run-id", digits_run.name) == 2
    assert "already exists" in _one_error_line(capsys)
    assert run_cli("train", "image-classification", "--output", tmp_path, "--run-id", "../evil") == 2
    assert "plain folder name" in _one_error_line(capsys)
    assert not any(tmp_path.iterdir())
    assert run_cli("train", "image-classification", "--epochs", 1, "--output", tmp_path, "--quiet",
                   "--run-id", "named-run", "--set", "backbone_options.widths=[4,4,4]") == 0
    assert (tmp_path / "image-classification" / "named-run" / "metrics.json").is_file()


# -- real processes ---------------------------------------------------------------------------
def _start_workers(argv, logs, count=2):
    from pipelines.distribute import local_cluster

    processes = []
    for index, tf_config in enumerate(local_cluster(count)):
        env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "TF_CONFIG": tf_config}
        log = open(logs / f"worker{index}.log", "a")
        processes.append(subprocess.Popen([sys.executable, "-m", "pipelines.cli", *map(str, argv)],
                                          env=env, stdout=log, stderr=subprocess.STDOUT))
    return processes


def _wait(processes, logs, timeout=400):
    deadline = time.monotonic() + timeout
    try:
        codes = [p.wait(timeout=max(1.0, deadline - time.monotonic())) for p in processes]
    except subprocess.TimeoutExpired:
        for p in processes:
            p.kill()
        pytest.fail("workers did not finish in time:\n" + _tails(logs))
    assert codes == [0] * len(processes), _tails(logs)


def _tails(logs):
    return "\n".join(f"--- {log.name}\n" + "".join(log.read_text().splitlines(True)[-15:])
                     for log in sorted(logs.glob("*.log")))


def _history(run_dir):
    with (run_dir / "history.csv").open(newline="") as handle:
        return list(csv.DictReader(handle))


def _only_run(root):
    runs = list((root / "image-classification").iterdir())
    assert len(runs) == 1, runs
    return runs[0]


@pytest.fixture(scope="module")
def two_worker_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("multi_worker")
    logs = root / "logs"
    logs.mkdir()
    _wait(_start_workers(["train", "image-classification", "--epochs", 2, "--strategy", "multi-worker",
                          "--output", root / "out", *EXACT], logs), logs)
    return _only_run(root / "out"), logs


@pytest.mark.slow
def test_two_workers_train_one_run_that_only_the_chief_writes(two_worker_run, tmp_path, capsys):
    run_dir, logs = two_worker_run
    for name in ("config.json", "model.keras", "backbone.weights.h5", "history.csv", "metrics.json",
                 "report.html", "splits.json"):
        assert (run_dir / name).is_file(), name
    distribution = json.loads((run_dir / "config.json").read_text())["distribution"]
    assert distribution == {"strategy": "multi-worker", "replicas": 2, "workers": 2,
                            "global_batch_size": 32, "per_replica_batch_size": 16.0,
                            "learning_rate_scaling": "none", "learning_rate_factor": 1.0}
    worker_line = [l for l in (logs / "worker1.log").read_text().splitlines() if "the chief writes it" in l]
    assert len(worker_line) == 1 and run_dir.name in worker_line[0]
    backups = Path(worker_line[0].split("backups in ")[1].split(",")[0])
    assert not backups.exists()  # the worker deleted its temporary folder
    assert json.loads((run_dir / "status.json").read_text())["state"] == "finished"
    assert run_cli("evaluate", run_dir, "--json") == 0
    assert json.loads(capsys.readouterr().out)["n_samples"] == 360
    write_png(tmp_path / "digit.png", np.eye(8) * 255)
    assert run_cli("predict", run_dir, tmp_path / "digit.png", "--json") == 0


@pytest.mark.slow
def test_two_workers_match_one_process_with_the_same_global_batch(two_worker_run, tmp_path):
    run_dir, _ = two_worker_run
    assert run_cli("train", "image-classification", "--epochs", 2, "--strategy", "default",
                   "--output", tmp_path, *EXACT) == 0
    alone = _only_run(tmp_path)
    # Each step's gradient is the mean over the same global batch of 32 either way; only the
    # order of floating-point sums differs (seen: 1e-5 in the loss).
    for together, single in zip(_history(run_dir), _history(alone), strict=True):
        for key in ("loss", "val_loss"):
            assert float(together[key]) == pytest.approx(float(single[key]), abs=1e-3), key


@pytest.mark.slow
def test_mirrored_over_two_logical_cpus(tmp_path):
    script = ("import sys, tensorflow as tf\n"
              "cpu = tf.config.list_physical_devices('CPU')[0]\n"
              "tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)\n"
              "from pipelines.cli import main\n"
              "sys.exit(main(sys.argv[1:]))\n")
    argv = ["train", "image-classification", "--epochs", "2", "--output", str(tmp_path / "mirrored"), *EXACT]
    done = subprocess.run([sys.executable, "-c", script, *argv, "--strategy", "mirrored"],
                          capture_output=True, text=True, timeout=300,
                          env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert done.returncode == 0, done.stderr[-3000:]
    run_dir = _only_run(tmp_path / "mirrored")
    distribution = json.loads((run_dir / "config.json").read_text())["distribution"]
    assert distribution["strategy"] == "mirrored" and distribution["replicas"] == 2
    assert run_cli("train", *argv[1:4], "--output", tmp_path / "alone", *EXACT, "--strategy", "default") == 0
    alone = _only_run(tmp_path / "alone")
    # Mirrored replicas start from the same seed but draw their initial weights through another
    # path than one device does, so the two runs agree to a tolerance, not to rounding.
    for together, single in zip(_history(run_dir), _history(alone), strict=True):
        assert float(together["loss"]) == pytest.approx(float(single["loss"]), abs=0.02)


@pytest.mark.slow
def test_a_killed_worker_is_resumed_with_the_cluster_and_the_run_finishes(tmp_path):
    logs = tmp_path / "logs"
    logs.mkdir()
    argv = ["train", "image-classification", "--epochs", 6, "--strategy", "multi-worker",
            "--output", tmp_path / "out", *EXACT, "--set", "backup_interval_s=0"]
    chief, worker = _start_workers(argv, logs)
    deadline = time.monotonic() + 300
    backup = None
    while time.monotonic() < deadline and chief.poll() is None:
        found = list((tmp_path / "out").glob("image-classification/*/backup/train/training_metadata.json"))
        if found and json.loads(found[0].read_text() or "{}").get("epoch", 0) >= 2:
            backup = found[0]
            break
        time.sleep(0.2)
    assert backup is not None, "no backup after two epochs:\n" + _tails(logs)
    worker.send_signal(signal.SIGKILL)
    worker.wait(timeout=30)
    try:  # the chief cannot go on without its peer. It notices by missed heartbeats, half a
        chief.wait(timeout=3)  # minute later; a scheduler restarting the job stops it sooner
    except subprocess.TimeoutExpired:
        chief.kill()
        chief.wait(timeout=30)
    run_dir = _only_run(tmp_path / "out")
    assert not (run_dir / "metrics.json").exists()
    _wait(_start_workers(["train", "--resume", run_dir], logs), logs)
    assert (run_dir / "metrics.json").is_file()
    assert [int(row["epoch"]) for row in _history(run_dir)] == list(range(6))
    resumed = (logs / "worker0.log").read_text()
    assert resumed.count("run directory:") <= 1  # the resumed chief did not start a new run
