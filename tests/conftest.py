"""Shared fixtures: quiet TensorFlow, tiny image files, and one tiny trained run reused by tests."""

import json
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "datasets"


def shared_dataset(name):
    """Path to ../shared/datasets/NAME, or skip: that folder exists for developers and CI only."""
    path = SHARED / name
    if not path.is_dir():
        pytest.skip(f"../shared/datasets/{name} is absent (it is not part of a user's clone)")
    return path


def write_png(path, array):
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.asarray(array, dtype=np.uint8)).save(path)


@pytest.fixture
def class_folder(tmp_path):
    """Two classes of 12x12 images: bright top half vs bright bottom half (RGB)."""
    rng = np.random.default_rng(0)
    root = tmp_path / "shapes"
    for label, rows in (("top", slice(0, 6)), ("bottom", slice(6, 12))):
        for i in range(12):
            image = rng.integers(0, 60, (12, 12, 3))
            image[rows] += 180
            write_png(root / label / f"{label}_{i}.png", image)
    return root


SERVING_CLIENT = Path(__file__).resolve().parent / "serving_client.py"


def serve_in_fresh_process(saved_model, signature, inputs, work, imports=()):
    """One signature's outputs, called in a new Python process that imports TensorFlow (plus
    ``imports``) and none of this project: what a user's own service would do."""
    import base64
    import json
    import subprocess
    import sys

    work.mkdir(parents=True, exist_ok=True)
    request, out = work / f"{signature}.request.json", work / f"{signature}.outputs.npz"
    request.write_text(json.dumps({"saved_model": str(saved_model), "signature": signature,
                                   "inputs": inputs, "imports": list(imports)}))
    done = subprocess.run([sys.executable, str(SERVING_CLIENT), str(request), str(out)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    with np.load(out) as data:
        outputs = {key: data[key] for key in data.files}
    modules = set(outputs.pop("__modules__").tolist())
    assert not {"pipelines", "tasks"} & modules, "the client imported this project"
    for key in [k for k in outputs if k.endswith(".b64")]:
        outputs[key[:-4]] = [base64.b64decode(v) for v in outputs.pop(key)]
    return outputs


def run_tflite(model_file, signature, **inputs):
    """One signature runner of a .tflite file, on LiteRT (not TensorFlow's deprecated interpreter)."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(model_file))
    runner = interpreter.get_signature_runner(signature)
    return runner(**{k: np.asarray(v) for k, v in inputs.items()})


def run_cli(*argv):
    from pipelines.cli import main

    return main([str(a) for a in argv])


@pytest.fixture(scope="session")
def digits_run(tmp_path_factory):
    """A 2-epoch digits run (tiny basic_cnn) that evaluate/predict/export/runs/transfer tests share."""
    root = tmp_path_factory.mktemp("runs")
    code = run_cli("train", "image-classification", "--epochs", 2, "--output", root, "--quiet",
                   "--set", "backbone_options.widths=[8,16,16]")
    assert code == 0
    (run_dir,) = (root / "image-classification").iterdir()
    return run_dir


def evaluate_document(capsys, run_dir, *argv):
    """``evaluate RUN_DIR ARGV... --json``'s metrics document (the last line on stdout)."""
    capsys.readouterr()
    assert run_cli("evaluate", run_dir, *argv, "--json") == 0
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])
