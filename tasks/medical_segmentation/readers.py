"""Segmentation data as cases: 2D images/masks folders, MSD NIfTI folders, synthetic phantoms.

A *case* is the unit of splitting and of metrics (one volume or patient, or one 2D image), so
slices of one volume never land in both training and test. Masks hold class ids 0..K-1
(0 = background); binary 0/255 masks become 0/1. Masks stay in memory (integers, and the
training slices are chosen from them); images read from files are read again each time they are
needed, so a dataset larger than memory trains (every file is read once when loading, to name a
broken one before training).
"""

import functools
import json
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from pipelines import imaging
from pipelines.data import builtin_name, shipped_path
from pipelines.errors import UserError
from tasks.medical_segmentation import volumes


BUILTIN = {
    "hippocampus": "MSD Task04 hippocampus MRI, 200 volumes (anterior, posterior; CC BY-SA 4.0)",
    "phantoms": "synthetic phantoms (96 64x64 images: body, organ, lesion)",
    "phantoms3d": "synthetic volume phantoms (40 volumes of about 20x24x20 voxels: body, organ, lesion)",
}


@dataclass
class Case:
    case_id: str
    pixels: object  # the image, or a function of no arguments that reads it (see image)
    mask: np.ndarray  # (H, W) or (X, Y, Z) integer class ids
    spacing: tuple = None  # mm per voxel (None: pixels)
    source: str = ""  # the image file
    volume: object = None  # volumes.Volume of the image (header and affine, no data), for NIfTI output
    extra: dict = field(default_factory=dict)

    @property
    def image(self):
        """2D: (H, W, C) in [0, 1]; 3D: the stored volume (X, Y, Z). Read now if lazy."""
        return self.pixels() if callable(self.pixels) else self.pixels


def read_mask(path):
    """A 2D mask file as class ids; 0/255 (or 0/max) binary masks become 0/1."""
    mask = imaging.read_image(path, channels=1)[..., 0]
    values = np.unique(mask)
    if len(values) <= 2 and values.max() > 0 and np.isclose(values.max(), 1.0):
        return (mask > 0.5).astype(np.int16)
    ids = np.rint(mask * 255.0)
    return ids.astype(np.int16)


def check_labels(mask, n_classes, where):
    if n_classes is not None and (mask.min() < 0 or mask.max() >= n_classes):
        bad = sorted(int(v) for v in np.unique(mask) if v < 0 or v >= n_classes)
        raise UserError(f"{where}: label values {bad} are outside the declared classes 0..{n_classes - 1}")


def load_image_mask_folders(root, *, n_classes=None, image_dir="images", mask_dir="masks"):
    """``root/images/*`` and ``root/masks/*`` with matching stems (PNG/JPG/TIFF)."""
    images_root, masks_root = Path(root) / image_dir, Path(root) / mask_dir
    for folder in (images_root, masks_root):
        if not folder.is_dir():
            raise UserError(f"{root}: expected {image_dir}/ and {mask_dir}/ folders (missing {folder.name}/)")
    images = {p.stem: p for p in sorted(images_root.iterdir()) if p.suffix.lower() in imaging.IMAGE_SUFFIXES}
    masks = {p.stem: p for p in sorted(masks_root.iterdir()) if p.suffix.lower() in imaging.IMAGE_SUFFIXES}
    if not images:
        raise UserError(f"{images_root}: no images ({', '.join(sorted(imaging.IMAGE_SUFFIXES))})")
    for stem, path in images.items():
        if stem not in masks:
            raise UserError(f"{path}: no mask with the same name in {masks_root}")
    cases = []
    for stem, path in images.items():
        image, mask = imaging.read_image(path), read_mask(masks[stem])
        if image.shape[:2] != mask.shape:
            raise UserError(f"{masks[stem]}: mask is {mask.shape[1]}x{mask.shape[0]} but its image "
                            f"is {image.shape[1]}x{image.shape[0]}")
        check_labels(mask, n_classes, masks[stem])
        cases.append(Case(stem, functools.partial(imaging.read_image, path), mask, None, str(path)))
    return cases


def read_dataset_json(root):
    """Label names from an MSD ``dataset.json`` ({"0": "background", ...}), or None."""
    path = Path(root) / "dataset.json"
    if not path.is_file():
        return None
    try:
        labels = json.loads(path.read_text(encoding="utf-8"))["labels"]
        return [labels[str(i)] for i in range(len(labels))]
    except (ValueError, KeyError, TypeError) as error:
        raise UserError(f"{path}: cannot read the label names ({error.__class__.__name__}: {error})") from None


