"""The in-memory shape of every dataset: a vocabulary plus ragged token arrays per split."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field

import numpy as np
import torch
from torch.utils.data import Dataset

from semiseq import SemiseqError

PAD, UNK, EOS = 0, 1, 2
SPECIALS = ["<pad>", "<unk>", "<eos>"]


@dataclass
class Vocab:
    """Token strings by id; ids 0, 1, 2 are always <pad>, <unk>, <eos>."""

    itos: list[str]
    stoi: dict[str, int] = field(init=False, repr=False)

    def __post_init__(self):
        if self.itos[: len(SPECIALS)] != SPECIALS:
            raise ValueError(f"a vocabulary must start with {SPECIALS}, got {self.itos[:3]}")
        self.stoi = {s: i for i, s in enumerate(self.itos)}

    def __len__(self) -> int:
        return len(self.itos)

    def encode(self, tokens: list[str]) -> list[int]:
        return [self.stoi.get(t, UNK) for t in tokens]

    def decode(self, ids) -> list[str]:
        return [self.itos[i] for i in ids]


class Sequences(Dataset):
    """A ragged array of token sequences stored flat (``tokens[offsets[i]:offsets[i+1]]``),
    with optional labels. Flat storage keeps memory small and maps straight onto a memmap."""

    def __init__(self, tokens: np.ndarray, offsets: np.ndarray, labels: np.ndarray | None = None,
                 max_len: int | None = None):
        if labels is not None and len(labels) != len(offsets) - 1:
            raise ValueError(f"{len(labels)} labels for {len(offsets) - 1} sequences")
        self.tokens, self.offsets, self.labels, self.max_len = tokens, offsets, labels, max_len

    @classmethod
    def from_lists(cls, seqs: list, labels=None, max_len: int | None = None) -> "Sequences":
        lengths = np.fromiter((len(s) for s in seqs), dtype=np.int64, count=len(seqs))
        offsets = np.zeros(len(seqs) + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        tokens = np.concatenate([np.asarray(s, dtype=np.int32) for s in seqs]) if seqs else np.zeros(0, np.int32)
        return cls(tokens, offsets, None if labels is None else np.asarray(labels, dtype=np.int64), max_len)

    def __len__(self) -> int:
        return len(self.offsets) - 1

    @property
    def lengths(self) -> np.ndarray:
        lengths = np.diff(self.offsets)
        return lengths if self.max_len is None else np.minimum(lengths, self.max_len)

    def lengths_of(self, rows: np.ndarray) -> np.ndarray:
        """The (truncated) lengths of ``rows`` only."""
        lengths = (self.offsets[rows + 1] - self.offsets[rows]).astype(np.int64)
        return lengths if self.max_len is None else np.minimum(lengths, self.max_len)

    def __getitem__(self, i: int):
        start = self.offsets[i]
        end = self.offsets[i + 1] if self.max_len is None else min(self.offsets[i + 1], start + self.max_len)
        return self.tokens[start:end], -1 if self.labels is None else int(self.labels[i])

    def __getitems__(self, rows: list[int]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The DataLoader's batched fetch: ``rows`` as one right-padded batch, what :func:`collate` makes of
        ``[self[i] for i in rows]``, gathered from the flat array in a few array operations."""
        rows = np.asarray(rows, dtype=np.int64)
        lengths = self.lengths_of(rows)
        steps = _padded(len(rows), lengths, self.tokens.shape[1:])
        _fill(steps, np.arange(len(rows)), self.tokens, self.offsets[rows], lengths)
        labels = np.full(len(rows), -1, np.int64) if self.labels is None else self.labels[rows].astype(np.int64)
        return _tensors(steps, lengths, labels)

    def truncated(self, max_len: int | None) -> "Sequences":
        return Sequences(self.tokens, self.offsets, self.labels, max_len)

    def subset(self, rows: np.ndarray) -> "Sequences":
        """The sequences ``rows``, in that order, as a new flat array."""
        lengths = np.diff(self.offsets)[rows]
        offsets = np.zeros(len(rows) + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        parts = [self.tokens[self.offsets[i]:self.offsets[i + 1]] for i in rows]
        tokens = np.concatenate(parts) if parts else self.tokens[:0]
        return Sequences(tokens, offsets, None if self.labels is None else self.labels[rows], self.max_len)


def stratified(labels: np.ndarray, n: int, seed: int) -> np.ndarray:
    """``n`` rows of ``labels`` drawn without replacement, each class in its share of ``labels`` (largest
    remainders round the shares to whole rows), sorted; the same ``seed`` draws the same rows."""
    classes, counts = np.unique(labels, return_counts=True)
    shares = counts * n / len(labels)
    take = np.floor(shares).astype(np.int64)
    take[np.argsort(-(shares - take), kind="stable")[: n - take.sum()]] += 1
    rng = np.random.default_rng(seed)
    return np.sort(np.concatenate([rng.choice(np.flatnonzero(labels == c), k, replace=False)
                                   for c, k in zip(classes, take)]))


class Joined(Dataset):
    """Several :class:`Sequences` read as one, without copying, labels dropped (the pretraining pool)."""

    def __init__(self, parts: list[Sequences]):
        self.parts = [p for p in parts if len(p)]
        self.starts = np.cumsum([0] + [len(p) for p in self.parts])

    def __len__(self) -> int:
        return int(self.starts[-1])

    @property
    def lengths(self) -> np.ndarray:
        return np.concatenate([p.lengths for p in self.parts]) if self.parts else np.zeros(0, np.int64)

    def __getitem__(self, i: int):
        k = int(np.searchsorted(self.starts, i, side="right")) - 1
        return self.parts[k][i - self.starts[k]][0], -1

    def __getitems__(self, rows: list[int]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """:meth:`Sequences.__getitems__` across the parts (labels -1)."""
        rows = np.asarray(rows, dtype=np.int64)
        part = np.searchsorted(self.starts, rows, side="right") - 1
        local = rows - self.starts[part]
        groups = [(self.parts[k], np.flatnonzero(part == k)) for k in np.unique(part)]
        lengths = np.zeros(len(rows), np.int64)
        for seqs, at in groups:
            lengths[at] = seqs.lengths_of(local[at])
        steps = _padded(len(rows), lengths, self.parts[0].tokens.shape[1:] if self.parts else ())
        for seqs, at in groups:
            _fill(steps, at, seqs.tokens, seqs.offsets[local[at]], lengths[at])
        return _tensors(steps, lengths, np.full(len(rows), -1, np.int64))

    def truncated(self, max_len: int | None) -> "Joined":
        return Joined([p.truncated(max_len) for p in self.parts])


SPLIT_NAMES = {"train": "train split", "val": "validation split", "test": "test split",
               "pretrain": "pretraining text (unlabeled + train)"}
DEFAULT_FIX = {"train": "give the data labeled training examples",
               "val": "hold out part of the training set for validation (data.corpus.val_fraction)",
               "test": "give the data test examples", "pretrain": "give the data unlabeled or training texts"}


@dataclass
class Corpus:
    """Everything a run needs from a dataset. ``unlabeled`` may be empty; the vocabulary is built
    from training text (labeled + unlabeled) only."""

    name: str
    vocab: Vocab
    train: Sequences
    val: Sequences
    test: Sequences
    unlabeled: Sequences
    class_names: list[str]
    tokenizer: dict = field(default_factory=lambda: {"level": "word", "lowercase": True, "punctuation": True})
    input_dim: int | None = None  # real-valued steps of this many features (pixel rows) instead of token ids
    # split -> (what made it empty, the setting to change), from the builder: the error :meth:`require` raises
    empty_hints: dict[str, tuple[str, str]] = field(default_factory=dict, repr=False)
    _fingerprint: str | None = field(default=None, init=False, repr=False)
    # split -> the part of it whose labels fine-tuning uses (label budgets: :meth:`with_budget`); absent: all of it
    labeled: dict[str, Sequences] = field(default_factory=dict, repr=False)

    def __post_init__(self):
        """Refuse what would fail later, deep in a training step: labels that are not class ids, empty sequences."""
        for split in ("train", "val", "test", "unlabeled"):
            seqs = getattr(self, split)
            if len(seqs) and (empty := np.flatnonzero(np.diff(seqs.offsets) == 0)).size:
                raise SemiseqError(f"{self.name}: {split} sequence {empty[0]} has no tokens ({empty.size} such); "
                                   "an LSTM cannot read a sequence of length 0: drop empty texts when building the "
                                   "corpus")
            labels = seqs.labels if split != "unlabeled" else None
            if labels is not None and len(labels):
                bad = np.flatnonzero((labels < 0) | (labels >= self.num_classes))
                if bad.size:
                    raise SemiseqError(f"{self.name}: {split} example {bad[0]} has label {labels[bad[0]]}, out of "
                                       f"range for the {self.num_classes} classes {self.class_names} ({bad.size} "
                                       f"such); labels must be class ids 0-{self.num_classes - 1}: fix the labels or "
                                       "the class names")

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def meta(self) -> dict:
        """What a checkpoint must carry to read new text as this corpus did (primitives only)."""
        return {"data": self.name, "vocab": self.vocab.itos, "tokenizer": dict(self.tokenizer),
                "class_names": list(self.class_names), "input_dim": self.input_dim}

    def fingerprint(self) -> str:
        """A digest of what pretraining reads, by content: the vocabulary, the tokeniser and the unlabeled, training
        and validation texts. The same data at any path has the same one; changed text has another."""
        if self._fingerprint is None:
            digest = hashlib.sha256(json.dumps([self.vocab.itos, self.tokenizer, self.input_dim]).encode())
            for seqs in (self.unlabeled, self.train, self.val):
                digest.update(np.ascontiguousarray(seqs.offsets, dtype=np.int64).data)
                digest.update(np.ascontiguousarray(seqs.tokens).data)
            self._fingerprint = digest.hexdigest()[:16]
        return self._fingerprint

    def with_budget(self, num_labels: int | None = None, num_val: int | None = None, seed: int = 0) -> "Corpus":
        """Fine-tuning's labels cut to a stratified, seeded ``num_labels`` of the training split and ``num_val`` of the
        validation split (None: all). Pretraining reads every text as before (the training texts whose labels are
        left out are unlabeled text to it), so every budget shares one pretraining; the test split stays whole."""
        for split, n, key in (("train", num_labels, "data.num_labels"), ("val", num_val, "data.num_val")):
            if n is None:
                continue
            seqs = getattr(self, split)
            if not isinstance(n, int) or isinstance(n, bool) or not 0 < n <= len(seqs):
                raise SemiseqError(f"{key}={n}: the {SPLIT_NAMES[split]} of {self.name} has {len(seqs):,} labeled "
                                   f"examples; pass {key}= a number from 1 to {len(seqs)}, or null for all")
            self.labeled[split] = seqs.subset(stratified(seqs.labels, n, seed))
        return self

    def supervised(self, split: str) -> Sequences:
        """The examples of ``split`` whose labels fine-tuning uses (see :meth:`with_budget`)."""
        return self.labeled[split] if split in self.labeled else getattr(self, split)

    def pretrain_text(self) -> Joined:
        """Unlabeled sequences plus the labeled training text: what pretraining may see."""
        return Joined([self.unlabeled, self.train])

    def token_counts(self) -> np.ndarray:
        """How often each vocabulary id occurs in :meth:`pretrain_text` (the unlabeled and training text), [V]."""
        parts = [self.unlabeled.tokens, self.train.tokens]
        return np.bincount(np.concatenate(parts).astype(np.int64), minlength=len(self.vocab))[:len(self.vocab)]

    def require(self, splits: tuple[str, ...], reader: str) -> None:
        """Refuse an empty split among ``splits`` (``pretrain``: :meth:`pretrain_text`) that ``reader`` (a stage)
        needs: with no examples it would train on nothing, or pick no best epoch, or test nothing."""
        for split in splits:
            if len(self.pretrain_text() if split == "pretrain" else self.supervised(split)):
                continue
            cause, fix = self.empty_hints.get(split, ("", DEFAULT_FIX[split]))
            raise SemiseqError(f"{self.name}: the {SPLIT_NAMES[split]} is empty{f' ({cause})' if cause else ''}, and "
                               f"{reader} needs it; {fix}")


def _padded(rows: int, lengths: np.ndarray, features: tuple) -> np.ndarray:
    """A batch of ``rows`` x the longest of ``lengths`` steps (x ``features``) filled with PAD, in the dtype the
    tensors are made from (float32 for real-valued steps); refuses a sequence of length 0."""
    if lengths.min(initial=1) == 0:
        raise ValueError("a sequence of length 0 reached the model; drop empty texts when loading the data")
    dtype = np.float32 if features else np.int64
    return np.full((rows, lengths.max(initial=0), *features), PAD, dtype=dtype)


def _fill(steps: np.ndarray, at: np.ndarray, tokens: np.ndarray, starts: np.ndarray, lengths: np.ndarray) -> None:
    """Copy the sequences ``tokens[starts[i]:starts[i] + lengths[i]]`` into the rows ``at`` of ``steps``."""
    row, col = np.nonzero(np.arange(steps.shape[1]) < lengths[:, None])
    steps[at[row], col] = tokens[starts[row] + col]


def _tensors(steps: np.ndarray, lengths: np.ndarray, labels: np.ndarray):
    """(tokens [B, T], lengths [B], labels [B]) as tensors; real-valued steps (uint8) scaled to [0, 1]."""
    if steps.dtype == np.float32:
        steps = steps / 255.0
    return torch.from_numpy(steps), torch.from_numpy(lengths), torch.from_numpy(labels)


def batched(batch: tuple[torch.Tensor, torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The DataLoader's collate_fn for :class:`Sequences` and :class:`Joined`: their ``__getitems__`` pads."""
    return batch


def collate(batch: list[tuple[np.ndarray, int]]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Right-pad a batch: (tokens [B, T] with PAD, lengths [B], labels [B] (-1 when unlabeled)). Steps of
    several uint8 features (pixel rows, [T, F]) become floats in [0, 1], [B, T, F], zero-padded."""
    lengths = np.fromiter((len(t) for t, _ in batch), dtype=np.int64, count=len(batch))
    steps = _padded(len(batch), lengths, np.shape(batch[0][0])[1:])  # lists of ids (inference): no .shape
    for row, (seq, _) in enumerate(batch):
        steps[row, : len(seq)] = seq
    return _tensors(steps, lengths, np.fromiter((y for _, y in batch), dtype=np.int64, count=len(batch)))
