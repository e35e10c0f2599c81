"""Perturbations of the classifier's word embeddings while fine-tuning (Miyato, Dai & Goodfellow, ICLR 2017):
each adds ``weight`` x its loss to the classifier's. They move the LSTM's input (the frequency-normalised
embeddings after dropout, see :class:`semiseq.nets.NormalizedEmbedding`) by ``r`` with ``||r||_2 = epsilon`` per
sequence, over its real steps: padding is never perturbed.

- ``random``: the loss at a random direction (the paper's control);
- ``adversarial`` (AT): the loss at ``r = epsilon g / ||g||``, ``g`` the gradient of the loss at the embeddings;
- ``virtual_adversarial`` (VAT): ``KL(p(.|x) || p(.|x + r))`` at the direction that changes the prediction most,
  found by ``iterations`` power iterations from a random one scaled to ``xi``; labels are not needed, so it
  reads unlabeled batches too. The clean prediction is a constant: no gradient flows through it.

``conf/perturbation/<name>.yaml`` builds one; a new perturbation is a class here and a yaml there.
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F

Logits = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (embedded [B, T, E], lengths [B]) -> logits [B, C]


def scale_l2(x: torch.Tensor, lengths: torch.Tensor, norm: float) -> torch.Tensor:
    """``x`` [B, T, E] with its padded steps zeroed, each sequence scaled to L2 norm ``norm`` (zero stays zero)."""
    real = torch.arange(x.size(1), device=x.device)[None, :] < lengths.to(x.device)[:, None]
    x = x * real[..., None]
    return norm * x / x.flatten(1).norm(dim=1).clamp(min=1e-12)[:, None, None]


def kl_divergence(clean: torch.Tensor, perturbed: torch.Tensor) -> torch.Tensor:
    """Mean over the batch of ``KL(softmax(clean) || softmax(perturbed))``, from logits."""
    p = F.log_softmax(clean, -1)
    return (p.exp() * (p - F.log_softmax(perturbed, -1))).sum(-1).mean()


class Perturbation:
    """``name``, ``epsilon`` (the norm of ``r`` per sequence) and ``weight`` (of the loss it adds)."""

    reads_unlabeled = False  # whether it also takes the unlabeled batches that come with the labeled ones

    def __init__(self, name: str, epsilon: float = 5.0, weight: float = 1.0):
        self.name, self.epsilon, self.weight = name, epsilon, weight

    def direction(self, logits_of: Logits, embedded, lengths, labels, logits, loss) -> torch.Tensor:
        """The direction of ``r`` (any norm)."""
        raise NotImplementedError

    def perturb(self, logits_of: Logits, embedded, lengths, labels, logits, loss) -> torch.Tensor:
        """``r`` for this batch: norm ``epsilon`` per sequence, zero on padding, no gradient."""
        return scale_l2(self.direction(logits_of, embedded, lengths, labels, logits, loss).detach(), lengths,
                        self.epsilon)

    def loss(self, logits_of: Logits, embedded, lengths, labels, logits, loss) -> torch.Tensor:
        """The loss this perturbation adds (before ``weight``): the cross-entropy at ``embedded + r``."""
        r = self.perturb(logits_of, embedded, lengths, labels, logits, loss)
        return F.cross_entropy(logits_of(embedded + r, lengths), labels)


class Random(Perturbation):
    def direction(self, logits_of, embedded, lengths, labels, logits, loss):
        return torch.randn_like(embedded)


class Adversarial(Perturbation):
    def direction(self, logits_of, embedded, lengths, labels, logits, loss):
        (g,) = torch.autograd.grad(loss, embedded, retain_graph=True)  # the clean loss still back-propagates
        return g


class VirtualAdversarial(Perturbation):
    """``xi``: the norm of the power iteration's probe; ``iterations``: how many (the paper: 1)."""

    reads_unlabeled = True

    def __init__(self, name: str, epsilon: float = 5.0, weight: float = 1.0, xi: float = 0.1, iterations: int = 1):
        super().__init__(name, epsilon, weight)
        self.xi, self.iterations = xi, iterations

    def direction(self, logits_of, embedded, lengths, labels, logits, loss):
        clean, at = logits.detach(), embedded.detach()
        d = torch.randn_like(embedded)
        for _ in range(self.iterations):
            d = scale_l2(d, lengths, self.xi).requires_grad_()
            (d,) = torch.autograd.grad(kl_divergence(clean, logits_of(at + d, lengths)), d)
        return d

    def loss(self, logits_of, embedded, lengths, labels, logits, loss):
        r = self.perturb(logits_of, embedded, lengths, labels, logits, loss)
        return kl_divergence(logits.detach(), logits_of(embedded + r, lengths))
