"""Object detection: where each object is and what it is, as boxes and classes (RetinaNet, Lin et
al. 2017) on any image backbone of the registry, scored with COCO's mAP by pycocotools and set
beside a classical colour-and-components detector on the same split."""

import json
import typing
from pathlib import Path
import weakref
from dataclasses import dataclass, field, replace

import numpy as np

from pipelines.config import TrainConfig, option
from pipelines.errors import UserError
from pipelines.frames import Frames
from pipelines.preprocessing import Preprocessing
from pipelines.tasks import Task, register_task
from tasks.object_detection import annotations, metrics
from tasks.object_detection.anchors import AnchorSpec, choose_anchor_size, coverage
from tasks.object_detection.model import DetectionLoss  # imported here: registered before model.keras loads

LONG_SIDE = 416  # the network's longer side unless told (BCCD's 640x480 -> 416x320)
STATISTICS_IMAGES = 64  # training images the pixel statistics are measured on
PREDICT_BATCH = 8


@dataclass
class DetectionConfig(TrainConfig):
    data: str = option("builtin:bccd", help="a Pascal VOC folder (or a folder of VOC XML files beside "
                       "their images), a COCO instances JSON beside an image folder, a YOLO folder "
                       "(images/, labels/, classes.txt), or builtin:bccd")
    backbone: str = option("efficientnet_lite0", help="registered image backbone (its P3.. levels feed "
                           "the feature pyramid)")
    backbone_weights: typing.Optional[str] = option(
        "imagenet", help="imagenet (the backbone's own pretrained weights; default), a local "
                         ".weights.h5, keras_hub:PRESET, or none to train from scratch")
    epochs: int = option(20, minimum=1, help="training epochs (with pretrained weights: a fifth warm up the "
                         "heads on the frozen backbone, the rest fine-tune)")
    batch_size: int = option(8, minimum=1, help="images per step")
    learning_rate: float = option(1e-3, minimum=0, exclusive_min=True, help="peak learning rate")
    image_height: typing.Optional[int] = option(None, minimum=32, help="network input height (default: "
                                                "the first image's aspect with the longer side 416, "
                                                "rounded to the coarsest level's stride)")
    image_width: typing.Optional[int] = option(None, minimum=32, help="network input width (default: as "
                                               "image_height)")
    min_level: int = option(3, minimum=1, maximum=7, help="finest pyramid level detected on (stride 2**level)")
    max_level: int = option(5, minimum=1, maximum=8, help="coarsest pyramid level; above the backbone's "
                            "deepest, levels are made by stride-2 convolutions (RetinaNet's P6/P7)")
    anchor_size: typing.Optional[float] = option(None, minimum=0.5, help="anchor base size in strides "
                                                 "(KerasHub's anchor_size); default: chosen from the "
                                                 "training boxes (the most matched at IoU 0.5)")
    num_scales: int = option(3, minimum=1, maximum=5, help="anchor sizes per level")
    aspect_ratios: list = option([0.5, 1.0, 2.0], help="anchor width/height ratios")
    positive_iou: float = option(0.5, minimum=0, maximum=1, help="an anchor at this IoU with a box is "
                                 "positive")
    negative_iou: float = option(0.4, minimum=0, maximum=1, help="an anchor below this IoU with every box "
                                 "is background (between: ignored)")
    fpn_width: int = option(64, minimum=8, help="channels of the feature pyramid and the heads")
    head_depth: int = option(2, minimum=0, maximum=6, help="3x3 convolutions in each head before its output")
    head_norm: bool = option(True, help="group-normalise the heads' convolutions (the levels' features "
                             "differ in scale; without it a shared head may ignore one)")
    focal_alpha: float = option(0.25, minimum=0, maximum=1, help="focal loss's weight of the positives")
    focal_gamma: float = option(2.0, minimum=0, help="focal loss's focusing exponent")
    box_weight: float = option(1.0, minimum=0, help="weight of the box regression loss")
    score_threshold: float = option(0.05, minimum=0, maximum=1, help="detections scoring less are "
                                    "dropped when evaluating (COCO's mAP wants low-scoring ones too); "
                                    "predict uses 0.5 unless --set score_threshold=...")
    nms_iou: float = option(0.5, minimum=0, maximum=1, help="non-maximum suppression's IoU, per class")
    max_detections: int = option(100, minimum=1, help="detections kept per image (COCO counts 100)")
    augment_flip: str = option("both", choices=("none", "horizontal", "both"),
                               help="random mirror images: left-right, or left-right and top-bottom "
                                    "(for views with no up, as slides and aerial photos)")
    scale_jitter: list = option([0.8, 1.25], help="zoom factor range of the random scale jitter "
                                "([1, 1] = off); boxes follow, clipped to the view")
    example_images: int = option(3, minimum=0, help="test images drawn with their boxes (best, "
                                 "median and worst by AP@0.5)")


