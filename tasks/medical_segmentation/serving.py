"""Segmentation endpoints that do the whole job in the graph, for TF Serving and TFLite.

The graph twins of :meth:`MedicalSegmentation.predict_case`: per-volume normalisation, slicing
along the run's axis, resizing to the network (or native-scale tiles, or 3D patches, blended
with the same window as :mod:`tasks.medical_segmentation.tiles`), resizing the probabilities
back and the argmax, then reassembling the volume. A volume run answers a label volume with
each class's voxel count and volume in mL (from the spacing); a 2D run answers PNG masks as
``predict`` writes them. TFLite holds the network itself (``segment_pixels`` per slice, or
``segment_voxels`` per 3D patch).
"""

import numpy as np

from pipelines import imaging
from pipelines.serving import Signature
from tasks.medical_segmentation import tiles

SLICE_FIRST = {0: [0, 1, 2], 1: [1, 0, 2], 2: [2, 0, 1]}  # np.moveaxis(volume, axis, 0)


def normalize_in_graph(volume, method, window):
    """The graph twin of :func:`tasks.medical_segmentation.volumes.normalize`."""
    import tensorflow as tf

    if method == "window":
        low, high = float(window[0]), float(window[1])
        return (tf.clip_by_value(volume, low, high) - low) / (high - low)
    std = tf.math.reduce_std(volume)
    return (volume - tf.reduce_mean(volume)) / tf.where(std > 0, std, 1.0)


def _pad_index(length, target, reflect):
    """Gather indices that pad ``length`` up to ``target`` as np.pad's reflect or edge modes."""
    import tensorflow as tf

    i = tf.range(target)
    reflected = tf.where(i < length, i, 2 * (length - 1) - i)
    return tf.where(reflect, reflected, tf.minimum(i, length - 1))


def _origins(length, tile, stride):
    """The graph twin of :func:`tiles.origins`."""
    import tensorflow as tf

    return tf.concat([tf.range(0, length - tile, stride), [tf.maximum(length - tile, 0)]], axis=0)


def tiled_in_graph(network, image, tile, overlap=0.5):
    """The graph twin of :func:`tiles.predict_tiled`: probabilities (*spatial, K) for
    (*spatial, C), 2D tiles or 3D patches."""
    import tensorflow as tf

    sizes = tiles._sizes(tile)
    strides = tiles.strides_for(sizes, overlap)
    shape = tf.shape(image)
    lengths = [shape[i] for i in range(len(sizes))]
    padded_lengths = [tf.maximum(length, size) for length, size in zip(lengths, sizes)]
    reflect = tf.reduce_all(tf.stack([size - length < length for length, size in zip(lengths, sizes)]))
    padded = image
    for axis, (length, target) in enumerate(zip(lengths, padded_lengths)):
        padded = tf.gather(padded, _pad_index(length, target, reflect), axis=axis)
    starts = tf.meshgrid(*[_origins(n, size, stride) for n, size, stride in zip(padded_lengths, sizes, strides)],
                         indexing="ij")
    corners = tf.stack([tf.reshape(axis_starts, [-1]) for axis_starts in starts], axis=1)
    channels = image.shape[-1]
    crops = tf.map_fn(lambda corner: tf.slice(padded, tf.concat([corner, [0]], 0), list(sizes) + [channels]),
                      corners, fn_output_signature=tf.TensorSpec(list(sizes) + [channels], tf.float32))
    proba = network(crops, training=False)
    offsets = tf.stack(tf.meshgrid(*[tf.range(size) for size in sizes], indexing="ij"), axis=-1)
    indices = tf.reshape(corners, [-1] + [1] * len(sizes) + [len(sizes)]) + offsets[None]
    blend = tf.constant(tiles.window(sizes)[..., None])
    classes = proba.shape[-1]
    total = tf.tensor_scatter_nd_add(tf.zeros(padded_lengths + [classes]), indices, proba * blend)
    weight = tf.tensor_scatter_nd_add(tf.zeros(padded_lengths + [1]), indices,
                                      tf.broadcast_to(blend, tf.concat([[tf.shape(corners)[0]], list(sizes) + [1]], 0)))
    return tf.slice(total / weight, [0] * (len(sizes) + 1), lengths + [classes])


def label_slices(network, slices, info):
    """(n, h, w, C) float slices -> (n, h, w) int32 class ids, as predict_case computes them."""
    import tensorflow as tf

    size = info.image_size
    if info.tiled:
        proba = tf.map_fn(lambda image: tiled_in_graph(network, image, size), slices,
                          fn_output_signature=tf.TensorSpec([None, None, info.n_classes], tf.float32))
    else:
        proba = network(tf.image.resize(slices, (size, size), method="bilinear"), training=False)
        proba = tf.image.resize(proba, tf.shape(slices)[1:3], method="bilinear")
    return tf.argmax(proba, axis=-1, output_type=tf.int32)


