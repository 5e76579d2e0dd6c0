"""The default object detector (`cnn-tasks train object-detection`: RetinaNet on ImageNet
EfficientNet-Lite0, BCCD blood cells) as a plain Keras / TensorFlow script: no cnn-tasks code.

The same split (upstream train; upstream val halved, seeded, into validation and test), input size
(416x320), augmentation (flips both ways, scale jitter 0.8-1.25), anchors (KerasHub's generator at
the anchor size the task chooses on BCCD), feature pyramid and group-normalised shared heads,
focal + smooth-L1 loss with forced matches, Adam with a cosine schedule per phase, the two phases
of the pretrained recipe (a head warm-up on the frozen backbone, then fine-tuning with its batch
norm frozen), validation COCO mAP after every epoch and the best epoch kept, so benchmarks/suite.py
can compare training time (the issue 18 rule). The ImageNet weights are read from the Keras file
cnn-tasks converts them into (``$KERAS_HOME/models/cnn_tasks/``): data, not code.
Run: python benchmarks/plain_keras_detection.py
"""

import contextlib
import io
import math
import os
import time
import xml.etree.ElementTree as ElementTree
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import keras_hub  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from keras import layers  # noqa: E402
from twin_curve import callbacks as curve_callbacks  # noqa: E402

import plain_keras_pretrained as lite  # noqa: E402  (the same Lite0 definition, benchmarks' own)

DATA = Path(__file__).resolve().parents[1] / "data" / "bccd_blood_cells"
HEIGHT, WIDTH, EPOCHS, BATCH, LR, SEED = 320, 416, 20, 8, 1e-3, 0
WARMUP_SHARE, FINE_TUNE_LR_SCALE = 0.2, 1.0
ANCHOR_SIZE, LEVELS, SCALES, RATIOS = 2.5, (3, 5), 3, (0.5, 1.0, 2.0)
FPN, DEPTH, PRIOR, ALPHA, GAMMA = 64, 2, 0.01, 0.25, 2.0
FLIPS, JITTER, MIN_VISIBLE = ("horizontal", "vertical"), (0.8, 1.25), 0.4
VARIANCE = [0.1, 0.1, 0.2, 0.2]


def read_voc():
    """(image paths, boxes per image in their own pixels, (h, w) sizes, class names, splits)."""
    files = sorted((DATA / "Annotations").glob("*.xml"))
    rows = []
    for f in files:
        tree = ElementTree.parse(f).getroot()
        objects = []
        for o in tree.iter("object"):
            b = o.find("bndbox")
            x1, y1, x2, y2 = (float(b.findtext(k)) for k in ("xmin", "ymin", "xmax", "ymax"))
            if x2 > x1 and y2 > y1:
                objects.append((x1 - 1, y1 - 1, x2, y2, o.findtext("name").strip()))
        rows.append((DATA / "JPEGImages" / tree.findtext("filename").strip(), objects))
    names = sorted({o[4] for _, objects in rows for o in objects})
    boxes = [np.array([(*o[:4], names.index(o[4])) for o in objects], np.float32).reshape(-1, 5) for _, objects in rows]
    stems = [f.stem for f in files]
    ids = {part: set((DATA / "ImageSets" / "Main" / f"{part}.txt").read_text().split()) for part in ("train", "val")}
    train = np.array([i for i, s in enumerate(stems) if s in ids["train"]])
    val = np.random.default_rng(SEED).permutation([i for i, s in enumerate(stems) if s in ids["val"]])
    half = len(val) // 2
    splits = {"train": train, "val": np.sort(val[:half]), "test": np.sort(val[half:])}
    return [p for p, _ in rows], boxes, names, splits


def load_images(paths):
    out, sizes = [], []
    for p in paths:
        image = tf.io.decode_image(tf.io.read_file(str(p)), channels=3, expand_animations=False)
        sizes.append(image.shape[:2])
        image = tf.image.convert_image_dtype(image, tf.float32)
        out.append(tf.clip_by_value(tf.image.resize(image, (HEIGHT, WIDTH), antialias=True), 0, 1).numpy())
    return np.stack(out), np.array(sizes)


def padded(boxes, sizes, max_boxes):
    out = np.full((len(boxes), max_boxes, 5), -1.0, np.float32)
    for i, (b, (h, w)) in enumerate(zip(boxes, sizes)):
        b = b.copy()
        b[:, [0, 2]] *= WIDTH / w
        b[:, [1, 3]] *= HEIGHT / h
        out[i, :min(len(b), max_boxes)] = b[:max_boxes]  # as the task pads: the training maximum
    return out


