"""Rotten Tomatoes parser on small Windows-1252 files in the original layout, a tarball of them, a
file:// download, the cross-validation folds, and the real files when /work/shared has them."""

from __future__ import annotations

import hashlib
import tarfile
import time
from collections import Counter
from pathlib import Path

import pytest

from semiseq import SemiseqError
from semiseq.data import download, rt

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"

# Original bytes: cp1252, lower-cased and tokenized, each line ending " \n"; 0x85 is '…' and 0x92 is '’'.
POS = [b"a gripping , funny film . ", b"simply the best \x85 ever made . ", b"caf\xe9 society charms . ",
       b"it\x92s a winner . ", b"warm and wise . ", b"a triumph . ", b"see it twice . "]
NEG = [b"tedious and dull . ", b"the plot \x85 what plot ? ", b"a mess . ", b"skip it . ", b"no laughs . ",
       b"too long by half . "]
ALL = {(line.decode("cp1252"), 1) for line in POS} | {(line.decode("cp1252"), 0) for line in NEG}


def write_files(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "rt-polarity.pos").write_bytes(b"\n".join(POS) + b"\n")
    (folder / "rt-polarity.neg").write_bytes(b"\n".join(NEG) + b"\n")
    return folder


def make_tar(tmp_path: Path) -> Path:
    """The original archive's layout: a README beside ``rt-polaritydata/``."""
    tree = tmp_path / "tree"
    write_files(tree / rt.FOLDER)
    (tree / "rt-polaritydata.README.1.0.txt").write_bytes(b"sentence polarity dataset v1.0\n")
    archive = tmp_path / rt.ARCHIVE
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(tree / "rt-polaritydata.README.1.0.txt", arcname="rt-polaritydata.README.1.0.txt")
        tar.add(tree / rt.FOLDER, arcname=rt.FOLDER)
    return archive


def pairs(texts, split: str) -> list[tuple[str, int]]:
    return list(zip(getattr(texts, split), getattr(texts, f"{split}_labels")))


def test_decoding_and_counts(tmp_path):
    texts = rt.load(write_files(tmp_path), num_folds=5)
    assert texts.name == "rt" and texts.class_names == ["neg", "pos"] and texts.unlabeled == []
    everything = pairs(texts, "train") + pairs(texts, "test")
    assert len(everything) == 13 and set(everything) == ALL
    assert Counter(label for _, label in everything) == {1: 7, 0: 6}
    assert ("simply the best \u2026 ever made . ", 1) in everything  # 0x85 is '…', not a line break
    assert ("it\u2019s a winner . ", 1) in everything and ("café society charms . ", 1) in everything
    assert rt.split_lines(b"a \x85 b\nc\n", "x") == ["a \u2026 b", "c"]


def test_all_layouts_agree(tmp_path):
    archive = make_tar(tmp_path)
    expected = rt.load(archive)
    extracted = tmp_path / "extracted"
    with tarfile.open(archive) as tar:
        tar.extractall(extracted, filter="data")
    assert rt.load(extracted) == expected  # folder holding rt-polaritydata/
    assert rt.load(extracted / rt.FOLDER) == expected  # folder holding the two files
    holder = tmp_path / "holder"
    holder.mkdir()
    archive.rename(holder / rt.ARCHIVE)
    assert rt.load(holder) == expected  # folder holding the archive
    unlabeled = rt.load_unlabeled(holder)
    assert unlabeled == [line.decode("cp1252") for line in NEG + POS]


def test_folds_partition(tmp_path):
    root = write_files(tmp_path)
    folds = [rt.load(root, fold=k, num_folds=5) for k in range(5)]
    tests = [pairs(t, "test") for t in folds]
    assert sorted(len(t) for t in tests) == [2, 2, 3, 3, 3]  # near-equal
    assert sorted(p for t in tests for p in t) == sorted(ALL)  # disjoint, union = all
    for texts, test in zip(folds, tests):
        train = pairs(texts, "train")
        assert not set(train) & set(test) and len(train) + len(test) == 13
    assert rt.load(root, fold=3, num_folds=5) == folds[3]  # deterministic
    assert [pairs(rt.load(root, fold=k, num_folds=5, fold_seed=1), "test") for k in range(5)] != tests


