"""The plain-Keras twin in benchmarks/ must time the same model as the task defaults."""

from pathlib import Path

import pytest

from pipelines import workflow


def test_the_plain_script_restates_the_task_defaults(monkeypatch):
    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[1] / "benchmarks"))
    import pipeline_vs_plain
    import plain_keras_digits

    config = workflow.get_task("image-classification").Config()
    pipeline_vs_plain.check_same_defaults(config)  # exits if a copy drifted
    monkeypatch.setattr(plain_keras_digits, "SHIFT", config.augment_shift + 0.025)
    with pytest.raises(SystemExit, match="augment_shift: plain"):
        pipeline_vs_plain.check_same_defaults(config)