def augment(images, boxes, seed):
    seeds = tf.random.experimental.stateless_split(seed, 4)
    h, w = float(HEIGHT), float(WIDTH)
    valid = boxes[..., 4:5] >= 0
    n = tf.shape(images)[0]
    for axis, s in zip(FLIPS, (seeds[0], seeds[1])):
        flip = tf.random.stateless_uniform([n], s) < 0.5
        if axis == "horizontal":
            images = tf.where(flip[:, None, None, None], tf.reverse(images, [2]), images)
            moved = tf.stack([w - boxes[..., 2], boxes[..., 1], w - boxes[..., 0], boxes[..., 3], boxes[..., 4]], -1)
        else:
            images = tf.where(flip[:, None, None, None], tf.reverse(images, [1]), images)
            moved = tf.stack([boxes[..., 0], h - boxes[..., 3], boxes[..., 2], h - boxes[..., 1], boxes[..., 4]], -1)
        boxes = tf.where(flip[:, None, None] & valid, moved, boxes)
    scale = tf.random.stateless_uniform([n], seeds[2], *JITTER)
    window = 1.0 / scale
    place = tf.random.stateless_uniform([n, 2], seeds[3])
    top, left = (1 - window) * place[:, 0], (1 - window) * place[:, 1]
    images = tf.image.crop_and_resize(images, tf.stack([top, left, top + window, left + window], 1), tf.range(n),
                                      (HEIGHT, WIDTH), extrapolation_value=0.0)
    x0, y0, f = (left * w)[:, None], (top * h)[:, None], scale[:, None]
    x1, y1 = (boxes[..., 0] - x0) * f, (boxes[..., 1] - y0) * f
    x2, y2 = (boxes[..., 2] - x0) * f, (boxes[..., 3] - y0) * f
    cx1, cy1, cx2, cy2 = (tf.clip_by_value(v, 0.0, m) for v, m in ((x1, w), (y1, h), (x2, w), (y2, h)))
    keep = (boxes[..., 4] >= 0) & ((cx2 - cx1) * (cy2 - cy1) >= MIN_VISIBLE * (x2 - x1) * (y2 - y1)) & \
        (cx2 - cx1 >= 2.0) & (cy2 - cy1 >= 2.0)
    return images, tf.where(keep[..., None], tf.stack([cx1, cy1, cx2, cy2, boxes[..., 4]], -1), -1.0)


def anchors():
    generator = keras_hub.layers.AnchorGenerator("xyxy", min_level=LEVELS[0], max_level=LEVELS[1], num_scales=SCALES,
                                                 aspect_ratios=list(RATIOS), anchor_size=ANCHOR_SIZE)
    levels = generator(keras.ops.zeros((1, HEIGHT, WIDTH, 1)))
    return np.concatenate([np.asarray(levels[f"P{k}"]) for k in range(LEVELS[0], LEVELS[1] + 1)]).astype(np.float32)


def lite0_levels():
    """plain_keras_pretrained's Lite0 with its stride-8/16 block outputs and top tapped, the
    ImageNet weights copied in layer order from the 224-pixel model."""
    def conv_bn(x, filters, kernel, stride, activate=True):
        x = layers.Conv2D(filters, kernel, strides=stride, padding="same", use_bias=False)(x)
        x = layers.BatchNormalization(epsilon=1e-3)(x)
        return layers.ReLU(6.0)(x) if activate else x

    inputs = keras.Input((HEIGHT, WIDTH, 3))
    x = conv_bn(layers.Rescaling(255.0 / 128.0, offset=-127.0 / 128.0)(inputs), 32, 3, 2)
    taps, stride = {}, 2
    for kernel, first_stride, expansion, filters, repeats in lite.STAGES:
        for i in range(repeats):
            s, channels = (first_stride if i == 0 else 1), x.shape[-1]
            stride *= s
            y = conv_bn(x, channels * expansion, 1, 1) if expansion != 1 else x
            y = layers.DepthwiseConv2D(kernel, strides=s, padding="same", use_bias=False)(y)
            y = layers.ReLU(6.0)(layers.BatchNormalization(epsilon=1e-3)(y))
            y = conv_bn(y, filters, 1, 1, activate=False)
            x = layers.Add()([x, y]) if s == 1 and channels == filters else y
            taps[stride.bit_length() - 1] = x
    taps[5] = conv_bn(x, 1280, 1, 1)
    backbone = keras.Model(inputs, {f"P{k}": taps[k] for k in (3, 4, 5)}, name="backbone")
    home = Path(os.environ.get("KERAS_HOME") or Path.home() / ".keras")
    (weights,) = sorted((home / "models" / "cnn_tasks").glob("efficientnet_lite0_imagenet_*[0-9a-f].weights.h5"))
    rgb = lite.lite0((224, 224, 3))
    rgb.load_weights(str(weights))
    for mine, theirs in zip(backbone.layers, rgb.layers):
        mine.set_weights(theirs.get_weights())
    return backbone


