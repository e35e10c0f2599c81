"""What ``train.py`` runs: build data, objective, task and trainer from the composed config, then pretrain
or fine-tune (pretraining first, through the cache, when fine-tuning starts from weights not there yet)."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import time
from pathlib import Path

import lightning as L
import torch
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from lightning.pytorch.callbacks import ModelCheckpoint
from omegaconf import DictConfig

from semiseq import SemiseqError, cache, objectives, tracking
from semiseq.atomic import write_json
from semiseq.config import plain
from semiseq.data import Corpus, SequenceDataModule
from semiseq.objectives import NetworkObjective, Objective, network_hparams
from semiseq.resume import LastCheckpoint, log_to, resume_checkpoint, resume_config
from semiseq.stage import build_datamodule, build_trainer, early_stopping, world_size
from semiseq.tasks import ClassifierTask
from semiseq.transfer import load_backbone

log = logging.getLogger(__name__)


def build_corpus(cfg: DictConfig) -> Corpus:
    """The data's corpus, with fine-tuning's label budget (``data.num_labels``, ``data.num_val``) drawn from the
    validation split's seed."""
    try:
        corpus = instantiate(cfg.data.corpus)
    except InstantiationException as e:  # Hydra wraps the parsers' own clear errors: unwrap them
        if isinstance(e.__cause__, SemiseqError):
            raise e.__cause__ from None
        raise
    return corpus.with_budget(cfg.data.get("num_labels"), cfg.data.get("num_val"), cfg.data.corpus.get("seed") or 0)


def build_objective(cfg: DictConfig) -> Objective:
    """``cfg.objective`` built, refused where ``mode`` needs another kind."""
    objective = objectives.build(cfg.objective)
    if cfg.mode.name == "joint" and not isinstance(objective, NetworkObjective):
        raise SemiseqError(f"mode=joint adds a network objective's loss to the classifier's, and "
                           f"objective={objective.name} has none; pass objective=sa or lm")
    return objective


def perturbation(cfg: DictConfig, corpus: Corpus) -> dict | None:
    """``cfg.perturbation`` as the classifier's hparams (none: null), refused where there are no word embeddings."""
    if "_target_" not in cfg.perturbation:
        return None
    if corpus.input_dim is not None:
        raise SemiseqError(f"perturbation={cfg.perturbation.name} perturbs word embeddings, and data={corpus.name} "
                           "has real-valued steps (a linear input layer); pass perturbation=none")
    return plain(cfg.perturbation)


def build_classifier(cfg: DictConfig, corpus: Corpus) -> ClassifierTask:
    objective = build_objective(cfg) if cfg.mode.name == "joint" else None
    joint = (dict(objective=objective.name, network=objective.network_path, weight=cfg.mode.weight,
                  output=plain(cfg.model.output), options=objective.network_options) if cfg.mode.name == "joint"
             else None)
    return ClassifierTask(corpus.num_classes, head=plain(cfg.model.head), lr=cfg.finetune.lr,
                          head_lr=cfg.finetune.head_lr, weight_decay=cfg.finetune.weight_decay,
                          lr_decay=cfg.finetune.lr_decay, schedule=str(cfg.finetune.schedule),
                          warmup_fraction=cfg.finetune.warmup_fraction,
                          gradual_unfreezing=cfg.finetune.gradual_unfreezing, joint=joint,
                          perturbation=perturbation(cfg, corpus), **network_hparams(cfg, corpus))


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


def cache_entry(cfg: DictConfig, corpus: Corpus, objective: Objective, processes: int = 1) -> Path:
    """The cache entry of ``objective``'s weights for this config, pretrained in ``processes`` DDP processes."""
    return cache.entry(cfg.paths.cache_dir, objective.name, objective.key(cfg, corpus, processes))


