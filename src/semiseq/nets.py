"""The networks, in plain torch.nn: a Backbone (embedding + LSTM) shared by the pretraining objectives'
networks (:mod:`semiseq.objectives`) and the classifier. Nothing here knows about Lightning.

Sequences are right-padded with PAD and come with their lengths. Padding never enters a loss (PAD
targets are ignored), a readout (the last *real* step is read) or an encoder state (see
``Backbone.encode``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from semiseq.data.corpus import PAD

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


class NormalizedEmbedding(nn.Embedding):
    """An embedding whose every lookup reads the table normalised per dimension by the word-frequency-weighted
    mean and variance (Miyato et al. 2017): a perturbation of fixed norm then means the same whatever the scale
    the embeddings learn, which they could otherwise grow to make it negligible. ``frequencies`` (a buffer,
    saved in checkpoints) holds each word's count in the training text."""

    def __init__(self, num_embeddings: int, embedding_dim: int, padding_idx: int | None = None):
        super().__init__(num_embeddings, embedding_dim, padding_idx=padding_idx)
        self.register_buffer("frequencies", torch.zeros(num_embeddings))

    def moments(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The frequency-weighted mean and standard deviation of the table, per dimension ([E] each)."""
        f = self.frequencies / self.frequencies.sum().clamp(min=1)
        mean = f @ self.weight
        return mean, (f @ (self.weight - mean) ** 2 + 1e-6).sqrt()

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        mean, std = self.moments()  # normalising the rows read, not the table: the same values, far less work
        return (F.embedding(tokens, self.weight, self.padding_idx) - mean) / std


class Backbone(nn.Module):
    """Embedding + LSTM: the part that pretraining teaches and the classifier inherits."""

    def __init__(self, vocab_size: int, embed_dim: int, hidden_dim: int, num_layers: int = 1,
                 embed_dropout: float = 0.0, dropout: float = 0.0, input_dim: int | None = None,
                 normalized: bool = False):
        super().__init__()
        self.input_dim = input_dim  # real-valued steps (e.g. CIFAR-10 pixel rows): a linear input layer
        self.dropout = dropout  # between LSTM layers, and what every network built on it drops of its outputs
        table = NormalizedEmbedding if normalized else nn.Embedding
        self.embedding = (table(vocab_size, embed_dim, padding_idx=PAD) if input_dim is None
                          else nn.Linear(input_dim, embed_dim))
        self.embed_dropout = nn.Dropout(embed_dropout)
        self.lstm = LSTM(embed_dim, hidden_dim, num_layers, batch_first=True,
                         dropout=dropout if num_layers > 1 else 0.0)

    def forward(self, tokens: torch.Tensor, state: State | None = None) -> torch.Tensor:
        """tokens [B, T] -> top-layer outputs [B, T, H]. With right padding the LSTM is causal, so the
        outputs at real positions are exact; positions past a sequence's length are not to be used."""
        return self.scan(tokens, state)[0]

    def embed(self, tokens: torch.Tensor) -> torch.Tensor:
        """tokens [B, T] -> the LSTM's input [B, T, E]: the embeddings, after dropout."""
        return self.embed_dropout(self.embedding(tokens))

    def scan(self, tokens: torch.Tensor, state: State | None = None) -> tuple[torch.Tensor, State]:
        """Outputs and the state after the last column (padding included): a window of a longer sequence."""
        return self.lstm(self.embed(tokens), state)

    @torch.no_grad()
    def normalize_embeddings(self, frequencies: torch.Tensor) -> None:
        """Make a :class:`NormalizedEmbedding` read with ``frequencies`` (word counts) from now on, with the first
        LSTM layer's input weights absorbing the normalisation: the network computes what it did before (exactly,
        without dropout), so pretrained weights keep their meaning."""
        self.embedding.frequencies.copy_(frequencies)
        mean, std = self.embedding.moments()
        w, b = self.lstm.weight_ih_l0, self.lstm.bias_ih_l0
        b += w @ mean  # W x = W (std * x_normalised + mean)
        w *= std

    def encode(self, tokens: torch.Tensor, lengths: torch.Tensor, state: State | None = None) -> State:
        """The (h, c) of every layer after each sequence's last real token, each [layers, B, H].

        Rows are sorted by length and the LSTM runs segment by segment between distinct lengths,
        dropping rows as they end: no step is computed on padding, as with packing, but every call
        takes the LSTM's fast equal-length path (packed batches of mixed lengths are ~3x slower on CPU).
        """
        x = self.embed(tokens)
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
            # cuDNN refuses a non-contiguous state, which the rows still running are with more than one layer
            state, start, active = (h[:, :still].contiguous(), c[:, :still].contiguous()), end, still
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


class Classifier(nn.Module):
    """Backbone -> a readout of its top-layer outputs -> (the backbone's dropout) ReLU hidden layer with dropout ->
    class logits. ``readout``: ``last`` reads the last real step; ``concat_pool`` the last real step, the max and the
    mean over the real steps, side by side (ULMFiT's concat pooling: a 3H-wide head input); ``linear_gain`` trains
    through :meth:`step_logits` and predicts from the last step."""

    def __init__(self, backbone: Backbone, num_classes: int, hidden_dim: int = 512, dropout: float = 0.5,
                 readout: str = "last"):
        super().__init__()
        self.backbone = backbone
        pooled = readout == "concat_pool"
        self.read = concat_pool if pooled else last_step
        width = backbone.lstm.hidden_size * (3 if pooled else 1)
        self.head = nn.Sequential(
            nn.Dropout(backbone.dropout),
            nn.Linear(width, hidden_dim),
            nn.ReLU(),
            nn.Dropout(dropout),
            nn.Linear(hidden_dim, num_classes),
        )

    def forward(self, tokens: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        return self.logits_of(self.backbone.embed(tokens), lengths)

    def logits_of(self, embedded: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """The LSTM's input [B, T, E] (:meth:`Backbone.embed`, perhaps perturbed) -> class logits [B, C], read
        from the top layer's outputs at the real tokens."""
        return self.head(self.read(self.backbone.lstm(embedded)[0], lengths))

    def step_logits(self, tokens: torch.Tensor) -> torch.Tensor:
        """Class logits at every step [B, T, C] (the linear-gain readout; padded steps are garbage)."""
        return self.step_logits_of(self.backbone.embed(tokens))

    def step_logits_of(self, embedded: torch.Tensor) -> torch.Tensor:
        """:meth:`step_logits` from the LSTM's input [B, T, E]."""
        return self.head(self.backbone.lstm(embedded)[0])


def last_step(steps: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """[B, T, ...] -> [B, ...]: each row at its last real step."""
    return steps[torch.arange(steps.size(0), device=steps.device), lengths.to(steps.device) - 1]


def concat_pool(steps: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """[B, T, H] -> [B, 3H]: each row's last real step, and its max and mean over the real steps (padding ignored)."""
    n = lengths.to(steps.device)[:, None]
    real = (torch.arange(steps.size(1), device=steps.device)[None, :] < n)[:, :, None]
    top = steps.masked_fill(~real, float("-inf")).amax(1)
    mean = (steps * real).sum(1) / n.to(steps.dtype)
    return torch.cat([last_step(steps, lengths), top, mean], 1)


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
