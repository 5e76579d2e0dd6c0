"""Captioning through the real CLI: shapes, tiny COCO and Flickr8k folders, real COCO captions,
bad input, and a fresh process captioning an image file with greedy and beam search."""

import json
import subprocess
import sys

import numpy as np
import pytest

from conftest import run_cli, serve_in_fresh_process, shared_dataset, write_png

pytestmark = pytest.mark.slow

TINY = ["--epochs", 1, "--batch-size", 8, "--quiet", "--set", "backbone_options.widths=[8,16]",
        "--set", "units=16", "--set", "embedding_dim=8", "--set", "attention_units=8",
        "--set", "feature_dim=8", "--set", "image_size=16", "--set", "min_count=1"]
CAPTIONS = ["a red square on the left", "a small red square", "red square near the edge"]


def _images(folder, n=6):
    rng = np.random.default_rng(0)
    for i in range(n):
        image = rng.integers(0, 80, (20, 24, 3))
        image[4:12, 2:10, 0] = 230
        write_png(folder / f"img_{i}.png", image)
    return [f"img_{i}.png" for i in range(n)]


def _coco(root, n=6):
    names = _images(root / "images", n)
    document = {"images": [{"id": i, "file_name": name} for i, name in enumerate(names)],
                "annotations": [{"id": 10 * i + k, "image_id": i, "caption": text}
                                for i in range(n) for k, text in enumerate(CAPTIONS)]}
    (root / "captions.json").write_text(json.dumps(document))
    return root


def _flickr(root, n=6):
    names = _images(root / "Images", n)
    lines = ["image,caption"] + [f"{name},{text}" for name in names for text in CAPTIONS]
    (root / "captions.txt").write_text("\n".join(lines) + "\n")
    return root


def _only_run(root):
    (run_dir,) = (root / "captioning").iterdir()
    return run_dir


def _one_error_line(capsys):
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert "Traceback" not in err[0]
    return err[0]


@pytest.fixture(scope="module")
def shapes_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("captioning")
    assert run_cli("train", "captioning", "--output", root, *TINY[:-2]) == 0
    return _only_run(root)


def test_shapes_run_writes_the_contract(shapes_run):
    metrics = json.loads((shapes_run / "metrics.json").read_text())
    assert set(metrics["metrics"]) == {"bleu1", "bleu2", "bleu3", "bleu4", "cider", "rouge_l"}
    assert metrics["baseline"]["name"] == "nearest_neighbour_retrieval"
    assert set(metrics["baseline"]["metrics"]) == set(metrics["metrics"])
    assert (shapes_run / "assets" / "vocabulary.txt").read_text().split("\n")[:4] == \
        ["[PAD]", "[UNK]", "<start>", "<end>"]
    for figure in ("gallery", "attention", "learning_curves"):
        assert (shapes_run / "figures" / f"{figure}.png").is_file()
    report = (shapes_run / "report.md").read_text()
    assert "greedy" in report and "beam 3" in report
    config = json.loads((shapes_run / "config.json").read_text())
    assert config["split"]["counts"] == {"train": 1440, "val": 160, "test": 400}  # images, not captions


def test_each_epoch_logs_the_validation_captions_bleu(shapes_run):
    """val_bleu4 in history.csv is BLEU-4 of the greedy captions of the validation images, scored
    as the report scores: recomputed here from the saved model (one epoch, so the saved weights
    are that epoch's)."""
    from pipelines import training, workflow

    history = training.read_history(shapes_run)
    assert {"val_bleu4", "val_loss", "seconds"} <= set(history.columns)
    assert history["val_bleu4"].iloc[-1] > 0  # some 4-grams right already: not a 0 == 0 comparison
    path, _, task, config, info, model = workflow.load_run(shapes_run)
    dataset, splits = workflow.run_data(path, task, config)
    score = task.epoch_scores(dataset.subset(splits.val), info, config)
    assert score(model)["bleu4"] == pytest.approx(history["val_bleu4"].iloc[-1], abs=1e-9)
    writer = task._writer(model, info)
    captions = [c.text for c in writer.greedy(task._images(dataset.subset(splits.val).x, info))]
    from tasks.captioning import scores

    values, _ = scores.caption_scores(list(dataset.subset(splits.val).y), captions)
    assert values["bleu4"] == pytest.approx(history["val_bleu4"].iloc[-1], abs=1e-9)


