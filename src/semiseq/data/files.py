"""A user's own labeled data (CSV, TSV, JSON Lines or one folder per class) read as ``Texts``, and the reader of
text files that ``eval.py`` shares (:func:`read_records`: lazily, record by record)."""

from __future__ import annotations

import codecs
import csv
import json
import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import TextIO

from semiseq import SemiseqError
from semiseq.data.texts import Texts, held_out

log = logging.getLogger(__name__)

FORMATS = ("csv", "tsv", "jsonl", "folders")
SUFFIXES = {".csv": "csv", ".tsv": "tsv", ".jsonl": "jsonl", ".json": "jsonl"}  # eval.py: any other, a text per line
FIX_ENCODING = "pass the file's real encoding, e.g. data.encoding=latin-1"

# (text, label, where it came from): `where` is "file, line N" or a document's path, for error messages.
Record = tuple[str, str | int, str]


def load(train: str, test: str | None = None, unlabeled: str | list[str] | None = None, format: str = "auto",
         text_column: str = "text", label_column: str = "label", test_fraction: float = 0.1, seed: int = 0,
         encoding: str = "utf-8", name: str = "files") -> Texts:
    """Read labeled ``train`` (and ``test``, else hold out ``test_fraction`` of train) plus ``unlabeled`` texts.

    ``format`` is csv, tsv, jsonl, folders (one sub-folder of text files per class) or auto (from the path).
    Class ids index the sorted train class names. Bad input raises ``SemiseqError``."""
    enc = codec(encoding)
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
        held = held_out(len(train_records), test_fraction, seed)  # >= 2 records, since there are >= 2 classes
        test_records = [r for r, h in zip(train_records, held) if h]
        train_records = [r for r, h in zip(train_records, held) if not h]

    texts = Texts(name, [str(c) for c in classes],
                  [r[0] for r in train_records], [index[key(r[1])] for r in train_records],
                  [r[0] for r in test_records], [index[key(r[1])] for r in test_records],
                  _unlabeled(unlabeled, enc, encoding))
    log.info("%s: %d train, %d test, %d unlabeled texts; classes %s", name, len(texts.train), len(texts.test),
             len(texts.unlabeled), texts.class_names)
    return texts


def codec(encoding: str) -> str:
    """The codec that reads text in ``encoding`` (UTF-8 also skips a byte order mark)."""
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


def open_text(path: Path, fmt: str, enc: str) -> TextIO:
    """``path`` open to read as ``fmt`` (lines: line ends as ``\\n``; else as written, which the csv reader needs)."""
    try:
        return open(path, encoding=enc, newline=None if fmt == "lines" else "")
    except OSError as e:
        raise SemiseqError(f"{path} could not be read ({e.strerror}); check that it is a readable file") from e


def _decode(path: Path, enc: str, encoding: str) -> str:
    """A whole document (a file of a class or unlabeled folder)."""
    with open_text(path, "document", enc) as f:
        try:
            return f.read()
        except UnicodeDecodeError as e:
            raise _undecodable(e, str(path), 0, encoding, FIX_ENCODING) from e


def _undecodable(e: UnicodeDecodeError, name: str, lines_read: int, encoding: str, fix: str) -> SemiseqError:
    """The error naming the line of the byte ``e`` failed on. A stream decodes a chunk of bytes at a time, ahead of the
    lines it hands out, and the lines read so far all ended before that chunk (``e.object``): count the line breaks in
    the chunk up to the byte."""
    line = lines_read + 1 + e.object[:e.start].decode(encoding, errors="replace").count("\n")
    return SemiseqError(f"{name}, line {line} is not valid {encoding} ({e.reason}); {fix}")


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
    else:
        with open_text(path, fmt, enc) as stream:
            rows = read_records(stream, str(path), fmt, dict(zip(("text_column", "label_column"), columns)), encoding)
            records = [(text, _label(label, f"{path}, line {n}"), f"{path}, line {n}") for n, (text, label) in rows]
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


