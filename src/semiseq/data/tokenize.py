"""Text -> tokens -> ids: word- or character-level tokenisation and the vocabulary."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable

import numpy as np

from semiseq.data.corpus import SPECIALS, UNK, Vocab

WORD = re.compile(r"\w+(?:'\w+)?|[^\w\s]")  # words (with inner apostrophes) and single punctuation marks
WORD_ONLY = re.compile(r"\w+(?:'\w+)?")


class Tokenizer:
    """``level='word'``: words and punctuation marks (``punctuation=False`` drops the marks);
    ``level='char'``: every character, spaces included (the paper's DBpedia setting)."""

    def __init__(self, level: str = "word", lowercase: bool = True, punctuation: bool = True):
        if level not in ("word", "char"):
            raise ValueError(f"tokenizer level must be 'word' or 'char', got {level!r}")
        self.level, self.lowercase, self.punctuation = level, lowercase, punctuation
        self._pattern = WORD if punctuation else WORD_ONLY

    def settings(self) -> dict:
        return {"level": self.level, "lowercase": self.lowercase, "punctuation": self.punctuation}

    def __call__(self, text: str) -> list[str]:
        if self.lowercase:
            text = text.lower()
        return list(text) if self.level == "char" else self._pattern.findall(text)


def build_vocab(token_lists: Iterable[list[str]], min_freq: int = 1, max_size: int | None = None) -> Vocab:
    """The most frequent tokens (ties broken alphabetically, so the result is deterministic)."""
    counts = Counter()
    for tokens in token_lists:
        counts.update(tokens)
    kept = sorted((t for t, n in counts.items() if n >= min_freq and t not in SPECIALS), key=lambda t: (-counts[t], t))
    if max_size is not None:
        kept = kept[: max(0, max_size - len(SPECIALS))]
    return Vocab(SPECIALS + kept)


def encode(token_lists: list[list[str]], vocab: Vocab) -> tuple[np.ndarray, np.ndarray]:
    """Token lists -> flat int32 ids and int64 offsets (the layout of :class:`Sequences`)."""
    lookup = vocab.stoi.get
    lengths = np.fromiter((len(t) for t in token_lists), dtype=np.int64, count=len(token_lists))
    offsets = np.zeros(len(token_lists) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    ids = np.fromiter((lookup(t, UNK) for tokens in token_lists for t in tokens), dtype=np.int32, count=offsets[-1])
    return ids, offsets


SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


def split_sentences(text: str) -> list[str]:
    """Sentences of a document, split after ``.``, ``!`` or ``?`` followed by white space."""
    return [s for s in SENTENCE_END.split(text.strip()) if s]
