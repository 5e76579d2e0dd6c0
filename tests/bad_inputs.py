"""The bad-input catalogue (issue 17): each case makes a bad input, runs the real CLI on it, and
names a fragment of the one line the user must see. ``tests/test_bad_inputs.py`` runs every
case (exit 2, one line, no traceback, no run folder left) and checks that docs/bad-inputs.md is
this catalogue rendered; after adding a case, regenerate it:

    python tests/bad_inputs.py
"""

import gzip
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

DOC = Path(__file__).resolve().parents[1] / "docs" / "bad-inputs.md"


@dataclass(frozen=True)
class Case:
    id: str
    area: str  # the reader, option or command that refuses it
    what: str  # the bad input, as the doc lists it
    make: Callable  # make(tmp: Path) -> argv; "OUT" in argv stands for the --output folder
    expect: str  # a fragment of the one-line message


def _png(path, array=None):
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.asarray(np.zeros((8, 8)) if array is None else array, np.uint8)).save(path)
    return path


def _folder(path, *made_before):
    path.mkdir(parents=True, exist_ok=True)
    return path


def _with_file(root, relative, data):
    (root / relative).parent.mkdir(parents=True, exist_ok=True)
    (root / relative).write_bytes(data)
    return root


def _classes(root, n=4, size=(8, 8), labels=("a", "b")):
    for label in labels:
        for i in range(n):
            _png(root / label / f"{label}{i}.png", np.full(size, 40 if label == "a" else 200))
    return root


def _small_weights(path):
    """A basic_cnn backbone's weights, to be refused by another architecture."""
    from pipelines.backbones import create_backbone

    path.parent.mkdir(parents=True, exist_ok=True)
    create_backbone("basic_cnn", (16, 16, 3), widths=[4, 8, 8]).save_weights(str(path))
    return path


def _text(path, text, encoding="utf-8"):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text.encode(encoding))
    return path


def _npz(path, **arrays):
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, **arrays)
    return path


def _nifti(path, data):
    import nibabel as nib

    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(np.asarray(data), np.eye(4)), str(path))
    return path


def _msd(root, image=None, label=None):
    _nifti(root / "imagesTr" / "c0.nii.gz", np.zeros((6, 6, 6), np.float32) if image is None else image)
    _nifti(root / "labelsTr" / "c0.nii.gz", np.zeros((6, 6, 6), np.uint8) if label is None else label)
    return root


def train(task, data, *extra):
    return ["train", task, "--data", str(data), "--output", "OUT", *map(str, extra)]


def _bomb(root):
    """A 1-bit PNG of 20000 x 20000 pixels: about 50 KB on disk."""
    from PIL import Image

    Image.new("1", (20_000, 20_000)).save(root / "a" / "bomb.png")
    return root


def _symlinked_csv(tmp):
    _png(tmp / "outside" / "secret.png", np.zeros((8, 8)))
    (tmp / "data").mkdir()
    os.symlink(tmp / "outside" / "secret.png", tmp / "data" / "link.png")
    return _text(tmp / "data" / "m.csv", "path,label\nlink.png,a\nlink.png,b\n")


def _run_dir(tmp):
    (tmp / "notarun").mkdir(parents=True)
    return tmp / "notarun"


