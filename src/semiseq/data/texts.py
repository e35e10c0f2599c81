"""A dataset as raw text, before tokenisation: what every source parser returns."""

from __future__ import annotations

from dataclasses import dataclass, field

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
