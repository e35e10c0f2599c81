import numpy as np
import pytest
import torch

from semiseq.data import PAD, BucketBatchSampler, Sequences, collate
from semiseq.data.corpus import Joined
from semiseq.data.synthetic import make_corpus

SMALL = dict(num_topics=4, num_symbols=8, num_unlabeled=300, num_train=40, num_val=30, num_test=30)


def test_synthetic_corpus_is_deterministic_and_shaped_as_asked():
    a, b, c = make_corpus(seed=1, **SMALL), make_corpus(seed=1, **SMALL), make_corpus(seed=2, **SMALL)
    assert np.array_equal(a.unlabeled.tokens, b.unlabeled.tokens) and np.array_equal(a.test.labels, b.test.labels)
    assert not np.array_equal(a.unlabeled.tokens, c.unlabeled.tokens)
    assert (len(a.unlabeled), len(a.train), len(a.val), len(a.test)) == (300, 40, 30, 30)
    assert a.unlabeled.labels is None and set(a.train.labels) <= {0, 1}
    assert len(a.vocab) == 3 + 8 and a.vocab.itos[:3] == ["<pad>", "<unk>", "<eos>"]
    assert a.train.tokens.min() >= 3 and a.train.lengths.min() >= 20 and a.train.lengths.max() <= 60
    assert len(a.pretrain_text()) == 340  # unlabeled + labeled training text, never val/test


def test_only_transitions_carry_the_label():
    """Unigram counts are nearly uniform in both classes; bigram counts are not (pretraining must
    teach transitions)."""
    corpus = make_corpus(seed=0, num_train=2000, num_unlabeled=0)
    data, uni = corpus.train, np.zeros((2, 35))
    bi = np.zeros((2, 35, 35))
    for i in range(len(data)):
        seq, y = data[i]
        np.add.at(uni[y], seq, 1)
        np.add.at(bi[y], (seq[:-1], seq[1:]), 1)
    uni, bi = uni / uni.sum(1, keepdims=True), bi / bi.sum((1, 2), keepdims=True)
    assert np.abs(uni[0] - uni[1]).sum() < 0.1
    assert np.abs(bi[0] - bi[1]).sum() > 0.5


def test_bucketed_batches_cover_every_sequence_once_with_little_padding():
    lengths = np.random.default_rng(0).integers(5, 200, size=1000)
    sampler = BucketBatchSampler(lengths, batch_size=32, seed=0)
    batches = list(sampler)
    assert sorted(i for b in batches for i in b) == list(range(1000))

    def waste(batches):
        return 1 - sum(lengths[b].sum() for b in batches) / sum(len(b) * lengths[b].max() for b in batches)

    assert waste(batches) < 0.05 < waste(list(BucketBatchSampler(lengths, batch_size=32, seed=0, bucket=False)))
    assert [b for b in sampler] != batches  # a new order every epoch


def test_collate_pads_right_and_truncates():
    data = Sequences.from_lists([[3, 4, 5, 6], [7]], labels=[1, 0], max_len=3)
    tokens, lengths, labels = collate([data[0], data[1]])
    assert tokens.tolist() == [[3, 4, 5], [7, PAD, PAD]] and lengths.tolist() == [3, 1] and labels.tolist() == [1, 0]


def test_empty_sequence_is_refused_clearly():
    data = Sequences.from_lists([[3], []])
    with pytest.raises(ValueError, match="length 0"):
        collate([data[0], data[1]])


def test_each_stage_refuses_only_the_empty_splits_it_reads():
    """Pretraining reads unlabeled + train text and validation, fine-tuning train, validation and test, testing the
    test split: an empty split stops the stage that needs it (before its loop), and no other."""
    from semiseq import SemiseqError
    from semiseq.data import SequenceDataModule

    def setup(task, stage="fit", **sizes):
        SequenceDataModule(make_corpus(**{**SMALL, **sizes}), task, batch_size=8).setup(stage)

    setup("pretrain", num_train=0, num_test=0)  # unlabeled text is enough to pretrain on
    setup("pretrain", num_unlabeled=0)  # and so is the training text
    setup("classify", "test", num_train=0, num_val=0)  # eval.py action=test reads the test split only
    setup("classify", num_unlabeled=0)
    for task, stage, sizes, message in [
            ("classify", "fit", dict(num_train=0), r"the train split is empty \(data.corpus.num_train=0\), and "
                                                   r"fine-tuning needs it; pass e.g. data.corpus.num_train=200"),
            ("joint", "fit", dict(num_val=0), r"the validation split is empty .*joint training needs it"),
            ("classify", "fit", dict(num_test=0), r"the test split is empty .*fine-tuning needs it"),
            ("classify", "test", dict(num_test=0), r"the test split is empty .*testing needs it"),
            ("pretrain", "fit", dict(num_val=0), r"the validation split is empty .*pretraining needs it"),
            ("pretrain", "fit", dict(num_unlabeled=0, num_train=0),
             r"the pretraining text \(unlabeled \+ train\) is empty .*pass e.g. data.corpus.num_unlabeled=20000")]:
        with pytest.raises(SemiseqError, match=f"^synthetic: {message}"):
            setup(task, stage, **sizes)


@pytest.mark.parametrize("features", [(), (3,)], ids=["tokens", "pixel rows"])
@pytest.mark.parametrize("max_len", [None, 7])
def test_batched_fetch_gives_what_collate_gives(features, max_len):
    """The DataLoader's batched fetch (Sequences / Joined .__getitems__, a few array operations) makes the same batch,
    values and dtypes, as collating the rows one by one; Joined rows come from several parts in any order."""
    rng = np.random.default_rng(0)
    seqs = [rng.integers(3, 50, size=(int(rng.integers(1, 30)), *features)) for _ in range(60)]
    offsets = np.concatenate([[0], np.cumsum([len(s) for s in seqs])])
    tokens = np.concatenate(seqs).astype(np.uint8 if features else np.int32)
    data = Sequences(tokens, offsets, rng.integers(0, 3, 60), max_len=max_len)
    pool = Joined([Sequences(tokens[:0], np.zeros(1, np.int64)), data, data.truncated(5), data.subset(np.arange(9))])
    for dataset, n in ((data, 60), (pool, 129)):
        rows = rng.permutation(n)[:25].tolist()
        for got, want in zip(dataset.__getitems__(rows), collate([dataset[i] for i in rows])):
            assert got.dtype == want.dtype and torch.equal(got, want)
    steps, lengths, _ = data.__getitems__([4])
    expected = seqs[4][:max_len].astype(np.float32) / 255.0 if features else seqs[4][:max_len]  # pixels in [0, 1]
    assert lengths.tolist() == [len(expected)] and np.array_equal(steps[0].numpy(), expected)
