"""Exact resume: which run ``resume=`` names, the config it was started with, and where each stage continues
from (``checkpoints/last.ckpt``, kept by :mod:`semiseq.checkpoints`)."""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path
from typing import Iterator

from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from semiseq import SemiseqError
from semiseq.atomic import write_json
from semiseq.config import flat

log = logging.getLogger(__name__)

RESUMED_NOTE = "resumed.json"  # in the folder Hydra made for a `resume=...` command: where the run went


def _differences(cfg: DictConfig, saved: DictConfig) -> list[str]:
    """``key=value`` (as in ``cfg``) for each setting ``cfg`` sets otherwise than ``saved``, paths aside."""
    now, before = (flat(OmegaConf.to_container(c)) for c in (cfg, saved))
    return [f"{k}={now.get(k)}" for k in sorted(now.keys() | before.keys())
            if now.get(k) != before.get(k) and k.split(".")[0] not in ("resume", "paths")]

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