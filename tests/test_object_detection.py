"""Object detection: the three annotation formats, boxes through augmentation, anchors, the
target encoding, COCO metrics, and a tiny run that trains, evaluates on the other formats,
predicts in each image's own pixels and exports with NMS in the graph."""

import json

import numpy as np
import pytest

from conftest import evaluate_document, run_cli, serve_in_fresh_process, write_png
from pipelines.errors import UserError

SIZES = [(96, 128), (80, 112), (112, 144), (96, 96)]  # (height, width): images of several sizes
CLASSES = ["blue", "red"]
TINY = ("--set", "backbone_weights=none", "--backbone", "basic_cnn", "--set", "backbone_options.widths=[8,16,32]",
        "--set", "min_level=3", "--set", "max_level=4", "--set", "image_height=64", "--set", "image_width=96",
        "--set", "fpn_width=16", "--set", "head_depth=1", "--batch-size", "4", "--set", "example_images=2")


def scene(index):
    """(pixels, boxes): a dark noisy image with a few bright red squares and blue rectangles;
    boxes are x1, y1, x2, y2 (pixel edges) and the class index into CLASSES."""
    rng = np.random.default_rng(index)
    height, width = SIZES[index % len(SIZES)]
    image = rng.integers(0, 40, (height, width, 3))
    boxes = []
    for _ in range(int(rng.integers(1, 4))):
        label = int(rng.integers(0, 2))
        side_w, side_h = (int(rng.integers(14, 20)),) * 2 if label == 1 else (int(rng.integers(22, 30)), 16)
        x1, y1 = int(rng.integers(0, width - side_w)), int(rng.integers(0, height - side_h))
        if any(x1 < b[2] + 2 and b[0] < x1 + side_w + 2 and y1 < b[3] + 2 and b[1] < y1 + side_h + 2 for b in boxes):
            continue
        image[y1:y1 + side_h, x1:x1 + side_w] = (230, 30, 30) if label == 1 else (30, 60, 230)
        boxes.append((x1, y1, x1 + side_w, y1 + side_h, label))
    return image, boxes


def write_voc(root, count=24, test_every=4):
    """A VOC folder: Annotations/, JPEGImages/ (PNG files are fine too), ImageSets/Main."""
    split = {"train": [], "test": []}
    for i in range(count):
        image, boxes = scene(i)
        name = f"img_{i:03d}"
        write_png(root / "JPEGImages" / f"{name}.png", image)
        objects = "".join(
            f"<object><name>{CLASSES[c]}</name><bndbox><xmin>{x1 + 1}</xmin><ymin>{y1 + 1}</ymin>"
            f"<xmax>{x2}</xmax><ymax>{y2}</ymax></bndbox></object>" for x1, y1, x2, y2, c in boxes)
        (root / "Annotations").mkdir(parents=True, exist_ok=True)
        (root / "Annotations" / f"{name}.xml").write_text(
            f"<annotation><folder>JPEGImages</folder><filename>{name}.png</filename>"
            f"<path>C:\\labelling\\{name}.png</path><size><width>{image.shape[1]}</width>"
            f"<height>{image.shape[0]}</height></size>{objects}</annotation>")
        split["test" if i % test_every == 0 else "train"].append(name)
    (root / "ImageSets" / "Main").mkdir(parents=True, exist_ok=True)
    for part, names in split.items():
        (root / "ImageSets" / "Main" / f"{part}.txt").write_text("\n".join(names) + "\n")
    return root


def write_coco(root, indices):
    images, annotations = [], []
    for i in indices:
        image, boxes = scene(i)
        write_png(root / "images" / f"c_{i}.png", image)
        images.append({"id": 100 + i, "file_name": f"c_{i}.png", "height": image.shape[0], "width": image.shape[1]})
        for x1, y1, x2, y2, c in boxes:
            annotations.append({"id": len(annotations) + 1, "image_id": 100 + i, "category_id": 7 + c,
                                "bbox": [x1, y1, x2 - x1, y2 - y1], "area": (x2 - x1) * (y2 - y1), "iscrowd": 0})
    path = root / "instances.json"
    path.write_text(json.dumps({"images": images, "annotations": annotations,
                                "categories": [{"id": 7, "name": "blue"}, {"id": 8, "name": "red"}]}))
    return path


