"""What ``train.py`` runs: build data, task and trainer from the composed config, then pretrain or
fine-tune (pretraining first, through the cache, when ``init`` asks for weights that are not there)."""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import lightning as L
import torch
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint
from omegaconf import DictConfig, OmegaConf

from semiseq import SemiseqError, runs, word2vec
from semiseq.callbacks import Divergence, LineProgress
from semiseq.checkpoints import AtomicCheckpointIO, LastCheckpoint, RandomState
from semiseq.data import Corpus, SequenceDataModule
from semiseq.tasks import OBJECTIVES, ClassifierTask, Pretrainer
from semiseq.transfer import load_backbone

log = logging.getLogger(__name__)


def build_corpus(cfg: DictConfig) -> Corpus:
    try:
        return instantiate(cfg.data.corpus)
    except InstantiationException as e:  # Hydra wraps the parsers' own clear errors: unwrap them
        if isinstance(e.__cause__, SemiseqError):
            raise e.__cause__ from None
        raise


def build_datamodule(cfg: DictConfig, corpus: Corpus, task: str) -> SequenceDataModule:
    stage = cfg.pretrain if task == "pretrain" else cfg.finetune
    return SequenceDataModule(corpus, task, stage.batch_size, cfg.data.eval_batch_size, cfg.data.max_len,
                              cfg.data.bucket, cfg.data.num_workers, seed=cfg.seed,
                              text_batch_size=cfg.mode.get("text_batch_size"))


def _net_kwargs(cfg: DictConfig, corpus: Corpus, stage: DictConfig) -> dict:
    model = OmegaConf.to_container(cfg.model, resolve=True)
    model.pop("objective")
    meta = dict(corpus.meta(), max_len=cfg.data.max_len)
    return dict(model, vocab_size=len(corpus.vocab), input_dim=corpus.input_dim, meta=meta, lr=stage.lr,
                weight_decay=stage.weight_decay)


def build_pretrainer(cfg: DictConfig, corpus: Corpus, objective: str) -> Pretrainer:
    return Pretrainer(objective, grad_clip=cfg.pretrain.grad_clip, tbptt_steps=cfg.pretrain.get("tbptt_steps"),
                      **_net_kwargs(cfg, corpus, cfg.pretrain))


def build_classifier(cfg: DictConfig, corpus: Corpus) -> ClassifierTask:
    joint = dict(joint_objective=cfg.mode.objective, joint_weight=cfg.mode.weight) if cfg.mode.name == "joint" else {}
    return ClassifierTask(corpus.num_classes, head_lr=cfg.finetune.head_lr, **joint,
                          **_net_kwargs(cfg, corpus, cfg.finetune))


def build_trainer(cfg: DictConfig, run_dir: Path, loggers: list, callbacks: list, **stage) -> L.Trainer:
    extra = [instantiate(c) for c in (cfg.get("callbacks") or {}).values()]
    if cfg.trainer.get("enable_progress_bar", True) and not sys.stderr.isatty():  # nohup, SLURM, CI: no bar
        extra.append(LineProgress())
    # use_distributed_sampler=False: under DDP the data module's batch samplers give each process its share
    return instantiate(cfg.trainer, default_root_dir=str(run_dir), logger=loggers or False,
                       callbacks=[*callbacks, Divergence(), *extra], plugins=[AtomicCheckpointIO()],
                       use_distributed_sampler=False, **stage)


def world_size(cfg: DictConfig) -> int:
    """How many processes ``cfg.trainer`` trains in: devices per node x nodes (devices 'auto' or -1: every
    GPU when the accelerator may be one, else one process, as Lightning counts them)."""
    devices, nodes = cfg.trainer.get("devices", "auto"), int(cfg.trainer.get("num_nodes") or 1)
    if isinstance(devices, str) and "," in devices:  # "0,2": those GPUs
        devices = [d for d in devices.split(",") if d.strip()]
    if isinstance(devices, Sequence) and not isinstance(devices, str):
        return len(devices) * nodes
    if str(devices) in ("auto", "-1"):
        gpu = cfg.trainer.get("accelerator", "auto") in ("auto", "gpu", "cuda") and torch.cuda.is_available()
        return (torch.cuda.device_count() if gpu else 1) * nodes
    return int(devices) * nodes


