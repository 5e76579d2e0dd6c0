"""A RetinaNet-style detector on any image backbone of the registry (Lin et al. 2017): a feature
pyramid over the backbone's levels, shared class and box heads, focal loss and smooth-L1 box
regression against anchors.

What is KerasHub's and what is written here: the anchors are KerasHub's ``AnchorGenerator`` and
the deltas Keras' ``bounding_boxes`` helpers. KerasHub's ``RetinaNetObjectDetector`` itself takes
a KerasHub ``Backbone`` and overrides ``compute_loss`` and ``predict_step``, so a saved model needs
KerasHub and its predictions are not the raw heads an exported graph or TFLite needs. Here the
model is a plain functional network (image in, ``(A, 4 + classes)`` raw outputs out, so
``model.keras`` loads in safe mode without KerasHub), the anchor matching and the loss are one
Keras ``Loss`` on padded ground-truth boxes, and decoding with per-class NMS
(``tf.image.combined_non_max_suppression``, as TF Model Garden builds into its exported graphs;
KerasHub's ``NonMaxSuppression`` is class-agnostic) is one graph function used by predict,
evaluate and the export alike.
"""

import math

import keras
import numpy as np

from tasks.object_detection.anchors import AnchorSpec

BOX_VARIANCE = (0.1, 0.1, 0.2, 0.2)  # deltas scaled to about unit spread (Model Garden, KerasCV)
PADDING = -1.0  # a ground-truth row of -1s is padding


def build_detector(backbone, *, num_classes, spec, fpn_width=64, head_depth=2, prior_probability=0.01,
                   pixel_mean=None, pixel_variance=None, head_norm=True):
    """The detector: [0, 1] pixels (H, W, C) -> raw outputs (A, 4 + num_classes), box deltas then
    class logits, anchors in :meth:`AnchorSpec.boxes` order. ``pixel_mean``/``pixel_variance``
    standardise the input first (left out for a backbone that normalises its input itself)."""
    layers = keras.layers
    inputs = keras.Input(backbone.input_shape[1:], name="image")
    x = inputs
    if pixel_mean is not None:
        x = layers.Normalization(mean=pixel_mean, variance=pixel_variance, name="pixel_standardisation")(x)
    pyramid = backbone(x)
    deepest = max(int(k[1:]) for k in pyramid)
    if spec.min_level > deepest:
        raise ValueError(f"the backbone's deepest level is P{deepest}; the detector needs P{spec.min_level}")
    features = feature_pyramid(pyramid, spec.min_level, spec.max_level, fpn_width)
    anchors = spec.per_location
    class_head = _head(fpn_width, head_depth, anchors * num_classes, "class_head",
                       bias=-math.log((1 - prior_probability) / prior_probability), group_norm=head_norm)
    box_head = _head(fpn_width, head_depth, anchors * 4, "box_head", group_norm=head_norm)
    outputs = []
    for level in range(spec.min_level, spec.max_level + 1):
        feature = features[level]
        boxes = layers.Reshape((-1, 4), name=f"box_P{level}")(_apply(box_head, feature))
        classes = layers.Reshape((-1, num_classes), name=f"class_P{level}")(_apply(class_head, feature))
        outputs.append(layers.Concatenate(name=f"outputs_P{level}")([boxes, classes]))
    raw = layers.Concatenate(axis=1, name="raw_outputs", dtype="float32")(outputs) if len(outputs) > 1 \
        else layers.Activation("linear", name="raw_outputs", dtype="float32")(outputs[0])
    return keras.Model(inputs, raw, name="retinanet")


def feature_pyramid(pyramid, min_level, max_level, width):
    """{level: feature}: FPN's lateral 1x1 convolutions and top-down sum over the backbone's
    levels min_level.., and levels above the backbone's deepest made by 3x3 stride-2
    convolutions (RetinaNet's P6/P7)."""
    layers = keras.layers
    have = sorted(int(k[1:]) for k in pyramid if min_level <= int(k[1:]) <= max_level)
    lateral = {k: layers.Conv2D(width, 1, name=f"fpn_lateral_P{k}")(pyramid[f"P{k}"]) for k in have}
    merged = {have[-1]: lateral[have[-1]]}
    for k in reversed(have[:-1]):
        merged[k] = layers.Add(name=f"fpn_merge_P{k}")(
            [lateral[k], layers.UpSampling2D(2, name=f"fpn_up_P{k + 1}")(merged[k + 1])])
    features = {k: layers.Conv2D(width, 3, padding="same", name=f"fpn_output_P{k}")(merged[k]) for k in have}
    previous = pyramid[f"P{have[-1]}"]
    for k in range(have[-1] + 1, max_level + 1):
        source = previous if k == have[-1] + 1 else layers.ReLU(name=f"fpn_relu_P{k - 1}")(features[k - 1])
        features[k] = layers.Conv2D(width, 3, strides=2, padding="same", name=f"fpn_extra_P{k}")(source)
        previous = features[k]
    return features


