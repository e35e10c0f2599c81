"""Raw texts -> a tokenised :class:`Corpus`, stored once as flat arrays keyed by the data config.

The cache entry is a folder of ``.npy`` files opened as memory maps, so a sweep tokenises once and
memory stays flat as the corpus grows. It is written to a temporary folder and renamed into place;
``meta.json`` (written last) records each file's size, and an entry that does not match it is
rebuilt.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from functools import partial
from pathlib import Path
from typing import Callable

import numpy as np
from filelock import FileLock

from semiseq import SemiseqError, atomic
from semiseq.data.corpus import Corpus, Sequences, Vocab
from semiseq.data.texts import Texts
from semiseq.data.tokenize import Tokenizer, build_vocab, encode, split_sentences

log = logging.getLogger(__name__)

FORMAT = 2  # bump when the cached layout, tokenisation or a parser changes (2: 20 Newsgroups keeps blank posts)
SPLITS = ("train", "val", "test", "unlabeled")
UNLABELED_SOURCES = {"imdb": "semiseq.data.imdb", "rt": "semiseq.data.rt"}


def unlabeled_loader(name: str) -> Callable[..., list[str]]:
    """The ``load_unlabeled`` of a named dataset (``data.unlabeled=imdb``)."""
    if name not in UNLABELED_SOURCES:
        raise SemiseqError(f"unknown unlabeled source data.unlabeled={name!r}; choose one of "
                           f"{sorted(UNLABELED_SOURCES)} or null")
    import importlib

    return importlib.import_module(UNLABELED_SOURCES[name]).load_unlabeled


def describe(fn: Callable | None) -> dict | None:
    """A JSON-able identity of a (partial) loader: its qualified name and arguments. A loader whose data its arguments
    do not pin down (a Hub dataset's latest revision, a dataset folder edited in place) has an ``identity`` attribute:
    a function of the same keyword arguments returning what identifies that data (``semiseq.data.hf``)."""
    if fn is None:
        return None
    args = {**dict(enumerate(fn.args)), **fn.keywords} if isinstance(fn, partial) else {}
    func = fn.func if isinstance(fn, partial) else fn
    described = {"fn": f"{func.__module__}.{func.__qualname__}",
                 "args": {str(k): _identity(v) for k, v in args.items()}}
    if (identify := getattr(func, "identity", None)) is not None:
        described["identity"] = identify(**fn.keywords) if isinstance(fn, partial) else identify()
    return described


def _identity(value) -> str:
    """A value as text; a path that exists also gets its size and modification time, so edited data
    files make a new cache entry instead of reusing a stale one."""
    text = str(value)
    if isinstance(value, str) and value and os.path.exists(os.path.expanduser(value)):
        stat = os.stat(os.path.expanduser(value))
        text += f"@{stat.st_size}:{stat.st_mtime_ns}"
    return text


def make_corpus(source: Callable[[], Texts], name: str | None = None, unlabeled: str | None = None,
                unlabeled_root: str | None = None, unlabeled_sentences: bool = False,
                data_dir: str = "~/.cache/semiseq/data", level: str = "word",
                lowercase: bool = True, punctuation: bool = True, min_freq: int = 1, max_vocab: int | None = None,
                val_fraction: float = 0.15, seed: int = 0, cache_dir: str | None = None) -> Corpus:
    """Load ``source()`` (plus unlabeled text from another dataset), hold out ``val_fraction`` of the
    training set for validation (``unlabeled_sentences``: the extra text split into sentences, for
    sentence-level tasks such as RT), tokenise, build the vocabulary from training text (labeled + unlabeled)
    only, and cache the result; a later call with the same arguments opens the cache instead."""
    tokenizer = Tokenizer(level, lowercase, punctuation)
    settings = dict(source=describe(source), unlabeled=unlabeled, unlabeled_root=_identity(unlabeled_root),
                    unlabeled_sentences=unlabeled_sentences,
                    **tokenizer.settings(), min_freq=min_freq, max_vocab=max_vocab, val_fraction=val_fraction,
                    seed=seed, format=FORMAT)
    build = partial(_build, source, unlabeled, unlabeled_root, unlabeled_sentences, data_dir, tokenizer, min_freq,
                    max_vocab, val_fraction, seed, name)
    digest = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]
    if cache_dir is None:
        corpus = build()
    else:
        entry = Path(cache_dir).expanduser() / f"{name or 'corpus'}-{digest}"
        entry.parent.mkdir(parents=True, exist_ok=True)
        with FileLock(str(entry) + ".lock"):
            corpus = _open(entry)
            if corpus is None:
                start = time.perf_counter()
                corpus = build()
                _store(corpus, entry, settings)
                log.info("tokenised %s in %.1fs (%s tokens, vocabulary %d) -> %s", corpus.name,
                         time.perf_counter() - start, f"{sum(int(s.offsets[-1]) for s in _splits(corpus)):,}",
                         len(corpus.vocab), entry)
                corpus = _open(entry)
    corpus.empty_hints = _empty_hints(corpus, source, val_fraction)
    return corpus


def _empty_hints(corpus: Corpus, source: Callable, val_fraction: float) -> dict[str, tuple[str, str]]:
    """What left each split empty and the setting to change (see :meth:`Corpus.require`). The data configs pass each
    argument of the source as ``data.<argument>`` (``data.test``, ``data.max_test``)."""
    args = source.keywords if isinstance(source, partial) else {}
    n = len(corpus.train) + len(corpus.val)  # training examples with tokens, before the validation split
    held = f"data.corpus.val_fraction={val_fraction}"
    if not n:
        train = (("data.max_train=0", "pass e.g. data.max_train=null (all of them)") if args.get("max_train") == 0
                 else ("no training text has a token", "check the training data and data.corpus.level/punctuation"))
    else:
        train = (f"{held} holds out all {n} training examples for validation",
                 "lower data.corpus.val_fraction or add training examples")
    if not val_fraction:
        val = (held, "pass e.g. data.corpus.val_fraction=0.15")
    else:
        val = (f"{held} of {n} training examples rounds to 0",
               f"pass data.corpus.val_fraction={1 / n:.2g} or more, or add training examples" if n > 1
               else "add training examples")
    if args.get("test"):
        test = (f"the test file {args['test']} holds no examples",
                "add examples to it, or pass data.test=null to hold out part of the training set")
    elif args.get("test_split"):
        test = (f"the split {args['test_split']!r} of {args.get('path')} holds no examples",
                "pass data.test_split= another split, or null to hold out part of the training split")
    elif args.get("max_test") == 0:
        test = ("data.max_test=0", "pass e.g. data.max_test=null (all of them)")
    else:
        test = ("the data has no test examples", "check the data's test files (data.root)")
    return {"train": train, "val": val, "test": test,
            "pretrain": (f"no unlabeled texts, and {train[0]}", train[1])}


def _build(source, unlabeled, unlabeled_root, unlabeled_sentences, data_dir, tokenizer, min_freq, max_vocab,
           val_fraction, seed, name) -> Corpus:
    texts = source()
    extra = unlabeled_loader(unlabeled)(root=unlabeled_root, cache_dir=data_dir) if unlabeled else []
    if unlabeled_sentences:
        extra = [s for text in extra for s in split_sentences(text)]
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(texts.train))
    n_val = int(round(val_fraction * len(order)))
    val_idx, train_idx = np.sort(order[:n_val]), np.sort(order[n_val:])
    tokens = {
        "train": [tokenizer(texts.train[i]) for i in train_idx],
        "val": [tokenizer(texts.train[i]) for i in val_idx],
        "test": [tokenizer(t) for t in texts.test],
        "unlabeled": [tokenizer(t) for t in [*texts.unlabeled, *extra]],
    }
    labels = {"train": np.asarray(texts.train_labels, dtype=np.int64)[train_idx],
              "val": np.asarray(texts.train_labels, dtype=np.int64)[val_idx],
              "test": np.asarray(texts.test_labels, dtype=np.int64), "unlabeled": None}
    vocab = build_vocab([*tokens["train"], *tokens["unlabeled"]], min_freq, max_vocab)  # never val/test
    if (empty := next((i for i, t in enumerate(tokens["test"]) if not t), None)) is not None:
        # Training may drop a text with no tokens; testing may not: the score would silently cover fewer examples.
        hint = "" if tokenizer.punctuation else ", or keep punctuation marks as tokens (data.corpus.punctuation=true)"
        raise SemiseqError(f"{texts.name}: test text {empty} ({texts.test[empty][:60]!r}) has no tokens under the "
                           f"tokeniser {tokenizer.settings()}; every test example counts towards the score, so it "
                           f"cannot be dropped: fix or remove it in the test data{hint}")
    splits = {}
    for split in SPLITS:
        keep = [i for i, t in enumerate(tokens[split]) if t]
        if len(keep) < len(tokens[split]):
            log.warning("%s: dropped %d empty %s texts", texts.name, len(tokens[split]) - len(keep), split)
        ids, offsets = encode([tokens[split][i] for i in keep], vocab)
        splits[split] = Sequences(ids, offsets, None if labels[split] is None else labels[split][keep])
    return Corpus(name or texts.name, vocab, splits["train"], splits["val"], splits["test"], splits["unlabeled"],
                  list(texts.class_names), tokenizer.settings())


def _splits(corpus: Corpus) -> list[Sequences]:
    return [getattr(corpus, s) for s in SPLITS]


def _store(corpus: Corpus, entry: Path, settings: dict) -> None:
    with atomic.folder(entry) as tmp:  # replaces a stale or corrupt entry
        for split, seqs in zip(SPLITS, _splits(corpus)):
            np.save(tmp / f"{split}.tokens.npy", seqs.tokens)
            np.save(tmp / f"{split}.offsets.npy", seqs.offsets)
            if seqs.labels is not None:
                np.save(tmp / f"{split}.labels.npy", seqs.labels)
        (tmp / "vocab.json").write_text(json.dumps(corpus.vocab.itos))
        sizes = {p.name: p.stat().st_size for p in tmp.iterdir()}
        meta = {"name": corpus.name, "class_names": corpus.class_names, "tokenizer": corpus.tokenizer,
                "settings": settings, "sizes": sizes}
        (tmp / "meta.json").write_text(json.dumps(meta, indent=1))


def _open(entry: Path) -> Corpus | None:
    """The cached corpus, memory-mapped; None when absent, incomplete or corrupt (then rebuilt)."""
    try:
        meta = json.loads((entry / "meta.json").read_text())
        if any((entry / f).stat().st_size != size for f, size in meta["sizes"].items()):
            raise ValueError("file sizes differ from meta.json")
        vocab = Vocab(json.loads((entry / "vocab.json").read_text()))
        splits = []
        for split in SPLITS:
            labels = entry / f"{split}.labels.npy"
            splits.append(Sequences(np.load(entry / f"{split}.tokens.npy", mmap_mode="r"),
                                    np.load(entry / f"{split}.offsets.npy"),
                                    np.load(labels) if labels.exists() else None))
    except FileNotFoundError:
        return None
    except (ValueError, KeyError, OSError) as e:
        log.warning("corpus cache %s is corrupt (%s): rebuilding it", entry, e)
        return None
    train, val, test, unlabeled = splits
    return Corpus(meta["name"], vocab, train, val, test, unlabeled, meta["class_names"], meta["tokenizer"])
