"""Medical segmentation through the real CLI: phantoms, a 2D folder and NIfTI volumes."""

import gzip
import json

import nibabel as nib
import numpy as np
import pytest

from conftest import run_cli, run_tflite, serve_in_fresh_process, write_png
from pipelines import training

pytestmark = pytest.mark.slow

TINY = ["--epochs", 3, "--batch-size", 8, "--quiet", "--set", "backbone_options.widths=[8,16]",
        "--set", "decoder_width=4", "--set", "image_size=32"]


def _one_error_line(capsys):
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert "Traceback" not in err[0]
    return err[0]


def _only_run(root):
    (run_dir,) = (root / "medical-segmentation").iterdir()
    return run_dir


def _folder(root, n=10, size=(24, 28)):
    rng = np.random.default_rng(0)
    for i in range(n):
        mask = np.zeros(size, np.uint8)
        top, left = rng.integers(2, 10, 2)
        mask[top:top + 8, left:left + 10] = 255
        image = rng.integers(0, 60, size) + (mask > 0) * 150
        write_png(root / "images" / f"cell_{i}.png", image)
        write_png(root / "masks" / f"cell_{i}.png", mask)
    return root


def _msd(root, n=8, shape=(12, 14, 10)):
    rng = np.random.default_rng(1)
    affine = np.diag([1.5, 1.0, 2.0, 1.0])
    affine[:3, 3] = (3, 4, 5)
    for i in range(n):
        label = np.zeros(shape, np.uint8)
        label[3:7, 4:9, 2:6], label[7:9, 4:9, 2:6] = 1, 2
        image = rng.normal(0, 1, shape) * 20 + label * 80 + 100 * (i + 1)
        for kind, data in (("imagesTr", image.astype(np.float32)), ("labelsTr", label)):
            (root / kind).mkdir(parents=True, exist_ok=True)
            nib.save(nib.Nifti1Image(data, affine), str(root / kind / f"case_{i:03d}.nii.gz"))
    (root / "dataset.json").write_text(json.dumps({"labels": {"0": "background", "1": "head",
                                                              "2": "tail"}}))
    return root, affine


def test_phantoms_run_writes_the_contract(tmp_path):
    assert run_cli("train", "medical-segmentation", "--data", "builtin:phantoms", "--output", tmp_path,
                   *TINY) == 0
    run_dir = _only_run(tmp_path)
    for name in ("config.json", "model.keras", "backbone.weights.h5", "metrics.json", "report.html",
                 "history.csv"):
        assert (run_dir / name).exists(), name
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert set(metrics["metrics"]) == {"dice", "iou", "hd95"}
    assert metrics["baseline"]["name"] == "probabilistic_atlas"
    assert 0 <= metrics["metrics"]["dice"] <= 1 and metrics["metrics"]["hd95"] >= 0
    for figure in ("dice_distribution", "overlays", "learning_curves"):
        assert (run_dir / "figures" / f"{figure}.png").is_file()
    report = (run_dir / "report.md").read_text()
    assert "Per-class means" in report and "Per-case means" in report
    history = training.read_history(run_dir)  # the epoch Dice a learning curve is read on
    assert {"dice", "val_dice"} <= set(history.columns)
    assert ((history["val_dice"] >= 0) & (history["val_dice"] <= 1)).all()


def test_2d_folder_trains_evaluates_and_predicts_png_masks(tmp_path, capsys):
    data = _folder(tmp_path / "cells")
    assert run_cli("train", "medical-segmentation", "--data", data, "--output", tmp_path / "runs", *TINY) == 0
    run_dir = _only_run(tmp_path / "runs")
    capsys.readouterr()
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["baseline"]["name"] == "otsu_threshold"
    preprocessing = json.loads((run_dir / "config.json").read_text())["preprocessing"]
    assert preprocessing["class_names"] == ["background", "foreground"] and not preprocessing["tiled"]
    assert run_cli("evaluate", run_dir, "--json") == 0
    assert json.loads(capsys.readouterr().out)["n_samples"] == metrics["n_samples"]
    assert run_cli("evaluate", run_dir, "--data", data, "--json") == 0  # declares no split: every case
    document = json.loads(capsys.readouterr().out)
    assert document["split"] == "all" and document["n_samples"] == len(list((data / "images").iterdir()))
    assert run_cli("predict", run_dir, data / "images" / "cell_0.png", "--out", tmp_path / "pred",
                   "--json") == 0
    record = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    from PIL import Image

    written = np.asarray(Image.open(record["mask"]))
    assert written.shape == (24, 28) and set(np.unique(written)) <= {0, 255}