def load_msd(root, *, n_classes=None):
    """``imagesTr/*.nii.gz`` + ``labelsTr/*.nii.gz`` (Medical Segmentation Decathlon layout)."""
    root = Path(root)
    images = {volumes.case_id(p): p for p in sorted((root / "imagesTr").iterdir()) if volumes.is_nifti(p)
              and not p.name.startswith(".")}
    labels = {volumes.case_id(p): p for p in sorted((root / "labelsTr").iterdir()) if volumes.is_nifti(p)
              and not p.name.startswith(".")}
    if not images:
        raise UserError(f"{root / 'imagesTr'}: no .nii/.nii.gz volumes")
    cases = []
    for case, path in images.items():
        if case not in labels:
            raise UserError(f"{path}: no label volume {case}.nii.gz in {root / 'labelsTr'}")
        image = volumes.read_volume(path)
        label = volumes.read_volume(labels[case], integer=True)
        if image.data.shape != label.data.shape:
            raise UserError(f"{labels[case]}: label shape {label.data.shape} differs from its image's "
                            f"{image.data.shape}")
        check_labels(label.data, n_classes, labels[case])
        cases.append(Case(case, functools.partial(_volume_data, path), label.data, image.spacing, str(path),
                          replace(image, data=None)))
    return cases


def _volume_data(path):
    return volumes.read_volume(path).data


def load_builtin(spec, *, n_classes=None):
    """(cases, class names, description) of ``builtin:hippocampus`` (shipped in data/) or
    ``builtin:phantoms`` (generated)."""
    name = builtin_name(spec, BUILTIN, "medical-segmentation")
    if name in ("phantoms", "phantoms3d"):
        return (phantoms() if name == "phantoms" else phantoms3d()), ["background", "organ", "lesion"], BUILTIN[name]
    root = shipped_path(spec, "hippocampus")
    return load_msd(root, n_classes=n_classes), read_dataset_json(root), BUILTIN[name]


def phantoms3d(n=40, seed=0):
    """Synthetic 3D 'scans' of varied shapes (1 mm voxels): a body, an organ (class 1) and a
    lesion inside it (class 2), intensities in arbitrary scanner units, so 3D mode, patches and
    sliding windows are exercised without data files."""
    rng = np.random.default_rng(seed)
    cases = []
    for i in range(n):
        shape = tuple(int(s) for s in rng.integers((18, 22, 18), (24, 28, 24)))
        grid = np.stack(np.meshgrid(*[np.arange(s) / s for s in shape], indexing="ij"), axis=-1)
        centre = rng.uniform(0.4, 0.6, 3)
        body = (((grid - centre) / (0.4, 0.36, 0.4)) ** 2).sum(-1) < 1
        organ_at, organ_radii = centre + rng.uniform(-0.08, 0.08, 3), rng.uniform(0.2, 0.28, 3)
        organ = ((((grid - organ_at) / organ_radii) ** 2).sum(-1) < 1) & body
        lesion_at = organ_at + rng.uniform(-0.05, 0.05, 3)
        lesion = (((grid - lesion_at) ** 2).sum(-1) < rng.uniform(0.08, 0.11) ** 2) & organ
        image = 200 + 600 * body + 300 * organ - 250 * lesion + rng.normal(0, 60, shape)
        mask = np.where(lesion, 2, np.where(organ, 1, 0)).astype(np.int16)
        cases.append(Case(f"phantom3d_{i:03d}", image.astype(np.float32), mask, spacing=(1.0, 1.0, 1.0)))
    return cases


def phantoms(n=96, size=64, seed=0):
    """Synthetic 2D 'scans': a bright body with an inner organ (class 1) and a lesion (class 2)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / size
    cases = []
    for i in range(n):
        cy, cx = rng.uniform(0.4, 0.6, 2)
        body = ((yy - cy) / 0.38) ** 2 + ((xx - cx) / 0.32) ** 2 < 1
        oy, ox, ry, rx = cy + rng.uniform(-0.1, 0.1), cx + rng.uniform(-0.1, 0.1), *rng.uniform(0.08, 0.16, 2)
        organ = (((yy - oy) / ry) ** 2 + ((xx - ox) / rx) ** 2 < 1) & body
        ly, lx, r = oy + rng.uniform(-0.05, 0.05), ox + rng.uniform(-0.05, 0.05), rng.uniform(0.03, 0.06)
        lesion = ((yy - ly) ** 2 + (xx - lx) ** 2 < r ** 2) & organ
        image = 0.15 + 0.35 * body + 0.25 * organ - 0.2 * lesion + rng.normal(0, 0.06, (size, size))
        mask = np.where(lesion, 2, np.where(organ, 1, 0)).astype(np.int16)
        cases.append(Case(f"phantom_{i:03d}", np.clip(image, 0, 1).astype(np.float32)[..., None], mask))
    return cases
