"""Finding a dataset where the user put it, or fetching its archive once: checksum, atomic download-then-rename,
safe extraction."""

from __future__ import annotations

import hashlib
import logging
import shutil
import tarfile
import urllib.request
from collections.abc import Callable
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


def locate(root: str | Path | None, download: bool, cache_dir: str, *, name: str, title: str, url: str,
           checksum: str | None, archive: str, find: Callable[[Path], Path | None], expects: str, lacks: str,
           extract_root: bool = False) -> Path:
    """Where a dataset's data is: what ``find(folder)`` finds in the folder ``root`` (the data's folder, or an
    archive to read), or ``root`` itself when it is an archive (with ``extract_root``: what ``find`` finds beside it
    once it is extracted there). With ``root=None``, the copy in ``cache_dir/<name>/``: the first time (unless the
    data was put there by hand) ``archive`` is downloaded there and extracted. ``title`` names the dataset in errors,
    ``expects`` says what to pass as root and ``lacks`` what a folder without the data lacks."""
    if root is None:
        base = Path(cache_dir).expanduser() / name
        by_hand = find(base) is not None and not (base / archive).exists()
        if not (base / f".extracted-{archive}").exists() and not by_hand:
            if not (base / archive).is_file():
                if not download:
                    raise SemiseqError(f"{title} data is not in {base} and download=False; download {url} and "
                                       f"place it at {base / archive}, or pass download=True")
                fetch(url, base / archive, checksum)
            extract(base / archive, base)
        if (found := find(base)) is None:
            raise SemiseqError(f"{title}: {base} {lacks} after extracting {archive} there; delete {base} and try again")
        return found
    path = Path(root).expanduser()
    if path.is_file() and not extract_root:
        return path
    if path.is_file():
        path = extract(path, path.parent)  # next to the archive, where the user chose to keep the data
    elif not path.is_dir():
        raise SemiseqError(f"{title} root {path} does not exist; pass {expects}")
    if (found := find(path)) is None:
        raise SemiseqError(f"{title} root {path} {lacks}; extract {archive} there or pass the archive's path as root")
    return found


def holding(folder: Path, names: tuple[str, ...], sub: str, archive: str | None = None) -> Path | None:
    """For :func:`locate`: ``folder`` or ``folder/sub``, the first that holds a file of ``names``, else
    ``folder/archive`` when there is one."""
    for candidate in (folder, folder / sub):
        if any((candidate / n).is_file() for n in names):
            return candidate
    return folder / archive if archive and (folder / archive).is_file() else None