@pytest.mark.parametrize("fold, num_folds, message", [(10, 10, r"fold=10 is out of range .* from 0 to 9"),
                                                       (-1, 10, r"fold=-1 is out of range"),
                                                       (0, 1, r"num_folds=1 cannot cross-validate"),
                                                       (0, 20, r"num_folds=20 is more than the 13 sentences")])
def test_bad_fold(tmp_path, fold, num_folds, message):
    with pytest.raises(SemiseqError, match=message):
        rt.load(write_files(tmp_path), fold=fold, num_folds=num_folds)


def test_download_via_file_url(tmp_path, monkeypatch):
    archive = make_tar(tmp_path)
    expected = rt.load(archive)
    monkeypatch.setattr(rt, "URL", archive.as_uri())
    monkeypatch.setattr(rt, "SHA256", hashlib.sha256(archive.read_bytes()).hexdigest())
    cache = tmp_path / "cache"
    assert rt.load(cache_dir=str(cache)) == expected
    assert (cache / "rt" / rt.ARCHIVE).is_file() and (cache / "rt" / rt.FOLDER / "rt-polarity.pos").is_file()

    archive.unlink()  # a second call must use the cache, not the URL

    def no_fetch(*args, **kwargs):
        raise AssertionError("downloaded again")

    monkeypatch.setattr(download, "fetch", no_fetch)
    assert rt.load(cache_dir=str(cache)) == expected
    assert len(rt.load_unlabeled(cache_dir=str(cache))) == 13


def test_wrong_checksum_leaves_no_file(tmp_path, monkeypatch):
    archive = make_tar(tmp_path)
    monkeypatch.setattr(rt, "URL", archive.as_uri())
    monkeypatch.setattr(rt, "SHA256", "0" * 64)
    cache = tmp_path / "cache"
    with pytest.raises(SemiseqError, match="corrupt"):
        rt.load(cache_dir=str(cache))
    assert [p for p in cache.rglob("*") if p.is_file()] == []


def test_data_put_in_the_cache_by_hand_is_read_without_a_download(tmp_path):
    cache = tmp_path / "cache"
    write_files(cache / "rt" / rt.FOLDER)
    assert rt.load(download=False, cache_dir=str(cache)) == rt.load(cache / "rt" / rt.FOLDER)


def test_no_download_names_url_and_place(tmp_path):
    cache = tmp_path / "cache"
    with pytest.raises(SemiseqError) as e:
        rt.load(download=False, cache_dir=str(cache))
    assert rt.URL in str(e.value) and str(cache / "rt" / rt.ARCHIVE) in str(e.value)


def test_clear_errors(tmp_path):
    with pytest.raises(SemiseqError, match=r"nowhere does not exist"):
        rt.load(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(SemiseqError, match=r"empty holds neither rt-polarity"):
        rt.load(tmp_path / "empty")
    half = tmp_path / "half"
    half.mkdir()
    (half / "rt-polarity.pos").write_bytes(b"good . \n")
    with pytest.raises(SemiseqError, match=r"half/rt-polarity\.neg is missing"):
        rt.load(half)
    (half / "rt-polarity.neg").write_bytes(b"bad \x81 . \n")  # 0x81 is undefined in cp1252
    with pytest.raises(SemiseqError, match=r"rt-polarity\.neg is not Windows-1252"):
        rt.load(half)
    (tmp_path / "broken.tar.gz").write_bytes(b"not a tarball")
    with pytest.raises(SemiseqError, match=r"not a readable tar archive"):
        rt.load(tmp_path / "broken.tar.gz")


def test_real_files():
    root = SHARED / "rt-polarity"
    if not (root / "rt-polarity.pos").is_file():
        pytest.skip(f"{root} is absent")
    start = time.perf_counter()
    texts = rt.load(root, fold=0, num_folds=10)
    print(f"read and split RT in {time.perf_counter() - start:.2f} s")
    labels = texts.train_labels + texts.test_labels
    assert len(labels) == 10_662 and Counter(labels) == {0: 5331, 1: 5331}
    assert len(texts.test) == 1067 and len(texts.train) == 9595
    assert sum(t.count("\u2026") for t in texts.train + texts.test) == 33  # the 15 + 18 bytes 0x85
    assert not any("\n" in t or "\r" in t for t in texts.train + texts.test)
    assert len(rt.load_unlabeled(root)) == 10_662
