"""A new pretraining objective is one module and one yaml: a backward language model (ULMFiT pretrains one beside
the forward LM) written here as a user would write it, and a yaml in a config folder of their own, pretrains,
caches and initialises a classifier through train.py with nothing else changed."""

import torch

from semiseq.objectives import NetworkObjective
from semiseq.objectives.lm import LanguageModel

from .conftest import ROOT, read_json
from .test_train import train


def reverse(tokens: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Each row's real tokens in reverse order, padding left where it is."""
    steps = torch.arange(tokens.size(1), device=tokens.device)[None, :]
    last = lengths.to(tokens.device)[:, None] - 1
    return tokens.gather(1, torch.where(steps <= last, last - steps, steps))


class BackwardLanguageModel(LanguageModel):
    """Predicts each token from the ones after it: the language model of the reversed texts."""

    def forward(self, tokens, lengths, state=None):
        return super().forward(reverse(tokens, lengths), lengths, state)

    def window_losses(self, tokens, lengths, window):
        return super().window_losses(reverse(tokens, lengths), lengths, window)


class Backward(NetworkObjective):
    description = "backward LM-LSTM pretraining weights"
    network = BackwardLanguageModel


def test_reverse_keeps_padding_in_place():
    tokens = torch.tensor([[3, 4, 5, 0], [6, 7, 0, 0]])
    assert reverse(tokens, torch.tensor([3, 2])).tolist() == [[5, 4, 3, 0], [7, 6, 0, 0]]


def test_a_new_objective_is_one_module_and_one_yaml(tmp_path, monkeypatch):
    conf = tmp_path / "my_conf" / "objective"
    conf.mkdir(parents=True)
    (conf / "backward.yaml").write_text(f"_target_: {__name__}.Backward\nname: backward\n")
    monkeypatch.setenv("PYTHONPATH", str(ROOT))  # this module, importable by train.py as a user's package would be
    out = train(tmp_path, f"hydra.searchpath=[file://{tmp_path / 'my_conf'}]", "objective=backward", "logger=none")
    assert out.returncode == 0, out.stderr[-3000:]
    (run,) = (tmp_path / "logs" / "smoke" / "runs").iterdir()
    result = read_json(run / "results.json")
    assert result["init"] == "backward" and result["tensors_loaded"] == 5  # embedding + the LSTM's 4 tensors
    (cached,) = (tmp_path / "logs" / "cache" / "pretrained").glob("backward-*.ckpt")
    assert result["init_checkpoint"] == str(cached)
    weights = torch.load(cached, weights_only=True)
    assert weights["semiseq"]["kind"] == "backward"
    assert weights["hyper_parameters"]["network"] == f"{__name__}.BackwardLanguageModel"
    assert read_json(run / "pretrain-backward" / "results.json")["val/ppl"] > 1
