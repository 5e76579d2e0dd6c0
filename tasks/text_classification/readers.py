"""Text-classification data: CSV/TSV files, train/val/test CSV folders, class folders of .txt files.

Every reader returns a :class:`pipelines.data.Dataset` whose ``x`` is an object array of strings
and ``y`` integer class ids, with ``info["class_names"]``. Rows with empty text are dropped and
counted in ``notes`` (the report shows them); decoding problems name the file and line.
"""

import csv
from pathlib import Path

import numpy as np

from pipelines.data import (MAX_FIELD_CHARS, SPLIT_NAMES, Dataset, bounded_lines, builtin_name,
                            decoding_failed, open_text, read_text, require_columns,
                            require_two_classes, shipped_path, split_indices)
from pipelines.errors import UserError

BUILTIN = {"sms_spam": ("sms_spam/sms_spam.csv",
                        "UCI SMS Spam Collection v.1 (5,574 messages, ham/spam, CC BY 4.0)")}
TABLE_SUFFIXES = (".csv", ".tsv", ".txt")


def load(spec, *, text_column="text", label_column="label", delimiter=None, encoding="utf-8"):
    if spec.startswith("builtin:"):
        name = builtin_name(spec, BUILTIN, "text-classification")
        relative, description = BUILTIN[name]
        path = shipped_path(spec, relative)
        dataset = load_table(path, text_column="text", label_column="label")
        dataset.spec, dataset.description = spec, f"{description}; {dataset.description}"
        return dataset
    path = Path(spec)
    if not path.exists():
        raise UserError(f"--data {spec}: no such file or folder")
    options = dict(text_column=text_column, label_column=label_column, delimiter=delimiter,
                   encoding=encoding)
    if path.is_dir():
        split_files = {s: _split_file(path, s) for s in SPLIT_NAMES}
        if split_files["train"] or split_files["test"]:
            return load_split_tables(path, split_files, **options)
        return load_class_folders(path, encoding=encoding)
    if path.suffix.lower() not in TABLE_SUFFIXES:
        raise UserError(f"--data {spec}: expected a .csv/.tsv file, a folder with train.csv + "
                        f"test.csv, or a folder with one sub-folder of .txt files per class")
    return load_table(path, **options)


def sniff_delimiter(path, text, delimiter=None):
    if delimiter:
        return {"\\t": "\t", "tab": "\t"}.get(delimiter, delimiter)
    if Path(path).suffix.lower() == ".tsv":
        return "\t"
    try:
        return csv.Sniffer().sniff(text[:20000], delimiters=",\t;|").delimiter
    except csv.Error:
        return ","


def read_rows(path, *, text_column, label_column, delimiter=None, encoding="utf-8"):
    """[(line, text, label, split or None)], and the number of rows dropped for empty text.

    The file is streamed through :mod:`csv` (``newline=""``): str.splitlines() would also break
    at U+0085, U+2028, U+2029 and form feeds, which are text inside a field, not line ends; and
    a huge file, or one huge line, is never held whole (see :func:`bounded_lines`)."""
    try:
        with open_text(path, encoding) as handle:
            head = handle.read(20000)
            handle.seek(0)
            reader = csv.DictReader(bounded_lines(handle, path),
                                    delimiter=sniff_delimiter(path, head, delimiter))
            previous = csv.field_size_limit(MAX_FIELD_CHARS)
            try:
                return _rows(path, reader, text_column, label_column)
            finally:
                csv.field_size_limit(previous)
    except UnicodeDecodeError:
        raise decoding_failed(path, encoding) from None


def _rows(path, reader, text_column, label_column):
    rows, empty = [], 0
    try:
        require_columns(path, reader.fieldnames, (text_column, label_column),
                        "set text_column/label_column with --set, or the delimiter with "
                        "--set delimiter=...")
        for row in reader:
            body = (row.get(text_column) or "").strip()
            label = (row.get(label_column) or "").strip()
            if not body:
                empty += 1
                continue
            if not label:
                raise UserError(f"{path}, line {reader.line_num}: empty {label_column}")
            split = (row.get("split") or "").strip().lower() or None
            if split and split not in SPLIT_NAMES:
                raise UserError(f"{path}, line {reader.line_num}: split must be train, val or "
                                f"test, got {split!r}")
            rows.append((reader.line_num, body, label, split))
    except csv.Error as error:
        if "field larger than field limit" in str(error):
            raise UserError(f"{path}, line {reader.line_num}: a field longer than "
                            f"{MAX_FIELD_CHARS:,} characters (an unclosed quote?)") from None
        raise UserError(f"{path}, line {reader.line_num}: malformed CSV ({error})") from None
    return rows, empty


def _dataset(texts, label_text, split_of, spec, description, empty, where, given=True):
    if not texts:
        raise UserError(f"{where}: no rows with text")
    class_names = sorted(set(label_text))
    labels = np.array([class_names.index(t) for t in label_text])
    require_two_classes(labels, class_names, where)
    notes = [f"{empty} row(s) with empty text were dropped."] if empty else []
    splits = split_indices(split_of) if given and all(split_of) else None
    return Dataset(np.array(texts, dtype=object), labels, spec,
                   f"{description}: {len(texts)} texts, {len(class_names)} classes",
                   info={"class_names": class_names}, declared_splits=splits, notes=notes)


def load_table(path, **options):
    """One CSV/TSV with text and label columns (optional ``split`` column honoured)."""
    rows, empty = read_rows(path, **options)
    return _dataset([r[1] for r in rows], [r[2] for r in rows], [r[3] for r in rows], str(path),
                    f"{Path(path).name}", empty, path)


def _split_file(root, split):
    for suffix in (".csv", ".tsv"):
        if (root / f"{split}{suffix}").is_file():
            return root / f"{split}{suffix}"
    return None


def load_split_tables(root, files, **options):
    """``train.csv`` + ``test.csv`` (+ ``val.csv``): the split is the data's own."""
    if not files["train"] or not files["test"]:
        have = [s for s, f in files.items() if f]
        raise UserError(f"{root}: has {', '.join(have)}.csv but needs both train.csv and test.csv")
    texts, labels, split_of, empty = [], [], [], 0
    for split in SPLIT_NAMES:
        if files[split]:
            rows, dropped = read_rows(files[split], **options)
            texts += [r[1] for r in rows]
            labels += [r[2] for r in rows]
            split_of += [split] * len(rows)
            empty += dropped
    return _dataset(texts, labels, split_of, str(root), f"split files in {root}", empty, root)


def load_class_folders(root, *, encoding="utf-8"):
    """``root/<class>/*.txt``: one text per file."""
    folders = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not folders:
        raise UserError(f"{root}: empty folder: expected a CSV/TSV, train.csv + test.csv, or one "
                        f"sub-folder of .txt files per class")
    texts, labels, empty = [], [], 0
    for folder in folders:
        for file in sorted(folder.glob("*.txt")):
            body = read_text(file, encoding).strip()
            if body:
                texts.append(body)
                labels.append(folder.name)
            else:
                empty += 1
    if not texts and not empty:
        raise UserError(f"{root}: the class folders hold no .txt files")
    return _dataset(texts, labels, [None] * len(texts), str(root), f"class folders at {root}",
                    empty, root, given=False)
