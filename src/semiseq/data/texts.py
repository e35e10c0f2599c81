"""A dataset as raw text, before tokenisation: what every source parser returns."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from semiseq import SemiseqError


@dataclass
class Texts:
    """Labeled train/test texts (labels index ``class_names``) plus optional unlabeled texts.
    Validation is carved out of ``train`` later, deterministically from the seed."""

    name: str
    class_names: list[str]
    train: list[str]
    train_labels: list[int]
    test: list[str]
    test_labels: list[int]
    unlabeled: list[str] = field(default_factory=list)

    def __post_init__(self):
        for split in ("train", "test"):
            texts, labels = getattr(self, split), getattr(self, f"{split}_labels")
            if len(texts) != len(labels):
                raise SemiseqError(f"{self.name}: {len(texts)} {split} texts but {len(labels)} labels; the parser "
                                   f"must give every {split} text one label")
            bad = next(((i, y) for i, y in enumerate(labels) if not 0 <= y < len(self.class_names)), None)
            if bad is not None:
                raise SemiseqError(f"{self.name}: {split} example {bad[0]} has label {bad[1]}, out of range for the "
                                   f"{len(self.class_names)} classes {self.class_names}; labels must be class ids "
                                   f"0-{len(self.class_names) - 1}: fix the label or add its class")


def held_out(n: int, fraction: float, seed: int = 0) -> np.ndarray:
    """A mask of the ``fraction`` of ``n >= 2`` labeled examples held out as the test split (at least one, never all),
    the same for the same ``seed``: what data=files and data=hf test on when the data has no test split."""
    n_test = min(n - 1, max(1, round(n * fraction)))
    held = np.zeros(n, dtype=bool)
    held[np.random.default_rng(seed).permutation(n)[:n_test]] = True
    return held
