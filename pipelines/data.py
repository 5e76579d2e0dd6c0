"""Datasets and their splits (declared by the data, made by a reader, or seeded and stratified).

A task's reader returns a :class:`Dataset`; the pipeline splits it once here and records the
split in the run directory, so evaluation later sees exactly the same test examples.
"""

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from pipelines.errors import UserError

SPLIT_NAMES = ("train", "val", "test")
SHIPPED_DATA = Path(__file__).resolve().parents[1] / "data"  # the repository's data/ folder


def builtin_name(spec, known, task):
    """NAME of ``builtin:NAME`` when ``known`` holds it; otherwise a UserError listing the
    task's built-in datasets."""
    name = spec.split(":", 1)[1]
    if name not in known:
        raise UserError(f"--data {spec}: unknown built-in dataset; {task} has "
                        f"{', '.join('builtin:' + n for n in known)}")
    return name


def shipped_path(spec, relative):
    """Where a built-in dataset's files live in ``data/``; a clear error when they are absent
    (an installation made without the repository's data folder)."""
    path = SHIPPED_DATA / relative
    if not path.exists():
        raise UserError(f"--data {spec}: {path} is missing from this installation; install from a "
                        f"clone of the repository (pip install -e .) so data/ is present")
    return path


@dataclass
class Dataset:
    """What a task reader returns. ``x``/``y`` are indexable arrays (or lists) of equal length."""

    x: object
    y: object
    spec: str
    description: str
    info: dict = field(default_factory=dict)
    # {"train": idx, "val": idx (optional), "test": idx}, one of two kinds that must not blur:
    # ``declared_splits``, a split the data itself states (a split column, train/ val/ test/
    # folders, MedMNIST-style arrays): honoured by training and by ``evaluate --data``; and
    # ``made_splits``, a split a reader chose (by patient, episode, time block): the run's
    # choice for its training data, recorded in splits.json, never a property of the data.
    declared_splits: dict = None
    made_splits: dict = None
    notes: list = field(default_factory=list)

    def __len__(self):
        return len(self.y)

    def subset(self, indices):
        """The examples at ``indices``: a part of the data, so no split of the whole applies."""
        indices = np.asarray(indices, dtype=int)
        return Dataset(_take(self.x, indices), _take(self.y, indices), self.spec, self.description,
                       dict(self.info), notes=list(self.notes))

    def training_splits(self):
        """The split a run trains on: the data's declared split, else the reader's made one
        (None: the pipeline makes a seeded, stratified one)."""
        return self.declared_splits or self.made_splits


def split_indices(split_of):
    """{"train": idx, "val": idx, "test": idx} from one split name per example."""
    split_of = np.asarray(split_of, dtype=object)
    return {s: np.flatnonzero(split_of == s) for s in SPLIT_NAMES if (split_of == s).any()}


def require_columns(path, columns, needed, hint):
    """A table must have the ``needed`` columns; the error names what it found and ``hint``s."""
    missing = [c for c in needed if c not in (columns or [])]
    if missing:
        raise UserError(f"{path}: missing column(s) {', '.join(missing)}; found "
                        f"{', '.join(columns or []) or 'none'} ({hint})")


@dataclass
class ManifestRow:
    line: int  # in the file, for messages
    file: Path  # resolved, inside the manifest's folder, existing
    value: str  # the label (or target) column, stripped and non-empty
    split: str  # "train" / "val" / "test", or None
    row: dict  # every column, for a task's own extras


def manifest_rows(path, *, path_column="path", value_column="label", hint="", what="file"):
    """The rows of a ``path,VALUE[,split]`` CSV (TSV by suffix) manifest: each path relative to
    the manifest and never outside its folder, the file present, the value non-empty, the split
    one of train/val/test. Every problem is a UserError naming the file and line."""
    import csv
    import io

    path = Path(path)
    root = path.parent.resolve()
    delimiter = "\t" if path.suffix.lower() == ".tsv" else ","
    reader = csv.DictReader(io.StringIO(read_text(path), newline=""), delimiter=delimiter)
    require_columns(path, reader.fieldnames, (path_column, value_column), hint)
    rows = [(reader.line_num, row) for row in reader]
    if not rows:
        raise UserError(f"{path}: the manifest has no rows")
    parsed = []
    for line, row in rows:
        if None in row:
            raise UserError(f"{path}:{line}: more fields than the header's {len(reader.fieldnames)}")
        raw, value = (row.get(path_column) or "").strip(), (row.get(value_column) or "").strip()
        if not raw or not value:
            raise UserError(f"{path}:{line}: empty {path_column} or {value_column}")
        file = (root / raw).resolve()
        if not file.is_relative_to(root):
            raise UserError(f"{path}:{line}: {raw} points outside the dataset folder {root}")
        if not file.is_file():
            raise UserError(f"{path}:{line}: {what} {raw} not found")
        split = (row.get("split") or "").strip().lower()
        if split and split not in SPLIT_NAMES:
            raise UserError(f"{path}:{line}: split must be train, val or test, got {split!r}")
        parsed.append(ManifestRow(line, file, value, split or None, row))
    return parsed


