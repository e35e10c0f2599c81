"""The Python API (`semiseq.load` -> predict / predict_proba / embed, evaluate) on tiny checkpoints trained once."""

import subprocess
import sys
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir

import semiseq
from semiseq import SemiseqError, pipeline
from semiseq.data.corpus import UNK, collate
from semiseq.data.synthetic import make_corpus
from semiseq.inference import evaluate, load, open_texts
from semiseq.tasks import ClassifierTask, Pretrainer

from .conftest import CONF, make_objective

MAX_LEN = 8  # the classifier trains on sequences cut to 8 tokens; the smoke test split has 3..12


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """SA and LM pretraining checkpoints and a classifier fine-tuned from the SA, on the smoke corpus."""
    tmp = tmp_path_factory.mktemp("inference")
    with initialize_config_dir(config_dir=str(CONF), version_base=None):
        cfg = compose("train", overrides=[f"paths.log_dir={tmp}/logs", f"paths.output_dir={tmp}/run",
                                          "experiment=smoke", "logger=none", "callbacks=none", "objective=sa",
                                          f"data.max_len={MAX_LEN}"])
    corpus = pipeline.build_corpus(cfg)
    sa, lm = (make_objective(objective).pretrain(cfg, corpus, tmp / objective) for objective in ("sa", "lm"))
    cfg.init.checkpoint = str(sa)
    clf = pipeline.finetune(cfg, corpus, tmp / "clf")["best_checkpoint"]
    texts = [" ".join(corpus.vocab.decode(corpus.test[i][0])) for i in range(len(corpus.test))]
    return SimpleNamespace(corpus=corpus, sa=sa, lm=lm, clf=clf, texts=texts, tmp=tmp)


@pytest.fixture(scope="module")
def model(trained):
    return load(trained.clf, "cpu")


def test_predictions_are_the_argmax_of_probabilities_that_sum_to_one(model, trained):
    probs = model.predict_proba(trained.texts)
    assert probs.shape == (len(trained.texts), 2) and probs.dtype == np.float32
    np.testing.assert_allclose(probs.sum(1), 1.0, atol=1e-6)
    assert model.predict(trained.texts) == [model.class_names[k] for k in probs.argmax(1)]
    assert model.kind == "classifier" and model.class_names == trained.corpus.class_names == ["class0", "class1"]
    assert semiseq.load(trained.clf).predict(trained.texts[:3]) == model.predict(trained.texts[:3])


def test_a_text_alone_or_in_a_batch_gets_the_same_probabilities(model, trained):
    batched = model.predict_proba(trained.texts, batch_size=5)  # mixed lengths, several batches
    alone = np.concatenate([model.predict_proba([text]) for text in trained.texts])
    np.testing.assert_allclose(batched, alone, rtol=1e-5, atol=1e-6)


def test_evaluate_agrees_with_predictions_from_the_test_texts(model, trained):
    r = evaluate(model, trained.corpus)
    matrix = np.array(r["confusion_matrix"])
    assert matrix.sum() == r["num_examples"] == len(trained.corpus.test) == 32
    assert r["test/acc"] == pytest.approx(np.trace(matrix) / matrix.sum())
    assert r["test/error"] == pytest.approx(100 * (1 - r["test/acc"]), abs=1e-4)
    # the test loop (token ids, cut to max_len by the data module) and predict (text) see the same sequences
    predicted = model.predict_proba(trained.texts).argmax(1)
    expected = np.zeros_like(matrix)
    np.add.at(expected, (trained.corpus.test.labels, predicted), 1)
    assert (matrix == expected).all()


@pytest.mark.parametrize("kind", ["sa", "lm", "clf"])
def test_embeddings_are_the_top_layers_final_state(trained, kind):
    path = getattr(trained, kind)
    emb = load(path, "cpu").embed(trained.texts)
    assert emb.shape == (len(trained.texts), 2 * 16) and emb.dtype == np.float32
    task = (ClassifierTask if kind == "clf" else Pretrainer).load_from_checkpoint(path, weights_only=True).eval()
    data = trained.corpus.test.truncated(MAX_LEN)
    tokens, lengths, _ = collate([data[i] for i in range(len(data))])
    with torch.no_grad():
        h, c = task.net.backbone.encode(tokens, lengths)
    np.testing.assert_allclose(emb, torch.cat([h[-1], c[-1]], -1).numpy(), rtol=1e-5, atol=1e-6)


