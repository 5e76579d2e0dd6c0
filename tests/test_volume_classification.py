"""Volume classification: readers (.npz, NIfTI class folders, CSV), grouped splits, intensity,
3D augmentation, bad input, and end-to-end train / evaluate / predict / export on small
generated volumes (spheres vs cubes), so CI needs no data files."""

import json

import numpy as np
import pytest

from conftest import evaluate_document, run_cli, run_tflite, serve_in_fresh_process, shared_dataset
from pipelines.errors import UserError
from tasks.volume_classification import intensity, readers


def _volumes(n=24, size=(8, 12, 12), seed=0):
    data = readers.shapes3d(n=n, size=size, seed=seed)
    return data.x["volumes"][..., 0], data.y


def _nifti(path, volume):
    import nibabel

    path.parent.mkdir(parents=True, exist_ok=True)
    nibabel.save(nibabel.Nifti1Image(np.transpose(volume, (2, 1, 0)).astype(np.float32), np.eye(4)),
                 str(path))


def test_npz_volumes_with_patients_split_by_patient(tmp_path):
    x, y = _volumes(40)
    patients = np.array([f"P{i // 2:03d}" for i in range(40)])  # two volumes per patient
    np.savez(tmp_path / "v.npz", x=x.astype(np.int16), y=y, patient_id=patients,
             diameter_mm=np.linspace(3, 20, 40).astype(np.float32))
    data = readers.load(str(tmp_path / "v.npz"), seed=1)
    assert data.x["volumes"].shape == (40, 8, 12, 12, 1) and "diameter" in data.x
    assert data.declared_splits is None  # made by patient here: the run's choice, not the data's
    splits = data.made_splits
    sides = [set(patients[splits[name]]) for name in ("train", "val", "test")]
    assert not (sides[0] & sides[1] or sides[0] & sides[2] or sides[1] & sides[2])
    assert sorted(np.concatenate(list(splits.values())).tolist()) == list(range(40))


def test_npz_class_names_name_the_labels(tmp_path):
    x, y = _volumes(10)
    np.savez(tmp_path / "v.npz", x=x, y=y, class_names=np.array(["benign", "malignant"]))
    assert readers.load(str(tmp_path / "v.npz")).info["class_names"] == ["benign", "malignant"]


def test_nifti_class_folders_read_as_depth_height_width(tmp_path):
    x, y = _volumes(8)
    for i, (volume, label) in enumerate(zip(x, y)):
        _nifti(tmp_path / ("sphere" if label == 0 else "cube") / f"v{i}.nii.gz", volume)
    data = readers.load(str(tmp_path))
    assert data.info["class_names"] == ["cube", "sphere"]
    order = np.argsort([f"{'sphere' if label == 0 else 'cube'}" for label in y], kind="stable")
    np.testing.assert_allclose(data.x["volumes"][..., 0], x[order], atol=1e-4)


@pytest.mark.parametrize("make, expected", [
    (lambda p: np.savez(p, x=np.zeros((6, 8, 8)), y=np.arange(6) % 2), "holds 2D images"),
    (lambda p: np.savez(p, x=np.zeros((6, 2, 4, 4, 4, 1)), y=np.arange(6) % 2), "expected volumes"),
    (lambda p: np.savez(p, x=np.full((6, 4, 4, 4), np.nan), y=np.arange(6) % 2), "NaN or infinite voxel"),
    (lambda p: np.savez(p, x=np.zeros((6, 4, 4, 4)), y=np.arange(5) % 2), "6 volumes but 5 labels"),
    (lambda p: np.savez(p, x=np.zeros((6, 4, 4, 4)), y=np.arange(6) % 3, class_names=np.array(["a", "b"])),
     "class_names has 2 names, so the labels must be whole numbers 0..1"),
])
def test_bad_npz_exits_2_with_one_line(tmp_path, capsys, make, expected):
    make(tmp_path / "bad.npz")
    out = tmp_path / "runs"
    assert run_cli("train", "volume-classification", "--data", tmp_path / "bad.npz", "--output", out) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "bad.npz" in err[0] and expected in err[0], err
    assert not out.exists()


