"""Box annotations in the three formats detectors are trained on: Pascal VOC XML, COCO instances
JSON and YOLO txt labels, read into one :class:`pipelines.data.Dataset`.

``x`` is ``{"images": paths, "sizes": (N, 2) height and width from each file's header}``; ``y``
holds one float32 array ``(n_i, 5)`` per image: ``x_min, y_min, x_max, y_max`` in the image's own
pixels (continuous coordinates, the left edge of the first column is 0, as COCO keeps them; VOC's
1-based integer corners become ``xmin - 1, ymin - 1, xmax, ymax``) and the class index into
``info["class_names"]``. An image without boxes is background, which is valid.

What annotators get wrong is handled the same way in every format: a box with no area (``xmin >=
xmax`` or ``ymin >= ymax``: BCCD has two) or wholly outside its image is dropped, a box that
crosses the image's edge is clipped to it, and each is counted in a note the report shows. They
are dropped, not refused, because real sets carry a few such slips and one must not make a whole
set unusable; a malformed file, an unknown class id or a missing image is refused, naming it.
"""

import json
import xml.etree.ElementTree as ElementTree
from collections import Counter
from pathlib import Path

import numpy as np

from pipelines.data import Dataset, builtin_name, read_text, shipped_path
from pipelines.errors import UserError

BUILTIN = {"bccd": "bccd_blood_cells"}
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
YOLO_NAME_FILES = ("classes.txt", "obj.names", "names.txt", "data.yaml", "dataset.yaml")
MIN_SIDE = 1.0  # a box narrower or lower than this many pixels (after clipping) is dropped


def load(spec, *, seed=0):
    """Read ``spec``: builtin:bccd, a VOC folder (``Annotations/``) or a folder of VOC XML files,
    a COCO JSON (or a folder holding one), or a YOLO folder (``images/`` + ``labels/``)."""
    if spec.startswith("builtin:"):
        path = shipped_path(spec, BUILTIN[builtin_name(spec, BUILTIN, "object-detection")])
        return load_voc(path, spec=spec, seed=seed, description="BCCD blood cells (Pascal VOC, MIT)")
    path = Path(spec)
    if path.is_file() and path.suffix.lower() == ".json":
        return load_coco(path, spec=spec)
    if not path.is_dir():
        raise UserError(f"--data {spec}: no such folder (or COCO .json file)")
    if (path / "labels").is_dir() and (path / "images").is_dir():
        return load_yolo(path, spec=spec)
    jsons = sorted(p for p in path.glob("*.json") if _looks_like_coco(p)) + \
        sorted(p for p in path.glob("annotations/*.json") if _looks_like_coco(p))
    if jsons:
        return load_coco(jsons[0], spec=spec)
    if any(path.rglob("*.xml")):
        return load_voc(path, spec=spec, seed=seed)
    raise UserError(f"--data {spec}: no Pascal VOC XML files, COCO instances JSON or YOLO "
                    f"images/ + labels/ folders here")


