"""NIfTI reading, per-volume normalisation, slicing, and masks written with the input's affine."""

import gzip

import nibabel as nib
import numpy as np
import pytest

from conftest import shared_dataset
from pipelines import runs
from pipelines.errors import UserError
from tasks.medical_segmentation import volumes


def _save(path, data, spacing=(1.0, 1.0, 2.0)):
    affine = np.diag([*spacing, 1.0])
    affine[:3, 3] = (5.0, -3.0, 1.0)
    nib.save(nib.Nifti1Image(np.asarray(data), affine), str(path))
    return affine


def test_read_keeps_affine_and_spacing(tmp_path):
    data = np.arange(4 * 5 * 6, dtype=np.float32).reshape(4, 5, 6)
    affine = _save(tmp_path / "case_001.nii.gz", data)
    volume = volumes.read_volume(tmp_path / "case_001.nii.gz")
    np.testing.assert_array_equal(volume.data, data)
    np.testing.assert_allclose(volume.affine, affine)
    assert volume.spacing == (1.0, 1.0, 2.0)
    assert volumes.case_id(tmp_path / "case_001.nii.gz") == "case_001"


def test_corrupt_and_4d_files_are_named(tmp_path):
    (tmp_path / "bad.nii.gz").write_bytes(gzip.compress(b"not a nifti header at all" * 20))
    with pytest.raises(UserError, match="bad.nii.gz: cannot read this NIfTI file"):
        volumes.read_volume(tmp_path / "bad.nii.gz")
    _save(tmp_path / "four.nii.gz", np.zeros((3, 3, 3, 2), np.float32))
    with pytest.raises(UserError, match="four.nii.gz: expected a 3D volume, got 4D"):
        volumes.read_volume(tmp_path / "four.nii.gz")


def test_labels_must_be_integers(tmp_path):
    _save(tmp_path / "lab.nii.gz", np.full((2, 2, 2), 0.5, np.float32))
    with pytest.raises(UserError, match="integer class ids"):
        volumes.read_volume(tmp_path / "lab.nii.gz", integer=True)
    _save(tmp_path / "ok.nii.gz", np.full((2, 2, 2), 2.0, np.float32))
    assert volumes.read_volume(tmp_path / "ok.nii.gz", integer=True).data.dtype == np.int16


def test_normalisation_per_volume_ignores_the_storage_scale():
    rng = np.random.default_rng(0)
    base = rng.random((6, 6, 6))
    small, huge = (base * 110).astype(np.uint8), (base * 1.7e6).astype(np.float32)
    a, b = volumes.normalize(small), volumes.normalize(huge)
    assert abs(a.mean()) < 1e-5 and abs(a.std() - 1) < 1e-4
    np.testing.assert_allclose(a, b, atol=0.05)
    windowed = volumes.normalize(np.array([-1000.0, 0.0, 100.0, 3000.0]), method="window",
                                 window=(-100, 300))
    np.testing.assert_allclose(windowed, [0.0, 0.25, 0.5, 1.0])
    with pytest.raises(UserError, match="low < high"):
        volumes.normalize(base, method="window", window=(5, 1))


def test_slices_round_trip_on_every_axis():
    volume = np.arange(24).reshape(2, 3, 4)
    for axis in (0, 1, 2):
        slices = volumes.to_slices(volume, axis)
        assert slices.shape[0] == volume.shape[axis]
        np.testing.assert_array_equal(volumes.from_slices(slices, axis), volume)


def test_written_mask_keeps_shape_and_affine(tmp_path):
    affine = _save(tmp_path / "scan.nii.gz", np.zeros((4, 5, 6), np.float32))
    scan = volumes.read_volume(tmp_path / "scan.nii.gz")
    mask = np.zeros((4, 5, 6), np.uint8)
    mask[1:3, 2:4, 3:5] = 2
    volumes.write_mask(mask, scan, tmp_path / "out" / "scan_mask.nii.gz", runs.write_bytes)
    written = nib.load(str(tmp_path / "out" / "scan_mask.nii.gz"))
    np.testing.assert_allclose(written.affine, affine)
    np.testing.assert_array_equal(np.asarray(written.dataobj), mask)


def test_real_hippocampus_volumes_read():
    root = shared_dataset("msd_hippocampus")
    image = volumes.read_volume(root / "imagesTr" / "hippocampus_003.nii.gz")
    label = volumes.read_volume(root / "labelsTr" / "hippocampus_003.nii.gz", integer=True)
    assert image.data.shape == label.data.shape and set(np.unique(label.data)) == {0, 1, 2}
    assert image.spacing == (1.0, 1.0, 1.0)
