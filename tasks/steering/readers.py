"""Steering data: the Udacity simulator's ``driving_log.csv``, a generic ``path,steering`` CSV, and
``builtin:driving`` (BeamNG frames shipped in ``data/driving_steering``).

Every reader returns a :class:`pipelines.data.Dataset` whose ``y`` is the steering angle (float32,
the data's own units) and whose ``x`` is a dict of per-frame columns:

- ``frames``: the image files (:class:`Frames`, geometry filled in by the task);
- ``group``: the episode, or a block of consecutive frames when the data names none; splits never
  cut a group, because neighbouring frames are near-duplicates and would leak into the test;
- ``order``: the frame's place in time (file order), for the time-series figure;
- ``synthetic``: frames made from another (the authors' mirror copies, side cameras with a
  steering correction), used for training only, never validated or tested on.

The split is settled here, by time: the data's ``split`` column when it has one (declared, so
``evaluate --data`` scores its test part), else the last ``test_fraction`` of the groups is the
test drive and the ``val_fraction`` before it validation (made: the run's choice for training
data, so ``evaluate --data`` scores every real frame).
"""

import csv
import io
import math
from pathlib import Path, PureWindowsPath

import numpy as np

from pipelines.data import SPLIT_NAMES, Dataset, builtin_name, manifest_rows, read_text, shipped_path
from pipelines.errors import UserError
from pipelines.image_files import ImageFiles
from pipelines.frames import Frames

BUILTIN = {"driving": "driving_steering/labels.csv"}
UDACITY_LOG = "driving_log.csv"
UDACITY_COLUMNS = ("center", "left", "right", "steering", "throttle", "brake", "speed")
BLOCKS = 100  # without episodes, frames are grouped into this many consecutive blocks
TRUE = {"1", "true", "yes", "y", "t"}


def load(spec, *, target_column="steering", side_cameras=False, side_camera_correction=0.2,
         test_fraction=0.2, val_fraction=0.1):
    """Read ``spec``: builtin:driving, a folder holding driving_log.csv (or labels.csv), or a CSV."""
    if spec.startswith("builtin:"):
        path = shipped_path(spec, BUILTIN[builtin_name(spec, BUILTIN, "steering")])
        return load_csv(path, target_column=target_column, test_fraction=test_fraction,
                        val_fraction=val_fraction, spec=spec)
    path = Path(spec)
    if path.is_dir():
        found = [path / name for name in (UDACITY_LOG, "labels.csv") if (path / name).is_file()]
        if not found:
            raise UserError(f"--data {spec}: no {UDACITY_LOG} or labels.csv in this folder")
        path = found[0]
    elif not path.is_file():
        raise UserError(f"--data {spec}: no such file or folder")
    if path.name == UDACITY_LOG:
        return load_udacity(path, side_cameras=side_cameras, correction=side_camera_correction,
                            test_fraction=test_fraction, val_fraction=val_fraction)
    return load_csv(path, target_column=target_column, test_fraction=test_fraction,
                    val_fraction=val_fraction)


# -- the Udacity simulator -----------------------------------------------------------------------
def load_udacity(path, *, side_cameras=False, correction=0.2, test_fraction=0.2, val_fraction=0.1):
    """``center,left,right,steering,throttle,brake,speed`` rows, with or without a header. The
    simulator writes absolute paths of the machine that recorded (often Windows): each is found
    by its file name in the ``IMG/`` folder beside the log."""
    root = path.parent.resolve()
    rows = list(csv.reader(io.StringIO(read_text(path), newline="")))
    numbered = [(i, row) for i, row in enumerate(rows, start=1) if any(cell.strip() for cell in row)]
    if numbered and [c.strip().lower() for c in numbered[0][1]][:4] == list(UDACITY_COLUMNS[:4]):
        numbered = numbered[1:]  # a header
    if not numbered:
        raise UserError(f"{path}: the driving log has no rows")
    cameras = {"center": [], "left": [], "right": []}
    angles = []
    for line, row in numbered:
        if len(row) != len(UDACITY_COLUMNS):
            raise UserError(f"{path}:{line}: expected {len(UDACITY_COLUMNS)} columns "
                            f"({','.join(UDACITY_COLUMNS)}), found {len(row)}")
        angles.append(_number(row[3], path, line, "steering"))
        for camera, cell in zip(cameras, row[:3]):
            if camera == "center" or side_cameras:
                cameras[camera].append(_udacity_image(root, cell, path, line, camera))
    n = len(angles)
    angles = np.asarray(angles, np.float32)
    files, y, order, synthetic = list(cameras["center"]), [angles], [np.arange(n)], [np.zeros(n, bool)]
    notes = []
    if side_cameras:
        for camera, sign in (("left", 1.0), ("right", -1.0)):
            files += cameras[camera]
            y.append(angles + sign * correction)
            order.append(np.arange(n))
            synthetic.append(np.ones(n, bool))
        notes.append(f"Side cameras: {2 * n} left/right frames with steering +/-{correction} "
                     f"added to training only.")
    order = np.concatenate(order)
    group = _blocks(order, n)
    return _dataset(files, np.concatenate(y), order, group, np.concatenate(synthetic), None,
                    spec=str(path), description=f"Udacity driving log {path}: {n} frames",
                    test_fraction=test_fraction, val_fraction=val_fraction, notes=notes,
                    grouping=f"{BLOCKS} blocks of consecutive frames")


