"""Exact resume: a run killed mid-epoch (SIGKILL) and resumed with ``resume=`` ends with the same weights
and metrics as an uninterrupted run, bit for bit on CPU; checkpoints are written atomically; early
stopping stops; the final line says where results and checkpoint are."""

import csv
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from lightning.pytorch.callbacks import Callback
from omegaconf import OmegaConf

from semiseq import SemiseqError, pipeline, resume, stage
from semiseq.stage import AtomicCheckpointIO

from .conftest import ROOT, make_objective

PRETRAIN = ("mode=pretrain", "pretrain.max_steps=300", "pretrain.val_every_n_steps=50",
            "checkpoints.pretrain_every_n_steps=7")  # smoke epochs are 10 batches: most checkpoints are mid-epoch


def start(log_dir: Path, *overrides: str) -> subprocess.Popen:
    """``train.py experiment=smoke ...`` in the background; its output goes to ``log_dir/out-<pid>.txt``."""
    env = dict(os.environ, SEMISEQ_LOG_DIR=str(log_dir), WANDB_MODE="offline", HYDRA_FULL_ERROR="0",
               OMP_NUM_THREADS="1")
    log_dir.mkdir(parents=True, exist_ok=True)
    out = open(log_dir / f"out-{time.monotonic_ns()}.txt", "w+")
    proc = subprocess.Popen([sys.executable, str(ROOT / "train.py"), "experiment=smoke", *overrides],
                            cwd=log_dir.parent, env=env, stdout=out, stderr=subprocess.STDOUT, text=True)
    proc.out = out
    return proc


def finish(proc: subprocess.Popen) -> tuple[int, str]:
    rc = proc.wait(timeout=600)
    proc.out.seek(0)
    return rc, proc.out.read()


def kill_when(proc: subprocess.Popen, log_dir: Path, pattern: str) -> Path:
    """SIGKILL the run as soon as a file matching ``pattern`` (under ``log_dir``) exists; returns it."""
    while proc.poll() is None:
        found = sorted(log_dir.glob(pattern))
        if found:
            proc.kill()  # SIGKILL: no handler, no cleanup, like a preempted job
            proc.wait()
            return found[0]
        time.sleep(0.01)
    raise AssertionError(f"the run ended before {pattern} appeared:\n{finish(proc)[1][-3000:]}")


def weights(path: Path) -> dict:
    return torch.load(path, weights_only=True)["state_dict"]


def assert_same_weights(a: Path, b: Path) -> None:
    wa, wb = weights(a), weights(b)
    assert wa.keys() == wb.keys()
    for name in wa:
        assert torch.equal(wa[name], wb[name]), name


def test_pretraining_killed_mid_epoch_resumes_bit_exactly(tmp_path, make_cfg):
    logs = tmp_path / "logs"
    killed = start(logs, *PRETRAIN)
    ckpt = kill_when(killed, logs, "smoke/runs/*/checkpoints/last.ckpt")
    run_dir = ckpt.parents[1]
    at = torch.load(ckpt, weights_only=True)
    assert not (run_dir / "results.json").exists() and 0 < at["global_step"] < 300
    stopped_at = at["callbacks"]["LastCheckpoint"]["data"]

    rc, out = finish(start(logs, *PRETRAIN, "resume=true"))
    assert rc == 0, out[-3000:]
    (note,) = (p for p in logs.glob("smoke/runs/*/resumed.json"))  # the resume command's own Hydra folder
    assert json.loads(note.read_text()) == {"resumed": str(run_dir)} and not (note.parent / "checkpoints").exists()
    result = json.loads((run_dir / "results.json").read_text())
    assert result["steps"] == 300
    assert f"-> results {run_dir}/results.json, checkpoint {run_dir}/checkpoints/pretrained.ckpt" in out

    ref_dir = tmp_path / "uninterrupted"
    cfg = make_cfg("experiment=smoke", *PRETRAIN, "logger=csv", f"paths.output_dir={ref_dir}")
    pipeline.run(cfg)
    assert_same_weights(run_dir / "checkpoints" / "pretrained.ckpt", ref_dir / "checkpoints" / "pretrained.ckpt")
    assert_same_weights(run_dir / "checkpoints" / "last.ckpt", ref_dir / "checkpoints" / "last.ckpt")
    reference = json.loads((ref_dir / "results.json").read_text())
    assert result["val/loss"] == reference["val/loss"], (result["val/loss"], reference["val/loss"])
    print(f"killed at step {at['global_step']} ({stopped_at}); val/loss resumed {result['val/loss']!r} "
          f"uninterrupted {reference['val/loss']!r}")

    # the same wandb run continues (offline: one folder per process, both with the stored id) ...
    wandb_id = (run_dir / "wandb_id.txt").read_text().strip()
    offline = sorted(p.name for p in run_dir.glob("wandb/offline-run-*"))
    assert len(offline) == 2 and all(name.endswith(f"-{wandb_id}") for name in offline), offline
    # ... and the CSV metrics go on in the same file, up to the last validation
    assert [p.name for p in (run_dir / "csv").iterdir()] == ["version_0"]
    rows = list(csv.DictReader(open(run_dir / "csv" / "version_0" / "metrics.csv")))
    steps = [int(r["step"]) for r in rows if r.get("val/loss")]
    assert steps[-1] == 299 and min(int(r["step"]) for r in rows) < at["global_step"]


