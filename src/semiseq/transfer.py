"""Weight transfer: copy the pretrained backbone (embedding + LSTM) into a classifier, by name,
with its shapes and vocabulary checked (and, for joint training, the objective's output layer too); or a whole
pretrained network into a pretrainer that continues it (the adaptation stage)."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import torch
from torch import nn

from semiseq import SemiseqError

log = logging.getLogger(__name__)

PREFIX = "net.backbone."
AUX = "aux."  # a joint classifier's objective network (ClassifierTask.aux), whose backbone is net.backbone


class TransferError(SemiseqError):
    """A checkpoint cannot initialise this model; the message says why and what to do."""


def read_checkpoint(path: str | Path) -> dict:
    """Load a semiseq checkpoint safely (``weights_only=True``), refusing anything else clearly."""
    path = Path(path)
    if path.is_dir():
        raise TransferError(f"checkpoint {path} is a folder; pass the .ckpt file in it (e.g. "
                            f"{path / 'checkpoints' / 'pretrained.ckpt'}, or results.json's best_checkpoint)")
    if not path.is_file():
        raise TransferError(f"checkpoint {path} does not exist; pass init.checkpoint=PATH to a pretraining "
                            "checkpoint, or leave it null to pretrain (or reuse the cached weights)")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # pickled objects, a truncated file, not a torch file...
        if found := re.search(r"GLOBAL (\S+)", str(e)):  # torch names the object it refused to unpickle
            raise TransferError(f"checkpoint {path} holds a pickled Python object ({found[1]}), and loading one can "
                                "run arbitrary code, so semiseq refuses it (torch.load with weights_only=True); use a "
                                "checkpoint written by train.py, which holds only tensors and primitives") from e
        reason = str(e).strip().splitlines()[0].split(". ")[0] if str(e).strip() else "no details"
        raise TransferError(f"checkpoint {path} is not a readable PyTorch checkpoint ({type(e).__name__}: {reason}); "
                            "it may be truncated (an interrupted write or copy) or another kind of file: write it "
                            "again with train.py, or pass another checkpoint") from e
    if not isinstance(ckpt, dict) or "semiseq" not in ckpt or "state_dict" not in ckpt:
        raise TransferError(f"checkpoint {path} was not written by semiseq (no 'semiseq' metadata); "
                            "use a checkpoint written by train.py (e.g. `python train.py mode=pretrain`)")
    return ckpt


FIX_FOR_TRAINING = ("Pretrain on this dataset's vocabulary (leave init.checkpoint=null) or fine-tune on the data the "
                    "checkpoint was built from.")


def check_vocab(ckpt_vocab: list[str], vocab: list[str], ckpt_name: str, data_name: str,
                fix: str = FIX_FOR_TRAINING) -> None:
    """Raise one clear error when the checkpoint's vocabulary differs from the dataset's."""
    if ckpt_vocab == vocab:
        return
    first = next((i for i, (a, b) in enumerate(zip(ckpt_vocab, vocab)) if a != b), min(len(ckpt_vocab), len(vocab)))
    at = lambda v: repr(v[first]) if first < len(v) else "<end>"  # noqa: E731
    raise TransferError(
        f"vocabulary mismatch: checkpoint {ckpt_name} has {len(ckpt_vocab)} tokens but dataset {data_name!r} has "
        f"{len(vocab)}; they first differ at id {first} ({at(ckpt_vocab)} vs {at(vocab)}). {fix}")


def pretrained_checkpoint(path: str | Path, vocab: list[str], data_name: str = "?", objective=None) -> dict:
    """The checkpoint at ``path``, refused unless it holds ``objective``'s weights (when given) on ``vocab``."""
    ckpt = read_checkpoint(path)
    kind = ckpt["semiseq"].get("kind")
    if objective is not None and kind != objective.name:
        held, other = (("a fine-tuned classifier", "pass a pretraining checkpoint, or ") if kind == "classifier" else
                       (f"the weights of objective {kind}", f"pass objective={kind} to start from it, or "))
        raise TransferError(f"checkpoint {path} holds {held}, not {objective.description} as objective="
                            f"{objective.name} asks; {other}leave init.checkpoint=null to train {objective.name} "
                            "weights on this data")
    check_vocab(ckpt["semiseq"]["vocab"], vocab, str(path), data_name)
    return ckpt


