"""The paper's LM-LSTM: the backbone pretrained as a language model (next-token prediction)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from semiseq.data.corpus import EOS, PAD
from semiseq.nets import Backbone, State
from semiseq.objectives import NetworkObjective


def teacher_forcing(tokens: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Decoder inputs ``<eos> x1..xT`` and targets ``x1..xT <eos>`` (PAD beyond: ignored by the loss).
    Real-valued steps [B, T, F]: inputs ``0 x1..x(T-1)`` and targets ``x1..xT`` (no end symbol)."""
    if tokens.dim() == 3:
        return torch.cat([torch.zeros_like(tokens[:, :1]), tokens[:, :-1]], dim=1), tokens
    go = tokens.new_full((tokens.size(0), 1), EOS)
    inputs = torch.cat([go, tokens], dim=1)
    targets = torch.cat([tokens, tokens.new_full((tokens.size(0), 1), PAD)], dim=1)
    targets.scatter_(1, lengths.to(tokens.device).unsqueeze(1), EOS)
    return inputs, targets


def adaptive_nll(output: nn.AdaptiveLogSoftmaxWithLoss, out: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Summed negative log-likelihood of ``targets`` [N] given ``out`` [N, H] under the adaptive softmax ``output``.
    Under CPU autocast (``trainer=gpu trainer.accelerator=cpu``) it runs in float32: CPU autocast leaves log_softmax in
    bf16, which the adaptive softmax cannot copy into its float32 output. CUDA autocast computes log_softmax in
    float32, as the adaptive softmax expects, so there its matmuls stay in bf16."""
    if out.device.type == "cpu" and torch.is_autocast_enabled("cpu"):
        with torch.autocast("cpu", enabled=False):
            return output(out.float(), targets).loss * targets.numel()
    return output(out, targets).loss * targets.numel()


class LanguageModel(nn.Module):
    """Next-token prediction with the backbone (the paper's LM-LSTM).

    ``softmax='adaptive'`` replaces the full softmax over the vocabulary with an adaptive one
    (Grave et al. 2017: frequent words in a small head, rare ones in smaller clusters behind
    ``cutoffs``), much cheaper for large vocabularies; the vocabulary is sorted by frequency."""

    def __init__(self, backbone: Backbone, dropout: float = 0.0, softmax: str = "full",
                 cutoffs: tuple[int, ...] = (2000, 10000)):
        super().__init__()
        self.backbone = backbone
        self.dropout = nn.Dropout(dropout)
        hidden, self.continuous = backbone.lstm.hidden_size, backbone.input_dim is not None
        vocab = backbone.input_dim or backbone.embedding.num_embeddings  # real-valued steps: predict the values
        cutoffs = [c for c in cutoffs if c < vocab - 1]
        self.adaptive = softmax == "adaptive" and bool(cutoffs) and not self.continuous
        self.output = (nn.AdaptiveLogSoftmaxWithLoss(hidden, vocab, cutoffs, div_value=4.0) if self.adaptive
                       else nn.Linear(hidden, vocab))

    def num_targets(self, lengths: torch.Tensor) -> torch.Tensor:
        """How many targets a batch has: every token and the closing <eos> (real-valued: every step)."""
        return lengths.sum() if self.continuous else (lengths + 1).sum()

    def log_probs(self, out: torch.Tensor) -> torch.Tensor:
        """Decoder outputs [..., H] -> (unnormalised for the full softmax) log-probabilities [..., V]."""
        out = self.dropout(out)
        return self.output.log_prob(out.flatten(0, -2)).view(*out.shape[:-1], -1) if self.adaptive else self.output(out)

    def nll(self, out: torch.Tensor, targets: torch.Tensor, real: torch.Tensor | None = None) -> torch.Tensor:
        """Summed negative log-likelihood of the real (non-PAD) targets; padding is never projected.
        Real-valued steps (``real`` marks them): the summed squared error per step (the paper's L2 loss)."""
        if self.continuous:
            return F.mse_loss(self.output(self.dropout(out[real])), targets[real], reduction="sum")
        real = targets != PAD
        out, targets = self.dropout(out[real]), targets[real]
        if self.adaptive:
            return adaptive_nll(self.output, out, targets)
        return F.cross_entropy(self.output(out), targets, reduction="sum")

    def forward(self, tokens: torch.Tensor, lengths: torch.Tensor, state: State | None = None):
        """Returns (logits [B, T+1, V], targets [B, T+1]) with PAD targets to ignore."""
        inputs, targets = teacher_forcing(tokens, lengths)
        return self.log_probs(self.backbone(inputs, state)), targets

    def start_state(self, tokens: torch.Tensor, lengths: torch.Tensor, window: int) -> State | None:
        """The state prediction starts from: none for a language model."""
        return None

    def num_windows(self, tokens: torch.Tensor, window: int) -> int:
        """How many losses :meth:`window_losses` yields for ``tokens``."""
        steps = tokens.size(1) + (tokens.dim() == 2)  # teacher forcing adds <eos> to a token sequence
        return -(-steps // window)

    def window_losses(self, tokens: torch.Tensor, lengths: torch.Tensor, window: int):
        """Truncated back-propagation through time: yields the summed token loss of each ``window``
        steps in turn (backward each before taking the next); the state crosses windows detached.
        With ``window`` > T this is one loss, the same as :meth:`forward`'s."""
        inputs, targets = teacher_forcing(tokens, lengths)
        real = torch.arange(targets.size(1), device=targets.device) < lengths.to(targets.device)[:, None]
        state = self.start_state(tokens, lengths, window)
        for start in range(0, inputs.size(1), window):
            out, state = self.backbone.scan(inputs[:, start:start + window], state)
            yield self.nll(out, targets[:, start:start + window], real[:, start:start + window])
            state = tuple(s.detach() for s in state)


class LM(NetworkObjective):
    """Pretrain the backbone as a language model on the unlabeled + training text."""

    description = "LM-LSTM pretraining weights"
    network = LanguageModel