class _Collector:
    """Boxes of every image as they are read, with counts of what had to be fixed."""

    def __init__(self):
        self.paths, self.sizes, self.boxes, self.split = [], [], [], []
        self.fixed = Counter()

    def add(self, image, size, boxes, split=None):
        """``boxes``: (x1, y1, x2, y2, class) rows in the image's pixels, as annotated."""
        height, width = size
        kept = []
        for x1, y1, x2, y2, label in boxes:
            if x2 <= x1 or y2 <= y1:
                self.fixed["dropped (no area: x_min >= x_max or y_min >= y_max)"] += 1
                continue
            clipped = (max(0.0, x1), max(0.0, y1), min(float(width), x2), min(float(height), y2))
            if clipped[2] - clipped[0] < MIN_SIDE or clipped[3] - clipped[1] < MIN_SIDE:
                self.fixed["dropped (outside the image)"] += 1
                continue
            if clipped != (x1, y1, x2, y2):
                self.fixed["clipped to the image's edges"] += 1
            kept.append((*clipped, label))
        self.paths.append(str(image))
        self.sizes.append((height, width))
        self.boxes.append(np.asarray(kept, np.float32).reshape(-1, 5))
        self.split.append(split)

    def dataset(self, class_names, *, spec, description, declared=None, made=None):
        if not self.paths:
            raise UserError(f"--data {spec}: no annotated images found")
        y = np.empty(len(self.boxes), dtype=object)
        y[:] = self.boxes
        total = sum(len(b) for b in self.boxes)
        notes = [f"{count} box(es) {what}" for what, count in sorted(self.fixed.items())]
        empty = sum(len(b) == 0 for b in self.boxes)
        if empty:
            notes.append(f"{empty} image(s) without boxes (background)")
        return Dataset(x={"images": np.asarray(self.paths), "sizes": np.asarray(self.sizes, np.int32)},
                       y=y, spec=spec, description=f"{description}: {len(self.paths)} images, "
                       f"{total} boxes, classes {', '.join(class_names)}",
                       info={"class_names": list(class_names)}, declared_splits=declared,
                       made_splits=made, notes=notes)


def image_size(path):
    """(height, width) from the file's header; a broken file is named."""
    from PIL import Image, UnidentifiedImageError

    from pipelines.imaging import undecodable

    try:
        with Image.open(path) as image:
            return image.height, image.width
    except (UnidentifiedImageError, OSError, ValueError) as error:
        raise undecodable(path, error) from None


# -- Pascal VOC ----------------------------------------------------------------------------------
def load_voc(root, *, spec, seed=0, description=None):
    """VOC XML files: ``Annotations/*.xml`` (with ``JPEGImages/`` and ``ImageSets/Main``), or any
    folder of XML files. Each image is found by the ``<filename>`` (or the file name of an
    absolute ``<path>`` from the annotator's machine): beside the XML, in ``JPEGImages/`` or
    ``images/``, else anywhere under the dataset folder."""
    root = Path(root)
    folder = root / "Annotations" if (root / "Annotations").is_dir() else root
    files = sorted(folder.rglob("*.xml"))
    if not files:
        raise UserError(f"--data {spec}: no VOC .xml annotation files in {folder}")
    by_name = _images_by_name(root)
    parsed = [_parse_voc(f, root, by_name) for f in files]
    class_names = sorted({name for _, _, objects in parsed for *_, name in objects})
    index = {name: i for i, name in enumerate(class_names)}
    collector = _Collector()
    for xml_file, image, objects in parsed:
        collector.add(image, image_size(image), [(*box, index[name]) for *box, name in objects])
    declared, made, how = _voc_splits(root, [Path(p) for p in files], seed)
    return collector.dataset(class_names, spec=spec, declared=declared, made=made,
                             description=(description or f"Pascal VOC at {root}") + how)


def _images_by_name(root):
    found = {}
    for path in sorted(Path(root).rglob("*")):
        if path.suffix.lower() in IMAGE_SUFFIXES:
            found.setdefault(path.name, path)
    return found


def _parse_voc(path, root, by_name):
    """(xml file, image path, [(x1, y1, x2, y2, class name)]) of one VOC file."""
    try:
        tree = ElementTree.fromstring(read_text(path))
    except ElementTree.ParseError as error:
        raise UserError(f"{path}: not well-formed XML ({error})") from None
    name = (tree.findtext("filename") or "").strip() or \
        Path((tree.findtext("path") or "").strip().replace("\\", "/")).name
    if not name:
        raise UserError(f"{path}: no <filename> or <path> names the image")
    image = _find_image(path, root, name, by_name)
    objects = []
    for number, element in enumerate(tree.iter("object"), start=1):
        label = (element.findtext("name") or "").strip()
        box = element.find("bndbox")
        if not label or box is None:
            raise UserError(f"{path}: object {number} has no <name> or <bndbox>")
        try:
            xmin, ymin, xmax, ymax = (float(box.findtext(k)) for k in ("xmin", "ymin", "xmax", "ymax"))
        except (TypeError, ValueError):
            raise UserError(f"{path}: object {number} ({label}): <bndbox> needs numeric xmin, ymin, "
                            f"xmax and ymax") from None
        if xmax <= xmin or ymax <= ymin:  # VOC says so in its own numbers: no area (dropped)
            xmax, ymax = xmin - 1.0, ymin - 1.0
        objects.append((xmin - 1.0, ymin - 1.0, xmax, ymax, label))  # VOC's 1-based pixel corners
    return path, image, objects


