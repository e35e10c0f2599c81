"""Loading a user's own labeled data from CSV, TSV, JSON Lines and class folders."""

from __future__ import annotations

import json
import logging

import pytest

from semiseq import SemiseqError
from semiseq.data.files import load


def write(path, text, encoding="utf-8"):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text.encode(encoding))
    return path


def jsonl(path, rows):
    return write(path, "".join(json.dumps(r) + "\n" for r in rows))


def pairs(texts, split):
    return list(zip(getattr(texts, split), getattr(texts, f"{split}_labels")))


def test_csv_quoting_blank_lines_and_empty_texts(tmp_path, caplog):
    train = write(tmp_path / "train.csv", 'text,label\n"good, really",pos\n\n"two\nlines",neg\n  ,pos\nbad,neg\n')
    test = write(tmp_path / "test.csv", "label,text\npos,fine\nneg,awful\n")
    with caplog.at_level(logging.WARNING, logger="semiseq.data.files"):
        texts = load(str(train), str(test), name="mine")
    assert texts.name == "mine" and texts.class_names == ["neg", "pos"]
    assert pairs(texts, "train") == [("good, really", 1), ("two\nlines", 0), ("bad", 0)]
    assert pairs(texts, "test") == [("fine", 1), ("awful", 0)]
    assert texts.unlabeled == []
    assert "dropped 1 empty" in caplog.text and "train.csv" in caplog.text


def test_tsv_and_integer_column_index(tmp_path):
    train = write(tmp_path / "train.tsv", "id\tbody\ttopic\n1\tsports news\tsport\n2\tvote count\tpolitics\n"
                                          "3\tgoal!\tsport\n")
    test = write(tmp_path / "test.txt", "id\tbody\ttopic\n9\telection\tpolitics\n")
    texts = load(str(train), str(test), format="tsv", text_column="1", label_column="2")
    assert texts.class_names == ["politics", "sport"]
    assert pairs(texts, "train") == [("sports news", 1), ("vote count", 0), ("goal!", 1)]
    assert pairs(texts, "test") == [("election", 0)]


def test_csv_with_byte_order_mark(tmp_path):
    train = write(tmp_path / "train.csv", "\ufefftext,label\na,x\nb,y\n")
    test = write(tmp_path / "test.csv", "text,label\nc,y\n")
    assert load(str(train), str(test)).train == ["a", "b"]


def test_jsonl_integer_labels_sort_numerically(tmp_path):
    train = tmp_path / "train.jsonl"
    jsonl(train, [{"text": "a", "label": 10}, {"text": "b", "label": 2}])
    with open(train, "a") as f:
        f.write("\n   \n" + json.dumps({"text": "c", "label": 2, "extra": [1]}) + "\n")
    test = jsonl(tmp_path / "test.json", [{"text": "d", "label": 10}])
    texts = load(str(train), str(test))
    assert texts.class_names == ["2", "10"]
    assert pairs(texts, "train") == [("a", 1), ("b", 0), ("c", 0)]
    assert pairs(texts, "test") == [("d", 1)]


def test_folders_skip_hidden_files(tmp_path):
    for split, docs in {"train": {"pos": ["great", "lovely"], "neg": ["dull"]}, "test": {"pos": ["fine"],
                                                                                         "neg": ["bad"]}}.items():
        for label, items in docs.items():
            for i, doc in enumerate(items):
                write(tmp_path / split / label / f"{i}.md", doc + "\n")
    write(tmp_path / "train" / "neg" / ".DS_Store", "junk")
    write(tmp_path / "train" / ".git" / "x", "junk")
    write(tmp_path / "train" / "README", "not a class")
    texts = load(str(tmp_path / "train"), str(tmp_path / "test"))
    assert texts.class_names == ["neg", "pos"]
    assert pairs(texts, "train") == [("dull", 0), ("great", 1), ("lovely", 1)]
    assert pairs(texts, "test") == [("bad", 0), ("fine", 1)]


def test_held_out_test_split_is_deterministic_and_disjoint(tmp_path):
    train = write(tmp_path / "train.csv", "text,label\n" + "".join(f"doc{i},c{i % 3}\n" for i in range(50)))
    a, b = load(str(train), seed=1), load(str(train), seed=1)
    assert (a.train, a.test, a.train_labels, a.test_labels) == (b.train, b.test, b.train_labels, b.test_labels)
    assert len(a.test) == 5 and len(a.train) == 45
    assert set(a.train).isdisjoint(a.test) and set(a.train) | set(a.test) == {f"doc{i}" for i in range(50)}
    assert all(a.class_names[y] == f"c{int(t[3:]) % 3}" for t, y in pairs(a, "train") + pairs(a, "test"))
    assert load(str(train), seed=2).test != a.test
    assert len(load(str(train), test_fraction=0.5).test) == 25


