"""Files written whole or not at all: each goes to a temporary name beside its target and is renamed onto it
(``os.replace``, atomic within a filesystem), so a reader, or a run killed mid-write, finds the old file or the
new one, never half of one. The temporary name holds the process id: concurrent jobs may write the same file."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import IO


def _temporary(path: Path) -> Path:
    return path.with_name(f".{path.name}.tmp{os.getpid()}")


@contextlib.contextmanager
def writing(path: str | os.PathLike, mode: str = "wb", fsync: bool = False, **kwargs) -> Iterator[IO]:
    """An open file (``open(..., mode, **kwargs)``) that replaces ``path`` when the block ends without an error
    (``fsync``: once its bytes are on disk); on an error it is deleted and ``path`` stays as it was."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temporary(path)
    try:
        with open(tmp, mode, **kwargs) as f:
            yield f
            if fsync:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_bytes(path: str | os.PathLike, data: bytes) -> None:
    with writing(path) as f:
        f.write(data)


def write_text(path: str | os.PathLike, text: str) -> None:
    with writing(path, "w", encoding="utf-8") as f:
        f.write(text)


def write_json(path: str | os.PathLike, payload) -> None:
    """``payload`` as indented JSON (a value JSON has no type for, such as a path, as its ``str``)."""
    write_text(path, json.dumps(payload, indent=2, default=str) + "\n")


def save_torch(obj, path: str | os.PathLike, fsync: bool = False) -> None:
    """``torch.save(obj)`` to ``path``."""
    import torch  # here, not at the top: the data code writes through this module without needing torch

    with writing(path, fsync=fsync) as f:
        torch.save(obj, f)


@contextlib.contextmanager
def folder(path: str | os.PathLike) -> Iterator[Path]:
    """A new empty folder to fill that replaces the folder ``path`` (and all it held) when the block ends without an
    error; on an error it is deleted and ``path`` stays as it was."""
    path = Path(path)
    tmp = _temporary(path)
    shutil.rmtree(tmp, ignore_errors=True)  # left by a killed process with this id
    tmp.mkdir(parents=True)
    try:
        yield tmp
        shutil.rmtree(path, ignore_errors=True)  # os.replace cannot replace a folder that holds files
        os.replace(tmp, path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def copy_file(source: str | os.PathLike, path: str | os.PathLike) -> None:
    """A copy of the file ``source`` at ``path``."""
    with open(source, "rb") as src, writing(path) as f:
        shutil.copyfileobj(src, f, 1 << 20)
