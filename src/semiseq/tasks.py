"""LightningModules: each owns one objective around a network from :mod:`semiseq.nets`.

Hyper-parameters are primitives only (so checkpoints load with ``weights_only=True``); what reading
new text needs (vocabulary, tokeniser settings, class names: ``Corpus.meta()``) travels in the
checkpoint under ``checkpoint["semiseq"]``, beside the weights.
"""

from __future__ import annotations

import contextlib
from functools import partial

import lightning as L
import torch
import torch.nn.functional as F
from hydra.utils import get_class, instantiate
from torchmetrics import MeanMetric
from torchmetrics.classification import MulticlassAccuracy

from semiseq.nets import Backbone, Classifier, last_step, linear_gain_loss


def slanted_triangular(step: int, total: int, cut_frac: float = 0.1, ratio: float = 32.0) -> float:
    """ULMFiT's slanted triangular learning rate (Howard & Ruder 2018, eq. 3) at ``step`` of ``total``, as a
    factor of the peak rate: from 1/ratio up to 1 over the first ``cut_frac`` of the steps, then linearly back."""
    cut = max(1, int(total * cut_frac))
    p = step / cut if step < cut else 1 - (step - cut) / max(1, total - cut)
    return (1 + max(p, 0.0) * (ratio - 1)) / ratio


def token_network(network: str, backbone: Backbone, output: dict, options: dict | None = None):
    """A pretraining objective's network (its class' import path, so that hparams stay primitive) on ``backbone``,
    with ``model.output``'s softmax, the backbone's output dropout and the objective's ``options`` (e.g. the SA's
    noise)."""
    return get_class(network)(backbone, backbone.dropout, output["softmax"], tuple(output["cutoffs"]),
                              **(options or {}))


class _Task(L.LightningModule):
    """What both tasks share: Adam, and the kind + corpus metadata stored in every checkpoint."""

    kind: str

    def __init__(self, meta: dict | None):
        super().__init__()
        self.meta = meta or {}

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=self.hparams.lr, weight_decay=self.hparams.weight_decay)

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["semiseq"] = {**self.meta, "kind": self.kind}

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        self.meta = {k: v for k, v in checkpoint.get("semiseq", {}).items() if k != "kind"}


class Pretrainer(_Task):
    """Unsupervised pretraining of ``objective`` (its ``network``: see :mod:`semiseq.objectives`). Logs per-token
    cross-entropy and perplexity (squared error per step for real-valued steps). ``freeze_embedding``: the
    backbone's embedding keeps the weights it starts from (loaded after construction) while the rest trains."""

    def __init__(self, objective: str, network: str, vocab_size: int, backbone: dict, output: dict,
                 lr: float = 1e-3, weight_decay: float = 0.0, grad_clip: float | None = None,
                 tbptt_steps: int | None = None, input_dim: int | None = None, meta: dict | None = None,
                 freeze_embedding: bool = False, network_options: dict | None = None):
        super().__init__(meta)
        self.save_hyperparameters(ignore=["meta"])
        self.kind = objective
        self.net = token_network(network, Backbone(vocab_size, input_dim=input_dim, **backbone), output,
                                 network_options)
        self.net.backbone.embedding.requires_grad_(not freeze_embedding)  # Adam skips tensors without gradients
        self.val_loss = MeanMetric()
        self.automatic_optimization = False  # a step may back-propagate window by window (truncated BPTT)

    def training_step(self, batch, batch_idx):
        tokens, lengths, _ = batch
        optimizer = self.optimizers()
        optimizer.zero_grad()
        count = self.net.num_targets(lengths)
        total = 0.0
        window = self.hparams.tbptt_steps or tokens.size(1) + 1
        last = self.net.num_windows(tokens, window) - 1
        no_sync = getattr(self.trainer.strategy, "block_backward_sync", contextlib.nullcontext)  # DDP's
        for i, loss in enumerate(self.net.window_losses(tokens, lengths, window)):
            # gradients add up over windows: one step per batch. Under DDP they are averaged across
            # processes once, in the last window's backward (its reducer also takes what earlier windows left)
            with no_sync() if i < last else contextlib.nullcontext():
                self.manual_backward(loss / count)
            total = total + loss.detach()
        if self.hparams.grad_clip:
            self.clip_gradients(optimizer, gradient_clip_val=self.hparams.grad_clip, gradient_clip_algorithm="norm")
        optimizer.step()
        loss = total / count
        if self.global_step % self.trainer.log_every_n_steps == 0:  # the steps the logger writes (self.log ~1 ms)
            self.log("train/loss", loss, prog_bar=True, sync_dist=True)  # DDP: the mean over processes
        return loss

    def validation_step(self, batch, batch_idx):
        tokens, lengths, _ = batch
        count = self.net.num_targets(lengths)
        (loss,) = self.net.window_losses(tokens, lengths, tokens.size(1) + 1)  # one window: the whole sequence
        self.val_loss.update(loss / count, weight=count)  # per-token mean over the whole validation set

    def on_validation_epoch_end(self):
        loss = self.val_loss.compute()
        self.val_loss.reset()
        metrics = {"val/loss": loss} if self.net.continuous else {"val/loss": loss, "val/ppl": torch.exp(loss)}
        # real-valued steps: loss is the squared error per step. The metric has summed over every DDP
        # process already; sync_dist only says so (the mean of equal values)
        self.log_dict(metrics, prog_bar=True, sync_dist=True)