def test_images_larger_than_the_network_are_tiled_at_native_scale(tmp_path, capsys):
    data = _folder(tmp_path / "big", n=8, size=(40, 70))
    assert run_cli("train", "medical-segmentation", "--data", data, "--output", tmp_path / "runs", *TINY) == 0
    run_dir = _only_run(tmp_path / "runs")
    assert json.loads((run_dir / "config.json").read_text())["preprocessing"]["tiled"] is True
    capsys.readouterr()
    assert run_cli("predict", run_dir, data / "images" / "cell_3.png", "--out", tmp_path / "pred",
                   "--json") == 0
    record = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert record["shape"] == [40, 70]


def _predicted_mask_file(run_dir, scan, out, capsys):
    """The NIfTI mask ``predict --json`` wrote for ``scan``, loaded."""
    capsys.readouterr()
    assert run_cli("predict", run_dir, scan, "--out", out, "--json") == 0
    record = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    return nib.load(record["mask"])


def test_nifti_volumes_train_and_predicted_masks_keep_shape_and_affine(tmp_path, capsys):
    data, affine = _msd(tmp_path / "msd")
    assert run_cli("train", "medical-segmentation", "--data", data, "--output", tmp_path / "runs",
                   *TINY, "--set", "empty_slice_fraction=1.0") == 0
    run_dir = _only_run(tmp_path / "runs")
    config = json.loads((run_dir / "config.json").read_text())
    assert config["preprocessing"]["class_names"] == ["background", "head", "tail"]
    assert config["split"]["counts"]["test"] == 2  # split by case, not by slice
    assert "(HD95 in mm)" in (run_dir / "report.md").read_text()
    scan = data / "imagesTr" / "case_000.nii.gz"
    written = _predicted_mask_file(run_dir, scan, tmp_path / "pred", capsys)
    assert written.shape == (12, 14, 10)
    np.testing.assert_allclose(written.affine, affine)
    # --out naming a file is that file (one input), never a folder of that name
    assert run_cli("predict", run_dir, scan, "--out", tmp_path / "mask.nii.gz") == 0
    assert (tmp_path / "mask.nii.gz").is_file()
    np.testing.assert_array_equal(nib.load(tmp_path / "mask.nii.gz").get_fdata(), written.get_fdata())
    capsys.readouterr()
    second = data / "imagesTr" / "case_001.nii.gz"
    assert run_cli("predict", run_dir, scan, second, "--out", tmp_path / "two.nii.gz") == 2
    assert "names one file, but 2 inputs were given" in capsys.readouterr().err
    assert run_cli("predict", run_dir, scan, "--out", tmp_path / "mask.png") == 2
    assert "is written as .nii or .nii.gz" in capsys.readouterr().err
    assert not (tmp_path / "two.nii.gz").exists() and not (tmp_path / "mask.png").exists()
    # evaluate --data validates labels as train does: 7 is not one of the run's classes
    other, _ = _msd(tmp_path / "other", n=3)
    label_file = other / "labelsTr" / "case_001.nii.gz"
    label = nib.load(label_file)
    broken = np.asarray(label.dataobj).copy()
    broken[0, 0, 0] = 7
    nib.save(nib.Nifti1Image(broken, label.affine), str(label_file))
    assert run_cli("evaluate", run_dir, "--data", other) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "label value 7 is not among the run's classes 0..2" in err[0], err


@pytest.fixture
def out(tmp_path):
    return tmp_path / "runs"


