"""Text data: CSV/TSV, split files, class folders, and every bad input exits 2 with one line."""

import pytest

from conftest import run_cli
from tasks.text_classification import readers


def _one_error_line(capsys):
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert "Traceback" not in err[0]
    return err[0]


def _csv(path, rows, header="text,label", delimiter=","):
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [header] + [delimiter.join(r) for r in rows]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


ROWS = [("free prize now", "spam"), ("see you at lunch", "ham"), ("win cash today", "spam"),
        ("ok thanks", "ham")]


def test_csv_with_empty_texts_dropped_and_counted(tmp_path):
    path = _csv(tmp_path / "a.csv", ROWS + [('""', "ham"), ("  ", "spam")])
    data = readers.load(str(path))
    assert list(data.x) == [r[0] for r in ROWS]
    assert data.info["class_names"] == ["ham", "spam"] and list(data.y) == [1, 0, 1, 0]
    assert data.notes == ["2 row(s) with empty text were dropped."]
    assert data.declared_splits is None


def test_tsv_and_sniffed_delimiters_and_custom_columns(tmp_path):
    tsv = _csv(tmp_path / "a.tsv", ROWS, header="text\tlabel", delimiter="\t")
    assert len(readers.load(str(tsv))) == 4
    semi = _csv(tmp_path / "b.csv", [(t, l) for t, l in ROWS], header="body;kind", delimiter=";")
    data = readers.load(str(semi), text_column="body", label_column="kind")
    assert list(data.x)[0] == "free prize now"
    forced = readers.load(str(semi), text_column="body", label_column="kind", delimiter=";")
    assert len(forced) == 4


def test_split_column_and_split_files_are_honoured(tmp_path):
    rows = [(t, l, s) for (t, l), s in zip(ROWS, ("train", "train", "test", "test"))]
    data = readers.load(str(_csv(tmp_path / "s.csv", [(t, l, s) for t, l, s in rows],
                                 header="text,label,split")))
    assert data.declared_splits["test"].tolist() == [2, 3]
    folder = tmp_path / "folder"
    _csv(folder / "train.csv", ROWS)
    _csv(folder / "test.csv", ROWS[:2])
    _csv(folder / "val.csv", ROWS[2:])
    data = readers.load(str(folder))
    assert {k: len(v) for k, v in data.declared_splits.items()} == {"train": 4, "val": 2, "test": 2}


def test_class_folders_of_txt_files(tmp_path):
    for i, (text, label) in enumerate(ROWS):
        (tmp_path / "t" / label).mkdir(parents=True, exist_ok=True)
        (tmp_path / "t" / label / f"{i}.txt").write_text(text)
    (tmp_path / "t" / "ham" / "empty.txt").write_text("\n")
    data = readers.load(str(tmp_path / "t"))
    assert len(data) == 4 and data.info["class_names"] == ["ham", "spam"]
    assert data.notes == ["1 row(s) with empty text were dropped."]


@pytest.fixture
def out(tmp_path):
    return tmp_path / "runs"


def _train(*args):
    return run_cli("train", "text-classification", *args)


def test_encoding_problem_names_file_and_line(capsys, out, tmp_path):
    path = tmp_path / "bad.csv"
    path.write_bytes(b"text,label\nhello,ham\ncaf\xe9 prize,spam\n")
    assert _train("--data", path, "--output", out) == 2
    line = _one_error_line(capsys)
    assert "bad.csv, line 3: not valid utf-8" in line and "encoding=" in line
    assert not out.exists()


def test_single_class_is_refused(capsys, out, tmp_path):
    path = _csv(tmp_path / "one.csv", [("a b", "ham"), ("c d", "ham")])
    assert _train("--data", path, "--output", out) == 2
    assert "only one class (ham)" in _one_error_line(capsys)


def test_missing_label_column_is_refused(capsys, out, tmp_path):
    path = _csv(tmp_path / "cols.csv", [("a b", "ham")], header="text,category")
    assert _train("--data", path, "--output", out) == 2
    line = _one_error_line(capsys)
    assert "missing column(s) label" in line and "found text, category" in line


def test_missing_path_and_half_a_split_folder(capsys, out, tmp_path):
    assert _train("--data", tmp_path / "nope.csv", "--output", out) == 2
    assert "no such file or folder" in _one_error_line(capsys)
    _csv(tmp_path / "half" / "train.csv", ROWS)
    assert _train("--data", tmp_path / "half", "--output", out) == 2
    assert "needs both train.csv and test.csv" in _one_error_line(capsys)


def test_image_backbone_for_text_is_refused(capsys, out):
    assert _train("--backbone", "resnet18", "--output", out) == 2
    assert "image backbone" in _one_error_line(capsys)


def test_bad_tokenizer_and_word_vectors_options(capsys, out, tmp_path):
    assert _train("--set", "tokenizer=bpe", "--output", out) == 2
    assert "tokenizer" in _one_error_line(capsys)
    assert _train("--set", f"word_vectors={tmp_path / 'none.txt'}", "--output", out) == 2
    assert "no such file" in _one_error_line(capsys)


def test_unknown_builtin(capsys, out):
    assert _train("--data", "builtin:imdb", "--output", out) == 2
    assert "builtin:sms_spam" in _one_error_line(capsys)


@pytest.mark.parametrize("separator", ["\u0085", "\u2028", "\u2029", "\x0c"])
def test_unicode_line_separators_inside_a_field_are_text(tmp_path, separator):
    """str.splitlines() breaks at these; CSV does not, so a scraped review keeps its label."""
    rows = ROWS + [(f"a great film{separator}really", "ham")]
    data = readers.load(str(_csv(tmp_path / "a.csv", rows)))
    assert len(data) == 5 and data.x[-1] == f"a great film{separator}really"


def test_unicode_line_separators_inside_a_caption_are_text(tmp_path):
    from tasks.captioning.readers import read_captions_txt

    from conftest import write_png

    for name in ("a.png", "b.png"):
        write_png(tmp_path / name, [[0, 255], [255, 0]])
    path = tmp_path / "captions.txt"
    path.write_text("image,caption\na.png,a dog\u0085running\nb.png,a cat\n", encoding="utf-8")
    pairs, _ = read_captions_txt(path)
    assert [len(captions) for _, captions in pairs.values()] == [1, 1]
    assert pairs["a.png"][1] == ["a dog\u0085running"]


def test_a_file_of_one_huge_line_is_refused_without_holding_it(tmp_path):
    """Issue 17: a file without row ends (here 60 MB, one line) is refused at 10 million
    characters; memory stays well below the file's size."""
    import tracemalloc

    from pipelines.errors import UserError

    path = tmp_path / "one_line.csv"
    with path.open("w") as handle:
        handle.write("text,label\n")
        for _ in range(60):
            handle.write("a" * 1_000_000)
    tracemalloc.start()
    try:
        with pytest.raises(UserError, match=r"one_line.csv, line 2: longer than 10,000,000 characters"):
            readers.load(str(path))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 45_000_000, f"peak {peak:,} bytes"