def _find_image(xml_file, root, name, by_name):
    name = Path(name.replace("\\", "/")).name
    for candidate in (xml_file.parent / name, root / "JPEGImages" / name, root / "images" / name,
                      xml_file.parent.parent / "images" / name):
        if candidate.is_file():
            return candidate
    if name in by_name:
        return by_name[name]
    if not Path(name).suffix:
        for suffix in IMAGE_SUFFIXES:
            if name + suffix in by_name:
                return by_name[name + suffix]
    raise UserError(f"{xml_file}: its image {name} was not found beside it, in JPEGImages/ or "
                    f"images/, or anywhere under {root}")


def _voc_splits(root, files, seed):
    """``ImageSets/Main/{train,val,test}.txt``: declared when they give train and test; with
    train and val only (BCCD), the run keeps train, and halves val (seeded) into validation and
    a test part of its own (a made split, recorded in splits.json)."""
    main = root / "ImageSets" / "Main"
    lists = {}
    for part in ("train", "val", "test"):
        path = main / f"{part}.txt"
        if path.is_file():
            lists[part] = {line.split()[0] for line in read_text(path).splitlines() if line.strip()}
    if "train" not in lists or len(lists) < 2:
        return None, None, ""
    stems = [f.stem for f in files]
    split = {part: np.asarray([i for i, s in enumerate(stems) if s in ids], int) for part, ids in lists.items()}
    if "test" in split:
        return split, None, "; ImageSets/Main splits honoured"
    order = np.random.default_rng(seed).permutation(split["val"])
    half = len(order) // 2
    made = {"train": split["train"], "val": np.sort(order[:half]), "test": np.sort(order[half:])}
    return None, made, "; ImageSets/Main train kept, its val halved into validation and test"


# -- COCO ----------------------------------------------------------------------------------------
def _looks_like_coco(path):
    try:
        head = path.read_text(encoding="utf-8", errors="replace")[:4096]
    except OSError:
        return False
    return '"images"' in head or '"annotations"' in head or '"categories"' in head


def load_coco(path, *, spec):
    """A COCO instances JSON (``images``, ``annotations`` with ``bbox`` [x, y, w, h],
    ``categories``); ``file_name`` is relative to the JSON's folder, its ``images/`` folder or
    the folder above, and never outside the dataset."""
    path = Path(path)
    try:
        document = json.loads(read_text(path))
    except json.JSONDecodeError as error:
        raise UserError(f"{path}: not valid JSON ({error})") from None
    if not isinstance(document, dict) or not isinstance(document.get("images"), list):
        raise UserError(f"{path}: not a COCO instances file (no 'images' list)")
    categories = sorted(document.get("categories") or [], key=lambda c: c.get("id", 0))
    if not categories:
        raise UserError(f"{path}: no 'categories'")
    class_names = [str(c.get("name")) for c in categories]
    index = {c.get("id"): i for i, c in enumerate(categories)}
    boxes = {}
    for number, annotation in enumerate(document.get("annotations") or []):
        if annotation.get("iscrowd"):
            continue
        if annotation.get("category_id") not in index:
            raise UserError(f"{path}: annotation {annotation.get('id', number)} has category_id "
                            f"{annotation.get('category_id')!r}, not among the categories")
        try:
            x, y, w, h = (float(v) for v in annotation["bbox"])
        except (KeyError, TypeError, ValueError):
            raise UserError(f"{path}: annotation {annotation.get('id', number)}: bbox must be "
                            f"[x, y, width, height]") from None
        boxes.setdefault(annotation.get("image_id"), []).append(
            (x, y, x + w, y + h, index[annotation["category_id"]]))
    base = path.parent.resolve()
    roots = [base, base / "images", base.parent, base.parent / "images"]
    collector = _Collector()
    for entry in document["images"]:
        name = str(entry.get("file_name", ""))
        image = next((r / name for r in roots if (r / name).is_file()), None)
        if not name or image is None:
            raise UserError(f"{path}: image {entry.get('id')} ({name or 'no file_name'}) was not found "
                            f"beside the JSON or in its images/ folder")
        if not image.resolve().is_relative_to(base.parent):
            raise UserError(f"{path}: {name} points outside the dataset folder")
        collector.add(image, image_size(image), boxes.get(entry.get("id"), []))
    return collector.dataset(class_names, spec=spec, description=f"COCO instances {path.name}")


