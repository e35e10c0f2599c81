"""The offline default: a corpus generated from a seed, built so that pretraining visibly helps.

Each of ``num_topics`` latent topics is a sparse Markov chain over ``num_symbols`` tokens whose
transition matrix is the mean of ``mix`` random permutation matrices, blended with ``noise``
uniform mass. Such matrices are doubly stochastic, so the stationary distribution is uniform and
sequences start from it: token counts say nothing about the topic (bag-of-words is at chance) and
only transitions do. The label is ``topic % num_classes``. Many unlabeled sequences teach an LSTM
the transitions; a few hundred labels are too few to learn them from scratch.
"""

from __future__ import annotations

import inspect

import numpy as np

from semiseq import SemiseqError
from semiseq.data.corpus import SPECIALS, Corpus, Sequences, Vocab


def topic_chains(rng: np.random.Generator, num_topics: int, num_symbols: int, mix: int, noise: float) -> np.ndarray:
    """Transition matrices [topic, from, to], each row a distribution."""
    eye = np.eye(num_symbols)
    chains = np.stack([
        np.mean([eye[rng.permutation(num_symbols)] for _ in range(mix)], axis=0) for _ in range(num_topics)
    ])
    return (1 - noise) * chains + noise / num_symbols


def sample(rng: np.random.Generator, chains: np.ndarray, n: int, min_len: int, max_len: int,
           num_classes: int) -> tuple[list[np.ndarray], np.ndarray]:
    """Sample ``n`` sequences of symbol ids (vectorised over sequences) and their labels."""
    num_topics, num_symbols, _ = chains.shape
    topics = rng.integers(num_topics, size=n)
    lengths = rng.integers(min_len, max_len + 1, size=n)
    cdf = np.cumsum(chains, axis=-1)
    seqs = np.empty((n, max_len), dtype=np.int32)
    seqs[:, 0] = rng.integers(num_symbols, size=n)
    for t in range(1, max_len):
        u = rng.random(n)[:, None]
        nxt = (u > cdf[topics, seqs[:, t - 1]]).sum(-1)
        seqs[:, t] = np.minimum(nxt, num_symbols - 1)  # guards float round-off in the last cdf entry
    return [s[:length] for s, length in zip(seqs, lengths)], topics % num_classes


def make_corpus(seed: int = 0, num_topics: int = 16, num_symbols: int = 32, mix: int = 2, noise: float = 0.1,
                min_len: int = 20, max_len: int = 60, num_classes: int = 2, num_unlabeled: int = 20000,
                num_train: int = 200, num_val: int = 1000, num_test: int = 1000) -> Corpus:
    """Generate the synthetic corpus; the same arguments always give the same corpus."""
    if num_classes < 2 or num_topics % num_classes:
        raise SemiseqError(f"data.corpus.num_topics={num_topics} must be a multiple of data.corpus.num_classes="
                           f"{num_classes} >= 2 (the label is topic % num_classes); pass e.g. "
                           "data.corpus.num_classes=2")
    if not 1 <= min_len <= max_len:
        raise SemiseqError(f"data.corpus.min_len={min_len} and max_len={max_len} must satisfy 1 <= min_len <= max_len "
                           "(an LSTM cannot read a sequence of length 0); pass e.g. data.corpus.min_len=1")
    counts = dict(num_unlabeled=num_unlabeled, num_train=num_train, num_val=num_val, num_test=num_test)
    defaults = {k: p.default for k, p in inspect.signature(make_corpus).parameters.items()}  # for the messages
    for key, n in counts.items():
        if not isinstance(n, int) or isinstance(n, bool) or n < 0:
            raise SemiseqError(f"data.corpus.{key}={n!r} is not a number of sequences (an integer >= 0); pass e.g. "
                               f"data.corpus.{key}={defaults[key]}")
    rng = np.random.default_rng(seed)
    chains = topic_chains(rng, num_topics, num_symbols, mix, noise)
    offset = len(SPECIALS)  # symbol s is token id s + 3

    def split(n: int, labeled: bool = True) -> Sequences:
        seqs, labels = sample(rng, chains, n, min_len, max_len, num_classes)
        return Sequences.from_lists([s + offset for s in seqs], labels if labeled else None)

    unlabeled, train, val, test = split(num_unlabeled, False), split(num_train), split(num_val), split(num_test)
    vocab = Vocab(SPECIALS + [f"s{i:02d}" for i in range(num_symbols)])
    hints = {split: (f"data.corpus.{key}=0", f"pass e.g. data.corpus.{key}={defaults[key]}")
             for split, key in (("train", "num_train"), ("val", "num_val"), ("test", "num_test"))}
    hints["pretrain"] = ("data.corpus.num_unlabeled=0 and data.corpus.num_train=0",
                         f"pass e.g. data.corpus.num_unlabeled={defaults['num_unlabeled']}")
    return Corpus("synthetic", vocab, train, val, test, unlabeled, [f"class{c}" for c in range(num_classes)],
                  empty_hints=hints)
