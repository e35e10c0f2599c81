"""The config sections semiseq owns as Hydra structured-config schemas, stored on import (``train.py``, ``eval.py`` and
the tests import this first) for ``conf/train.yaml``, ``conf/eval.yaml`` and ``conf/mode/joint.yaml`` to extend in their
defaults lists: Hydra then refuses a wrong key, type or choice while composing. A field is a type, or a kind
(:func:`count`, ...): a type and a range, checked by :func:`check` once composed. Sections semiseq does not own stay
free-form (:func:`free`)."""

import math
from dataclasses import field, fields, is_dataclass, make_dataclass
from enum import StrEnum
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, DictConfig, OmegaConf

from semiseq import SemiseqError

Softmax = StrEnum("Softmax", ["full", "adaptive"])  # adaptive: much faster for large vocabularies
# linear_gain: the label at every step, weighted t/(T-1); concat_pool: [last step; max; mean] over the real steps
Readout = StrEnum("Readout", ["last", "linear_gain", "concat_pool"])
ModeName = StrEnum("ModeName", ["pretrain", "finetune", "joint"])
InitName = StrEnum("InitName", ["pretrained", "random"])  # where fine-tuning's weights come from
Schedule = StrEnum("Schedule", ["constant", "slanted_triangular"])  # slanted_triangular: ULMFiT's warm-up, then decay
Action = StrEnum("Action", ["test", "predict", "embed"])


def _kind(kind: type, meaning: str, ok):  # count(example, null=False), ...: the (type, field) schema() takes
    return lambda example, null=False: (kind | None if null else kind, field(default=MISSING, metadata=dict(
        meaning=meaning + " or null" * null, ok=ok, example=example, null=null)))


count = _kind(int, "a positive integer", lambda v: isinstance(v, int) and v > 0)
positive = _kind(float, "a positive number", lambda v: v > 0)
nonnegative = _kind(float, "a number >= 0", lambda v: v >= 0)
fraction = _kind(float, "a number in [0, 1)", lambda v: 0 <= v < 1)
seed = _kind(int, "an integer from 0 to 2**32 - 1", lambda v: isinstance(v, int) and 0 <= v < 2**32)  # numpy's


def schema(title: str, /, *bases: type, **spec) -> type:
    """The dataclass ``title``, each of its fields a type or a kind's ``(type, field)``; the yaml gives the values."""
    cls = make_dataclass(title, [(k, *(v if isinstance(v, tuple) else (v, MISSING))) for k, v in spec.items()],
                         bases=bases)
    cls.__module__ = __name__  # to pickle its configs (a launcher sends them to its jobs)
    return cls


def free(**checked) -> tuple:
    """A free-form section (any keys and values); those of ``checked`` are checked where it has them."""
    return Any, field(default=None, metadata=dict(checked=schema("Checked", **checked)))


Backbone = schema("Backbone", embed_dim=count(32), hidden_dim=count(128), num_layers=count(1),
                  embed_dropout=fraction(0.0), dropout=fraction(0.0))
Output = schema("Output", softmax=Softmax, cutoffs=list[int])
Head = schema("Head", hidden_dim=count(512), dropout=fraction(0.5), readout=Readout)
Model = schema("Model", backbone=Backbone, output=Output, head=Head)
Mode = schema("Mode", name=ModeName)
JointMode = schema("JointMode", Mode, weight=nonnegative(1.0), text_batch_size=count(64, null=True))
Pretrain = schema("Pretrain", max_steps=count(600), batch_size=count(64), lr=positive(3e-3),
                  weight_decay=nonnegative(0.0), grad_clip=nonnegative(5.0, null=True),
                  tbptt_steps=count(400, null=True), val_every_n_steps=count(200),
                  early_stopping_patience=int | None, seed=seed(0))
Finetune = schema("Finetune", max_epochs=count(20), batch_size=count(20), lr=positive(3e-3),
                  head_lr=positive(1e-4, null=True), weight_decay=nonnegative(0.0),
                  grad_clip=nonnegative(5.0, null=True), early_stopping_patience=int | None,
                  lr_decay=positive(2.6, null=True), schedule=Schedule, warmup_fraction=fraction(0.1),
                  gradual_unfreezing=bool)
# what conf/train.yaml and conf/eval.yaml share: the run's name and threads, and the sections both read
Run = schema("Run", name=str, threads=count(1, null=True),
             data=free(max_len=count(400, null=True), eval_batch_size=count(256),
                       corpus=free(val_fraction=fraction(0.15), seed=seed(0))),
             trainer=free(log_every_n_steps=count(10)), logger=free(), paths=free())
Init = schema("Init", name=InitName, checkpoint=str | None)
Checkpoints = schema("Checkpoints", pretrain_every_n_steps=int | None, finetune_every_n_steps=int | None,
                     keep_last=bool)
Train = schema("Train", Run, seed=seed(0), resume=Any, init=Init, checkpoints=Checkpoints, pretrain=Pretrain,  # resume:
               finetune=Finetune, model=Model, mode=Mode, objective=free(), callbacks=free(),  # true, or a run's folder
               perturbation=free(epsilon=nonnegative(5.0), weight=nonnegative(1.0), xi=positive(0.1),
                                 iterations=count(1)))
Eval = schema("Eval", Run, action=Action, ckpt_path=str | None, input=str | None, text_column=str,
              encoding=str, output=str | None, batch_size=count(256), device=str | None,
              model=free(), pretrain=free(), finetune=free())  # what an experiment= may set, unread (model: the ckpt's)
ConfigStore.instance().store(name="train_schema", node=Train)
ConfigStore.instance().store(name="eval_schema", node=Eval)
ConfigStore.instance().store(group="schema/mode", name="joint", node=JointMode)


def plain(node: DictConfig) -> dict | list:
    """``node`` resolved, as containers of primitives (choices as strings): for hparams, cache keys and loggers."""
    return OmegaConf.to_container(node, resolve=True, enum_to_str=True)


def flat(tree, prefix: str = "") -> dict:
    """A tree of dicts as ``{dotted key: value}``."""
    if not isinstance(tree, dict):
        return {prefix: tree}
    return {k: v for key, sub in tree.items() for k, v in flat(sub, f"{prefix}.{key}" if prefix else key).items()}


def refusal(key: str, shown: str, kind) -> str:
    """The sentence refusing ``key`` set to ``shown`` (the value as Python writes it) outside its field's ``kind``."""
    return f"{key}={shown} is not {kind.metadata['meaning']}; pass e.g. {key}={kind.metadata['example']}"


def check(cfg: DictConfig, cls: type, prefix: str = "") -> None:
    """Refuse (:class:`SemiseqError`) the first value of ``cfg`` outside the kind of its field in the schema ``cls``."""
    for f in fields(cls):
        key, value = prefix + f.name, cfg.get(f.name, "<absent>")
        sub = f.metadata.get("checked") or OmegaConf.get_type(value)
        if isinstance(value, DictConfig) and is_dataclass(sub):
            check(value, sub, key + ".")
        elif "ok" in f.metadata and value != "<absent>" and not (value is None and f.metadata["null"]):
            number = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
            if not (number and f.metadata["ok"](value)):  # -1 as typed, not the float field's -1.0
                raise SemiseqError(refusal(key, repr(value).removesuffix(".0"), f))
