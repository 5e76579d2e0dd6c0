"""Captioning data: builtin:shapes, COCO captions JSON, Flickr8k-style captions.txt.

Every reader returns a :class:`pipelines.data.Dataset` with one row per *image* (so splits are by
image, never by caption): ``x`` the images at ``image_size`` (float32 [0, 1], RGB; files are read
lazily, see :mod:`pipelines.image_files`) and
``y`` an object array holding each image's list of reference captions. Problems name the file
(and line or annotation id); images without captions and empty captions are dropped and counted.
"""

import csv
import io
import json
from pathlib import Path

import numpy as np

from pipelines import imaging
from pipelines.data import Dataset, builtin_name
from pipelines.errors import UserError
from pipelines.image_files import lazy_or_loaded
from tasks.captioning import shapes

BUILTIN = {"shapes": "synthetic coloured shapes (2,000 32x32 images, 3-5 captions each: colour, "
                     "shape, count, relative position)"}
SHAPES_SIZE = 32


def load(spec, *, image_size=None):
    if spec.startswith("builtin:"):
        name = builtin_name(spec, BUILTIN, "captioning")
        images, references = shapes.generate()
        if image_size and image_size != SHAPES_SIZE:
            images = imaging.resize_batch(images, image_size)
        return _dataset(images, references, spec, BUILTIN[name], [])
    path = Path(spec)
    if path.is_dir():
        path = _caption_file_in(path)
    elif not path.is_file():
        raise UserError(f"--data {spec}: no such file or folder")
    if path.suffix.lower() == ".json":
        pairs, notes = read_coco(path)
        kind = "COCO captions JSON"
    else:
        pairs, notes = read_captions_txt(path)
        kind = "captions.txt (image,caption)"
    names = list(pairs)
    images = lazy_or_loaded([pairs[n][0] for n in names], size=image_size or 128, channels=3)
    return _dataset(images, [pairs[n][1] for n in names], spec,
                    f"{kind} {path}: {len(names)} images, {sum(len(pairs[n][1]) for n in names)} captions",
                    notes)


def _dataset(images, references, spec, description, notes):
    y = np.empty(len(references), dtype=object)
    y[:] = [list(r) for r in references]
    return Dataset(images, y, spec, description, info={}, notes=notes)


def _caption_file_in(folder):
    """A folder's COCO JSON (preferred: it keeps image ids and licences) or captions.txt."""
    jsons = sorted(folder.glob("*.json"))
    if len(jsons) > 1:
        jsons = [p for p in jsons if "caption" in p.name.lower()] or jsons
    if jsons:
        return jsons[0]
    for name in ("captions.txt", "captions.csv"):
        if (folder / name).is_file():
            return folder / name
    raise UserError(f"--data {folder}: no COCO captions .json or captions.txt in this folder")


def _image_folder(caption_file):
    """Images beside the caption file: ``images/``, ``Images/`` or the same folder."""
    for name in ("images", "Images"):
        if (caption_file.parent / name).is_dir():
            return caption_file.parent / name
    return caption_file.parent


def _image_path(folder, name, where):
    path = folder / name
    if not path.is_file():
        raise UserError(f"{where}: refers to image {name!r}, which is not in {folder}")
    return path


def read_coco(path):
    """{image name: (path, [captions])} from a COCO captions JSON (``images``, ``annotations``)."""
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, ValueError) as error:
        raise UserError(f"{path}: not a readable JSON file ({error})") from None
    for key in ("images", "annotations"):
        if not isinstance(document, dict) or not isinstance(document.get(key), list):
            raise UserError(f"{path}: a COCO captions file needs an {key!r} list")
    folder = _image_folder(path)
    names = {}
    for entry in document["images"]:
        if "id" not in entry or "file_name" not in entry:
            raise UserError(f"{path}: an entry of 'images' lacks 'id' or 'file_name': {entry}")
        names[entry["id"]] = entry["file_name"]
    captions, empty = {}, 0
    for note in document["annotations"]:
        image_id, text = note.get("image_id"), str(note.get("caption") or "").strip()
        if image_id not in names:
            raise UserError(f"{path}: annotation {note.get('id')} refers to image id {image_id}, "
                            f"which 'images' does not list")
        if not text:
            empty += 1
            continue
        captions.setdefault(names[image_id], []).append(text)
    if not captions:
        raise UserError(f"{path}: no captions in 'annotations'")
    pairs = {name: (_image_path(folder, name, path), refs) for name, refs in captions.items()}
    return pairs, _notes(len(names) - len(pairs), empty)


def read_captions_txt(path):
    """{image name: (path, [captions])} from a Flickr8k-style ``image,caption`` CSV."""
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as error:
        line = path.read_bytes()[:error.start].count(b"\n") + 1
        raise UserError(f"{path}, line {line}: not valid UTF-8") from None
    rows = list(csv.reader(io.StringIO(text, newline="")))  # not splitlines(): U+0085 is text
    if not rows or not any(rows):
        raise UserError(f"{path}: the caption file is empty")
    header = [c.strip().lower() for c in rows[0]]
    if header[:2] != ["image", "caption"]:
        raise UserError(f"{path}, line 1: expected the header 'image,caption', found {','.join(rows[0])!r}")
    folder = _image_folder(path)
    captions, empty = {}, 0
    for line, row in enumerate(rows[1:], start=2):
        if not row:
            continue
        if len(row) < 2:
            raise UserError(f"{path}, line {line}: expected image,caption")
        name, caption = row[0].strip(), ",".join(row[1:]).strip()
        if not caption:
            empty += 1
            continue
        captions.setdefault(name, []).append(caption)
    if not captions:
        raise UserError(f"{path}: no captions below the header")
    pairs = {}
    for line, row in enumerate(rows[1:], start=2):
        if row and row[0].strip() in captions and row[0].strip() not in pairs:
            name = row[0].strip()
            pairs[name] = (_image_path(folder, name, f"{path}, line {line}"), captions[name])
    return pairs, _notes(0, empty)


def _notes(uncaptioned, empty):
    notes = []
    if uncaptioned:
        notes.append(f"{uncaptioned} images without captions were left out")
    if empty:
        notes.append(f"{empty} empty captions were dropped")
    return notes
