"""The tf.data pipeline's shared and streamed inputs: gathered rows keep an input that several
examples share (the captions of one image) once; streamed sources (a volume, an image and its
mask) are read once per pass and expand into their examples."""

import numpy as np
import pytest

from conftest import write_png
from pipelines.image_files import ImageFiles
from pipelines.inputs import Gathered, Streamed, cache_mode, tf_dataset


def _examples(dataset):
    """{token: image} for every example of one pass (tokens are unique per example)."""
    seen = {}
    for x, _ in dataset:
        for token, image in zip(x["tokens"].numpy(), x["image"].numpy()):
            assert token not in seen  # no example twice
            seen[int(token)] = image
    return seen


@pytest.mark.parametrize("cache", ["memory", "none", "disk"])
@pytest.mark.parametrize("as_files", [False, True], ids=["array", "files"])
def test_each_example_gets_its_own_image_once_per_epoch(tmp_path, cache, as_files):
    images = np.stack([np.full((4, 4, 1), i / 10, np.float32) for i in range(5)])
    if as_files:
        for i, image in enumerate(images):
            write_png(tmp_path / f"{i}.png", np.round(image[..., 0] * 255))
        images = ImageFiles.scan([tmp_path / f"{i}.png" for i in range(5)])
    rows = np.repeat(np.arange(5), [1, 3, 2, 4, 1])  # captions per image
    x = {"image": Gathered(images, rows), "tokens": np.arange(len(rows))}
    for training in (True, False):
        dataset = tf_dataset(x, np.zeros(len(rows)), batch_size=4, training=training, seed=1,
                             cache=cache, cache_dir=tmp_path / f"cache_{training}")
        for _ in range(2):
            seen = _examples(dataset)
            assert sorted(seen) == list(range(len(rows)))
            for token, image in seen.items():
                np.testing.assert_allclose(image, np.full((4, 4, 1), rows[token] / 10), atol=0.5 / 255)


def test_gathered_rows_count_their_source_once():
    source = np.zeros((10, 8, 8, 3), np.float32)
    gathered = Gathered(source, np.repeat(np.arange(10), 5))
    assert gathered.nbytes == source.nbytes and len(gathered) == 50
    assert gathered.shape == (50, 8, 8, 3)
    assert gathered.take([0, 49]).rows.tolist() == [0, 9]

    class Files:  # lazily read files too large for the memory budget are streamed
        nbytes = 3 * 1024 ** 3
        graph_decoder = paths = None

    assert cache_mode("auto", {"image": Gathered(Files(), np.zeros(100, int))}) == "none"
    assert cache_mode("auto", {"image": gathered}) == "memory"


def test_captioning_keeps_each_image_once():
    from pipelines.tasks import get_task

    task = get_task("captioning")
    dataset = task.load("builtin:shapes", task.Config()).subset(np.arange(6))
    info = task.fit_preprocessing(dataset, task.Config(min_count=1), 8)
    x, y = task.encode(dataset, info)
    captions = sum(len(refs) for refs in dataset.y)
    assert len(x["tokens"]) == len(y) == captions > 6
    assert len(x["image"].source) == 6  # one copy per image, not per caption
    assert all(np.array_equal(x["image"][r], x["image"].source[image])
               for r, image in enumerate(x["image"].rows))


def test_captioning_reads_caption_folders_lazily(tmp_path):
    from pipelines.image_files import is_image_files
    from tasks.captioning import readers

    (tmp_path / "images").mkdir()
    lines = ["image,caption"]
    for i in range(3):
        write_png(tmp_path / "images" / f"{i}.png", np.full((6, 6), 40 * i))
        lines += [f"{i}.png,a gray square", f"{i}.png,a square"]
    (tmp_path / "captions.txt").write_text("\n".join(lines) + "\n")
    dataset = readers.load(str(tmp_path), image_size=16)
    assert is_image_files(dataset.x) and dataset.x.shape == (3, 16, 16, 3)
    assert [len(refs) for refs in dataset.y] == [2, 2, 2]


def _sources():
    """Four sources of 1-4 examples; example k holds the value k everywhere; reads are counted."""
    reads = []
    counts = np.array([2, 1, 4, 3])
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])

    def read(i):
        reads.append(i)
        values = np.arange(starts[i], starts[i] + counts[i])
        return (np.broadcast_to(values[:, None, None, None], (counts[i], 3, 3, 1)).astype(np.float32),
                np.broadcast_to(values[:, None, None], (counts[i], 3, 3)).astype(np.int32))

    return Streamed(read, counts, x_shape=(3, 3, 1), y_shape=(3, 3)), reads


def _values(dataset):
    order = []
    for x, y in dataset:
        assert np.array_equal(x.numpy()[..., 0], y.numpy())  # inputs stay with their targets
        order += [int(v) for v in y.numpy()[:, 0, 0]]
    return order


@pytest.mark.parametrize("cache", ["memory", "none", "disk"])
def test_streamed_sources_give_every_example_once_per_epoch(tmp_path, cache):
    stream, reads = _sources()
    assert len(stream) == len(stream.targets) == 10 and stream.nbytes == 10 * (9 * 4 + 9 * 4)
    evaluation = tf_dataset(stream, stream.targets, batch_size=4, training=False, cache=cache,
                            cache_dir=tmp_path / "eval")
    assert _values(evaluation) == list(range(10))  # in order when not training
    training = tf_dataset(stream, stream.targets, batch_size=4, training=True, seed=3, cache=cache,
                          cache_dir=tmp_path / "train")
    epochs = [_values(training) for _ in range(2)]
    assert all(sorted(epoch) == list(range(10)) for epoch in epochs)
    assert epochs[0] != epochs[1]  # reshuffled
    again = tf_dataset(stream, stream.targets, batch_size=4, training=True, seed=3, cache=cache,
                       cache_dir=tmp_path / "again")
    assert [_values(again) for _ in range(2)] == epochs  # the same seed, the same order


def test_streamed_sources_are_read_per_pass_not_held():
    stream, reads = _sources()
    dataset = tf_dataset(stream, stream.targets, batch_size=4, training=True, seed=0, cache="none")
    for _ in range(2):
        _values(dataset)
    assert sorted(reads) == sorted(list(range(4)) * 2)  # every source read once per epoch
    assert cache_mode("auto", stream) == "memory"  # small: read once, kept