def write_yolo(root, indices, names=("red", "blue")):
    """YOLO labels with the class order reversed against CLASSES (names map by name)."""
    (root / "labels").mkdir(parents=True, exist_ok=True)
    (root / "classes.txt").write_text("\n".join(names) + "\n")
    for i in indices:
        image, boxes = scene(i)
        height, width = image.shape[:2]
        write_png(root / "images" / f"y_{i}.png", image)
        lines = [f"{names.index(CLASSES[c])} {(x1 + x2) / 2 / width} {(y1 + y2) / 2 / height} "
                 f"{(x2 - x1) / width} {(y2 - y1) / height}" for x1, y1, x2, y2, c in boxes]
        (root / "labels" / f"y_{i}.txt").write_text("\n".join(lines))
    return root


def _boxes_by_name(dataset):
    from pathlib import Path

    names = dataset.info["class_names"]
    return {Path(p).stem.split("_")[-1]: sorted((*np.round(b[:4], 3), names[int(b[4])]) for b in boxes)
            for p, boxes in zip(dataset.x["images"], dataset.y)}


def test_the_three_formats_read_the_same_boxes_in_each_images_own_pixels(tmp_path):
    from tasks.object_detection.annotations import load

    voc = load(str(write_voc(tmp_path / "voc", count=8)))
    coco = load(str(write_coco(tmp_path / "coco", range(8))))
    yolo = load(str(write_yolo(tmp_path / "yolo", range(8))))
    assert voc.info["class_names"] == coco.info["class_names"] == CLASSES
    assert yolo.info["class_names"] == ["red", "blue"]  # the names file's order
    expected = {f"{i:03d}" if False else str(i): sorted((*map(float, b[:4]), CLASSES[b[4]]) for b in scene(i)[1])
                for i in range(8)}
    for dataset in (voc, coco, yolo):
        got = {str(int(k)): v for k, v in _boxes_by_name(dataset).items()}
        for key, rows in expected.items():
            np.testing.assert_allclose([r[:4] for r in got[key]], [r[:4] for r in rows], atol=1e-3)
            assert [r[4] for r in got[key]] == [r[4] for r in rows]
    assert sorted(map(tuple, voc.x["sizes"])) == sorted(SIZES * 2)
    assert {k: len(v) for k, v in voc.declared_splits.items()} == {"train": 6, "test": 2}


def test_bccd_split_and_zero_size_boxes(tmp_path):
    from tasks.object_detection.annotations import load

    dataset = load("builtin:bccd", seed=0)
    assert dataset.declared_splits is None  # train/val only: the test part is the run's choice
    counts = {k: len(v) for k, v in dataset.made_splits.items()}
    assert counts == {"train": 205, "val": 43, "test": 44}
    assert dataset.info["class_names"] == ["Platelets", "RBC", "WBC"]
    assert "2 box(es) dropped (no area: x_min >= x_max or y_min >= y_max)" in dataset.notes
    assert sum(len(b) for b in dataset.y) == 3941


