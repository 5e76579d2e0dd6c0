"""Image files read lazily: the tf.data route and the indexing route give the same pixels, the
pipeline streams them once per epoch, and a seed still gives one run."""

import csv
import json

import numpy as np
import pytest
from PIL import Image

from conftest import run_cli, write_png
from pipelines import imaging
from pipelines.image_files import ImageFiles, baseline_sample, lazy_or_loaded
from pipelines.inputs import cache_mode, tf_dataset


@pytest.fixture
def mixed_files(tmp_path):
    """Gray and RGB(A) PNGs, a JPEG and a BMP of two sizes: channel fitting and resizing."""
    rng = np.random.default_rng(3)
    paths = []
    for i, (shape, kind) in enumerate([((12, 12), "L"), ((12, 12, 3), "RGB"), ((20, 16, 4), "RGBA"),
                                       ((20, 16), "L"), ((12, 12, 3), "RGB")]):
        image = Image.fromarray(rng.integers(0, 256, shape).astype(np.uint8), kind)
        suffix = {0: ".png", 1: ".png", 2: ".png", 3: ".jpg", 4: ".bmp"}[i]
        path = tmp_path / f"image_{i}{suffix}"
        image.save(path, quality=90) if suffix == ".jpg" else image.save(path)
        paths.append(path)
    return paths


def _graph_pixels(files):
    import tensorflow as tf

    decode = files.graph_decoder()
    return np.stack([decode(tf.constant(str(p))).numpy() for p in files.paths])


@pytest.mark.parametrize("size, channels, net_channels, net_size",
                         [(None, None, 3, 24), (16, 1, 1, 16), (None, None, 1, 8)])
def test_tf_data_decoding_matches_indexing(mixed_files, size, channels, net_channels, net_size):
    files = ImageFiles.scan(mixed_files, size=size, channels=channels)
    assert files.shape[1:] == (size or 64, size or 64, channels or 3)  # mixed sizes meet at 64
    view = files.at(net_channels, net_size)
    np.testing.assert_allclose(_graph_pixels(view), view.load(), atol=1e-5)


def test_both_routes_give_exactly_what_the_in_memory_reader_gave(mixed_files):
    """Not merely close: an ulp of difference in the input changes a training run (a 10-epoch
    digits folder run gave 0.950 against 0.964 before decoding divided by 255 as Pillow's does)."""
    eager = imaging.stack_images(mixed_files[:2])  # PNGs of one size: gray and RGB
    files = ImageFiles.scan(mixed_files[:2])
    assert np.array_equal(files.load(), eager) and np.array_equal(_graph_pixels(files), eager)
    assert files[1].shape == files.shape[1:] and len(files.take([1])) == 1


def test_tiff_files_are_read_into_memory_as_before(tmp_path):
    write_png(tmp_path / "a.png", np.zeros((4, 4)))
    Image.fromarray(np.zeros((4, 4), np.uint8)).save(tmp_path / "b.tif")
    assert isinstance(lazy_or_loaded([tmp_path / "a.png"]), ImageFiles)
    assert isinstance(lazy_or_loaded([tmp_path / "a.png", tmp_path / "b.tif"]), np.ndarray)