def test_resume_with_nothing_to_resume_is_one_clear_line(tmp_path):
    rc, out = finish(start(tmp_path / "logs", "resume=true", "logger=none"))
    assert rc == 1 and "Traceback" not in out
    assert f"semiseq: error: nothing to resume: no unfinished run (a run folder without results.json) in " \
           f"{tmp_path}/logs/smoke/runs" in out


class Crash(Callback):
    """Stands in for a kill in-process: fails the run at optimizer step ``step``."""

    def __init__(self, step: int):
        self.step = step

    def on_train_batch_end(self, trainer, *args) -> None:
        if trainer.global_step == self.step:
            raise RuntimeError(f"crash at step {self.step}")


def metrics(stage_dir: Path) -> dict:
    """Every logged value by (metric, step), from the stage's CSV (a resumed stage logs some twice)."""
    rows = csv.DictReader(open(stage_dir / "csv" / "version_0" / "metrics.csv"))
    return {(k, r["step"]): v for r in rows for k, v in r.items() if v and k != "step"}


@pytest.mark.parametrize("stage,overrides,crashes", [
    ("pretrain", ["pretrain.max_steps=60", "pretrain.val_every_n_steps=20", "checkpoints.pretrain_every_n_steps=10"],
     [23]),  # last.ckpt at the end of an epoch that also validates (step 20); mid-epoch: the SIGKILL test
    ("pretrain", ["pretrain.max_steps=60", "pretrain.val_every_n_steps=20", "checkpoints.pretrain_every_n_steps=10",
                  "pretrain.lr=0", "pretrain.early_stopping_patience=1"],
     [23]),  # last.ckpt after step 20's validation, or the resume skips it: early stopping would stop at 60, not 40
    ("finetune", ["init=random", "finetune.max_epochs=4", "finetune.batch_size=8",
                  "checkpoints.finetune_every_n_steps=2"],
     [6, 13]),  # last.ckpt at an epoch's end (step 5), and mid-epoch (12); 5 batches an epoch
])
def test_resume_from_any_checkpoint_matches_an_uninterrupted_run(make_cfg, tmp_path, stage, overrides, crashes):
    cfg = make_cfg("experiment=smoke", "logger=csv", "callbacks=none", *overrides)
    corpus = pipeline.build_corpus(cfg)

    def run(name: str, *extra: str, resume: bool = False) -> Path:
        cfg = make_cfg("experiment=smoke", "logger=csv", "callbacks=none", *overrides, *extra)
        cfg.resume = resume or None
        stage_dir = tmp_path / name
        if stage == "pretrain":
            make_objective("sa").pretrain(cfg, corpus, stage_dir)
        else:
            pipeline.finetune(cfg, corpus, stage_dir)
        return stage_dir

    reference = run("uninterrupted")
    for step in crashes:
        with pytest.raises(RuntimeError, match="crash at step"):
            run(f"crash{step}", "+callbacks.crash._target_=tests.test_resume.Crash", f"+callbacks.crash.step={step}")
        resumed = run(f"crash{step}", resume=True)
        for name in ("last.ckpt", "pretrained.ckpt" if stage == "pretrain" else "best.ckpt"):
            assert_same_weights(resumed / "checkpoints" / name, reference / "checkpoints" / name)
        assert metrics(resumed) == metrics(reference), step
        ours, theirs = (json.loads((d / "results.json").read_text()) for d in (resumed, reference))
        for key in ("val/loss", "test/acc", "test/loss", "val/acc_best", "steps", "epochs"):
            assert ours.get(key) == theirs.get(key), key


def test_a_checkpoint_is_never_seen_half_written(tmp_path, monkeypatch):
    io = AtomicCheckpointIO()
    path = tmp_path / "checkpoints" / "last.ckpt"
    io.save_checkpoint({"global_step": 1, "w": torch.ones(1000)}, path)

    def dies_mid_write(obj, f):
        f.write(b"the first bytes of a checkpoint")
        raise OSError("No space left on device")

    monkeypatch.setattr(torch, "save", dies_mid_write)
    with pytest.raises(OSError, match="No space"):
        io.save_checkpoint({"global_step": 2, "w": torch.zeros(1000)}, path)
    assert torch.load(path, weights_only=True)["global_step"] == 1  # the previous one, whole
    assert [p.name for p in path.parent.iterdir()] == ["last.ckpt"]  # no temporary file left


def test_trainer_writes_checkpoints_atomically(make_cfg, tmp_path):
    cfg = make_cfg("experiment=smoke", "logger=none", "callbacks=none")
    trainer = stage.build_trainer(cfg, tmp_path, [], [])
    assert isinstance(trainer.strategy.checkpoint_io, AtomicCheckpointIO)


