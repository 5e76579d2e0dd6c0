"""Runs the bad-input catalogue (tests/bad_inputs.py) through the real CLI, and keeps
docs/bad-inputs.md in step with it."""

import pytest

from bad_inputs import CASES, DOC, render
from conftest import run_cli


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_a_bad_input_exits_2_with_one_line_and_leaves_nothing(case, tmp_path, capsys):
    out = tmp_path / "runs"
    argv = [str(out) if arg == "OUT" else arg for arg in case.make(tmp_path / "input")]
    capsys.readouterr()
    try:
        code = run_cli(*argv)
    except SystemExit as stop:  # argparse refuses a flag's value itself
        code = stop.code
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "Traceback" not in err[0], err
    assert case.expect in err[0], err[0]
    assert not out.exists()


def test_the_doc_is_the_catalogue():
    assert DOC.read_text(encoding="utf-8") == render(), "regenerate it: python tests/bad_inputs.py"