def test_annotators_slips_are_dropped_or_clipped_and_counted(tmp_path):
    from tasks.object_detection.annotations import load

    root = tmp_path / "slips"
    write_png(root / "images" / "a.png", np.zeros((40, 60, 3)))
    write_png(root / "images" / "empty.png", np.zeros((30, 30, 3)))
    (root / "annotations").mkdir(parents=True)
    (root / "annotations" / "a.xml").write_text(
        "<annotation><filename>a.png</filename>"
        "<object><name>cell</name><bndbox><xmin>11</xmin><ymin>11</ymin><xmax>20</xmax><ymax>20</ymax></bndbox></object>"
        "<object><name>cell</name><bndbox><xmin>50</xmin><ymin>5</ymin><xmax>80</xmax><ymax>15</ymax></bndbox></object>"
        "<object><name>cell</name><bndbox><xmin>30</xmin><ymin>5</ymin><xmax>30</xmax><ymax>15</ymax></bndbox></object>"
        "<object><name>cell</name><bndbox><xmin>70</xmin><ymin>5</ymin><xmax>90</xmax><ymax>15</ymax></bndbox></object>"
        "</annotation>")
    (root / "annotations" / "empty.xml").write_text("<annotation><filename>empty.png</filename></annotation>")
    dataset = load(str(root))
    boxes = dict(zip([p.split("/")[-1] for p in dataset.x["images"]], dataset.y))
    np.testing.assert_allclose(boxes["a.png"][:, :4], [[10, 10, 20, 20], [49, 4, 60, 15]])
    assert len(boxes["empty.png"]) == 0  # background, valid
    assert set(dataset.notes) == {"1 box(es) clipped to the image's edges",
                                  "1 box(es) dropped (no area: x_min >= x_max or y_min >= y_max)",
                                  "1 box(es) dropped (outside the image)",
                                  "1 image(s) without boxes (background)"}


@pytest.mark.parametrize("case", ["malformed", "missing_image", "empty", "bad_yolo_class", "coco_category"])
def test_bad_annotations_are_refused_naming_the_file(tmp_path, case):
    from tasks.object_detection.annotations import load

    root = tmp_path / case
    root.mkdir()
    if case == "malformed":
        write_png(root / "a.png", np.zeros((8, 8, 3)))
        (root / "a.xml").write_text("<annotation><filename>a.png</filename><object>")
        expected = "a.xml: not well-formed XML"
    elif case == "missing_image":
        (root / "a.xml").write_text("<annotation><filename>gone.jpg</filename></annotation>")
        expected = "a.xml: its image gone.jpg was not found"
    elif case == "empty":
        (root / "notes.txt").write_text("nothing here")
        expected = "no Pascal VOC XML files, COCO instances JSON or YOLO"
    elif case == "bad_yolo_class":
        write_yolo(root, [0])
        (root / "labels" / "y_0.txt").write_text("5 0.5 0.5 0.1 0.1\n")
        expected = "y_0.txt:1: class 5 is not among the 2 names"
    else:
        path = write_coco(root, [0])
        document = json.loads(path.read_text())
        document["annotations"][0]["category_id"] = 99
        path.write_text(json.dumps(document))
        expected = "has category_id 99, not among the categories"
    with pytest.raises(UserError, match=expected.replace("(", r"\(").replace(".", r"\.")):
        load(str(root))


def _marked(height, width, boxes):
    """An image that is 1 inside each box and 0 elsewhere."""
    image = np.zeros((height, width, 3), np.float32)
    for x1, y1, x2, y2, _ in boxes:
        image[int(y1):int(y2), int(x1):int(x2)] = 1.0
    return image


def test_flips_move_the_boxes_with_the_pixels_exactly():
    import tensorflow as tf

    from tasks.object_detection.augment import flips

    boxes = np.array([[[4, 6, 20, 14, 0], [30, 2, 40, 30, 1], [-1, -1, -1, -1, -1]]], np.float32)
    images = np.repeat(_marked(32, 48, boxes[0, :2])[None], 16, axis=0)
    boxes = np.repeat(boxes, 16, axis=0)
    out_images, out_boxes = flips(tf.constant(images), tf.constant(boxes), tf.constant([3, 4]))
    out_images, out_boxes = out_images.numpy(), out_boxes.numpy()
    assert (out_boxes[:, 2] == -1).all()  # padding stays padding
    for image, rows in zip(out_images, out_boxes):
        np.testing.assert_array_equal(image, _marked(32, 48, rows[:2]))
    assert len({tuple(b.ravel()) for b in out_boxes}) == 4  # every combination of the two flips drawn


