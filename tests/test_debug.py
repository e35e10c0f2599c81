"""The debug= group (lightning-hydra-template's): fdr, overfit, limit and profiler, each with mode=pretrain, finetune
and joint on the smoke experiment, through the real pipeline; a probe callback sees what every stage's trainer ran, so
a setting that reaches one stage's Trainer but not the other's fails. A debug pretraining is never taken for a real
one."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from lightning.pytorch.callbacks import Callback

from semiseq import pipeline
from semiseq.tasks import ClassifierTask

from .conftest import ROOT, probe, read_json

MODES = ("pretrain", "finetune", "joint")


class Batches(Callback):
    """Per fit of any stage: the task, the profiler, a digest of every training batch by epoch, and the number of
    validation and test batches."""

    fits: list = []

    def on_fit_start(self, trainer, pl_module):
        self.fit = {"task": "classifier" if isinstance(pl_module, ClassifierTask) else "pretrainer", "train": [],
                    "val": 0, "test": 0, "profiler": type(trainer.profiler).__name__, "profiled": 0}
        Batches.fits.append(self.fit)

    def on_train_epoch_start(self, trainer, pl_module):
        self.fit["train"].append([])

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        tokens = (batch["labeled"] if isinstance(batch, dict) else batch)[0]  # joint: the labeled part
        self.fit["train"][-1].append(hashlib.sha1(tokens.numpy().tobytes()).hexdigest()[:8])

    def on_validation_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0):
        self.fit["val"] += 1

    def on_test_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0):
        self.fit["test"] += 1

    def on_train_end(self, trainer, pl_module):
        profiler = trainer.profiler  # what it recorded of this stage
        self.fit["profiled"] = len(getattr(profiler, "recorded_durations", getattr(profiler, "profiled_actions", {})))


@pytest.fixture(autouse=True)
def _clear():
    Batches.fits = []


def run(make_cfg, debug: str, mode: str, *overrides: str):
    """``train.py experiment=smoke debug=<debug> mode=<mode>`` in this process (objective=sa: fine-tuning pretrains
    on demand); returns its config and the probe's fits, the first stage first."""
    cfg = make_cfg("experiment=smoke", f"debug={debug}", f"mode={mode}", "objective=sa", probe(Batches), *overrides)
    assert not cfg.logger and list(cfg.callbacks) == ["probe"]  # debug: no loggers, no extra callbacks
    pipeline.run(cfg)
    fits = Batches.fits
    expected = {"pretrain": ["pretrainer"], "finetune": ["pretrainer", "classifier"], "joint": ["classifier"]}[mode]
    assert [f["task"] for f in fits] == expected
    return cfg, fits


def cached_keys(cfg) -> list[dict]:
    return [json.loads(p.read_text())["key"] for p in sorted(Path(cfg.paths.cache_dir).glob("pretrained/*.json"))]


@pytest.mark.parametrize("mode", MODES)
def test_fdr_runs_one_batch_of_each_loop_in_every_stage(make_cfg, mode):
    cfg, fits = run(make_cfg, "fdr", mode)
    for fit in fits:
        assert len(fit["train"]) == 1 and len(fit["train"][0]) == 1 and fit["val"] == 1, fit
    assert [f["test"] for f in fits] == [0] * (mode == "finetune") + [0 if mode == "pretrain" else 1]
    results = read_json(f"{cfg.paths.output_dir}/results.json")
    assert results["steps"] == 1 if mode == "pretrain" else "test/acc" in results and results["best_checkpoint"] == ""
    if mode != "joint":  # the pretraining (mode=pretrain, or fine-tuning's on demand) is cached under a debug key
        (key,) = cached_keys(cfg)
        assert key["trainer"] == {"fast_dev_run": True}


@pytest.mark.parametrize("mode", MODES)
def test_overfit_trains_on_the_same_few_batches_every_epoch(make_cfg, mode):
    cfg, fits = run(make_cfg, "overfit", mode)
    for fit in fits:
        first, *others = fit["train"]
        assert len(first) == 3 and others, fit  # trainer.overfit_batches=3, several epochs
        assert all(epoch == first[: len(epoch)] for epoch in others), fit
        assert len(set(first)) == 3
    if mode != "pretrain":
        assert len(fits[-1]["train"]) == 20  # finetune.max_epochs of debug/overfit.yaml
    if mode != "joint":
        (key,) = cached_keys(cfg)
        assert key["trainer"] == {"overfit_batches": 3}


