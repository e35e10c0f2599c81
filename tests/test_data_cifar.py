"""CIFAR-10 binary parser on small batch files in the original record format, a tarball of them, a file://
download, each error, a synthetic full-size dataset, and the real files when /work/shared has them."""

from __future__ import annotations

import hashlib
import tarfile
from pathlib import Path

import numpy as np
import pytest

from semiseq import SemiseqError
from semiseq.data import cifar, download

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
NAMES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
META_BYTES = ("\n".join(NAMES) + "\n\n").encode()  # the original ends with a blank line
PER_TRAIN, PER_TEST = 3, 2


def images(n: int, seed: int) -> np.ndarray:
    """Known pixels [n, 3 channels, 32 rows, 32 columns]."""
    return np.random.default_rng(seed).integers(0, 256, (n, 3, 32, 32), dtype=np.uint8)


def batch_bytes(pixels: np.ndarray, labels: np.ndarray) -> bytes:
    """The binary version's records: a label byte, then the red, green and blue planes row-major."""
    return np.concatenate([labels.astype(np.uint8)[:, None], pixels.reshape(len(pixels), -1)], axis=1).tobytes()


# Per file: (pixels, labels); 5 train batches of 3 images, a test batch of 2.
DATA = {name: (images(PER_TRAIN, i), (np.arange(PER_TRAIN) + 2 * i) % 10) for i, name in enumerate(cifar.TRAIN_FILES)}
DATA["test_batch.bin"] = (images(PER_TEST, 99), np.array([9, 0]))
TRAIN_PIXELS = np.concatenate([DATA[n][0] for n in cifar.TRAIN_FILES])
TRAIN_LABELS = np.concatenate([DATA[n][1] for n in cifar.TRAIN_FILES])
TEST_PIXELS, TEST_LABELS = DATA["test_batch.bin"]