def test_scale_jitter_keeps_boxes_on_their_objects():
    import tensorflow as tf

    from tasks.object_detection.augment import scale_jitter

    boxes = np.array([[[8, 8, 24, 20, 0], [40, 30, 60, 50, 1], [-1, -1, -1, -1, -1]]], np.float32)
    images = np.repeat(_marked(64, 80, boxes[0, :2])[None], 12, axis=0)
    out_images, out_boxes = scale_jitter(tf.constant(images), tf.constant(np.repeat(boxes, 12, axis=0)),
                                         tf.constant([1, 2]), 0.7, 1.4)
    for image, rows in zip(out_images.numpy(), out_boxes.numpy()):
        assert rows[2, 4] == -1
        for x1, y1, x2, y2, c in rows[rows[:, 4] >= 0]:
            inside = image[int(np.ceil(y1)) + 1:int(y2) - 1, int(np.ceil(x1)) + 1:int(x2) - 1, 0]
            assert inside.size and inside.min() > 0.9  # the object fills its moved box
            ring = image[max(int(y1) - 2, 0):int(y2) + 2, max(int(x1) - 2, 0):int(x2) + 2, 0]
            assert ring.sum() <= image[..., 0].sum()
        mass = (image[..., 0] > 0.5).sum()
        covered = sum((x2 - x1) * (y2 - y1) for x1, y1, x2, y2, c in rows if c >= 0)
        assert abs(mass - covered) <= 0.15 * max(covered, 1) + 2 * 4 * 30  # boxes still bound the objects


def test_targets_decode_back_to_the_boxes_and_small_boxes_get_small_anchors():
    import tensorflow as tf

    from tasks.object_detection.anchors import AnchorSpec, choose_anchor_size
    from tasks.object_detection.model import decode, encode_targets

    spec = AnchorSpec(320, 416, anchor_size=3)
    anchors = spec.boxes()
    assert anchors.shape == (9 * (40 * 52 + 20 * 26 + 10 * 13), 4)
    truth = np.array([[[10, 20, 36, 46, 0], [100, 100, 200, 180, 2], [-1, -1, -1, -1, -1]]], np.float32)
    targets = np.asarray(encode_targets(truth, anchors))
    positive = targets[0, :, 4] >= 0
    assert set(targets[0, positive, 4]) == {0.0, 2.0}  # both boxes matched, the padding never
    raw = np.full((1, len(anchors), 4 + 3), -10.0, np.float32)
    raw[..., :4] = targets[..., :4]
    raw[0, positive, 4 + targets[0, positive, 4].astype(int)] = 10.0
    boxes, scores, classes, valid = (t.numpy() for t in decode(tf.constant(raw), anchors))
    assert int(valid[0]) == 2
    order = np.argsort(classes[0, :2])
    np.testing.assert_allclose(boxes[0, :2][order], truth[0, :2, :4], atol=1e-3)
    rng = np.random.default_rng(0)  # small boxes (17-22 px, the smallest platelets at 416x320) anywhere in the image
    corners = rng.uniform(0, 280, (60, 2))
    sides = rng.uniform(17, 22, (60, 1))
    small = [np.concatenate([corners, corners + sides, np.zeros((60, 1))], axis=1).astype(np.float32)]
    size, measured = choose_anchor_size(spec, small)
    assert size < 4.0 and measured[size][0] >= 0.95 and measured[4.0][0] < 0.9


