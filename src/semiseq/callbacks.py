"""Lightning callbacks that every training stage gets (registered in ``pipeline.build_trainer``)."""

from __future__ import annotations

import math

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback

from semiseq import SemiseqError


class FiniteLoss(Callback):
    """Stop training with one clear error when the training loss is NaN or infinite.

    The loss is read on the steps the logger writes (every ``trainer.log_every_n_steps``) and at the end of each
    epoch, never in between: reading a GPU value waits for the device, which would slow every step."""

    def __init__(self):
        self.last: torch.Tensor | None = None  # the latest step's loss, not read yet

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs, batch, batch_idx) -> None:
        loss = outputs.get("loss") if isinstance(outputs, dict) else outputs
        if isinstance(loss, torch.Tensor):
            self.last = loss
        if trainer.global_step % max(1, trainer.log_every_n_steps) == 0:
            self.check(trainer, pl_module)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.check(trainer, pl_module)

    def check(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.last is None:
            return
        value, self.last = float(self.last.detach()), None
        # every DDP rank stops at the same step, or the others would wait for it forever
        if not trainer.strategy.reduce_boolean_decision(not math.isfinite(value), all=False):
            return
        kind = getattr(pl_module, "kind", "")
        if kind == "classifier":
            stage, fix = "fine-tuning", (f"lower finetune.lr (now {pl_module.hparams.lr:g}) or finetune.head_lr, "
                                         "check finetune.grad_clip")
        else:
            stage, fix = f"{kind.upper()} pretraining", (f"lower pretrain.lr (now {pl_module.hparams.lr:g}), "
                                                         "check pretrain.grad_clip")
        shown = value if not math.isfinite(value) else "nan or inf on another process"
        raise SemiseqError(f"training loss is {shown} at step {trainer.global_step} of {stage} (checked every "
                           f"trainer.log_every_n_steps={trainer.log_every_n_steps} steps); {fix}, or check the data")
