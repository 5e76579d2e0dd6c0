import numpy as np
import pytest

from conftest import shared_dataset, write_png
from pipelines.errors import UserError
from pipelines.image_files import ImageFiles
from tasks.image_classification import readers


def test_class_folder(class_folder):
    data = readers.load(str(class_folder))
    assert isinstance(data.x, ImageFiles)  # read lazily: paths in memory, pixels on demand
    assert data.x.shape == (24, 12, 12, 3) and data.x.dtype == np.float32
    pixels = data.x.load()
    assert pixels.shape == (24, 12, 12, 3) and 0 <= pixels.min() and pixels.max() <= 1
    assert data.info["class_names"] == ["bottom", "top"]
    assert np.bincount(data.y).tolist() == [12, 12]


def test_folder_with_its_own_splits_and_resizing(tmp_path):
    for split in ("train", "test"):
        for label in ("a", "b"):
            for i in range(3):
                write_png(tmp_path / split / label / f"{i}.png", np.full((10 + i, 9, 3), 40 * i))
    data = readers.load(str(tmp_path), image_size=16)
    assert data.x.shape == (12, 16, 16, 3)
    assert len(data.declared_splits["train"]) == 6 and len(data.declared_splits["test"]) == 6


def test_csv_manifest_with_split_column(tmp_path, class_folder):
    rows = ["path,label,split"] + [f"shapes/top/top_{i}.png,up,{'test' if i < 4 else 'train'}"
                                   for i in range(12)]
    rows += [f"shapes/bottom/bottom_{i}.png,down,{'test' if i < 4 else 'train'}" for i in range(12)]
    manifest = tmp_path / "images.csv"
    manifest.write_text("\n".join(rows) + "\n")
    data = readers.load(str(manifest))
    assert data.info["class_names"] == ["down", "up"] and len(data) == 24
    assert len(data.declared_splits["test"]) == 8


def test_csv_refuses_paths_outside_the_dataset(tmp_path, class_folder):
    inner = tmp_path / "inner"
    inner.mkdir()
    (inner / "m.csv").write_text("path,label\n../shapes/top/top_0.png,a\n")
    with pytest.raises(UserError, match=r"m.csv:2: .* points outside"):
        readers.load(str(inner / "m.csv"))


def test_csv_missing_image_names_the_line(tmp_path):
    (tmp_path / "m.csv").write_text("path,label\nnope.png,a\n")
    with pytest.raises(UserError, match=r"m.csv:2: image nope.png not found"):
        readers.load(str(tmp_path / "m.csv"))


def test_npz_uint8_and_float(tmp_path):
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "u8.npz", x=rng.integers(0, 256, (20, 8, 8), dtype=np.uint8), y=np.arange(20) % 2)
    data = readers.load(str(tmp_path / "u8.npz"))
    assert data.x.shape == (20, 8, 8, 1) and data.x.max() <= 1 and data.info["input_scale"] == 255
    np.savez(tmp_path / "f.npz", x=rng.random((20, 8, 8, 3)), y=np.array(["cat", "dog"] * 10))
    data = readers.load(str(tmp_path / "f.npz"))
    assert data.info["class_names"] == ["cat", "dog"] and data.x.shape[-1] == 3


def test_medmnist_style_npz_keeps_its_splits(tmp_path):
    rng = np.random.default_rng(0)
    arrays = {}
    for split, n in (("train", 10), ("val", 4), ("test", 6)):
        arrays[f"{split}_images"] = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        arrays[f"{split}_labels"] = (np.arange(n) % 2).reshape(-1, 1)
    np.savez(tmp_path / "med.npz", **arrays)
    data = readers.load(str(tmp_path / "med.npz"))
    assert {k: len(v) for k, v in data.declared_splits.items()} == {"train": 10, "val": 4, "test": 6}


def test_pneumoniamnist_class_folders_read():
    root = shared_dataset("pneumoniamnist")
    data = readers.load(str(root))
    assert data.x.shape == (1000, 28, 28, 1)
    assert data.info["class_names"] == ["NORMAL", "PNEUMONIA"]


def test_a_manifest_that_is_not_utf8_names_the_line(tmp_path):
    write_png(tmp_path / "a.png", np.zeros((4, 4), np.uint8))
    (tmp_path / "m.csv").write_bytes(b"path,label\na.png,cat\na.png,caf\xe9\n")
    with pytest.raises(UserError, match=r"m\.csv, line 3: not valid utf-8"):
        readers.load(str(tmp_path / "m.csv"))
