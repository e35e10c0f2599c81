"""The networks, in plain torch.nn: a Backbone (embedding + LSTM) shared by the language model,
the sequence autoencoder and the classifier. Nothing here knows about Lightning.

Sequences are right-padded with PAD and come with their lengths. Padding never enters a loss (PAD
targets are ignored), a readout (the last *real* step is read) or an encoder state (see
``Backbone.encode``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from semiseq.data.corpus import EOS, PAD

State = tuple[torch.Tensor, torch.Tensor]


class LSTM(nn.LSTM):
    """``nn.LSTM`` (cuDNN's fused kernel on CUDA) that computes in float32 under autocast
    (``trainer.precision=bf16-mixed``): torch's autocast runs cuDNN's LSTM in float16 whatever the autocast
    dtype, and bf16-mixed has no loss scaling, so the small gradients of a per-token loss would underflow
    (oneDNN has no bf16 LSTM on most CPUs either). The layers around it still run in bf16."""

    def forward(self, input, hx=None):
        device = self.weight_ih_l0.device.type  # input may be a PackedSequence
        if not torch.is_autocast_enabled(device):
            return super().forward(input, hx)
        with torch.autocast(device, enabled=False):
            return super().forward(input.float(), None if hx is None else tuple(h.float() for h in hx))


class Backbone(nn.Module):
    """Embedding + LSTM: the part that pretraining teaches and the classifier inherits."""

    def __init__(self, vocab_size: int, embed_dim: int, hidden_dim: int, num_layers: int = 1,
                 embed_dropout: float = 0.0, dropout: float = 0.0, input_dim: int | None = None):
        super().__init__()
        self.input_dim = input_dim  # real-valued steps (e.g. CIFAR-10 pixel rows): a linear input layer
        self.embedding = (nn.Embedding(vocab_size, embed_dim, padding_idx=PAD) if input_dim is None
                          else nn.Linear(input_dim, embed_dim))
        self.embed_dropout = nn.Dropout(embed_dropout)
        self.lstm = LSTM(embed_dim, hidden_dim, num_layers, batch_first=True,
                         dropout=dropout if num_layers > 1 else 0.0)

    def forward(self, tokens: torch.Tensor, state: State | None = None) -> torch.Tensor:
        """tokens [B, T] -> top-layer outputs [B, T, H]. With right padding the LSTM is causal, so the
        outputs at real positions are exact; positions past a sequence's length are not to be used."""
        return self.scan(tokens, state)[0]

    def scan(self, tokens: torch.Tensor, state: State | None = None) -> tuple[torch.Tensor, State]:
        """Outputs and the state after the last column (padding included): a window of a longer sequence."""
        return self.lstm(self.embed_dropout(self.embedding(tokens)), state)

    def encode(self, tokens: torch.Tensor, lengths: torch.Tensor, state: State | None = None) -> State:
        """The (h, c) of every layer after each sequence's last real token, each [layers, B, H].

        Rows are sorted by length and the LSTM runs segment by segment between distinct lengths,
        dropping rows as they end: no step is computed on padding, as with packing, but every call
        takes the LSTM's fast equal-length path (packed batches of mixed lengths are ~3x slower on CPU).
        """
        x = self.embed_dropout(self.embedding(tokens))
        lengths = lengths.cpu()
        order = torch.argsort(lengths, descending=True, stable=True)  # the rows still running form a prefix
        x, ends = x[order.to(x.device)], lengths[order]
        if state is not None:
            state = tuple(s[:, order.to(s.device)] for s in state)
        done_h, done_c, start, active = [], [], 0, len(order)
        for end in torch.unique(ends).tolist():  # ascending
            _, (h, c) = self.lstm(x[:active, start:end], state)
            still = int((ends > end).sum())
            done_h.append(h[:, still:active])
            done_c.append(c[:, still:active])
            state, start, active = (h[:, :still], c[:, :still]), end, still
        inverse = torch.argsort(order).to(x.device)
        return torch.cat(done_h[::-1], 1)[:, inverse], torch.cat(done_c[::-1], 1)[:, inverse]

    def encode_windows(self, tokens: torch.Tensor, lengths: torch.Tensor, window: int) -> State:
        """:meth:`encode`, ``window`` steps at a time, for sequences too long to back-propagate through
        whole (truncated BPTT): the values are the same; gradient reaches only the window where each
        sequence ends, so only those windows' graphs are kept."""
        if tokens.size(1) <= window:
            return self.encode(tokens, lengths)
        lengths = lengths.cpu()
        weight = self.embedding.weight
        h = weight.new_zeros(self.lstm.num_layers, tokens.size(0), self.lstm.hidden_size)
        c = torch.zeros_like(h)
        for start in range(0, tokens.size(1), window):
            seg = (lengths - start).clamp(0, window)
            rows = (seg > 0).nonzero().squeeze(1)
            if len(rows) == 0:
                break
            at = rows.to(weight.device)
            nh, nc = self.encode(tokens[at, start:start + window], seg[rows], (h[:, at].detach(), c[:, at].detach()))
            if not bool((lengths[rows] <= start + window).any()):  # nobody ends here: keep no graph
                nh, nc = nh.detach(), nc.detach()
            h, c = h.index_copy(1, at, nh), c.index_copy(1, at, nc)
        return h, c


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
        if softmax not in ("full", "adaptive"):
            raise ValueError(f"softmax must be 'full' or 'adaptive', got {softmax!r}")
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
            return self.output(out, targets).loss * targets.numel()
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


class SequenceAutoencoder(LanguageModel):
    """The paper's SA-LSTM: the backbone reads the sequence, then the *same* backbone, started from
    that final state, reconstructs it token by token. Encoder and decoder are one set of weights."""

    @property
    def encoder(self) -> Backbone:
        return self.backbone

    @property
    def decoder(self) -> Backbone:
        return self.backbone

    def forward(self, tokens: torch.Tensor, lengths: torch.Tensor, state: State | None = None):
        return super().forward(tokens, lengths, self.encoder.encode(tokens, lengths, state))

    def start_state(self, tokens: torch.Tensor, lengths: torch.Tensor, window: int) -> State:
        return self.encoder.encode_windows(tokens, lengths, window)


class Classifier(nn.Module):
    """Backbone -> last real step -> ReLU hidden layer with dropout -> class logits."""

    def __init__(self, backbone: Backbone, num_classes: int, head_dim: int = 512, head_dropout: float = 0.5,
                 dropout: float = 0.0):
        super().__init__()
        self.backbone = backbone
        self.head = nn.Sequential(
            nn.Dropout(dropout),
            nn.Linear(backbone.lstm.hidden_size, head_dim),
            nn.ReLU(),
            nn.Dropout(head_dropout),
            nn.Linear(head_dim, num_classes),
        )

    def forward(self, tokens: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        return self.head(last_step(self.backbone(tokens), lengths))  # top layer's output at the last real token

    def step_logits(self, tokens: torch.Tensor) -> torch.Tensor:
        """Class logits at every step [B, T, C] (the linear-gain readout; padded steps are garbage)."""
        return self.head(self.backbone(tokens))


def last_step(steps: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """[B, T, ...] -> [B, ...]: each row at its last real step."""
    return steps[torch.arange(steps.size(0), device=steps.device), lengths.to(steps.device) - 1]


def linear_gain_loss(step_logits: torch.Tensor, labels: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """The paper's linear label gain: cross-entropy at every real step t of a sequence of length L,
    weighted t/(L-1) (0 at the first step, 1 at the last), averaged with those weights per sequence
    and over the batch. A one-step sequence counts its only step."""
    b, t, c = step_logits.shape
    steps = torch.arange(t, device=step_logits.device)[None, :]
    length = lengths.to(step_logits.device)[:, None]
    weight = torch.where(steps < length, steps / (length - 1).clamp(min=1), 0.0)
    weight = torch.where(length == 1, (steps == 0).to(weight.dtype), weight)
    ce = F.cross_entropy(step_logits.flatten(0, 1), labels.repeat_interleave(t), reduction="none").view(b, t)
    return ((ce * weight).sum(1) / weight.sum(1)).mean()


def token_loss(logits: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean cross-entropy over real (non-PAD) target tokens, and their count."""
    loss = F.cross_entropy(logits.flatten(0, 1), targets.flatten(), ignore_index=PAD, reduction="sum")
    count = (targets != PAD).sum()
    return loss / count, count
