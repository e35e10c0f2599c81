"""What every Lightning stage (pretraining, fine-tuning) is built from: its data module and its trainer,
with the callbacks every run has."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

import lightning as L
import torch
from hydra.utils import instantiate
from lightning.pytorch.callbacks import EarlyStopping
from lightning.pytorch.plugins.io import TorchCheckpointIO
from omegaconf import DictConfig

from semiseq import atomic
from semiseq.callbacks import Divergence, LineProgress
from semiseq.config import plain
from semiseq.data import Corpus, SequenceDataModule


class AtomicCheckpointIO(TorchCheckpointIO):
    """Write each checkpoint to a temporary file beside it and rename it into place, so a run killed
    mid-write leaves the previous checkpoint whole. (Lightning's own write goes through a temporary file
    in the system temp dir and ``shutil.move``, which copies into place when that is another filesystem.)"""

    def save_checkpoint(self, checkpoint: dict, path, storage_options=None) -> None:
        if storage_options is not None or "://" in str(path):  # remote storage: Lightning's own writer
            return super().save_checkpoint(checkpoint, path, storage_options)
        atomic.save_torch(checkpoint, path, fsync=True)


def build_datamodule(cfg: DictConfig, corpus: Corpus, task: str) -> SequenceDataModule:
    """The batches of ``task``: pretraining's in the order of ``pretrain.seed`` (part of its cache key), never of the
    fine-tuning seed that happened to start it."""
    stage, seed = (cfg.pretrain, cfg.pretrain.seed) if task in ("pretrain", "adapt") else (cfg.finetune, cfg.seed)
    return SequenceDataModule(corpus, task, stage.batch_size, cfg.data.eval_batch_size, cfg.data.max_len,
                              cfg.data.bucket, cfg.data.num_workers, seed=seed,
                              text_batch_size=cfg.mode.get("text_batch_size"))


def build_trainer(cfg: DictConfig, run_dir: Path, loggers: list, callbacks: list, **stage) -> L.Trainer:
    extra = [instantiate(c) for c in (cfg.get("callbacks") or {}).values()]
    if cfg.trainer.get("enable_progress_bar", True) and not sys.stderr.isatty():  # nohup, SLURM, CI: no bar
        extra.append(LineProgress())
    # use_distributed_sampler=False: under DDP the data module's batch samplers give each process its share
    return instantiate(cfg.trainer, default_root_dir=str(run_dir), logger=loggers or False,
                       callbacks=[*callbacks, Divergence(), *extra], plugins=[AtomicCheckpointIO()],
                       use_distributed_sampler=False, **stage)


# Trainer settings that cut a stage short or narrow what it trains on (the debug= options, max_time), with the values
# that leave it whole (Lightning's defaults)
WHOLE = {"fast_dev_run": (False, 0), "overfit_batches": (0, 0.0), "limit_train_batches": (None, 1.0),
         "limit_val_batches": (None, 1.0), "max_time": (None,)}


def shortened(cfg: DictConfig) -> dict:
    """The settings of ``cfg.trainer`` that make a stage train otherwise than its recipe says (``debug=fdr``,
    ``overfit``, ``limit``): part of a pretraining's cache key, so that such a run's weights are never taken for a
    real pretraining's (and a real run's key, with none of them set, stays as it was)."""
    found = {}
    for key, whole in WHOLE.items():
        value = cfg.trainer.get(key, whole[0])
        if not any(type(value) is type(w) and value == w for w in whole):  # limit_train_batches=1: one batch, 1.0: all
            found[key] = plain(value) if isinstance(value, DictConfig) else value
    return found


def early_stopping(patience: int | None, monitor: str, mode: str) -> list:
    """Stop when ``monitor`` has not improved for ``patience`` validations (none when ``patience`` is null)."""
    return [EarlyStopping(monitor=monitor, mode=mode, patience=patience)] if patience else []


def world_size(cfg: DictConfig) -> int:
    """How many processes ``cfg.trainer`` trains in: devices per node x nodes (devices 'auto' or -1: every
    GPU when the accelerator may be one, else one process, as Lightning counts them)."""
    devices, nodes = cfg.trainer.get("devices", "auto"), int(cfg.trainer.get("num_nodes") or 1)
    if isinstance(devices, str) and "," in devices:  # "0,2": those GPUs
        devices = [d for d in devices.split(",") if d.strip()]
    if isinstance(devices, Sequence) and not isinstance(devices, str):
        return len(devices) * nodes
    if str(devices) in ("auto", "-1"):
        gpu = cfg.trainer.get("accelerator", "auto") in ("auto", "gpu", "cuda") and torch.cuda.is_available()
        return (torch.cuda.device_count() if gpu else 1) * nodes
    return int(devices) * nodes
