"""Fetching a dataset archive once: checksum, atomic download-then-rename, safe extraction."""

from __future__ import annotations

import hashlib
import logging
import shutil
import tarfile
import urllib.request
from pathlib import Path

from semiseq import SemiseqError, atomic

log = logging.getLogger(__name__)


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def fetch(url: str, dest: Path, checksum: str | None = None) -> Path:
    """Download ``url`` to ``dest`` unless a file with the right checksum is already there. The bytes go
    to a temporary file first and are renamed into place only when complete and verified."""
    dest = Path(dest)
    if dest.is_file() and (checksum is None or sha256(dest) == checksum):
        return dest
    log.info("downloading %s -> %s", url, dest)
    try:
        with atomic.writing(dest) as out:  # deleted on every error below, so no partial file stays
            with urllib.request.urlopen(url, timeout=60) as response:
                shutil.copyfileobj(response, out, 1 << 20)
            out.flush()
            if checksum is not None and (got := sha256(Path(out.name))) != checksum:
                raise SemiseqError(f"{url} arrived corrupt (sha256 {got}, expected {checksum}); try again, or "
                                   f"download it by hand and place it at {dest}")
    except OSError as e:
        raise SemiseqError(f"could not download {url} ({e}); download it by hand and place it at {dest}") from e
    return dest


def extract(archive: Path, dest: Path) -> Path:
    """Unpack a tar archive into ``dest`` once (a marker file records completion); members that would
    escape ``dest`` (absolute paths, ``..``, links out) are refused."""
    dest = Path(dest)
    marker = dest / f".extracted-{Path(archive).name}"
    if marker.exists():
        return dest
    dest.mkdir(parents=True, exist_ok=True)
    try:
        with tarfile.open(archive) as tar:
            tar.extractall(dest, filter="data")
    except (tarfile.TarError, OSError) as e:
        raise SemiseqError(f"{archive} is not a readable tar archive ({e}); delete it and download it again") from e
    marker.touch()
    return dest


def ensure(dataset: str, url: str, checksum: str | None, archive: Path, present: bool, download: bool) -> None:
    """Make the data of ``archive`` available in its folder: nothing to do when we extracted it before
    or the user placed the data there by hand (``present``, no archive beside it); otherwise download
    the archive (unless ``download=False``: then say where to put it) and extract it."""
    archive = Path(archive)
    if (archive.parent / f".extracted-{archive.name}").exists() or (present and not archive.exists()):
        return
    if not archive.is_file():
        if not download:
            raise SemiseqError(f"{dataset} is not in {archive.parent} and download=False; download {url} and place "
                               f"it at {archive}, or pass download=True")
        fetch(url, archive, checksum)
    extract(archive, archive.parent)