def test_coco_metrics_by_pycocotools():
    from tasks.object_detection.metrics import detection_metrics, threshold_table

    truth = [np.array([[0, 0, 10, 10, 0], [20, 20, 40, 40, 1]], np.float32), np.zeros((0, 5), np.float32)]
    perfect = [np.array([[0, 0, 10, 10, 0.9, 0], [20, 20, 40, 40, 0.8, 1]], np.float32), np.zeros((0, 6))]
    values = detection_metrics(truth, perfect, ["a", "b"])
    assert values["map"] == pytest.approx(1.0) and values["ap50_b"] == pytest.approx(1.0)
    shifted = [np.array([[0, 0, 10, 10, 0.9, 0], [25, 25, 45, 45, 0.8, 1]], np.float32), np.zeros((0, 6))]
    values = detection_metrics(truth, shifted, ["a", "b"])  # IoU 225/575 = 0.39 for b: missed at .5
    assert values["ap50_a"] == pytest.approx(1.0) and values["ap50_b"] == pytest.approx(0.0)
    assert values["map50"] == pytest.approx(0.5)
    rows = threshold_table(truth, shifted)
    assert rows[0]["precision"] == pytest.approx(0.5) and rows[0]["recall"] == pytest.approx(0.5)
    nothing = detection_metrics(truth, [np.zeros((0, 6)), np.zeros((0, 6))], ["a", "b"])
    assert nothing["map"] == 0.0 and nothing["recall"] == 0.0


@pytest.fixture(scope="module")
def detection_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("detection")
    data = write_voc(root / "voc", count=24)
    out = root / "runs"
    assert run_cli("train", "object-detection", "--data", data, "--epochs", 8, "--learning-rate", "3e-3",
                   "--output", out, "--quiet", *TINY) == 0  # enough to detect something (17 s)
    (run_dir,) = (out / "object-detection").iterdir()
    return run_dir, root


@pytest.mark.slow
def test_a_tiny_run_trains_and_reports_coco_metrics(detection_run):
    run_dir, _ = detection_run
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert set(metrics["metrics"]) == {"map", "map50", "map75", "ap50_blue", "ap50_red", "recall"}
    assert metrics["n_samples"] == 6 and metrics["split"] == "test"
    assert metrics["baseline"]["name"].startswith("colour_components")
    assert set(metrics["baseline"]["metrics"]) == set(metrics["metrics"])
    history = (run_dir / "history.csv").read_text().splitlines()
    assert "val_map" in history[0] and "val_map50" in history[0] and len(history) == 9
    assert metrics["metrics"]["map50"] > 0  # it learnt to find some of the squares
    report = (run_dir / "report.md").read_text()
    assert "AP@0.5 per class" in report and "score threshold" in report
    assert (run_dir / "figures" / "precision_recall.png").is_file()
    assert (run_dir / "figures" / "examples.png").is_file()
    assert (run_dir / "figures" / "box_gradcam.png").is_file() and "Grad-CAM for one detection" in report


@pytest.mark.slow
def test_evaluate_maps_other_formats_by_class_name_and_refuses_unknown_classes(detection_run, tmp_path, capsys):
    run_dir, root = detection_run
    coco = write_coco(tmp_path / "coco", range(30, 36))
    yolo = write_yolo(tmp_path / "yolo", range(30, 36))  # class ids in the other order
    by_coco = evaluate_document(capsys, run_dir, "--data", coco)
    by_yolo = evaluate_document(capsys, run_dir, "--data", yolo)
    assert by_coco["n_samples"] == by_yolo["n_samples"] == 6 and by_coco["split"] == "all"
    for key in by_coco["metrics"]:
        assert by_coco["metrics"][key] == pytest.approx(by_yolo["metrics"][key], abs=1e-6), key
    strange = write_yolo(tmp_path / "strange", range(30, 32))
    (strange / "classes.txt").write_text("red\ngreen\n")  # class 1 is now a class the run never saw
    assert run_cli("evaluate", run_dir, "--data", strange) == 2
    assert "classes ['green'] are not among the run's classes ['blue', 'red']" in capsys.readouterr().err


