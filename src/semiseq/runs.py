"""Everything a run leaves behind: loggers (wandb offline unless configured), result files, and the
cache of pretrained weights keyed by the config that produced them."""

from __future__ import annotations

import contextlib
import csv
import hashlib
import io
import json
import logging
import netrc
import os
import secrets
import string
import time
import warnings
from pathlib import Path
from typing import Callable, Iterator

from filelock import FileLock
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from semiseq import SemiseqError, atomic

log = logging.getLogger(__name__)

# Bump when a code change alters what pretraining produces for the same config: cached weights from
# older code are then not reused. 2: manual optimisation (truncated BPTT), 200-batch bucketing chunks.
PRETRAIN_VERSION = 2

# Config keys that change how a run goes, not what pretraining learns: left out of the cache key.
NOT_IN_KEY = {"data": {"num_workers", "eval_batch_size"}, "model": {"objective", "head_dim", "head_dropout", "readout"},
              "pretrain": {"checkpoint_every_n_steps"}}

RESUMED_NOTE = "resumed.json"  # in the folder Hydra made for a `resume=...` command: where the run went


def wandb_configured() -> bool:
    """True when the user has a wandb key (env or ``wandb login``) or chose a mode with WANDB_MODE."""
    if os.environ.get("WANDB_API_KEY") or os.environ.get("WANDB_MODE"):
        return True
    try:
        return netrc.netrc().authenticators("api.wandb.ai") is not None
    except (FileNotFoundError, netrc.NetrcParseError):
        return False


def rank_zero() -> bool:
    """False in every DDP process but the first: Lightning's rank, which before training starts is the one
    the launcher gave (RANK, LOCAL_RANK with NODE_RANK, SLURM_PROCID), so it tells before any process group."""
    from lightning.pytorch.utilities.rank_zero import rank_zero_only

    return rank_zero_only.rank == 0 and int(os.environ.get("NODE_RANK", os.environ.get("GROUP_RANK", 0))) == 0


def make_loggers(cfg: DictConfig, run_dir: Path, job_type: str, tags: list[str]) -> list:
    """Instantiate the ``logger`` group for one stage; wandb runs offline unless configured. None in DDP
    processes but the first (Lightning logs from rank 0 only; they would only race for wandb_id.txt)."""
    if not rank_zero():
        return []
    if not wandb_configured():
        os.environ["WANDB_MODE"] = "offline"
    loggers = []
    for name, conf in (cfg.get("logger") or {}).items():
        extra = {"save_dir": str(run_dir)}
        if name == "wandb":  # the id stays in the run folder: a resumed stage continues the same wandb run
            network = f"lstm:{cfg.model.num_layers}x{cfg.model.hidden_dim}"
            extra.update(group=cfg.name, job_type=job_type, tags=[*tags, network],
                         name=f"{cfg.name}-{job_type}-{run_dir.name}", id=wandb_id(run_dir), resume="allow")
        if name == "csv":
            extra["version"] = 0
        loggers.append(instantiate(conf, **extra))
        if name == "csv" and cfg.get("resume"):
            _reopen_csv(loggers[-1])
    config = OmegaConf.to_container(cfg, resolve=True)
    for logger in loggers:
        logger.log_hyperparams(config)
    return loggers


def finish_loggers(loggers: list) -> None:
    """Close each logger; wandb needs an explicit finish so the next multirun job starts a new run."""
    for logger in loggers:
        logger.finalize("success")
    if any(type(logger).__name__ == "WandbLogger" for logger in loggers):
        import wandb

        wandb.finish()


def wandb_run(loggers: list):
    """The wandb run of a stage's loggers, or None."""
    return next((lg.experiment for lg in loggers if type(lg).__name__ == "WandbLogger"), None)


def artifact_name(cfg: DictConfig, objective: str, world_size: int = 1) -> str:
    """The wandb artifact name of the pretrained weights for this config: the cache entry's name."""
    return f"pretrained-{cache_path(cfg, objective, world_size).stem}"


def log_artifact(loggers: list, path: Path, name: str, kind: str, metadata: dict) -> None:
    """Record a checkpoint as an artifact of the stage's wandb run (uploaded online, kept for
    ``wandb sync`` offline). The file is written once, so wandb references it instead of copying it."""
    run = wandb_run(loggers)
    if run is None:
        return
    import wandb

    artifact = wandb.Artifact(name, type=kind, metadata={k: v for k, v in metadata.items()
                                                          if isinstance(v, (int, float, str, bool))})
    artifact.add_file(str(path), name=path.name, policy="immutable")
    run.log_artifact(artifact)


