"""Rotten Tomatoes sentence polarity v1.0 (Pang & Lee, 2005): 5,331 positive and 5,331 negative snippets.

There is no official split: papers (Dai & Le included) report 10-fold cross-validation, so
:func:`load` returns one fold of a seeded shuffle as the test set and the other folds as train.
"""

from __future__ import annotations

import logging
import tarfile
from pathlib import Path

import numpy as np

from semiseq import SemiseqError
from semiseq.data.download import holding, locate
from semiseq.data.texts import Texts

log = logging.getLogger(__name__)

URL = "https://www.cs.cornell.edu/people/pabo/movie-review-data/rt-polaritydata.tar.gz"
# No checksum is published for the archive and none could be confirmed offline, so it goes unverified.
SHA256: str | None = None
ARCHIVE = "rt-polaritydata.tar.gz"
FOLDER = "rt-polaritydata"
FILES = ("rt-polarity.neg", "rt-polarity.pos")  # label 0, label 1
CLASS_NAMES = ["neg", "pos"]


def split_lines(data: bytes, where: str) -> list[str]:
    """The sentences of one rt-polarity file: Windows-1252 bytes, one sentence per ``\\n``-ended line."""
    try:
        text = data.decode("cp1252")
    except UnicodeDecodeError as e:
        raise SemiseqError(f"{where} is not Windows-1252 text ({e}); replace it with the original file "
                           f"from {ARCHIVE}") from e
    # Split on "\n" only: str.splitlines() also breaks on \r, \x0b, \x0c, \x1c-\x1e, and a latin-1
    # decode would turn byte 0x85 ('…' in cp1252) into NEL, another line break.
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return lines


def fold_split(n: int, fold: int, num_folds: int, fold_seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(train, test) indices into ``range(n)``: a ``default_rng(fold_seed)`` permutation cut into
    ``num_folds`` near-equal folds, of which ``fold`` is the test set."""
    _check_fold(fold, num_folds)
    if num_folds > n:
        raise SemiseqError(f"num_folds={num_folds} is more than the {n} sentences; pass at most {n} folds")
    folds = np.array_split(np.random.default_rng(fold_seed).permutation(n), num_folds)
    return np.concatenate(folds[:fold] + folds[fold + 1:]), folds[fold]


def load(root: str | Path | None = None, download: bool = True, cache_dir: str = "~/.cache/semiseq/data",
         fold: int = 0, num_folds: int = 10, fold_seed: int = 0) -> Texts:
    """Fold ``fold`` of ``num_folds`` as the test set, the rest as train (neg=0, pos=1); no unlabeled texts.

    ``root`` is a folder holding ``rt-polarity.pos``/``.neg`` (or ``rt-polaritydata/``, or the archive) or
    the archive's path; without it the dataset is fetched once into ``cache_dir/rt/``."""
    _check_fold(fold, num_folds)  # before any download
    neg, pos = _read(root, download, cache_dir)
    texts, labels = neg + pos, [0] * len(neg) + [1] * len(pos)
    train_idx, test_idx = fold_split(len(texts), fold, num_folds, fold_seed)
    return Texts("rt", list(CLASS_NAMES),
                 [texts[i] for i in train_idx], [labels[i] for i in train_idx],
                 [texts[i] for i in test_idx], [labels[i] for i in test_idx])


def load_unlabeled(root: str | Path | None = None, download: bool = True,
                   cache_dir: str = "~/.cache/semiseq/data") -> list[str]:
    """All sentences, negative file first, in file order (unlabeled text for another dataset)."""
    neg, pos = _read(root, download, cache_dir)
    return neg + pos


def _check_fold(fold: int, num_folds: int) -> None:
    if num_folds < 2:
        raise SemiseqError(f"num_folds={num_folds} cannot cross-validate; pass num_folds >= 2 (the paper uses 10)")
    if not 0 <= fold < num_folds:
        raise SemiseqError(f"fold={fold} is out of range for num_folds={num_folds}; pass a fold from 0 to "
                           f"{num_folds - 1}")


def _read(root: str | Path | None, download: bool, cache_dir: str) -> tuple[list[str], list[str]]:
    """(negative, positive) sentences from wherever ``root`` points (see :func:`load`)."""
    path = locate(root, download, cache_dir, name="rt", title="RT", url=URL, checksum=SHA256, archive=ARCHIVE,
                  find=lambda folder: holding(folder, FILES, FOLDER, ARCHIVE),
                  expects=f"a folder holding {' and '.join(FILES)}, or the path of {ARCHIVE}",
                  lacks=f"holds neither {' and '.join(FILES)}, nor {FOLDER}/, nor {ARCHIVE}")
    return _read_archive(path) if path.is_file() else _read_folder(path)


def _read_folder(folder: Path) -> tuple[list[str], list[str]]:
    for name in FILES:
        if not (folder / name).is_file():
            raise SemiseqError(f"{folder / name} is missing; put both {' and '.join(FILES)} from {ARCHIVE} in {folder}")
    neg, pos = (split_lines((folder / name).read_bytes(), str(folder / name)) for name in FILES)
    log.info("read %d negative and %d positive sentences from %s", len(neg), len(pos), folder)
    return neg, pos


def _read_archive(archive: Path) -> tuple[list[str], list[str]]:
    found: dict[str, list[str]] = {}
    try:
        with tarfile.open(archive) as tar:
            for member in tar:
                name = member.name.rsplit("/", 1)[-1]
                if member.isfile() and name in FILES:
                    found[name] = split_lines(tar.extractfile(member).read(), f"{archive}:{member.name}")
    except (tarfile.TarError, OSError, EOFError) as e:
        raise SemiseqError(f"{archive} is not a readable tar archive ({e}); pass an intact {ARCHIVE} (delete it "
                           f"and download it again) or a folder holding {' and '.join(FILES)}") from e
    missing = [name for name in FILES if name not in found]
    if missing:
        raise SemiseqError(f"{archive} holds no {' or '.join(missing)}; pass the original {ARCHIVE} from {URL}")
    log.info("read %d negative and %d positive sentences from %s", len(found[FILES[0]]), len(found[FILES[1]]), archive)
    return found[FILES[0]], found[FILES[1]]