def write_files(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, (pixels, labels) in DATA.items():
        (folder / name).write_bytes(batch_bytes(pixels, labels))
    (folder / cifar.META).write_bytes(META_BYTES)
    return folder


def make_tar(tmp_path: Path) -> Path:
    """The original archive's layout: everything inside ``cifar-10-batches-bin/``, with a readme."""
    folder = write_files(tmp_path / "tree" / cifar.FOLDER)
    (folder / "readme.html").write_bytes(b"<html></html>\n")
    archive = tmp_path / cifar.ARCHIVE
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(folder, arcname=cifar.FOLDER)
    return archive


def check(data: cifar.Images, n_train: int = 5 * PER_TRAIN, n_test: int = PER_TEST) -> None:
    assert data.name == "cifar10_rows" and data.class_names == NAMES
    for split, pixels, labels, n in (("train", TRAIN_PIXELS, TRAIN_LABELS, n_train),
                                     ("test", TEST_PIXELS, TEST_LABELS, n_test)):
        x, y = getattr(data, split), getattr(data, f"{split}_labels")
        assert x.dtype == np.uint8 and x.shape == (n, 32, 96) and x.flags.c_contiguous
        assert y.dtype == np.int64 and y.tolist() == labels[:n].tolist()
        for i in range(n):
            for r in (0, 7, 31):  # step r = that row's 32 red, 32 green, 32 blue values
                expected = np.concatenate([pixels[i, 0, r], pixels[i, 1, r], pixels[i, 2, r]])
                np.testing.assert_array_equal(x[i, r], expected)
        np.testing.assert_array_equal(x, pixels[:n].transpose(0, 2, 1, 3).reshape(n, 32, 96))


def test_counts_labels_and_row_layout(tmp_path):
    data = cifar.load(write_files(tmp_path / cifar.FOLDER))
    check(data)
    assert data.train[0, 0, 0] == TRAIN_PIXELS[0, 0, 0, 0] and data.train[0, 0, 32] == TRAIN_PIXELS[0, 1, 0, 0]
    assert data.train[4, 5, 95] == TRAIN_PIXELS[4, 2, 5, 31]  # image 4 = second image of data_batch_2


def test_all_layouts_agree(tmp_path):
    archive = make_tar(tmp_path)
    check(cifar.load(archive))  # the tarball itself
    extracted = tmp_path / "extracted"
    with tarfile.open(archive) as tar:
        tar.extractall(extracted, filter="data")
    check(cifar.load(extracted))  # folder holding cifar-10-batches-bin/
    check(cifar.load(extracted / cifar.FOLDER))  # cifar-10-batches-bin/ itself
    holder = tmp_path / "holder"
    holder.mkdir()
    archive.rename(holder / cifar.ARCHIVE)
    check(cifar.load(str(holder)))  # folder holding the tarball


@pytest.mark.parametrize("max_train, max_test", [(0, 0), (1, 1), (3, 2), (4, None), (14, 1), (100, 100)])
def test_max_counts(tmp_path, max_train, max_test):
    root = write_files(tmp_path / cifar.FOLDER)
    n_train, n_test = min(max_train, 15), PER_TEST if max_test is None else min(max_test, PER_TEST)
    check(cifar.load(root, max_train=max_train, max_test=max_test), n_train, n_test)


def test_max_train_reads_only_needed_batches(tmp_path):
    root = write_files(tmp_path / cifar.FOLDER)
    (root / "data_batch_3.bin").write_bytes(b"x" * 10)  # never read when the first two batches suffice
    check(cifar.load(root, max_train=6), 6)
    with pytest.raises(SemiseqError, match=r"data_batch_3\.bin is 10 bytes"):
        cifar.load(root, max_train=7)


def test_download_via_file_url(tmp_path, monkeypatch):
    archive = make_tar(tmp_path)
    monkeypatch.setattr(cifar, "URL", archive.as_uri())
    monkeypatch.setattr(cifar, "SHA256", hashlib.sha256(archive.read_bytes()).hexdigest())
    cache = tmp_path / "cache"
    check(cifar.load(cache_dir=str(cache)))
    assert (cache / "cifar10" / cifar.ARCHIVE).is_file()
    assert (cache / "cifar10" / cifar.FOLDER / "data_batch_5.bin").is_file()

    archive.unlink()  # a second call must use the cache, not the URL

    def no_fetch(*args, **kwargs):
        raise AssertionError("downloaded again")

    monkeypatch.setattr(download, "fetch", no_fetch)
    check(cifar.load(cache_dir=str(cache), max_train=2), 2)


def test_wrong_checksum_leaves_no_file(tmp_path, monkeypatch):
    archive = make_tar(tmp_path)
    monkeypatch.setattr(cifar, "URL", archive.as_uri())
    monkeypatch.setattr(cifar, "SHA256", "0" * 64)
    cache = tmp_path / "cache"
    with pytest.raises(SemiseqError, match="corrupt"):
        cifar.load(cache_dir=str(cache))
    assert [p for p in cache.rglob("*") if p.is_file()] == []


def test_no_download_names_url_and_place(tmp_path):
    cache = tmp_path / "cache"
    with pytest.raises(SemiseqError) as e:
        cifar.load(download=False, cache_dir=str(cache))
    assert cifar.URL in str(e.value) and str(cache / "cifar10" / cifar.ARCHIVE) in str(e.value)


def test_clear_errors(tmp_path):
    with pytest.raises(SemiseqError, match=r"nowhere does not exist"):
        cifar.load(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(SemiseqError, match=r"empty holds neither data_batch_1\.bin"):
        cifar.load(tmp_path / "empty")
    with pytest.raises(SemiseqError, match=r"max_train=-1 is negative"):
        cifar.load(tmp_path / "nowhere", max_train=-1)

    root = write_files(tmp_path / cifar.FOLDER)
    (root / "test_batch.bin").unlink()
    with pytest.raises(SemiseqError, match=r"cifar-10-batches-bin lacks test_batch\.bin"):
        cifar.load(root)

    root = write_files(root)
    good = (root / "data_batch_2.bin").read_bytes()
    (root / "data_batch_2.bin").write_bytes(good[:-100])
    with pytest.raises(SemiseqError, match=r"data_batch_2\.bin is 9,119 bytes, not a positive multiple of 3,073"
                                           r".*truncated.*Python/pickle version.*cifar-10-binary\.tar\.gz"):
        cifar.load(root)
    (root / "data_batch_2.bin").write_bytes(b"")
    with pytest.raises(SemiseqError, match=r"data_batch_2\.bin is 0 bytes"):
        cifar.load(root)

    bad = bytearray(good)
    bad[cifar.RECORD] = 10  # label byte of the second record
    (root / "data_batch_2.bin").write_bytes(bytes(bad))
    with pytest.raises(SemiseqError, match=r"record 1 of .*data_batch_2\.bin has label 10, not a class 0-9"):
        cifar.load(root)
    (root / "data_batch_2.bin").write_bytes(good)

    (root / cifar.META).write_bytes(b"\n".join(n.encode() for n in NAMES[:9]) + b"\n\n")
    with pytest.raises(SemiseqError, match=r"batches\.meta\.txt holds 9 class names, not 10"):
        cifar.load(root)
    (root / cifar.META).write_bytes(b"\n\n" + b"\r\n\n".join(n.encode() for n in NAMES) + b"\n\n\n")
    assert cifar.load(root).class_names == NAMES  # blank lines and \r\n are fine

    (tmp_path / "broken.tar.gz").write_bytes(b"not a tarball")
    with pytest.raises(SemiseqError, match=r"not a readable tar archive"):
        cifar.load(tmp_path / "broken.tar.gz")
    partial = tmp_path / "partial.tar.gz"
    with tarfile.open(partial, "w:gz") as tar:
        tar.add(root / "data_batch_1.bin", arcname=f"{cifar.FOLDER}/data_batch_1.bin")
    with pytest.raises(SemiseqError, match=r"partial\.tar\.gz holds no data_batch_2\.bin, .*test_batch\.bin"):
        cifar.load(partial)


def test_full_size_files_load_exactly(tmp_path):
    """60,000 records at the real file sizes (speed is measured in bench/, not here)."""
    root = tmp_path / cifar.FOLDER
    root.mkdir()
    records = np.random.default_rng(0).integers(0, 256, (10_000, cifar.RECORD), dtype=np.uint8)
    records[:, 0] %= 10
    records.tofile(root / "test_batch.bin")
    for name in cifar.TRAIN_FILES:  # links to one file: the test writes 30 MB, not 180 MB
        (root / name).symlink_to(root / "test_batch.bin")
    (root / cifar.META).write_bytes(META_BYTES)
    data = cifar.load(root)
    assert data.train.shape == (50_000, 32, 96) and data.test.shape == (10_000, 32, 96)
    np.testing.assert_array_equal(data.train_labels, np.tile(records[:, 0], 5))
    np.testing.assert_array_equal(data.test_labels, records[:, 0])
    expected = records[:, 1:].reshape(-1, 3, 32, 32).transpose(0, 2, 1, 3).reshape(-1, 32, 96)
    np.testing.assert_array_equal(data.test, expected)
    np.testing.assert_array_equal(data.train[40_000:], expected)


def test_real_files():
    root = SHARED / cifar.FOLDER
    if not (root / "test_batch.bin").is_file():
        pytest.skip(f"{root} is absent")
    data = cifar.load(root)
    assert data.class_names == NAMES
    assert data.train.shape == (50_000, 32, 96) and data.test.shape == (10_000, 32, 96)
    assert np.bincount(data.train_labels).tolist() == [5000] * 10
    assert np.bincount(data.test_labels).tolist() == [1000] * 10
