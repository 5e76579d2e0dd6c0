"""Reading and shaping images, shared by every image task (classification, captioning, masks).

Images become float32 arrays in [0, 1] of shape (H, W, C) with C = 1 or 3. Unreadable files raise
:class:`UserError` naming the file.
"""

from pathlib import Path

import numpy as np

from pipelines.errors import UserError

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp"}
GRAY_MODES = ("L", "I", "I;16", "F", "1", "LA")  # Pillow modes read as one channel


def undecodable(path, error):
    """The UserError for an image Pillow cannot or will not decode (corrupt, truncated, or larger
    than its decompression-bomb limit, which is kept: a tiny file can claim billions of pixels)."""
    from PIL import Image

    if isinstance(error, Image.DecompressionBombError):
        return UserError(f"{path}: refused, the image claims more pixels than Pillow's safety limit "
                         f"of {2 * Image.MAX_IMAGE_PIXELS:,} (a decompression bomb, or a scan too "
                         f"large to train on whole)")
    return UserError(f"{path}: cannot decode image ({error.__class__.__name__})")


def read_image(path, channels=None):
    """Decode an image file to float32 [0, 1] (H, W, C); ``channels`` 1 or 3 converts, None keeps."""
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    try:
        with Image.open(path) as image:
            image.load()
            mode = image.mode
            if channels == 1 or (channels is None and mode in GRAY_MODES):
                array = _gray_array(image)
            else:
                array = np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0
    except FileNotFoundError:
        raise UserError(f"{path}: no such image file") from None
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as error:
        raise undecodable(path, error) from None
    if array.ndim == 2:
        array = array[..., None]
    return array


def _gray_array(image):
    if image.mode in ("I", "I;16", "F"):
        array = np.asarray(image, dtype=np.float32)
        top = 65535.0 if image.mode.startswith("I") and array.max() > 255 else 255.0
        return np.clip(array / top, 0, 1)
    return np.asarray(image.convert("L"), dtype=np.float32) / 255.0


def to_unit_range(array):
    """Scale a numeric image array to float32 [0, 1]: uint8 by 255, uint16 by 65535, floats as given
    when already in [0, 1], else by their maximum. Returns (array, scale) so callers can record it."""
    array = np.asarray(array)
    if array.dtype == np.uint8:
        scale = 255.0
    elif array.dtype == np.uint16:
        scale = 65535.0
    elif np.issubdtype(array.dtype, np.bool_):
        scale = 1.0
    elif np.issubdtype(array.dtype, np.number):
        low, high = float(np.min(array)), float(np.max(array))
        if low < 0:
            raise UserError(f"image values must be non-negative, found minimum {low}")
        scale = 1.0 if high <= 1.0 else (255.0 if high <= 255.0 else high)
    else:
        raise UserError(f"image array has non-numeric dtype {array.dtype}")
    return (array.astype(np.float32) / scale), scale


def fit_channels(images, channels):
    """Convert a (N, H, W, C) batch to 1 or 3 channels (luma average or replication)."""
    have = images.shape[-1]
    if have == channels:
        return images
    if channels == 1:
        return images.mean(axis=-1, keepdims=True).astype(np.float32)
    if channels == 3 and have == 1:
        return np.repeat(images, 3, axis=-1)
    raise UserError(f"cannot convert images with {have} channels to {channels}")


def resize_batch(images, size):
    """Bilinear (antialiased) resize of a (N, H, W, C) float batch to ``size`` x ``size``."""
    if images.shape[1:3] == (size, size):
        return images.astype(np.float32)
    import tensorflow as tf

    out = [tf.image.resize(images[i:i + 1024], (size, size), antialias=True).numpy()
           for i in range(0, len(images), 1024)]
    return np.clip(np.concatenate(out), 0, 1).astype(np.float32)


def stack_images(paths, *, size=None, channels=None):
    """Read many files into one (N, size, size, C) batch; a common size is needed to stack."""
    arrays = [read_image(p, channels) for p in paths]
    if channels is None:
        channels = 3 if any(a.shape[-1] == 3 for a in arrays) else 1
    arrays = [fit_channels(a[None], channels)[0] for a in arrays]
    shapes = {a.shape[:2] for a in arrays}
    if size is None:
        if len(shapes) == 1:
            return np.stack(arrays)
        size = 64
    return np.concatenate([resize_batch(a[None], size) for a in arrays]) if arrays else \
        np.zeros((0, size, size, channels), np.float32)


def to_png(array):
    """Encode a float [0, 1] (H, W, C) or (H, W) image as PNG bytes (for reports, 2D masks)."""
    import io

    from PIL import Image

    array = np.asarray(array)
    if array.ndim == 3 and array.shape[-1] == 1:
        array = array[..., 0]
    buffer = io.BytesIO()
    Image.fromarray((np.clip(array, 0, 1) * 255).round().astype(np.uint8)).save(buffer, "PNG")
    return buffer.getvalue()


# -- the same steps as TensorFlow ops, for exported models that take encoded image bytes ----------
def decode_in_graph(data, channels):
    """The graph twin of ``fit_channels(read_image(path)[None], channels)[0]`` for one encoded
    PNG/JPEG/BMP/GIF (a scalar string tensor): float32 [0, 1] of shape (H, W, ``channels``).
    Alpha is dropped, colour becomes gray by the channel mean, gray is replicated to RGB."""
    import tensorflow as tf

    def jpeg():  # the accurate integer DCT is what Pillow uses; TF's default differs by up to 7/255
        return tf.io.decode_jpeg(data, channels=0, dct_method="INTEGER_ACCURATE")

    def other():
        return tf.io.decode_image(data, channels=0, expand_animations=False)

    # x / 255 as read_image computes it (convert_image_dtype multiplies by 1/255: an ulp apart,
    # and training is chaotic enough for an ulp to change the run)
    image = tf.cast(tf.cond(tf.io.is_jpeg(data), jpeg, other), tf.float32) / 255.0
    colour = tf.shape(image)[-1] >= 3
    image = tf.cond(colour, lambda: image[..., :3], lambda: image[..., :1])
    if channels == 1:
        image = tf.cond(colour, lambda: tf.reduce_mean(image, axis=-1, keepdims=True), lambda: image)
    else:
        image = tf.cond(colour, lambda: image, lambda: tf.tile(image, [1, 1, 3]))
    return tf.ensure_shape(image, (None, None, channels))


def resize_in_graph(image, size):
    """The graph twin of :func:`resize_batch` for one (H, W, C) image."""
    import tensorflow as tf

    same = tf.reduce_all(tf.shape(image)[:2] == size)
    resized = tf.cond(same, lambda: image, lambda: tf.clip_by_value(
        tf.image.resize(image, (size, size), antialias=True), 0.0, 1.0))
    return tf.ensure_shape(resized, (size, size, image.shape[-1]))


def decode_batch_in_graph(data, channels, size):
    """A batch of encoded images (string[N]) -> float32 (N, size, size, channels)."""
    import tensorflow as tf

    return tf.map_fn(lambda item: resize_in_graph(decode_in_graph(item, channels), size), data,
                     fn_output_signature=tf.TensorSpec((size, size, channels), tf.float32))