def check_launch(cfg: DictConfig) -> None:
    """Refuse DDP processes that Lightning would start itself inside a multirun: it starts them by re-running
    this command line, which in a multirun is the whole sweep. (srun or torchrun start them otherwise.)"""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    started_outside = any(k in os.environ for k in ("LOCAL_RANK", "SLURM_NTASKS", "TORCHELASTIC_RUN_ID"))
    if (HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN and not started_outside
            and (n := world_size(cfg)) > 1):
        raise SemiseqError(f"a multirun (-m) with {n} DDP processes per job on one machine: Lightning would start "
                           "them by re-running the whole sweep; run each job as its own command (e.g. a shell loop "
                           "over the values), or on SLURM with hydra/launcher=slurm, where srun starts them")


def resume_callbacks(run_dir: Path, every_n_steps: int | None, every_epoch: bool) -> list:
    """What makes a stage resumable exactly: ``checkpoints/last.ckpt`` kept current, with the random state."""
    return [LastCheckpoint(run_dir / "checkpoints", every_n_steps, every_epoch), RandomState()]


def early_stopping(patience: int | None, monitor: str, mode: str) -> list:
    """Stop when ``monitor`` has not improved for ``patience`` validations (none when ``patience`` is null)."""
    return [EarlyStopping(monitor=monitor, mode=mode, patience=patience)] if patience else []


def pretrain(cfg: DictConfig, corpus: Corpus, objective: str, run_dir: Path, one_device: bool = False) -> Path:
    """Pretrain the backbone without labels; returns the final checkpoint in ``run_dir/checkpoints``.
    When the run resumes, it continues from ``run_dir/checkpoints/last.ckpt`` (or returns the finished result).
    ``one_device``: in this process on one device, whatever ``cfg.trainer`` says (no DDP processes)."""
    path = run_dir / "checkpoints" / "pretrained.ckpt"
    if cfg.get("resume") and (run_dir / "results.json").is_file() and path.is_file():
        return path  # finished before the interruption
    if str(cfg.trainer.get("precision")) in ("16-mixed", "16") and cfg.pretrain.grad_clip:
        raise SemiseqError(f"trainer.precision={cfg.trainer.precision} cannot pretrain with pretrain.grad_clip: the "
                           "pretrainer clips its gradients before Lightning unscales float16 ones; use "
                           "trainer.precision=bf16-mixed (trainer=gpu) or 32-true")
    L.seed_everything(cfg.pretrain.seed, workers=True)
    task = build_pretrainer(cfg, corpus, objective)
    loggers = runs.make_loggers(cfg, run_dir, "pretrain", [corpus.name, f"objective:{objective}"])
    steps = cfg.pretrain.max_steps
    every = cfg.pretrain.get("checkpoint_every_n_steps") or cfg.pretrain.val_every_n_steps
    callbacks = [*resume_callbacks(run_dir, every, every_epoch=False),
                 *early_stopping(cfg.pretrain.get("early_stopping_patience"), "val/loss", "min")]
    trainer = build_trainer(cfg, run_dir, loggers, callbacks, max_steps=steps, max_epochs=-1,
                            val_check_interval=min(cfg.pretrain.val_every_n_steps, steps),
                            check_val_every_n_epoch=None,  # the Pretrainer clips its own gradients
                            **(dict(devices=1, num_nodes=1, strategy="auto") if one_device else {}))
    start = time.perf_counter()
    trainer.fit(task, build_datamodule(cfg, corpus, "pretrain"), ckpt_path=runs.resume_checkpoint(cfg, run_dir),
                weights_only=True)
    trainer.save_checkpoint(path, weights_only=True)  # weights, hparams, vocabulary: what transfer needs
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items()}
    if trainer.is_global_zero:  # DDP: one process writes (the metrics are every process's already)
        runs.write_json(run_dir / "results.json", {"mode": "pretrain", "objective": objective, "checkpoint": str(path),
                                                   "last_checkpoint": str(run_dir / "checkpoints" / "last.ckpt"),
                                                   "steps": trainer.global_step, "world_size": trainer.world_size,
                                                   "wall_s": time.perf_counter() - start, **metrics})
    runs.log_artifact(loggers, path, runs.artifact_name(cfg, objective, trainer.world_size), "pretrained", metrics)
    runs.finish_loggers(loggers)
    if trainer.is_global_zero:
        log.info("pretrained %s in %.0fs: val/loss %.3f, val/ppl %.2f -> %s", objective, time.perf_counter() - start,
                 metrics.get("val/loss", float("nan")), metrics.get("val/ppl", float("nan")), path)
    return path