def detector(num_classes, per_location):
    backbone = lite0_levels()
    inputs = keras.Input((HEIGHT, WIDTH, 3))
    levels = backbone(inputs)
    lateral = {k: layers.Conv2D(FPN, 1)(levels[f"P{k}"]) for k in (3, 4, 5)}
    merged = {5: lateral[5]}
    for k in (4, 3):
        merged[k] = layers.Add()([lateral[k], layers.UpSampling2D(2)(merged[k + 1])])
    features = {k: layers.Conv2D(FPN, 3, padding="same")(merged[k]) for k in (3, 4, 5)}

    def head(outputs, bias):
        stack = []
        for _ in range(DEPTH):
            stack += [layers.Conv2D(FPN, 3, padding="same", use_bias=False,
                                    kernel_initializer=keras.initializers.RandomNormal(stddev=0.01)),
                      layers.GroupNormalization(groups=FPN // 8), layers.ReLU()]
        return stack + [layers.Conv2D(outputs, 3, padding="same",
                                      kernel_initializer=keras.initializers.RandomNormal(stddev=0.01),
                                      bias_initializer=keras.initializers.Constant(bias))]

    cls = head(per_location * num_classes, -math.log((1 - PRIOR) / PRIOR))
    box = head(per_location * 4, 0.0)
    outputs = []
    for k in (3, 4, 5):
        b, c = features[k], features[k]
        for layer in box:
            b = layer(b)
        for layer in cls:
            c = layer(c)
        outputs.append(layers.Concatenate()([layers.Reshape((-1, 4))(b), layers.Reshape((-1, num_classes))(c)]))
    return keras.Model(inputs, layers.Concatenate(axis=1)(outputs)), backbone


def make_loss(anchor_boxes, num_classes):
    ops = keras.ops
    anchor_boxes = tf.constant(anchor_boxes)

    def loss(y_true, y_pred):
        boxes, classes = y_true[..., :4], y_true[..., 4]
        valid = classes >= 0
        iou = keras.utils.bounding_boxes.compute_iou(anchor_boxes, boxes, "xyxy")
        iou = ops.where(valid[:, None, :], iou, -1.0)
        best, best_iou = ops.argmax(iou, -1), ops.max(iou, -1)
        forced = ops.logical_and(ops.equal(iou, ops.max(iou, axis=1, keepdims=True)),
                                 ops.logical_and(valid[:, None, :], iou > 0))
        is_forced = ops.any(forced, -1)
        best = ops.where(is_forced, ops.argmax(ops.where(forced, iou, -1.0), -1), best)
        matched = ops.take_along_axis(boxes, best[..., None], axis=1)
        label = ops.take_along_axis(classes, best, axis=1)
        positive = ops.logical_or(best_iou >= 0.5, is_forced)
        label = ops.where(positive, label, ops.where(best_iou < 0.4, -1.0, -2.0))
        deltas = keras.utils.bounding_boxes.encode_box_to_deltas(
            anchors=anchor_boxes, boxes=ops.where(positive[..., None], matched, anchor_boxes[None]),
            anchor_format="xyxy", box_format="xyxy", encoding_format="center_xywh", variance=VARIANCE)
        pos, counted = ops.cast(label >= 0, "float32"), ops.cast(label > -2, "float32")
        onehot = ops.one_hot(ops.cast(ops.maximum(label, 0), "int32"), num_classes) * pos[..., None]
        logits = y_pred[..., 4:]
        p = ops.sigmoid(logits)
        ce = ops.maximum(logits, 0) - logits * onehot + ops.log1p(ops.exp(-ops.abs(logits)))
        p_t = onehot * p + (1 - onehot) * (1 - p)
        alpha = onehot * ALPHA + (1 - onehot) * (1 - ALPHA)
        focal = ops.sum(alpha * (1 - p_t) ** GAMMA * ce, -1) * counted
        err = ops.abs(y_pred[..., :4] - deltas)
        l1 = ops.sum(ops.where(err < 1.0, 0.5 * err ** 2, err - 0.5), -1) * pos
        per_image = ops.sum(focal, 1) + ops.sum(l1, 1)
        return per_image * ops.cast(ops.shape(y_pred)[0], "float32") / ops.maximum(ops.sum(pos), 1.0)

    return loss


def coco_map(model, images, truth, sizes, anchor_boxes, num_classes):
    """COCO mAP and mAP@0.5 of ``model`` on images (network size), truth in their own pixels."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    @tf.function
    def run(x):
        raw = model(x, training=False)
        b = keras.utils.bounding_boxes.decode_deltas_to_boxes(
            anchors=tf.constant(anchor_boxes), boxes_delta=raw[..., :4], anchor_format="xyxy", box_format="xyxy",
            encoded_format="center_xywh", variance=VARIANCE)
        return tf.image.combined_non_max_suppression(b[:, :, None, :], tf.sigmoid(raw[..., 4:]), 100, 100, 0.5, 0.05,
                                                     clip_boxes=False)

    gt, results = {"images": [], "annotations": [], "categories": [{"id": c} for c in range(num_classes)]}, []
    for start in range(0, len(images), 8):
        boxes, scores, classes, valid = (t.numpy() for t in run(images[start:start + 8]))
        for j in range(len(boxes)):
            i = start + j
            h, w = sizes[i]
            gt["images"].append({"id": i})
            for x1, y1, x2, y2, c in truth[i]:
                gt["annotations"].append({"id": len(gt["annotations"]) + 1, "image_id": i, "category_id": int(c),
                                          "bbox": [x1, y1, x2 - x1, y2 - y1], "area": (x2 - x1) * (y2 - y1),
                                          "iscrowd": 0})
            for (x1, y1, x2, y2), s, c in zip(boxes[j, :valid[j]], scores[j, :valid[j]], classes[j, :valid[j]]):
                x1, x2 = np.clip([x1 * w / WIDTH, x2 * w / WIDTH], 0, w)
                y1, y2 = np.clip([y1 * h / HEIGHT, y2 * h / HEIGHT], 0, h)
                results.append({"image_id": i, "category_id": int(c), "score": float(s),
                                 "bbox": [float(x1), float(y1), float(x2 - x1), float(y2 - y1)]})
    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO()
        coco.dataset = gt
        coco.createIndex()
        if not results:
            return 0.0, 0.0
        evaluator = COCOeval(coco, coco.loadRes(results), "bbox")
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    return max(float(evaluator.stats[0]), 0.0), max(float(evaluator.stats[1]), 0.0)


class ValidationMap(keras.callbacks.Callback):
    """val_map / val_map50 each epoch, and the best epoch's weights kept (the task's monitor)."""

    def __init__(self, score):
        super().__init__()
        self.score, self.best, self.best_weights = score, -1.0, None

    def on_epoch_end(self, epoch, logs=None):
        value, value50 = self.score(self.model)
        logs.update({"val_map": value, "val_map50": value50})
        if value > self.best:
            self.best, self.best_weights = value, self.model.get_weights()


def main(verbose=0, epochs=EPOCHS, curve=None):
    """(training seconds, test mAP@0.5); ``curve`` receives (seconds, val_map50) per epoch."""
    keras.utils.set_random_seed(SEED)
    paths, boxes, names, splits = read_voc()
    images, sizes = load_images(paths)
    max_boxes = max(len(boxes[i]) for i in splits["train"])
    y = padded(boxes, sizes, max_boxes)
    anchor_boxes = anchors()
    model, backbone = detector(len(names), SCALES * len(RATIOS))
    train = tf.data.Dataset.from_tensor_slices((images[splits["train"]], y[splits["train"]])).cache() \
        .shuffle(len(splits["train"]), seed=SEED, reshuffle_each_iteration=True).batch(BATCH).enumerate() \
        .map(lambda i, xy: augment(*xy, tf.stack([tf.constant(SEED, tf.int64), i])),
             num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)
    val = tf.data.Dataset.from_tensor_slices((images[splits["val"]], y[splits["val"]])).batch(BATCH).cache()
    val_truth = [boxes[i] for i in splits["val"]]
    score = ValidationMap(lambda m: coco_map(m, images[splits["val"]], val_truth, sizes[splits["val"]],
                                             anchor_boxes, len(names)))
    loss = make_loss(anchor_boxes, len(names))
    steps = math.ceil(len(splits["train"]) / BATCH)
    warmup = max(1, round(epochs * WARMUP_SHARE))
    start = time.perf_counter()
    for first, last, scale, trainable in ((0, warmup, 1.0, False), (warmup, epochs, FINE_TUNE_LR_SCALE, True)):
        backbone.trainable = trainable
        if trainable:
            for layer in backbone.layers:
                if isinstance(layer, layers.BatchNormalization):
                    layer.trainable = False  # fine-tuning with batch norm frozen
        lr = keras.optimizers.schedules.CosineDecay(LR * scale, decay_steps=steps * (last - first))
        model.compile(optimizer=keras.optimizers.Adam(lr), loss=loss)
        model.fit(train, validation_data=val, epochs=last, initial_epoch=first, verbose=verbose,
                  callbacks=[score, *curve_callbacks(curve, "val_map50")])
    seconds = time.perf_counter() - start
    model.set_weights(score.best_weights)
    test_truth = [boxes[i] for i in splits["test"]]
    test_map, test_map50 = coco_map(model, images[splits["test"]], test_truth, sizes[splits["test"]],
                                    anchor_boxes, len(names))
    print(f"plain keras detector: {seconds:.1f} s training, test mAP {test_map:.4f}, mAP@0.5 {test_map50:.4f}")
    return seconds, test_map50


if __name__ == "__main__":
    main(verbose=2)
