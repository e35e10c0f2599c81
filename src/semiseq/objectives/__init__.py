"""Pretraining objectives: what a backbone learns without labels. One module each here (sa, lm, word2vec)
and one yaml each in ``conf/objective/`` naming its class: adding an objective is those two files.

An objective turns a corpus into a checkpoint of backbone weights (:meth:`Objective.pretrain`) and says
what determines them (:meth:`Objective.key`: the pipeline caches the weights under it). Objectives trained
by gradient through the backbone (:class:`NetworkObjective`: sa, lm) also give the network that joint
training adds to a classifier.
"""

from __future__ import annotations

import copy
import logging
import time
from pathlib import Path
from typing import ClassVar

import lightning as L
from omegaconf import DictConfig
from torch import nn

from semiseq import SemiseqError, cache, tracking
from semiseq.atomic import write_json
from semiseq.config import plain
from semiseq.data import Corpus
from semiseq.resume import LastCheckpoint, resume_checkpoint
from semiseq.stage import build_datamodule, build_trainer, early_stopping, shortened
from semiseq.tasks import Pretrainer
from semiseq.transfer import load_backbone, load_network

log = logging.getLogger(__name__)

# Bump when a code change alters what pretraining produces for the same key: cached weights from older
# code are then not reused. 3: the key holds the corpus' content instead of where its files live. 4: pretraining's
# batches follow pretrain.seed, not the seed of the run that started it.
VERSION = 4


class Objective:
    """A way to pretrain the backbone; ``name`` and the settings are the keys of ``conf/objective/<name>.yaml``."""

    description: ClassVar[str]  # what its checkpoints hold, for messages

    def __init__(self, name: str, **settings):
        self.name, self.settings = name, settings

    def key(self, cfg: DictConfig, corpus: Corpus, processes: int = 1) -> dict:
        """Everything that determines the weights :meth:`pretrain` produces for ``cfg`` on ``corpus`` in
        ``processes`` DDP processes (``pretrain.batch_size`` is per process); never where files live."""
        return {"version": VERSION, "objective": self.name, **self.settings, "corpus": corpus.fingerprint(),
                "seed": cfg.pretrain.seed, **({"world_size": processes} if processes > 1 else {})}

    def start(self) -> "Objective | None":
        """The objective whose weights this one's pretraining starts from (the pipeline gets them first), or None."""
        return None

    @property
    def folder(self) -> str:
        """The folder of a run its pretraining goes into when a fine-tuning (or a later stage) starts it."""
        return f"pretrain-{self.name}"

    def pretrain(self, cfg: DictConfig, corpus: Corpus, run_dir: Path, one_device: bool = False,
                 start: Path | None = None) -> Path:
        """Pretrain on ``corpus``'s pretraining text (from the weights ``start``: those of :meth:`start`); returns a
        checkpoint under ``run_dir/checkpoints``."""
        raise NotImplementedError