def init_checkpoint(cfg: DictConfig, corpus: Corpus, run_dir: Path) -> Path | None:
    """The checkpoint ``init`` points at: none for random init, the given path, or the cached
    pretrained weights for this data+model+pretrain config (pretrained now if absent)."""
    name = cfg.init.name
    if name == "random":
        return None
    if name not in (*OBJECTIVES, "word2vec"):
        raise ValueError(f"unknown init {name!r}; choose random, word2vec, " + ", ".join(OBJECTIVES))
    if cfg.init.checkpoint:
        return Path(cfg.init.checkpoint)
    if name == "word2vec":
        return runs.cached_pretrained(cfg, name, lambda: word2vec.pretrain(cfg, corpus, run_dir / "word2vec"))
    # Pretraining started here runs in this process on one device, before any DDP process of the fine-tuning
    # exists: the others (started by Lightning later, or by srun now) then find the weights in the cache.
    # Pretraining on every device is `mode=pretrain` with the same trainer, first (its weights are used here).
    return runs.cached_pretrained(cfg, name, lambda: pretrain(cfg, corpus, name, run_dir / f"pretrain-{name}",
                                                              one_device=True), world_size(cfg))


def finetune(cfg: DictConfig, corpus: Corpus, run_dir: Path) -> dict:
    """Train the classifier from ``init`` (with ``mode=joint``: together with an unsupervised loss),
    keep the best validation epoch, and test it."""
    mode = cfg.mode.name
    source = init_checkpoint(cfg, corpus, run_dir)
    L.seed_everything(cfg.seed, workers=True)
    task = build_classifier(cfg, corpus)
    loaded = load_backbone(task, source, corpus.vocab.itos, corpus.name, cfg.init.name) if source else 0
    tags = [corpus.name, f"init:{cfg.init.name}", f"readout:{cfg.model.readout}"]
    loggers = runs.make_loggers(cfg, run_dir, mode, tags + ([f"joint:{cfg.mode.objective}"] if mode == "joint" else []))
    best = ModelCheckpoint(dirpath=run_dir / "checkpoints", filename="best", monitor="val/acc", mode="max")
    callbacks = [best, *resume_callbacks(run_dir, cfg.finetune.get("checkpoint_every_n_steps"), every_epoch=True),
                 *early_stopping(cfg.finetune.get("early_stopping_patience"), "val/acc", "max")]
    trainer = build_trainer(cfg, run_dir, loggers, callbacks, max_epochs=cfg.finetune.max_epochs,
                            gradient_clip_val=cfg.finetune.grad_clip)
    for logger in loggers:
        logger.log_metrics({"init/tensors_loaded": loaded})
    if source and not cfg.init.checkpoint and cfg.init.name in OBJECTIVES:
        runs.use_artifact(loggers, f"pretrained-{source.stem}")  # lineage: the cache entry's artifact -> this run
    start = time.perf_counter()
    trainer.fit(task, build_datamodule(cfg, corpus, "joint" if mode == "joint" else "classify"),
                ckpt_path=runs.resume_checkpoint(cfg, run_dir), weights_only=True)
    (metrics,) = trainer.test(ckpt_path=best.best_model_path, datamodule=build_datamodule(cfg, corpus, "classify"),
                              verbose=False, weights_only=True)
    results = {"mode": mode, "data": corpus.name, "init": cfg.init.name, "readout": cfg.model.readout,
               "unlabeled": cfg.data.get("unlabeled"), "init_checkpoint": str(source or ""),
               "tensors_loaded": loaded, "val/acc_best": float(best.best_model_score), "best_checkpoint":
               best.best_model_path, "last_checkpoint": str(run_dir / "checkpoints" / "last.ckpt"),
               "epochs": trainer.current_epoch, "world_size": trainer.world_size,
               "wall_s": time.perf_counter() - start, **metrics}
    if trainer.is_global_zero:
        runs.write_json(run_dir / "results.json", results)
    runs.summarize(loggers, {"test/error": results["test/error"], "val/acc_best": results["val/acc_best"]})
    runs.log_artifact(loggers, Path(best.best_model_path), f"classifier-{cfg.name}-{run_dir.name}", "model", results)
    runs.finish_loggers(loggers)
    return results


