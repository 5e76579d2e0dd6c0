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


def test_a_long_step_tells_the_share_done_at_most_every_few_seconds():
    from pipelines.evaluation import Steps, counted

    lines = []
    steps = Steps(lines.append, every_s=0)
    steps("scoring the 3 test cases")
    assert list(counted(["a", "b", "c"], steps.share, "cases scored")) == ["a", "b", "c"]
    steps.done()
    assert lines[1:3] == ["  scoring the 3 test cases: 1/3 cases scored (33%, 0 s)",
                          "  scoring the 3 test cases: 2/3 cases scored (67%, 0 s)"]
    assert len(lines) == 4 and lines[3].startswith("  scoring the 3 test cases: ") and lines[3].endswith(" s")

    quiet_lines = []
    throttled = Steps(quiet_lines.append, every_s=3600)
    throttled("predicting")
    list(counted(range(100), throttled.share))
    assert quiet_lines == ["  predicting ..."]  # nothing between the start and the end within the hour
    list(counted(range(3), Steps(None, every_s=0).share))  # silent without an echo, no error


def test_segmentation_scoring_and_caption_writing_report_per_item_progress():
    from types import SimpleNamespace

    import numpy as np

    from tasks.captioning.decoding import CaptionWriter
    from tasks.medical_segmentation.task import MedicalSegmentation

    calls = []
    mask = np.zeros((8, 8), np.int16)
    mask[2:5, 2:5] = 1
    cases = [SimpleNamespace(mask=mask, spacing=None) for _ in range(3)]
    scored = MedicalSegmentation().score(SimpleNamespace(x=cases), [mask] * 3, SimpleNamespace(n_classes=2),
                                         lambda *a: calls.append(a))
    assert [c[:2] for c in calls] == [(1, 3), (2, 3), (3, 3)] and "HD95" in calls[0][2]
    assert [m[1]["dice"] for m in scored.per_case] == [1.0, 1.0, 1.0]

    calls.clear()
    writer = CaptionWriter.__new__(CaptionWriter)  # only write()'s batching is under test here
    writer.batch_size = 8
    writer.annotations = lambda images: images
    writer._search = lambda features, width, alpha: [None] * len(features)
    captions = writer.write(np.zeros((20, 1)), {"greedy": (1, 1.0), "beam 3": (3, 1.0)}, lambda *a: calls.append(a))
    assert [c[:2] for c in calls] == [(8, 20), (16, 20), (20, 20)]
    assert calls[0][2] == "images captioned (greedy, beam 3)" and len(captions["beam 3"]) == 20