def test_bad_inputs_exit_2_naming_the_file(tmp_path, out, capsys):
    def train(data, *extra):
        return run_cli("train", "medical-segmentation", "--data", data, "--output", out, *extra)

    lonely = tmp_path / "lonely"
    write_png(lonely / "images" / "a.png", np.zeros((8, 8), np.uint8))
    (lonely / "masks").mkdir()
    assert train(lonely) == 2 and "a.png: no mask with the same name" in _one_error_line(capsys)

    shapes = tmp_path / "shapes"
    write_png(shapes / "images" / "b.png", np.zeros((8, 8), np.uint8))
    write_png(shapes / "masks" / "b.png", np.zeros((8, 9), np.uint8))
    assert train(shapes) == 2 and "b.png: mask is 9x8 but its image is 8x8" in _one_error_line(capsys)

    labels = _folder(tmp_path / "labels", n=2)
    mask = np.zeros((24, 28), np.uint8)
    mask[:4, :4] = 3
    write_png(labels / "masks" / "cell_1.png", mask)
    assert train(labels, "--set", "n_classes=2") == 2
    assert "cell_1.png: label values [3] are outside the declared classes 0..1" in _one_error_line(capsys)

    corrupt, _ = _msd(tmp_path / "corrupt", n=2)
    (corrupt / "imagesTr" / "case_001.nii.gz").write_bytes(gzip.compress(b"garbage" * 100))
    assert train(corrupt) == 2 and "case_001.nii.gz: cannot read this NIfTI file" in _one_error_line(capsys)

    four, _ = _msd(tmp_path / "four", n=2)
    nib.save(nib.Nifti1Image(np.zeros((4, 4, 4, 2), np.float32), np.eye(4)),
             str(four / "imagesTr" / "case_000.nii.gz"))
    assert train(four) == 2 and "case_000.nii.gz: expected a 3D volume, got 4D" in _one_error_line(capsys)
    assert not out.exists()


# -- serving: the exported graph reproduces predict_case ---------------------------------------
@pytest.fixture(scope="module")
def tiled_run(tmp_path_factory):
    """A 2D run on images larger than the network, so prediction tiles at native scale."""
    root = tmp_path_factory.mktemp("tiled")
    data = _folder(root / "big", n=8, size=(40, 70))
    assert run_cli("train", "medical-segmentation", "--data", data, "--output", root / "runs", *TINY) == 0
    return _only_run(root / "runs"), data


@pytest.fixture(scope="module")
def volume_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("volumes")
    data, _ = _msd(root / "msd")
    assert run_cli("train", "medical-segmentation", "--data", data, "--output", root / "runs",
                   *TINY, "--set", "empty_slice_fraction=1.0") == 0
    return _only_run(root / "runs"), data


def _agreement(a, b):
    assert a.shape == b.shape
    return float((np.asarray(a) == np.asarray(b)).mean())


def test_a_2d_export_answers_png_masks_like_predict(tiled_run, tmp_path, capsys):
    import io

    from PIL import Image

    run_dir, data = tiled_run
    files = sorted((data / "images").glob("*.png"))
    assert run_cli("predict", run_dir, *files, "--out", tmp_path / "pred", "--json") == 0
    records = [json.loads(line) for line in capsys.readouterr().out.strip().splitlines()]
    assert run_cli("export", run_dir, "--format", "saved_model", "--out", tmp_path / "sm") == 0
    served = serve_in_fresh_process(tmp_path / "sm" / "1", "serving_default",
                                    {"image_bytes": {"files": [str(f) for f in files]}}, tmp_path)
    for i, record in enumerate(records):
        expected = np.asarray(Image.open(record["mask"]))
        got = np.asarray(Image.open(io.BytesIO(served["mask_png"][i])))
        assert _agreement(got, expected) >= 0.999
        assert [served["height"][i], served["width"][i]] == record["shape"] == [40, 70]
        assert served["class_pixels"][i].tolist() == [record["voxels"]["foreground"]]
    assert sum(r["voxels"]["foreground"] for r in records) > 0  # the masks are not all empty


def test_tflite_segments_network_sized_slices_like_keras(tiled_run, tmp_path):
    from pipelines import workflow

    run_dir, data = tiled_run
    path, saved, task, config, info, model = workflow.load_run(run_dir)
    stream, _ = task.encode(task.load(str(data), config), info)
    x, _ = stream.load()
    expected = model.predict(x[:6], verbose=0)
    assert run_cli("export", run_dir, "--format", "tflite", "--out", tmp_path / "tfl") == 0
    for i in range(6):
        got = run_tflite(tmp_path / "tfl" / "1" / "model.tflite", "segment_pixels", pixels=x[i:i + 1])
        np.testing.assert_allclose(got["probabilities"][0], expected[i], atol=1e-4)
        assert _agreement(got["mask"][0], expected[i].argmax(-1)) >= 0.999


