"""The paper's SA-LSTM: the backbone pretrained as a sequence autoencoder (read a text, then reconstruct it)."""

from __future__ import annotations

import torch

from semiseq import SemiseqError
from semiseq.data.corpus import PAD, UNK
from semiseq.nets import Backbone, State
from semiseq.objectives import NetworkObjective
from semiseq.objectives.lm import LanguageModel


def corrupt(tokens: torch.Tensor, noise: float) -> torch.Tensor:
    """``tokens`` with each real token replaced by <unk> with probability ``noise`` (padding stays padding)."""
    drop = (torch.rand(tokens.shape, device=tokens.device) < noise) & (tokens != PAD)
    return tokens.masked_fill(drop, UNK)


class SequenceAutoencoder(LanguageModel):
    """The paper's SA-LSTM: the backbone reads the sequence, then the *same* backbone, started from
    that final state, reconstructs it token by token. Encoder and decoder are one set of weights.

    ``noise`` > 0 makes it a denoising autoencoder (Hill et al. 2016): while training, the encoder reads the
    sequence with each token replaced by <unk> with that probability, and the decoder reconstructs the clean one."""

    def __init__(self, backbone: Backbone, dropout: float = 0.0, softmax: str = "full",
                 cutoffs: tuple[int, ...] = (2000, 10000), noise: float = 0.0):
        super().__init__(backbone, dropout, softmax, cutoffs)
        if noise and self.continuous:
            raise SemiseqError(f"objective.noise={noise} replaces tokens by <unk>, and this data has real-valued "
                               "steps; pass objective.noise=0")
        self.noise = noise

    def source(self, tokens: torch.Tensor) -> torch.Tensor:
        """What the encoder reads: ``tokens``, corrupted while training when ``noise`` > 0."""
        return corrupt(tokens, self.noise) if self.training and self.noise else tokens

    @property
    def encoder(self) -> Backbone:
        return self.backbone

    @property
    def decoder(self) -> Backbone:
        return self.backbone

    def forward(self, tokens: torch.Tensor, lengths: torch.Tensor, state: State | None = None):
        return super().forward(tokens, lengths, self.encoder.encode(self.source(tokens), lengths, state))

    def start_state(self, tokens: torch.Tensor, lengths: torch.Tensor, window: int) -> State:
        return self.encoder.encode_windows(self.source(tokens), lengths, window)


class SA(NetworkObjective):
    """Pretrain the backbone as a sequence autoencoder on the unlabeled + training text; ``noise`` > 0: a denoising
    one (see :class:`SequenceAutoencoder`)."""

    description = "SA-LSTM pretraining weights"
    network = SequenceAutoencoder

    def __init__(self, name: str, embeddings: str | None = None, freeze_embeddings: bool = False,
                 noise: float = 0.0, adapt_steps: int = 0, adapt_lr: float | None = None):
        if not 0 <= noise < 1:
            raise SemiseqError(f"objective.noise={noise} is the probability of replacing a token; pass one in [0, 1)")
        super().__init__(name, embeddings, freeze_embeddings, adapt_steps, adapt_lr)
        if noise:  # 0: the key as before
            self.settings["noise"] = noise

    @property
    def network_options(self) -> dict:
        return {"noise": self.settings["noise"]} if "noise" in self.settings else {}
