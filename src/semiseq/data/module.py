"""Batches for Lightning: length-bucketed, right-padded, deterministic from a seed."""

from __future__ import annotations

from typing import Callable

import lightning as L
import numpy as np
import torch
from lightning.pytorch.utilities import CombinedLoader
from torch.utils.data import DataLoader, Sampler

from semiseq.data.corpus import Corpus, Sequences, batched


class BucketBatchSampler(Sampler[list[int]]):
    """Shuffle, sort by length within chunks of ``chunk_batches`` batches, then shuffle the batches:
    batches hold similar lengths (little padding) yet every epoch sees a new order.

    The order depends only on ``(seed, epoch)`` (its own generator, not the global random state). Each
    iteration takes the next epoch, or asks ``position()`` for ``(epoch, batches to skip)``: where a
    trainer is, e.g. in the middle of an epoch when a run resumes.

    With ``num_replicas`` > 1 DDP processes, ``batch_size`` is per process: every process builds the same
    order of global batches of ``batch_size * num_replicas`` (the batches one process would make with that
    size) and takes its share of each, ``batch[rank::num_replicas]``. A DDP step then sees the samples of
    one global batch, and every process the same number of batches: in training a last global batch too
    small to give every process a sample is left out; in evaluation every sample is served once (a process
    may then get one batch fewer)."""

    def __init__(self, lengths: np.ndarray, batch_size: int, shuffle: bool = True, bucket: bool = True,
                 chunk_batches: int = 200, seed: int = 0, position: Callable[[], tuple[int, int]] | None = None,
                 num_replicas: int = 1, rank: int = 0):
        self.lengths, self.batch_size = np.asarray(lengths), batch_size
        self.num_replicas, self.rank, self.global_batch = num_replicas, rank, batch_size * num_replicas
        self.shuffle, self.bucket, self.chunk, self.seed = shuffle, bucket, self.global_batch * chunk_batches, seed
        self.epoch, self.position = 0, position
        # global batches with fewer samples than this are not served here (see the class doc)
        self._min_batch = num_replicas if shuffle else rank + 1

    def __len__(self) -> int:
        full, rest = divmod(len(self.lengths), self.global_batch)
        return full + (rest >= self._min_batch)

    def __iter__(self):
        epoch, skip = self.position() if self.position else (self.epoch, 0)
        rng = np.random.default_rng((self.seed, epoch))
        self.epoch = epoch + 1
        n = len(self.lengths)
        order = rng.permutation(n) if self.shuffle else np.arange(n)
        if self.bucket:
            chunk = self.chunk if self.shuffle else n  # evaluation: one global sort
            order = np.concatenate([c[np.argsort(self.lengths[c], kind="stable")]
                                    for c in np.split(order, range(chunk, n, chunk))]) if n else order
        batches = np.split(order, range(self.global_batch, n, self.global_batch))
        if self.shuffle:
            batches = [batches[i] for i in rng.permutation(len(batches))]
        mine = [b[self.rank::self.num_replicas] for b in batches if len(b) >= self._min_batch]
        return iter(b.tolist() for b in mine[skip:])


