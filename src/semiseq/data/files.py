"""A user's own labeled data (CSV, TSV, JSON Lines or one folder per class) read as ``Texts``."""

from __future__ import annotations

import codecs
import csv
import io
import json
import logging
import os
from pathlib import Path

import numpy as np

from semiseq import SemiseqError
from semiseq.data.texts import Texts

log = logging.getLogger(__name__)

FORMATS = ("csv", "tsv", "jsonl", "folders")
SUFFIXES = {".csv": "csv", ".tsv": "tsv", ".jsonl": "jsonl", ".json": "jsonl"}

# (text, label, where it came from): `where` is "file, line N" or a document's path, for error messages.
Record = tuple[str, str | int, str]


def load(train: str, test: str | None = None, unlabeled: str | list[str] | None = None, format: str = "auto",
         text_column: str = "text", label_column: str = "label", test_fraction: float = 0.1, seed: int = 0,
         encoding: str = "utf-8", name: str = "files") -> Texts:
    """Read labeled ``train`` (and ``test``, else hold out ``test_fraction`` of train) plus ``unlabeled`` texts.

    ``format`` is csv, tsv, jsonl, folders (one sub-folder of text files per class) or auto (from the path).
    Class ids index the sorted train class names. Bad input raises ``SemiseqError``."""
    enc = _codec(encoding)
    columns = (text_column, label_column)
    train_path = _existing(train, "train")
    train_records = _labeled(train_path, _format(train_path, format), columns, enc, encoding, "train")
    test_path = None if test is None else _existing(test, "test")
    test_records = [] if test_path is None else _labeled(test_path, _format(test_path, format), columns, enc,
                                                          encoding, "test")

    # Integer labels (JSONL) sort numerically; anything mixed is compared as strings.
    all_int = all(isinstance(r[1], int) for r in train_records + test_records)
    key = (lambda label: label) if all_int else str
    classes = sorted({key(r[1]) for r in train_records})
    if len(classes) < 2:
        raise SemiseqError(f"{train_path} has {len(classes)} class(es) {[str(c) for c in classes]} among its "
                           f"{len(train_records)} non-empty examples, but a classifier needs at least 2; check "
                           f"label_column={label_column!r} and that the file holds every class")
    index = {c: i for i, c in enumerate(classes)}
    for _, label, where in test_records:
        if key(label) not in index:
            raise SemiseqError(f"{where}: test label {label!r} does not occur in train {train_path} (classes "
                               f"{[str(c) for c in classes]}); fix the label or add examples of it to train")

    if test_path is None:
        if not 0 < test_fraction < 1:
            raise SemiseqError(f"test_fraction={test_fraction} must lie strictly between 0 and 1 (e.g. 0.1), or "
                               f"pass a test file with test=")
        n = len(train_records)  # >= 2, since there are >= 2 classes
        n_test = min(n - 1, max(1, round(n * test_fraction)))
        held = np.zeros(n, dtype=bool)
        held[np.random.default_rng(seed).permutation(n)[:n_test]] = True
        test_records = [r for r, h in zip(train_records, held) if h]
        train_records = [r for r, h in zip(train_records, held) if not h]

    texts = Texts(name, [str(c) for c in classes],
                  [r[0] for r in train_records], [index[key(r[1])] for r in train_records],
                  [r[0] for r in test_records], [index[key(r[1])] for r in test_records],
                  _unlabeled(unlabeled, enc, encoding))
    log.info("%s: %d train, %d test, %d unlabeled texts; classes %s", name, len(texts.train), len(texts.test),
             len(texts.unlabeled), texts.class_names)
    return texts


def _codec(encoding: str) -> str:
    try:
        canonical = codecs.lookup(encoding).name
    except LookupError as e:
        raise SemiseqError(f"encoding={encoding!r} is not a known text encoding; pass e.g. encoding=utf-8 or "
                           f"encoding=latin-1") from e
    return "utf-8-sig" if canonical == "utf-8" else encoding  # files saved by Excel start with a BOM


def _existing(path: str | os.PathLike, role: str) -> Path:
    path = Path(path).expanduser()
    if not path.exists():
        key = "unlabeled_files" if role == "unlabeled" else role
        raise SemiseqError(f"{role} path {path} does not exist; check data.{key}= (relative paths start from "
                           f"{Path.cwd()})")
    return path


def _format(path: Path, format: str) -> str:
    if format == "auto":
        if path.is_dir():
            return "folders"
        if (fmt := SUFFIXES.get(path.suffix.lower())) is None:
            raise SemiseqError(f"cannot tell the format of {path} from its suffix {path.suffix!r}; pass format= one "
                               f"of {', '.join(FORMATS)}")
        return fmt
    if format not in FORMATS:
        raise SemiseqError(f"format={format!r} is not one of auto, {', '.join(FORMATS)}; pass one of those")
    if (format == "folders") != path.is_dir():
        raise SemiseqError(f"{path} is {'a directory' if path.is_dir() else 'a file'}, but format={format!r} reads "
                           f"{'a directory of class folders' if format == 'folders' else 'a file'}; pass the "
                           f"right path or format=auto")
    return format


def _decode(path: Path, enc: str, encoding: str) -> str:
    try:
        data = path.read_bytes()
    except OSError as e:
        raise SemiseqError(f"{path} could not be read ({e.strerror}); check that it is a readable file") from e
    try:
        return data.decode(enc)
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        raise SemiseqError(f"{path}, line {line}: byte {e.start} is not valid {encoding} ({e.reason}); pass the "
                           f"file's real encoding, e.g. data.encoding=latin-1") from e


