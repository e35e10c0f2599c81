"""LightningModules: each owns one objective around a network from :mod:`semiseq.nets`.

Hyper-parameters are primitives only (so checkpoints load with ``weights_only=True``); what reading
new text needs (vocabulary, tokeniser settings, class names: ``Corpus.meta()``) travels in the
checkpoint under ``checkpoint["semiseq"]``, beside the weights.
"""

from __future__ import annotations

import lightning as L
import torch
import torch.nn.functional as F
from torchmetrics import MeanMetric
from torchmetrics.classification import MulticlassAccuracy

from semiseq.nets import Backbone, Classifier, LanguageModel, SequenceAutoencoder

OBJECTIVES = {"sa": SequenceAutoencoder, "lm": LanguageModel}


class _Task(L.LightningModule):
    """What both tasks share: Adam, and the kind + corpus metadata stored in every checkpoint."""

    kind: str

    def __init__(self, meta: dict | None):
        super().__init__()
        self.meta = meta or {}

    @property
    def vocab(self) -> list[str] | None:
        return self.meta.get("vocab")

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=self.hparams.lr, weight_decay=self.hparams.weight_decay)

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["semiseq"] = {**self.meta, "kind": self.kind}

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        self.meta = {k: v for k, v in checkpoint.get("semiseq", {}).items() if k != "kind"}


class Pretrainer(_Task):
    """Unsupervised pretraining: ``objective='sa'`` (sequence autoencoder) or ``'lm'`` (language model).
    Logs per-token cross-entropy and perplexity (squared error per step for real-valued steps)."""

    def __init__(self, objective: str, vocab_size: int, embed_dim: int, hidden_dim: int, num_layers: int = 1,
                 embed_dropout: float = 0.0, dropout: float = 0.0, lr: float = 1e-3, weight_decay: float = 0.0,
                 grad_clip: float | None = None, tbptt_steps: int | None = None, softmax: str = "full",
                 adaptive_cutoffs: tuple[int, ...] = (2000, 10000), input_dim: int | None = None,
                 meta: dict | None = None, **_classifier_only):
        super().__init__(meta)
        if objective not in OBJECTIVES:
            raise ValueError(f"unknown pretraining objective {objective!r}; choose one of {sorted(OBJECTIVES)}")
        self.save_hyperparameters(ignore=["meta", "_classifier_only"])
        self.kind = objective
        backbone = Backbone(vocab_size, embed_dim, hidden_dim, num_layers, embed_dropout, dropout, input_dim)
        self.net = OBJECTIVES[objective](backbone, dropout, softmax, tuple(adaptive_cutoffs))
        self.val_loss = MeanMetric()
        self.automatic_optimization = False  # a step may back-propagate window by window (truncated BPTT)

    def training_step(self, batch, batch_idx):
        tokens, lengths, _ = batch
        optimizer = self.optimizers()
        optimizer.zero_grad()
        count = self.net.num_targets(lengths)
        total = 0.0
        for loss in self.net.window_losses(tokens, lengths, self.hparams.tbptt_steps or tokens.size(1) + 1):
            self.manual_backward(loss / count)  # gradients add up over windows: one step per batch
            total = total + loss.detach()
        if self.hparams.grad_clip:
            self.clip_gradients(optimizer, gradient_clip_val=self.hparams.grad_clip, gradient_clip_algorithm="norm")
        optimizer.step()
        self.log("train/loss", total / count, prog_bar=True)

    def validation_step(self, batch, batch_idx):
        tokens, lengths, _ = batch
        count = self.net.num_targets(lengths)
        (loss,) = self.net.window_losses(tokens, lengths, tokens.size(1) + 1)  # one window: the whole sequence
        self.val_loss.update(loss / count, weight=count)  # per-token mean over the whole validation set

    def on_validation_epoch_end(self):
        loss = self.val_loss.compute()
        self.val_loss.reset()
        metrics = {"val/loss": loss} if self.net.continuous else {"val/loss": loss, "val/ppl": torch.exp(loss)}
        self.log_dict(metrics, prog_bar=True)  # real-valued steps: loss is the squared error per step


class ClassifierTask(_Task):
    """Supervised classification; reports accuracy and test error (%)."""

    kind = "classifier"

    def __init__(self, num_classes: int, vocab_size: int, embed_dim: int, hidden_dim: int, num_layers: int = 1,
                 embed_dropout: float = 0.0, dropout: float = 0.0, head_dim: int = 512, head_dropout: float = 0.5,
                 lr: float = 1e-3, head_lr: float | None = None, weight_decay: float = 0.0,
                 input_dim: int | None = None, meta: dict | None = None, **_pretrain_only):
        super().__init__(meta)
        self.save_hyperparameters(ignore=["meta", "_pretrain_only"])
        backbone = Backbone(vocab_size, embed_dim, hidden_dim, num_layers, embed_dropout, dropout, input_dim)
        self.net = Classifier(backbone, num_classes, head_dim, head_dropout, dropout)
        self.train_acc, self.val_acc, self.test_acc = (MulticlassAccuracy(num_classes, average="micro")
                                                       for _ in range(3))

    def forward(self, tokens, lengths):
        return self.net(tokens, lengths)

    def configure_optimizers(self):
        # A head that learns slower than the backbone cannot just memorise a few labels from
        # whatever features it is given: the (pretrained) backbone has to carry the task.
        groups = [{"params": self.net.backbone.parameters()},
                  {"params": self.net.head.parameters(), "lr": self.hparams.head_lr or self.hparams.lr}]
        return torch.optim.Adam(groups, lr=self.hparams.lr, weight_decay=self.hparams.weight_decay)

    def _step(self, batch, acc: MulticlassAccuracy):
        tokens, lengths, labels = batch
        logits = self.net(tokens, lengths)
        acc.update(logits, labels)
        return F.cross_entropy(logits, labels)

    def training_step(self, batch, batch_idx):
        loss = self._step(batch, self.train_acc)
        self.log_dict({"train/loss": loss, "train/acc": self.train_acc}, on_step=False, on_epoch=True)
        return loss

    def validation_step(self, batch, batch_idx):
        loss = self._step(batch, self.val_acc)
        self.log_dict({"val/loss": loss, "val/acc": self.val_acc}, prog_bar=True)

    def test_step(self, batch, batch_idx):
        self.log("test/loss", self._step(batch, self.test_acc))

    def on_test_epoch_end(self):
        acc = self.test_acc.compute()
        self.test_acc.reset()
        self.log_dict({"test/acc": acc, "test/error": 100.0 * (1.0 - acc)})