class SequenceDataModule(L.LightningDataModule):
    """Serves a :class:`Corpus` to a pretraining (text only), an adaptation (a pretraining on the training texts
    alone: ``objective.adapt_steps``), a classification or a joint task. A joint
    training batch is ``{"labeled": ..., "unlabeled": ...}``: each labeled batch of an epoch comes with
    a batch of ``text_batch_size`` pretraining texts (the epoch ends with the shorter of the two)."""

    TASKS = ("pretrain", "adapt", "classify", "joint")
    # The splits each task's fit reads ("pretrain": unlabeled + train text), refused up front when empty. A
    # classifier is fitted to be tested: an empty test split then stops it before training, not after.
    NEEDS = {"pretrain": ("pretrain", "val"), "adapt": ("train", "val"), "classify": ("train", "val", "test"),
             "joint": ("train", "val", "test")}
    READERS = {"pretrain": "pretraining", "adapt": "adaptation to the training texts", "classify": "fine-tuning",
               "joint": "joint training"}

    def __init__(self, corpus: Corpus, task: str, batch_size: int, eval_batch_size: int = 256,
                 max_len: int | None = None, bucket: bool = True, num_workers: int = 0, seed: int = 0,
                 text_batch_size: int | None = None):
        super().__init__()
        if task not in self.TASKS:
            raise ValueError(f"task must be one of {self.TASKS}, got {task!r}")
        self.corpus, self.task, self.batch_size, self.eval_batch_size = corpus, task, batch_size, eval_batch_size
        self.max_len, self.bucket, self.num_workers, self.seed = max_len, bucket, num_workers, seed
        self.text_batch_size = text_batch_size or batch_size
        # Where a training pass starts, as the trainer starts an epoch: the epoch whose order it takes and the
        # batches of it to skip. The order follows the trainer's epoch counter, not the number of passes (Lightning
        # may start a resumed run's loader more than once); semiseq.resume.LastCheckpoint continues a resumed epoch.
        self.position: Callable[[int], tuple[int, int]] = lambda epoch: (epoch, 0)

    @property
    def vocab(self):
        return self.corpus.vocab

    def setup(self, stage: str) -> None:
        """Lightning calls this before a fit, validation or test loop: refuse a split it needs that is empty."""
        needs = {"fit": (self.NEEDS[self.task], self.READERS[self.task]), "validate": (("val",), "validation"),
                 "test": (("test",), "testing")}
        if stage in needs:
            self.corpus.require(*needs[stage])

    def _loader(self, data: Sequences, train: bool, batch_size: int | None = None) -> DataLoader:
        data = data.truncated(self.max_len)
        # Under DDP each process takes its share of every batch here (Lightning cannot put its
        # DistributedSampler into a batch sampler like this one: the trainer runs with use_distributed_sampler=False)
        replicas, rank = (self.trainer.world_size, self.trainer.global_rank) if self.trainer else (1, 0)
        position = (lambda: self.position(self.trainer.current_epoch)) if train and self.trainer else None
        if train and self.trainer and self.trainer.overfit_batches > 0:  # debug=overfit: the same batches every epoch
            position = lambda: (0, 0)  # noqa: E731  (Lightning turns off a sampler's shuffling, not this one's)
        sampler = BucketBatchSampler(data.lengths, batch_size or (self.batch_size if train else self.eval_batch_size),
                                     shuffle=train, bucket=self.bucket, seed=self.seed, position=position,
                                     num_replicas=replicas, rank=rank)
        # Its own generator: starting an iterator then draws its worker seed from it, not from the global
        # random state, so validating does not shift training's dropout draws (and a resume stays exact).
        return DataLoader(data, batch_sampler=sampler, collate_fn=batched, num_workers=self.num_workers,
                          persistent_workers=self.num_workers > 0, pin_memory=torch.cuda.is_available(),
                          generator=torch.Generator().manual_seed(self.seed))

    def train_dataloader(self) -> DataLoader | CombinedLoader:
        if self.task == "joint":
            return CombinedLoader({"labeled": self._loader(self.corpus.supervised("train"), train=True),
                                   "unlabeled": self._loader(self.corpus.pretrain_text(), True, self.text_batch_size)},
                                  mode="min_size")
        if self.task == "pretrain":
            return self._loader(self.corpus.pretrain_text(), train=True)
        # adapt: every training text, those a label budget leaves out of fine-tuning too
        return self._loader(self.corpus.train if self.task == "adapt" else self.corpus.supervised("train"), train=True)

    def val_dataloader(self) -> DataLoader:  # fine-tuning selects its epoch on the validation labels it may use
        text = self.task in ("pretrain", "adapt")
        return self._loader(self.corpus.val if text else self.corpus.supervised("val"), train=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader(self.corpus.test, train=False)
