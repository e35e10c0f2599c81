"""Checkpoints a run can resume from exactly: kept current every N steps and at
epoch ends, and carrying the random state (tensors and primitives only, so they load with
``weights_only=True``). Where the data loader was is kept by :class:`semiseq.data.SequenceDataModule`."""

from __future__ import annotations

import random
import warnings
from pathlib import Path

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import Callback, Checkpoint

# A resumed run: SequenceDataModule continues the interrupted epoch itself (its state_dict), which Lightning
# cannot see, and the checkpoints folder is the run's own.
warnings.filterwarnings("ignore", message="You're resuming from a checkpoint that ended before the epoch ended")
warnings.filterwarnings("ignore", message="Checkpoint directory .* exists and is not empty")


class LastCheckpoint(Checkpoint):
    """Keeps ``dirpath/last.ckpt`` current with everything a resume needs: every ``every_n_steps``
    optimizer steps, after every epoch (``every_epoch``) and when training ends. A step checkpoint
    is written after that step's validation when one follows (a resume does not repeat it) and, with
    ``every_epoch``, a last batch leaves it to the epoch-end one (which runs the epoch-end hooks)."""

    def __init__(self, dirpath: str | Path, every_n_steps: int | None = None, every_epoch: bool = True):
        self.path = Path(dirpath) / "last.ckpt"
        self.every_n_steps, self.every_epoch = every_n_steps, every_epoch
        self._after_validation = False
        self._saved_step = None

    def _save(self, trainer: L.Trainer) -> None:
        for logger in trainer.loggers:  # metrics logged so far reach the disk with the checkpoint (CSV buffers them)
            logger.save()
        trainer.save_checkpoint(self.path, weights_only=False)
        self._saved_step = trainer.global_step

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if not self.every_n_steps or trainer.global_step % self.every_n_steps or trainer.global_step == 0:
            return
        loop = trainer.fit_loop.epoch_loop
        if self.every_epoch and loop.batch_progress.is_last_batch:
            return
        if loop._should_check_val_fx(trainer.fit_loop._data_fetcher):  # Lightning's own test, private in 2.6
            self._after_validation = True
        else:
            self._save(trainer)

    def on_validation_end(self, trainer, pl_module) -> None:
        if self._after_validation and not trainer.sanity_checking:
            self._after_validation = False
            self._save(trainer)

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        if self.every_epoch:
            self._save(trainer)

    def on_train_end(self, trainer, pl_module) -> None:
        if self._saved_step != trainer.global_step:
            self._save(trainer)


def rng_states() -> dict:
    """The global random states of torch (CPU and CUDA), numpy and Python, as tensors and primitives."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    version, state, python_gauss = random.getstate()
    return {"torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
            "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": pos,
                      "has_gauss": has_gauss, "gauss": gauss},
            "python": {"version": version, "state": list(state), "gauss": python_gauss}}


def set_rng_states(states: dict) -> None:
    """Restore what :func:`rng_states` returned."""
    torch.set_rng_state(states["torch"])
    if states["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])
    n = states["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"]))
    p = states["python"]
    random.setstate((p["version"], tuple(p["state"]), p["gauss"]))


class RandomState(Callback):
    """Saves the random states in every checkpoint and restores them when training resumes, so dropout
    draws continue where they stopped. (Data order does not use them: see ``BucketBatchSampler``.)"""

    def __init__(self):
        self._restore = None

    def state_dict(self) -> dict:
        return rng_states()

    def load_state_dict(self, state_dict: dict) -> None:
        self._restore = state_dict  # applied at train start: building the model and loaders draws from them

    def on_train_start(self, trainer, pl_module) -> None:
        if self._restore is not None:
            set_rng_states(self._restore)
            self._restore = None
