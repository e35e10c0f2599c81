"""CIFAR-10 (Krizhevsky, 2009) from its binary version, each image read as a sequence of 32 rows.

Dai & Le (2015) feed an image to the LSTM one row per step: step ``r`` is the 96 values of row ``r``,
its 32 red, then 32 green, then 32 blue pixels. The binary version needs no unpickling: every record
of a batch file is 1 label byte (0-9) and 3,072 pixel bytes (the 1,024 red values of the 32x32 image
row-major, then the green, then the blue).
"""

from __future__ import annotations

import logging
import tarfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from semiseq import SemiseqError
from semiseq.data.corpus import SPECIALS, Corpus, Sequences, Vocab
from semiseq.data.download import holding, locate

log = logging.getLogger(__name__)

URL = "https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz"
# The page publishes md5 c32a1d4ab5d03f1284b67883e8d87530; this is the same 170,052,171-byte file's sha256
# (as pinned by tensorflow_datasets' url_checksums/cifar10.txt).
SHA256: str | None = "c4a38c50a1bc5f3a1c5537f2155ab9d68f9f25eb1ed8d9ddda3db29a59bca1dd"
ARCHIVE = "cifar-10-binary.tar.gz"
FOLDER = "cifar-10-batches-bin"
TRAIN_FILES = tuple(f"data_batch_{i}.bin" for i in range(1, 6))
TEST_FILES = ("test_batch.bin",)
META = "batches.meta.txt"
FILES = (*TRAIN_FILES, *TEST_FILES, META)
SIDE, CHANNELS = 32, 3
RECORD = 1 + CHANNELS * SIDE * SIDE  # 3,073 bytes


# eq=False: a field-wise == on numpy arrays would raise instead of answering.
@dataclass(frozen=True, eq=False, kw_only=True)
class Images:
    """Labeled train/test images as row sequences: ``train``/``test`` are uint8 arrays of shape [N, 32, 96]
    where ``x[i, r]`` is row ``r`` of image ``i`` as its 32 red, 32 green, then 32 blue values (0-255,
    unscaled); ``train_labels``/``test_labels`` are int64 indices into ``class_names``."""

    name: str = "cifar10_rows"
    class_names: list[str]
    train: np.ndarray
    train_labels: np.ndarray
    test: np.ndarray
    test_labels: np.ndarray


def load(root: str | Path | None = None, download: bool = True, cache_dir: str = "~/.cache/semiseq/data",
         max_train: int | None = None, max_test: int | None = None) -> Images:
    """The 50,000 train and 10,000 test images (or the first ``max_train``/``max_test``, in file order).

    ``root`` is the ``cifar-10-batches-bin`` folder, a folder holding it (or the archive), or the path of
    ``cifar-10-binary.tar.gz``; without it the dataset is fetched once into ``cache_dir/cifar10/``."""
    for arg, value in (("max_train", max_train), ("max_test", max_test)):
        if value is not None and value < 0:
            raise SemiseqError(f"{arg}={value} is negative; pass a count >= 0, or None for all images")
    read, where = _source(root, download, cache_dir)
    class_names = parse_meta(read(META).tobytes(), f"{where}/{META}")
    train, train_labels = _split(read, TRAIN_FILES, where, max_train)
    test, test_labels = _split(read, TEST_FILES, where, max_test)
    log.info("read %d train and %d test CIFAR-10 images from %s", len(train), len(test), where)
    return Images(class_names=class_names, train=train, train_labels=train_labels, test=test, test_labels=test_labels)


def parse_meta(data: bytes, where: str) -> list[str]:
    """The 10 class names of ``batches.meta.txt``: one per line, blank lines ignored."""
    names = [line.strip() for line in data.decode("utf-8", errors="replace").splitlines() if line.strip()]
    if len(names) != 10:
        raise SemiseqError(f"{where} holds {len(names)} class names, not 10 ({names[:12]}); replace it with the "
                           f"original file from {ARCHIVE}")
    return names


def parse_records(raw: np.ndarray, where: str) -> np.ndarray:
    """The bytes of one batch file as records [N, 3073], their size and label bytes checked."""
    if raw.size == 0 or raw.size % RECORD:
        raise SemiseqError(f"{where} is {raw.size:,} bytes, not a positive multiple of {RECORD:,} (a label byte and "
                           f"3,072 pixels per image): it is probably truncated, or from the Python/pickle version; "
                           f"the binary version {ARCHIVE} is needed ({URL})")
    records = raw.reshape(-1, RECORD)
    bad = np.flatnonzero(records[:, 0] > 9)
    if bad.size:
        raise SemiseqError(f"record {bad[0]} of {where} has label {records[bad[0], 0]}, not a class 0-9; the file is "
                           f"corrupt or not from {ARCHIVE}: replace it with the original")
    return records


