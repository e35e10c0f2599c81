"""20 Newsgroups parser on tiny files in the real bydate layout: latin-1 posts with a header block."""

from __future__ import annotations

import hashlib
import logging
import re
import tarfile
from functools import partial
from pathlib import Path

import pytest

from semiseq import SemiseqError
from semiseq.data import newsgroups
from semiseq.data.prepare import make_corpus


def post(subject: str, body: bytes) -> bytes:
    """A post as in the archive: header lines, one blank line, then the body."""
    return (b"From: someone@example.edu (Some One)\nSubject: " + subject.encode() +
            b"\nOrganization: Example University\nLines: 2\n\n" + body)


# id 9 sorts before 10 only if ids are compared as numbers
POSTS = {
    "20news-bydate-train": {
        "alt.atheism": {"10": post("ten", b"Second by id.\n"), "9": post("nine", b"Caf\xe9 first by id.\n")},
        "comp.graphics": {"38000": post("gfx", b"Polygons.\n"),
                          "38001": b"From: x@y.z\nSubject: header only, no body\n"},
    },
    "20news-bydate-test": {
        "alt.atheism": {"53000": post("t1", b"Test atheism.\n")},
        "comp.graphics": {"38500": post("t2", b"Test graphics.\n")},
    },
}


def write_bydate(root: Path, posts: dict = POSTS) -> Path:
    for split, classes in posts.items():
        for name, docs in classes.items():
            (root / split / name).mkdir(parents=True)
            for doc_id, data in docs.items():
                (root / split / name / doc_id).write_bytes(data)
    return root


def make_tarball(tmp_path: Path) -> Path:
    src = write_bydate(tmp_path / "src")
    archive = tmp_path / newsgroups.ARCHIVE
    with tarfile.open(archive, "w:gz") as tar:
        for split in newsgroups.SPLITS.values():
            tar.add(src / split, arcname=split)
    return archive


def test_reads_bydate_folders_in_class_then_numeric_id_order(tmp_path, caplog):
    with caplog.at_level(logging.INFO, logger="semiseq.data.newsgroups"):
        data = newsgroups.load(root=str(write_bydate(tmp_path)))
    assert data.name == "newsgroups20" and data.class_names == ["alt.atheism", "comp.graphics"]
    assert data.train == ["Caf\u00e9 first by id.\n", "Second by id.\n", "Polygons.\n",  # 0xe9 read as latin-1
                          "header only, no body"]  # a post with no body becomes its subject
    assert data.train_labels == [0, 0, 1, 1]
    assert data.test == ["Test atheism.\n", "Test graphics.\n"] and data.test_labels == [0, 1]
    assert "1 train and 0 test posts have a blank body" in caplog.text


# Posts left blank once the header block is gone; our stripping removes nothing else, so quoting stays.
BLANK_POSTS = {
    "20news-bydate-train": {
        "alt.atheism": {"1": post("kept", b"Real text.\n"), "2": post("Re: empty after the header", b""),
                        "3": b"From: x@y.z\nSubject: header only, no blank line\n"},
        "comp.graphics": {"4": post("only white space", b" \n\t\n\n"), "5": post("q", b"> quoted only\n")},
    },
    "20news-bydate-test": {
        "alt.atheism": {"6": post("t", b"Test text.\n"), "7": b"From: x@y.z\nSubject: Folded\n  subject\nLines: 0\n\n"},
        "comp.graphics": {"8": post("", b""), "9": b"From: x@y.z\n\n\n", "10": post("???", b"\n")},
    },
}


def test_keeps_every_post_and_a_blank_body_becomes_its_subject(tmp_path, caplog):
    with caplog.at_level(logging.INFO, logger="semiseq.data.newsgroups"):
        data = newsgroups.load(root=str(write_bydate(tmp_path, BLANK_POSTS)))
    assert len(data.train) == 5 and len(data.test) == 5  # none dropped
    assert data.train == ["Real text.\n", "Re: empty after the header", "header only, no blank line",
                          "only white space", "> quoted only\n"]
    assert data.train_labels == [0, 0, 0, 1, 1]
    # folded subject joined; empty, missing and punctuation-only subjects give the fixed text
    assert data.test == ["Test text.\n", "Folded subject", "(no subject)", "(no subject)", "(no subject)"]
    assert data.test_labels == [0, 0, 1, 1, 1]
    assert "3 train and 4 test posts have a blank body" in caplog.text


