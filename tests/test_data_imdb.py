"""IMDB parser on small files in the original aclImdb layout, a tarball of them, a file:// download,
and the real unlabeled reviews when /work/shared has them."""

from __future__ import annotations

import hashlib
import tarfile
import time
from pathlib import Path

import pytest

from semiseq import SemiseqError
from semiseq.data import download, imdb

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"

# (split, label) -> {file name: review}; names are <id>_<rating>.txt as in the original.
REVIEWS = {
    ("train", "neg"): {"5_1.txt": "Bad.<br /><br />Really bad.", "1_3.txt": "Boring"},
    ("train", "pos"): {"3_10.txt": "Great film.<br />Loved it.", "12_8.txt": "Fine<br/>acting",
                       "2_7.txt": "ok<BR>good"},
    ("train", "unsup"): {"10_0.txt": "ten", "9_0.txt": "nine<br />x", "100_0.txt": "hundred", "0_0.txt": "zero"},
    ("test", "neg"): {"4_2.txt": "Awful", "7_4.txt": "Weak"},
    ("test", "pos"): {"0_9.txt": "Café — “superb”"},
}
# Files of the original archive that are not reviews and must be ignored.
EXTRAS = ["README", "imdb.vocab", "imdbEr.txt", "train/labeledBow.feat", "train/urls_pos.txt", "test/urls_neg.txt"]


def write_tree(base: Path, reviews: dict = REVIEWS) -> Path:
    """``base/aclImdb/...`` in the original layout (UTF-8 bytes); returns ``base``."""
    for (split, label), files in reviews.items():
        folder = base / "aclImdb" / split / label
        folder.mkdir(parents=True)
        for name, text in files.items():
            (folder / name).write_bytes(text.encode("utf-8"))
    for extra in EXTRAS:
        if (base / "aclImdb" / extra).parent.is_dir():
            (base / "aclImdb" / extra).write_bytes(b"0 1:2\n")
    return base


def make_tar(tmp_path: Path, name: str = imdb.ARCHIVE, reviews: dict = REVIEWS) -> Path:
    tree = write_tree(tmp_path / f"tree-{name}", reviews)
    archive = tmp_path / name
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(tree / "aclImdb", arcname="aclImdb")
    return archive


def check(texts) -> None:
    assert texts.name == "imdb" and texts.class_names == ["neg", "pos"]
    assert texts.train == ["Boring", "Bad.  Really bad.", "ok good", "Great film. Loved it.", "Fine acting"]
    assert texts.train_labels == [0, 0, 1, 1, 1]
    assert texts.test == ["Awful", "Weak", "Café — “superb”"] and texts.test_labels == [0, 0, 1]
    assert texts.unlabeled == ["zero", "nine x", "ten", "hundred"]  # numeric id order, not 10 < 100 < 9


def test_load_from_folder(tmp_path):
    base = write_tree(tmp_path)
    check(imdb.load(base, download=False))
    check(imdb.load(base / "aclImdb", download=False))


def test_load_from_archive_matches_folder(tmp_path):
    archive = make_tar(tmp_path)
    check(imdb.load(archive))
    holder = tmp_path / "holder"
    holder.mkdir()
    archive.rename(holder / imdb.ARCHIVE)
    check(imdb.load(holder))


def test_unlabeled_only_archive(tmp_path):
    archive = make_tar(tmp_path, "aclImdb_unsup.tar.gz", {("train", "unsup"): REVIEWS[("train", "unsup")]})
    expected = ["zero", "nine x", "ten", "hundred"]
    assert imdb.load_unlabeled(archive) == expected
    assert imdb.load_unlabeled(tmp_path) == expected  # the folder holding it
    with pytest.raises(SemiseqError, match=r"no reviews in aclImdb/train/neg/.*pass the full aclImdb_v1\.tar\.gz"):
        imdb.load(archive)


def test_download_via_file_url(tmp_path, monkeypatch):
    archive = make_tar(tmp_path)
    monkeypatch.setattr(imdb, "URL", archive.as_uri())
    monkeypatch.setattr(imdb, "SHA256", hashlib.sha256(archive.read_bytes()).hexdigest())
    cache = tmp_path / "cache"
    check(imdb.load(cache_dir=str(cache)))
    assert (cache / "imdb" / imdb.ARCHIVE).is_file() and (cache / "imdb" / "aclImdb" / "test").is_dir()

    archive.unlink()  # a second call must use the cache, not the URL

    def no_fetch(*args, **kwargs):
        raise AssertionError("downloaded again")

    monkeypatch.setattr(download, "fetch", no_fetch)
    check(imdb.load(cache_dir=str(cache)))
    assert imdb.load_unlabeled(cache_dir=str(cache)) == ["zero", "nine x", "ten", "hundred"]


def test_wrong_checksum_leaves_no_file(tmp_path, monkeypatch):
    archive = make_tar(tmp_path)
    monkeypatch.setattr(imdb, "URL", archive.as_uri())
    monkeypatch.setattr(imdb, "SHA256", "0" * 64)
    cache = tmp_path / "cache"
    with pytest.raises(SemiseqError, match="corrupt"):
        imdb.load(cache_dir=str(cache))
    assert [p for p in cache.rglob("*") if p.is_file()] == []


def test_no_download_names_url_and_place(tmp_path):
    cache = tmp_path / "cache"
    with pytest.raises(SemiseqError) as e:
        imdb.load(download=False, cache_dir=str(cache))
    assert imdb.URL in str(e.value) and str(cache / "imdb" / imdb.ARCHIVE) in str(e.value)


def test_clear_errors(tmp_path):
    with pytest.raises(SemiseqError, match=r"nowhere does not exist"):
        imdb.load(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(SemiseqError, match=r"empty holds neither aclImdb/"):
        imdb.load_unlabeled(tmp_path / "empty")
    (tmp_path / "aclImdb_v1.tar.gz").write_bytes(b"not a tarball")
    with pytest.raises(SemiseqError, match=r"not a readable tar archive"):
        imdb.load(tmp_path / "aclImdb_v1.tar.gz")
    base = write_tree(tmp_path / "bad", {("train", "unsup"): {"1_0.txt": "ok"}})
    (base / "aclImdb" / "train" / "unsup" / "2_0.txt").write_bytes(b"caf\xe9")  # latin-1, not UTF-8
    with pytest.raises(SemiseqError, match=r"2_0\.txt is not UTF-8"):
        imdb.load_unlabeled(base)


def test_real_unlabeled_reviews():
    archive = SHARED / "imdb-unsup" / "aclImdb_unsup.tar.gz"
    if not archive.is_file():
        pytest.skip(f"{archive} is absent")
    start = time.perf_counter()
    texts = imdb.load_unlabeled(archive)
    print(f"read {len(texts):,} unlabeled IMDB reviews in {time.perf_counter() - start:.1f} s")
    assert len(texts) == 50_000
    assert not any("<br" in t.lower() for t in texts)
    assert all(t.strip() for t in texts)
