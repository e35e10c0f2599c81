"""Tracking a stage: its loggers (wandb offline unless configured, CSV), checkpoints as wandb artifacts, the
final numbers as the run's summary."""

from __future__ import annotations

import csv
import io
import logging
import netrc
import os
import secrets
import string
import warnings
from pathlib import Path

from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

log = logging.getLogger(__name__)


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
            network = f"lstm:{cfg.model.backbone.num_layers}x{cfg.model.backbone.hidden_dim}"
            extra.update(group=cfg.name, job_type=job_type, tags=[*tags, network],
                         name=f"{cfg.name}-{job_type}-{run_dir.name}", id=wandb_id(run_dir), resume="allow")
        if name == "csv":
            extra["version"] = 0
        loggers.append(instantiate(conf, **extra))
        if name == "csv" and cfg.get("resume"):
            _reopen_csv(loggers[-1])
    config = OmegaConf.to_container(cfg, resolve=True, enum_to_str=True)  # choices (semiseq.config) as strings
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
