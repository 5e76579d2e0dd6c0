"""Text classification through the real CLI: CSV and class-folder runs predict from raw strings."""

import json
import subprocess
import sys

from pathlib import Path

import numpy as np
import pytest

from conftest import evaluate_document, run_cli, serve_in_fresh_process, shared_dataset

pytestmark = pytest.mark.slow

TINY = ["--epochs", 12, "--batch-size", 16, "--set", "backbone_options.embedding_dim=16",
        "--set", "backbone_options.filters=8", "--learning-rate", 0.01, "--quiet"]
CHAR = ["--set", "backbone_options.channels=word+char", "--set", "backbone_options.char={dim=8}"]
SPAM = ["free prize waiting call now", "win cash now txt win", "urgent claim your free prize",
        "you won a cash prize call", "free entry win tickets now", "claim free cash today"]
HAM = ["see you at lunch later", "ok i will call you tonight", "are we still on for dinner",
       "thanks for the lift home", "running late sorry see you soon", "can you pick up milk"]


def _messages(seed=0, n=60):
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        label = "spam" if i % 2 else "ham"
        words = (SPAM if label == "spam" else HAM)[rng.integers(6)].split()
        rng.shuffle(words)
        rows.append((" ".join(words) + f" {rng.integers(100)}", label))
    return rows


@pytest.fixture(scope="module")
def csv_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("text")
    lines = ["text,label"] + [f"{t},{l}" for t, l in _messages()] + [",ham"]
    (root / "sms.csv").write_text("\n".join(lines) + "\n")
    assert run_cli("train", "text-classification", "--data", root / "sms.csv", "--output",
                   root / "runs", *TINY, *CHAR) == 0
    (run_dir,) = (root / "runs" / "text-classification").iterdir()
    return run_dir


