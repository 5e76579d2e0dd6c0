"""Volume-classification data: MedMNIST-3D-style or ``x``/``y`` ``.npz`` arrays, one folder per
class of NIfTI/``.npy`` volumes, a ``path,label[,split]`` CSV of volumes, and ``builtin:shapes3d``.

Every reader returns a :class:`pipelines.data.Dataset` whose ``y`` holds class ids and whose ``x``
is a dict of per-volume columns: ``volumes`` (float32, N x D x H x W x 1, in the data's own units,
e.g. Hounsfield), ``group`` (a patient id when the data names one, so splits keep a patient's
volumes together; else the volume's own index) and ``diameter`` (mm, when the data has it: the
size rule is then a baseline). Volumes must share one shape unless ``volume_size`` resamples them.
"""

from pathlib import Path

import numpy as np

from pipelines.data import (Dataset, builtin_name, labelled_arrays, manifest_rows,
                            npz_class_names, require_two_classes, split_indices)
from pipelines.errors import UserError

BUILTIN = ("shapes3d",)
VOLUME_SUFFIXES = (".nii", ".nii.gz", ".npy")
GROUP_KEYS = ("patient_id", "patient", "subject_id", "group")


def load(spec, *, volume_size=None, seed=0, test_fraction=0.2, val_fraction=0.1):
    """Read ``spec``; when the data names patients (and gives no split of its own), the split is
    made here by patient (:func:`grouped_splits`)."""
    if spec.startswith("builtin:"):
        builtin_name(spec, BUILTIN, "volume-classification")
        dataset = shapes3d()
    else:
        path = Path(spec)
        if path.is_dir():
            dataset = load_folder(path, volume_size=volume_size)
        elif not path.is_file():
            raise UserError(f"--data {spec}: no such file or folder")
        elif path.suffix.lower() == ".npz":
            dataset = load_npz(path, volume_size=volume_size)
        elif path.suffix.lower() in (".csv", ".tsv"):
            dataset = load_csv(path, volume_size=volume_size)
        else:
            raise UserError(f"--data {spec}: expected an .npz, a CSV of volumes, or a folder of "
                            f"class folders")
    group = dataset.x["group"]
    if dataset.declared_splits is None and len(np.unique(group)) < len(group):
        dataset.made_splits = grouped_splits(dataset.y, group, test_fraction=test_fraction,
                                              val_fraction=val_fraction, seed=seed)
    return dataset


# -- arrays ------------------------------------------------------------------------------------
def load_npz(path, *, volume_size=None):
    """``x`` (N, D, H, W[, C]) with ``y``; or MedMNIST-3D ``{train,val,test}_images/_labels``.
    Per-volume extras ride along: a patient id groups the split, ``diameter_mm`` feeds the size
    rule."""
    x, y, split_of, kind, arrays = labelled_arrays(path, layout="MedMNIST-3D")
    extras = {} if split_of else {k: arrays[k] for k in arrays.files
                                  if arrays[k].ndim == 1 and len(arrays[k]) == len(x)}
    if len(x) != len(y):
        raise UserError(f"{path}: {len(x)} volumes but {len(y)} labels; one label per volume")
    volumes = _as_volumes(x, str(path), volume_size)
    values = np.unique(y)
    labels = np.searchsorted(values, y)
    class_names = npz_class_names(arrays, values, path)
    require_two_classes(labels, class_names, path)
    group_key = next((k for k in GROUP_KEYS if k in extras), None)
    group = _group_ids(extras[group_key]) if group_key else np.arange(len(y))
    diameter = np.asarray(extras["diameter_mm"], np.float32) if "diameter_mm" in extras else None
    notes = [f"Volumes grouped by {group_key}: {len(np.unique(group))} groups, never split."] \
        if group_key else []
    return _dataset(volumes, labels, group, diameter, spec=str(path),
                    description=f"{kind} in {path.name}: {len(y)} volumes of "
                                f"{'x'.join(map(str, volumes.shape[1:4]))}, {len(values)} classes",
                    class_names=class_names, split_of=split_of, notes=notes)