def pretrained(cfg: DictConfig, corpus: Corpus, objective: Objective, run_dir: Path) -> Path:
    """The cached weights of ``objective`` for this config, pretrained now (once, under the entry's lock shared by
    concurrent jobs) when the cache does not hold them yet.

    A run in N DDP processes takes weights pretrained in as many when the cache has them, else the one-process
    ones; only its first process pretrains those, in this process on one device, before the others exist (or
    while they wait here: they hold no lock, so no process group waits on the one that pretrains). Pretraining
    on every device is ``mode=pretrain`` with the same trainer, first."""
    if (n := world_size(cfg)) > 1 and (ddp := cache_entry(cfg, corpus, objective, n)).exists():
        log.info("using cached %s weights pretrained in %d processes %s", objective.name, n, ddp)
        return ddp
    path = cache_entry(cfg, corpus, objective)
    if not tracking.rank_zero():
        if not path.exists():
            log.info("waiting for the first DDP process to pretrain %s weights into %s", objective.name, path)
        while not path.exists():  # stored atomically: there means whole
            time.sleep(5)
        return path
    with cache.lock(path):
        if path.exists():
            log.info("using cached %s weights %s", objective.name, path)
            return path
        log.info("no cached %s weights for this config: pretraining them (cached as %s)", objective.name, path)
        start = pretrained(cfg, corpus, first, run_dir) if (first := objective.start()) else None
        produced = objective.pretrain(cfg, corpus, run_dir / objective.folder, True, start)
        return cache.store(path, produced, objective.key(cfg, corpus))


def pretrain(cfg: DictConfig, corpus: Corpus, run_dir: Path) -> Path:
    """Pretrain ``cfg.objective`` (``mode=pretrain``; from the cached weights it starts from, pretrained first when
    absent); returns its checkpoint under ``run_dir/checkpoints``."""
    objective = build_objective(cfg)
    start = pretrained(cfg, corpus, first, run_dir) if (first := objective.start()) else None
    return objective.pretrain(cfg, corpus, run_dir, start=start)


def init_checkpoint(cfg: DictConfig, corpus: Corpus, run_dir: Path) -> Path | None:
    """The weights fine-tuning (or joint training) starts from: none for ``init=random`` (``mode=joint``'s
    default), else ``init.checkpoint``, else the cached ones (pretrained now when absent)."""
    objective = build_objective(cfg)
    if cfg.init.name == "random":
        return None
    return Path(cfg.init.checkpoint) if cfg.init.checkpoint else pretrained(cfg, corpus, objective, run_dir)


def finetune(cfg: DictConfig, corpus: Corpus, run_dir: Path) -> dict:
    """Train the classifier from :func:`init_checkpoint` (with ``mode=joint``: together with the objective's
    loss), keep the best validation epoch, and test it."""
    mode, objective = cfg.mode.name, build_objective(cfg)
    source = init_checkpoint(cfg, corpus, run_dir)
    init = "random" if source is None else objective.name
    L.seed_everything(cfg.seed, workers=True)
    task = build_classifier(cfg, corpus)
    loaded = load_backbone(task, source, corpus.vocab.itos, corpus.name, objective) if source else 0
    if task.perturbation:  # the embeddings it perturbs are normalised by the frequencies of the training text
        task.net.backbone.normalize_embeddings(torch.from_numpy(corpus.token_counts()).float())
    readout, perturbed = cfg.model.head.readout, cfg.perturbation.name
    joint = [f"joint:{objective.name}"] if mode == "joint" else []
    tags = [corpus.name, f"init:{init}", f"readout:{readout}", *joint,
            *([f"perturbation:{perturbed}"] if task.perturbation else [])]
    loggers = tracking.make_loggers(cfg, run_dir, mode, tags)
    # the best epoch is tested, evaluated and predicted with, never trained on: its weights alone (last.ckpt resumes)
    best = ModelCheckpoint(dirpath=run_dir / "checkpoints", filename="best", monitor="val/acc", mode="max",
                           save_weights_only=True)
    last = LastCheckpoint(run_dir / "checkpoints", cfg.checkpoints.finetune_every_n_steps, every_epoch=True,
                          keep=cfg.checkpoints.keep_last)
    callbacks = [best, last, *early_stopping(cfg.finetune.early_stopping_patience, "val/acc", "max")]
    trainer = build_trainer(cfg, run_dir, loggers, callbacks, max_epochs=cfg.finetune.max_epochs,
                            gradient_clip_val=cfg.finetune.grad_clip)
    for logger in loggers:
        logger.log_metrics({"init/tensors_loaded": loaded})
    if source and not cfg.init.checkpoint:
        tracking.use_artifact(loggers, f"pretrained-{source.stem}")  # lineage: the cache entry's artifact -> this run
    start = time.perf_counter()
    # joint training and a perturbation that needs no labels (VAT) take an unlabeled batch with each labeled one
    reads_unlabeled = mode == "joint" or bool(task.perturbation and task.perturbation.reads_unlabeled)
    trainer.fit(task, build_datamodule(cfg, corpus, "joint" if reads_unlabeled else "classify"),
                ckpt_path=resume_checkpoint(cfg, run_dir), weights_only=True)
    # fast_dev_run (debug=fdr) saves no best checkpoint: it tests the weights as they are after its one step
    best_score = best.best_model_score if best.best_model_path else trainer.callback_metrics.get("val/acc")
    (metrics,) = trainer.test(None if best.best_model_path else task, ckpt_path=best.best_model_path or None,
                              datamodule=build_datamodule(cfg, corpus, "classify"), verbose=False, weights_only=True)
    results = {"mode": mode, "data": corpus.name, "init": init, "readout": readout, "perturbation": perturbed,
               "num_labels": len(corpus.supervised("train")), "num_val": len(corpus.supervised("val")),
               "unlabeled": cfg.data.get("unlabeled"), "init_checkpoint": str(source or ""),
               "tensors_loaded": loaded, "val/acc_best": float("nan") if best_score is None else float(best_score),
               "best_checkpoint": best.best_model_path, "last_checkpoint": last.result_path,
               "epochs": trainer.current_epoch, "world_size": trainer.world_size,
               "wall_s": time.perf_counter() - start, **metrics}
    if trainer.is_global_zero:
        write_json(run_dir / "results.json", results)
        last.finish()
    tracking.summarize(loggers, {"test/error": results["test/error"], "val/acc_best": results["val/acc_best"]})
    if best.best_model_path:
        tracking.log_artifact(loggers, Path(best.best_model_path), f"classifier-{cfg.name}-{run_dir.name}", "model",
                              results)
    tracking.finish_loggers(loggers)
    return results