class NetworkObjective(Objective):
    """A per-token loss of a network around the backbone (``network``: built from the backbone, the dropout
    on its outputs and ``model.output``), trained with Lightning by :class:`semiseq.tasks.Pretrainer`.
    ``embeddings='word2vec'`` starts its embedding from word2vec vectors trained on the same text;
    ``freeze_embeddings`` keeps them as they are while the rest of the network pretrains.

    ``adapt_steps`` > 0 adds ULMFiT's second stage (Howard & Ruder 2018, target-task LM fine-tuning): the whole
    network pretrained as above (its own cache entry, shared with the objective without this stage) trains this
    many more steps on the labeled dataset's training texts alone (their labels unused), at ``adapt_lr`` (null:
    ``pretrain.lr``), with the rest of ``pretrain``'s recipe."""

    network: ClassVar[type[nn.Module]]

    def __init__(self, name: str, embeddings: str | None = None, freeze_embeddings: bool = False,
                 adapt_steps: int = 0, adapt_lr: float | None = None):
        if embeddings not in (None, "word2vec"):
            raise SemiseqError(f"objective.embeddings={embeddings!r} is not an option; choose word2vec or null")
        if freeze_embeddings and not embeddings:
            raise SemiseqError("objective.freeze_embeddings=true keeps the vectors pretraining starts from, and "
                               "objective.embeddings is null (random ones); pass objective.embeddings=word2vec")
        if isinstance(adapt_steps, bool) or not isinstance(adapt_steps, int) or adapt_steps < 0:
            raise SemiseqError(f"objective.adapt_steps={adapt_steps!r} is a number of steps on the task's own text; "
                               "pass 0 (none) or a positive integer")
        if adapt_lr is not None and not adapt_steps:
            raise SemiseqError(f"objective.adapt_lr={adapt_lr} is the rate of the adaptation steps, and "
                               "objective.adapt_steps is 0; pass objective.adapt_steps=N, or leave adapt_lr null")
        if adapt_lr is not None and (isinstance(adapt_lr, bool) or not isinstance(adapt_lr, (int, float))
                                     or not adapt_lr > 0):
            raise SemiseqError(f"objective.adapt_lr={adapt_lr!r} is a learning rate; pass a positive number, or null "
                               "for pretrain.lr")
        super().__init__(name, **({"embeddings": embeddings} if embeddings else {}),  # null / false: the key as before
                         **({"freeze_embeddings": True} if freeze_embeddings else {}),
                         **({"adapt_steps": adapt_steps} if adapt_steps else {}),
                         **({"adapt_lr": float(adapt_lr)} if adapt_lr is not None else {}))

    @property
    def adapts(self) -> bool:
        """Whether this pretraining is the adaptation stage on the task's text (``adapt_steps`` > 0)."""
        return bool(self.settings.get("adapt_steps"))

    @property
    def folder(self) -> str:
        return f"{super().folder}-adapted" if self.adapts else super().folder

    def start(self) -> Objective | None:
        """The objective whose weights this one's pretraining starts from: without the adaptation stage when
        ``adapt_steps`` (the same objective, pretrained on all the text), else ``embeddings``'s, or None."""
        if self.adapts:
            general = copy.copy(self)
            general.settings = {k: v for k, v in self.settings.items() if k not in ("adapt_steps", "adapt_lr")}
            return general
        if self.settings.get("embeddings") != "word2vec":
            return None
        from semiseq.objectives.word2vec import Word2Vec

        return Word2Vec()

    def key(self, cfg: DictConfig, corpus: Corpus, processes: int = 1) -> dict:
        start = {"start": start.key(cfg, corpus)} if (start := self.start()) else {}
        debug = {"trainer": limits} if (limits := shortened(cfg)) else {}  # debug=fdr|overfit|limit: never real
        return {**super().key(cfg, corpus, processes), **start, "max_len": cfg.data.max_len,
                "bucket": cfg.data.bucket, "backbone": plain(cfg.model.backbone), "output": plain(cfg.model.output),
                "pretrain": plain(cfg.pretrain), **debug}

    @property
    def network_path(self) -> str:
        return f"{self.network.__module__}.{self.network.__qualname__}"

    @property
    def network_options(self) -> dict:
        """The settings ``network`` is built with beyond the backbone and the output layer (none here)."""
        return {}

    def task(self, cfg: DictConfig, corpus: Corpus) -> Pretrainer:
        """The LightningModule that pretrains ``network`` with ``cfg.pretrain``'s recipe (adapting: at ``adapt_lr``)."""
        lr = self.settings.get("adapt_lr") or cfg.pretrain.lr
        return Pretrainer(self.name, self.network_path, **network_hparams(cfg, corpus),
                          output=plain(cfg.model.output), lr=lr, weight_decay=cfg.pretrain.weight_decay,
                          grad_clip=cfg.pretrain.grad_clip, tbptt_steps=cfg.pretrain.tbptt_steps,
                          freeze_embedding=self.settings.get("freeze_embeddings", False),
                          network_options=self.network_options)

    def pretrain(self, cfg: DictConfig, corpus: Corpus, run_dir: Path, one_device: bool = False,
                 start: Path | None = None) -> Path:
        """Pretrain with ``cfg.pretrain``'s recipe, from the backbone tensors of checkpoint ``start`` when given (the
        adaptation stage: from its whole network, for ``adapt_steps`` on the training texts); when the run resumes,
        continue from ``run_dir/checkpoints/last.ckpt`` (or return the finished result).
        ``one_device``: in this process on one device, whatever ``cfg.trainer`` says (no DDP processes)."""
        path = run_dir / "checkpoints" / "pretrained.ckpt"
        if cfg.get("resume") and (run_dir / "results.json").is_file() and path.is_file():
            return path  # finished before the interruption
        if str(cfg.trainer.get("precision")) in ("16-mixed", "16") and cfg.pretrain.grad_clip:
            raise SemiseqError(f"trainer.precision={cfg.trainer.precision} cannot pretrain with pretrain.grad_clip: "
                               "the pretrainer clips its gradients before Lightning unscales float16 ones; use "
                               "trainer.precision=bf16-mixed (trainer=gpu) or 32-true")
        L.seed_everything(cfg.pretrain.seed, workers=True)
        task = self.task(cfg, corpus)
        if start is not None:
            (load_network if self.adapts else load_backbone)(task, start, corpus.vocab.itos, corpus.name, self.start())
        loggers = tracking.make_loggers(cfg, run_dir, "pretrain", [corpus.name, f"objective:{self.name}",
                                                                   *(["adapted"] if self.adapts else [])])
        steps = self.settings["adapt_steps"] if self.adapts else cfg.pretrain.max_steps
        every = cfg.checkpoints.pretrain_every_n_steps or cfg.pretrain.val_every_n_steps
        last = LastCheckpoint(run_dir / "checkpoints", every, every_epoch=False, keep=cfg.checkpoints.keep_last)
        callbacks = [last, *early_stopping(cfg.pretrain.early_stopping_patience, "val/loss", "min")]
        trainer = build_trainer(cfg, run_dir, loggers, callbacks, max_steps=steps, max_epochs=-1,
                                val_check_interval=min(cfg.pretrain.val_every_n_steps, steps),
                                check_val_every_n_epoch=None,  # the Pretrainer clips its own gradients
                                **(dict(devices=1, num_nodes=1, strategy="auto") if one_device else {}))
        start = time.perf_counter()
        trainer.fit(task, build_datamodule(cfg, corpus, "adapt" if self.adapts else "pretrain"),
                    ckpt_path=resume_checkpoint(cfg, run_dir), weights_only=True)
        trainer.save_checkpoint(path, weights_only=True)  # weights, hparams, vocabulary: what transfer needs
        metrics = {k: float(v) for k, v in trainer.callback_metrics.items()}
        if trainer.is_global_zero:  # DDP: one process writes (the metrics are every process's already)
            write_json(run_dir / "results.json", {"mode": "pretrain", "objective": self.name, "checkpoint": str(path),
                                                  "adapted": self.adapts,
                                                  "last_checkpoint": last.result_path,
                                                  "steps": trainer.global_step, "world_size": trainer.world_size,
                                                  "wall_s": time.perf_counter() - start, **metrics})
            last.finish()
        entry = cache.entry(cfg.paths.cache_dir, self.name, self.key(cfg, corpus, trainer.world_size))
        tracking.log_artifact(loggers, path, f"pretrained-{entry.stem}", "pretrained", metrics)  # the entry's name
        tracking.finish_loggers(loggers)
        if trainer.is_global_zero:
            log.info("pretrained %s in %.0fs: val/loss %.3f, val/ppl %.2f -> %s", self.name,
                     time.perf_counter() - start, metrics.get("val/loss", float("nan")),
                     metrics.get("val/ppl", float("nan")), path)
        return path


def network_hparams(cfg: DictConfig, corpus: Corpus) -> dict:
    """What every task's network is built from: the backbone's settings and the corpus' sizes and metadata."""
    return dict(backbone=plain(cfg.model.backbone), vocab_size=len(corpus.vocab), input_dim=corpus.input_dim,
                meta=dict(corpus.meta(), max_len=cfg.data.max_len))


def build(node: DictConfig) -> Objective:
    """The objective ``conf/objective/<name>.yaml`` describes."""
    from hydra.errors import InstantiationException
    from hydra.utils import instantiate

    try:
        return instantiate(node)
    except InstantiationException as e:  # Hydra wraps the objective's own one-line refusals: unwrap them
        if isinstance(e.__cause__, SemiseqError):
            raise e.__cause__ from None
        raise
