"""Image files read lazily: paths in memory, pixels decoded when they are needed.

A folder of 100,000 photos does not fit in memory as float32 arrays, so readers return
:class:`ImageFiles`. It holds the paths and a common geometry, which comes from the file
headers alone. Training decodes the files in a parallel ``tf.data`` map
(:meth:`ImageFiles.graph_decoder`). Evaluation, figures and baselines index it like an array
and get decoded pixels for just those rows. Both routes run the same steps as
:func:`pipelines.imaging.stack_images` followed by the task's own fitting: decode, fit
channels (channel mean or replication), resize to the reader's common size, fit the
network's channels, resize to the network's size. They give the same pixels (see
:func:`pipelines.imaging.decode_in_graph`).
"""

from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from pipelines import imaging
from pipelines.errors import UserError

MIXED_SIZES_DEFAULT = 64  # as stack_images: files of several sizes meet at 64 x 64 unless told
GRAPH_DECODABLE = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp"}  # tf.io.decode_image: no TIFF


def lazy_or_loaded(paths, *, size=None, channels=None):
    """:class:`ImageFiles` when TensorFlow can decode every file; TIFFs are read into memory as
    before (tf.io.decode_image has no TIFF decoder)."""
    if all(Path(p).suffix.lower() in GRAPH_DECODABLE for p in paths):
        return ImageFiles.scan(paths, size=size, channels=channels)
    return imaging.stack_images(paths, size=size, channels=channels)


class LazyRows:
    """The array face of lazily read files, for a frozen dataclass with ``paths``, a ``shape``
    and ``_decode(path) -> float32 pixels``: length, size in memory, row selection, indexing
    and loading. :func:`pipelines.inputs.tf_dataset` streams it through ``graph_decoder()``."""

    dtype = np.dtype(np.float32)  # what indexing returns

    def __len__(self):
        return len(self.paths)

    @property
    def nbytes(self):
        """What the decoded float32 pixels would take in memory."""
        return int(np.prod(self.shape, dtype=np.int64)) * 4

    def take(self, indices):
        return replace(self, paths=self.paths[np.asarray(indices, dtype=int)])

    def __getitem__(self, key):
        """Decoded float32 pixels: (H, W, C) for an integer, (n, H, W, C) for a slice or indices."""
        if isinstance(key, (int, np.integer)):
            return self._decode(self.paths[key])
        rows = self.paths[key]
        if len(rows) == 0:
            return np.zeros((0,) + self.shape[1:], np.float32)
        return np.stack([self._decode(p) for p in rows])

    def load(self):
        return self[np.arange(len(self))]


@dataclass(frozen=True)
class ImageFiles(LazyRows):
    paths: np.ndarray  # str, one per image
    height: int  # the reader's common geometry (after its own resize and channel choice)
    width: int
    source_channels: int
    resize: int = None  # the reader's square resize; None: every file is height x width already
    channels: int = None  # what the network takes; None: as the reader
    size: int = None  # the network's square input; None: as the reader

    @classmethod
    def scan(cls, paths, *, size=None, channels=None):
        """Geometry from the headers (Pillow decodes no pixels to answer size and mode), and a
        check of the file's structure, so a broken file stops the run before training."""
        from PIL import Image, UnidentifiedImageError

        shapes, colour = set(), False
        for path in paths:
            try:
                with Image.open(path) as image:
                    shapes.add((image.height, image.width))
                    colour = colour or image.mode not in imaging.GRAY_MODES
                    image.verify()  # PNG chunk checksums: a truncated file is named now, not mid-epoch
                    if image.format == "JPEG":
                        _check_jpeg_complete(path)
            except FileNotFoundError:
                raise UserError(f"{path}: no such image file") from None
            except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as error:
                raise imaging.undecodable(path, error) from None
        source_channels = channels or (3 if colour else 1)
        resize = size if size is not None else (None if len(shapes) <= 1 else MIXED_SIZES_DEFAULT)
        height, width = (resize, resize) if resize else (next(iter(shapes)) if shapes else (1, 1))
        return cls(np.asarray([str(p) for p in paths]), height, width, source_channels, resize)

    @property
    def shape(self):
        if self.size:
            return (len(self), self.size, self.size, self.channels or self.source_channels)
        return (len(self), self.height, self.width, self.channels or self.source_channels)

    def at(self, channels, size):
        """The same files as the network takes them: ``channels`` and a square ``size``."""
        return replace(self, channels=channels, size=size)

    def _decode(self, path):
        image = imaging.fit_channels(imaging.read_image(path)[None], self.source_channels)
        if self.resize:
            image = imaging.resize_batch(image, self.resize)
        if self.channels:
            image = imaging.fit_channels(image, self.channels)
        if self.size:
            image = imaging.resize_batch(image, self.size)
        return image[0].astype(np.float32)

    # -- the tf.data route -------------------------------------------------------------------
    def graph_decoder(self):
        """path (a scalar string tensor) -> float32 pixels, the graph twin of indexing."""
        import tensorflow as tf

        source, resize, channels, size = self.source_channels, self.resize, self.channels, self.size

        def decode(path):
            image = imaging.decode_in_graph(tf.io.read_file(path), source)
            if resize:
                image = imaging.resize_in_graph(image, resize)
            if channels and channels != source:
                image = (tf.reduce_mean(image, axis=-1, keepdims=True) if channels == 1
                         else tf.tile(image, [1, 1, 3]))
            if size:
                image = imaging.resize_in_graph(image, size)
            return tf.ensure_shape(image, self.shape[1:])

        return decode


JPEG_END = b"\xff\xd9"  # the end-of-image marker


def _check_jpeg_complete(path):
    """Pillow's verify() does not read a JPEG's scan data, so a file cut short passes it. A
    complete file ends with the end-of-image marker; one that does not (cut short, or with data
    appended, as motion photos have) is decoded at reduced scale to be sure (OSError if cut)."""
    from PIL import Image

    with open(path, "rb") as handle:
        handle.seek(0, 2)
        handle.seek(max(0, handle.tell() - 16))
        if JPEG_END in handle.read().rstrip(b"\x00\r\n\t "):
            return
    with Image.open(path) as image:
        image.draft("L", (1, 1))  # the DCT scaled down: the entropy data is read, little decoded
        image.load()


BASELINE_BUDGET = 32 * 1024 ** 2  # decoded training pixels a pixel baseline may hold (float32 bytes;
# scikit-learn makes float64 copies, so it costs about four times this)


def baseline_sample(labels, nbytes, *, seed, budget=BASELINE_BUDGET):
    """Row indices for a classical baseline that needs pixels in memory: all of them when they fit
    ``budget``, else a seeded stratified share that does."""
    labels = np.asarray(labels)
    if nbytes <= budget:
        return np.arange(len(labels))
    from sklearn.model_selection import train_test_split

    keep = max(len(np.unique(labels)), int(len(labels) * budget / nbytes))
    _, chosen = train_test_split(np.arange(len(labels)), test_size=keep, random_state=seed,
                                 stratify=labels)
    return np.sort(chosen)


def is_image_files(x):
    return isinstance(x, ImageFiles)
