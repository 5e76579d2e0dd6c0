"""Exports a client uses as they are: TF Serving layout, raw-input signatures, parity with Keras.

Image classification is tested here on the shared digits run; the other tasks' parity tests sit
beside their own end-to-end runs (text, captioning, segmentation test files).
"""

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import run_cli, run_tflite, serve_in_fresh_process, write_png


@pytest.fixture(scope="module")
def digits_files(digits_run, tmp_path_factory):
    """Real test-split digits as image files, the way a client has them: gray PNGs at the native
    8x8, plus RGB, larger, JPEG and BMP variants that the graph must fit and resize."""
    from pipelines import workflow

    path, saved, task, config, info, model = workflow.load_run(digits_run)
    dataset, splits = workflow.run_data(path, task, config)
    test = dataset.subset(splits.test)
    folder = tmp_path_factory.mktemp("digit_files")
    files = []
    for i in range(16):
        write_png(folder / f"digit_{i}.png", np.round(test.x[i][..., 0] * 255))
        files.append(folder / f"digit_{i}.png")
    big = Image.fromarray(np.round(test.x[16][..., 0] * 255).astype(np.uint8)).resize((20, 20))
    big.convert("RGB").save(folder / "rgb_20px.png")
    big.convert("RGB").save(folder / "rgb_20px.bmp")
    big.convert("RGBA").save(folder / "rgba_20px.png")
    big.save(folder / "gray_20px.jpg", quality=95)
    files += [folder / n for n in ("rgb_20px.png", "rgb_20px.bmp", "rgba_20px.png", "gray_20px.jpg")]
    return files


@pytest.fixture(scope="module")
def keras_reference(digits_run, digits_files):
    """(probabilities, class names) of the Keras model on the project's own preprocessing."""
    from pipelines import workflow

    path, saved, task, config, info, model = workflow.load_run(digits_run)
    pixels = task.read_inputs(digits_files, info)
    return pixels, model.predict(pixels, verbose=0), info.class_names


@pytest.fixture(scope="module")
def exported(digits_run, tmp_path_factory):
    out = tmp_path_factory.mktemp("exports")
    assert run_cli("export", digits_run, "--format", "saved_model", "--out", out / "sm") == 0
    for quantize in ("none", "float16", "dynamic"):
        assert run_cli("export", digits_run, "--format", "tflite", "--quantize", quantize,
                       "--out", out / f"tflite_{quantize}") == 0
    return out


def test_saved_model_has_the_serving_layout_and_metadata(exported, digits_run):
    assert (exported / "sm" / "1" / "saved_model.pb").is_file()
    metadata = json.loads((exported / "sm" / "metadata.json").read_text())
    assert metadata["task"] == "image-classification" and metadata["version"] == 1
    assert metadata["class_names"] == [str(i) for i in range(10)]
    assert metadata["run_id"] == digits_run.name and metadata["metrics"]["accuracy"] > 0
    signature = metadata["signatures"]["serving_default"]
    assert signature["inputs"] == {"image_bytes": {"dtype": "string", "shape": [None]}}
    assert set(signature["outputs"]) == {"probabilities", "class_ids", "class_names"}
    assert metadata["preprocessing"]["image_size"] == 8
    kept = json.loads((exported / "sm" / "1" / "assets.extra" / "metadata.json").read_text())
    assert kept["signatures"] == metadata["signatures"]  # each version keeps its own copy


def test_exported_files_follow_the_umask(exported):
    for path in (exported / "sm" / "metadata.json", exported / "tflite_none" / "1" / "model.tflite"):
        assert os.stat(path).st_mode & stat.S_IROTH, path
    assert os.stat(exported / "sm" / "1").st_mode & stat.S_IXOTH


def test_saved_model_cli_lists_named_string_signatures(exported):
    cli = Path(sys.executable).parent / "saved_model_cli"
    shown = subprocess.run([str(cli), "show", "--all", "--dir", str(exported / "sm" / "1")],
                           capture_output=True, text=True, timeout=120)
    assert shown.returncode == 0, shown.stderr[-2000:]
    text = shown.stdout
    assert "signature_def['serving_default']" in text and "signature_def['predict_pixels']" in text
    default = text.split("signature_def['serving_default']")[1]
    assert "inputs['image_bytes']" in default and "DT_STRING" in default.split("outputs[")[0]
    assert "outputs['class_names']" in default


def test_a_tensorflow_only_client_sends_file_bytes_and_gets_class_names(exported, digits_files,
                                                                        keras_reference, tmp_path):
    pixels, proba, names = keras_reference
    served = serve_in_fresh_process(exported / "sm" / "1", "serving_default",
                                    {"image_bytes": {"files": [str(f) for f in digits_files]}}, tmp_path)
    np.testing.assert_allclose(served["probabilities"], proba, atol=1e-4)
    assert served["class_ids"].tolist() == proba.argmax(axis=1).tolist()
    assert [n.decode() for n in served["class_names"]] == [names[i] for i in proba.argmax(axis=1)]
    assert len(set(served["class_ids"].tolist())) > 1  # the test images are not all one class


def test_predict_pixels_matches_keras(exported, keras_reference, tmp_path):
    pixels, proba, _ = keras_reference
    np.save(tmp_path / "pixels.npy", pixels)
    served = serve_in_fresh_process(exported / "sm" / "1", "predict_pixels",
                                    {"pixels": {"npy": str(tmp_path / "pixels.npy")}}, tmp_path)
    np.testing.assert_allclose(served["probabilities"], proba, atol=1e-4)