def flush_denormals() -> None:
    """Compute with denormal floats as zero, in this thread and the threads it starts. Back-propagated through
    200 steps, a random-init LSTM's gradients vanish into the denormal range, where an x86 CPU computes them about 12x
    slower (bench/denormals.py); values below 1.2e-38 change no weight. A no-op where unsupported."""
    torch.set_flush_denormal(True)


def run(cfg: DictConfig) -> float:
    """Run the stage ``cfg.mode.name`` (with ``resume``: finish an interrupted run in its own folder);
    returns the validation metric a sweeper optimises."""
    start = time.perf_counter()
    if cfg.get("resume"):
        cfg = resume_config(cfg)
    run_dir = Path(cfg.paths.output_dir)
    check_launch(cfg)
    with log_to(run_dir / "train.log") if cfg.get("resume") else contextlib.nullcontext():
        flush_denormals()
        if cfg.get("threads"):
            torch.set_num_threads(cfg.threads)
            os.environ["OMP_NUM_THREADS"] = str(cfg.threads)  # else Lightning's DDP launcher sets cores / processes
        objective = build_objective(cfg)  # a wrong objective for the mode stops the run before the data is read
        corpus = build_corpus(cfg)
        task = {"pretrain": "pretrain", "joint": "joint"}.get(cfg.mode.name, "classify")
        # an empty split stops the run now, not after a pretraining of its weights that may take hours
        corpus.require(SequenceDataModule.NEEDS[task], SequenceDataModule.READERS[task])
        if cfg.mode.name == "pretrain":
            path = pretrain(cfg, corpus, run_dir)
            if not tracking.rank_zero():  # DDP: the first process caches and reports
                return float("nan")
            result = json.loads((run_dir / "results.json").read_text())
            processes = result.get("world_size", 1)
            cached = cache.store(cache_entry(cfg, corpus, objective, processes), path,
                                 objective.key(cfg, corpus, processes))
            loss = float(result.get("val/loss", float("nan")))
            print(f"[semiseq] pretrained {objective.name} on {corpus.name} in {time.perf_counter() - start:.0f}s, "
                  f"val/loss {loss:.4f} -> results {run_dir / 'results.json'}, checkpoint {path} (cached as {cached})",
                  flush=True)
            return loss
        r = finetune(cfg, corpus, run_dir)
        if not tracking.rank_zero():
            return r["val/acc_best"]
        print(f"[semiseq] {corpus.name} init={r['init']}: test accuracy {100 * r['test/acc']:.2f}% "
              f"(error {r['test/error']:.2f}%), best val accuracy {100 * r['val/acc_best']:.2f}%, "
              f"{time.perf_counter() - start:.0f}s -> results {run_dir / 'results.json'}, "
              f"checkpoint {r['best_checkpoint'] or 'none (trainer.fast_dev_run saves none)'}", flush=True)
        return r["val/acc_best"]