def _predicted_and_served(run_dir, scan, tmp_path, capsys):
    """(predict's record, its mask, the exported serving_default's answer) for one scan."""
    assert run_cli("predict", run_dir, scan, "--out", tmp_path / "pred", "--json") == 0
    record = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    expected = np.asarray(nib.load(record["mask"]).dataobj)
    image = nib.load(str(scan))
    np.save(tmp_path / "volume.npy", np.asarray(image.dataobj, np.float32))
    np.save(tmp_path / "spacing.npy", np.asarray(image.header.get_zooms()[:3], np.float32))
    assert run_cli("export", run_dir, "--format", "saved_model", "--out", tmp_path / "sm") == 0
    served = serve_in_fresh_process(tmp_path / "sm" / "1", "serving_default",
                                    {"volume": {"npy": str(tmp_path / "volume.npy")},
                                     "spacing": {"npy": str(tmp_path / "spacing.npy")}}, tmp_path)
    return record, expected, served


def test_a_volume_export_answers_a_label_volume_in_the_scans_own_shape(volume_run, tmp_path, capsys):
    run_dir, data = volume_run
    record, expected, served = _predicted_and_served(run_dir, data / "imagesTr" / "case_001.nii.gz",
                                                     tmp_path, capsys)
    assert _agreement(served["labels"], expected) >= 0.999
    assert [n.decode() for n in served["class_names"]] == ["head", "tail"]
    assert served["voxels"].tolist() == [record["voxels"]["head"], record["voxels"]["tail"]]
    assert sum(served["voxels"]) > 0
    np.testing.assert_allclose(served["volume_ml"], served["voxels"] * 1.5 * 1.0 * 2.0 / 1000, rtol=1e-6)


# -- 3D mode: a 3D U-Net on patches, sliding windows over the whole volume ----------------------
THREE_D = ["--set", "spatial_dims=3", "--set", "patch_size=[8,8,8]", "--batch-size", 4]


@pytest.fixture(scope="module")
def volume_3d_run(tmp_path_factory):
    """Patches of 8x8x8 voxels, so a 12x14x10 scan is predicted from 2x2x2 blended windows."""
    root = tmp_path_factory.mktemp("volumes3d")
    data, affine = _msd(root / "msd")
    assert run_cli("train", "medical-segmentation", "--data", data, "--output", root / "runs",
                   *TINY, *THREE_D) == 0
    return _only_run(root / "runs"), data, affine


def test_a_3d_run_trains_on_patches_and_predicts_whole_volumes(volume_3d_run, tmp_path, capsys):
    run_dir, data, affine = volume_3d_run
    config = json.loads((run_dir / "config.json").read_text())
    assert config["config"]["backbone"] == "basic_cnn3d" and config["config"]["batch_size"] == 4
    assert config["preprocessing"]["spatial_dims"] == 3 and config["preprocessing"]["patch_size"] == [8, 8, 8]
    backbone = json.loads((run_dir / "backbone.json").read_text())
    assert backbone["spatial_dims"] == 3 and backbone["strides"] == {"P1": [2, 2, 2], "P2": [4, 4, 4]}
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert 0 <= metrics["metrics"]["dice"] <= 1 and "hd95" in metrics["baseline"]["metrics"]
    capsys.readouterr()
    written = _predicted_mask_file(run_dir, data / "imagesTr" / "case_002.nii.gz", tmp_path / "pred", capsys)
    assert written.shape == (12, 14, 10)
    np.testing.assert_allclose(written.affine, affine)
    assert run_cli("evaluate", run_dir) == 0
    write_png(tmp_path / "flat.png", np.zeros((12, 14), np.uint8))
    capsys.readouterr()
    assert run_cli("predict", run_dir, tmp_path / "flat.png") == 2
    assert "flat.png: this run is a 3D U-Net; give NIfTI volumes" in _one_error_line(capsys)


def test_a_3d_export_blends_the_same_windows_in_the_graph(volume_3d_run, tmp_path, capsys):
    from pipelines import workflow

    run_dir, data, _ = volume_3d_run
    record, expected, served = _predicted_and_served(run_dir, data / "imagesTr" / "case_001.nii.gz",
                                                     tmp_path, capsys)
    assert _agreement(served["labels"], expected) >= 0.999
    assert served["voxels"].tolist() == [record["voxels"]["head"], record["voxels"]["tail"]]
    # TFLite holds the patch network itself
    path, saved, task, config, info, model = workflow.load_run(run_dir)
    stream, _ = task.encode(task.load(str(data), config), info)
    x, _ = stream.load()
    assert x.shape[1:] == (8, 8, 8, 1)
    assert run_cli("export", run_dir, "--format", "tflite", "--out", tmp_path / "tfl") == 0
    got = run_tflite(tmp_path / "tfl" / "1" / "model.tflite", "segment_voxels", voxels=x[:1])
    np.testing.assert_allclose(got["probabilities"][0], model.predict(x[:1], verbose=0)[0], atol=1e-4)