def test_empty_texts_unknown_words_and_overlong_texts(model, trained):
    probs = model.predict_proba(["", "   ", trained.texts[0]])
    assert np.isnan(probs[:2]).all() and not np.isnan(probs[2]).any()
    assert model.predict(["", "   ", trained.texts[0]])[:2] == [None, None]
    assert (model.embed(["", "  "]) == 0).all()  # the state before any token
    assert model.predict_proba([]).shape == (0, 2) and model.embed([]).shape == (0, 32)
    s00 = model.vocab.stoi["s00"]
    assert model.encode("Zebra qux S00") == [UNK, UNK, s00]
    np.testing.assert_array_equal(model.predict_proba(["zebra qux s00"]), model.predict_proba(["what now s00"]))
    long = " ".join(f"s0{i % 8}" for i in range(20))
    prefix = " ".join(long.split()[:MAX_LEN])
    assert model.max_len == MAX_LEN and len(model.encode(long)) == MAX_LEN
    np.testing.assert_array_equal(model.predict_proba([long]), model.predict_proba([prefix]))
    np.testing.assert_array_equal(model.embed([long]), model.embed([prefix]))
    with pytest.raises(TypeError, match="list of texts"):
        model.predict("a single string")


def test_a_pretraining_checkpoint_embeds_but_refuses_to_predict_or_test(trained):
    sa = load(trained.sa, "cpu")
    assert sa.kind == "sa" and sa.class_names == []
    for call in (lambda: sa.predict(["s00"]), lambda: sa.predict_proba(["s00"]), lambda: evaluate(sa, trained.corpus)):
        with pytest.raises(SemiseqError, match=r"is a pretraining checkpoint \(SA-LSTM\).*fine-tune it first"):
            call()


def test_testing_on_other_data_is_refused(model):
    other = make_corpus(num_topics=4, num_symbols=9, min_len=3, max_len=12, num_unlabeled=8, num_train=4, num_val=4,
                        num_test=4)
    with pytest.raises(SemiseqError, match=r"vocabulary mismatch: .* has 11 tokens but dataset 'synthetic' has 12"):
        evaluate(model, other)


def test_missing_or_foreign_files_are_one_clear_error(trained):
    with pytest.raises(SemiseqError, match="checkpoint .*nope.ckpt does not exist"):
        load(trained.tmp / "nope.ckpt")
    (trained.tmp / "notes.txt").write_text("not a checkpoint")
    with pytest.raises(SemiseqError, match="is not a readable PyTorch checkpoint"):
        load(trained.tmp / "notes.txt")
    with pytest.raises(SemiseqError, match="input file .*nope.txt does not exist"):
        open_texts(trained.tmp / "nope.txt")  # at once, before any text is read
    with pytest.raises(SemiseqError, match="no input given"):
        open_texts(None)


def test_texts_are_read_from_lines_csv_tsv_and_jsonl(tmp_path):
    (tmp_path / "a.txt").write_text("one\r\n\ntwo words\n")
    (tmp_path / "a.csv").write_text('id,review\n1,"first, with comma"\n\n2,"two\nlines"\n3,third\n')
    (tmp_path / "a.tsv").write_text("review\tid\nfirst\t1\n")
    (tmp_path / "a.jsonl").write_text('{"review": "first"}\n\n{"review": "second", "x": 1}\n')
    assert list(open_texts(tmp_path / "a.txt")) == [(1, "one"), (2, ""), (3, "two words")]
    assert list(open_texts(tmp_path / "a.csv", "review")) == [(2, "first, with comma"), (4, "two\nlines"), (6, "third")]
    assert list(open_texts(tmp_path / "a.tsv", "review")) == [(2, "first")]
    assert list(open_texts(tmp_path / "a.jsonl", "review")) == [(1, "first"), (3, "second")]
    with pytest.raises(SemiseqError, match=r"has no column 'text'; its header is \['id', 'review'\]"):
        list(open_texts(tmp_path / "a.csv"))
    with pytest.raises(SemiseqError, match=r"line 1 has no string 'text'"):
        list(open_texts(tmp_path / "a.jsonl"))


def test_import_semiseq_stays_light():
    code = "import sys, semiseq; assert callable(semiseq.load); assert 'torch' not in sys.modules, 'torch imported'"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