def _group_ids(values):
    _, ids = np.unique(np.asarray(values).astype(str), return_inverse=True)
    return ids


# -- files -------------------------------------------------------------------------------------
def is_volume_file(path):
    return str(path).lower().endswith(VOLUME_SUFFIXES)


def read_volume_file(path):
    """One volume as float32 (D, H, W): NIfTI data (x, y, z) transposed to (z, y, x), or an .npy
    array as stored. A 2D image, a 4D array or a NaN voxel is refused, naming the file."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no such volume file")
    try:
        if str(path).lower().endswith(".npy"):
            data = np.load(path, allow_pickle=False)
        else:
            import nibabel

            data = np.asarray(nibabel.load(str(path)).dataobj)
            data = np.transpose(data, tuple(reversed(range(data.ndim)))) if data.ndim == 3 else data
    except (OSError, ValueError, EOFError) as error:
        raise UserError(f"{path}: cannot read the volume ({type(error).__name__}: {error})") from None
    except Exception as error:  # nibabel's own errors (ImageFileError, HeaderDataError, ...)
        raise UserError(f"{path}: cannot read the volume ({type(error).__name__})") from None
    return _as_volumes(np.asarray(data)[None], str(path), None)[0, ..., 0]


def load_folder(root, *, volume_size=None):
    """One sub-folder per class holding .nii/.nii.gz/.npy volumes."""
    folders = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    files, labels = [], []
    for index, folder in enumerate(folders):
        found = sorted(p for p in folder.iterdir() if is_volume_file(p))
        files += found
        labels += [index] * len(found)
    if not files:
        raise UserError(f"{root}: no class folders of .nii/.nii.gz/.npy volumes")
    class_names = [f.name for f in folders if any(is_volume_file(p) for p in f.iterdir())]
    labels = np.unique(labels, return_inverse=True)[1]
    require_two_classes(labels, class_names, root)
    volumes = _stack([read_volume_file(f) for f in files], files, volume_size)
    return _dataset(volumes, labels, np.arange(len(labels)), None, spec=str(root),
                    description=f"class folders of volumes at {root}: {len(files)} volumes, "
                                f"{len(class_names)} classes", class_names=class_names)


def load_csv(path, *, volume_size=None):
    """``path,label`` (optional ``split``, ``patient_id``); paths relative to the CSV, inside it."""
    rows = manifest_rows(path, hint="a volume CSV has path and label", what="volume")
    class_names = sorted({r.value for r in rows})
    labels = np.array([class_names.index(r.value) for r in rows])
    require_two_classes(labels, class_names, path)
    files = [r.file for r in rows]
    volumes = _stack([read_volume_file(f) for f in files], files, volume_size)
    groups = [(r.row.get("patient_id") or "").strip() for r in rows]
    group = _group_ids(groups) if all(groups) else np.arange(len(labels))
    split_of = [r.split for r in rows]
    return _dataset(volumes, labels, group, None, spec=str(path),
                    description=f"volume CSV {path.name}: {len(files)} volumes, {len(class_names)} classes",
                    class_names=class_names, split_of=split_of if all(split_of) else None)


# -- shapes ------------------------------------------------------------------------------------
def _as_volumes(x, where, volume_size):
    """(N, D, H, W) or (N, D, H, W, 1) -> float32 (N, D, H, W, 1), resampled to ``volume_size``
    when given; anything else (2D images, several channels, NaN) is refused."""
    x = np.asarray(x)
    if x.dtype.kind not in "fiub":
        raise UserError(f"{where}: volumes must be numeric, got {x.dtype}")
    if x.ndim == 5 and x.shape[-1] == 1:
        x = x[..., 0]
    if x.ndim == 3 or (x.ndim == 4 and x.shape[-1] == 3 and x.shape[1] > 3):
        raise UserError(f"{where}: holds 2D images {x.shape[1:]}, not volumes; use image-classification")
    if x.ndim != 4:
        raise UserError(f"{where}: expected volumes of shape (depth, height, width), got "
                        f"{x.shape[1:]} per item")
    x = x.astype(np.float32)
    if not np.isfinite(x).all():
        raise UserError(f"{where}: holds {int(np.count_nonzero(~np.isfinite(x))):,} NaN or infinite "
                        f"voxel(s)")
    if volume_size is not None and tuple(x.shape[1:]) != tuple(volume_size):
        x = np.stack([resample(v, volume_size) for v in x])
    return x[..., None]


def _stack(volumes, files, volume_size):
    shapes = sorted({v.shape for v in volumes})
    if volume_size is None and len(shapes) > 1:
        raise UserError(f"{files[0].parent.parent}: volumes have {len(shapes)} shapes ({shapes[0]}, "
                        f"{shapes[-1]}, ...); set volume_size=[D,H,W] to resample them")
    target = tuple(volume_size) if volume_size else shapes[0]
    return np.stack([resample(v, target) if v.shape != target else v for v in volumes])[..., None]


def resample(volume, size):
    """Trilinear resampling of one (D, H, W) volume to ``size`` (scipy.ndimage.zoom, order 1)."""
    from scipy.ndimage import zoom

    factors = [t / s for t, s in zip(size, volume.shape)]
    out = zoom(volume, factors, order=1)
    return out[:size[0], :size[1], :size[2]].astype(np.float32)


def shapes3d(n=160, size=(16, 24, 24), seed=0):
    """Generated: a bright sphere or a bright cube of random size and place in noise (class
    'sphere' / 'cube'), in Hounsfield-like units (air -1000, the object +40)."""
    rng = np.random.default_rng(seed)
    grid = np.stack(np.meshgrid(*[np.arange(s) for s in size], indexing="ij"), axis=-1).astype(np.float32)
    volumes, labels = [], []
    for i in range(n):
        radius = rng.uniform(0.2, 0.35) * min(size)
        centre = np.array([rng.uniform(radius, s - radius) for s in size])
        offset = np.abs(grid - centre)
        inside = (np.sqrt((offset ** 2).sum(-1)) <= radius) if i % 2 == 0 else \
            (offset.max(-1) <= radius * 0.85)
        volumes.append(np.where(inside, 40.0, -1000.0) + rng.normal(0, 60, size))
        labels.append(i % 2)
    return _dataset(np.stack(volumes).astype(np.float32)[..., None], np.array(labels), np.arange(n), None,
                    spec="builtin:shapes3d",
                    description=f"generated 3D shapes: {n} volumes of {'x'.join(map(str, size))}, "
                                f"sphere vs cube", class_names=["sphere", "cube"])


def _dataset(volumes, labels, group, diameter, *, spec, description, class_names, split_of=None,
             notes=()):
    x = {"volumes": volumes, "group": np.asarray(group, int)}
    if diameter is not None:
        x["diameter"] = diameter
    return Dataset(x, np.asarray(labels, int), spec, description, info={"class_names": class_names},
                   declared_splits=split_indices(split_of) if split_of else None, notes=list(notes))


def grouped_splits(labels, group, *, test_fraction, val_fraction, seed):
    """{"train", "val", "test"}: whole groups (patients) on one side, classes stratified as far
    as groups allow (scikit-learn's StratifiedGroupKFold, seeded)."""
    from sklearn.model_selection import StratifiedGroupKFold

    def hold_out(indices, fraction):
        folds = max(2, int(round(1 / fraction)))
        splitter = StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=seed)
        rest, held = next(splitter.split(np.zeros(len(indices)), labels[indices], group[indices]))
        return indices[rest], indices[held]

    labels, group = np.asarray(labels), np.asarray(group)
    if len(np.unique(group)) < 6:
        raise UserError(f"the data has {len(np.unique(group))} groups; a grouped split needs at least 6")
    rest, test = hold_out(np.arange(len(labels)), test_fraction)
    train, val = hold_out(rest, val_fraction)
    return {"train": np.sort(train), "val": np.sort(val), "test": np.sort(test)}