@pytest.mark.parametrize("stage", ["pretrain", "finetune"])
def test_early_stopping_stops_when_validation_stops_improving(make_cfg, tmp_path, stage):
    # learning rate 0: validation never improves, so patience 1 stops after the second validation
    cfg = make_cfg("experiment=smoke", "logger=none", "callbacks=none", "init=random", "pretrain.lr=0",
                   "pretrain.max_steps=100", "pretrain.val_every_n_steps=4", "pretrain.early_stopping_patience=1",
                   "finetune.lr=0", "finetune.head_lr=0", "finetune.max_epochs=50",
                   "finetune.early_stopping_patience=1")
    corpus = pipeline.build_corpus(cfg)
    if stage == "pretrain":
        make_objective("sa").pretrain(cfg, corpus, tmp_path)
        assert json.loads((tmp_path / "results.json").read_text())["steps"] == 8
    else:
        assert pipeline.finetune(cfg, corpus, tmp_path)["epochs"] == 2


def test_resume_true_takes_the_latest_unfinished_run_started_with_this_config(make_cfg, tmp_path):
    folder = tmp_path / "logs" / "smoke" / "runs"

    def run_folder(name: str, *overrides: str, finished: bool = False) -> Path:
        (folder / name / ".hydra").mkdir(parents=True)
        OmegaConf.save(make_cfg("experiment=smoke", *overrides), folder / name / ".hydra" / "config.yaml")
        if finished:
            (folder / name / "results.json").write_text("{}")
        return folder / name

    sa = run_folder("2026-01-01_00-00-00_000000")
    done = run_folder("2026-01-01_00-00-01_000000", finished=True)
    lm = run_folder("2026-01-01_00-00-02_000000", "objective=lm")
    assert resume.resume_dir(make_cfg("experiment=smoke", "resume=true")) == sa
    assert resume.resume_dir(make_cfg("experiment=smoke", "objective=lm", "resume=true")) == lm
    with pytest.raises(SemiseqError, match=re.escape(f"the latest, {lm}, differs in init.name=random: resume it "
                                                     f"with resume={lm}")):
        resume.resume_dir(make_cfg("experiment=smoke", "objective=lm", "init=random", "resume=true"))
    with pytest.raises(SemiseqError, match="that run has finished"):
        resume.resume_dir(make_cfg("experiment=smoke", f"resume={done}"))
    with pytest.raises(SemiseqError, match="not a run folder"):
        resume.resume_dir(make_cfg("experiment=smoke", f"resume={tmp_path}"))


@pytest.mark.slow
def test_finetuning_killed_during_its_pretraining_and_then_mid_epoch_resumes_bit_exactly(tmp_path):
    """objective=sa pretrains on demand inside the run (run_dir/pretrain-sa/): kill it there, resume by run
    folder, kill it again mid-epoch of the fine-tuning, resume again; compare with an uninterrupted run."""
    args = ("objective=sa", *PRETRAIN[1:], "finetune.max_epochs=30", "finetune.batch_size=8",
            "checkpoints.finetune_every_n_steps=3")
    logs = tmp_path / "logs"
    ckpt = kill_when(start(logs, *args), logs, "smoke/runs/*/pretrain-sa/checkpoints/last.ckpt")
    run_dir = ckpt.parents[2]
    proc = start(logs, f"resume={run_dir}")  # by folder, with no other override: the run's own config
    ckpt = kill_when(proc, logs, "smoke/runs/*/checkpoints/last.ckpt")
    assert ckpt.parent.parent == run_dir and torch.load(ckpt, weights_only=True)["callbacks"]["LastCheckpoint"]["data"]
    rc, out = finish(start(logs, *args, "resume=true"))
    assert rc == 0, out[-3000:]

    ref_logs = tmp_path / "ref"
    rc, ref_out = finish(start(ref_logs, *args))
    assert rc == 0, ref_out[-3000:]
    (ref_dir,) = ref_logs.glob("smoke/runs/*")
    for name in ("pretrain-sa/checkpoints/pretrained.ckpt", "checkpoints/best.ckpt", "checkpoints/last.ckpt"):
        assert_same_weights(run_dir / name, ref_dir / name)
    ours, theirs = (json.loads((d / "results.json").read_text()) for d in (run_dir, ref_dir))
    for key in ("test/acc", "test/loss", "val/acc_best", "epochs"):
        assert ours[key] == theirs[key], key
    ids = {(d / "wandb_id.txt").read_text() for d in (run_dir, run_dir / "pretrain-sa")}
    assert len(ids) == 2
    for stage_dir in (run_dir, run_dir / "pretrain-sa"):
        stage_id = (stage_dir / "wandb_id.txt").read_text().strip()
        assert all(p.name.endswith(stage_id) for p in stage_dir.glob("wandb/offline-run-*"))
