"""The tf.data input pipeline every task trains on: decode files (in parallel), cache, shuffle,
batch, augment (in parallel, each batch with its own seed), prefetch.

``x`` is an array, lazily read files (anything with ``graph_decoder`` and ``paths``, such as
:class:`pipelines.image_files.ImageFiles`), :class:`Gathered` rows of either, or a dict of
these; or :class:`Streamed` sources that each make several examples (inputs and targets).
Parallel maps keep their order, so a seed still gives one run.
"""

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from pipelines import augmentation

CACHE_MODES = ("auto", "memory", "disk", "none")
MEMORY_CACHE_BUDGET = 2 * 1024 ** 3  # auto keeps decoded files in memory up to this many bytes
STREAM_SHUFFLE_BUFFER = 1_024  # a disk cache streams: a bounded shuffle buffer
MEMORY_SHUFFLE_BUFFER = 10_000


@dataclass(frozen=True)
class Gathered:
    """``x[i] = source[rows[i]]``: examples that share an input (the captions of one image) keep
    it once, as one array row or one file, and tf.data gathers it for each example."""

    source: object  # an array or lazily read files
    rows: np.ndarray  # int, one per example

    def __len__(self):
        return len(self.rows)

    @property
    def shape(self):
        return (len(self.rows),) + tuple(self.source.shape[1:])

    @property
    def nbytes(self):
        """What the shared inputs take (or would take, decoded) in memory: each once."""
        return int(getattr(self.source, "nbytes", 0))

    def __getitem__(self, key):
        return self.source[self.rows[key]]

    def take(self, indices):
        return Gathered(self.source, self.rows[np.asarray(indices, dtype=int)])


@dataclass(frozen=True)
class Streamed:
    """Examples made in Python from sources that are costly to read (a NIfTI volume, an image and
    its mask): ``read(i)`` gives source ``i``'s examples as ``(inputs [n, ...], targets [n, ...])``
    with ``n == counts[i]``. Streamed, each source is read once per pass by a parallel tf.data
    map, so only a few are in memory at a time; cached in memory, all are read once
    (:meth:`load`). A task's ``encode`` returns ``(streamed, streamed.targets)``."""

    read: Callable
    counts: np.ndarray  # examples per source
    x_shape: tuple  # one example's input and target
    y_shape: tuple
    x_dtype: str = "float32"
    y_dtype: str = "int32"

    def __len__(self):
        return int(np.sum(self.counts))

    @property
    def nbytes(self):
        one = (np.prod(self.x_shape) * np.dtype(self.x_dtype).itemsize
               + np.prod(self.y_shape) * np.dtype(self.y_dtype).itemsize)
        return int(len(self) * one)

    @property
    def targets(self):
        """The ``y`` to pass beside it: only its length is real (the targets come with ``read``)."""
        return StreamedTargets(len(self))

    def load(self):
        """(inputs, targets) of every source, concatenated in order."""
        pairs = [self.read(i) for i in range(len(self.counts))]
        if not pairs:
            return (np.zeros((0,) + tuple(self.x_shape), self.x_dtype),
                    np.zeros((0,) + tuple(self.y_shape), self.y_dtype))
        return (np.concatenate([x for x, _ in pairs]).astype(self.x_dtype),
                np.concatenate([y for _, y in pairs]).astype(self.y_dtype))

    def dataset(self, *, shuffle_seed=None):
        """Examples one by one: sources (shuffled by ``shuffle_seed`` if given) read in parallel."""
        import tensorflow as tf

        ds = tf.data.Dataset.from_tensor_slices(np.arange(len(self.counts)))
        if shuffle_seed is not None:
            ds = ds.shuffle(len(self.counts), seed=shuffle_seed, reshuffle_each_iteration=True)

        def read(index):
            x, y = tf.py_function(lambda i: self.read(int(i)), [index], [self.x_dtype, self.y_dtype])
            return (tf.ensure_shape(x, (None,) + tuple(self.x_shape)),
                    tf.ensure_shape(y, (None,) + tuple(self.y_shape)))

        return ds.map(read, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True).unbatch()


@dataclass(frozen=True)
class StreamedTargets:
    count: int

    def __len__(self):
        return self.count


def _is_files(part):
    return hasattr(part, "graph_decoder")


def _parts(x):
    return list(x.values()) if isinstance(x, dict) else [x]


def _lazy(part):
    return (_is_files(part) or isinstance(part, Streamed)
            or (isinstance(part, Gathered) and _is_files(part.source)))


def cache_mode(requested, x):
    """What ``cache`` means for these inputs: arrays already in memory are cached there; files
    read lazily are cached in memory while their decoded pixels fit the budget, else not at all
    (``disk`` on request). Runs from before these modes stored true/false."""
    if requested is True or requested is False:
        return "memory" if requested else "none"
    if requested != "auto":
        return requested
    lazy = [part for part in _parts(x) if _lazy(part)]
    return "memory" if sum(part.nbytes for part in lazy) <= MEMORY_CACHE_BUDGET else "none"


