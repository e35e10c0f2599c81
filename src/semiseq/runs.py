"""Everything a run leaves behind: loggers (wandb offline unless configured), result files, and the
cache of pretrained weights keyed by the config that produced them."""

from __future__ import annotations

import hashlib
import json
import logging
import netrc
import os
from pathlib import Path
from typing import Callable

from filelock import FileLock
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

log = logging.getLogger(__name__)

# Bump when a code change alters what pretraining produces for the same config: cached weights from
# older code are then not reused. 2: manual optimisation (truncated BPTT), 200-batch bucketing chunks.
PRETRAIN_VERSION = 2

# Config keys that change how a run goes, not what pretraining learns: left out of the cache key.
NOT_IN_KEY = {"data": {"num_workers", "eval_batch_size"}, "model": {"objective", "head_dim", "head_dropout", "readout"}}


def wandb_configured() -> bool:
    """True when the user has a wandb key (env or ``wandb login``) or chose a mode with WANDB_MODE."""
    if os.environ.get("WANDB_API_KEY") or os.environ.get("WANDB_MODE"):
        return True
    try:
        return netrc.netrc().authenticators("api.wandb.ai") is not None
    except (FileNotFoundError, netrc.NetrcParseError):
        return False


def make_loggers(cfg: DictConfig, run_dir: Path, job_type: str, tags: list[str]) -> list:
    """Instantiate the ``logger`` group for one stage; wandb runs offline unless configured."""
    if not wandb_configured():
        os.environ["WANDB_MODE"] = "offline"
    loggers = []
    for name, conf in (cfg.get("logger") or {}).items():
        extra = {"save_dir": str(run_dir)}
        if name == "wandb":
            network = f"lstm:{cfg.model.num_layers}x{cfg.model.hidden_dim}"
            extra.update(group=cfg.name, job_type=job_type, tags=[*tags, network],
                         name=f"{cfg.name}-{job_type}-{run_dir.name}")
        loggers.append(instantiate(conf, **extra))
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


def write_json(path: Path, payload: dict) -> None:
    """Write JSON atomically (temp file + rename): a reader never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + f".tmp{os.getpid()}")
    tmp.write_text(json.dumps(payload, indent=2, default=str) + "\n")
    os.replace(tmp, path)


def pretrain_key(cfg: DictConfig, objective: str) -> dict:
    """Everything that determines pretrained weights: data, network, objective, pretraining recipe
    (and for word2vec its own settings in ``init``)."""
    resolved = OmegaConf.to_container(cfg, resolve=True)
    key = {
        "version": PRETRAIN_VERSION,
        "objective": objective,
        "data": {k: v for k, v in resolved["data"].items() if k not in NOT_IN_KEY["data"]},
        "model": {k: v for k, v in resolved["model"].items() if k not in NOT_IN_KEY["model"]},
        "pretrain": resolved["pretrain"],
    }
    if objective == "word2vec":
        key["init"] = {k: v for k, v in resolved["init"].items() if k != "checkpoint"}
    return key


def cache_path(cfg: DictConfig, objective: str) -> Path:
    """Where the pretrained weights for this config live in ``paths.cache_dir``."""
    key = json.dumps(pretrain_key(cfg, objective), sort_keys=True)
    digest = hashlib.sha256(key.encode()).hexdigest()[:16]
    return Path(cfg.paths.cache_dir) / "pretrained" / f"{objective}-{digest}.ckpt"


def cache_store(cfg: DictConfig, objective: str, produced: Path) -> Path:
    """Copy freshly pretrained weights into the cache atomically, with the key beside them."""
    path = cache_path(cfg, objective)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    tmp.write_bytes(produced.read_bytes())
    os.replace(tmp, path)
    write_json(path.with_suffix(".json"), {"key": pretrain_key(cfg, objective), "produced_by": str(produced)})
    return path


def cached_pretrained(cfg: DictConfig, objective: str, pretrain: Callable[[], Path]) -> Path:
    """Path of the pretrained weights for this config, calling ``pretrain()`` (once, under a file lock
    shared by concurrent jobs) when the cache does not hold them yet."""
    path = cache_path(cfg, objective)
    path.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(path) + ".lock"):
        if path.exists():
            log.info("using cached %s weights %s", objective, path)
            return path
        log.info("no cached %s weights for this config: pretraining them (cached as %s)", objective, path)
        return cache_store(cfg, objective, pretrain())


def read_json(path: Path) -> dict:
    return json.loads(Path(path).read_text())