@dataclass
class Detections:
    """One (k, 6) array per image: x1, y1, x2, y2 in the image's own pixels, score, class id."""

    boxes: list


@dataclass(kw_only=True)
class DetectionPreprocessing(Preprocessing):
    """The network's input geometry, its anchors and the training pixels' statistics."""

    height: int
    width: int
    class_names: list
    anchors: dict  # AnchorSpec fields
    anchor_coverage: dict = field(default_factory=dict)  # share of training boxes matched, per class
    pixel_mean: list = field(default_factory=lambda: [0.0, 0.0, 0.0])
    pixel_variance: list = field(default_factory=lambda: [1.0, 1.0, 1.0])
    max_boxes: int = 100


@register_task("object-detection")
class ObjectDetection(Task):
    modality = "image"
    Config = DetectionConfig
    Preprocessing = DetectionPreprocessing
    summary = "boxes and classes of the objects in an image (RetinaNet on the registry's pyramid)"
    builtin_data = tuple(annotations.BUILTIN)
    monitor = ("val_map", "max")
    key_metrics = ("map", "map50", "map75", "recall")

    def settle(self, config):
        if config.max_level < config.min_level:
            raise UserError(f"--set max_level={config.max_level}: must be at least min_level "
                            f"({config.min_level})")
        if config.negative_iou > config.positive_iou:
            raise UserError(f"--set negative_iou={config.negative_iou}: must not exceed positive_iou "
                            f"({config.positive_iou})")
        if len(config.scale_jitter) != 2 or not 0 < config.scale_jitter[0] <= config.scale_jitter[1]:
            raise UserError(f"--set scale_jitter={config.scale_jitter}: give [low, high] with "
                            f"0 < low <= high")
        if not config.aspect_ratios or any(not isinstance(r, (int, float)) or r <= 0 for r in config.aspect_ratios):
            raise UserError(f"--set aspect_ratios={config.aspect_ratios}: give positive numbers")
        return config

    # -- data --------------------------------------------------------------------------------
    def load(self, spec, config):
        return annotations.load(spec, seed=config.seed)

    def fit_preprocessing(self, train, config, min_size):
        height, width = _input_size(train, config, min_size)
        from tasks.object_detection.model import scaled_boxes

        boxes = [scaled_boxes(b, s) for b, s in zip(train.y, _scales(train, height, width))]
        spec = AnchorSpec(height, width, config.min_level, config.max_level, config.num_scales,
                          tuple(float(r) for r in config.aspect_ratios), config.anchor_size or 4.0)
        notes = []
        if config.anchor_size is None:
            size, measured = choose_anchor_size(spec, boxes, config.positive_iou)
            spec = replace(spec, anchor_size=size)
            overall, _ = measured[size]
            notes.append(f"Anchor size {size:g} strides chosen from the training boxes: "
                         + ", ".join(f"{s:g}: {measured[s][0]:.1%}" for s in sorted(measured))
                         + " of the boxes have an anchor at IoU >= " + f"{config.positive_iou:g}.")
        _, per_class = coverage(spec, boxes, config.positive_iou)
        names = train.info["class_names"]
        frames = Frames(train.x["images"], height, width, 3)
        pick = np.unique(np.linspace(0, len(frames) - 1, min(STATISTICS_IMAGES, len(frames))).astype(int))
        sample = frames[pick]
        return DetectionPreprocessing(
            height=height, width=width, class_names=list(names), anchors=spec.to_json(),
            anchor_coverage={names[c]: round(v, 4) for c, v in per_class.items()},
            pixel_mean=sample.mean(axis=(0, 1, 2)).tolist(),
            pixel_variance=np.maximum(sample.var(axis=(0, 1, 2)), 1e-6).tolist(),
            max_boxes=max([len(b) for b in train.y] + [1]), notes=notes)

    def align(self, dataset, info):
        """Another set's classes by name onto the run's; a class the run never learned is refused."""
        known = list(info.class_names)
        names = dataset.info["class_names"]
        used = sorted({names[int(c)] for boxes in dataset.y for c in np.asarray(boxes)[:, 4]})
        unknown = [n for n in used if n not in known]
        if unknown:
            raise UserError(f"{dataset.spec}: classes {unknown} are not among the run's classes {known}")
        remap = np.array([known.index(n) if n in known else -1 for n in names] or [0])
        for i, boxes in enumerate(dataset.y):
            boxes = np.asarray(boxes, np.float32).copy()
            boxes[:, 4] = remap[boxes[:, 4].astype(int)]
            dataset.y[i] = boxes
        dataset.info["class_names"] = known
        return dataset

    def input_shape(self, info):
        return (info.height, info.width, 3)

    def frames(self, dataset, info):
        return Frames(np.asarray(dataset.x["images"]), info.height, info.width, 3)

    def encode(self, dataset, info):
        from tasks.object_detection.model import pad_boxes

        scale = _scales(dataset, info.height, info.width)
        return self.frames(dataset, info), pad_boxes(dataset.y, scale, info.max_boxes)

    def augment(self, config, info):
        from tasks.object_detection.augment import detection_augmentation

        axes = {"none": (), "horizontal": ("horizontal",), "both": ("horizontal", "vertical")}[config.augment_flip]
        return detection_augmentation(flip_axes=axes, scale_range=tuple(config.scale_jitter))

    def class_weight(self, y, config):
        return None

    # -- model -------------------------------------------------------------------------------
    def build(self, backbone, info, config):
        from pipelines.backbones import BACKBONES
        from tasks.object_detection.model import build_detector

        standardise = not BACKBONES.entry(config.backbone).meta.get("normalises_input")
        return build_detector(backbone, num_classes=len(info.class_names), spec=AnchorSpec.from_json(info.anchors),
                              fpn_width=config.fpn_width, head_depth=config.head_depth,
                              head_norm=config.head_norm,
                              pixel_mean=info.pixel_mean if standardise else None,
                              pixel_variance=info.pixel_variance if standardise else None)

    def loss(self, config, info):
        return DetectionLoss(info.anchors, len(info.class_names), positive_iou=config.positive_iou,
                             negative_iou=config.negative_iou, alpha=config.focal_alpha,
                             gamma=config.focal_gamma, box_weight=config.box_weight)

    def epoch_scores(self, val_set, info, config):
        """COCO mAP (and mAP@0.5) of the validation images after every epoch: the loss says
        little about boxes after NMS."""
        if val_set is None or not len(val_set):
            return None
        truth = list(val_set.y)

        def score(model):
            found = self.predict_dataset(model, val_set, info, config).boxes
            values = metrics.detection_metrics(truth, found, info.class_names)
            return {"map": values["map"], "map50": values["map50"]}

        return score

    # -- evaluation --------------------------------------------------------------------------
    def predict_dataset(self, model, dataset, info, config, progress=None, score_threshold=None):
        threshold = config.score_threshold if score_threshold is None else score_threshold
        detector = _detector(model, info, threshold, config.nms_iou, config.max_detections)
        return Detections(_detect(detector, self.frames(dataset, info), np.asarray(dataset.x["sizes"]), info,
                                  progress))

    def metrics(self, dataset, outputs, info):
        return metrics.detection_metrics(list(dataset.y), outputs.boxes, info.class_names)

    def baseline(self, train, test, info, config, model=None):
        from tasks.object_detection import baselines

        n = len(info.class_names)
        fitted, least = baselines.fit(train.x["images"], train.y, n, seed=config.seed)
        found = baselines.detect(fitted, least, test.x["images"], n)
        return {"name": "colour_components (QDA on RGB + connected regions)",
                "metrics": metrics.detection_metrics(list(test.y), found, info.class_names),
                "detections": found}

    def tables(self, dataset, outputs, info, baseline=None):
        import pandas as pd

        truth = list(dataset.y)
        ours = self.metrics(dataset, outputs, info)
        rows = [{"class": n, "boxes": int(sum((np.asarray(b)[:, 4] == k).sum() for b in truth)),
                 "AP@0.5 network": ours[f"ap50_{n}"],
                 **({"AP@0.5 baseline": baseline["metrics"][f"ap50_{n}"]} if baseline else {}),
                 "anchor coverage": info.anchor_coverage.get(n)}
                for k, n in enumerate(info.class_names)]
        tables = {"AP@0.5 per class, network beside the baseline": pd.DataFrame(rows).round(4)}
        threshold = pd.DataFrame(metrics.threshold_table(truth, outputs.boxes)).round(4)
        tables["Precision, recall and F1 by score threshold (IoU 0.5)"] = threshold
        return tables

    def figures(self, model, dataset, outputs, info, config, baseline=None):
        from tasks.object_detection import figures

        truth = list(dataset.y)
        result = {"precision_recall": (
            figures.precision_recall_figure(metrics.precision_recall(truth, outputs.boxes, info.class_names),
                                            metrics.precision_recall(truth, baseline["detections"], info.class_names)
                                            if baseline else None),
            "Precision-recall per class at IoU 0.5 (COCO's 101-point interpolation): the network "
            "(solid) and the baseline (dashed).")}
        if config.example_images and len(dataset):
            ap = metrics.per_image_ap50(truth, outputs.boxes, len(info.class_names))
            order = np.argsort(-np.nan_to_num(ap, nan=-1.0), kind="stable")
            scored = order[~np.isnan(ap[order])] if np.isfinite(ap).any() else order
            picks = [("best", scored[0]), ("median", scored[len(scored) // 2]), ("worst", scored[-1])]
            picks = picks[:config.example_images]
            result["examples"] = (
                figures.examples_figure([dataset.x["images"][i] for _, i in picks],
                                        [truth[i] for _, i in picks],
                                        [outputs.boxes[i] for _, i in picks], info.class_names,
                                        [f"{name}: AP@0.5 {ap[i]:.2f}" for name, i in picks]),
                "Test images with the true boxes (dashed) and the network's detections scoring at "
                "least 0.5 (solid, with class and score): best, median and worst by AP@0.5.")
            result["box_gradcam"] = self._box_gradcam(model, dataset, outputs, info, picks[0][1])
        return result

    def _box_gradcam(self, model, dataset, outputs, info, image):
        """Grad-CAM of the top-scoring detection of the rarest class detected in ``image`` (the
        best by AP; else the image with the most confident detection)."""
        from tasks.object_detection import figures
        from tasks.object_detection.explain import box_activation_map

        if not len(outputs.boxes[image]):
            peaks = [b[:, 4].max() if len(b) else -1.0 for b in outputs.boxes]
            image = int(np.argmax(peaks))
        found = outputs.boxes[image]
        if not len(found):
            return None, ""
        counts = np.bincount(found[:, 5].astype(int), minlength=len(info.class_names))
        rarest = min(set(found[:, 5].astype(int)), key=lambda c: counts[c])
        row = found[found[:, 5] == rarest][np.argmax(found[found[:, 5] == rarest][:, 4])]
        height, width = np.asarray(dataset.x["sizes"])[image]
        box = row[:4] * np.array([info.width / width, info.height / height] * 2)
        pixels = self.frames(dataset, info)[int(image)]
        spec = AnchorSpec.from_json(info.anchors)
        cam, level = box_activation_map(model, pixels, box, int(rarest), spec.boxes(), spec)
        name = info.class_names[int(rarest)]
        return (figures.box_gradcam_figure(pixels, cam, box, f"{name} {row[4]:.2f} (anchor on {level})"),
                f"Grad-CAM for one detection ({name}, score {row[4]:.2f}) in {Path(dataset.x['images'][image]).name}: the "
                f"gradient of its anchor's class logit on the pyramid level {level}, at the network's "
                f"{info.height}x{info.width}.")

    def report_notes(self, dataset, info):
        notes = super().report_notes(dataset, info)
        notes.append(f"Network input {info.height}x{info.width}; anchors: levels P{info.anchors['min_level']}-"
                     f"P{info.anchors['max_level']}, size {info.anchors['anchor_size']:g} strides, "
                     f"{info.anchors['num_scales']} scales x ratios {info.anchors['aspect_ratios']}; boxes "
                     f"scored in each image's own pixels.")
        return notes

    # -- prediction --------------------------------------------------------------------------
    def predict_inputs(self, model, inputs, info, options, out=None):
        from pipelines.image_files import ImageFiles

        ImageFiles.scan(inputs)  # a missing or broken file is named, not a traceback
        threshold = float(options.get("score_threshold", 0.5))
        paths = np.asarray([str(p) for p in inputs])
        sizes = np.asarray([annotations.image_size(p) for p in paths])
        detector = _detector(model, info, threshold, float(options.get("nms_iou", 0.5)),
                             int(options.get("max_detections", 100)))
        found = _detect(detector, Frames(paths, info.height, info.width, 3), sizes, info)
        records = []
        for path, boxes in zip(paths, found):
            detections = [{"class": info.class_names[int(c)], "score": round(float(s), 4),
                           "box": [round(float(v), 1) for v in (x1, y1, x2, y2)]}
                          for x1, y1, x2, y2, s, c in boxes]
            records.append({"input": str(path), "detections": detections})
        if out is not None:
            from tasks.object_detection.figures import write_drawn

            for record, boxes in zip(records, found):
                record["output"] = str(write_drawn(record["input"], boxes, info.class_names, out))
        return records

    def format_prediction(self, record):
        from collections import Counter
        from pathlib import Path

        counts = Counter(d["class"] for d in record["detections"])
        summary = ", ".join(f"{n} {c}" for c, n in sorted(counts.items())) or "nothing"
        return f"{Path(record['input']).name}: {summary}" + (f" -> {record['output']}" if "output" in record else "")

    # -- serving -----------------------------------------------------------------------------
    def serving_signatures(self, model, info):
        from tasks.object_detection.serving import serving_signatures

        return serving_signatures(model, info)

    def tflite_signatures(self, model, info):
        from tasks.object_detection.serving import raw_signature

        return {"raw_outputs": raw_signature(model, info)}


_DETECTORS = weakref.WeakKeyDictionary()  # model -> {settings: traced detector}, traced once per model


def _detector(model, info, score_threshold, iou_threshold, max_detections):
    """pixels (n, H, W, 3) -> (boxes, scores, classes, valid) as numpy, network pixels; one
    traced function per model and settings (validation runs it after every epoch)."""
    import tensorflow as tf

    from tasks.object_detection.model import decode

    key = (json.dumps(info.anchors, sort_keys=True), score_threshold, iou_threshold, max_detections)
    known = _DETECTORS.setdefault(model, {})
    if key in known:
        return known[key]
    anchors = AnchorSpec.from_json(info.anchors).boxes()

    @tf.function(reduce_retracing=True)
    def run(pixels):
        return decode(model(pixels, training=False), anchors, score_threshold=score_threshold,
                      iou_threshold=iou_threshold, max_detections=max_detections)

    known[key] = lambda pixels: [t.numpy() for t in run(tf.convert_to_tensor(pixels, tf.float32))]
    return known[key]


def _detect(detector, frames, sizes, info, progress=None):
    """One (k, 6) array per image of ``frames`` (images of ``sizes``), PREDICT_BATCH at a time."""
    found = []
    for start in range(0, len(frames), PREDICT_BATCH):
        rows = np.arange(start, min(start + PREDICT_BATCH, len(frames)))
        found += _in_image_pixels(detector(frames[rows]), sizes[rows], info)
        if progress:
            progress(rows[-1] + 1, len(frames), "images")
    return found


def _in_image_pixels(decoded, sizes, info):
    """(k, 6) arrays in each image's own pixels (clipped to it) from decoded network outputs."""
    boxes, scores, classes, valid = decoded
    found = []
    for i, (height, width) in enumerate(sizes):
        k = int(valid[i])
        scaled = boxes[i, :k] * np.array([width / info.width, height / info.height] * 2)
        scaled = np.clip(scaled, 0, [width, height, width, height])
        found.append(np.concatenate([scaled, scores[i, :k, None], classes[i, :k, None]], axis=1)
                     .astype(np.float32).reshape(-1, 6))
    return found


def _scales(dataset, height, width):
    """Per image (sx, sy): its pixels to the network's."""
    return [(width / w, height / h) for h, w in np.asarray(dataset.x["sizes"])]


def _input_size(train, config, min_size):
    """(height, width): as configured, else the first training image's aspect with the longer
    side LONG_SIDE; both rounded to a multiple of the coarsest level's stride, so every level's
    grid is exact and the pyramid's upsampled levels line up."""
    multiple = 2 ** config.max_level
    height, width = (int(v) for v in np.asarray(train.x["sizes"])[0]) if len(train) else (LONG_SIDE, LONG_SIDE)
    factor = LONG_SIDE / max(height, width)
    target_h = config.image_height or (round(height * factor) if not config.image_width
                                       else round(height * config.image_width / width))
    target_w = config.image_width or (round(width * factor) if not config.image_height
                                      else round(width * config.image_height / height))
    rounded = tuple(max(multiple, int(round(v / multiple)) * multiple, min_size) for v in (target_h, target_w))
    for given, key in ((config.image_height, "image_height"), (config.image_width, "image_width")):
        if given and given % multiple:
            raise UserError(f"--set {key}={given}: must be a multiple of {multiple} (the stride of "
                            f"P{config.max_level}, max_level)")
    return rounded
