"""Steering: readers (Udacity driving logs, generic CSVs), splits by time, metrics, augmentation,
frames, bad input, and end-to-end train / evaluate / predict / export / transfer."""

import json

import numpy as np
import pytest

from conftest import evaluate_document, run_cli, serve_in_fresh_process, write_png
from pipelines.errors import UserError

UDACITY_HEADER = "center,left,right,steering,throttle,brake,speed"
WINDOWS_ROOT = r"C:\Users\driver\Desktop\recording\IMG"


def _lane_frame(angle, offset=0):
    """A 32x64 frame whose bright lane line sits where the angle says (so the angle is learnable)."""
    image = np.full((32, 64, 3), 40, np.uint8)
    column = int(np.clip(32 + angle * 100 + offset, 2, 61))
    image[8:, column - 2:column + 2] = (230, 230, 230)
    image[:8] = (90, 140, 200)  # sky
    return image


def write_udacity(root, n=60, *, header=False, seed=0):
    """A driving_log.csv with Windows paths and centre/left/right JPEGs in IMG/ beside it."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    (root / "IMG").mkdir(parents=True, exist_ok=True)
    angles = np.round(np.sin(np.arange(n) / 6.0) * 0.2 + rng.normal(0, 0.01, n), 4)
    lines = [UDACITY_HEADER] if header else []
    for i, angle in enumerate(angles):
        names = []
        for camera, offset in (("center", 0), ("left", 6), ("right", -6)):
            name = f"{camera}_2016_12_01_13_30_{i:05d}.jpg"
            Image.fromarray(_lane_frame(angle, offset)).save(root / "IMG" / name, quality=95)
            names.append(f"{WINDOWS_ROOT}\\{name}")
        lines.append(", ".join(names) + f", {angle}, 0.9, 0, 30.1")
    (root / "driving_log.csv").write_text("\n".join(lines) + "\n")
    return root, angles


def write_steering_csv(root, episodes=6, per_episode=8, *, split=None, flipped=False):
    rows = ["path,steering,episode" + (",split" if split else "") + (",flipped" if flipped else "")]
    for episode in range(episodes):
        for frame in range(per_episode):
            angle = round(0.15 * np.sin(episode + frame / 3.0), 4)
            for mirror in ((0, 1) if flipped else (0,)):
                name = f"images/e{episode}_{frame}{'_flip' if mirror else ''}.png"
                write_png(root / name, _lane_frame(-angle if mirror else angle))
                row = f"{name},{-angle if mirror else angle},{episode}"
                if split:
                    row += f",{split(episode)}"
                if flipped:
                    row += f",{mirror}"
                rows.append(row)
    (root / "labels.csv").write_text("\n".join(rows) + "\n")
    return root / "labels.csv"


# -- readers and splits ---------------------------------------------------------------------------
@pytest.mark.parametrize("header", [False, True])
def test_udacity_log_with_windows_paths_is_read_from_img(tmp_path, header):
    from tasks.steering import readers

    root, angles = write_udacity(tmp_path / "drive", n=30, header=header)
    dataset = readers.load(str(root))
    assert len(dataset) == 30
    np.testing.assert_allclose(dataset.y, angles, atol=1e-6)
    paths = dataset.x["frames"].paths
    assert all(p.startswith(str((root / "IMG").resolve())) and "center_" in p for p in paths)
    assert not dataset.x["synthetic"].any()


def test_side_cameras_add_corrected_frames_for_training_only(tmp_path):
    from tasks.steering import readers

    root, angles = write_udacity(tmp_path / "drive", n=40)
    dataset = readers.load(str(root), side_cameras=True, side_camera_correction=0.25)
    assert len(dataset) == 120
    paths, y = dataset.x["frames"].paths, dataset.y
    left = np.array(["left_" in p for p in paths])
    right = np.array(["right_" in p for p in paths])
    np.testing.assert_allclose(y[left], angles + 0.25, atol=1e-6)
    np.testing.assert_allclose(y[right], angles - 0.25, atol=1e-6)
    splits, group = dataset.made_splits, dataset.x["group"]
    for name in ("val", "test"):
        assert not (left | right)[splits[name]].any(), f"a side-camera frame in {name}"
    side_of_training_groups = np.flatnonzero((left | right) & np.isin(group, group[splits["train"]]))
    assert set(side_of_training_groups) <= set(splits["train"])  # the rest are not used at all
    assert left[splits["train"]].sum() == right[splits["train"]].sum() == (~(left | right))[splits["train"]].sum()


def test_split_is_by_time_and_never_cuts_an_episode(tmp_path):
    from tasks.steering import readers

    dataset = readers.load(str(write_steering_csv(tmp_path, episodes=10, per_episode=5)),
                           test_fraction=0.2, val_fraction=0.25)
    assert dataset.declared_splits is None  # the reader's choice, not the data's
    splits = dataset.made_splits
    group = dataset.x["group"]
    assert set(group[splits["test"]]) == {8, 9}  # the last 20 % of the episodes
    assert set(group[splits["val"]]) == {6, 7}  # a quarter of the rest, just before them
    assert max(group[splits["train"]]) == 5
    assert sorted(np.concatenate(list(splits.values())).tolist()) == list(range(50))


def test_a_given_split_column_is_honoured_and_mirror_copies_only_train(tmp_path):
    from tasks.steering import readers

    csv = write_steering_csv(tmp_path, episodes=8, per_episode=4, flipped=True,
                             split=lambda e: "test" if e in (0, 1) else "train")
    dataset = readers.load(str(csv), val_fraction=0.2)
    assert dataset.made_splits is None
    splits, group, synthetic = dataset.declared_splits, dataset.x["group"], dataset.x["synthetic"]
    assert set(group[splits["test"]]) == {0, 1}  # the data's own choice, not the last episodes
    assert set(group[splits["val"]]) == {6, 7}  # carved by episode from the end of its train part
    assert not synthetic[splits["test"]].any() and not synthetic[splits["val"]].any()
    assert synthetic[splits["train"]].sum() == 16


# -- bad input ------------------------------------------------------------------------------------
def _one_error_line(capsys):
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert "Traceback" not in err[0]
    return err[0]


def _break(root, how):
    log = root / "driving_log.csv"
    lines = log.read_text().splitlines()
    if how == "not a number":
        cells = lines[4].split(",")
        cells[3] = " left-ish"
        lines[4] = ",".join(cells)
    elif how == "missing image":
        (root / "IMG" / "center_2016_12_01_13_30_00007.jpg").unlink()
    elif how == "columns":
        lines[2] = ",".join(lines[2].split(",")[:5])
    elif how == "empty":
        lines = []
    log.write_text("\n".join(lines) + ("\n" if lines else ""))


@pytest.mark.parametrize("how, expected", [
    ("not a number", "driving_log.csv:5: steering must be a number, got 'left-ish'"),
    ("missing image", "driving_log.csv:8: center image"),
    ("columns", "driving_log.csv:3: expected 7 columns"),
    ("empty", "driving_log.csv: the driving log has no rows"),
])
def test_bad_driving_logs_exit_2_naming_file_and_line(tmp_path, capsys, how, expected):
    root, _ = write_udacity(tmp_path / "drive", n=12)
    _break(root, how)
    out = tmp_path / "runs"
    assert run_cli("train", "steering", "--data", root, "--output", out, "--epochs", 1) == 2
    assert expected in _one_error_line(capsys)
    assert not out.exists()


# -- metrics, augmentation, frames ----------------------------------------------------------------
def test_steering_metrics_on_known_values():
    from tasks.steering.metrics import steering_metrics

    got = steering_metrics([0.0, 0.1, -0.1, 0.2], [0.0, 0.1, -0.1, 0.1], tolerance=0.05)
    assert got["rmse"] == pytest.approx(0.05)
    assert got["mae"] == pytest.approx(0.025)
    assert got["within_tolerance"] == pytest.approx(0.75)
    assert got["r2"] == pytest.approx(1 - 0.01 / 0.05)  # squared errors over squares about the mean 0.05


def test_mirror_negates_the_angle_of_exactly_the_flipped_frames():
    import tensorflow as tf

    from tasks.steering.augment import mirror

    images = np.random.default_rng(0).random((32, 4, 6, 3), dtype=np.float32)
    angles = np.linspace(-0.3, 0.3, 32, dtype=np.float32)[:, None]
    out, new = (t.numpy() for t in mirror(tf.constant(images), tf.constant(angles),
                                          tf.constant([3, 4], tf.int64)))
    flipped = np.array([np.array_equal(o, i[:, ::-1]) for o, i in zip(out, images)])
    kept = np.array([np.array_equal(o, i) for o, i in zip(out, images)])
    assert (flipped ^ kept).all() and flipped.any() and kept.any()
    np.testing.assert_array_equal(new[flipped], -angles[flipped])
    np.testing.assert_array_equal(new[kept], angles[kept])


def test_shift_moves_the_lane_and_corrects_the_angle_by_the_same_fraction():
    import tensorflow as tf

    from tasks.steering.augment import shift

    images = np.zeros((16, 8, 64, 1), np.float32)
    images[:, :, 32] = 1.0  # one bright column
    angles = np.zeros((16, 1), np.float32)
    out, new = (t.numpy() for t in shift(tf.constant(images), tf.constant(angles),
                                         tf.constant([1, 2], tf.int64), 0.25, 0.5))
    moved = (out[:, 4, :, 0] * np.arange(64)).sum(axis=1) / out[:, 4, :, 0].sum(axis=1) - 32
    np.testing.assert_allclose(new[:, 0], moved / 64 * 0.5, atol=2e-3)
    assert np.abs(moved).max() > 4  # the draw really shifted something


def test_frames_crop_and_resize_alike_eagerly_and_in_tf_data(tmp_path):
    from pipelines.inputs import tf_dataset
    from pipelines.frames import Frames

    for i in range(3):
        write_png(tmp_path / f"f{i}.png", _lane_frame(0.05 * i))
    paths = np.array([str(tmp_path / f"f{i}.png") for i in range(3)])
    frames = Frames(paths, 12, 40, 3, crop_top=0.25, crop_bottom=0.0)
    eager = frames.load()
    assert eager.shape == (3, 12, 40, 3)
    streamed = np.concatenate([x for x, _ in tf_dataset(frames, np.zeros(3), batch_size=2,
                                                         training=False, cache="none").as_numpy_iterator()])
    np.testing.assert_allclose(streamed, eager, atol=1e-6)
    assert eager[:, 0].mean() > 0.1  # the sky rows (top 8 of 32) were cropped: road and lane only
    assert not np.allclose(eager[:, 0, :, 2], 200 / 255, atol=0.05)


# -- end to end -----------------------------------------------------------------------------------
TINY = ("--set", "backbone_options.width=0.25", "--set", "head_units=[16,8]")


@pytest.fixture(scope="module")
def udacity_run(tmp_path_factory):
    root, _ = write_udacity(tmp_path_factory.mktemp("udacity") / "drive", n=80)
    out = tmp_path_factory.mktemp("steering_runs")
    code = run_cli("train", "steering", "--data", root, "--epochs", 4, "--output", out, "--quiet",
                   "--set", "side_cameras=true", "--set", "augment_brightness=0.1", *TINY)
    assert code == 0
    (run_dir,) = (out / "steering").iterdir()
    return run_dir, root


@pytest.mark.slow
def test_udacity_run_reports_metrics_baselines_and_figures(udacity_run):
    run_dir, _ = udacity_run
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert set(metrics["metrics"]) == {"rmse", "mae", "r2", "within_tolerance"}
    assert metrics["baseline"]["name"].startswith("ridge_pixels")
    assert metrics["n_samples"] == 16  # the last 20 % of 80 centre frames; no side frame tested
    for stem in ("scatter", "drive", "errors", "saliency", "learning_curves"):
        assert (run_dir / "figures" / f"{stem}.png").stat().st_size > 2000, stem
    html = (run_dir / "report.html").read_text()
    assert "training_mean" in html and "Side cameras" in html


@pytest.mark.slow
def test_evaluate_data_scores_every_real_frame_unless_the_data_declares_a_test_split(udacity_run, tmp_path,
                                                                                     capsys):
    run_dir, _ = udacity_run
    episodes = write_steering_csv(tmp_path / "episodes", episodes=8, per_episode=4, flipped=True)
    document = evaluate_document(capsys, run_dir, "--data", episodes)  # split by time to train on
    assert document["split"] == "all" and document["n_samples"] == 32  # real frames, no mirror copy
    declared = write_steering_csv(tmp_path / "declared", episodes=8, per_episode=4, flipped=True,
                                  split=lambda e: "test" if e in (0, 1) else "train")
    document = evaluate_document(capsys, run_dir, "--data", declared)
    assert document["split"] == "test" and document["n_samples"] == 8  # episodes 0 and 1
    document = evaluate_document(capsys, run_dir, "--data", declared, "--split", "all")
    assert document["split"] == "all" and document["n_samples"] == 32


@pytest.mark.slow
def test_predict_evaluate_and_export_agree(udacity_run, tmp_path, capsys):
    run_dir, root = udacity_run
    frames = sorted((root / "IMG").glob("center_*.jpg"))[:5]
    capsys.readouterr()
    assert run_cli("predict", run_dir, *frames, "--json") == 0
    records = [json.loads(line) for line in capsys.readouterr().out.strip().splitlines()]
    assert [r["input"] for r in records] == [str(f) for f in frames]
    predicted = np.array([r["steering"] for r in records])
    assert run_cli("evaluate", run_dir, "--data", root, "--json") == 0
    document = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert document["n_samples"] == 80 and document["split"] == "all"  # real frames of the drive
    assert run_cli("evaluate", run_dir, "--json") == 0  # its own test split, as training scored it
    again = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    trained = json.loads((run_dir / "metrics.json").read_text())
    assert again["n_samples"] == trained["n_samples"]
    assert again["metrics"]["rmse"] == pytest.approx(trained["metrics"]["rmse"], rel=1e-5)
    assert again["baseline"] == trained["baseline"]  # the ridge refitted on the same frames
    assert run_cli("export", run_dir, "--format", "saved_model", "--out", tmp_path / "sm") == 0
    served = serve_in_fresh_process(tmp_path / "sm" / "1", "serving_default",
                                    {"image_bytes": {"files": [str(f) for f in frames]}}, tmp_path)
    np.testing.assert_allclose(served["steering"], predicted, atol=1e-5)


@pytest.mark.slow
def test_tflite_export_matches_keras(udacity_run, tmp_path):
    from conftest import run_tflite
    from pipelines import workflow

    run_dir, root = udacity_run
    assert run_cli("export", run_dir, "--format", "tflite", "--out", tmp_path / "lite") == 0
    _, _, task, _, info, model = workflow.load_run(run_dir)
    frames = sorted((root / "IMG").glob("center_*.jpg"))[:4]
    pixels = task.frames(task.load(str(root), task.Config()).subset(np.arange(4)), info).load()
    assert len(frames) == len(pixels)
    lite = run_tflite(tmp_path / "lite" / "1" / "model.tflite", "predict_pixels", pixels=pixels)
    np.testing.assert_allclose(lite["steering"], model.predict(pixels, verbose=0).reshape(-1), atol=1e-5)


@pytest.mark.slow
def test_builtin_driving_trains_and_tests_on_real_frames_of_later_episodes(tmp_path):
    out = tmp_path / "runs"
    assert run_cli("train", "steering", "--epochs", 1, "--output", out, "--quiet", *TINY) == 0
    (run_dir,) = (out / "steering").iterdir()
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["n_samples"] == 152  # the 152 real frames of test episodes 219-259
    assert metrics["baseline"]["metrics"]["r2"] > 0.9  # the ridge bar is high on this road
    splits = json.loads((run_dir / "splits.json").read_text())
    assert not set(splits["train"]) & set(splits["test"])


@pytest.mark.slow
def test_transfer_both_ways(udacity_run, digits_run, tmp_path, class_folder):
    run_dir, root = udacity_run
    assert run_cli("train", "image-classification", "--data", class_folder, "--epochs", 1,
                   "--backbone-from", run_dir, "--output", tmp_path / "a", "--quiet") == 0
    (image_run,) = (tmp_path / "a" / "image-classification").iterdir()
    lineage = json.loads((image_run / "config.json").read_text())["lineage"]
    assert lineage["task"] == "steering" and lineage["run_dir"] == str(run_dir)
    assert run_cli("train", "steering", "--data", root, "--epochs", 1, "--backbone-from", digits_run,
                   "--output", tmp_path / "b", "--quiet", "--set", "head_units=[8]") == 0
    (steering_run,) = (tmp_path / "b" / "steering").iterdir()
    saved = json.loads((steering_run / "config.json").read_text())
    assert saved["lineage"]["task"] == "image-classification" and saved["backbone"]["name"] == "basic_cnn"


def test_unknown_builtin_is_a_user_error(tmp_path):
    from tasks.steering import readers

    with pytest.raises(UserError, match="builtin:driving"):
        readers.load("builtin:roads")