class ClassifierTask(_Task):
    """Supervised classification; reports accuracy and test error (%).

    ``head.readout='linear_gain'`` trains on the label at every step (the paper's linear label gain) and
    still predicts from the last step. ``joint`` (``network``, ``output``, ``weight``: see ``mode=joint``) adds
    that objective's per-token loss on unlabeled batches, times ``weight``, through the same backbone.
    ``perturbation`` (a ``conf/perturbation/`` node: see :mod:`semiseq.perturbations`) adds its loss on the
    frequency-normalised word embeddings (set their frequencies with ``Backbone.normalize_embeddings``)."""

    kind = "classifier"

    def __init__(self, num_classes: int, vocab_size: int, backbone: dict, head: dict, lr: float = 1e-3,
                 head_lr: float | None = None, weight_decay: float = 0.0, lr_decay: float | None = None,
                 schedule: str = "constant", warmup_fraction: float = 0.1, gradual_unfreezing: bool = False,
                 input_dim: int | None = None, joint: dict | None = None, perturbation: dict | None = None,
                 meta: dict | None = None):
        super().__init__(meta)
        self.save_hyperparameters(ignore=["meta"])
        net = Backbone(vocab_size, input_dim=input_dim, normalized=perturbation is not None, **backbone)
        self.net = Classifier(net, num_classes, head["hidden_dim"], head["dropout"], head["readout"])
        self.aux = (token_network(joint["network"], net, joint["output"], joint.get("options")) if joint
                    else None)  # the same backbone
        self.perturbation = instantiate(perturbation) if perturbation else None
        self.val_acc, self.test_acc = (MulticlassAccuracy(num_classes, average="micro") for _ in range(2))
        # loss * n, correct, n: summed on device, logged once per epoch (no sync per step); mid-epoch,
        # semiseq.resume.LastCheckpoint keeps them in last.ckpt, so a resumed run reports the whole epoch
        self.train_sums = None

    def forward(self, tokens, lengths):
        return self.net(tokens, lengths)

    def layer_groups(self) -> list[list[torch.nn.Parameter]]:
        """The classifier's parameters by layer, top down: the head, each LSTM layer from the top, the embedding."""
        backbone = self.net.backbone
        lstm = [[p for n, p in backbone.lstm.named_parameters() if n.endswith(f"_l{k}")]
                for k in reversed(range(backbone.lstm.num_layers))]
        return [list(self.net.head.parameters()), *lstm, list(backbone.embedding.parameters())]

    def configure_optimizers(self):
        # A head that learns slower than the backbone cannot just memorise a few labels from whatever features it
        # is given: the (pretrained) backbone has to carry the task. With lr_decay (ULMFiT's discriminative
        # rates) each group below the top LSTM layer learns lr_decay times slower than the one above it.
        hp = self.hparams
        head, *layers = self.layer_groups()
        names = [*(f"lstm{i}" for i in reversed(range(len(layers) - 1))), "embedding"]
        groups = [{"params": head, "lr": hp.head_lr or hp.lr, "name": "head"}]
        groups += [{"params": params, "lr": hp.lr / (hp.lr_decay or 1.0) ** k, "name": name}
                   for k, (params, name) in enumerate(zip(layers, names))]
        if self.aux:  # joint training's output layer (its backbone is the classifier's)
            groups.append({"params": [p for n, p in self.aux.named_parameters() if not n.startswith("backbone.")],
                           "lr": hp.lr, "name": "output"})
        optimizer = torch.optim.Adam(groups, lr=hp.lr, weight_decay=hp.weight_decay)
        if hp.schedule == "constant":
            return optimizer
        total = self.trainer.estimated_stepping_batches
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, partial(slanted_triangular, total=total,
                                                                         cut_frac=hp.warmup_fraction))
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    def on_train_epoch_start(self):
        if self.hparams.gradual_unfreezing:  # epoch e trains the top e + 1 groups (ULMFiT's gradual unfreezing)
            for k, params in enumerate(self.layer_groups()):
                for p in params:
                    p.requires_grad_(k <= self.current_epoch)

    def training_step(self, batch, batch_idx):
        tokens, lengths, labels = batch["labeled"] if isinstance(batch, dict) else batch  # dict: + unlabeled text
        embedded = self.net.backbone.embed(tokens)  # what a perturbation moves
        if self.hparams.head["readout"] == "linear_gain":
            steps = self.net.step_logits_of(embedded)
            loss, logits = linear_gain_loss(steps, labels, lengths), last_step(steps, lengths)
        else:
            logits = self.net.logits_of(embedded, lengths)
            loss = F.cross_entropy(logits, labels)
        n = loss.new_tensor(float(len(labels)))
        sums = torch.stack([loss.detach() * n, (logits.argmax(-1) == labels).sum().to(n.dtype), n])
        self.train_sums = sums if self.train_sums is None else self.train_sums + sums
        if self.perturbation:
            loss = loss + self.perturbation.weight * self._perturbation_loss(batch, embedded, lengths, labels,
                                                                             logits, loss)
        if self.aux:
            text, text_lengths, _ = batch["unlabeled"]
            (aux_loss,) = self.aux.window_losses(text, text_lengths, text.size(1) + 1)
            aux_loss = aux_loss / self.aux.num_targets(text_lengths)
            if (self.global_step + 1) % self.trainer.log_every_n_steps == 0:  # the steps the logger writes
                self.log_dict({"train/classifier_loss": loss,
                               f"train/{self.hparams.joint['objective']}_loss": aux_loss}, sync_dist=True)
            loss = loss + self.hparams.joint["weight"] * aux_loss
        return loss

    def _perturbation_loss(self, batch, embedded, lengths, labels, logits, loss) -> torch.Tensor:
        """The perturbation's loss on the labeled batch; one that reads unlabeled text takes the mean over the
        sequences of both batches."""
        extra = self.perturbation.loss(self.net.logits_of, embedded, lengths, labels, logits, loss)
        if self.perturbation.reads_unlabeled:
            text, text_lengths, _ = batch["unlabeled"]
            text_embedded = self.net.backbone.embed(text)
            with torch.no_grad():  # the clean prediction is a constant
                clean = self.net.logits_of(text_embedded, text_lengths)
            unlabeled = self.perturbation.loss(self.net.logits_of, text_embedded, text_lengths, None, clean, None)
            extra = (extra * len(labels) + unlabeled * len(text)) / (len(labels) + len(text))
        if (self.global_step + 1) % self.trainer.log_every_n_steps == 0:  # the steps the logger writes
            self.log(f"train/{self.perturbation.name}_loss", extra, sync_dist=True)
        return extra

    def on_train_epoch_end(self):
        if self.train_sums is not None:
            # summed over every DDP process (a no-op in one): the epoch's mean over all its samples
            loss_sum, correct, n = self.trainer.strategy.reduce(self.train_sums, reduce_op="sum")
            self.log_dict({"train/loss": loss_sum / n, "train/acc": correct / n}, sync_dist=True)
            self.train_sums = None

    def _eval_step(self, batch, acc: MulticlassAccuracy) -> torch.Tensor:
        tokens, lengths, labels = batch
        logits = self.net(tokens, lengths)  # the net's readout (linear_gain's: the last step)
        acc.update(logits, labels)
        return F.cross_entropy(logits, labels)

    def validation_step(self, batch, batch_idx):
        loss = self._eval_step(batch, self.val_acc)
        # DDP: Lightning averages val/loss over all processes' batches (sync_dist); accuracy syncs itself
        self.log("val/loss", loss, prog_bar=True, sync_dist=True)
        self.log("val/acc", self.val_acc, prog_bar=True)

    def test_step(self, batch, batch_idx):
        self.log("test/loss", self._eval_step(batch, self.test_acc), sync_dist=True)

    def on_test_epoch_end(self):
        acc = self.test_acc.compute()
        self.test_acc.reset()
        self.log_dict({"test/acc": acc, "test/error": 100.0 * (1.0 - acc)}, sync_dist=True)