def load_network(model: nn.Module, path: str | Path, vocab: list[str], data_name: str = "?", objective=None) -> int:
    """Copy every tensor of the pretraining checkpoint into ``model``, a pretrainer of the same network (the
    adaptation stage continues that pretraining: the cache key it starts from holds the same network settings, so
    a strict load suffices); returns the number of tensors copied."""
    ckpt = pretrained_checkpoint(path, vocab, data_name, objective)
    model.load_state_dict(ckpt["state_dict"])
    log.info("initialised the whole %s network (%d tensors) from %s", ckpt["semiseq"]["kind"],
             len(ckpt["state_dict"]), path)
    return len(ckpt["state_dict"])


def load_backbone(model: nn.Module, path: str | Path, vocab: list[str], data_name: str = "?", objective=None) -> int:
    """Copy every ``net.backbone.*`` tensor of the checkpoint into ``model`` (a task whose ``net`` has a
    ``backbone``), and into a joint classifier's objective network (``aux``) the pretrained one's output layer
    (``net.output.*``), so that the loss it keeps on starts where pretraining left it. With ``objective`` (a
    :class:`semiseq.objectives.Objective`), the checkpoint must hold its weights. Returns the number of tensors
    copied."""
    ckpt = pretrained_checkpoint(path, vocab, data_name, objective)
    source = {k: v for k, v in ckpt["state_dict"].items() if k.startswith(PREFIX)}
    if not source:
        raise TransferError(f"checkpoint {path} holds no backbone tensors ({PREFIX}*)")
    target = model.state_dict()
    output = [k for k in target if k.startswith(AUX) and not k.startswith(AUX + "backbone.")]
    if output:  # joint training: the pretrained output layer too (mode=joint takes sa / lm weights only)
        source |= {AUX + k.removeprefix("net."): v for k, v in ckpt["state_dict"].items()
                   if k.startswith("net.") and not k.startswith(PREFIX)}
        if lacking := [k for k in output if k not in source]:
            raise TransferError(f"checkpoint {path} lacks the output layer {lacking[0].removeprefix(AUX)} that "
                                "joint training's objective has: use the same model.output as for pretraining")
    for name, tensor in source.items():
        if name not in target:
            why = ("the pretrained network has more layers than model.num_layers" if name.startswith(PREFIX) else
                   "it was pretrained with another output layer than model.output")
            raise TransferError(f"checkpoint {path} has {name}, which this model lacks: {why}")
        if target[name].shape != tensor.shape:
            raise TransferError(f"shape mismatch for {name}: checkpoint {path} has {tuple(tensor.shape)}, the model "
                                f"has {tuple(target[name].shape)}; use the same model.* sizes as for pretraining")
    # every parameter; a buffer of the classifier's own (the embedding's word frequencies) is not pretrained
    missing = [k for k, _ in model.named_parameters() if k.startswith(PREFIX) and k not in source]
    if missing and ckpt["semiseq"].get("kind") != "word2vec":  # word2vec: the embedding only
        raise TransferError(f"checkpoint {path} lacks {missing}: the pretrained network has fewer layers than "
                            "the model")
    with torch.no_grad():
        for name, tensor in source.items():
            target[name].copy_(tensor)
    log.info("initialised %d backbone%s tensors (%s parameters) from %s (%s)", len(source),
             " + output layer" if any(k.startswith(AUX) for k in source) else "",
             f"{sum(t.numel() for t in source.values()):,}", path, ckpt["semiseq"]["kind"])
    return len(source)