def _head(width, depth, outputs, name, bias=0.0, group_norm=True):
    """Layers shared by every level (one set of weights, as RetinaNet's heads), each 3x3
    convolution group-normalised before its ReLU: the levels' features differ in scale (a
    backbone's P5 may be its 1280-channel top), and a head shared by all of them learns nothing
    on the level whose features are far larger without it (measured: WBC at P5, AP 0)."""
    layers = keras.layers
    convs = []
    for i in range(depth):
        convs.append(layers.Conv2D(width, 3, padding="same", use_bias=not group_norm, name=f"{name}_conv{i}",
                                   kernel_initializer=keras.initializers.RandomNormal(stddev=0.01)))
        if group_norm:
            convs.append(layers.GroupNormalization(groups=_groups(width), name=f"{name}_norm{i}"))
        convs.append(layers.ReLU(name=f"{name}_relu{i}"))
    last = layers.Conv2D(outputs, 3, padding="same", name=f"{name}_logits",
                         kernel_initializer=keras.initializers.RandomNormal(stddev=0.01),
                         bias_initializer=keras.initializers.Constant(bias))
    return convs + [last]


def _groups(width):
    """Group norm's groups: 8 channels a group (KerasHub's 32 groups of 256), at least 1."""
    return max(1, min(32, width // 8))


def _apply(stack, x):
    for layer in stack:
        x = layer(x)
    return x


@keras.saving.register_keras_serializable(package="cnn_tasks")
class DetectionLoss(keras.losses.Loss):
    """RetinaNet's loss on ground truth ``(batch, max_boxes, 5)`` (xyxy network pixels and class
    id; rows of -1 pad): each anchor takes the box it overlaps most, positive at IoU >=
    ``positive_iou``, background below ``negative_iou``, ignored between, and every box's best
    anchor is positive too, so no box goes unmatched (Detectron's low-quality matches). Sigmoid
    focal loss over the classes of every anchor not ignored plus ``box_weight`` x smooth L1 of the
    positives' deltas, both divided by the batch's positives."""

    def __init__(self, anchors, num_classes, positive_iou=0.5, negative_iou=0.4, alpha=0.25, gamma=2.0,
                 box_weight=1.0, name="detection_loss", **kwargs):
        super().__init__(name=name, **kwargs)
        self.anchors = AnchorSpec.from_json(anchors).to_json()
        self.num_classes = int(num_classes)
        self.positive_iou, self.negative_iou = float(positive_iou), float(negative_iou)
        self.alpha, self.gamma, self.box_weight = float(alpha), float(gamma), float(box_weight)
        self._anchor_boxes = AnchorSpec.from_json(self.anchors).boxes()

    def call(self, y_true, y_pred):
        ops = keras.ops
        targets = encode_targets(y_true, self._anchor_boxes, self.positive_iou, self.negative_iou)
        box_targets, labels = targets[..., :4], targets[..., 4]
        positive = ops.cast(labels >= 0, "float32")
        counted = ops.cast(labels > -2, "float32")  # not ignored
        onehot = ops.one_hot(ops.cast(ops.maximum(labels, 0), "int32"), self.num_classes) * positive[..., None]
        logits = y_pred[..., 4:]
        probability = ops.sigmoid(logits)
        cross_entropy = ops.maximum(logits, 0) - logits * onehot + ops.log1p(ops.exp(-ops.abs(logits)))
        p_t = onehot * probability + (1 - onehot) * (1 - probability)
        alpha_t = onehot * self.alpha + (1 - onehot) * (1 - self.alpha)
        focal = ops.sum(alpha_t * (1 - p_t) ** self.gamma * cross_entropy, axis=-1) * counted
        error = ops.abs(y_pred[..., :4] - box_targets)
        smooth_l1 = ops.sum(ops.where(error < 1.0, 0.5 * error ** 2, error - 0.5), axis=-1) * positive
        per_image = ops.sum(focal, axis=1) + self.box_weight * ops.sum(smooth_l1, axis=1)
        batch = ops.cast(ops.shape(y_pred)[0], "float32")
        return per_image * batch / ops.maximum(ops.sum(positive), 1.0)  # the mean: total / positives

    def get_config(self):
        return {**super().get_config(), "anchors": self.anchors, "num_classes": self.num_classes,
                "positive_iou": self.positive_iou, "negative_iou": self.negative_iou,
                "alpha": self.alpha, "gamma": self.gamma, "box_weight": self.box_weight}


def encode_targets(y_true, anchors, positive_iou=0.5, negative_iou=0.4):
    """(batch, A, 5): box deltas (center_xywh, :data:`BOX_VARIANCE`) and the class id per anchor,
    -1 background, -2 ignored."""
    ops = keras.ops
    boxes, classes = y_true[..., :4], y_true[..., 4]
    valid = classes >= 0
    anchors = ops.convert_to_tensor(anchors)
    iou = keras.utils.bounding_boxes.compute_iou(anchors, boxes, "xyxy")  # (batch, A, M)
    iou = ops.where(valid[:, None, :], iou, -1.0)
    best_box = ops.argmax(iou, axis=-1)
    best_iou = ops.max(iou, axis=-1)
    per_box_best = ops.max(iou, axis=1, keepdims=True)  # (batch, 1, M)
    forced = ops.logical_and(ops.equal(iou, per_box_best), ops.logical_and(valid[:, None, :], iou > 0))
    is_forced = ops.any(forced, axis=-1)
    best_box = ops.where(is_forced, ops.argmax(ops.where(forced, iou, -1.0), axis=-1), best_box)
    matched = ops.take_along_axis(boxes, best_box[..., None], axis=1)
    label = ops.take_along_axis(classes, best_box, axis=1)
    positive = ops.logical_or(best_iou >= positive_iou, is_forced)
    label = ops.where(positive, label, ops.where(best_iou < negative_iou, -1.0, -2.0))
    deltas = keras.utils.bounding_boxes.encode_box_to_deltas(
        anchors=anchors, boxes=ops.where(positive[..., None], matched, anchors[None]), anchor_format="xyxy",
        box_format="xyxy", encoding_format="center_xywh", variance=list(BOX_VARIANCE))
    return ops.concatenate([deltas, label[..., None]], axis=-1)


def decode(raw, anchors, *, score_threshold=0.05, iou_threshold=0.5, max_detections=100):
    """Raw outputs (batch, A, 4 + classes) -> (boxes (batch, K, 4) xyxy network pixels, scores,
    class ids, valid counts): deltas decoded on the anchors, sigmoid scores, per-class NMS. A
    TensorFlow graph function: the export runs it in the SavedModel."""
    import tensorflow as tf

    boxes = keras.utils.bounding_boxes.decode_deltas_to_boxes(
        anchors=tf.constant(anchors), boxes_delta=raw[..., :4], anchor_format="xyxy", box_format="xyxy",
        encoded_format="center_xywh", variance=list(BOX_VARIANCE))
    scores = tf.sigmoid(raw[..., 4:])
    boxes, scores, classes, valid = tf.image.combined_non_max_suppression(
        boxes[:, :, None, :], scores, max_output_size_per_class=max_detections, max_total_size=max_detections,
        iou_threshold=iou_threshold, score_threshold=score_threshold, clip_boxes=False)
    return boxes, scores, tf.cast(classes, tf.int32), valid


def pad_boxes(boxes_per_image, scale, max_boxes):
    """(N, max_boxes, 5) float32 ground truth in network pixels (``scale``: per image (sx, sy)),
    padded with -1 rows."""
    out = np.full((len(boxes_per_image), max(max_boxes, 1), 5), PADDING, np.float32)
    for i, boxes in enumerate(boxes_per_image):
        if len(boxes):
            scaled = scaled_boxes(boxes, scale[i])
            out[i, :len(scaled)] = scaled[:max_boxes]
    return out


def scaled_boxes(boxes, scale):
    """(n, 5) boxes with x scaled by ``scale[0]`` and y by ``scale[1]`` (an image's pixels to
    the network's), classes kept."""
    boxes = np.asarray(boxes, np.float32).copy()
    boxes[:, [0, 2]] *= scale[0]
    boxes[:, [1, 3]] *= scale[1]
    return boxes