def test_mixed_shapes_need_volume_size(tmp_path, capsys):
    x, y = _volumes(6)
    for i, (volume, label) in enumerate(zip(x, y)):
        _nifti(tmp_path / "data" / str(label) / f"v{i}.nii.gz", volume if i else volume[:, :10])
    assert run_cli("train", "volume-classification", "--data", tmp_path / "data", "--output",
                   tmp_path / "runs") == 2
    assert "set volume_size=[D,H,W] to resample" in capsys.readouterr().err
    data = readers.load(str(tmp_path / "data"), volume_size=[8, 12, 12])
    assert data.x["volumes"].shape == (6, 8, 12, 12, 1)


def test_intensity_auto_picks_a_ct_window_for_hounsfield_units_and_the_graph_agrees():
    x, _ = _volumes(4)  # air at -1000 HU
    method, window, _ = intensity.choose(x, "auto", None)
    assert method == "window" and window == [-1000.0, 400.0]
    assert intensity.choose(x + 2000, "auto", None)[0] == "zscore"
    for method, window in (("window", [-1000.0, 400.0]), ("zscore", None)):
        eager = intensity.normalize(x[..., None], method, window)
        graph = intensity.normalize_in_graph(x[..., None].astype(np.float32), method, window).numpy()
        np.testing.assert_allclose(graph, eager, atol=1e-4)


def test_flips_are_drawn_per_axis_and_shifts_keep_the_shape():
    import tensorflow as tf

    from pipelines.augmentation import axis_flips as flips, shifts

    import itertools

    volume = np.arange(2 * 3 * 4, dtype=np.float32).reshape(1, 2, 3, 4, 1).repeat(200, axis=0)
    out = flips(tf.constant(volume), tf.constant([1, 2], tf.int64)).numpy()
    combos = {combo: np.flip(volume[0], [a for a, on in enumerate(combo) if on]) if any(combo)
              else volume[0] for combo in itertools.product((0, 1), repeat=3)}
    seen = [next(c for c, v in combos.items() if np.array_equal(o, v)) for o in out]
    assert len(set(seen)) == 8  # every combination of the three axes' own coins occurs
    moved = shifts(tf.constant(volume), tf.constant([3, 4], tf.int64), 0.25).numpy()
    assert moved.shape == volume.shape


# -- end to end -----------------------------------------------------------------------------------
TINY = ("--set", "backbone_options.widths=[4,8,8]", "--set", "figure_cases=2")


def test_mirror_averaging_is_the_mean_over_every_flip_and_ignores_orientation():
    import itertools

    import keras

    from pipelines.test_time import mirror_averaged

    net = keras.Sequential([keras.Input((4, 6, 5, 1)), keras.layers.Conv3D(3, 3, activation="relu"),
                            keras.layers.Flatten(), keras.layers.Dense(2, activation="softmax")])
    x = np.random.default_rng(0).normal(size=(3, 4, 6, 5, 1)).astype(np.float32)
    axes = (1, 2, 3)
    subsets = [c for n in range(4) for c in itertools.combinations(axes, n)]
    expected = np.mean([net.predict(np.flip(x, s) if s else x, verbose=0) for s in subsets], axis=0)
    averaged = mirror_averaged(net, axes)
    np.testing.assert_allclose(averaged.predict(x, verbose=0), expected, atol=1e-5)
    np.testing.assert_allclose(averaged.predict(np.flip(x, (1, 3)), verbose=0), expected, atol=1e-5)
    assert not np.allclose(net.predict(x, verbose=0), expected, atol=1e-3)  # the plain net is not invariant
    assert mirror_averaged(net, ()) is net


@pytest.fixture(scope="module")
def volume_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("volumes")
    x, y = _volumes(48, seed=2)
    np.savez(root / "shapes.npz", x=x, y=y)
    out = tmp_path_factory.mktemp("volume_runs")
    assert run_cli("train", "volume-classification", "--data", root / "shapes.npz", "--epochs", 3,
                   "--output", out, "--quiet", *TINY) == 0
    (run_dir,) = (out / "volume-classification").iterdir()
    return run_dir, root, x, y


@pytest.mark.slow
def test_volume_run_writes_metrics_baseline_and_slices(volume_run):
    run_dir, *_ = volume_run
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert {"accuracy", "macro_f1", "roc_auc"} <= set(metrics["metrics"])
    assert metrics["baseline"]["name"] == "logistic_regression_voxels"
    assert (run_dir / "figures" / "slices_gradcam.png").stat().st_size > 2000
    assert json.loads((run_dir / "backbone.json").read_text())["spatial_dims"] == 3