# -- YOLO ----------------------------------------------------------------------------------------
def load_yolo(root, *, spec):
    """``images/`` and ``labels/`` (``class cx cy w h`` per line, normalised to the image), each
    optionally split into ``train/``, ``val/``, ``test/`` (declared); class names one per line
    in ``classes.txt`` / ``obj.names``, or the ``names:`` of a ``data.yaml``."""
    root = Path(root)
    class_names = _yolo_names(root)
    images = sorted(p for p in (root / "images").rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    if not images:
        raise UserError(f"{root / 'images'}: no images")
    collector = _Collector()
    for image in images:
        relative = image.relative_to(root / "images")
        label_file = (root / "labels" / relative).with_suffix(".txt")
        height, width = image_size(image)
        rows = []
        if label_file.is_file():
            for line_number, line in enumerate(read_text(label_file).splitlines(), start=1):
                if not line.strip():
                    continue
                fields = line.split()
                try:
                    label, cx, cy, w, h = int(fields[0]), *(float(v) for v in fields[1:5])
                except (ValueError, IndexError):
                    raise UserError(f"{label_file}:{line_number}: expected 'class cx cy w h'") from None
                if not 0 <= label < len(class_names):
                    raise UserError(f"{label_file}:{line_number}: class {label} is not among the "
                                    f"{len(class_names)} names")
                rows.append(((cx - w / 2) * width, (cy - h / 2) * height, (cx + w / 2) * width,
                             (cy + h / 2) * height, label))
        split = relative.parts[0] if len(relative.parts) > 1 and relative.parts[0] in ("train", "val", "test") \
            else None
        collector.add(image, (height, width), rows, split)
    declared = None
    if all(collector.split) and {"train", "test"} <= set(collector.split):
        from pipelines.data import split_indices

        declared = split_indices(collector.split)
    return collector.dataset(class_names, spec=spec, declared=declared, description=f"YOLO labels at {root}")


def _yolo_names(root):
    for name in YOLO_NAME_FILES:
        path = root / name
        if not path.is_file():
            continue
        text = read_text(path)
        if path.suffix == ".yaml":
            return _yaml_names(path, text)
        names = [line.strip() for line in text.splitlines() if line.strip()]
        if names:
            return names
    raise UserError(f"{root}: no class names file ({', '.join(YOLO_NAME_FILES)})")


def _yaml_names(path, text):
    """The ``names:`` of an Ultralytics data.yaml: an inline list, or ``id: name`` lines."""
    lines = text.splitlines()
    for i, line in enumerate(lines):
        if line.strip().startswith("names:"):
            rest = line.split(":", 1)[1].strip()
            if rest.startswith("["):
                return [n.strip().strip("'\"") for n in rest.strip("[]").split(",") if n.strip()]
            names = []
            for item in lines[i + 1:]:
                if not item.startswith((" ", "\t", "-")):
                    break
                value = item.split(":", 1)[1] if ":" in item else item.lstrip(" -")
                names.append(value.strip().strip("'\""))
            if names:
                return names
    raise UserError(f"{path}: no 'names:' list")