CASES = [
    # -- paths and folders ------------------------------------------------------------------------
    Case("missing-path", "every task's --data", "a path that does not exist",
         lambda t: train("image-classification", t / "nope"), "nope: no such file or folder"),
    Case("empty-folder", "image folders", "an empty folder",
         lambda t: train("image-classification", _folder(t / "empty")), "empty folder"),
    Case("wrong-file-type", "image-classification --data", "a file of an unknown kind (.xlsx)",
         lambda t: train("image-classification", _text(t / "d.xlsx", "x")), "expected a class folder"),
    Case("one-class", "image folders", "one class only",
         lambda t: train("image-classification", _classes(t / "c", labels=("a",))), "only one class"),
    Case("corrupt-png", "image files", "a file that is not an image, among images",
         lambda t: train("image-classification", _with_file(_classes(t / "c"), "a/bad.png", b"no")),
         "bad.png: cannot decode image"),
    Case("decompression-bomb", "image files", "a small PNG claiming 400 million pixels",
         lambda t: train("image-classification", _bomb(_classes(t / "c"))), "decompression bomb"),
    # -- CSV manifests ----------------------------------------------------------------------------
    Case("csv-columns", "CSV manifests", "a CSV without the path/label columns",
         lambda t: train("image-classification", _text(t / "m.csv", "file,class\na.png,x\n")),
         "m.csv: missing column(s) path, label"),
    Case("csv-escape-dotdot", "CSV manifests", "a path escaping the CSV's folder with ..",
         lambda t: train("image-classification", _text(t / "d" / "m.csv", "path,label\n../x.png,a\n../y.png,b\n")),
         "outside"),
    Case("csv-escape-absolute", "CSV manifests", "an absolute path",
         lambda t: train("image-classification", _text(t / "d" / "m.csv", "path,label\n/etc/passwd,a\n/etc/hosts,b\n")),
         "outside"),
    Case("csv-escape-symlink", "CSV manifests", "a symlink pointing outside the CSV's folder",
         lambda t: train("image-classification", _symlinked_csv(t)), "outside"),
    Case("csv-encoding", "text-classification CSV", "a CSV that is not UTF-8 (Latin-1 bytes)",
         lambda t: train("text-classification", _text(t / "t.csv", "text,label\ncaf\u00e9 ok,a\nbad,b\n", "latin-1")),
         "t.csv, line 2: not valid utf-8"),
    Case("csv-empty-label", "text-classification CSV", "a row with an empty label",
         lambda t: train("text-classification", _text(t / "t.csv", "text,label\nhello,a\nworld,\n")),
         "t.csv, line 3: empty label"),
    Case("csv-huge-line", "text-classification CSV", "a 40 MB file of one line (no row end)",
         lambda t: train("text-classification", _text(t / "t.csv", "text,label\n" + "a" * 40_000_000)),
         "t.csv, line 2: longer than 10,000,000 characters"),
    Case("csv-unicode-lines", "text-classification CSV",
         "fields holding U+0085 / U+2028 / form feed (read as text, not as line ends: two rows, one class)",
         lambda t: train("text-classification", _text(t / "t.csv", "text,label\na\u0085b,x\nc\u2028d\x0ce,x\n")),
         "only one class"),
    Case("text-channels", "text-classification", "a text channel the backbone does not have",
         lambda t: train("text-classification", "builtin:sms_spam", "--set", "backbone_options.channels=letters"),
         "channels must be one of word, char, word+char, got 'letters'"),
    Case("text-vectors-no-word", "text-classification", "word vectors for a character-only backbone",
         lambda t: train("text-classification", "builtin:sms_spam", "--set", "backbone_options.channels=char",
                         "--set", f"word_vectors={_text(t / 'v.txt', 'free 0.1 0.2 0.3' + chr(10))}"),
         "with channels=char has no word channel"),
    # -- arrays -----------------------------------------------------------------------------------
    Case("npz-missing-x", ".npz arrays", "an .npz without x",
         lambda t: train("image-classification", _npz(t / "d.npz", images=np.zeros((4, 8, 8)), y=np.arange(4))),
         "d.npz: missing array(s) x"),
    Case("npz-empty-file", ".npz arrays", "an empty .npz file",
         lambda t: train("image-classification", _text(t / "d.npz", "")), "d.npz: cannot read .npz"),
    Case("npz-truncated", ".npz arrays", "a truncated .npz",
         lambda t: train("image-classification", _text(t / "d.npz", "PK\x03\x04trunc", "latin-1")), "d.npz: cannot read .npz"),
    Case("npz-nan", ".npz arrays", "images holding NaN",
         lambda t: train("image-classification", _npz(t / "d.npz", x=np.full((6, 8, 8), np.nan), y=np.arange(6) % 2)),
         "NaN or infinite"),
    Case("npz-label-count", ".npz arrays", "fewer labels than images",
         lambda t: train("image-classification", _npz(t / "d.npz", x=np.zeros((6, 8, 8)), y=np.arange(5) % 2)),
         "one label per image"),
    Case("npz-zero-size", ".npz arrays", "zero-size images",
         lambda t: train("image-classification", _npz(t / "d.npz", x=np.zeros((6, 0, 0)), y=np.arange(6) % 2)),
         "d.npz: x holds no pixels"),
    Case("npz-class-names", ".npz arrays", "class_names that do not cover the labels",
         lambda t: train("volume-classification", _npz(t / "v.npz", x=np.zeros((6, 4, 4, 4)), y=np.arange(6) % 3,
                                                          class_names=np.array(["a", "b"]))),
         "class_names has 2 names"),
    Case("volume-2d", "volume-classification", "2D images where volumes are expected",
         lambda t: train("volume-classification", _npz(t / "v.npz", x=np.zeros((6, 8, 8)), y=np.arange(6) % 2)),
         "holds 2D images"),
    Case("volume-4d", "volume-classification", "4D volumes",
         lambda t: train("volume-classification", _npz(t / "v.npz", x=np.zeros((6, 2, 4, 4, 4, 1)), y=np.arange(6) % 2)),
         "expected volumes"),
    Case("image-given-volumes", "image-classification", "volumes given to the 2D image task",
         lambda t: train("image-classification", _npz(t / "v.npz", x=np.zeros((6, 8, 8, 8)), y=np.arange(6) % 2)),
         "for volumes (N,D,H,W) use volume-classification"),
    Case("volume-nan", "volume-classification", "a NaN voxel",
         lambda t: train("volume-classification", _npz(t / "v.npz", x=np.full((6, 4, 4, 4), np.nan), y=np.arange(6) % 2)),
         "NaN or infinite voxel"),
    # -- captions ---------------------------------------------------------------------------------
    Case("coco-invalid-json", "captioning JSON", "a captions JSON that does not parse",
         lambda t: train("captioning", _text(t / "c.json", "{\"images\": [")), "c.json"),
    Case("coco-shape", "captioning JSON", "a JSON list instead of COCO's object",
         lambda t: train("captioning", _text(t / "c.json", "[1, 2]")), "c.json"),
    # -- segmentation -----------------------------------------------------------------------------
    Case("nifti-corrupt", "NIfTI volumes", "a corrupt .nii.gz",
         lambda t: train("medical-segmentation", _with_file(_msd(t / "m"), "imagesTr/c0.nii.gz", gzip.compress(b"junk"))),
         "c0.nii.gz: cannot read this NIfTI file"),
    Case("nifti-4d", "NIfTI volumes", "a 4D NIfTI",
         lambda t: train("medical-segmentation", _msd(t / "m", image=np.zeros((4, 4, 4, 2), np.float32))),
         "expected a 3D volume, got 4D"),
    Case("mask-missing", "images/ + masks/ folders", "an image without its mask",
         lambda t: train("medical-segmentation", _folder(t / "s" / "masks", _png(t / "s" / "images" / "a.png")).parent),
         "a.png: no mask with the same name"),
    Case("flip-axes", "medical-segmentation", "flip_axes naming an axis the input does not have",
         lambda t: train("medical-segmentation", _msd(t / "m"), "--set", "spatial_dims=3", "--set", "augment=true",
                         "--set", "flip_axes=[3]"),
         "flip_axes=[3]: give distinct spatial axes among [0, 1, 2]"),
    Case("volume-too-thin", "volume-classification", "volumes thinner than the backbone's pooling",
         lambda t: train("volume-classification",
                         _npz(t / "v.npz", x=np.zeros((8, 2, 16, 16), np.float32), y=np.arange(8) % 2)),
         "needs inputs of at least 8 along every axis, got 2x16x16"),
    Case("seg-3d-on-2d", "medical-segmentation", "spatial_dims=3 on 2D images",
         lambda t: train("medical-segmentation", "builtin:phantoms", "--set", "spatial_dims=3"),
         "needs volumes"),
    # -- steering ---------------------------------------------------------------------------------
    Case("steering-value", "steering CSV", "a steering angle that is not a number",
         lambda t: train("steering", _text(_png(t / "f" / "a.png").parent / "labels.csv", "path,steering\na.png,left\n")),
         "labels.csv:2"),
    # -- object detection -------------------------------------------------------------------------
    Case("voc-malformed", "Pascal VOC XML", "an annotation file that is not well-formed XML",
         lambda t: train("object-detection", _text(_png(t / "d" / "a.png").parent / "a.xml",
                                                   "<annotation><filename>a.png</filename><object>").parent),
         "a.xml: not well-formed XML"),
    Case("voc-missing-image", "Pascal VOC XML", "an annotation naming an image that is not there",
         lambda t: train("object-detection", _text(t / "d" / "a.xml",
                                                   "<annotation><filename>gone.jpg</filename></annotation>").parent),
         "a.xml: its image gone.jpg was not found"),
    Case("voc-bad-box", "Pascal VOC XML", "a box corner that is not a number",
         lambda t: train("object-detection", _text(_png(t / "d" / "a.png").parent / "a.xml",
                         "<annotation><filename>a.png</filename><object><name>cell</name><bndbox><xmin>x</xmin>"
                         "<ymin>1</ymin><xmax>4</xmax><ymax>4</ymax></bndbox></object></annotation>").parent),
         "a.xml: object 1 (cell): <bndbox> needs numeric xmin"),
    Case("yolo-class", "YOLO labels", "a class id beyond the names file",
         lambda t: train("object-detection", _text(_text(_png(t / "y" / "images" / "a.png").parents[1] / "classes.txt",
                                                         "cell\n").parent / "labels" / "a.txt",
                                                   "3 0.5 0.5 0.2 0.2\n").parents[1]),
         "a.txt:1: class 3 is not among the 1 names"),
    Case("coco-detection-category", "COCO instances JSON", "an annotation whose category is not declared",
         lambda t: train("object-detection", _text(_png(t / "c" / "images" / "a.png").parents[1] / "instances.json", json.dumps(
             {"images": [{"id": 1, "file_name": "a.png"}], "categories": [{"id": 1, "name": "cell"}],
              "annotations": [{"id": 1, "image_id": 1, "category_id": 5, "bbox": [1, 1, 3, 3]}]}))),
         "has category_id 5, not among the categories"),
    Case("detection-empty", "object-detection", "a folder with no annotations in any format",
         lambda t: train("object-detection", _folder(t / "empty")),
         "no Pascal VOC XML files, COCO instances JSON or YOLO"),
    # -- options ----------------------------------------------------------------------------------
    Case("unknown-set-key", "--set", "an unknown key",
         lambda t: ["train", "image-classification", "--set", "epoch=3", "--output", "OUT"], "unknown key 'epoch'"),
    Case("absurd-value", "options", "a negative number of epochs",
         lambda t: ["train", "image-classification", "--epochs", "-1", "--output", "OUT"], "--epochs"),
    Case("bad-toml", "--config", "a TOML file that does not parse",
         lambda t: ["train", "image-classification", "--config", str(_text(t / "c.toml", "epochs = = 3")),
                    "--output", "OUT"], "c.toml: invalid TOML"),
    Case("unknown-backbone", "--backbone", "a backbone that is not registered",
         lambda t: ["train", "image-classification", "--backbone", "resnet81", "--output", "OUT"],
         "unknown backbone 'resnet81'"),
    Case("imagenet-without-weights", "--backbone-weights imagenet", "a backbone with no ImageNet weights",
         lambda t: ["train", "image-classification", "--backbone-weights", "imagenet", "--output", "OUT"],
         "backbone 'basic_cnn' has no imagenet weights; backbones that have them: efficientnet_lite0"),
    Case("keras-hub-preset-missing", "--backbone-weights keras_hub:PRESET", "a KerasHub preset that does not exist",
         lambda t: ["train", "image-classification", "--backbone-weights", f"keras_hub:{t / 'no_preset'}",
                    "--output", "OUT"], "cannot load that KerasHub preset"),
    Case("weights-other-architecture", "--backbone-weights FILE", "a weights file of another architecture",
         lambda t: ["train", "image-classification", "--backbone", "efficientnet_lite0", "--backbone-weights",
                    str(_small_weights(t / "small.weights.h5")), "--set", "image_size=32", "--output", "OUT"],
         "small.weights.h5: does not fit backbone 'efficientnet_lite0'"),
    Case("patch-size", "--set patch_size", "a 3D patch without three sizes",
         lambda t: ["train", "medical-segmentation", "--set", "spatial_dims=3", "--set", "patch_size=[8,8]",
                    "--output", "OUT"], "give three positive whole numbers"),
    # -- commands ---------------------------------------------------------------------------------
    Case("not-a-run", "evaluate / predict / export", "a folder that is not a run",
         lambda t: ["evaluate", str(_run_dir(t))], "notarun: not a cnn-tasks run directory"),
    Case("split-without-data", "evaluate --split", "--split without --data (the run's own test split is fixed)",
         lambda t: ["evaluate", str(_run_dir(t)), "--split", "all"], "--split goes with --data"),
    Case("unknown-task", "train", "a task that does not exist",
         lambda t: ["train", "image-classifcation", "--output", "OUT"], "image-classifcation"),
]


def render():
    """docs/bad-inputs.md: the catalogue as a table, by area."""
    lines = ["# Bad inputs", "",
             "Every case below is run by `tests/test_bad_inputs.py` through the real command line: it",
             "exits with code 2, prints one line (no traceback) containing the text shown, and leaves no",
             "run folder behind. The readers are also fuzzed with hypothesis (`tests/test_fuzz_readers.py`:",
             "random bytes, random CSV rows with Unicode line separators, random JSON shapes, random",
             "`.npz` shapes and dtypes): a reader either reads the input or refuses it in one line.",
             "This file is generated from `tests/bad_inputs.py` (`python tests/bad_inputs.py`).", "",
             f"{len(CASES)} cases.", "",
             "| area | bad input | the message contains |", "|---|---|---|"]
    for case in CASES:
        lines.append(f"| {case.area} | {case.what} | `{case.expect}` |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    DOC.write_text(render(), encoding="utf-8")
    print(f"wrote {DOC} ({len(CASES)} cases)")
