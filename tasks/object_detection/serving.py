"""The detector's exported endpoints, with decoding and per-class NMS inside the graph (as TF
Model Garden exports its detectors; a client gets boxes, not anchor deltas):

- ``serving_default(image_bytes: string[N])``: encoded PNG/JPEG files of any sizes -> ``boxes``
  ``[N, K, 4]`` (x_min, y_min, x_max, y_max in each image's own pixels), ``scores [N, K]``,
  ``class_ids``, ``class_names`` and ``num_detections [N]``; rows past ``num_detections`` are zero.
- ``detect_pixels(pixels: float32[N, H, W, 3])``: the same on images already at the network's
  size in [0, 1], boxes in those pixels.
- ``raw_outputs(pixels)``: the heads alone, ``[N, anchors, 4 + classes]`` (TFLite's endpoint; a
  TFLite client decodes them on the anchors in metadata.json).
"""

from pipelines import imaging
from pipelines.frames import crop_and_resize
from pipelines.serving import Signature
from tasks.object_detection.anchors import AnchorSpec
from tasks.object_detection.model import decode

SERVING_SCORE_THRESHOLD = 0.05  # clients filter further; COCO-style consumers want low scores too


def _named(boxes, scores, classes, valid, info):
    import tensorflow as tf

    return {"boxes": boxes, "scores": scores, "class_ids": classes,
            "class_names": tf.gather(tf.constant(list(info.class_names)), classes), "num_detections": valid}


def serving_signatures(model, info, max_detections=100):
    import tensorflow as tf

    anchors = AnchorSpec.from_json(info.anchors).boxes()
    size = (info.height, info.width, 3)

    def detect(pixels):
        return decode(model(pixels, training=False), anchors, score_threshold=SERVING_SCORE_THRESHOLD,
                      max_detections=max_detections)

    def serving_default(image_bytes):
        def one(data):
            image = imaging.decode_in_graph(data, 3)
            shape = tf.cast(tf.shape(image)[:2], tf.float32)
            pixels = crop_and_resize(image, crop_top=0.0, crop_bottom=0.0, height=info.height, width=info.width)
            return pixels, shape

        pixels, shapes = tf.map_fn(one, image_bytes, fn_output_signature=(
            tf.TensorSpec(size, tf.float32), tf.TensorSpec([2], tf.float32)))
        boxes, scores, classes, valid = detect(pixels)
        factor = tf.stack([shapes[:, 1] / info.width, shapes[:, 0] / info.height] * 2, axis=-1)[:, None, :]
        limit = tf.stack([shapes[:, 1], shapes[:, 0]] * 2, axis=-1)[:, None, :]
        boxes = tf.clip_by_value(boxes * factor, 0.0, limit)
        kept = tf.sequence_mask(valid, tf.shape(boxes)[1])
        boxes = tf.where(kept[..., None], boxes, 0.0)
        return _named(boxes, scores, classes, valid, info)

    def detect_pixels(pixels):
        return _named(*detect(pixels), info)

    return {
        "serving_default": Signature(
            serving_default, [tf.TensorSpec([None], tf.string, name="image_bytes")],
            f"encoded PNG/JPEG images -> boxes in each image's own pixels, scores, classes "
            f"({', '.join(info.class_names)}); resized to {info.height}x{info.width}, decoded and "
            f"non-maximum suppressed (per class) in the graph"),
        "detect_pixels": Signature(
            detect_pixels, [tf.TensorSpec((None,) + size, tf.float32, name="pixels")],
            f"float32 images already {info.height}x{info.width}x3 in [0, 1] -> boxes in those pixels"),
        "raw_outputs": raw_signature(model, info)}


def raw_signature(model, info):
    import tensorflow as tf

    def raw_outputs(pixels):
        return {"raw_outputs": model(pixels, training=False)}

    return Signature(raw_outputs, [tf.TensorSpec((None, info.height, info.width, 3), tf.float32, name="pixels")],
                     f"float32 images {info.height}x{info.width}x3 in [0, 1] -> the heads' raw outputs "
                     f"[N, anchors, 4 + {len(info.class_names)}]: box deltas (center_xywh, variance "
                     f"0.1/0.1/0.2/0.2) on the anchors of preprocessing.anchors, then class logits")