class NpzArrays(dict):
    """Every array of an ``.npz``, read: ``files`` lists them, as ``np.load``'s NpzFile does."""

    @property
    def files(self):
        return list(self)


def read_npz(path):
    """All arrays of an ``.npz``, read now (a corrupt member fails here, not later), never
    unpickled; anything unreadable is a UserError naming the file."""
    import zipfile

    try:
        with np.load(path, allow_pickle=False) as opened:
            if not hasattr(opened, "files"):
                raise ValueError("a single .npy array, not an .npz archive")
            return NpzArrays({key: opened[key] for key in opened.files})
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, KeyError, NotImplementedError,
            RuntimeError) as error:
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise UserError(f"{path}: cannot read .npz ({reason[:200]})") from None


def labelled_arrays(path, *, layout="MedMNIST"):
    """``(x, y, split_of or None, kind, arrays)`` from an ``.npz``: ``x`` and ``y``, or the
    ``{train,val,test}_images`` / ``_labels`` of a MedMNIST-style file (train and test at least),
    whose split is kept. ``y`` is one label per item (the first column of 2D labels); ``arrays``
    is the open file, for a reader's extra arrays. ``layout`` names the style in messages."""
    arrays = read_npz(path)
    keys = set(arrays.files)
    if {"train_images", "train_labels", "test_images", "test_labels"} <= keys:
        chunks = [(s, arrays[f"{s}_images"], arrays[f"{s}_labels"]) for s in SPLIT_NAMES
                  if f"{s}_images" in keys]
        x = np.concatenate([c[1] for c in chunks])
        y = np.concatenate([np.asarray(c[2]).reshape(len(c[2]), -1)[:, 0] for c in chunks])
        split_of = [s for s, images, _ in chunks for _ in range(len(images))]
        return x, y, split_of, f"{layout}-style arrays", arrays
    missing = [k for k in ("x", "y") if k not in keys]
    if missing:
        raise UserError(f"{path}: missing array(s) {', '.join(missing)}; found "
                        f"{', '.join(sorted(keys)) or 'none'} (expected x and y, or {layout} "
                        f"train_images/train_labels/...)")
    return arrays["x"], np.asarray(arrays["y"]).reshape(-1), None, "x/y arrays", arrays


def npz_class_names(arrays, values, path):
    """Names of the label ``values`` found in an ``.npz``: its ``class_names`` array, indexed by
    label (e.g. ``class_names=np.array(["benign", "malignant"])`` beside ``y`` of 0/1), or else
    the values themselves."""
    if "class_names" not in arrays.files:
        return [str(v) for v in values]
    try:
        names = [str(n) for n in np.asarray(arrays["class_names"]).reshape(-1)]
    except ValueError:
        raise UserError(f"{path}: class_names must be an array of strings (it holds Python objects, "
                        f"which are not loaded)") from None
    if not np.issubdtype(values.dtype, np.integer) or values.min() < 0 or values.max() >= len(names):
        raise UserError(f"{path}: class_names has {len(names)} names, so the labels must be whole "
                        f"numbers 0..{len(names) - 1}; found {', '.join(map(str, values[:6]))}")
    return [names[int(v)] for v in values]


def require_two_classes(labels, class_names, where):
    if len(set(np.asarray(labels).tolist())) < 2:
        raise UserError(f"{where}: only one class ({class_names[0] if class_names else '?'}); "
                        f"classification needs at least two")


def _take(values, indices):
    if hasattr(values, "take") and not isinstance(values, np.ndarray):  # lazy rows (ImageFiles)
        return values.take(indices)
    if isinstance(values, dict):
        return {k: _take(v, indices) for k, v in values.items()}
    if isinstance(values, np.ndarray):
        return values[indices]
    return [values[i] for i in indices]


@dataclass
class Splits:
    train: np.ndarray
    val: np.ndarray
    test: np.ndarray
    method: str

    def counts(self):
        return {"train": len(self.train), "val": len(self.val), "test": len(self.test)}

    def to_json(self):
        return {"method": self.method, "train": self.train.tolist(), "val": self.val.tolist(),
                "test": self.test.tolist()}

    @classmethod
    def from_json(cls, obj):
        return cls(*(np.asarray(obj[k], dtype=int) for k in ("train", "val", "test")),
                   method=obj["method"])


def _stratifiable(labels, parts):
    if labels is None:
        return False
    _, counts = np.unique(labels, return_counts=True)
    return len(counts) > 1 and counts.min() >= parts


def _split_off(indices, labels, fraction, seed):
    """Split ``indices`` into (rest, held) with ``fraction`` held, stratified when possible."""
    from sklearn.model_selection import train_test_split

    sub_labels = None if labels is None else np.asarray(labels)[indices]
    stratify = sub_labels if _stratifiable(sub_labels, 2) else None
    n_held = max(1, int(np.ceil(len(indices) * fraction)))  # scikit-learn's rounding
    if stratify is not None and n_held < len(np.unique(sub_labels)):
        stratify = None
    rest, held = train_test_split(indices, test_size=n_held, random_state=seed, stratify=stratify)
    return np.sort(rest), np.sort(held), stratify is not None