def test_unlabeled_file_directory_and_list(tmp_path):
    train = write(tmp_path / "train.csv", "text,label\na,x\nb,y\nc,x\n")
    lines = write(tmp_path / "more.txt", "first line\n\n  second line  \r\nthird\n")
    write(tmp_path / "docs" / "1.txt", "doc one\nstill one\n")
    write(tmp_path / "docs" / "sub" / "2.txt", "doc two")
    write(tmp_path / "docs" / ".hidden", "skip me")
    write(tmp_path / "docs" / "3.txt", "   \n")
    assert load(str(train), unlabeled=str(lines)).unlabeled == ["first line", "second line", "third"]
    texts = load(str(train), unlabeled=[str(lines), str(tmp_path / "docs")])
    assert texts.unlabeled == ["first line", "second line", "third", "doc one\nstill one", "doc two"]


def error(**kwargs) -> str:
    with pytest.raises(SemiseqError) as info:
        load(**kwargs)
    return str(info.value)


def test_missing_paths(tmp_path):
    train = write(tmp_path / "train.csv", "text,label\na,x\nb,y\n")
    assert "nope.csv does not exist" in error(train=str(tmp_path / "nope.csv"))
    msg = error(train=str(train), unlabeled=[str(tmp_path / "gone.txt")])
    assert "unlabeled path" in msg and "gone.txt" in msg


def test_undecodable_file_names_file_line_and_encoding(tmp_path):
    train = write(tmp_path / "train.csv", "text,label\na,x\ncafé,y\n", encoding="latin-1")
    msg = error(train=str(train))
    assert "train.csv, line 3" in msg and "utf-8" in msg and "encoding=latin-1" in msg
    assert load(str(train), encoding="latin-1").class_names == ["x", "y"]


def test_missing_column_lists_the_columns(tmp_path):
    train = write(tmp_path / "train.csv", "review,sentiment\na,x\nb,y\n")
    msg = error(train=str(train))
    assert "train.csv" in msg and "'text'" in msg and "['review', 'sentiment']" in msg
    msg = error(train=str(train), text_column="review", label_column="5")
    assert "out of range" in msg and "train.csv" in msg
    data = jsonl(tmp_path / "train.jsonl", [{"text": "a", "label": "x"}, {"body": "b", "label": "y"}])
    msg = error(train=str(data))
    assert "train.jsonl, line 2" in msg and "['body', 'label']" in msg


def test_malformed_jsonl_line(tmp_path):
    data = write(tmp_path / "train.jsonl", '{"text": "a", "label": "x"}\n\n{"text": "b", "label": \n')
    assert "train.jsonl, line 3" in error(train=str(data))
    data = write(tmp_path / "list.jsonl", '["a", "x"]\n')
    assert "list.jsonl, line 1" in error(train=str(data))


def test_csv_row_with_wrong_number_of_fields(tmp_path):
    train = write(tmp_path / "train.csv", 'text,label\n"multi\nline",x\nhello, world,y\n')
    msg = error(train=str(train))
    assert "train.csv, line 4" in msg and "3 fields" in msg and "2" in msg


def test_fewer_than_two_classes(tmp_path):
    train = write(tmp_path / "train.csv", "text,label\na,x\nb,x\n ,y\n")
    msg = error(train=str(train))
    assert "train.csv" in msg and "at least 2" in msg and "['x']" in msg


def test_test_label_unseen_in_train(tmp_path):
    train = write(tmp_path / "train.csv", "text,label\na,x\nb,y\n")
    test = write(tmp_path / "test.csv", "text,label\nc,x\nd,z\n")
    msg = error(train=str(train), test=str(test))
    assert "test.csv, line 3" in msg and "'z'" in msg


def test_bad_format_and_options(tmp_path):
    train = write(tmp_path / "train.dat", "text,label\na,x\nb,y\n")
    assert "train.dat" in error(train=str(train)) and load(str(train), format="csv").train
    assert "format='xml'" in error(train=str(train), format="xml")
    assert "is a file" in error(train=str(train), format="folders")
    assert "test_fraction=1.5" in error(train=str(train), format="csv", test_fraction=1.5)
    assert "encoding='nope'" in error(train=str(train), encoding="nope")
    assert "empty label" not in error(train=str(write(tmp_path / "t.csv", "")))
    assert "line 3" in error(train=str(write(tmp_path / "u.csv", "text,label\na,x\nb,\n")))
