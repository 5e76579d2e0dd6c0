"""Segmentation readers: images/masks folders, MSD NIfTI folders, phantoms; bad input named."""

import json

import nibabel as nib
import numpy as np
import pytest

from conftest import shared_dataset, write_png
from pipelines.errors import UserError
from tasks.medical_segmentation import readers


def _pair(root, stem, mask, image=None, mask_suffix=".png"):
    image = np.full(mask.shape, 100, np.uint8) if image is None else image
    write_png(root / "images" / f"{stem}.png", image)
    write_png(root / "masks" / f"{stem}{mask_suffix}", mask)


def test_binary_0_255_masks_become_0_1(tmp_path):
    mask = np.zeros((8, 10), np.uint8)
    mask[2:5, 3:7] = 255
    _pair(tmp_path, "a", mask)
    (case,) = readers.load_image_mask_folders(tmp_path)
    assert case.case_id == "a" and case.image.shape == (8, 10, 1)
    assert case.mask.dtype == np.int16 and set(np.unique(case.mask)) == {0, 1}
    assert case.mask.sum() == 12


def test_label_index_masks_are_kept_and_checked(tmp_path):
    mask = np.zeros((6, 6), np.uint8)
    mask[1:3, 1:3], mask[4:, 4:] = 1, 2
    _pair(tmp_path, "b", mask)
    (case,) = readers.load_image_mask_folders(tmp_path, n_classes=3)
    assert set(np.unique(case.mask)) == {0, 1, 2}
    with pytest.raises(UserError, match=r"b.png: label values \[2\] are outside the declared classes 0..1"):
        readers.load_image_mask_folders(tmp_path, n_classes=2)


def test_image_without_mask_and_shape_mismatch_are_named(tmp_path):
    write_png(tmp_path / "images" / "lonely.png", np.zeros((4, 4), np.uint8))
    (tmp_path / "masks").mkdir()
    with pytest.raises(UserError, match="lonely.png: no mask with the same name"):
        readers.load_image_mask_folders(tmp_path)
    _pair(tmp_path / "second", "c", np.zeros((5, 5), np.uint8), image=np.zeros((6, 5), np.uint8))
    with pytest.raises(UserError, match=r"c.png: mask is 5x5 but its image is 5x6"):
        readers.load_image_mask_folders(tmp_path / "second")


def _nifti(path, data):
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(np.asarray(data), np.eye(4)), str(path))


def test_msd_layout_pairs_cases_and_checks_shapes(tmp_path):
    volume = np.random.default_rng(0).random((6, 7, 5)).astype(np.float32)
    label = np.zeros((6, 7, 5), np.uint8)
    label[2:4, 2:4, 1:3] = 1
    _nifti(tmp_path / "imagesTr" / "case_001.nii.gz", volume)
    _nifti(tmp_path / "labelsTr" / "case_001.nii.gz", label)
    (tmp_path / "dataset.json").write_text(json.dumps({"labels": {"0": "background", "1": "organ"}}))
    (case,) = readers.load_msd(tmp_path, n_classes=2)
    assert case.case_id == "case_001" and case.mask.shape == (6, 7, 5) and case.spacing == (1.0, 1.0, 1.0)
    assert readers.read_dataset_json(tmp_path) == ["background", "organ"]
    _nifti(tmp_path / "labelsTr" / "case_001.nii.gz", label[:5])
    with pytest.raises(UserError, match=r"case_001.nii.gz: label shape \(5, 7, 5\) differs"):
        readers.load_msd(tmp_path)
    _nifti(tmp_path / "labelsTr" / "case_001.nii.gz", label)
    _nifti(tmp_path / "imagesTr" / "case_002.nii.gz", volume)
    with pytest.raises(UserError, match="case_002.nii.gz: no label volume"):
        readers.load_msd(tmp_path)


def test_phantoms_hold_both_structures():
    cases = readers.phantoms(n=4, size=32, seed=1)
    assert len(cases) == 4 and cases[0].image.shape == (32, 32, 1)
    for case in cases:
        assert {1, 2} <= set(np.unique(case.mask)) and 0 <= case.image.min() <= case.image.max() <= 1
    again = readers.phantoms(n=4, size=32, seed=1)
    np.testing.assert_array_equal(cases[2].mask, again[2].mask)


def test_real_nuclei_masks_are_binary():
    from pipelines import imaging

    root = shared_dataset("dsb2018_nuclei")
    first = sorted((root / "masks").iterdir())[0]
    mask = readers.read_mask(first)
    assert set(np.unique(mask)) == {0, 1}
    assert mask.shape == imaging.read_image(root / "images" / first.name).shape[:2]


def test_hippocampus_ships_with_its_licence_and_loads_as_the_default():
    from pipelines.data import SHIPPED_DATA
    from tasks.medical_segmentation.task import MedicalSegmentationConfig

    assert MedicalSegmentationConfig().data == "builtin:hippocampus"
    cases, names, description = readers.load_builtin("builtin:hippocampus")
    assert len(cases) == 200 and names == ["background", "Anterior", "Posterior"]
    assert all(c.mask.ndim == 3 and c.spacing == (1.0, 1.0, 1.0) for c in cases[:5])
    assert {0, 1, 2} == set(np.unique(cases[0].mask))
    assert "CC BY-SA 4.0" in (SHIPPED_DATA / "hippocampus" / "SOURCE.txt").read_text()
    assert "CC BY-SA" in description


def test_unknown_builtin_names_the_known_ones():
    with pytest.raises(UserError, match="builtin:hippocampus, builtin:phantoms"):
        readers.load_builtin("builtin:liver")


def test_file_cases_hold_no_pixels_and_stream_what_memory_holds(tmp_path):
    """Images and volumes are read when needed (masks stay in memory: they choose the slices);
    streamed training examples are the ones the memory cache holds, in the same order."""
    from pipelines.inputs import tf_dataset
    from pipelines.tasks import get_task

    rng = np.random.default_rng(0)
    for i in range(3):
        label = np.zeros((12, 10, 6), np.uint8)
        label[3:8, 2:6, 1 + i:4] = 1
        _nifti(tmp_path / "imagesTr" / f"case_{i}.nii.gz", rng.random((12, 10, 6)).astype(np.float32) * 50)
        _nifti(tmp_path / "labelsTr" / f"case_{i}.nii.gz", label)
    task = get_task("medical-segmentation")
    config = task.Config(image_size=16)
    dataset = task.load(str(tmp_path), config)
    cases = dataset.x
    assert all(callable(case.pixels) for case in cases) and cases[0].volume.data is None
    np.testing.assert_array_equal(cases[0].image, np.asarray(nib.load(cases[0].source).dataobj))
    info = task.fit_preprocessing(dataset, config, 8)
    stream, targets = task.encode(dataset, info)
    images, masks = stream.load()
    assert 6 <= len(images) == len(masks) == len(targets) == len(stream) < 18  # labelled, some empty
    assert images.shape[1:] == (16, 16, 1) and masks.max() == 1
    streamed = list(tf_dataset(stream, targets, batch_size=5, training=False, cache="none"))
    np.testing.assert_array_equal(np.concatenate([x.numpy() for x, _ in streamed]), images)
    np.testing.assert_array_equal(np.concatenate([y.numpy() for _, y in streamed]), masks)