def make_splits(n, labels=None, *, test_fraction, val_fraction, seed, declared=None, made=None,
                train_fraction=1.0):
    """Train/val/test index arrays: the data's ``declared`` split, else the reader's ``made``
    one (e.g. by patient), else seeded and stratified.

    ``train_fraction`` < 1 keeps that share of the training and validation examples (stratified,
    seeded) and the whole test split, for label-efficiency studies."""
    splits = _make_splits(n, labels, test_fraction=test_fraction, val_fraction=val_fraction,
                          seed=seed, declared=declared, made=made)
    if train_fraction >= 1:
        return splits

    def keep(part):
        return part if np.ceil(len(part) * train_fraction) >= len(part) else \
            _split_off(part, labels, train_fraction, seed)[1]

    train, val = keep(splits.train), keep(splits.val)
    return Splits(train, val, splits.test, f"{splits.method}; {train_fraction:.0%} of train and validation kept")


def _make_splits(n, labels, *, test_fraction, val_fraction, seed, declared, made):
    if n < 3:
        raise UserError(f"the dataset has {n} examples; at least 3 are needed to train and test")
    given, by = (declared, "declared by the data") if declared else \
        (made, "made by the task's reader, groups kept whole")
    if given:
        if "train" not in given or "test" not in given:
            raise UserError("the data declares splits but not both 'train' and 'test'")
        train, test = np.asarray(given["train"], int), np.asarray(given["test"], int)
        if "val" in given and len(given["val"]):
            return Splits(train, np.asarray(given["val"], int), test, by)
        train, val, _ = _split_off(train, labels, val_fraction, seed)
        return Splits(train, val, test, f"{by} (validation carved from train)")
    rest, test, stratified = _split_off(np.arange(n), labels, test_fraction, seed)
    train, val, _ = _split_off(rest, labels, val_fraction, seed)
    kind = "stratified" if stratified else "random"
    return Splits(train, val, test,
                  f"{kind}, seed {seed}, test {test_fraction:.0%}, validation {val_fraction:.0%} of the rest")


def balanced_class_weight(labels):
    """{class: weight} inverse to frequency (scikit-learn's 'balanced' rule)."""
    from sklearn.utils.class_weight import compute_class_weight

    classes = np.unique(labels)
    weights = compute_class_weight("balanced", classes=classes, y=np.asarray(labels))
    return {int(c): float(w) for c, w in zip(classes, weights)}


def _codec(encoding):
    """The codec for ``encoding`` (UTF-8 drops a byte-order mark); unknown names are refused."""
    import codecs

    codec = "utf-8-sig" if encoding.lower().replace("_", "-") in ("utf-8", "utf8") else encoding
    try:
        codecs.lookup(codec)
    except LookupError:
        raise UserError(f"--set encoding={encoding}: unknown text encoding") from None
    return codec


def open_text(path, encoding="utf-8"):
    """The file opened for :mod:`csv` (``newline=""``) and decoded as it is read, so a large
    file is never whole in memory; see :func:`bounded_lines` and :func:`decoding_failed`."""
    return open(path, encoding=_codec(encoding), newline="")


MAX_FIELD_CHARS = 10_000_000  # one CSV line or field (a text); Python's csv default is 131,072


def bounded_lines(handle, path, limit=MAX_FIELD_CHARS):
    """The lines of ``handle`` for csv, refusing one longer than ``limit`` characters before it is
    read whole (a file without row ends would otherwise be one line held in memory)."""
    number = 0
    while True:
        line = handle.readline(limit + 1)
        if not line:
            return
        number += 1
        if len(line) > limit:
            raise UserError(f"{path}, line {number}: longer than {limit:,} characters; one text "
                            f"that long is not one example (is the file's row end missing?)")
        yield line


def decoding_failed(path, encoding):
    """The UserError for a file that does not decode as ``encoding``: the first bad byte and its
    line, found by decoding the file again in chunks (memory stays flat)."""
    import codecs

    decoder = codecs.getincrementaldecoder(_codec(encoding))()
    line, offset = 1, 0
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            pending = len(decoder.getstate()[0])  # bytes of a character cut at the last chunk's end
            try:
                decoder.decode(chunk)
            except UnicodeDecodeError as error:  # error.start counts the pending bytes too
                start = max(0, error.start - pending)
                line += chunk[:start].count(b"\n")
                return UserError(f"{path}, line {line}: not valid {encoding} ({error.reason} at byte "
                                 f"{offset + error.start - pending}); if the file uses another "
                                 f"encoding, pass --set encoding=NAME (e.g. latin-1)")
            line += chunk.count(b"\n")
            offset += len(chunk)
    return UserError(f"{path}: not valid {encoding}; pass --set encoding=NAME (e.g. latin-1)")


def read_text(path, encoding="utf-8"):
    """The file's text; a decoding error names the line (and byte) where it happened."""
    data = Path(path).read_bytes()
    codec = _codec(encoding)
    try:
        return data.decode(codec)
    except UnicodeDecodeError:
        raise decoding_failed(path, encoding) from None
