"""DDP through Lightning: each process takes its share of every batch, 2 gloo processes on the CPU train like
1 process with the same global batch, only the first process writes results, caches and reports, and a run that
needs pretrained weights makes them once, before the second process starts; a DDP run killed mid-epoch resumes
to the same weights. trainer=gpu's bf16-mixed is checked on the CPU (no GPU here).

Tolerance of the 1-vs-2-process comparisons (relative 1e-4 on losses, one sample on accuracies): with dropout off
both see the same samples in every step, so only float32 rounding differs: DDP averages two half-batch gradients
(a different summation order), and a pretraining process divides its loss by its own half's token count (the
halves of a length-bucketed batch hold near-equal counts). Measured: 1e-7 to 4e-6 relative."""

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from hydra.types import RunMode

from semiseq import SemiseqError, pipeline, stage
from semiseq.data import BucketBatchSampler

from .conftest import ROOT, make_objective, read_json
from .test_pipeline import recomputed_test_metrics

DDP = ("trainer=ddp", "trainer.devices=2", "trainer.accelerator=cpu")


def train(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, SEMISEQ_LOG_DIR=str(tmp_path / "logs"), WANDB_MODE="offline", HYDRA_FULL_ERROR="0",
               OMP_NUM_THREADS="1")
    command = [sys.executable, str(ROOT / "train.py"), "experiment=smoke", *args]
    return subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)


def close(a: float, b: float, rel: float = 1e-4) -> bool:
    return abs(a - b) <= rel * max(abs(a), abs(b))


def logged(run_dir: Path, key: str) -> list[tuple[int, float]]:
    """(step, value) of every time ``key`` was logged, from the run's CSV metrics."""
    rows = csv.DictReader(open(run_dir / "csv" / "version_0" / "metrics.csv"))
    return [(int(r["step"]), float(r[key])) for r in rows if r.get(key)]


def same_curve(a: list[tuple[int, float]], b: list[tuple[int, float]], rel: float = 1e-4) -> bool:
    return [s for s, _ in a] == [s for s, _ in b] and all(close(x, y, rel) for (_, x), (_, y) in zip(a, b))


@pytest.mark.parametrize("replicas,n", [(2, 193), (3, 203)])  # 193 = 12 x 16 + 1: a last batch too small to share
def test_each_process_takes_its_share_of_the_batches_one_process_would_make(replicas, n):
    lengths = np.random.default_rng(0).integers(1, 60, n)

    def shares(shuffle: bool, position=None) -> list[list[list[int]]]:
        return [list(BucketBatchSampler(lengths, 8, shuffle, chunk_batches=3, seed=5, position=position,
                                        num_replicas=replicas, rank=r)) for r in range(replicas)]

    one = [b for b in BucketBatchSampler(lengths, 8 * replicas, chunk_batches=3, seed=5) if len(b) >= replicas]
    train = shares(True)
    assert [len(s) for s in train] == [len(one)] * replicas  # every process steps as often, and len() says so
    assert all(len(BucketBatchSampler(lengths, 8, num_replicas=replicas, rank=r)) == len(one) for r in range(replicas))
    for step, batch in enumerate(one):  # a step's shares are one global batch, split evenly
        parts = [s[step] for s in train]
        assert sorted(i for p in parts for i in p) == sorted(batch)
        assert max(map(len, parts)) - min(map(len, parts)) <= 1
    # a resumed run skips the batches it trained on: the same global steps in every process
    assert shares(True, position=lambda: (0, 3)) == [s[3:] for s in train]
    # evaluation serves every sample exactly once, and len() counts each process's batches
    evaluation = shares(False)
    assert sorted(i for s in evaluation for b in s for i in b) == list(range(n))
    assert [len(s) for s in evaluation] == [len(BucketBatchSampler(lengths, 8, False, num_replicas=replicas, rank=r))
                                            for r in range(replicas)]


def test_process_count_and_trainer_configs(make_cfg, tmp_path):
    assert stage.world_size(make_cfg()) == 1
    assert stage.world_size(make_cfg(*DDP)) == 2
    assert stage.world_size(make_cfg("trainer=ddp", "trainer.devices=4", "trainer.num_nodes=2")) == 8
    assert stage.world_size(make_cfg("trainer=ddp", "trainer.devices=[0,3]")) == 2
    assert stage.world_size(make_cfg("trainer=ddp", "trainer.accelerator=cpu")) == 1  # auto on a CPU: one
    trainer = stage.build_trainer(make_cfg("experiment=smoke", *DDP), tmp_path, [], [])
    assert type(trainer.strategy).__name__ == "DDPStrategy" and trainer.num_devices == 2
    assert trainer.strategy._ddp_kwargs["find_unused_parameters"]
    gpu = make_cfg("trainer=gpu").trainer
    assert (gpu.accelerator, gpu.devices, gpu.precision) == ("gpu", 1, "bf16-mixed")
    # pretrain.batch_size is per process: weights pretrained in N processes have their own cache entry
    cfg = make_cfg("experiment=smoke")
    corpus, sa = pipeline.build_corpus(cfg), make_objective("sa")
    entry = lambda n: pipeline.cache_entry(cfg, corpus, sa, n)  # noqa: E731
    assert entry(2) != entry(1) and "world_size" not in sa.key(cfg, corpus)  # one process: the key has no count