def _slices_and_maker(part, mode):
    """(what ``from_tensor_slices`` takes, the graph function that turns one of its elements
    into the input or None, whether that function also takes a whole batch of them)."""
    import tensorflow as tf

    if isinstance(part, Gathered):
        source = part.source
        if _is_files(source):
            if mode != "memory":
                return source.paths[part.rows], source.graph_decoder(), False
            source = source.load()  # each file decoded once; the rows index it
        table = tf.convert_to_tensor(np.asarray(source))
        return part.rows, lambda rows: tf.gather(table, rows), True
    if _is_files(part):
        return part.paths, part.graph_decoder(), False
    return part, None, True


def _inputs(x, mode):
    """(slices, maker, whether the maker takes batches) for ``x``, a part or a dict of parts."""
    if not isinstance(x, dict):
        return _slices_and_maker(x, mode)
    resolved = {key: _slices_and_maker(part, mode) for key, part in x.items()}
    makers = {key: maker for key, (_, maker, _) in resolved.items() if maker is not None}

    def make(sliced):
        return {key: makers[key](value) if key in makers else value for key, value in sliced.items()}

    return ({key: slices for key, (slices, _, _) in resolved.items()}, (make if makers else None),
            all(per_batch for _, _, per_batch in resolved.values()))


def tf_dataset(x, y, *, batch_size, training, seed=0, augment=None, cache="auto", cache_dir=None,
               sample_weight=None):
    """The standard input pipeline (see the module docstring).

    Inputs that are not cached (streamed files, gathered rows) are shuffled as paths or row
    numbers, before decoding, so memory stays flat however many there are. Gathered rows are
    never cached in memory (their source already is, once), but ``disk`` caches each example.
    ``augment(x, y, seed)`` works on one batch (:mod:`pipelines.augmentation`)."""
    import tensorflow as tf

    mode = cache_mode(cache, x)
    if isinstance(x, Streamed):
        if mode != "memory":
            return _streamed(x, batch_size=batch_size, training=training, seed=seed, augment=augment,
                             mode=mode, cache_dir=cache_dir)
        x, y = x.load()
    slices, make, per_batch = _inputs(x, mode)
    gathered = any(isinstance(part, Gathered) for part in _parts(x))
    cached = mode == "disk" or (mode == "memory" and not gathered)
    parts = (slices, y) if sample_weight is None else (slices, y, sample_weight)
    ds = tf.data.Dataset.from_tensor_slices(parts)
    if training and not cached:
        ds = ds.shuffle(len(y), seed=seed, reshuffle_each_iteration=True)
    batch_make = make if make is not None and per_batch and mode != "disk" else None
    if make is not None and batch_make is None:  # files decode one by one; a disk cache keeps examples
        ds = _made(ds, make)
    if mode == "disk":
        ds = _disk_cache(ds, cache_dir, training)
    elif cached:
        ds = ds.cache()
    if training and cached:
        buffer = MEMORY_SHUFFLE_BUFFER if mode == "memory" else STREAM_SHUFFLE_BUFFER
        ds = ds.shuffle(min(len(y), buffer), seed=seed, reshuffle_each_iteration=True)
    return _finish(ds, batch_size=batch_size, training=training, seed=seed, augment=augment, make=batch_make)


def _streamed(stream, *, batch_size, training, seed, augment, mode, cache_dir):
    """Sources shuffled, read in parallel, their examples mixed by a bounded buffer."""
    ds = stream.dataset(shuffle_seed=seed if training and mode == "none" else None)
    if mode == "disk":
        ds = _disk_cache(ds, cache_dir, training)
    if training:
        ds = ds.shuffle(min(len(stream), STREAM_SHUFFLE_BUFFER), seed=seed, reshuffle_each_iteration=True)
    return _finish(ds, batch_size=batch_size, training=training, seed=seed, augment=augment)


def _disk_cache(ds, cache_dir, training):
    if cache_dir is None:
        raise ValueError("cache='disk' needs a cache_dir")
    Path(cache_dir).mkdir(parents=True, exist_ok=True)
    return ds.cache(str(Path(cache_dir) / ("train" if training else "eval")))


def _made(ds, make):
    """``ds`` with ``make`` applied to its inputs (the first element), in parallel and in order."""
    import tensorflow as tf

    return ds.map(lambda inputs, *rest: (make(inputs), *rest), num_parallel_calls=tf.data.AUTOTUNE,
                  deterministic=True)


def _finish(ds, *, batch_size, training, seed, augment, make=None):
    """Batch, gather a batch's shared inputs (``make``: one tf.gather a batch, not one an
    example), augment (training), shard per worker, prefetch."""
    import tensorflow as tf

    ds = ds.batch(batch_size)
    if make is not None:
        ds = _made(ds, make)
    if training and augment is not None:
        ds = augmentation.apply_per_batch(ds, augment, seed)
    options = tf.data.Options()  # under a multi-worker strategy each worker takes its share of
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return ds.with_options(options).prefetch(tf.data.AUTOTUNE)  # every batch: none seen twice
