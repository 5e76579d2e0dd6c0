"""The terminal experience (issue 17): -q/-v on every verb, progress of slow evaluation steps,
Keras' progress bar on a terminal, and no traceback when the reader of a pipe goes away."""

import subprocess
import sys

import pytest

from conftest import run_cli
from pipelines.cli import build_parser

VERBS = ["tasks", "backbones", "train", "evaluate", "predict", "export", "export-backbone", "runs"]


@pytest.mark.parametrize("verb", VERBS)
def test_every_verb_takes_quiet_and_verbose(verb, capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args([verb, "--help"])
    text = capsys.readouterr().out
    assert "-q, --quiet" in text and "-v, --verbose" in text
    lines = text.splitlines()
    for line, following in zip(lines, lines[1:] + [""]):  # every option says what it does
        is_option = line.startswith("  -") and not line.startswith("   ")
        helped = "  " in line.strip() or following.startswith(" " * 8)
        assert not is_option or helped, f"{verb}: option without help: {line.strip()}"


def test_evaluate_reports_its_steps_on_stderr_unless_quiet(digits_run, tmp_path, capsys):
    import shutil

    run_dir = shutil.copytree(digits_run, tmp_path / digits_run.name)  # the shared run stays as it is
    assert run_cli("evaluate", run_dir) == 0
    err = capsys.readouterr().err
    for step in ("predicting the", "the classical baseline", "tables and figures"):
        assert f"  {step}" in err and f"{step}" in err.split(" ...")[-1] + err
    assert " s\n" in err  # each step's seconds
    assert run_cli("evaluate", run_dir, "-q") == 0
    assert capsys.readouterr().err == ""


def test_training_shows_keras_progress_bar_on_a_terminal(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(sys.stdout, "isatty", lambda: True)
    assert run_cli("train", "image-classification", "--epochs", 1, "--output", tmp_path,
                   "--set", "backbone_options.widths=[4,8]", "--set", "train_fraction=0.2") == 0
    assert "\u2501" in capsys.readouterr().out  # the bar's own character


def test_a_closed_pipe_ends_quietly():
    command = f"{sys.executable} -m pipelines.cli tasks | head -c 5"
    done = subprocess.run(["bash", "-o", "pipefail", "-c", command], capture_output=True, text=True,
                          timeout=120)
    assert "Traceback" not in done.stderr and "BrokenPipe" not in done.stderr, done.stderr