def test_ddp_in_a_local_multirun_is_refused(make_cfg, monkeypatch):
    from hydra.core.hydra_config import HydraConfig

    monkeypatch.setattr(HydraConfig, "initialized", staticmethod(lambda: True))
    monkeypatch.setattr(HydraConfig, "get", staticmethod(lambda: SimpleNamespace(mode=RunMode.MULTIRUN)))
    for key in ("LOCAL_RANK", "SLURM_NTASKS", "TORCHELASTIC_RUN_ID"):
        monkeypatch.delenv(key, raising=False)
    pipeline.check_launch(make_cfg())  # one process per job: fine
    with pytest.raises(SemiseqError, match="a multirun .-m. with 2 DDP processes per job on one machine"):
        pipeline.check_launch(make_cfg(*DDP))
    monkeypatch.setenv("SLURM_NTASKS", "2")  # srun started the processes: fine
    pipeline.check_launch(make_cfg(*DDP))


def test_bf16_mixed_trains_and_16_mixed_pretraining_is_refused(make_cfg, tmp_path):
    """trainer=gpu's precision, on the CPU: SA pretraining with truncated BPTT and the adaptive softmax, and the
    classifier, run under bf16 autocast (semiseq.nets.LSTM keeps the LSTM in float32; the adaptive softmax runs in
    float32 under CPU autocast, which leaves its log_softmax in bf16: objectives.lm.adaptive_nll)."""
    cfg = make_cfg("experiment=smoke", "logger=none", "callbacks=none", "trainer.precision=bf16-mixed",
                   "pretrain.tbptt_steps=4", "model.output.softmax=adaptive", "model.output.cutoffs=[5]",
                   f"paths.cache_dir={tmp_path}/cache")
    corpus = pipeline.build_corpus(cfg)
    result = pipeline.finetune(cfg, corpus, tmp_path / "run")
    acc, loss = recomputed_test_metrics(result["best_checkpoint"], corpus, bf16=True)  # the tested weights, in bf16
    assert result["test/acc"] == pytest.approx(acc, abs=1e-6) and result["test/loss"] == pytest.approx(loss, rel=1e-5)
    _, fp32_loss = recomputed_test_metrics(result["best_checkpoint"], corpus)  # measured: 1.3e-4 relative apart
    assert result["test/loss"] != pytest.approx(fp32_loss, rel=1e-5)  # the test itself ran under bf16 autocast
    # float16 with loss scaling: the pretrainer would clip scaled gradients (Lightning unscales them later)
    cfg = make_cfg("experiment=smoke", "logger=none", "trainer.precision=16-mixed", "mode=pretrain")
    with pytest.raises(SemiseqError, match="trainer.precision=16-mixed cannot pretrain with pretrain.grad_clip"):
        make_objective("sa").pretrain(cfg, None, tmp_path / "fp16")


def test_two_gloo_processes_match_one_and_pretrain_once(tmp_path, make_cfg):
    """objective=sa with a cold cache under 2-process DDP: the first process pretrains (on one device) before
    Lightning starts the second, which finds the weights in the cache; one run folder, one results.json."""
    # no dropout: both take the same steps; a high learning rate: they move (the loss falls 0.73 -> 0.64)
    args = ("logger=csv", "model.head.dropout=0", "finetune.max_epochs=4", "finetune.lr=0.03", "finetune.head_lr=0.03")
    out = train(tmp_path, *args, "finetune.batch_size=8", *DDP)  # 2 processes x 8 = the global batch of 16
    assert out.returncode == 0, out.stderr[-3000:]
    (run_dir,) = (tmp_path / "logs" / "smoke" / "runs").iterdir()  # the second process ran in the same folder
    assert (run_dir / "train_ddp_process_1.log").is_file() and (run_dir / ".hydra" / "config.yaml").is_file()
    assert out.stdout.count("[semiseq] synthetic init=sa: test accuracy") == 1
    assert "pretraining them" in (run_dir / "train.log").read_text()
    assert (run_dir / "pretrain-sa" / "results.json").is_file()
    (cached,) = (tmp_path / "logs" / "cache" / "pretrained").glob("sa-*.ckpt")
    ddp = read_json(run_dir / "results.json")
    assert ddp["world_size"] == 2 and ddp["init_checkpoint"] == str(cached)

    cfg = make_cfg("experiment=smoke", *args, "finetune.batch_size=16", f"paths.output_dir={tmp_path}/one")
    pipeline.run(cfg)  # one process, from the same cached weights
    one = read_json(tmp_path / "one" / "results.json")
    assert one["init_checkpoint"] == str(cached) and not (tmp_path / "one" / "pretrain-sa").exists()
    assert one["epochs"] == ddp["epochs"] == 4
    for key in ("val/acc_best", "test/acc"):
        assert abs(one[key] - ddp[key]) <= 1 / 32, key  # 32 samples: at most one may fall the other way
    assert close(one["test/loss"], ddp["test/loss"]), (one["test/loss"], ddp["test/loss"])
    for key in ("val/loss", "train/loss"):  # every epoch's, at the same steps, over both processes' shares
        ours, theirs = logged(tmp_path / "one", key), logged(run_dir, key)
        assert len(ours) == 4 and same_curve(ours, theirs), (key, ours, theirs)
    print(json.dumps({k: (one[k], ddp[k]) for k in ("val/acc_best", "test/acc", "test/loss")}))


