"""`train.py` end to end in subprocesses, as a user runs it (tiny `experiment=smoke` runs)."""

import json
import os
import subprocess
import sys
from pathlib import Path

from .conftest import ROOT, read_json


def train(tmp_path: Path, *args: str, smoke: bool = True) -> subprocess.CompletedProcess:
    env = dict(os.environ, SEMISEQ_LOG_DIR=str(tmp_path / "logs"), WANDB_MODE="offline", HYDRA_FULL_ERROR="0")
    flags = [a for a in args if a.startswith("-")]  # Hydra's flags go before the overrides
    overrides = [a for a in args if not a.startswith("-")]
    command = [sys.executable, str(ROOT / "train.py"), *flags, *(["experiment=smoke"] if smoke else []), *overrides]
    return subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)


def test_multirun_over_inits_pretrains_each_objective_once(tmp_path):
    out = train(tmp_path, "-m", "init=random,lm,sa", "finetune.max_epochs=1,2")
    assert out.returncode == 0, out.stderr[-3000:]
    jobs = sorted(p for p in (tmp_path / "logs" / "smoke" / "multiruns").glob("*/*") if p.name.isdigit())
    assert len(jobs) == 6
    results = [json.loads((j / "results.json").read_text()) for j in jobs]
    assert sorted(r["init"] for r in results) == ["lm", "lm", "random", "random", "sa", "sa"]
    assert sorted(p.name for j in jobs for p in j.glob("pretrain-*")) == ["pretrain-lm", "pretrain-sa"]
    cached = (tmp_path / "logs" / "cache" / "pretrained").glob("*.ckpt")
    assert sorted(p.name.split("-")[0] for p in cached) == ["lm", "sa"]
    for r in results:
        assert r["tensors_loaded"] == (0 if r["init"] == "random" else 5)
    assert out.stdout.count("[semiseq] synthetic init=") == 6
    # every job and every pretraining wrote its own offline wandb run, with its job type and tags
    wandb_runs = sorted(tmp_path.glob("logs/smoke/multiruns/*/*/**/offline-run-*/run-*.wandb"))
    assert len(wandb_runs) == 8
    kinds = sorted(b"pretrain" if b"pretrain" in f.read_bytes() and b"objective:" in f.read_bytes() else b"finetune"
                   for f in wandb_runs)
    assert kinds == [b"finetune"] * 6 + [b"pretrain"] * 2


def test_pretrain_then_finetune_from_the_checkpoint(tmp_path):
    out = train(tmp_path, "mode=pretrain", "objective=lm", "logger=csv")
    assert out.returncode == 0, out.stderr[-3000:]
    (run_dir,) = (tmp_path / "logs" / "smoke" / "runs").glob("*")
    ckpt = run_dir / "checkpoints" / "pretrained.ckpt"
    assert ckpt.is_file() and read_json(run_dir / "results.json")["objective"] == "lm"
    assert (run_dir / "csv").is_dir()
    out = train(tmp_path, "objective=lm", f"init.checkpoint={ckpt}", "logger=none")
    assert out.returncode == 0, out.stderr[-3000:]
    assert "init=lm: test accuracy" in out.stdout and "pretraining them" not in out.stderr


def test_unknown_option_lists_the_valid_ones(tmp_path):
    out = train(tmp_path, "model=lstn")
    assert out.returncode == 1 and out.stderr.startswith("semiseq: error: model=lstn is not an option; choose ")
    assert "lstm, paper_lstm" in out.stderr and "(did you mean model=lstm?)" in out.stderr


def test_vocabulary_mismatch_stops_the_run_with_one_clear_line(tmp_path):
    out = train(tmp_path, "mode=pretrain", "logger=none")
    (run_dir,) = (tmp_path / "logs" / "smoke" / "runs").glob("*")
    out = train(tmp_path, "objective=sa", f"init.checkpoint={run_dir}/checkpoints/pretrained.ckpt",
                "data.corpus.num_symbols=9", "logger=none")
    assert out.returncode != 0
    assert "semiseq: error: vocabulary mismatch: checkpoint" in out.stderr and "Traceback" not in out.stderr
    assert "has 11 tokens but dataset 'synthetic' has 12" in out.stderr


def test_unreachable_download_says_where_to_put_the_file(tmp_path):
    out = train(tmp_path, "data=rt", f"paths.data_dir={tmp_path}/dl", "logger=none", smoke=False)
    assert out.returncode == 1 and "Traceback" not in out.stderr
    assert "semiseq: error: could not download https://www.cs.cornell.edu" in out.stderr
    assert f"place it at {tmp_path}/dl/rt/rt-polaritydata.tar.gz" in out.stderr


def test_without_a_terminal_progress_is_a_log_line_per_validation_or_epoch(tmp_path):
    """Output to a file or pipe (nohup, SLURM, CI): no bar redrawn into the log, but one line per pretraining
    validation (every pretrain.val_every_n_steps=4 of 8 steps) and one per fine-tuning epoch (2), each with its
    metrics."""
    out = train(tmp_path, "logger=none", "objective=sa", "trainer.enable_progress_bar=true")
    assert out.returncode == 0, out.stderr[-3000:]
    lines = [line.split("] - ", 1)[1] for line in out.stdout.splitlines() if "[semiseq.callbacks]" in line]
    assert [line.split(",")[0:2] for line in lines] == [["epoch 0", " step 4"], ["epoch 0", " step 8"],
                                                        ["epoch 0", " step 3"], ["epoch 1", " step 6"]], lines
    assert all("val/loss" in line for line in lines) and "val/ppl" in lines[0] and "train/acc" in lines[2], lines
    assert "it/s" not in out.stdout + out.stderr and "\r" not in out.stdout + out.stderr  # no tqdm bar