@pytest.mark.slow
def test_evaluate_data_scores_a_new_cohort_whole_unless_it_declares_a_test_split(volume_run, tmp_path,
                                                                                 capsys):
    """A cohort naming its patients is split by patient when it trains a run; scored by another
    run it is scored whole: a reader's split is never the data's own."""
    run_dir, _, x, y = volume_run
    patients = np.array([f"Q{i // 3:03d}" for i in range(len(x))])  # 16 patients, 3 volumes each
    np.savez(tmp_path / "cohort.npz", x=x, y=y, patient_id=patients)
    before = set((run_dir / "evaluations").glob("*")) if (run_dir / "evaluations").is_dir() else set()
    document = evaluate_document(capsys, run_dir, "--data", tmp_path / "cohort.npz")
    assert document["split"] == "all" and document["n_samples"] == len(x)
    (evaluation,) = set((run_dir / "evaluations").glob("*")) - before
    assert f"**Split**: all: {len(x)} examples" in (evaluation / "report.md").read_text()
    np.savez(tmp_path / "declared.npz", train_images=x[:30], train_labels=y[:30], test_images=x[30:],
             test_labels=y[30:])  # MedMNIST-3D arrays declare their split
    document = evaluate_document(capsys, run_dir, "--data", tmp_path / "declared.npz")
    assert document["split"] == "test" and document["n_samples"] == len(x) - 30
    document = evaluate_document(capsys, run_dir, "--data", tmp_path / "declared.npz", "--split", "all")
    assert document["split"] == "all" and document["n_samples"] == len(x)
    assert run_cli("evaluate", run_dir, "--data", tmp_path / "cohort.npz", "--split", "test") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "declares no test split" in err[0] and "cohort.npz" in err[0], err


@pytest.mark.slow
def test_predict_and_export_agree_on_a_nifti_and_an_npy(volume_run, tmp_path, capsys):
    run_dir, root, x, _ = volume_run
    np.save(tmp_path / "a.npy", x[0])
    _nifti(tmp_path / "b.nii.gz", x[1])
    capsys.readouterr()
    assert run_cli("predict", run_dir, tmp_path / "a.npy", tmp_path / "b.nii.gz", "--json") == 0
    records = [json.loads(line) for line in capsys.readouterr().out.strip().splitlines()]
    assert [r["input"] for r in records] == [str(tmp_path / "a.npy"), str(tmp_path / "b.nii.gz")]
    assert run_cli("export", run_dir, "--format", "saved_model", "--out", tmp_path / "sm") == 0
    np.save(tmp_path / "raw.npy", x[:2].astype(np.float32))
    served = serve_in_fresh_process(tmp_path / "sm" / "1", "serving_default",
                                    {"volumes": {"npy": str(tmp_path / "raw.npy")}}, tmp_path)
    np.testing.assert_allclose(served["probabilities"].max(axis=1),
                               [r["top"][0]["probability"] for r in records], atol=1e-4)
    assert [n.decode() for n in served["class_names"]] == [r["class"] for r in records]
    assert run_cli("evaluate", run_dir, "--json") == 0
    # TFLite has no 3D pooling kernels: the export rewrites them with builtin ops, exactly
    from pipelines import workflow

    *_, task, config, info, model = workflow.load_run(run_dir)
    voxels = task.network_input(x[:2].astype(np.float32), info)[..., None]  # (N, D, H, W, 1)
    assert run_cli("export", run_dir, "--format", "tflite", "--out", tmp_path / "tfl") == 0
    got = run_tflite(tmp_path / "tfl" / "1" / "model.tflite", "predict_voxels", voxels=voxels)
    assert info.test_time_flips  # trained with flips, so every way out averages the 8 mirror images
    np.testing.assert_allclose(got["probabilities"], task.predictor(model, info).predict(voxels, verbose=0),
                               atol=1e-4)


@pytest.mark.slow
def test_lidc_nodules_are_read_as_ct_volumes_split_by_patient():
    path = shared_dataset("lung_nodules") / "lidc_nodules.npz"
    data = readers.load(str(path), seed=0)
    assert data.x["volumes"].shape == (473, 16, 32, 32, 1) and len(data.x["diameter"]) == 473
    method, window, _ = intensity.choose(data.x["volumes"], "auto", None)
    assert method == "window"
    patients = np.load(path)["patient_id"]
    test, train = set(patients[data.made_splits["test"]]), set(patients[data.made_splits["train"]])
    assert not test & train


def test_unknown_builtin_is_a_user_error():
    with pytest.raises(UserError, match="builtin:shapes3d"):
        readers.load("builtin:nodules")