def test_a_corrupt_file_is_named_before_training(tmp_path, capsys):
    for label in ("a", "b"):
        for i in range(3):
            write_png(tmp_path / label / f"{i}.png", np.full((6, 6), 50 * i))
    (tmp_path / "b" / "2.png").write_bytes(b"not a png")
    assert run_cli("train", "image-classification", "--data", tmp_path, "--output", tmp_path / "o") == 2
    assert "2.png: cannot decode image" in capsys.readouterr().err
    write_png(tmp_path / "b" / "2.png", np.random.default_rng(0).integers(0, 256, (32, 32)))
    whole = (tmp_path / "b" / "2.png").read_bytes()  # a valid header, the pixel data cut short:
    (tmp_path / "b" / "2.png").write_bytes(whole[:len(whole) * 3 // 4])  # Pillow opens it
    assert run_cli("train", "image-classification", "--data", tmp_path, "--output", tmp_path / "o") == 2
    assert "2.png: cannot decode image" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_a_jpeg_cut_short_is_named_and_one_with_appended_data_is_not(tmp_path):
    from pipelines.errors import UserError

    pixels = np.random.default_rng(1).integers(0, 256, (48, 48, 3)).astype(np.uint8)
    Image.fromarray(pixels).save(tmp_path / "whole.jpg", quality=90)
    whole = (tmp_path / "whole.jpg").read_bytes()
    (tmp_path / "trailer.jpg").write_bytes(whole + b"appended data, such as a motion photo's video")
    (tmp_path / "cut.jpg").write_bytes(whole[:len(whole) * 2 // 3])  # the header intact
    files = ImageFiles.scan([tmp_path / "whole.jpg", tmp_path / "trailer.jpg"])
    assert len(files) == 2
    with pytest.raises(UserError, match=r"cut.jpg: cannot decode image"):
        ImageFiles.scan([tmp_path / "whole.jpg", tmp_path / "cut.jpg"])


def _epochs(dataset, count):
    return [np.concatenate([y.numpy() for _, y in dataset]) for _ in range(count)]


@pytest.mark.parametrize("cache", ["memory", "none", "disk"])
def test_each_file_once_per_epoch_reshuffled_and_seeded(tmp_path, cache):
    paths = []
    for i in range(40):
        write_png(tmp_path / f"{i}.png", np.full((4, 4), i))
        paths.append(tmp_path / f"{i}.png")
    files = ImageFiles.scan(paths)
    labels = np.arange(40)

    def make(seed, name):
        return tf_dataset(files, labels, batch_size=8, training=True, seed=seed, cache=cache,
                          cache_dir=tmp_path / f"cache_{name}")

    first, again = _epochs(make(0, "a"), 2), _epochs(make(0, "b"), 2)
    for epoch in first:
        assert sorted(epoch.tolist()) == list(range(40))  # every file once, none twice
    assert not np.array_equal(first[0], first[1])  # reshuffled each epoch
    assert all(np.array_equal(a, b) for a, b in zip(first, again))  # same seed, same order
    assert not np.array_equal(_epochs(make(1, "c"), 1)[0], first[0])


def test_auto_cache_keeps_small_data_in_memory_and_streams_large():
    class Large:
        nbytes = 3 * 1024 ** 3

        def graph_decoder(self):
            return None

    assert cache_mode("auto", np.zeros((4, 2))) == "memory"
    assert cache_mode("auto", Large()) == "none"
    assert cache_mode("disk", Large()) == "disk"
    assert cache_mode(True, Large()) == "memory" and cache_mode(False, None) == "none"  # old runs


def test_the_pixel_baseline_takes_a_stratified_sample_when_pixels_would_not_fit():
    labels = np.repeat([0, 1, 2], [600, 300, 100])
    assert len(baseline_sample(labels, nbytes=100, seed=0, budget=1000)) == 1000
    chosen = baseline_sample(labels, nbytes=4000, seed=0, budget=1000)
    assert len(chosen) == 250 and np.bincount(labels[chosen]).tolist() == [150, 75, 25]
    assert np.array_equal(chosen, baseline_sample(labels, nbytes=4000, seed=0, budget=1000))


@pytest.mark.slow
def test_a_folder_run_streams_files_and_the_same_seed_gives_the_same_run(class_folder, tmp_path):
    histories = []
    for name in ("one", "two"):
        assert run_cli("train", "image-classification", "--data", class_folder, "--epochs", 3,
                       "--output", tmp_path / name, "--quiet", "--set", "cache=none",
                       "--set", "backbone_options.widths=[4,8,8]") == 0
        (run_dir,) = (tmp_path / name / "image-classification").iterdir()
        with (run_dir / "history.csv").open() as handle:  # all but wall time (seconds)
            histories.append([{k: v for k, v in row.items() if k != "seconds"} for row in csv.DictReader(handle)])
        assert json.loads((run_dir / "config.json").read_text())["config"]["cache"] == "none"
        assert not (run_dir / "cache").exists()
    assert histories[0] == histories[1]
