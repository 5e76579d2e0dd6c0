"""Image-classification data: builtin digits, class-folder trees, CSV manifests, .npz arrays.

Every reader returns a :class:`pipelines.data.Dataset` whose ``x`` is float32 (N, H, W, C) in
[0, 1] (image files: :class:`pipelines.image_files.ImageFiles`, read lazily, which indexes like
such an array) and ``y`` integer class ids, with ``info["class_names"]``. Splits the data gives itself
(``train/``+``test/`` folders, a ``split`` column, MedMNIST-style arrays) are kept.
"""

from pathlib import Path

import numpy as np

from pipelines import imaging
from pipelines.data import (SPLIT_NAMES, Dataset, builtin_name, labelled_arrays,
                            manifest_rows, npz_class_names, require_two_classes, split_indices)
from pipelines.errors import UserError
from pipelines.image_files import lazy_or_loaded

def load(spec, *, image_size=None, channels=None, path_column="path", label_column="label"):
    if spec.startswith("builtin:"):
        builtin_name(spec, ("digits",), "image-classification")
        return load_digits()
    path = Path(spec)
    if not path.exists():
        raise UserError(f"--data {spec}: no such file or folder")
    if path.is_dir():
        return load_folder(path, image_size=image_size, channels=channels)
    suffix = path.suffix.lower()
    if suffix in (".csv", ".tsv"):
        return load_csv(path, image_size=image_size, channels=channels,
                        path_column=path_column, label_column=label_column)
    if suffix == ".npz":
        return load_npz(path)
    raise UserError(f"--data {spec}: expected a class folder, a .csv/.tsv manifest or an .npz file")


def load_digits():
    from sklearn.datasets import load_digits as sk_digits

    digits = sk_digits()
    x = (digits.images / 16.0).astype(np.float32)[..., None]
    return Dataset(x, digits.target.astype(int), "builtin:digits",
                   "scikit-learn's handwritten digits (UCI ML hand-written digits, 1,797 8x8 images, "
                   "10 classes, values 0-16 scaled to [0, 1])",
                   info={"class_names": [str(i) for i in range(10)], "input_scale": 16.0,
                         "mirror_changes_class": True})


def _images_in(folder):
    return sorted(p for p in folder.iterdir()
                  if p.is_file() and p.suffix.lower() in imaging.IMAGE_SUFFIXES)


def _class_folders(root):
    return sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))


def load_folder(root, *, image_size=None, channels=None):
    """``root/<class>/*.png``, or ``root/{train,val,test}/<class>/*.png`` with the split kept."""
    subfolders = _class_folders(root)
    if not subfolders:
        raise UserError(f"{root}: empty folder: expected one sub-folder of images per class")
    names = {p.name for p in subfolders}
    split_layout = "train" in names and "test" in names and names <= set(SPLIT_NAMES)
    parts = [(p.name, p) for p in subfolders] if split_layout else [(None, root)]
    paths, labels, split_of = [], [], []
    class_names = sorted({c.name for _, base in parts for c in _class_folders(base)})
    if not class_names:
        raise UserError(f"{root}: no class sub-folders found")
    for split, base in parts:
        for class_dir in _class_folders(base):
            files = _images_in(class_dir)
            paths += files
            labels += [class_names.index(class_dir.name)] * len(files)
            split_of += [split] * len(files)
    if not paths:
        raise UserError(f"{root}: the class folders hold no images "
                        f"({', '.join(sorted(imaging.IMAGE_SUFFIXES))})")
    require_two_classes(labels, class_names, root)
    x = lazy_or_loaded(paths, size=image_size, channels=channels)
    given = split_indices(split_of) if split_layout else None
    return Dataset(x, np.asarray(labels), str(root),
                   f"class folders at {root}: {len(paths)} images, {len(class_names)} classes",
                   info={"class_names": class_names}, declared_splits=given)


def load_csv(path, *, image_size=None, channels=None, path_column="path", label_column="label"):
    """A ``path,label`` manifest (optional ``split`` column); paths are relative to the CSV."""
    rows = manifest_rows(path, path_column=path_column, value_column=label_column,
                         hint="set path_column/label_column with --set", what="image")
    class_names = sorted({r.value for r in rows})
    labels = [class_names.index(r.value) for r in rows]
    require_two_classes(labels, class_names, path)
    x = lazy_or_loaded([r.file for r in rows], size=image_size, channels=channels)
    split_of = [r.split for r in rows]
    given = split_indices(split_of) if all(split_of) else None
    return Dataset(x, np.asarray(labels), str(path),
                   f"CSV manifest {path.name}: {len(rows)} images, {len(class_names)} classes",
                   info={"class_names": class_names}, declared_splits=given)


def load_npz(path):
    """``x`` (N,H,W) or (N,H,W,C) and ``y``; or MedMNIST ``{train,val,test}_{images,labels}``."""
    x, y, split_of, kind, arrays = labelled_arrays(path)
    given = split_indices(split_of) if split_of else None
    if np.issubdtype(x.dtype, np.floating) and not np.isfinite(x).all():
        bad = int(np.count_nonzero(~np.isfinite(x)))
        raise UserError(f"{path}: the images hold {bad:,} NaN or infinite value(s); clean the array "
                        f"before training")
    if x.ndim == 3:
        x = x[..., None]
    if x.ndim != 4 or x.shape[-1] not in (1, 3) or len(x) != len(y):
        volumes = x.ndim == 5 or (x.ndim == 4 and x.shape[-1] not in (1, 3))
        raise UserError(f"{path}: x must be (N,H,W) or (N,H,W,1|3) with one label per image; "
                        f"got x {x.shape}, y {y.shape}"
                        + ("; for volumes (N,D,H,W) use volume-classification" if volumes else ""))
    if x.size == 0:
        raise UserError(f"{path}: x holds no pixels (shape {x.shape})")
    x, scale = imaging.to_unit_range(x)
    values = np.unique(y)
    class_names = npz_class_names(arrays, values, path)
    labels = np.searchsorted(values, y)
    require_two_classes(labels, class_names, path)
    return Dataset(x, labels, str(path), f"{kind} in {path.name}: {len(y)} images, "
                   f"{len(values)} classes", info={"class_names": class_names, "input_scale": scale},
                   declared_splits=given)
