"""The Large Movie Review Dataset (Maas et al., 2011): 25k/25k labeled IMDB reviews and 50k unlabeled ones.

Reads the original layout ``aclImdb/{train,test}/{neg,pos}/<id>_<rating>.txt`` and
``aclImdb/train/unsup/<id>_0.txt`` from an extracted folder or straight from a tar archive.
"""

from __future__ import annotations

import logging
import os
import re
import tarfile
from pathlib import Path

from semiseq import SemiseqError
from semiseq.data.download import locate
from semiseq.data.texts import Texts

log = logging.getLogger(__name__)

URL = "https://ai.stanford.edu/~amaas/data/sentiment/aclImdb_v1.tar.gz"
SHA256 = "c40f74a18d3b61f90feba1e17730e0d38e8b97c05fde7008942e91923d1658fe"
ARCHIVE = "aclImdb_v1.tar.gz"
CLASS_NAMES = ["neg", "pos"]
LABELED = (("train", "neg"), ("train", "pos"), ("test", "neg"), ("test", "pos"))
UNSUP = ("train", "unsup")

Group = tuple[str, str]
_BR = re.compile(r"<br\s*/?>", re.IGNORECASE)


def clean(text: str) -> str:
    """Replace the reviews' HTML line breaks (``<br />``, ``<br/>``, ``<br>``) with spaces."""
    return _BR.sub(" ", text)


def load(root: str | Path | None = None, download: bool = True, cache_dir: str = "~/.cache/semiseq/data") -> Texts:
    """Labeled train/test reviews (neg=0, pos=1) plus the unlabeled ``train/unsup`` reviews.

    ``root`` is a folder holding ``aclImdb/`` (or ``aclImdb/`` itself, or a folder holding the archive)
    or the path of a tar archive; without it the dataset is fetched once into ``cache_dir/imdb/``."""
    groups = _read(_locate(root, download, cache_dir), LABELED + (UNSUP,))

    def split(name: str) -> tuple[list[str], list[int]]:
        neg, pos = groups[(name, "neg")], groups[(name, "pos")]
        return neg + pos, [0] * len(neg) + [1] * len(pos)

    (train, train_labels), (test, test_labels) = split("train"), split("test")
    return Texts("imdb", list(CLASS_NAMES), train, train_labels, test, test_labels, groups[UNSUP])


def load_unlabeled(root: str | Path | None = None, download: bool = True,
                   cache_dir: str = "~/.cache/semiseq/data") -> list[str]:
    """Only the unlabeled ``train/unsup`` reviews, ordered by numeric id; ``root`` as for :func:`load`."""
    return _read(_locate(root, download, cache_dir), (UNSUP,))[UNSUP]


def _locate(root: str | Path | None, download: bool, cache_dir: str) -> Path:
    """The ``aclImdb`` folder or the tar archive to read."""
    return locate(root, download, cache_dir, name="imdb", title="IMDB", url=URL, checksum=SHA256, archive=ARCHIVE,
                  find=_find, expects=f"a folder holding aclImdb/ or the path of {ARCHIVE}",
                  lacks="holds neither aclImdb/ nor an aclImdb*.tar.gz archive")


def _find(folder: Path) -> Path | None:
    if (folder / "aclImdb").is_dir():
        return folder / "aclImdb"
    if (folder / "train").is_dir() or (folder / "test").is_dir():
        return folder
    tars = [p for p in folder.glob("aclImdb*") if p.is_file() and p.name.endswith((".tar.gz", ".tgz", ".tar"))]
    return min(tars, key=lambda p: (p.name != ARCHIVE, p.name), default=None)  # the full archive before a partial one


def _sort_key(name: str) -> tuple[int, int, str]:
    """Order review files by numeric id (``12_8.txt`` after ``9_3.txt``), odd names last."""
    head = name.split("_", 1)[0]
    return (0, int(head), name) if head.isdigit() else (1, 0, name)


def _decode(data: bytes, where: str) -> str:
    try:
        return clean(data.decode("utf-8"))
    except UnicodeDecodeError as e:
        raise SemiseqError(f"{where} is not UTF-8 ({e}); replace it with the original file from {ARCHIVE}") from e


def _is_review(name: str) -> bool:
    return name.endswith(".txt") and not name.startswith(".")


def _read(source: Path, groups: tuple[Group, ...]) -> dict[Group, list[str]]:
    """The reviews of each ``(split, label)`` folder under ``source`` (a folder or a tar archive)."""
    found: dict[Group, list[tuple[tuple[int, int, str], str]]] = {g: [] for g in groups}
    if source.is_dir():
        for group in groups:
            folder = source.joinpath(*group)
            if folder.is_dir():
                with os.scandir(folder) as entries:
                    found[group] += [(_sort_key(e.name), _decode(Path(e.path).read_bytes(), e.path))
                                     for e in entries if _is_review(e.name) and e.is_file()]
    else:
        try:
            # Streaming mode: one sequential pass over the compressed bytes, nothing written to disk.
            with tarfile.open(source, "r|*") as tar:
                for member in tar:
                    parts = member.name.split("/")
                    group = tuple(parts[-3:-1])
                    if member.isfile() and group in found and _is_review(parts[-1]):
                        data = tar.extractfile(member).read()
                        found[group].append((_sort_key(parts[-1]), _decode(data, f"{source}:{member.name}")))
        except (tarfile.TarError, OSError, EOFError) as e:
            raise SemiseqError(f"{source} is not a readable tar archive ({e}); pass an intact {ARCHIVE} "
                               f"(delete it and download it again) or a folder holding aclImdb/") from e
    missing = [f"aclImdb/{'/'.join(g)}/" for g in groups if not found[g]]
    if missing:
        raise SemiseqError(f"{source} has no reviews in {', '.join(missing)}; pass the full {ARCHIVE} from {URL} "
                           f"or a folder holding its extracted aclImdb/")
    log.info("read %s reviews from %s", {"/".join(g): len(v) for g, v in found.items()}, source)
    return {g: [text for _, text in sorted(items, key=lambda kv: kv[0])] for g, items in found.items()}
