"""COCO detection metrics from pycocotools' own ``COCOeval``, on each image's own pixels: ``map``
(AP@[.5:.95]), ``map50``, ``map75``, ``ap50_<class>`` and ``recall`` (AR@100), as CONTRACT.md
names them, and the per-class precision-recall curves and per-image AP the report draws.

Detections and ground truth are lists with one entry per image: ground truth ``(n, 5)`` rows
``x1, y1, x2, y2, class``; detections ``(k, 6)`` rows ``x1, y1, x2, y2, score, class``.
"""

import contextlib
import io

import numpy as np

from tasks.object_detection.anchors import pairwise_iou

MAX_DETECTIONS = 100


def _coco_objects(truth, detections, num_classes):
    from pycocotools.coco import COCO

    gt = COCO()
    annotations, results = [], []
    for image_id, boxes in enumerate(truth):
        for x1, y1, x2, y2, label in np.asarray(boxes).reshape(-1, 5):
            annotations.append({"id": len(annotations) + 1, "image_id": image_id, "category_id": int(label),
                                "bbox": [float(x1), float(y1), float(x2 - x1), float(y2 - y1)],
                                "area": float((x2 - x1) * (y2 - y1)), "iscrowd": 0})
        for x1, y1, x2, y2, score, label in np.asarray(detections[image_id]).reshape(-1, 6):
            results.append({"image_id": image_id, "category_id": int(label), "score": float(score),
                            "bbox": [float(x1), float(y1), float(x2 - x1), float(y2 - y1)]})
    gt.dataset = {"images": [{"id": i} for i in range(len(truth))], "annotations": annotations,
                  "categories": [{"id": c} for c in range(num_classes)]}
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints its progress
        gt.createIndex()
        dt = gt.loadRes(results) if results else None
    return gt, dt


def evaluate_coco(truth, detections, num_classes, image_ids=None):
    """A finished ``COCOeval`` (None when there is nothing to detect or nothing detected)."""
    from pycocotools.cocoeval import COCOeval

    gt, dt = _coco_objects(truth, detections, num_classes)
    if dt is None or not gt.dataset["annotations"]:
        return None
    evaluator = COCOeval(gt, dt, iouType="bbox")
    if image_ids is not None:
        evaluator.params.imgIds = list(image_ids)
    with contextlib.redirect_stdout(io.StringIO()):
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    return evaluator


def _ap(precision):
    valid = precision[precision > -1]
    return float(valid.mean()) if valid.size else 0.0


def detection_metrics(truth, detections, class_names):
    """{map, map50, map75, ap50_<class>..., recall}; 0 where nothing was detected."""
    evaluator = evaluate_coco(truth, detections, len(class_names))
    if evaluator is None:
        return {"map": 0.0, "map50": 0.0, "map75": 0.0,
                **{f"ap50_{name}": 0.0 for name in class_names}, "recall": 0.0}
    stats = np.maximum(evaluator.stats, 0.0)
    precision = evaluator.eval["precision"]  # [iou, recall, class, area, max detections]
    per_class = {f"ap50_{name}": _ap(precision[0, :, k, 0, -1]) for k, name in enumerate(class_names)}
    return {"map": float(stats[0]), "map50": float(stats[1]), "map75": float(stats[2]), **per_class,
            "recall": float(stats[8])}


def precision_recall(truth, detections, class_names):
    """{class: (recall points, precision)} at IoU 0.5, COCO's 101-point interpolation."""
    evaluator = evaluate_coco(truth, detections, len(class_names))
    recall = np.linspace(0, 1, 101)
    if evaluator is None:
        return {name: (recall, np.zeros_like(recall)) for name in class_names}
    precision = evaluator.eval["precision"][0, :, :, 0, -1]
    return {name: (recall, np.maximum(precision[:, k], 0.0)) for k, name in enumerate(class_names)}


def per_image_ap50(truth, detections, num_classes):
    """AP@0.5 of each image on its own (for picking the best, median and worst), NaN for an image
    with no boxes and no detections."""
    values = []
    for i in range(len(truth)):
        evaluator = evaluate_coco([truth[i]], [detections[i]], num_classes)
        if evaluator is None:
            values.append(np.nan if not len(truth[i]) else 0.0)
        else:
            values.append(max(float(evaluator.stats[1]), 0.0))
    return np.asarray(values)


def threshold_table(truth, detections, thresholds=(0.3, 0.5, 0.7), iou=0.5):
    """Precision, recall and F1 of the detections scoring at least each threshold (greedy
    matching by score at ``iou``, class by class, as COCO matches)."""
    rows = []
    for threshold in thresholds:
        tp = fp = 0
        total = sum(len(t) for t in truth)
        for boxes, found in zip(truth, detections):
            boxes, found = np.asarray(boxes).reshape(-1, 5), np.asarray(found).reshape(-1, 6)
            found = found[found[:, 4] >= threshold]
            found = found[np.argsort(-found[:, 4])]
            used = np.zeros(len(boxes), bool)
            for x1, y1, x2, y2, _, label in found:
                candidates = np.flatnonzero((boxes[:, 4] == label) & ~used)
                if candidates.size:
                    overlap = pairwise_iou(np.array([[x1, y1, x2, y2]]), boxes[candidates, :4])[0]
                    j = int(np.argmax(overlap))
                    if overlap[j] >= iou:
                        used[candidates[j]] = True
                        tp += 1
                        continue
                fp += 1
        precision = tp / (tp + fp) if tp + fp else 0.0
        recall = tp / total if total else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        rows.append({"score threshold": threshold, "precision": precision, "recall": recall, "F1": f1,
                     "detections": tp + fp})
    return rows

