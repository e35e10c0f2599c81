"""DBpedia ontology classification (Zhang et al., 2015): 560,000 train / 70,000 test Wikipedia
abstracts in 14 classes, as ``class_index,"title","content"`` CSV rows."""

from __future__ import annotations

import csv
import logging
from pathlib import Path

from semiseq import SemiseqError
from semiseq.data.download import holding, locate
from semiseq.data.texts import Texts

log = logging.getLogger(__name__)

# Zhang et al. released dbpedia_csv.tar.gz on Google Drive, which cannot be fetched with a plain GET;
# fast.ai's public S3 mirror holds the same dbpedia_csv/ layout and is what most code downloads.
URL = "https://s3.amazonaws.com/fast-ai-nlp/dbpedia_csv.tgz"
SHA256 = None  # no published checksum for the mirror
ARCHIVE = "dbpedia_csv.tgz"
FOLDER = "dbpedia_csv"
FILES = ("classes.txt", "train.csv", "test.csv")


def load(root: str | Path | None = None, download: bool = True, cache_dir: str = "~/.cache/semiseq/data",
         max_train: int | None = None, max_test: int | None = None) -> Texts:
    """Read DBpedia from ``root`` (the ``dbpedia_csv`` folder, its parent, or the archive) or, with
    ``root=None``, from ``cache_dir/dbpedia/``, downloading it there first if needed. Each text is
    ``title + ". " + content``; ``max_train``/``max_test`` keep only the first N rows of a split."""
    for name, value in (("max_train", max_train), ("max_test", max_test)):
        if value is not None and value < 0:
            raise SemiseqError(f"DBpedia {name}={value} is negative; pass a row count >= 0, or None for all rows")
    data_dir = _locate(root, download, cache_dir)
    missing = [name for name in FILES if not (data_dir / name).is_file()]
    if missing:
        raise SemiseqError(f"DBpedia folder {data_dir} lacks {', '.join(missing)}; re-extract {ARCHIVE} there")
    class_names = _read_classes(data_dir / "classes.txt")
    train, train_labels = _read_csv(data_dir / "train.csv", len(class_names), max_train)
    test, test_labels = _read_csv(data_dir / "test.csv", len(class_names), max_test)
    return Texts("dbpedia", class_names, train, train_labels, test, test_labels)


def _locate(root: str | Path | None, download: bool, cache_dir: str) -> Path:
    """The ``dbpedia_csv`` folder, extracting (and downloading) the archive when needed."""
    return locate(root, download, cache_dir, name="dbpedia", title="DBpedia", url=URL, checksum=SHA256,
                  archive=ARCHIVE, find=lambda folder: holding(folder, ("classes.txt",), FOLDER), extract_root=True,
                  expects=f"the {FOLDER} folder, its parent or the {ARCHIVE} archive, or root=None to download it",
                  lacks=f"holds no classes.txt, directly or in {FOLDER}/")


def _read_classes(path: Path) -> list[str]:
    names = [line.strip() for line in path.read_text(encoding="utf-8").splitlines()]
    while names and not names[-1]:
        names.pop()
    if not names or not all(names):
        raise SemiseqError(f"DBpedia class list {path} is empty or has a blank line; it needs one class name per "
                           f"line, so re-extract {ARCHIVE}")
    return names


def _read_csv(path: Path, num_classes: int, limit: int | None) -> tuple[list[str], list[int]]:
    """Texts and 0-based labels from ``class_index,"title","content"`` rows, at most ``limit`` of them."""
    texts, labels = [], []
    if limit == 0:
        return texts, labels
    line = 1  # where the current row starts; rows may span lines when a field holds a newline
    try:
        with open(path, newline="", encoding="utf-8") as f:
            reader = csv.reader(f)
            for row in reader:
                if not row:  # a blank line, e.g. at the end of a hand-edited file
                    line = reader.line_num + 1
                    continue
                if len(row) != 3:
                    raise SemiseqError(f"{path} line {line} has {len(row)} columns where DBpedia rows have 3 "
                                       f"(class_index,\"title\",\"content\"); fix that row or re-extract {ARCHIVE}")
                index, title, content = row
                try:
                    label = int(index) - 1
                except ValueError:
                    label = -1
                if not 0 <= label < num_classes:
                    raise SemiseqError(f"{path} line {line} has class index {index!r}, which is not an integer in "
                                       f"1..{num_classes}; fix that row or re-extract {ARCHIVE}")
                texts.append(f"{title.strip()}. {content.strip()}")
                labels.append(label)
                if len(texts) == limit:
                    break
                line = reader.line_num + 1
    except csv.Error as e:
        raise SemiseqError(f"{path} line {line} is not valid CSV ({e}); fix that row or re-extract {ARCHIVE}") from e
    except UnicodeDecodeError as e:
        raise SemiseqError(f"{path} is not UTF-8 text ({e}); re-extract {ARCHIVE}") from e
    return texts, labels
