"""A dataset as raw text, before tokenisation: what every source parser returns."""

from __future__ import annotations

from dataclasses import dataclass, field


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
                raise ValueError(f"{self.name}: {len(texts)} {split} texts but {len(labels)} labels")
            bad = next((y for y in labels if not 0 <= y < len(self.class_names)), None)
            if bad is not None:
                raise ValueError(f"{self.name}: {split} label {bad} is out of range for {len(self.class_names)} "
                                 f"classes {self.class_names}")