def test_a_fresh_process_captions_an_image_greedy_and_beam(shapes_run, tmp_path):
    from tasks.captioning import shapes

    images, _ = shapes.generate(n=1, seed=5)
    write_png(tmp_path / "shape.png", images[0] * 255)
    result = subprocess.run([sys.executable, "-m", "pipelines.cli", "predict", str(shapes_run),
                             str(tmp_path / "shape.png"), "--json", "--set", "beam_width=2"],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    record = json.loads(result.stdout.strip().splitlines()[-1])
    assert record["beam_width"] == 2 and isinstance(record["greedy"], str)
    assert record["caption"] == " ".join(record["words"][:-1])
    attention = np.asarray(record["attention"])
    assert attention.shape == (len(record["words"]), int(np.prod(record["attention_grid"])))
    np.testing.assert_allclose(attention.sum(axis=1), 1, atol=1e-3)


@pytest.fixture(scope="module")
def shape_files(tmp_path_factory):
    from tasks.captioning import shapes

    images, _ = shapes.generate(n=12, seed=7)
    folder = tmp_path_factory.mktemp("shape_files")
    for i, image in enumerate(images):
        write_png(folder / f"shape_{i}.png", np.round(image * 255))
    return sorted(folder.glob("*.png"))


def _project_captions(run_dir, files):
    from pipelines import workflow

    path, saved, task, config, info, model = workflow.load_run(run_dir)
    return [r["greedy"] for r in task.predict_inputs(model, files, info, {"beam_width": 1})], info


def test_the_saved_model_writes_the_projects_greedy_caption_from_file_bytes(shapes_run, shape_files,
                                                                          tmp_path):
    expected, info = _project_captions(shapes_run, shape_files)
    assert len(set(expected)) > 1 and len(set(map(len, expected))) > 1  # not one fixed sentence
    assert run_cli("export", shapes_run, "--format", "saved_model", "--out", tmp_path / "sm") == 0
    served = serve_in_fresh_process(tmp_path / "sm" / "1", "serving_default",
                                    {"image_bytes": {"files": [str(f) for f in shape_files]}}, tmp_path)
    assert [c.decode() for c in served["caption"]] == expected
    vocabulary = info.vocabulary
    for ids, length, caption in zip(served["token_ids"], served["length"], expected):
        assert " ".join(vocabulary[i] for i in ids[:length]) == caption and not ids[length:].any()
    metadata = json.loads((tmp_path / "sm" / "metadata.json").read_text())
    assert set(metadata["signatures"]) == {"serving_default", "caption_pixels", "encode",
                                           "encode_pixels", "decode_step"}


def test_tflite_encoder_and_decoder_step_reproduce_greedy_captions(shapes_run, shape_files, tmp_path):
    from ai_edge_litert.interpreter import Interpreter

    from pipelines import imaging
    from tasks.captioning import vocabulary as vocab

    expected, info = _project_captions(shapes_run, shape_files)
    assert run_cli("export", shapes_run, "--format", "tflite", "--out", tmp_path / "tfl") == 0
    interpreter = Interpreter(model_path=str(tmp_path / "tfl" / "1" / "model.tflite"))
    encode, step = (interpreter.get_signature_runner(n) for n in ("encode_pixels", "decode_step"))
    captions = []
    for path in shape_files:
        pixels = imaging.resize_batch(imaging.read_image(path, channels=3)[None], info.image_size)
        encoded = encode(pixels=pixels)
        state, token, words = encoded["state_h"], np.array([vocab.START_ID], np.int32), []
        for _ in range(info.max_length):
            out = step(features=encoded["features"], keys=encoded["keys"], tokens=token, state_h=state)
            token, state = out["log_probs"].argmax(axis=-1).astype(np.int32), out["state_h"]
            if token[0] == vocab.END_ID:
                break
            words.append(info.vocabulary[token[0]])
        captions.append(" ".join(words))
    assert captions == expected
    shipped = (tmp_path / "tfl" / "1" / "assets.extra" / "vocabulary.txt").read_text().split("\n")
    assert shipped[:len(info.vocabulary)] == info.vocabulary  # a client maps ids to words


@pytest.mark.parametrize("make", [_coco, _flickr], ids=["coco", "flickr8k"])
def test_tiny_folders_train_one_epoch_and_evaluate(make, tmp_path, capsys):
    data = make(tmp_path / "data")
    assert run_cli("train", "captioning", "--data", data, "--output", tmp_path / "runs", *TINY) == 0
    run_dir = _only_run(tmp_path / "runs")
    capsys.readouterr()
    assert run_cli("evaluate", run_dir, "--json") == 0
    document = json.loads(capsys.readouterr().out)
    assert document["n_samples"] >= 1 and 0 <= document["metrics"]["bleu1"] <= 1
    assert run_cli("evaluate", run_dir, "--data", data, "--json") == 0  # declares no split: all of it
    document = json.loads(capsys.readouterr().out)
    assert document["split"] == "all" and document["n_samples"] == 6


def test_bad_inputs_exit_2_naming_the_file(tmp_path, capsys):
    out = tmp_path / "runs"

    def train(data):
        return run_cli("train", "captioning", "--data", data, "--output", out, *TINY)

    missing = _coco(tmp_path / "missing")
    (missing / "images" / "img_2.png").unlink()
    assert train(missing) == 2
    line = _one_error_line(capsys)
    assert "captions.json" in line and "img_2.png" in line

    no_notes = tmp_path / "no_notes"
    _images(no_notes / "images")
    (no_notes / "captions.json").write_text(json.dumps({"images": []}))
    assert train(no_notes / "captions.json") == 2
    assert "annotations" in _one_error_line(capsys)

    empty = tmp_path / "empty"
    _images(empty / "Images")
    (empty / "captions.txt").write_text("")
    assert train(empty / "captions.txt") == 2
    assert "captions.txt" in _one_error_line(capsys)

    broken = _flickr(tmp_path / "broken")
    (broken / "Images" / "img_4.png").write_bytes(b"not a png at all")
    assert train(broken) == 2
    assert "img_4.png" in _one_error_line(capsys)
    assert not out.exists() or not any(out.rglob("model.keras"))


@pytest.mark.parametrize("caption_file", ["captions.json", "captions.txt"])
def test_real_coco_captions_train_through_both_formats(caption_file, tmp_path):
    data = shared_dataset("coco_captions_mini") / caption_file
    assert run_cli("train", "captioning", "--data", data, "--output", tmp_path, *TINY[:-2]) == 0
    run_dir = _only_run(tmp_path)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    config = json.loads((run_dir / "config.json").read_text())
    assert sum(config["split"]["counts"].values()) == 239
    assert metrics["n_samples"] == config["split"]["counts"]["test"]
    assert "1195 captions" in config["data_description"]


def test_an_image_classification_backbone_becomes_the_frozen_encoder(digits_run, tmp_path):
    """Digits (8x8 grayscale) backbone -> shapes captioner (RGB): weights adapted, then frozen."""
    assert run_cli("train", "captioning", "--output", tmp_path, "--backbone-from", digits_run,
                   "--freeze-backbone", *TINY[:-2]) == 0
    run_dir = _only_run(tmp_path)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["backbone"]["from_run"] == str(digits_run) and metrics["backbone"]["frozen"]
    import h5py

    def kernels(path):
        with h5py.File(path) as handle:
            found = []
            handle.visititems(lambda name, item: found.append(item[()]) if isinstance(item, h5py.Dataset)
                              and item.ndim == 4 and item.shape[2] > 3 else None)
            return found

    source, target = kernels(digits_run / "backbone.weights.h5"), kernels(run_dir / "backbone.weights.h5")
    assert source and len(source) == len(target)
    for a, b in zip(source, target):  # deeper convolutions unchanged by the frozen training
        np.testing.assert_array_equal(a, b)