def _predict_in_fresh_process(run_dir, *texts):
    result = subprocess.run([sys.executable, "-m", "pipelines.cli", "predict", str(run_dir), *texts,
                             "--json"], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    return [json.loads(line) for line in result.stdout.strip().splitlines()]


def test_csv_run_learns_and_writes_the_contract(csv_run):
    for name in ("config.json", "model.keras", "backbone.weights.h5", "backbone.json",
                 "history.csv", "metrics.json", "report.html", "report.md"):
        assert (csv_run / name).exists(), name
    metrics = json.loads((csv_run / "metrics.json").read_text())
    assert set(metrics["metrics"]) == {"accuracy", "macro_f1", "positive_f1", "roc_auc"}
    assert metrics["metrics"]["accuracy"] >= 0.9
    assert metrics["baseline"]["name"] == "tfidf_word_char_logistic_regression"
    vocabulary = (csv_run / "assets" / "vocabulary.txt").read_text().split("\n")
    assert vocabulary[:2] == ["[PAD]", "[UNK]"] and "prize" in vocabulary
    config = json.loads((csv_run / "config.json").read_text())
    assert "vocabulary" not in config["preprocessing"]
    assert config["preprocessing"]["vocabulary_size"] == len(vocabulary) - 1
    backbone = json.loads((csv_run / "backbone.json").read_text())
    assert backbone["modality"] == "text" and backbone["options"]["vocab_size"] == len(vocabulary) - 1


def test_report_explains_with_ngrams_and_highlights(csv_run):
    report = (csv_run / "report.md").read_text()
    assert "1 row(s) with empty text were dropped." in report
    assert "Top n-grams per class" in report and "Misclassified test texts" in report
    html = (csv_run / "report.html").read_text()
    assert "class='highlight'" in html and "background:rgba(" in html
    assert html.count("data:image/png;base64,") >= 4  # confusion x2, ROC, PR (+ curves)
    assert "<script" not in html


def test_csv_run_predicts_raw_strings_in_a_fresh_process(csv_run):
    records = _predict_in_fresh_process(csv_run, "claim your free cash prize now",
                                        "see you at dinner tonight")
    assert [r["class"] for r in records] == ["spam", "ham"]
    assert records[0]["input"] == "claim your free cash prize now"
    assert abs(sum(t["probability"] for t in records[0]["top"]) - 1) < 1e-4
    assert records[0]["answered_by"].startswith("the network (text_cnn channels=word+char, ")


def test_predict_says_when_the_baseline_did_better(csv_run, tmp_path, capsys):
    import shutil

    run = Path(shutil.copytree(csv_run, tmp_path / csv_run.name))
    document = json.loads((run / "metrics.json").read_text())
    assert document["comparison"]["winner"] in ("network", "baseline", "mixed", "tie")
    document["comparison"] = {"winner": "baseline", "network_better": [], "baseline_better": ["accuracy"],
                              "sentence": "The baseline (tfidf) beats the network on accuracy (0.9 vs 1.0)."}
    (run / "metrics.json").write_text(json.dumps(document))
    capsys.readouterr()
    assert run_cli("predict", run, "free prize", "--json") == 0
    captured = capsys.readouterr()
    (record,) = [json.loads(line) for line in captured.out.splitlines()]
    assert record["answered_by"].startswith("the network (text_cnn") and run.name in record["answered_by"]
    assert captured.err.strip().splitlines()[-1] == (
        f"Answered by {record['answered_by']}. On the run's test split, "
        "the baseline (tfidf) beats the network on accuracy (0.9 vs 1.0).")


MISSPELT = ["prizze", "fre", "cassh", "claimm", "urgnt", "entryy"]  # one edit from a spam word
UNRELATED = ["qwxjvz", "zyq", "bvkkt", "plomph", "yxxg", "gvd"]  # unseen, sharing nothing


def test_the_char_channel_moves_a_misspelt_spam_word_toward_spam(csv_run):
    """Each word below is unseen in training, so the word channel reads all of them as [UNK].
    A misspelling keeps most of its word's character n-grams, so the char channel pulls the
    message toward spam, where an unrelated unseen word does not."""
    from pipelines import workflow

    path, saved, task, config, info, model = workflow.load_run(csv_run)
    assert not set(MISSPELT + UNRELATED) & set(info.vocabulary)
    spam = info.class_names.index("spam")
    proba = model.predict(np.asarray([f"{w} ok" for w in MISSPELT + UNRELATED], dtype=object),
                          verbose=0)[:, spam]
    odds = np.log(proba / (1 - proba))
    misspelt, unrelated = odds[:len(MISSPELT)], odds[len(MISSPELT):]
    assert misspelt.mean() > unrelated.mean() + 0.5, (misspelt, unrelated)
    assert np.median(misspelt) > unrelated.max(), (misspelt, unrelated)


def test_class_folder_run_predicts_raw_strings(tmp_path):
    for i, (text, label) in enumerate(_messages(seed=1)):
        folder = tmp_path / "data" / label
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{i}.txt").write_text(text)
    assert run_cli("train", "text-classification", "--data", tmp_path / "data", "--output",
                   tmp_path / "runs", "--backbone", "dilated_cnn", *TINY) == 0
    (run_dir,) = (tmp_path / "runs" / "text-classification").iterdir()
    records = _predict_in_fresh_process(run_dir, "urgent free prize call now", "ok see you at lunch")
    assert [r["class"] for r in records] == ["spam", "ham"]


def test_word_vectors_are_loaded_and_counted(tmp_path):
    rng = np.random.default_rng(0)
    words = sorted({w for t, _ in _messages() for w in t.split() if not w.isdigit()})
    known = words[: len(words) // 2]
    (tmp_path / "vectors.txt").write_text(
        "".join(f"{w} {' '.join(f'{v:.3f}' for v in rng.normal(size=6))}\n" for w in known))
    lines = ["text,label"] + [f"{t},{l}" for t, l in _messages()]
    (tmp_path / "sms.csv").write_text("\n".join(lines) + "\n")
    assert run_cli("train", "text-classification", "--data", tmp_path / "sms.csv", "--output",
                   tmp_path / "runs", *TINY, "--set", f"word_vectors={tmp_path / 'vectors.txt'}",
                   "--set", "freeze_word_vectors=true") == 0
    (run_dir,) = (tmp_path / "runs" / "text-classification").iterdir()
    config = json.loads((run_dir / "config.json").read_text())
    vectors = config["preprocessing"]["word_vectors"]
    assert vectors["dim"] == 6 and vectors["found"] == len(known) and vectors["missing"] > 0
    assert vectors["static"] is True
    assert f"6-d vectors for {len(known)} of" in (run_dir / "report.md").read_text()
    import keras

    model = keras.models.load_model(run_dir / "model.keras", safe_mode=True)
    table = model.get_layer("backbone").get_layer("embedding").get_weights()[0]
    vocabulary = (run_dir / "assets" / "vocabulary.txt").read_text().split("\n")
    first = known[0]
    expected = [float(v) for v in (tmp_path / "vectors.txt").read_text().splitlines()[0].split()[1:]]
    np.testing.assert_allclose(table[vocabulary.index(first)], expected, atol=1e-3)


def test_sms_spam_builtin_ships_with_the_package():
    from pipelines.data import SHIPPED_DATA
    from tasks.text_classification import readers

    data = readers.load("builtin:sms_spam")
    assert len(data) == 5574 and data.info["class_names"] == ["ham", "spam"]
    assert (SHIPPED_DATA / "sms_spam" / "SOURCE.txt").read_text().count("CC BY 4.0")


def test_trec_split_is_honoured():
    from tasks.text_classification import readers

    data = readers.load(str(shared_dataset("trec_questions")))
    assert len(data.declared_splits["test"]) == 500 and len(data.info["class_names"]) == 6


def test_export_serves_raw_strings_with_class_names_and_tflite_is_refused(csv_run, tmp_path, capsys):
    from pipelines import workflow

    texts = ["claim your free cash prize now", "see you at lunch tomorrow", "WIN a FREE prize!!",
             "", "ok thanks, call me later 😀"]
    assert run_cli("export", csv_run, "--format", "saved_model", "--out", tmp_path / "sm") == 0
    served = serve_in_fresh_process(tmp_path / "sm" / "1", "serving_default",
                                    {"text": {"strings": texts}}, tmp_path, imports=["tensorflow_text"])
    path, saved, task, config, info, model = workflow.load_run(csv_run)
    proba = model.predict(np.asarray(texts, dtype=object), verbose=0)
    np.testing.assert_allclose(served["probabilities"], proba, atol=1e-4)
    assert [n.decode() for n in served["class_names"]] == [info.class_names[i] for i in proba.argmax(1)]
    assert served["class_names"][0] == b"spam" and served["class_names"][1] == b"ham"
    capsys.readouterr()
    assert run_cli("export", csv_run, "--format", "tflite", "--out", tmp_path / "tfl") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "tensorflow-text" in err[0]
    assert not (tmp_path / "tfl").exists()


def test_evaluate_data_scores_a_table_whole_unless_it_has_a_split_column(csv_run, tmp_path, capsys):
    messages = _messages()[:20]
    (tmp_path / "plain.csv").write_text("text,label\n" + "".join(f"{t},{l}\n" for t, l in messages))
    document = evaluate_document(capsys, csv_run, "--data", tmp_path / "plain.csv")
    assert document["split"] == "all" and document["n_samples"] == 20
    rows = "".join(f"{t},{l},{'test' if i < 5 else 'train'}\n" for i, (t, l) in enumerate(messages))
    (tmp_path / "split.csv").write_text("text,label,split\n" + rows)
    document = evaluate_document(capsys, csv_run, "--data", tmp_path / "split.csv")
    assert document["split"] == "test" and document["n_samples"] == 5


def test_evaluate_a_text_run_again(csv_run, capsys):
    assert run_cli("evaluate", csv_run, "--json") == 0
    document = json.loads(capsys.readouterr().out)
    saved = json.loads((csv_run / "metrics.json").read_text())
    assert document["n_samples"] == saved["n_samples"]
    assert document["metrics"]["accuracy"] == pytest.approx(saved["metrics"]["accuracy"], abs=1e-6)


@pytest.mark.parametrize("how", ["backbone-from", "exported"])
def test_backbone_from_a_text_run_matches_embedding_rows_by_token(csv_run, tmp_path, how):
    """The new task keeps its own vocabulary; every token it shares with the source run starts
    from the source's embedding row, exactly, and the others are counted as new. The same holds
    for a backbone exported with ``export-backbone`` (its vocabulary travels beside it)."""
    lines = ["text,label"] + [f"{t} zebra quokka,{l}" for t, l in _messages(seed=2, n=40)]
    (tmp_path / "more.csv").write_text("\n".join(lines) + "\n")
    source = ["--backbone-from", csv_run]
    if how == "exported":
        assert run_cli("export-backbone", csv_run, "--out", tmp_path / "sms.weights.h5") == 0
        assert (tmp_path / "sms.vocabulary.txt").read_text() == (csv_run / "assets" / "vocabulary.txt").read_text()
        source = ["--backbone-weights", tmp_path / "sms.weights.h5"]
    assert run_cli("train", "text-classification", "--data", tmp_path / "more.csv", "--output",
                   tmp_path / "runs", *source, "--epochs", 1, "--quiet",
                   "--set", "learning_rate=1e-9") == 0
    (child,) = (tmp_path / "runs" / "text-classification").iterdir()
    mine = (child / "assets" / "vocabulary.txt").read_text().split("\n")[:-1]
    theirs = (csv_run / "assets" / "vocabulary.txt").read_text().split("\n")[:-1]
    assert "zebra" in mine and "zebra" not in theirs
    config = json.loads((child / "config.json").read_text())
    shared = [t for t in mine if t in theirs]
    assert Path(config["lineage"]["run_dir"]).resolve() == csv_run.resolve()
    assert config["lineage"]["vocabulary"] == {"matched": len(shared), "new": len(mine) - len(shared)}
    assert "carried over from the source vocabulary" in (child / "report.md").read_text()
    import h5py

    def table(run_dir):
        with h5py.File(run_dir / "backbone.weights.h5") as handle:
            found = []
            handle.visititems(lambda name, item: found.append(item[()]) if isinstance(item, h5py.Dataset)
                              and name.split("/")[-3:-2] == ["embedding"] else None)
            return found[0]

    before, after = table(csv_run), table(child)
    assert after.shape[0] == len(mine)
    for token in shared:
        np.testing.assert_allclose(after[mine.index(token)], before[theirs.index(token)], atol=1e-6)