@pytest.mark.parametrize("mode", MODES)
def test_limit_runs_a_few_batches_per_epoch_for_a_few_epochs(make_cfg, mode):
    # small batches, so that the smoke splits hold more batches than the limits
    cfg, fits = run(make_cfg, "limit", mode, "finetune.batch_size=4", "data.eval_batch_size=8")
    for fit in fits:
        assert [len(epoch) for epoch in fit["train"]] == [5, 5, 5], fit  # 3 epochs (pretraining: 15 steps) of 5
    classifier = [f for f in fits if f["task"] == "classifier"]
    assert [(f["val"], f["test"]) for f in classifier] == [(3 * 2, 2)] * (mode != "pretrain")
    if mode != "joint":
        (key,) = cached_keys(cfg)
        assert key["trainer"] == {"limit_train_batches": 5, "limit_val_batches": 2}
        assert key["pretrain"]["max_steps"] == 15


@pytest.mark.parametrize("mode,kind", [(mode, "simple") for mode in MODES] + [("pretrain", "advanced"),
                                                                             ("joint", "pytorch")])
def test_profiler_profiles_every_stage(make_cfg, mode, kind):
    cfg, fits = run(make_cfg, "profiler", mode, *([] if kind == "simple" else [f"trainer.profiler={kind}"]))
    name = {"simple": "SimpleProfiler", "advanced": "AdvancedProfiler", "pytorch": "PyTorchProfiler"}[kind]
    assert [f["profiler"] for f in fits] == [name] * len(fits)
    if kind == "pytorch":  # its traces go to the stage's folder
        assert list(Path(cfg.paths.output_dir).glob("fit-*.pt.trace.json"))
    else:
        assert all(f["profiled"] > 0 for f in fits)
    if mode != "joint":  # profiling changes no weights: the real key, a real result
        (key,) = cached_keys(cfg)
        assert "trainer" not in key


def test_a_debug_pretraining_is_not_reused_by_a_real_run(make_cfg):
    """An fdr pretraining caches under a key of its own: the same run without debug= pretrains for real, and the
    real key is the one a run without debug settings has always had."""
    cfg, _ = run(make_cfg, "fdr", "pretrain")
    real = make_cfg("experiment=smoke", "mode=pretrain", "objective=sa", "logger=none", "callbacks=none")
    objective, corpus = pipeline.build_objective(real), pipeline.build_corpus(real)
    assert not pipeline.cache_entry(real, corpus, objective).exists()
    assert pipeline.cache_entry(cfg, corpus, objective).exists()
    assert objective.key(real, corpus) == {k: v for k, v in objective.key(cfg, corpus).items() if k != "trainer"}
    # a Trainer setting that limits training narrows the key whatever sets it; 1 batch is not the whole (1.0)
    limited = make_cfg("experiment=smoke", "+trainer.limit_train_batches=1")
    assert objective.key(limited, corpus)["trainer"] == {"limit_train_batches": 1}
    whole = make_cfg("experiment=smoke", "+trainer.limit_train_batches=1.0", "+trainer.overfit_batches=0")
    assert objective.key(whole, corpus) == objective.key(real, corpus)


def test_train_py_debug_run_goes_to_its_own_folder_and_prints_the_profile(tmp_path):
    """Through train.py: the run folder is under logs/debug/<name>/ (not among the experiment's runs, which
    resume=true and semiseq.report read), and the simple profiler's report of each stage is in the output."""
    env = dict(os.environ, SEMISEQ_LOG_DIR=str(tmp_path / "logs"), HYDRA_FULL_ERROR="0")
    out = subprocess.run([sys.executable, str(ROOT / "train.py"), "experiment=smoke", "debug=profiler"], cwd=tmp_path,
                         env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    (run_dir,) = (tmp_path / "logs" / "debug" / "smoke" / "runs").iterdir()
    assert (run_dir / "results.json").is_file() and not (tmp_path / "logs" / "smoke").exists()
    assert (out.stdout + out.stderr).count("FIT Profiler Report") == 2  # pretraining (on demand) and fine-tuning
    assert "TEST Profiler Report" in out.stdout + out.stderr
