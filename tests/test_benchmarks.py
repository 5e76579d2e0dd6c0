"""The plain-Keras twin in benchmarks/ must time the same model as the task defaults."""

import dataclasses
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


def test_the_plain_text_script_restates_the_task_defaults(monkeypatch):
    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[1] / "benchmarks"))
    import pipeline_vs_plain
    import plain_keras_text

    config = workflow.get_task("text-classification").Config()
    pipeline_vs_plain.check_same_text_defaults(config)  # exits if a copy drifted
    monkeypatch.setattr(plain_keras_text, "WINDOWS", (2, 3, 4))
    with pytest.raises(SystemExit, match="windows: plain"):
        pipeline_vs_plain.check_same_text_defaults(config)
    monkeypatch.undo()
    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[1] / "benchmarks"))
    with pytest.raises(SystemExit, match="epochs: plain 10, task 3"):
        pipeline_vs_plain.check_same_text_defaults(dataclasses.replace(config, epochs=3))


def test_the_plain_text_model_has_the_pipelines_parameter_count(monkeypatch):
    """Same vocabulary and length -> the same number of weights as the task's text_cnn model."""
    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[1] / "benchmarks"))
    import plain_keras_text

    from pipelines.backbones import create_backbone
    from pipelines.heads import classifier_head

    backbone = create_backbone("text_cnn", (40,), vocab_size=500)
    head = classifier_head(backbone.output["sentence"].shape[1:], 2)
    twin = plain_keras_text.model(500, 40, 2)
    assert twin.count_params() == backbone.count_params() + head.count_params()


def test_the_benchmark_command_writes_results_json_and_its_markdown_section(tmp_path):
    """`python -m benchmarks run` (issue 18): the smallest case, for the files' shape, not the speed."""
    import json
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[1]
    results, page = tmp_path / "results.json", tmp_path / "RESULTS.md"
    page.write_text("# Benchmark results\n\nProse of earlier sessions stays.\n")
    command = [sys.executable, "-m", "benchmarks", "run", "--quick", "--only", "matmul_peak", "digits_input_pipeline",
               "--repeats", "2", "--json", str(results), "--markdown", str(page)]
    for _ in range(2):  # the second run replaces the section instead of adding one
        done = subprocess.run(command, cwd=root, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr[-2000:]
    document = json.loads(results.read_text())
    assert document["schema"] == 1 and document["quick"] is True and document["repeats"] == 2
    assert {"cpu", "cores", "python", "tensorflow", "keras"} <= set(document["machine"])
    figure = document["benchmarks"]["matmul_peak"]["figures"]["matmul_flops_per_s"]
    assert figure["unit"] == "FLOP/s" and len(figure["values"]) == 2 and all(v > 0 for v in figure["values"])
    assert min(figure["values"]) <= figure["median"] <= max(figure["values"])
    pipeline = document["benchmarks"]["digits_input_pipeline"]["figures"]  # it reads the pipeline's own data path
    assert pipeline["headroom"]["unit"] == "ratio" and pipeline["headroom"]["median"] > 0
    assert len(pipeline["pipeline_samples_per_s"]["values"]) == 2
    text = page.read_text()
    assert text.startswith("# Benchmark results\n\nProse of earlier sessions stays.")
    assert text.count("<!-- benchmarks run: begin -->") == 1 and text.count("| matmul_flops_per_s |") == 1
    assert document["machine"]["tensorflow"] in text and document["date"] in text


def test_a_partial_run_keeps_the_other_benchmarks_with_their_dates(tmp_path):
    """`--only NAME` replaces NAME's figures and keeps the rest (their own date shown); figures
    from another CPU are dropped."""
    import json

    from benchmarks import suite

    def document(date, names, cpu="cpu A"):
        figure = {"unit": "s", "values": [1.0], "median": 1.0, "note": ""}
        return {"schema": suite.SCHEMA_VERSION, "date": date, "quick": False, "repeats": 3,
                "machine": {"cpu": cpu, "cores": 2, "python": "3", "tensorflow": "2", "keras": "3"},
                "benchmarks": {n: {"summary": n, "seconds": 1.0, "figures": {f"{n}_figure": figure}} for n in names}}

    results, page = tmp_path / "results.json", tmp_path / "RESULTS.md"
    suite.write(document("2026-01-01", ["matmul_peak", "digits_overhead"]), results, page)
    suite.write(document("2026-02-02", ["matmul_peak"]), results, page)
    kept = json.loads(results.read_text())
    assert list(kept["benchmarks"]) == ["matmul_peak", "digits_overhead"]  # the registry's order
    assert kept["date"] == "2026-02-02" and kept["benchmarks"]["digits_overhead"]["date"] == "2026-01-01"
    text = page.read_text()
    assert "**digits_overhead**: digits_overhead (1.0 s; measured 2026-01-01, 3 repetitions)" in text
    assert "**matmul_peak**: matmul_peak (1.0 s)." in text
    suite.write(document("2026-03-03", ["matmul_peak"], cpu="cpu B"), results, page)
    assert list(json.loads(results.read_text())["benchmarks"]) == ["matmul_peak"]


def test_flops_are_counted_from_the_model():
    """The profiler's count for a known layer: a 3x3 convolution, 1 -> 4 channels, 'same' on 8x8
    is 2 * 9 * 1 * 4 * 64 multiply-adds' FLOPs (plus the bias adds)."""
    import keras

    from benchmarks.suite import forward_flops

    model = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Conv2D(4, 3, padding="same", use_bias=False)])
    assert forward_flops(model, (8, 8, 1)) == 2 * 9 * 1 * 4 * 64
