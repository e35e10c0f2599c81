"""Lightning callbacks that every training stage gets (registered in ``pipeline.build_trainer``)."""

from __future__ import annotations

import logging
import math
import time

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback, ProgressBar

from semiseq import SemiseqError

log = logging.getLogger(__name__)


class Divergence(Callback):
    """Stop a stage whose loss diverges with one clear error, before anything diverged is saved.

    Diverged means: a training loss that is NaN, infinite, or more than ``FACTOR`` (10) times the stage's first
    training loss (a healthy run's loss falls from where it starts; a learning rate far too high sends it up by
    orders of magnitude, and on some CPUs it stays finite: 2e31 at ``pretrain.lr=1e30``), or a validation loss or
    perplexity that is NaN or infinite. The first loss is read at the first step and kept in the checkpoint, so a
    resumed run keeps it. Later losses are read on the steps the logger writes (every ``trainer.log_every_n_steps``),
    at epoch and training ends, and before every checkpoint, never in between: reading a GPU value waits for the
    device, which would slow every step. The error stops ``trainer.fit``, so the stage writes no result, its
    weights reach no cache, and no checkpoint holds the diverged weights."""

    FACTOR = 10.0

    def __init__(self):
        self.first: float | None = None  # the stage's first training loss
        self.last: torch.Tensor | None = None  # the latest step's loss, not read yet

    def state_dict(self) -> dict:
        return {"first": self.first}

    def load_state_dict(self, state_dict: dict) -> None:
        self.first = state_dict.get("first")

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs, batch, batch_idx) -> None:
        loss = outputs.get("loss") if isinstance(outputs, dict) else outputs
        if isinstance(loss, torch.Tensor):
            self.last = loss
        if self.first is None or trainer.global_step % max(1, trainer.log_every_n_steps) == 0:
            self.check(trainer, pl_module)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.check(trainer, pl_module)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.check(trainer, pl_module)

    def on_save_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict) -> None:
        self.check(trainer, pl_module)

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking or trainer.state.fn != "fit":
            return
        for key in ("val/loss", "val/ppl"):  # synced over DDP processes already: every process decides alike
            value = trainer.callback_metrics.get(key)
            if value is not None and not math.isfinite(float(value)):
                self.fail(trainer, pl_module, f"{key} is {float(value)}")

    def check(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.last is None:
            return
        value, self.last = float(self.last.detach()), None
        if self.first is None:  # set on every DDP process at the same step, so all check at the same steps
            self.first = value
        too_high = math.isfinite(self.first) and value > self.FACTOR * max(self.first, 0.0)
        # every DDP rank stops at the same step, or the others would wait for it forever
        if not trainer.strategy.reduce_boolean_decision(not math.isfinite(value) or too_high, all=False):
            return
        if not math.isfinite(value) or too_high:
            what = f"training loss is {value:.4g}" + (f", more than {self.FACTOR:g}x its first value ({self.first:.4g})"
                                                       if math.isfinite(value) else "")
        else:
            what = "training loss diverged on another process"
        self.fail(trainer, pl_module, what)

    @staticmethod
    def fail(trainer: L.Trainer, pl_module: L.LightningModule, what: str) -> None:
        if getattr(pl_module, "kind", "") == "classifier":
            stage, fix, kept = "fine-tuning", (f"lower finetune.lr (now {pl_module.hparams.lr:g}) or finetune.head_lr, "
                                               "check finetune.grad_clip"), "no result was written"
        else:
            stage, fix = f"{pl_module.kind.upper()} pretraining", (f"lower pretrain.lr (now {pl_module.hparams.lr:g}), "
                                                                   "check pretrain.grad_clip")
            kept = "nothing was cached"
        raise SemiseqError(f"{stage} diverged at step {trainer.global_step}: {what} (checked every "
                           f"trainer.log_every_n_steps={trainer.log_every_n_steps} steps); {fix}, or check the data; "
                           f"{kept}")


class LineProgress(ProgressBar):
    """The progress bar for output that is not a terminal (nohup, SLURM, CI): one short log line per validation
    when a stage validates every N steps (pretraining), else one per epoch, instead of a bar redrawn into the log
    at every refresh. ``pipeline.build_trainer`` picks it when stderr is not a terminal."""

    def __init__(self):
        super().__init__()
        self._enabled, self._start, self._epoch_done = True, time.perf_counter(), False

    def disable(self) -> None:
        self._enabled = False

    def enable(self) -> None:
        self._enabled = True

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._start = time.perf_counter()

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.state.fn == "fit" and trainer.check_val_every_n_epoch is None and not trainer.sanity_checking:
            self._line(trainer)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # a stage that validates every N steps has its lines; else one per epoch, written once the module's own
        # epoch-end hook (which runs after this one) has logged the epoch's training metrics
        self._epoch_done = trainer.check_val_every_n_epoch is not None

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._epoch_done:
            self._line(trainer, trainer.current_epoch - 1)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._epoch_done:
            self._line(trainer, trainer.current_epoch - 1)

    def _line(self, trainer: L.Trainer, epoch: int | None = None) -> None:
        self._epoch_done = False
        if not self._enabled or not trainer.is_global_zero:
            return
        metrics = {k: float(v) for k, v in sorted(trainer.callback_metrics.items())
                   if k.startswith(("train/", "val/")) and v.numel() == 1}
        shown = ", ".join(f"{k} {v:.4g}" for k, v in metrics.items())
        log.info("epoch %d, step %d, %.0fs: %s", trainer.current_epoch if epoch is None else epoch, trainer.global_step,
                 time.perf_counter() - self._start, shown or "no metrics yet")