def read_records(stream: TextIO, name: str, fmt: str, columns: dict[str, str], encoding: str,
                 fix: str = FIX_ENCODING) -> Iterator[tuple[int, list]]:
    """(line where it starts, [its value of each column]) of each record of ``stream`` (``name``, read as ``fmt``),
    lazily: csv/tsv rows under a header, jsonl objects (blank lines skipped), or ``lines``, each line one value.
    ``columns`` maps the option that names each column (``text_column``) to that column: a header name or 0-based
    index, or a key; the first one holds text. A byte that does not decode is named by its line, then ``fix``."""
    line, reader = 0, None
    try:
        if fmt == "lines":
            for line, text in enumerate(stream, 1):
                yield line, [text.rstrip("\n")]
        elif fmt == "jsonl":
            for line, text in enumerate(stream, 1):
                if text.strip():
                    yield line, _json_values(text, f"{name}, line {line}", columns)
        else:
            delimiter = "," if fmt == "csv" else "\t"
            reader = csv.reader(stream, delimiter=delimiter)
            header = [h.strip() for h in next(reader, [])]
            if not header:
                raise SemiseqError(f"{name} is empty or starts with a blank line; its first line must be a header "
                                   f"naming the columns, e.g. {delimiter.join(columns.values())}")
            index = [_column(name, header, column, option) for option, column in columns.items()]
            line = reader.line_num
            for row in reader:
                start, line = line + 1, reader.line_num  # a quoted field may span lines: report where its row starts
                if not row:
                    continue
                if len(row) != len(header):
                    raise SemiseqError(f"{name}, line {start}: {len(row)} fields where the header has {len(header)}; "
                                       f"quote fields that contain {delimiter!r}, quotes or line breaks")
                yield start, [row[i] for i in index]
    except UnicodeDecodeError as e:
        raise _undecodable(e, name, line if reader is None else reader.line_num, encoding, fix) from e
    except csv.Error as e:
        raise SemiseqError(f"{name}, line {line + 1}: unreadable row ({e}); fix the quoting there") from e


def _column(name: str, header: list[str], column: str, option: str) -> int:
    if str(column) in header:
        return header.index(str(column))
    if str(column).isdigit():
        if int(column) < len(header):
            return int(column)
        raise SemiseqError(f"{name}: {option}={column} is out of range for its {len(header)} columns {header}; pass "
                           f"a 0-based index below {len(header)} or a column name")
    raise SemiseqError(f"{name} has no column {column!r}; its header is {header}; pass {option}= one of them or a "
                       f"0-based column index")


def _json_values(line: str, where: str, columns: dict[str, str]) -> list:
    try:
        obj = json.loads(line)
    except json.JSONDecodeError as e:
        raise SemiseqError(f"{where}: not valid JSON ({e.msg} at column {e.colno}); write one JSON object per "
                           f"line") from e
    (text_option, text_key), *others = columns.items()
    if not isinstance(obj, dict):
        raise SemiseqError(f"{where}: expected a JSON object but found {type(obj).__name__}; write one object per "
                           f"line, like {json.dumps(dict.fromkeys(columns.values(), '...'))}")
    if not isinstance(obj.get(text_key), str):
        raise SemiseqError(f"{where} has no string {text_key!r} (its keys: {list(obj)}); write objects like "
                           f"{{\"{text_key}\": \"...\"}} or pass {text_option}= the key that holds the text")
    for option, key in others:
        if key not in obj:
            raise SemiseqError(f"{where} has no key {key!r}; its keys are {list(obj)}; pass {option}= one of them")
    return [obj[key] for key in columns.values()]


def _label(label, where: str) -> str | int:
    if isinstance(label, bool):
        return json.dumps(label)
    if not isinstance(label, (str, int)):
        raise SemiseqError(f"{where}: label {label!r} is {type(label).__name__}; store labels as strings or integers")
    return label.strip() if isinstance(label, str) else label


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
            with open_text(path, "lines", enc) as stream:
                texts += [text.strip() for _, (text,) in read_records(stream, str(path), "lines", {}, encoding)
                          if text.strip()]
    return texts