def test_a_3d_run_with_left_right_flips_predicts_the_mirror_average_everywhere(volume_3d_run, tmp_path, capsys):
    """flip_axes=[0] + test_time_flips: the run records the axis, and predict and the exported
    graph both answer with the average over the two mirror images."""
    _, data, _ = volume_3d_run
    assert run_cli("train", "medical-segmentation", "--data", data, "--output", tmp_path / "runs", *TINY,
                   *THREE_D, "--epochs", 1, "--set", "augment=true", "--set", "flip_axes=[0]",
                   "--set", "test_time_flips=true") == 0
    run_dir = _only_run(tmp_path / "runs")
    assert json.loads((run_dir / "config.json").read_text())["preprocessing"]["mirror_axes"] == [0]
    assert "mirror images along spatial axes [0]" in (run_dir / "report.md").read_text()
    capsys.readouterr()
    record, expected, served = _predicted_and_served(run_dir, data / "imagesTr" / "case_001.nii.gz",
                                                     tmp_path, capsys)
    assert _agreement(served["labels"], expected) >= 0.999


def test_a_2d_segmentation_backbone_starts_a_3d_run_inflated(volume_run, tmp_path):
    run_2d, data = volume_run
    assert run_cli("train", "medical-segmentation", "--data", data, "--output", tmp_path / "runs",
                   *TINY, *THREE_D, "--epochs", 1, "--backbone-from", run_2d) == 0
    config = json.loads((_only_run(tmp_path / "runs") / "config.json").read_text())
    assert config["config"]["backbone"] == "basic_cnn3d"
    inflated = config["lineage"]["inflated"]
    assert (inflated["from"], inflated["to"]) == ("basic_cnn", "basic_cnn3d")
    assert config["lineage"]["run_dir"] == str(run_2d)


def test_3d_mode_refuses_2d_images_before_making_a_run(tmp_path, out, capsys):
    data = _folder(tmp_path / "flat", n=4)
    assert run_cli("train", "medical-segmentation", "--data", data, "--output", out,
                   "--set", "spatial_dims=3") == 2
    assert "3D mode (spatial_dims=3, or a 3D backbone) needs volumes" in _one_error_line(capsys)
    assert run_cli("train", "medical-segmentation", "--data", data, "--output", out,
                   "--backbone", "efficientnet_b0", "--set", "spatial_dims=3") == 2
    assert "has no registered 3D twin" in _one_error_line(capsys)
    assert not out.exists()


def test_a_bfloat16_run_computes_in_bfloat16_and_exports_float32_tflite(tmp_path):
    """precision=mixed_bfloat16: layers compute in bfloat16 (kept in model.keras), weights and
    probabilities stay float32, and TFLite gets a float32 twin of the network."""
    import keras

    from pipelines import workflow

    data, _ = _msd(tmp_path / "msd", n=6)
    assert run_cli("train", "medical-segmentation", "--data", data, "--output", tmp_path / "runs",
                   *TINY, *THREE_D, "--epochs", 1, "--set", "precision=mixed_bfloat16") == 0
    run_dir = _only_run(tmp_path / "runs")
    assert keras.config.dtype_policy().name == "float32"  # the global policy is restored
    *_, task, config, info, model = workflow.load_run(run_dir)
    conv = model.get_layer("backbone").get_layer("stage1_conv1")
    assert conv.compute_dtype == "bfloat16" and conv.kernel.dtype == "float32"
    stream, _ = task.encode(task.load(str(data), config), info)
    x, _ = stream.load()
    expected = model.predict(x[:2], verbose=0)
    assert expected.dtype == np.float32
    assert run_cli("export", run_dir, "--format", "tflite", "--out", tmp_path / "tfl") == 0
    got = run_tflite(tmp_path / "tfl" / "1" / "model.tflite", "segment_voxels", voxels=x[:2])
    np.testing.assert_allclose(got["probabilities"], expected, atol=0.05)  # bfloat16 keeps ~3 digits
