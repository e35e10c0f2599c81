"""The pretrained-weights cache: a folder of checkpoints, each named by its objective and a digest of its key
(``<objective>-<digest>.ckpt``, the key beside it as ``.json``). Look up, store atomically, lock; it knows
nothing of configs or training: the pipeline asks it, and pretrains and stores on a miss."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from filelock import FileLock

from semiseq.atomic import copy_file, write_json


def entry(root: str | Path, name: str, key: dict) -> Path:
    """Where the weights for ``key`` live under ``root``."""
    digest = hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:16]
    return Path(root).expanduser() / "pretrained" / f"{name}-{digest}.ckpt"


def lock(path: Path) -> FileLock:
    """A lock on one entry, shared by concurrent jobs (held while one of them pretrains it)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    return FileLock(str(path) + ".lock")


def store(path: Path, produced: Path, key: dict) -> Path:
    """Copy ``produced`` into the entry ``path`` atomically (there means whole), with its key beside it."""
    copy_file(produced, path)
    write_json(path.with_suffix(".json"), {"key": key, "produced_by": str(produced)})
    return path
