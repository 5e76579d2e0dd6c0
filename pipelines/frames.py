"""Images read lazily at the network's height x width, which need not be square (PilotNet takes
66x200, a detector 320x416), optionally cropped first (a camera's rows of sky and bonnet off).
Steering and object detection both read their pictures this way.

One decoding path, TensorFlow's: tf.data decodes the files in parallel when training, indexing
runs the same function eagerly (figures, baselines, ``predict``), and the export runs it in the
graph on the client's bytes, so the three agree pixel for pixel.
"""

from dataclasses import dataclass

import numpy as np

from pipelines import imaging
from pipelines.image_files import LazyRows


def crop_and_resize(image, *, crop_top, crop_bottom, height, width):
    """One decoded (H, W, C) float image tensor -> (height, width, C), bilinear with antialias."""
    import tensorflow as tf

    rows = tf.shape(image)[0]
    top = tf.cast(tf.round(tf.cast(rows, tf.float32) * crop_top), tf.int32)
    bottom = rows - tf.cast(tf.round(tf.cast(rows, tf.float32) * crop_bottom), tf.int32)
    image = image[top:bottom]
    same = tf.reduce_all(tf.shape(image)[:2] == (height, width))
    image = tf.cond(same, lambda: image, lambda: tf.clip_by_value(
        tf.image.resize(image, (height, width), antialias=True), 0.0, 1.0))
    return tf.ensure_shape(image, (height, width, image.shape[-1]))


def frame_in_graph(data, geometry):
    """Encoded PNG/JPEG bytes (a scalar string tensor) -> the network's float32 input."""
    return crop_and_resize(imaging.decode_in_graph(data, geometry.channels), crop_top=geometry.crop_top,
                           crop_bottom=geometry.crop_bottom, height=geometry.height,
                           width=geometry.width)


@dataclass(frozen=True)
class Frames(LazyRows):
    """Image files with the geometry the network takes; indexes like a float32 array
    (N, height, width, channels) and streams through :func:`pipelines.inputs.tf_dataset`."""

    paths: np.ndarray  # str, one per frame
    height: int
    width: int
    channels: int = 3
    crop_top: float = 0.0
    crop_bottom: float = 0.0

    @property
    def shape(self):
        return (len(self), self.height, self.width, self.channels)

    def graph_decoder(self):
        """path (a scalar string tensor) -> float32 pixels."""
        import tensorflow as tf

        return lambda path: frame_in_graph(tf.io.read_file(path), self)

    def _decode(self, path):
        import tensorflow as tf

        return frame_in_graph(tf.io.read_file(str(path)), self).numpy()