@pytest.mark.slow
def test_a_new_process_loads_the_run(detection_run):
    """model.keras names the detection loss: a process that did not train must find it."""
    import subprocess
    import sys

    run_dir, root = detection_run
    image = sorted((root / "voc" / "JPEGImages").glob("*.png"))[0]
    done = subprocess.run([sys.executable, "-m", "pipelines.cli", "predict", str(run_dir), str(image), "--json"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "detections" in json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_predict_answers_in_each_images_own_pixels(detection_run, tmp_path, capsys):
    """An image 3x the training size, and the same image already at the network's 64x96 (what the
    network sees of it): the same detections, the big one's boxes 3x as large, in its pixels."""
    import tensorflow as tf
    from PIL import Image

    from pipelines.frames import crop_and_resize
    from tasks.object_detection.anchors import pairwise_iou

    run_dir, root = detection_run
    image, _ = scene(3)
    big = np.kron(image[:64, :96], np.ones((3, 3, 1))).astype(np.uint8)  # 192x288
    seen = crop_and_resize(tf.constant(big / 255.0, tf.float32), crop_top=0.0, crop_bottom=0.0, height=64, width=96)
    write_png(tmp_path / "big.png", big)
    write_png(tmp_path / "seen.png", np.round(seen.numpy() * 255))
    capsys.readouterr()
    assert run_cli("predict", run_dir, tmp_path / "seen.png", tmp_path / "big.png", "--json",
                   "--set", "score_threshold=0.0", "--out", tmp_path / "drawn") == 0
    small, large = (json.loads(line) for line in capsys.readouterr().out.strip().splitlines())
    assert small["detections"] and large["detections"]
    found = np.array([d["box"] for d in small["detections"]])
    for b in sorted(large["detections"], key=lambda d: -d["score"])[:3]:
        same = [i for i, d in enumerate(small["detections"]) if d["class"] == b["class"]]
        assert same and pairwise_iou(np.array([b["box"]]) / 3, found[same]).max() >= 0.95
        assert 0 <= b["box"][0] < b["box"][2] <= big.shape[1] and 0 <= b["box"][1] < b["box"][3] <= big.shape[0]
    with Image.open(large["output"]) as drawn:
        assert drawn.size == (big.shape[1], big.shape[0])


@pytest.mark.slow
def test_saved_model_with_nms_in_the_graph_matches_predict_and_tflite_the_heads(detection_run, tmp_path, capsys):
    from conftest import run_tflite
    from pipelines import workflow

    run_dir, root = detection_run
    files = sorted((root / "voc" / "JPEGImages").glob("*.png"))[:4]  # several sizes in one request
    capsys.readouterr()
    assert run_cli("predict", run_dir, *files, "--json", "--set", "score_threshold=0.05") == 0
    records = [json.loads(line) for line in capsys.readouterr().out.strip().splitlines()]
    assert run_cli("export", run_dir, "--format", "saved_model", "--out", tmp_path / "sm") == 0
    served = serve_in_fresh_process(tmp_path / "sm" / "1", "serving_default",
                                    {"image_bytes": {"files": [str(f) for f in files]}}, tmp_path)
    for i, record in enumerate(records):
        k = int(served["num_detections"][i])
        assert k == len(record["detections"])
        for j, detection in enumerate(record["detections"]):
            np.testing.assert_allclose(served["boxes"][i, j], detection["box"], atol=0.06)
            assert served["scores"][i, j] == pytest.approx(detection["score"], abs=1e-4)
            assert served["class_names"][i * served["boxes"].shape[1] + j].decode() == detection["class"]
    assert run_cli("export", run_dir, "--format", "tflite", "--out", tmp_path / "lite") == 0
    _, _, task, _, info, model = workflow.load_run(run_dir)
    pixels = task.frames(task.load(str(root / "voc"), task.Config()).subset(np.arange(2)), info).load()
    lite = run_tflite(tmp_path / "lite" / "1" / "model.tflite", "raw_outputs", pixels=pixels)
    np.testing.assert_allclose(lite["raw_outputs"], model.predict(pixels, verbose=0), atol=1e-4)
