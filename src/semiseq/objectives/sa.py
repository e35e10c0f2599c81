"""The paper's SA-LSTM: the backbone pretrained as a sequence autoencoder (read a text, then reconstruct it)."""

from __future__ import annotations

import torch

from semiseq.nets import Backbone, State
from semiseq.objectives import NetworkObjective
from semiseq.objectives.lm import LanguageModel


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


class SA(NetworkObjective):
    """Pretrain the backbone as a sequence autoencoder on the unlabeled + training text."""

    description = "SA-LSTM pretraining weights"
    network = SequenceAutoencoder
