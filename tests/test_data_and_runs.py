import os

import numpy as np
import pytest

from pipelines import runs
from pipelines.data import Splits, make_splits
from pipelines.errors import UserError


def test_splits_are_stratified_seeded_and_disjoint():
    labels = np.repeat(np.arange(4), [50, 30, 15, 5])
    a = make_splits(100, labels, test_fraction=0.2, val_fraction=0.1, seed=0)
    b = make_splits(100, labels, test_fraction=0.2, val_fraction=0.1, seed=0)
    c = make_splits(100, labels, test_fraction=0.2, val_fraction=0.1, seed=1)
    assert np.array_equal(a.test, b.test) and not np.array_equal(a.test, c.test)
    assert len(a.test) == 20 and len(a.val) == 8 and len(a.train) == 72
    everything = np.concatenate([a.train, a.val, a.test])
    assert len(set(everything)) == 100
    assert np.bincount(labels[a.test], minlength=4).tolist() == [10, 6, 3, 1]
    assert "stratified" in a.method
    assert Splits.from_json(a.to_json()).test.tolist() == a.test.tolist()


def test_declared_splits_are_honoured_and_outrank_a_made_one():
    labels = np.arange(30) % 2
    declared = {"train": np.arange(20), "test": np.arange(20, 30)}
    made = {"train": np.arange(10, 30), "val": np.arange(5, 10), "test": np.arange(5)}
    splits = make_splits(30, labels, test_fraction=0.5, val_fraction=0.2, seed=0, declared=declared,
                         made=made)
    assert splits.test.tolist() == list(range(20, 30))
    assert set(splits.train) | set(splits.val) == set(range(20))
    assert "declared by the data" in splits.method
    by_reader = make_splits(30, labels, test_fraction=0.5, val_fraction=0.2, seed=0, made=made)
    assert by_reader.test.tolist() == list(range(5)) and by_reader.val.tolist() == list(range(5, 10))
    assert "made by the task's reader" in by_reader.method


def test_a_subset_carries_no_split_of_the_whole():
    from pipelines.data import Dataset

    whole = Dataset(np.arange(6), np.arange(6) % 2, "x", "six",
                    declared_splits={"train": [0, 1, 2], "test": [3, 4, 5]},
                    made_splits={"train": [0], "test": [1]})
    part = whole.subset([3, 4])
    assert part.declared_splits is None and part.made_splits is None and part.x.tolist() == [3, 4]
    assert whole.training_splits() is whole.declared_splits


def test_train_fraction_keeps_the_test_split_and_stratifies_the_rest():
    labels = np.repeat(np.arange(2), [160, 40])
    full = make_splits(200, labels, test_fraction=0.2, val_fraction=0.1, seed=0)
    part = make_splits(200, labels, test_fraction=0.2, val_fraction=0.1, seed=0, train_fraction=0.25)
    assert part.test.tolist() == full.test.tolist()
    assert set(part.train) <= set(full.train) and set(part.val) <= set(full.val)
    assert len(part.train) == 36 and np.bincount(labels[part.train]).tolist() == [29, 7]
    assert "25% of train and validation kept" in part.method
    tiny = make_splits(10, None, test_fraction=0.2, val_fraction=0.1, seed=0, train_fraction=0.5)
    assert len(tiny.val) == 1 and len(tiny.train) == 4


def test_too_few_examples():
    with pytest.raises(UserError, match="at least 3"):
        make_splits(2, [0, 1], test_fraction=0.2, val_fraction=0.1, seed=0)


def test_run_dirs_are_never_reused(tmp_path):
    first = runs.create_run_dir(tmp_path, "image-classification")
    second = runs.create_run_dir(tmp_path, "image-classification")
    assert first != second and first.is_dir() and second.is_dir()


def test_atomic_write_replaces_and_leaves_no_temporaries(tmp_path):
    target = tmp_path / "metrics.json"
    runs.write_json(target, {"a": np.float32(0.5), "b": np.arange(2)})
    runs.write_json(target, {"a": 1})
    assert target.read_text().strip() == '{\n  "a": 1\n}'
    assert os.listdir(tmp_path) == ["metrics.json"]


def test_atomic_write_keeps_old_file_when_writing_fails(tmp_path):
    target = tmp_path / "metrics.json"
    runs.write_json(target, {"a": 1})
    with pytest.raises(TypeError):
        runs.write_json(target, {"a": object()})
    assert '"a": 1' in target.read_text()
    assert os.listdir(tmp_path) == ["metrics.json"]


def test_runs_table_keeps_the_end_of_long_data_paths():
    from pipelines.cli import _clip

    assert _clip("builtin:digits", 25) == "builtin:digits"
    clipped = _clip("../shared/datasets/msd_hippocampus", 25)
    assert len(clipped) == 25 and clipped.endswith("msd_hippocampus") and clipped.startswith("…")


def test_a_training_in_process_keeps_no_model_alive(tmp_path):
    """A notebook or service calling workflow.train again and again must not pile up models:
    once a run has finished, nothing of the pipeline's still refers to the network it trained
    (TensorFlow itself keeps each traced step's graph; see benchmarks/RESULTS.md, Soak)."""
    import gc

    import keras

    from pipelines import workflow

    def live_models():
        gc.collect()
        return {id(o) for o in gc.get_objects() if isinstance(o, keras.Model)}

    before = live_models()
    config = workflow.resolve_config(workflow.get_task("image-classification"), sets={
        "epochs": 1, "train_fraction": 0.2, "backbone_options": {"widths": [4, 8]}, "output": str(tmp_path)})
    run_dir = workflow.train("image-classification", config=config, quiet=True, echo=lambda *_: None)
    assert (run_dir / runs.MODEL_FILE).is_file()
    keras.backend.clear_session()
    assert live_models() - before == set()