def to_rows(batches: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """(images [N, 32, 96] uint8, labels [N] int64) of record arrays [N_k, 3073], one after the other;
    step r of an image is its R[r] ++ G[r] ++ B[r]."""
    total = sum(len(records) for records in batches)
    images = np.empty((total, SIDE, CHANNELS * SIDE), np.uint8)
    labels = np.empty(total, np.int64)
    start = 0
    for records in batches:  # straight into the output: no concatenated copy of 150 MB
        n = len(records)
        labels[start:start + n] = records[:, 0]
        # images[i, r, c*32 + x] = pixel (c, r, x), through a [N, row, channel, x] view of the output.
        pixels = records[:, 1:].reshape(n, CHANNELS, SIDE, SIDE)
        images[start:start + n].reshape(n, SIDE, CHANNELS, SIDE)[...] = pixels.transpose(0, 2, 1, 3)
        start += n
    return images, labels


def _split(read: Callable[[str], np.ndarray], names: tuple[str, ...], where: str,
           limit: int | None) -> tuple[np.ndarray, np.ndarray]:
    """The records of ``names`` in order, the first ``limit`` of them, as (images, labels)."""
    batches, total = [], 0
    for name in names:
        if limit is not None and total >= limit:
            break  # the rest of the files need not be read
        records = parse_records(read(name), f"{where}/{name}")
        if limit is not None:
            records = records[:limit - total]
        batches.append(records)
        total += len(records)
    return to_rows(batches)


def _source(root: str | Path | None, download: bool, cache_dir: str) -> tuple[Callable[[str], np.ndarray], str]:
    """(a reader of each file's bytes by name, where they come from) for wherever ``root`` points."""
    path = locate(root, download, cache_dir, name="cifar10", title="CIFAR-10", url=URL, checksum=SHA256,
                  archive=ARCHIVE, find=lambda folder: holding(folder, FILES, FOLDER, ARCHIVE),
                  expects=f"the {FOLDER} folder, a folder holding it, or the path of {ARCHIVE}",
                  lacks=f"holds neither {TRAIN_FILES[0]} and the other batch files, nor {FOLDER}/, nor {ARCHIVE} "
                        f"(the binary version, from {URL}: the Python version's cifar-10-batches-py/ will not do)")
    return _archive(path) if path.is_file() else _folder(path)


def _folder(folder: Path) -> tuple[Callable[[str], np.ndarray], str]:
    missing = [name for name in FILES if not (folder / name).is_file()]
    if missing:
        raise SemiseqError(f"{folder} lacks {', '.join(missing)}; put all of {FOLDER}/ from {ARCHIVE} there")
    return (lambda name: _map(folder / name)), str(folder)


def _map(path: Path) -> np.ndarray:
    # A read-only map reads the page cache in place: copying 180 MB into fresh memory costs far more in page
    # faults than the row reshape itself. (mmap refuses empty files.)
    return np.memmap(path, dtype=np.uint8, mode="r") if path.stat().st_size else np.empty(0, np.uint8)


def _archive(archive: Path) -> tuple[Callable[[str], np.ndarray], str]:
    found: dict[str, bytes] = {}
    try:
        with tarfile.open(archive) as tar:
            for member in tar:
                name = member.name.rsplit("/", 1)[-1]
                if member.isfile() and name in FILES:
                    found[name] = tar.extractfile(member).read()
    except (tarfile.TarError, OSError, EOFError, zlib.error) as e:
        raise SemiseqError(f"{archive} is not a readable tar archive ({e}); pass an intact {ARCHIVE} (delete it and "
                           f"download it again) or the {FOLDER} folder") from e
    missing = [name for name in FILES if name not in found]
    if missing:
        raise SemiseqError(f"{archive} holds no {', '.join(missing)}; pass the original {ARCHIVE} from {URL}")
    return (lambda name: np.frombuffer(found[name], dtype=np.uint8)), f"{archive}:{FOLDER}"



def make_corpus(root: str | None = None, download: bool = True, cache_dir: str = "~/.cache/semiseq/data",
                max_train: int | None = None, max_test: int | None = None, val_fraction: float = 0.15,
                seed: int = 0) -> Corpus:
    """CIFAR-10 as a :class:`Corpus` of 32-step sequences of 96 pixel values (``input_dim=96``); the
    training images double as the pretraining pool, so ``unlabeled`` is empty."""
    images = load(root, download, cache_dir, max_train, max_test)
    order = np.random.default_rng(seed).permutation(len(images.train))
    n_val = int(round(val_fraction * len(order)))

    def rows(x: np.ndarray, labels: np.ndarray | None) -> Sequences:
        offsets = np.arange(0, len(x) * x.shape[1] + 1, x.shape[1], dtype=np.int64)
        return Sequences(x.reshape(-1, x.shape[2]), offsets, labels)

    val_idx, train_idx = np.sort(order[:n_val]), np.sort(order[n_val:])
    return Corpus(images.name, Vocab(list(SPECIALS)), rows(images.train[train_idx], images.train_labels[train_idx]),
                  rows(images.train[val_idx], images.train_labels[val_idx]), rows(images.test, images.test_labels),
                  rows(images.train[:0], None), list(images.class_names), {"level": "pixel_rows"},
                  input_dim=images.train.shape[2])