def serving_signatures(model, info):
    import tensorflow as tf

    signatures = {}
    if info.volumes:
        signatures["serving_default"] = _volume_signature(model, info)
    else:
        channels, scale = info.channels, (255 if info.n_classes == 2 else 1)

        def serving_default(image_bytes):
            def one(data):
                image = imaging.decode_in_graph(data, channels)
                labels = label_slices(model, image[None], info)[0]
                png = tf.io.encode_png(tf.cast(labels * scale, tf.uint8)[..., None])
                return png, tf.shape(labels)[0], tf.shape(labels)[1], _counts(labels, info)

            png, height, width, counts = tf.map_fn(one, image_bytes, fn_output_signature=(
                tf.TensorSpec([], tf.string), tf.TensorSpec([], tf.int32), tf.TensorSpec([], tf.int32),
                tf.TensorSpec([info.n_classes - 1], tf.int32)))
            return {"mask_png": png, "height": height, "width": width, "class_pixels": counts}

        signatures["serving_default"] = Signature(
            serving_default, [tf.TensorSpec([None], tf.string, name="image_bytes")],
            "encoded image files -> a PNG mask per image at its own size (binary: 0/255, else class "
            f"ids) and pixels per foreground class ({', '.join(info.class_names[1:])})")
    signatures[_network_signature_name(info)] = _pixel_signature(model, info)
    return signatures


def tflite_signatures(model, info):
    return {_network_signature_name(info): _pixel_signature(model, info)}


def _network_signature_name(info):
    return "segment_voxels" if getattr(info, "spatial_dims", 2) == 3 else "segment_pixels"


def _counts(labels, info):
    import tensorflow as tf

    flat = tf.reshape(labels, [-1])
    return tf.math.bincount(flat, minlength=info.n_classes, maxlength=info.n_classes,
                            dtype=tf.int32)[1:]


def _volume_signature(model, info):
    import tensorflow as tf

    to_slices = SLICE_FIRST[info.slice_axis]
    back = [int(i) for i in np.argsort(to_slices)]
    names = tf.constant(list(info.class_names[1:]))
    how = (f"{'x'.join(map(str, info.patch))} patches blended by a Gaussian" if info.spatial_dims == 3
           else f"slices along axis {info.slice_axis}")

    def serving_default(volume, spacing):
        image = normalize_in_graph(tf.cast(volume, tf.float32), info.normalization,
                                   info.intensity_window)
        if info.spatial_dims == 3:
            labels = tf.argmax(tiled_in_graph(model, image[..., None], info.patch), axis=-1,
                               output_type=tf.int32)
        else:
            labels = tf.transpose(label_slices(model, tf.transpose(image, to_slices)[..., None], info), back)
        voxels = _counts(labels, info)
        millilitres = tf.cast(voxels, tf.float32) * tf.reduce_prod(spacing) / 1000.0
        return {"labels": tf.cast(labels, tf.uint8), "voxels": voxels, "volume_ml": millilitres,
                "class_names": names}

    return Signature(
        serving_default, [tf.TensorSpec([None, None, None], tf.float32, name="volume"),
                          tf.TensorSpec([3], tf.float32, name="spacing")],
        f"one volume as stored (e.g. a NIfTI's data) and its voxel size in mm -> a label volume of "
        f"the same shape ({info.normalization} normalisation, {how}, done in the graph), voxels "
        f"and mL per foreground class",
        notes=["TF Serving REST: send it in the columnar form {\"inputs\": {\"volume\": ..., "
               "\"spacing\": [...]}} (one volume per request; there is no batch axis)"])


def _pixel_signature(model, info):
    import tensorflow as tf

    shape = list(model.input_shape[1:])
    three_d = info.spatial_dims == 3

    def segment_pixels(pixels):
        proba = model(pixels, training=False)
        return {"mask": tf.cast(tf.argmax(proba, axis=-1), tf.uint8), "probabilities": proba}

    def segment_voxels(voxels):
        return segment_pixels(voxels)

    what = ("normalised volume patches" if three_d else
            "normalised slices" if info.volumes else "images in [0, 1]")
    name = "voxels" if three_d else "pixels"
    return Signature(segment_voxels if three_d else segment_pixels, [tf.TensorSpec([None] + shape, tf.float32, name=name)],
                     f"{what} already {'x'.join(map(str, shape))} (the network's own input) -> "
                     f"class id per {name[:-1]} and probabilities")