@pytest.mark.slow
def test_ddp_pretraining_matches_one_process_and_fine_tuning_uses_it(tmp_path, make_cfg):
    """mode=pretrain in 2 processes (truncated BPTT: gradients of several windows per step, and the adaptive
    softmax, whose rare-word clusters a window may not reach) ends like 1 process with the same global batch;
    its weights are cached as pretrained in 2 processes and a 2-process fine-tuning takes them."""
    args = ("logger=csv", "pretrain.tbptt_steps=4", "pretrain.max_steps=20", "model.output.softmax=adaptive",
            "model.output.cutoffs=[5,9]")
    out = train(tmp_path, "mode=pretrain", *args, "pretrain.batch_size=16", *DDP)
    assert out.returncode == 0, out.stderr[-3000:]
    (run_dir,) = (tmp_path / "logs" / "smoke" / "runs").iterdir()
    ddp = read_json(run_dir / "results.json")
    assert ddp["steps"] == 20 and ddp["world_size"] == 2 and out.stdout.count("[semiseq] pretrained sa") == 1
    cfg = make_cfg("experiment=smoke", *args, "mode=pretrain", f"paths.output_dir={tmp_path}/one")
    assert close(pipeline.run(cfg), ddp["val/loss"]), (read_json(tmp_path / "one" / "results.json"), ddp)
    ours, theirs = logged(tmp_path / "one", "val/loss"), logged(run_dir, "val/loss")
    assert len(ours) == 5 and same_curve(ours, theirs), (ours, theirs)
    ddp_cfg = make_cfg("experiment=smoke", *args, "pretrain.batch_size=16")  # the recipe per process
    entry = lambda c, n=1: pipeline.cache_entry(c, pipeline.build_corpus(c), make_objective("sa"), n)  # noqa: E731
    assert entry(ddp_cfg, 2).is_file() and entry(cfg).is_file()

    out = train(tmp_path, *args, "pretrain.batch_size=16", "logger=none", *DDP)
    assert out.returncode == 0, out.stderr[-3000:]
    (finetuned,) = (d for d in (tmp_path / "logs" / "smoke" / "runs").iterdir() if d != run_dir)
    result = read_json(finetuned / "results.json")
    assert result["init_checkpoint"] == str(entry(ddp_cfg, 2))
    assert not (finetuned / "pretrain-sa").exists()


@pytest.mark.slow
def test_ddp_run_killed_mid_training_resumes_to_the_same_weights(tmp_path):
    """Both processes SIGKILLed (the process group) after a mid-epoch last.ckpt; resume=true under DDP ends
    with the weights of an uninterrupted 2-process run (no dropout: the resumed processes restore the first
    one's random state)."""
    args = ["experiment=smoke", "logger=csv", "init=random", "finetune.max_epochs=30", "finetune.batch_size=4",
            "checkpoints.finetune_every_n_steps=3", "model.head.dropout=0", *DDP]
    env = dict(os.environ, SEMISEQ_LOG_DIR=str(tmp_path / "logs"), WANDB_MODE="offline", OMP_NUM_THREADS="1")
    command = [sys.executable, str(ROOT / "train.py"), *args]
    proc = subprocess.Popen(command, cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)  # its own process group: the second process goes too
    runs_dir = tmp_path / "logs" / "smoke" / "runs"
    while not list(runs_dir.glob("*/checkpoints/last.ckpt")):
        assert proc.poll() is None, "the run ended before its first last.ckpt"
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    (run_dir,) = runs_dir.iterdir()
    assert not (run_dir / "results.json").exists()
    resumed = subprocess.run([*command, "resume=true"], cwd=tmp_path, env=env, capture_output=True, text=True,
                             timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    reference = subprocess.run([*command, "name=reference"], cwd=tmp_path, env=env, capture_output=True, text=True,
                               timeout=600)
    assert reference.returncode == 0, reference.stderr[-3000:]
    (ref_dir,) = (tmp_path / "logs" / "reference" / "runs").iterdir()
    for name in ("last.ckpt", "best.ckpt"):
        ours, theirs = (torch.load(d / "checkpoints" / name, weights_only=True)["state_dict"]
                        for d in (run_dir, ref_dir))
        assert all(torch.equal(ours[k], theirs[k]) for k in ours), name
    ours, theirs = read_json(run_dir / "results.json"), read_json(ref_dir / "results.json")
    assert (ours["test/loss"], ours["epochs"]) == (theirs["test/loss"], theirs["epochs"])
