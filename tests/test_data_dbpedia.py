"""DBpedia parser on tiny files in the real dbpedia_csv layout: quoted UTF-8 CSV rows."""

from __future__ import annotations

import hashlib
import re
import tarfile
from pathlib import Path

import pytest

from semiseq import SemiseqError
from semiseq.data import dbpedia

CLASSES = ["Company", "EducationalInstitution", "Artist", "Athlete", "OfficeHolder", "MeanOfTransportation",
           "Building", "NaturalPlace", "Village", "Animal", "Plant", "Album", "Film", "WrittenWork"]

# Rows exactly as in the release: unquoted index, quoted fields, content starting with a space.
TRAIN = (
    '1,"E. D. Abbott Ltd"," Abbott of Farnham E D Abbott Limited was a British coachbuilding business."\n'
    '9,"Saint-Étienne, Loire"," A commune, in the ""Loire"" department; see ""Saint-Étienne""."\n'
    '14,"The Book"," A novel, with a ""quoted"" title and a comma."\n'
)
TEST = '12,"Abbey Road"," The 11th studio album by the Beatles."\n'


def write_csv_folder(root: Path, train: str = TRAIN, test: str = TEST) -> Path:
    folder = root / "dbpedia_csv"
    folder.mkdir(parents=True)
    (folder / "classes.txt").write_text("\n".join(CLASSES) + "\n", encoding="utf-8")
    (folder / "train.csv").write_text(train, encoding="utf-8")
    (folder / "test.csv").write_text(test, encoding="utf-8")
    return root


def make_tarball(tmp_path: Path) -> Path:
    src = write_csv_folder(tmp_path / "src")
    archive = tmp_path / dbpedia.ARCHIVE
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(src / "dbpedia_csv", arcname="dbpedia_csv")
    return archive


def test_reads_quoted_rows_labels_and_class_names(tmp_path):
    data = dbpedia.load(root=str(write_csv_folder(tmp_path)))
    assert data.name == "dbpedia" and data.class_names == CLASSES
    assert data.train == [
        "E. D. Abbott Ltd. Abbott of Farnham E D Abbott Limited was a British coachbuilding business.",
        'Saint-Étienne, Loire. A commune, in the "Loire" department; see "Saint-Étienne".',
        'The Book. A novel, with a "quoted" title and a comma.',
    ]
    assert data.train_labels == [0, 8, 13]
    assert data.test == ["Abbey Road. The 11th studio album by the Beatles."] and data.test_labels == [11]


def test_root_may_be_the_csv_folder_itself_and_rows_can_be_capped(tmp_path):
    data = dbpedia.load(root=str(write_csv_folder(tmp_path) / "dbpedia_csv"), max_train=2, max_test=0)
    assert data.train_labels == [0, 8] and data.test == []


def test_reads_the_tarball_given_as_root(tmp_path):
    data = dbpedia.load(root=str(make_tarball(tmp_path)))
    assert len(data.train) == 3 and len(data.test) == 1
    assert (tmp_path / "dbpedia_csv" / "train.csv").is_file()  # extracted next to the archive


def test_downloads_into_cache_dir_once(tmp_path, monkeypatch):
    archive = make_tarball(tmp_path)
    monkeypatch.setattr(dbpedia, "URL", archive.as_uri())
    monkeypatch.setattr(dbpedia, "SHA256", hashlib.sha256(archive.read_bytes()).hexdigest())
    cache = tmp_path / "cache"
    first = dbpedia.load(cache_dir=str(cache))
    assert (cache / "dbpedia" / dbpedia.ARCHIVE).is_file() and len(first.train) == 3
    archive.unlink()  # a second download would now fail
    monkeypatch.setattr(dbpedia, "URL", (tmp_path / "gone.tgz").as_uri())
    assert dbpedia.load(cache_dir=str(cache)) == first
    assert dbpedia.load(cache_dir=str(cache), download=False) == first


@pytest.mark.parametrize("bad_row, problem", [
    ('3,"Only a title"\n', "has 2 columns"),
    ('x,"Title"," Content."\n', "has class index 'x'"),
    ('15,"Title"," Content."\n', "has class index '15', which is not an integer in 1..14"),
    ('0,"Title"," Content."\n', "has class index '0'"),
])
def test_malformed_row_names_file_and_line(tmp_path, bad_row, problem):
    # the second row's content spans two lines, so the bad row starts on line 4, not 3
    train = TRAIN.splitlines(keepends=True)
    train = train[0] + '2,"Split"," First line\nsecond line."\n' + bad_row + train[2]
    write_csv_folder(tmp_path, train=train)
    with pytest.raises(SemiseqError, match=re.escape(f"{tmp_path / 'dbpedia_csv' / 'train.csv'} line 4 {problem}")):
        dbpedia.load(root=str(tmp_path))


def test_missing_data_is_a_clear_error(tmp_path):
    with pytest.raises(SemiseqError, match=re.escape(f"root {tmp_path / 'nope'} does not exist")):
        dbpedia.load(root=str(tmp_path / "nope"))
    with pytest.raises(SemiseqError, match="holds no classes.txt"):
        dbpedia.load(root=str(tmp_path))
    with pytest.raises(SemiseqError, match="download=False") as e:
        dbpedia.load(cache_dir=str(tmp_path / "cache"), download=False)
    assert dbpedia.URL in str(e.value) and str(tmp_path / "cache" / "dbpedia" / dbpedia.ARCHIVE) in str(e.value)
    folder = write_csv_folder(tmp_path / "partial") / "dbpedia_csv"
    (folder / "test.csv").unlink()
    with pytest.raises(SemiseqError, match="lacks test.csv"):
        dbpedia.load(root=str(folder))
    with pytest.raises(SemiseqError, match="max_train=-1 is negative"):
        dbpedia.load(root=str(folder), max_train=-1)