def use_artifact(loggers: list, name: str) -> None:
    """Mark the pretrained weights' artifact as an input of this run (lineage in wandb); online only,
    as offline runs cannot look artifacts up."""
    run = wandb_run(loggers)
    if run is None or run.settings.mode != "online":
        return
    try:
        run.use_artifact(f"{name}:latest")
    except Exception as e:  # weights pretrained offline or in another project: no lineage, not an error
        log.warning("wandb: no artifact %s to link as this run's input (%s)", name, e)


def summarize(loggers: list, values: dict) -> None:
    """Final numbers (test error, best validation accuracy) as the wandb run's summary."""
    run = wandb_run(loggers)
    if run is not None:
        run.summary.update(values)


def wandb_id(run_dir: Path) -> str:
    """This stage's wandb run id, made once and kept in ``run_dir/wandb_id.txt``."""
    path = run_dir / "wandb_id.txt"
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("".join(secrets.choice(string.ascii_lowercase + string.digits) for _ in range(8)) + "\n")
    return path.read_text().strip()


def _reopen_csv(logger) -> None:
    """Append to a resumed stage's metrics.csv (Lightning's CSV writer deletes an existing one)."""
    metrics = Path(logger.log_dir) / "metrics.csv"
    if not metrics.is_file():
        return
    rows = metrics.read_text()
    metrics.unlink()
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Experiment logs directory")
        writer = logger.experiment
    metrics.write_text(rows)
    writer.metrics_keys = next(csv.reader(io.StringIO(rows)), [])


def _differences(cfg: DictConfig, saved: DictConfig) -> list[str]:
    """``key=value`` (as in ``cfg``) for each setting ``cfg`` sets otherwise than ``saved``, paths aside."""
    now, before = (_flat(OmegaConf.to_container(c)) for c in (cfg, saved))
    return [f"{k}={now.get(k)}" for k in sorted(now.keys() | before.keys())
            if now.get(k) != before.get(k) and k.split(".")[0] not in ("resume", "paths")]


def _flat(tree, prefix: str = "") -> dict:
    if not isinstance(tree, dict):
        return {prefix: tree}
    return {k: v for key, sub in tree.items() for k, v in _flat(sub, f"{prefix}.{key}" if prefix else key).items()}


def _saved_config(run_dir: Path) -> DictConfig:
    return OmegaConf.load(run_dir / ".hydra" / "config.yaml")


def resume_dir(cfg: DictConfig) -> Path:
    """The run ``resume`` names: ``true``, the latest unfinished run (no results.json) under
    ``paths.log_dir/<name>/runs`` started with this config; a path, that run folder."""
    if cfg.resume is True:
        folder = Path(cfg.paths.log_dir) / cfg.name / "runs"
        here = Path(cfg.paths.output_dir).resolve()
        unfinished = [d for d in sorted(folder.glob("*")) if (d / ".hydra" / "config.yaml").is_file()
                      and not (d / "results.json").exists() and not (d / RESUMED_NOTE).exists() and d.resolve() != here]
        if not unfinished:
            raise SemiseqError(f"nothing to resume: no unfinished run (a run folder without results.json) in {folder}; "
                               f"start a new run without resume=, or give resume=RUN_DIR")
        same = [d for d in unfinished if not _differences(cfg, _saved_config(d))]
        if not same:  # experiments share a name (experiment=imdb_sa, imdb_lm: logs/imdb/): never pick another's run
            latest = unfinished[-1]
            raise SemiseqError(f"no unfinished run in {folder} was started with this config; the latest, {latest}, "
                               f"differs in {', '.join(_differences(cfg, _saved_config(latest)))}: resume it with "
                               f"resume={latest}")
        return same[-1]
    run_dir = Path(str(cfg.resume)).expanduser()
    if not (run_dir / ".hydra" / "config.yaml").is_file():
        raise SemiseqError(f"resume={cfg.resume}: not a run folder (no .hydra/config.yaml in it); give a folder "
                           f"under {cfg.paths.log_dir}/<name>/runs/, or resume=true for the latest unfinished run")
    if (run_dir / "results.json").exists():
        raise SemiseqError(f"resume={cfg.resume}: that run has finished (its results.json exists); nothing to resume")
    return run_dir


def resume_config(cfg: DictConfig) -> DictConfig:
    """The config the run to resume was started with, pointed at its folder (``paths.output_dir``); the
    folder Hydra made for this command gets only its log and a note saying where the run went."""
    run_dir = resume_dir(cfg)
    saved = _saved_config(run_dir)
    typed = [o for o in (HydraConfig.get().overrides.task if HydraConfig.initialized() else [])
             if not o.lstrip("+~").startswith(("resume=", "paths."))]
    if typed and (ignored := _differences(cfg, saved)):  # resume=RUN_DIR with other overrides: they do not apply
        log.warning("resuming %s with the config it was started with; ignoring %s", run_dir, ", ".join(ignored))
    write_json(Path(cfg.paths.output_dir) / RESUMED_NOTE, {"resumed": str(run_dir)})
    saved.paths.output_dir, saved.resume = str(run_dir), str(run_dir)
    log.info("resuming %s", run_dir)
    return saved