# float32 TFLite must match to 1e-4. Quantised weights move probabilities (measured on the 360
# test digits of a 2-epoch run: float16 at most 1.0e-3, dynamic-range int8 at most 0.013); the
# tolerances below are those with headroom, and a class may flip only where the top two are closer.
TFLITE_TOLERANCE = {"none": 1e-4, "float16": 5e-3, "dynamic": 0.05}


@pytest.mark.parametrize("quantize", list(TFLITE_TOLERANCE))
def test_tflite_on_litert_matches_keras(exported, keras_reference, quantize):
    pixels, proba, _ = keras_reference
    model_file = exported / f"tflite_{quantize}" / "1" / "model.tflite"
    rows = [run_tflite(model_file, "predict_pixels", pixels=pixels[i:i + 1]) for i in range(len(pixels))]
    got = np.concatenate([r["probabilities"] for r in rows])
    tolerance = TFLITE_TOLERANCE[quantize]
    np.testing.assert_allclose(got, proba, atol=tolerance)
    ids = np.concatenate([r["class_ids"] for r in rows])
    top_two = np.sort(proba, axis=1)[:, -2:]
    clear = (top_two[:, 1] - top_two[:, 0]) > 2 * tolerance
    assert (ids[clear] == proba.argmax(axis=1)[clear]).all()
    metadata = json.loads((exported / f"tflite_{quantize}" / "metadata.json").read_text())
    assert metadata["quantize"] == quantize and list(metadata["signatures"]) == ["predict_pixels"]


def test_quantisation_makes_the_file_smaller(exported):
    size = {q: (exported / f"tflite_{q}" / "1" / "model.tflite").stat().st_size for q in TFLITE_TOLERANCE}
    assert size["dynamic"] < size["float16"] < size["none"]


def _one_error_line(capsys):
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "Traceback" not in err[0], err
    return err[0]


def test_a_new_version_lands_beside_the_first_and_an_existing_one_is_refused(digits_run, tmp_path, capsys):
    out = tmp_path / "served"
    assert run_cli("export", digits_run, "--format", "saved_model", "--out", out) == 0
    capsys.readouterr()
    assert run_cli("export", digits_run, "--format", "saved_model", "--out", out) == 2
    assert "version 1 already exists" in _one_error_line(capsys)
    assert run_cli("export", digits_run, "--format", "saved_model", "--out", out, "--version", 2) == 0
    assert sorted(p.name for p in out.iterdir()) == ["1", "2", "metadata.json"]
    assert json.loads((out / "metadata.json").read_text())["version"] == 2


@pytest.mark.parametrize("extra, message", [
    (["--version", "0"], "--version 0"),
    (["--format", "saved_model", "--quantize", "dynamic"], "--quantize dynamic"),
])
def test_bad_export_requests_exit_2_and_write_nothing(digits_run, tmp_path, capsys, extra, message):
    argv = ["export", digits_run, "--out", tmp_path / "x"] + (["--format", "tflite"] if "--format" not in extra else [])
    assert run_cli(*argv, *extra) == 2
    assert message in _one_error_line(capsys)
    assert not (tmp_path / "x").exists()


def test_missing_and_unfinished_runs_are_refused(digits_run, tmp_path, capsys):
    assert run_cli("export", tmp_path / "nope", "--format", "saved_model") == 2
    assert "no such run directory" in _one_error_line(capsys)
    unfinished = tmp_path / "unfinished"
    unfinished.mkdir()
    for name in ("config.json", "model.keras"):
        (unfinished / name).write_bytes((digits_run / name).read_bytes())
    assert run_cli("export", unfinished, "--format", "saved_model") == 2
    assert "not finished" in _one_error_line(capsys)
    assert not (unfinished / "export").exists()


@pytest.mark.parametrize("kind", ["max", "average"])
@pytest.mark.parametrize("shape", [(4, 6, 8, 3), (5, 7, 3, 2), (1, 1, 1, 1)])
def test_3d_pooling_rewritten_for_tflite_equals_keras(kind, shape):
    """TFLite lacks 3D pooling kernels; the builtin-op rewrite must give Keras' exact answer,
    "same" padding of odd sizes included."""
    import keras

    from pipelines.tflite_ops import DepthSlicedPooling3D, for_tflite

    x = np.random.default_rng(0).normal(size=(2,) + shape).astype(np.float32)
    pool = (keras.layers.MaxPooling3D if kind == "max" else keras.layers.AveragePooling3D)(2, strides=2, padding="same")
    np.testing.assert_allclose(DepthSlicedPooling3D(kind)(x), pool(x), atol=1e-6)
    inputs = keras.Input(shape)
    inner = keras.Model(inputs, keras.layers.Conv3D(2, 3, padding="same", name="conv")(pool(inputs)), name="inner")
    outer = keras.Model(inputs, inner(inputs))
    rewritten = for_tflite(outer)
    pools = (keras.layers.MaxPooling3D, keras.layers.AveragePooling3D)
    assert not any(isinstance(layer, pools) for layer in rewritten.get_layer("inner").layers)
    assert any(isinstance(layer, DepthSlicedPooling3D) for layer in rewritten.get_layer("inner").layers)
    np.testing.assert_allclose(rewritten.predict(x, verbose=0), outer.predict(x, verbose=0), atol=1e-5)