def _lines(text: str) -> list[str]:
    # Not str.splitlines(): that also splits on U+2028 and friends, which may sit inside a JSON string.
    return text.replace("\r\n", "\n").replace("\r", "\n").split("\n")


def _files(directory: Path) -> list[Path]:
    """Every non-hidden file under ``directory``, in a fixed order."""
    return sorted(p for p in directory.rglob("*")
                  if p.is_file() and not any(part.startswith(".") for part in p.relative_to(directory).parts))


def _labeled(path: Path, fmt: str, columns: tuple[str, str], enc: str, encoding: str, role: str) -> list[Record]:
    if fmt == "folders":
        classes = sorted(d for d in path.iterdir() if d.is_dir() and not d.name.startswith("."))
        records = [(_decode(f, enc, encoding), d.name, str(f)) for d in classes for f in _files(d)]
        if not records:
            raise SemiseqError(f"{path} holds no text files in class sub-folders; put each class's documents in a "
                               f"sub-folder named after the class, e.g. {path / 'positive' / '0001.txt'}")
    elif fmt == "jsonl":
        records = _jsonl(path, _decode(path, enc, encoding), *columns)
    else:
        records = _table(path, _decode(path, enc, encoding), "," if fmt == "csv" else "\t", *columns)
    if role == "test":  # dropping a test example would silently change the score
        if (empty := next((where for text, _, where in records if not text.strip()), None)) is not None:
            raise SemiseqError(f"{empty}: the test text is empty; every test example counts towards the score, so "
                               f"it cannot be dropped: give it a text or delete it from {path}")
    records = _non_empty(records, path)
    for _, label, where in records:
        if label == "":
            raise SemiseqError(f"{where}: the label is empty; give every example a label, or pass texts without "
                               f"labels through unlabeled=")
    return records


def _column(path: Path, header: list[str], column: str, option: str) -> int:
    if str(column) in header:
        return header.index(str(column))
    if str(column).isdigit():
        if int(column) < len(header):
            return int(column)
        raise SemiseqError(f"{path}: {option}={column} is out of range for its {len(header)} columns {header}; pass "
                           f"a 0-based index below {len(header)} or a column name")
    raise SemiseqError(f"{path} has no column {column!r}; its columns are {header}; pass {option}= one of them or "
                       f"a 0-based column index")


def _table(path: Path, text: str, delimiter: str, text_column: str, label_column: str) -> list[Record]:
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    records = []
    try:
        header = [h.strip() for h in next(reader, [])]
        if not header:
            raise SemiseqError(f"{path} is empty or starts with a blank line; its first line must be a header "
                               f"naming the columns, e.g. text{delimiter}label")
        ti, li = _column(path, header, text_column, "text_column"), _column(path, header, label_column, "label_column")
        line = reader.line_num
        for row in reader:
            start, line = line + 1, reader.line_num  # a quoted field may span lines: report where the row starts
            if not row:
                continue
            if len(row) != len(header):
                raise SemiseqError(f"{path}, line {start}: {len(row)} fields where the header has {len(header)}; "
                                   f"quote fields that contain {delimiter!r}, quotes or line breaks")
            records.append((row[ti], row[li].strip(), f"{path}, line {start}"))
    except csv.Error as e:
        raise SemiseqError(f"{path}, line {reader.line_num}: unreadable row ({e}); fix the quoting there") from e
    return records


def _jsonl(path: Path, text: str, text_column: str, label_column: str) -> list[Record]:
    records = []
    for n, line in enumerate(_lines(text), 1):
        if not line.strip():
            continue
        where = f"{path}, line {n}"
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            raise SemiseqError(f"{where}: not valid JSON ({e.msg} at column {e.colno}); write one JSON object per "
                               f"line") from e
        if not isinstance(obj, dict):
            raise SemiseqError(f"{where}: expected a JSON object but found {type(obj).__name__}; write one object "
                               f"per line, like {{\"{text_column}\": \"...\", \"{label_column}\": \"...\"}}")
        for column, option in ((text_column, "text_column"), (label_column, "label_column")):
            if column not in obj:
                raise SemiseqError(f"{where} has no key {column!r}; its keys are {list(obj)}; pass {option}= one of "
                                   f"them")
        value, label = obj[text_column], obj[label_column]
        if not isinstance(value, str):
            raise SemiseqError(f"{where}: {text_column!r} is {type(value).__name__}, not a string; store the text as "
                               f"a JSON string")
        if isinstance(label, bool):
            label = json.dumps(label)
        elif not isinstance(label, (str, int)):
            raise SemiseqError(f"{where}: label {label!r} is {type(label).__name__}; store labels as strings or "
                               f"integers")
        records.append((value, label.strip() if isinstance(label, str) else label, where))
    return records


def _non_empty(records: list[Record], source: Path) -> list[Record]:
    kept = [(text.strip(), label, where) for text, label, where in records if text.strip()]
    if len(kept) < len(records):
        log.warning("%s: dropped %d empty text(s)", source, len(records) - len(kept))
    return kept


def _unlabeled(unlabeled: str | list[str] | None, enc: str, encoding: str) -> list[str]:
    paths = [unlabeled] if isinstance(unlabeled, (str, os.PathLike)) else list(unlabeled or [])
    texts = []
    for p in paths:
        path = _existing(p, "unlabeled")
        if path.is_dir():
            docs = [(_decode(f, enc, encoding), "", str(f)) for f in _files(path)]
            texts += [text for text, _, _ in _non_empty(docs, path)]
        else:  # blank lines only separate texts, so they are skipped without a warning
            texts += [line.strip() for line in _lines(_decode(path, enc, encoding)) if line.strip()]
    return texts
