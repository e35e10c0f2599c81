"""data=hf: Hugging Face datasets the tests write themselves (save_to_disk folders, parquet files), never the network
(conftest sets HF_DATASETS_OFFLINE=1), read through semiseq.data.hf, the corpus cache and train.py."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

import datasets
import pytest

import semiseq
from semiseq import SemiseqError, inference, pipeline
from semiseq.data import hf

from .conftest import ROOT, read_json

WORDS = {0: "bad awful dull boring poor".split(), 1: "good great fine lovely nice".split()}
TINY = ("logger=none", "model.backbone.embed_dim=8", "model.backbone.hidden_dim=16", "model.head.hidden_dim=16",
        "finetune.max_epochs=2", "pretrain.max_steps=8", "pretrain.val_every_n_steps=4",
        "trainer.enable_progress_bar=false")


def rows(n: int, start: int = 0, length: int = 5) -> dict:
    """``n`` texts whose words say their label (0 or 1, alternating), different for every ``start``."""
    texts = [" ".join(WORDS[i % 2][(i * 7 + j * 3) % 5] for j in range(length)) + f" n{i}"
             for i in range(start, start + n)]
    return {"text": texts, "label": [i % 2 for i in range(start, start + n)]}


def class_labels(names=("neg", "pos")):
    return datasets.Features({"text": datasets.Value("string"), "label": datasets.ClassLabel(names=list(names))})


def save_dataset(path: Path, features=None, **splits: dict) -> Path:
    """A save_to_disk folder holding ``splits`` (name -> columns)."""
    datasets.DatasetDict({name: datasets.Dataset.from_dict(columns, features=features)
                          for name, columns in splits.items()}).save_to_disk(str(path))
    return path


def imdb_like(path: Path, **extra) -> Path:
    """train / test with a ClassLabel and an ``unsupervised`` split whose labels are -1, as stanfordnlp/imdb has."""
    unlabeled = {"text": rows(80, start=500)["text"], "label": [-1] * 80}
    return save_dataset(path, class_labels(), train=rows(60), test=rows(20, start=100), unsupervised=unlabeled, **extra)


def test_a_save_to_disk_folder_with_class_labels_and_an_unlabeled_split(tmp_path, caplog):
    data = rows(6)
    data["text"][2] = "  "  # an empty training text is dropped with a warning
    path = save_dataset(tmp_path / "imdb_copy", class_labels(("neg", "pos", "unused")), train=data,
                        test=rows(2, start=10), unsupervised={"text": ["more text", "", "even more"],
                                                              "label": [-1, -1, -1]})
    with caplog.at_level(logging.WARNING, logger="semiseq.data.hf"):
        texts = hf.load(str(path), unlabeled_split="unsupervised")
    assert texts.name == "imdb_copy" and texts.class_names == ["neg", "pos", "unused"]  # the ClassLabel's names
    assert texts.train == [t for i, t in enumerate(data["text"]) if i != 2]
    assert texts.train_labels == [0, 1, 1, 0, 1]
    assert (texts.test, texts.test_labels) == (rows(2, start=10)["text"], [0, 1])
    assert texts.unlabeled == ["more text", "even more"]
    assert "dropped 1 empty text(s) of split 'train'" in caplog.text
    # the labels of the unlabeled split (-1) are not read; without it there is no unlabeled text
    assert hf.load(str(path)).unlabeled == []


def test_parquet_files_a_folder_of_them_and_a_single_dataset(tmp_path):
    """A data file (its split: train, test held out), a builder with data_files per split, a folder of files named by
    split, and a single Dataset saved to disk; string labels sort, integer labels sort numerically."""
    folder = tmp_path / "news"
    folder.mkdir()
    strings = {"body": [f"text {i}" for i in range(20)], "topic": ["sport", "politics", "arts", "sport"] * 5}
    datasets.Dataset.from_dict(strings).to_parquet(str(folder / "train.parquet"))
    datasets.Dataset.from_dict({"body": ["a vote", "a play"], "topic": ["politics", "arts"]}).to_parquet(
        str(folder / "test.parquet"))

    one = hf.load(str(folder / "train.parquet"), text_column="body", label_column="topic", test_split=None)
    assert one.name == "train" and one.class_names == ["arts", "politics", "sport"]
    assert len(one.train) == 18 and len(one.test) == 2 and set(one.train) | set(one.test) == set(strings["body"])
    assert all(strings["topic"][int(t.split()[1])] == one.class_names[y]
               for t, y in zip(one.train + one.test, one.train_labels + one.test_labels))

    files = {"train": str(folder / "train.parquet"), "test": str(folder / "test.parquet")}
    both = hf.load("parquet", data_files=files, text_column="body", label_column="topic")
    assert both.name == "news" and (both.test, both.test_labels) == (["a vote", "a play"], [1, 0])
    assert len(both.train) == 20
    inferred = hf.load(str(folder), text_column="body", label_column="topic")
    assert (inferred.name, inferred.test, inferred.train) == ("news", both.test, both.train)

    datasets.Dataset.from_dict({"text": ["x", "y", "z", "w"], "label": [10, 2, 10, 2]}).save_to_disk(
        str(tmp_path / "single"))
    single = hf.load(str(tmp_path / "single"), test_split=None, test_fraction=0.25)
    assert single.class_names == ["2", "10"] and len(single.test) == 1


def error(*args, **kwargs) -> str:
    with pytest.raises(SemiseqError) as info:
        hf.load(*args, **kwargs)
    assert "\n" not in str(info.value)  # one line on the terminal
    return str(info.value)


def test_a_missing_split_column_or_label_names_what_there_is(tmp_path):
    path = str(imdb_like(tmp_path / "imdb"))
    msg = error(path, test_split="validation")
    assert "data.test_split='validation'" in msg and "['train', 'test', 'unsupervised']" in msg
    assert "or null to hold out" in msg
    assert "['train', 'test', 'unsupervised']" in error(path, unlabeled_split=["unsupervised", "extra"])
    msg = error(path, text_column="sentence")
    assert "data.text_column='sentence'" in msg and "split 'train'" in msg and "['text', 'label']" in msg
    msg = error(path, label_column="sentiment")
    assert "data.label_column='sentiment'" in msg and "['text', 'label']" in msg
    assert "data.text_column and data.label_column are both 'text'" in error(path, label_column="text")
    msg = error(path, text_column="label", label_column="text")  # a column that holds no text
    assert "holds ClassLabel" in msg and "a column of strings: one of ['text']" in msg
    # the unsupervised split as the test split: its labels are -1
    msg = error(path, test_split="unsupervised")
    assert "80 of the 80 examples of split 'unsupervised'" in msg and "have no label" in msg
    assert "data.test_split= a split with labels" in msg and "data.test_split=null" in msg


def test_a_label_column_that_is_no_class_label_integer_or_string_is_refused(tmp_path):
    path = save_dataset(tmp_path / "scores", train={"text": ["a", "b"], "score": [0.5, 1.5]})
    msg = error(str(path), label_column="score", test_split=None)
    assert "data.label_column='score'" in msg and "Value('float" in msg and "class label (ClassLabel)" in msg
    assert "class_encode_column('score')" in msg
    path = save_dataset(tmp_path / "one", train={"text": ["a", "b"], "label": ["x", "x"]})
    assert "1 class(es) ['x']" in error(str(path), test_split=None) and "needs at least 2" in error(str(path),
                                                                                                   test_split=None)


def test_test_labels_must_be_classes_of_train_and_test_texts_must_not_be_empty(tmp_path):
    path = save_dataset(tmp_path / "strings", train={"text": ["a", "b"], "label": ["pos", "neg"]},
                        test={"text": ["c", "d"], "label": ["pos", "maybe"]})
    msg = error(str(path))
    assert "split 'test', example 1" in msg and "'maybe'" in msg and "['neg', 'pos']" in msg
    path = save_dataset(tmp_path / "blank", train={"text": ["a", "b"], "label": ["pos", "neg"]},
                        test={"text": ["c", " "], "label": ["pos", "neg"]})
    assert "split 'test', example 1" in error(str(path)) and "the test text is empty" in error(str(path))


def test_offline_a_dataset_not_in_the_cache_names_it_the_setting_and_local_copies(tmp_path):
    assert os.environ.get("HF_DATASETS_OFFLINE") == "1"  # conftest: no test reaches the network
    msg = error("semiseq-tests/no-such-dataset")
    assert "'semiseq-tests/no-such-dataset' is not in the local cache" in msg
    assert "HF_DATASETS_OFFLINE=1" in msg and "save_to_disk" in msg and "data.data_files" in msg
    assert "datasets.load_dataset('semiseq-tests/no-such-dataset')" in msg
    msg = error(str(tmp_path / "nowhere"))
    assert f"data.path={tmp_path / 'nowhere'} does not exist" in msg
    (tmp_path / "data.tsv").write_text("text\tlabel\n")
    assert "cannot tell the format of a '.tsv' file" in error(str(tmp_path / "data.tsv"))


def test_without_the_extra_data_hf_names_the_install_command(tmp_path, monkeypatch):
    path = str(imdb_like(tmp_path / "imdb"))
    monkeypatch.setitem(sys.modules, "datasets", None)  # `import datasets` now fails as when it is not installed
    msg = error(path)
    assert "not installed" in msg and "pip install -c constraints.txt -e '.[hf]'" in msg


def test_the_corpus_cache_keys_the_dataset_by_content_splits_and_columns(make_cfg, tmp_path, caplog):
    """The same dataset tokenises once; the same folder written again with other text, another split or column
    choice makes a new entry."""
    path = imdb_like(tmp_path / "imdb")

    def build(*overrides):
        caplog.clear()
        with caplog.at_level(logging.INFO, logger="semiseq.data.prepare"):
            corpus = pipeline.build_corpus(make_cfg("data=hf", f"data.path={path}", *overrides))
        return corpus, "tokenised" in caplog.text

    first, built = build("data.unlabeled_split=unsupervised")
    assert built and first.name == "imdb" and len(first.unlabeled) == 80 and first.class_names == ["neg", "pos"]
    again, built = build("data.unlabeled_split=unsupervised")
    assert not built and again.fingerprint() == first.fingerprint()
    assert build()[1] and len(build()[0].unlabeled) == 0  # another split choice
    other, built = build("data.unlabeled_split=unsupervised", "data.test_split=null")
    assert built and len(other.test) == 6
    save_dataset(path, class_labels(), train=rows(60, start=1), test=rows(20, start=100),  # other training text
                 unsupervised={"text": rows(80, start=500)["text"], "label": [-1] * 80})
    edited, built = build("data.unlabeled_split=unsupervised")
    assert built and edited.fingerprint() != first.fingerprint()


def test_train_py_pretrains_fine_tunes_and_tests_on_a_local_dataset_then_eval_uses_it(make_cfg, tmp_path):
    """The issue's `python train.py data=hf data.path=<local dataset>`, with a label budget: SA pretraining on the
    unsupervised + training text (on demand, cached), fine-tuning from it, the test; then the checkpoint predicts and
    tests on the same data."""
    path = imdb_like(tmp_path / "imdb")
    env = dict(os.environ, SEMISEQ_LOG_DIR=str(tmp_path / "logs"), HYDRA_FULL_ERROR="0")
    command = [sys.executable, str(ROOT / "train.py"), "data=hf", f"data.path={path}",
               "data.unlabeled_split=unsupervised", "data.num_labels=20", *TINY]
    out = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "no cached sa weights for this config: pretraining them" in out.stderr + out.stdout
    assert "[semiseq] imdb init=sa: test accuracy" in out.stdout
    (results,) = [read_json(p) for p in (tmp_path / "logs").rglob("results.json") if "pretrain-" not in str(p)]
    assert results["data"] == "imdb" and results["init"] == "sa" and results["tensors_loaded"] == 5
    assert results["num_labels"] == 20 and results["test/acc"] >= 0
    pretraining = read_json(next((tmp_path / "logs").rglob("pretrain-sa/results.json")))
    assert pretraining["steps"] == 8

    model = semiseq.load(results["best_checkpoint"])
    assert model.data == "imdb" and model.class_names == ["neg", "pos"]
    assert len(model.predict(["good great fine", "bad awful dull"])) == 2
    cfg = make_cfg("data=hf", f"data.path={path}", "data.unlabeled_split=unsupervised")
    tested = inference.evaluate(model, pipeline.build_corpus(cfg))
    assert tested["num_examples"] == 20 and tested["test/acc"] == pytest.approx(results["test/acc"])


def test_data_files_from_the_command_line(make_cfg, tmp_path):
    """data.path=parquet with data.data_files={train: ..., test: ...} as typed in the README, through the config."""
    for split, n, start in (("train", 30, 0), ("test", 10, 100)):
        datasets.Dataset.from_dict(rows(n, start)).to_parquet(str(tmp_path / f"{split}.parquet"))
    cfg = make_cfg("data=hf", "data.path=parquet",
                   f"data.data_files={{train: {tmp_path}/train.parquet, test: {tmp_path}/test.parquet}}")
    corpus = pipeline.build_corpus(cfg)
    assert corpus.name == tmp_path.name and len(corpus.test) == 10 and len(corpus.train) + len(corpus.val) == 30
    assert corpus.class_names == ["0", "1"]