def run(cfg: DictConfig) -> float:
    """Run the stage ``cfg.mode.name`` (with ``resume``: finish an interrupted run in its own folder);
    returns the validation metric a sweeper optimises."""
    start = time.perf_counter()
    if cfg.get("resume"):
        cfg = runs.resume_config(cfg)
    run_dir = Path(cfg.paths.output_dir)
    check_launch(cfg)
    with runs.log_to(run_dir / "train.log") if cfg.get("resume") else contextlib.nullcontext():
        if cfg.get("threads"):
            torch.set_num_threads(cfg.threads)
            os.environ["OMP_NUM_THREADS"] = str(cfg.threads)  # else Lightning's DDP launcher sets cores / processes
        corpus = build_corpus(cfg)
        task = {"pretrain": "pretrain", "joint": "joint"}.get(cfg.mode.name, "classify")
        # an empty split stops the run now, not after a pretraining of its weights that may take hours
        corpus.require(SequenceDataModule.NEEDS[task], SequenceDataModule.READERS[task])
        if cfg.mode.name == "pretrain":
            path = pretrain(cfg, corpus, cfg.model.objective, run_dir)
            if not runs.rank_zero():  # DDP: the first process caches and reports
                return float("nan")
            result = runs.read_json(run_dir / "results.json")
            cached = runs.cache_store(cfg, cfg.model.objective, path, result.get("world_size", 1))
            loss = float(result["val/loss"])
            print(f"[semiseq] pretrained {cfg.model.objective} on {corpus.name} in {time.perf_counter() - start:.0f}s, "
                  f"val/loss {loss:.4f} -> results {run_dir / 'results.json'}, checkpoint {path} (cached as {cached})",
                  flush=True)
            return loss
        if cfg.mode.name in ("finetune", "joint"):
            r = finetune(cfg, corpus, run_dir)
            if not runs.rank_zero():
                return r["val/acc_best"]
            print(f"[semiseq] {corpus.name} init={cfg.init.name}: test accuracy {100 * r['test/acc']:.2f}% "
                  f"(error {r['test/error']:.2f}%), best val accuracy {100 * r['val/acc_best']:.2f}%, "
                  f"{time.perf_counter() - start:.0f}s -> results {run_dir / 'results.json'}, "
                  f"checkpoint {r['best_checkpoint']}", flush=True)
            return r["val/acc_best"]
        raise ValueError(f"unknown mode {cfg.mode.name!r}; choose pretrain, finetune or joint")
