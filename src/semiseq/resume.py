"""Exact resume, all of it: which run ``resume=`` names, the config it was started with, where each stage
continues from, and :class:`LastCheckpoint`, which keeps ``checkpoints/last.ckpt`` holding everything the stage
needs to continue bit for bit (tensors and primitives only, so it loads with ``weights_only=True``)."""

from __future__ import annotations

import contextlib
import logging
import random
import warnings
from pathlib import Path
from typing import Iterator

import lightning as L
import numpy as np
import torch
from hydra.core.hydra_config import HydraConfig
from lightning.pytorch.callbacks import Checkpoint
from omegaconf import DictConfig, OmegaConf

from semiseq import SemiseqError
from semiseq.atomic import write_json
from semiseq.config import flat

# A resumed run: LastCheckpoint continues the interrupted epoch itself (through the data module's position),
# which Lightning cannot see, and the checkpoints folder is the run's own.
warnings.filterwarnings("ignore", message="You're resuming from a checkpoint that ended before the epoch ended")
warnings.filterwarnings("ignore", message="Checkpoint directory .* exists and is not empty")

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
    """``stage_dir/checkpoints/last.ckpt`` (kept by :class:`LastCheckpoint`) when this run resumes and the stage
    had written one."""
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


class LastCheckpoint(Checkpoint):
    """Keeps ``dirpath/last.ckpt`` current with everything a resume needs: every ``every_n_steps`` optimizer
    steps, after every epoch (``every_epoch``) and when training ends. It holds the random states, where
    training is in the data (a resumed run skips the batches it trained on: Lightning restores its loop
    counters, not the place in the data) and a task's running ``train_sums`` (a resumed run reports the
    whole epoch); a resumed run restores all three. A step checkpoint is written after that step's
    validation when one follows (a resume does not repeat it) and, with ``every_epoch``, a last batch leaves
    it to the epoch-end one (which runs the epoch-end hooks). A ``Checkpoint``: Lightning runs it after the
    other callbacks, so it saves their state after this step (early stopping's count, say)."""

    def __init__(self, dirpath: str | Path, every_n_steps: int | None = None, every_epoch: bool = True,
                 keep: bool = True):
        self.path, self.keep = Path(dirpath) / "last.ckpt", keep
        self.every_n_steps, self.every_epoch = every_n_steps, every_epoch
        self._after_validation = False
        self._saved_step = None
        self._trainer = None
        self._data = {"epoch": 0, "batches_done": 0, "epoch_ended": False}  # after the latest training batch
        self._resumed: dict | None = None  # the state of the checkpoint this run resumes from

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        self._trainer = trainer
        if trainer.datamodule is not None:  # the data module asks where each training pass starts
            trainer.datamodule.position = self._position

    def _position(self, epoch: int) -> tuple[int, int]:
        """The epoch whose order a training pass takes as the trainer starts ``epoch``, and its batches to skip."""
        at = self._resumed and self._resumed["data"]
        if not at or epoch != at["epoch"]:
            return epoch, 0
        if at["epoch_ended"]:  # saved after the epoch's last batch, before the trainer counted the epoch
            return epoch + 1, 0
        return epoch, at["batches_done"]

    def state_dict(self) -> dict:
        state = {"rng": _rng_states(), "data": dict(self._data)}
        trainer = self._trainer
        task = trainer.lightning_module
        if getattr(task, "train_sums", None) is not None:  # mid-epoch
            # DDP: all processes' sums (every process saves), split evenly: each adds its share back at epoch end
            state["train_sums"] = (trainer.strategy.reduce(task.train_sums.clone(), reduce_op="sum")
                                   / trainer.world_size).tolist()
        return state

    def load_state_dict(self, state_dict: dict) -> None:
        self._resumed = state_dict  # applied at train start: building the model and loaders draws random numbers
        self._data = dict(state_dict["data"])

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._resumed is not None:
            _set_rng_states(self._resumed["rng"])
            if "train_sums" in self._resumed:
                pl_module.train_sums = torch.tensor(self._resumed["train_sums"], device=pl_module.device)

    @property
    def result_path(self) -> str:
        """What the stage's results.json names as its last checkpoint: ``last.ckpt``, or "" when :meth:`finish`
        deletes it."""
        return str(self.path) if self.keep else ""

    def finish(self) -> None:
        """Once the stage has written its results.json, delete last.ckpt unless ``keep`` (``checkpoints.keep_last``):
        a finished run is never resumed, and a search of hundreds of runs would otherwise keep an optimiser state
        for each (60 MB a run on RT); the weights stay, in best.ckpt or pretrained.ckpt."""
        if not self.keep:
            self.path.unlink(missing_ok=True)

    def _save(self, trainer: L.Trainer) -> None:
        for logger in trainer.loggers:  # metrics logged so far reach the disk with the checkpoint (CSV buffers them)
            logger.save()
        trainer.save_checkpoint(self.path, weights_only=False)
        self._saved_step = trainer.global_step

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        last = batch_idx + 1 == trainer.num_training_batches
        self._data = {"epoch": trainer.current_epoch, "batches_done": batch_idx + 1, "epoch_ended": last}
        if not self.every_n_steps or trainer.global_step % self.every_n_steps or trainer.global_step == 0:
            return
        if self.every_epoch and last:
            return
        if _validates_after(trainer, batch_idx, last):
            self._after_validation = True
        else:
            self._save(trainer)

    def on_validation_end(self, trainer, pl_module) -> None:
        if self._after_validation and not trainer.sanity_checking:
            self._after_validation = False
            self._save(trainer)

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        if self.every_epoch:
            self._save(trainer)

    def on_train_end(self, trainer, pl_module) -> None:
        if self._saved_step != trainer.global_step:
            self._save(trainer)


def _validates_after(trainer: L.Trainer, batch_idx: int, last: bool) -> bool:
    """Whether Lightning validates right after training batch ``batch_idx`` (``last``: the epoch's last): its rule
    for ``val_check_interval`` and ``check_val_every_n_epoch`` (a time interval aside), from public settings."""
    every_n_epochs = trainer.check_val_every_n_epoch
    if not trainer.enable_validation or every_n_epochs and (trainer.current_epoch + 1) % every_n_epochs:
        return False
    if trainer.should_stop:  # Lightning validates before it stops
        return True
    if trainer.val_check_batch == float("inf"):  # a loader without a length: at its end
        return last
    # every val_check_batch batches: of the epoch, or of the stage (one optimizer step per batch here)
    return (batch_idx + 1 if every_n_epochs else trainer.global_step) % trainer.val_check_batch == 0


def _rng_states() -> dict:
    """The global random states of torch (CPU and CUDA), numpy and Python, as tensors and primitives."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    version, state, python_gauss = random.getstate()
    return {"torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
            "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": pos,
                      "has_gauss": has_gauss, "gauss": gauss},
            "python": {"version": version, "state": list(state), "gauss": python_gauss}}


def _set_rng_states(states: dict) -> None:
    torch.set_rng_state(states["torch"])
    if states["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])
    n = states["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"]))
    p = states["python"]
    random.setstate((p["version"], tuple(p["state"]), p["gauss"]))