def _udacity_image(root, cell, path, line, camera):
    raw = cell.strip()
    if not raw:
        raise UserError(f"{path}:{line}: empty {camera} image path")
    for candidate in (root / raw, root / "IMG" / PureWindowsPath(raw).name):
        candidate = candidate.resolve()
        if candidate.is_relative_to(root) and candidate.is_file():
            return candidate
    raise UserError(f"{path}:{line}: {camera} image {raw} not found (looked for "
                    f"{root / 'IMG' / PureWindowsPath(raw).name})")


# -- a generic CSV ---------------------------------------------------------------------------------
def load_csv(path, *, target_column="steering", test_fraction=0.2, val_fraction=0.1, spec=None):
    """``path,steering`` with optional ``split`` (train/val/test), ``episode`` and ``flipped``
    (1: a mirror copy of another frame, for training only) columns; paths relative to the CSV."""
    rows = manifest_rows(path, value_column=target_column, what="image",
                         hint="a steering CSV has path and steering columns; set target_column with --set")
    files = [r.file for r in rows]
    y = [_number(r.value, path, r.line, target_column) for r in rows]
    split_of = [r.split for r in rows]
    episodes = [(r.row.get("episode") or "").strip() for r in rows]
    synthetic = np.asarray([(r.row.get("flipped") or "").strip().lower() in TRUE for r in rows])
    n = len(files)
    order = np.arange(n)
    if all(episodes):
        group = _first_seen(np.asarray(episodes))
        grouping = f"{len(set(episodes))} episodes"
    else:
        group, grouping = _blocks(order, n), f"{BLOCKS} blocks of consecutive frames"
    given = split_of if all(split_of) else None
    notes = [f"Mirror copies: {int(synthetic.sum())} flipped frames used for training only."] \
        if synthetic.any() else []
    return _dataset(files, np.asarray(y, np.float32), order, group, synthetic, given,
                    spec=spec or str(path), description=f"steering CSV {path.name}: {n} frames",
                    test_fraction=test_fraction, val_fraction=val_fraction, notes=notes,
                    grouping=grouping)


def _number(text, path, line, column):
    try:
        value = float((text or "").strip())
    except ValueError:
        raise UserError(f"{path}:{line}: {column} must be a number, got {(text or '').strip()!r}") from None
    if not math.isfinite(value):
        raise UserError(f"{path}:{line}: {column} must be a finite number, got {text.strip()!r}")
    return value


def _first_seen(labels):
    """Group ids numbered in order of first appearance (time order)."""
    _, first, inverse = np.unique(labels, return_index=True, return_inverse=True)
    rank = np.empty(len(first), int)
    rank[np.argsort(first)] = np.arange(len(first))
    return rank[inverse]


def _blocks(order, n):
    return (np.asarray(order) * min(BLOCKS, n) // max(n, 1)).astype(int)


# -- the split by time -----------------------------------------------------------------------------
def time_split(group, synthetic, given=None, *, test_fraction, val_fraction):
    """{"train", "val", "test"} index arrays. Whole groups go to one side: the data's own split
    when given (validation, if it names none, is the last groups of its training part), else
    the last ``test_fraction`` of the groups (in time order) is the test and the ``val_fraction``
    of the rest before it validation. Synthetic frames are kept for training only."""
    group, synthetic = np.asarray(group), np.asarray(synthetic, bool)
    if given is not None:
        split_of = np.asarray(given, dtype=object)
        if not ((split_of == "train").any() and (split_of == "test").any()):
            raise UserError("the data's split column must name both train and test frames")
        if not (split_of == "val").any():
            train_groups = np.unique(group[split_of == "train"])
            val_groups = _last(train_groups, val_fraction)
            split_of = np.where((split_of == "train") & np.isin(group, val_groups), "val", split_of)
    else:
        groups = np.unique(group)
        if len(groups) < 3:
            raise UserError(f"the data has {len(groups)} episode(s); a split by time needs at least 3")
        test_groups = _last(groups, test_fraction)
        rest = groups[~np.isin(groups, test_groups)]
        val_groups = _last(rest, val_fraction)
        split_of = np.where(np.isin(group, test_groups), "test",
                            np.where(np.isin(group, val_groups), "val", "train")).astype(object)
    keep = {name: np.flatnonzero((split_of == name) & (~synthetic if name != "train" else True))
            for name in SPLIT_NAMES}
    for name, indices in keep.items():
        if not len(indices):
            raise UserError(f"the split by time leaves no real frames for {name}; the data needs "
                            f"more episodes or a split column")
    return keep


def _last(groups, fraction):
    groups = np.sort(groups)
    count = min(len(groups) - 1, max(1, int(math.ceil(len(groups) * fraction))))
    return groups[len(groups) - count:]


def _dataset(files, y, order, group, synthetic, given, *, spec, description, test_fraction,
             val_fraction, notes, grouping):
    ImageFiles.scan(files)  # a broken or cut-short image is named now, not mid-epoch
    splits = time_split(group, synthetic, given, test_fraction=test_fraction, val_fraction=val_fraction)
    how = "the data's split column" if given is not None else \
        f"time: the last {test_fraction:.0%} of the groups tested, {val_fraction:.0%} of the rest validated"
    x = {"frames": Frames(np.asarray([str(f) for f in files]), 0, 0),
         "group": np.asarray(group, int), "order": np.asarray(order, int),
         "synthetic": np.asarray(synthetic, bool)}
    notes = [f"Split by {how}; {grouping}, never cut."] + list(notes)
    declared, made = (splits, None) if given is not None else (None, splits)
    return Dataset(x, np.asarray(y, np.float32), spec, description, info={"first_file": str(files[0])},
                   declared_splits=declared, made_splits=made, notes=notes)
