"""20 Newsgroups, "bydate" version: 11,314 train / 7,532 test Usenet posts in 20 newsgroup folders.

Every post is kept, so the counts match published results. A post whose text is blank (with
``headers="strip"``, one whose body after the header block is empty or white space) becomes its
Subject header, as written (``Re:`` included, folded lines joined by one space); a post whose subject is
missing or has no letter or digit becomes ``"(no subject)"``, so every post gives at least one token under any
tokeniser setting.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

from semiseq import SemiseqError
from semiseq.data.download import locate
from semiseq.data.texts import Texts

log = logging.getLogger(__name__)

URL = "http://qwone.com/~jason/20Newsgroups/20news-bydate.tar.gz"
# The same file scikit-learn pins (it downloads it from a figshare mirror).
SHA256 = "8f1b2514ca22a5ade8fbb9cfa5727df95fa587f4c87b786e15c759fa66d95610"
ARCHIVE = "20news-bydate.tar.gz"
SPLITS = {"train": "20news-bydate-train", "test": "20news-bydate-test"}
LAYOUT = f"{SPLITS['train']}/ and {SPLITS['test']}/"
HEADERS = ("strip", "keep")
NO_SUBJECT = "(no subject)"  # the text of a post with neither body nor subject
SUBJECT = re.compile(r"^subject:(.*(?:\n[ \t].*)*)", re.IGNORECASE | re.MULTILINE)  # with folded lines


def load(root: str | Path | None = None, download: bool = True, cache_dir: str = "~/.cache/semiseq/data",
         headers: str = "strip") -> Texts:
    """Read 20 Newsgroups from ``root`` (a folder holding the two bydate folders, or the archive) or,
    with ``root=None``, from ``cache_dir/newsgroups20/``, downloading it there first if needed.
    ``headers="strip"`` drops each post's header block (everything up to the first blank line); a post
    left blank becomes its subject (see the module docstring)."""
    if headers not in HEADERS:
        raise SemiseqError(f"20 Newsgroups headers={headers!r} is not an option; use 'strip' or 'keep'")
    data_dir = _locate(root, download, cache_dir)
    train_dir, test_dir = (data_dir / SPLITS[s] for s in ("train", "test"))
    class_names = _class_names(train_dir)
    if (test_classes := _class_names(test_dir)) != class_names:
        raise SemiseqError(
            f"{train_dir} and {test_dir} have different class folders (only in train: "
            f"{sorted(set(class_names) - set(test_classes))}, only in test: "
            f"{sorted(set(test_classes) - set(class_names))}); re-extract {ARCHIVE} so both splits hold the same "
            f"newsgroups")
    train, train_labels, train_empty = _read_split(train_dir, class_names, headers)
    test, test_labels, test_empty = _read_split(test_dir, class_names, headers)
    if train_empty or test_empty:
        log.info("newsgroups20: %d train and %d test posts have a blank body; each became its subject",
                 train_empty, test_empty)
    return Texts("newsgroups20", class_names, train, train_labels, test, test_labels)


def _locate(root: str | Path | None, download: bool, cache_dir: str) -> Path:
    """The folder holding both bydate folders, extracting (and downloading) the archive when needed."""
    return locate(root, download, cache_dir, name="newsgroups20", title="20 Newsgroups", url=URL, checksum=SHA256,
                  archive=ARCHIVE, extract_root=True,
                  find=lambda folder: folder if all((folder / s).is_dir() for s in SPLITS.values()) else None,
                  expects=f"the folder that holds {LAYOUT} or the {ARCHIVE} archive itself, or root=None to "
                          f"download it", lacks=f"does not hold {LAYOUT}")


def _class_names(split_dir: Path) -> list[str]:
    if not split_dir.is_dir():
        raise SemiseqError(f"20 Newsgroups split folder {split_dir} is missing; re-extract {ARCHIVE}")
    names = sorted(p.name for p in split_dir.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not names:
        raise SemiseqError(f"20 Newsgroups split folder {split_dir} has no class folders; re-extract {ARCHIVE}")
    return names


def _read_split(split_dir: Path, class_names: list[str], headers: str) -> tuple[list[str], list[int], int]:
    """Texts and labels of one split, ordered by class then numeric id, plus how many were blank."""
    texts, labels, empty = [], [], 0
    for label, name in enumerate(class_names):
        files = [p for p in (split_dir / name).iterdir() if not p.name.startswith(".")]  # skip .DS_Store & co.
        bad = next((p for p in files if not p.name.isdigit() or not p.is_file()), None)
        if bad is not None:
            raise SemiseqError(f"20 Newsgroups document {bad} is not a file named by a numeric id; remove it or "
                               f"re-extract {ARCHIVE}")
        for path in sorted(files, key=lambda p: int(p.name)):
            text = path.read_bytes().decode("latin-1")  # every byte decodes; the posts mix 8-bit charsets
            header, _, body = text.partition("\n\n")
            if headers == "strip":
                text = body
            if not text.strip():  # kept, not dropped: the test set must have all 7,532 posts
                empty += 1
                text = _subject(header)
            texts.append(text)
            labels.append(label)
    return texts, labels, empty


def _subject(header: str) -> str:
    """The Subject of a post's header block, or NO_SUBJECT when it has no letter or digit to tokenise."""
    match = SUBJECT.search(header)
    subject = " ".join(match.group(1).split()) if match else ""
    return subject if re.search(r"\w", subject) else NO_SUBJECT