def resume_checkpoint(cfg: DictConfig, stage_dir: Path) -> Path | None:
    """``stage_dir/checkpoints/last.ckpt`` when this run resumes and the stage had written one."""
    path = stage_dir / "checkpoints" / "last.ckpt"
    if cfg.get("resume") and path.is_file():
        log.info("continuing from %s", path)
        return path
    return None


@contextlib.contextmanager
def log_to(path: Path) -> Iterator[None]:
    """Also append this process's log to ``path`` (a resumed run's own train.log)."""
    root = logging.getLogger()
    handler = logging.FileHandler(path)
    handler.setFormatter(next((h.formatter for h in root.handlers if isinstance(h, logging.FileHandler)), None))
    root.addHandler(handler)
    try:
        yield
    finally:
        root.removeHandler(handler)
        handler.close()


def write_json(path: Path, payload: dict) -> None:
    """Write JSON atomically (temp file + rename): a reader never sees half a file."""
    atomic.write_json(path, payload)


def pretrain_key(cfg: DictConfig, objective: str, world_size: int = 1) -> dict:
    """Everything that determines pretrained weights: data, network, objective, pretraining recipe
    (and for word2vec its own settings in ``init``), and how many DDP processes pretrained them
    (``pretrain.batch_size`` is per process)."""
    resolved = OmegaConf.to_container(cfg, resolve=True)
    key = {
        "version": PRETRAIN_VERSION,
        "objective": objective,
        "data": {k: v for k, v in resolved["data"].items() if k not in NOT_IN_KEY["data"]},
        "model": {k: v for k, v in resolved["model"].items() if k not in NOT_IN_KEY["model"]},
        # a null early_stopping_patience (the default) leaves the key as before that setting existed
        "pretrain": {k: v for k, v in resolved["pretrain"].items()
                     if k not in NOT_IN_KEY["pretrain"] and not (k == "early_stopping_patience" and v is None)},
    }
    if objective == "word2vec":
        key["init"] = {k: v for k, v in resolved["init"].items() if k != "checkpoint"}
    if world_size > 1:  # one process leaves the key as before DDP existed
        key["world_size"] = world_size
    return key


def cache_path(cfg: DictConfig, objective: str, world_size: int = 1) -> Path:
    """Where the pretrained weights for this config (pretrained in ``world_size`` processes) live in
    ``paths.cache_dir``."""
    key = json.dumps(pretrain_key(cfg, objective, world_size), sort_keys=True)
    digest = hashlib.sha256(key.encode()).hexdigest()[:16]
    return Path(cfg.paths.cache_dir) / "pretrained" / f"{objective}-{digest}.ckpt"


def cache_store(cfg: DictConfig, objective: str, produced: Path, world_size: int = 1) -> Path:
    """Copy freshly pretrained weights into the cache atomically, with the key beside them."""
    path = cache_path(cfg, objective, world_size)
    atomic.write_bytes(path, produced.read_bytes())
    write_json(path.with_suffix(".json"), {"key": pretrain_key(cfg, objective, world_size),
                                           "produced_by": str(produced)})
    return path


def cached_pretrained(cfg: DictConfig, objective: str, pretrain: Callable[[], Path], world_size: int = 1) -> Path:
    """Path of the pretrained weights for this config, calling ``pretrain()`` (once, under a file lock
    shared by concurrent jobs) when the cache does not hold them yet.

    A run in ``world_size`` DDP processes takes weights pretrained in as many when the cache has them, else
    the one-process ones; only its first process pretrains those (before the others exist, or while they
    wait here: they hold no lock, so no process group is waiting on the one that pretrains)."""
    if world_size > 1 and (ddp := cache_path(cfg, objective, world_size)).exists():
        log.info("using cached %s weights pretrained in %d processes %s", objective, world_size, ddp)
        return ddp
    path = cache_path(cfg, objective)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not rank_zero():
        if not path.exists():
            log.info("waiting for the first DDP process to pretrain %s weights into %s", objective, path)
        while not path.exists():  # written atomically: there means whole
            time.sleep(5)
        return path
    with FileLock(str(path) + ".lock"):
        if path.exists():
            log.info("using cached %s weights %s", objective, path)
            return path
        log.info("no cached %s weights for this config: pretraining them (cached as %s)", objective, path)
        return cache_store(cfg, objective, pretrain())


def read_json(path: Path) -> dict:
    return json.loads(Path(path).read_text())