def test_blank_posts_keep_their_place_in_the_corpus(tmp_path):
    # Through make_corpus without punctuation tokens, where a text with no tokens is dropped (train) or refused (test).
    source = partial(newsgroups.load, root=str(write_bydate(tmp_path, BLANK_POSTS)))
    corpus = make_corpus(source, punctuation=False, val_fraction=0.2)
    assert len(corpus.train) + len(corpus.val) == 5 and len(corpus.test) == 5
    assert corpus.test.lengths.tolist()[1:] == [2, 2, 2, 2]  # "folded subject", "no subject" x3


def test_keep_headers_keeps_whole_files_and_the_header_only_post(tmp_path):
    data = newsgroups.load(root=str(write_bydate(tmp_path)), headers="keep")
    assert len(data.train) == 4 and data.train_labels == [0, 0, 1, 1]
    assert data.train[0] == post("nine", b"Caf\xe9 first by id.\n").decode("latin-1")
    assert data.train[3].startswith("From: x@y.z\nSubject: header only")


def test_reads_the_tarball_given_as_root(tmp_path):
    data = newsgroups.load(root=str(make_tarball(tmp_path)))
    assert len(data.train) == 4 and len(data.test) == 2
    assert (tmp_path / "20news-bydate-train" / "alt.atheism" / "9").is_file()  # extracted next to the archive


def test_downloads_into_cache_dir_once(tmp_path, monkeypatch):
    archive = make_tarball(tmp_path)
    monkeypatch.setattr(newsgroups, "URL", archive.as_uri())
    monkeypatch.setattr(newsgroups, "SHA256", hashlib.sha256(archive.read_bytes()).hexdigest())
    cache = tmp_path / "cache"
    first = newsgroups.load(cache_dir=str(cache))
    assert (cache / "newsgroups20" / newsgroups.ARCHIVE).is_file()
    archive.unlink()  # a second download would now fail
    monkeypatch.setattr(newsgroups, "URL", (tmp_path / "gone.tar.gz").as_uri())
    assert newsgroups.load(cache_dir=str(cache)) == first
    assert newsgroups.load(cache_dir=str(cache), download=False) == first


def test_download_checks_the_checksum(tmp_path, monkeypatch):
    monkeypatch.setattr(newsgroups, "URL", make_tarball(tmp_path).as_uri())
    monkeypatch.setattr(newsgroups, "SHA256", "0" * 64)
    with pytest.raises(SemiseqError, match="corrupt"):
        newsgroups.load(cache_dir=str(tmp_path / "cache"))


def test_missing_data_is_a_clear_error(tmp_path):
    with pytest.raises(SemiseqError, match=re.escape(f"root {tmp_path / 'nope'} does not exist")):
        newsgroups.load(root=str(tmp_path / "nope"))
    with pytest.raises(SemiseqError, match="does not hold 20news-bydate-train/"):
        newsgroups.load(root=str(tmp_path))
    with pytest.raises(SemiseqError, match="download=False") as e:
        newsgroups.load(cache_dir=str(tmp_path / "cache"), download=False)
    assert newsgroups.URL in str(e.value)
    assert str(tmp_path / "cache" / "newsgroups20" / newsgroups.ARCHIVE) in str(e.value)


def test_train_and_test_must_have_the_same_class_folders(tmp_path):
    posts = {**POSTS, "20news-bydate-test": {**POSTS["20news-bydate-test"], "sci.space": {"1": post("s", b"x\n")}}}
    with pytest.raises(SemiseqError, match=r"only in train: \[\], only in test: \['sci.space'\]"):
        newsgroups.load(root=str(write_bydate(tmp_path, posts)))


def test_bad_option_and_stray_file_are_clear_errors(tmp_path):
    root = write_bydate(tmp_path)
    with pytest.raises(SemiseqError, match="headers='drop' is not an option"):
        newsgroups.load(root=str(root), headers="drop")
    (root / "20news-bydate-train" / "alt.atheism" / "notes.txt").write_text("x")
    with pytest.raises(SemiseqError, match="notes.txt is not a file named by a numeric id"):
        newsgroups.load(root=str(root))
