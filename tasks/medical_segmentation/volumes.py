"""NIfTI volumes: reading with nibabel, per-volume intensity normalisation, slicing to 2D.

The stored dtype and intensity range vary from volume to volume (MSD hippocampus mixes uint8
volumes peaking near 110 with float32 ones near 1.7 million), so every volume is normalised on
its own: z-score over the volume (default) or a fixed window (CT Hounsfield units) scaled to [0, 1].
"""

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipelines.errors import UserError

NIFTI_SUFFIXES = (".nii", ".nii.gz")


def is_nifti(path):
    return str(path).lower().endswith(NIFTI_SUFFIXES)


def case_id(path):
    """``hippocampus_003.nii.gz`` -> ``hippocampus_003``."""
    name = Path(path).name
    for suffix in NIFTI_SUFFIXES:
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return Path(path).stem


@dataclass
class Volume:
    data: np.ndarray  # 3D array as stored (x, y, z)
    affine: np.ndarray  # 4x4 voxel -> world
    spacing: tuple  # voxel size in mm along each axis
    path: str
    header: object = None  # the nibabel header, kept to write masks like the input


def read_volume(path, *, integer=False):
    """A 3D NIfTI volume; corrupt files and non-3D volumes are UserErrors naming the file."""
    import nibabel as nib

    path = Path(path)
    try:
        image = nib.load(str(path))
        data = np.asanyarray(image.dataobj)
    except Exception as error:  # nibabel raises many types (ImageFileError, EOFError, zlib...)
        raise UserError(f"{path}: cannot read this NIfTI file ({type(error).__name__}: "
                        f"{str(error).strip().splitlines()[0] if str(error).strip() else 'corrupt'})") from None
    if data.ndim == 4 and data.shape[-1] == 1:
        data = data[..., 0]
    if data.ndim != 3:
        raise UserError(f"{path}: expected a 3D volume, got {data.ndim}D with shape {data.shape}")
    if integer:
        rounded = np.rint(data)
        if not np.allclose(rounded, data):
            raise UserError(f"{path}: a label volume must hold integer class ids")
        data = rounded.astype(np.int16)
    spacing = tuple(float(s) for s in image.header.get_zooms()[:3])
    return Volume(np.asarray(data), np.asarray(image.affine, float), spacing, str(path), image.header)


def normalize(volume, *, method="zscore", window=None):
    """float32 intensities: z-score over the volume, or ``window=(low, high)`` clipped to [0, 1]."""
    volume = np.asarray(volume, np.float32)
    if method == "window":
        if not window or len(window) != 2 or window[0] >= window[1]:
            raise UserError("intensity window must be [low, high] with low < high "
                            "(e.g. --set intensity_window=[-100,240])")
        low, high = float(window[0]), float(window[1])
        return (np.clip(volume, low, high) - low) / (high - low)
    if method != "zscore":
        raise UserError(f"--set normalization={method}: choose zscore or window")
    std = float(volume.std())
    return (volume - float(volume.mean())) / (std if std > 0 else 1.0)


def to_slices(volume, axis):
    """(n_slices, h, w) views of a 3D array along ``axis`` (0, 1 or 2)."""
    return np.moveaxis(np.asarray(volume), axis, 0)


def from_slices(slices, axis):
    """Inverse of :func:`to_slices`: stack 2D slices back into a volume."""
    return np.moveaxis(np.asarray(slices), 0, axis)


def write_mask(mask, like, path, write_bytes):
    """Write ``mask`` as NIfTI with the affine and header of the volume ``like``, atomically."""
    import nibabel as nib

    header = like.header.copy() if like.header is not None else None
    image = nib.Nifti1Image(np.asarray(mask, np.uint8), like.affine, header=header)
    image.set_data_dtype(np.uint8)
    if header is not None:
        image.header.set_slope_inter(1, 0)
    data = image.to_bytes()
    if str(path).lower().endswith(".gz"):
        import gzip

        data = gzip.compress(data, mtime=0)
    write_bytes(Path(path), data)
