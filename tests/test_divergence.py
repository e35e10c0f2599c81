"""A stage whose loss diverges stops with one clear line, and nothing diverged is cached or written as a result.

Divergence is provoked with a learning rate of 1e30: after one Adam step every weight is ~1e30, so the next loss is
astronomically large on any CPU — NaN or infinite on some, finite (2e31) on others. The rule catches both (non-finite,
or more than 10x the first loss), so these tests do not depend on how a CPU overflows."""

from __future__ import annotations

import math
import os
import re
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from semiseq import SemiseqError, pipeline
from semiseq.callbacks import Divergence

from .conftest import ROOT

DIVERGED = r"(nan|inf|\d\.\d+e\+\d+, more than 10x its first value \(\d\.\d+\))"


def fake(step: int = 0, log_every: int = 5):
    trainer = SimpleNamespace(global_step=step, log_every_n_steps=log_every,
                              strategy=SimpleNamespace(reduce_boolean_decision=lambda decision, all: decision))
    return trainer, SimpleNamespace(kind="sa", hparams=SimpleNamespace(lr=0.1))


def feed(callback: Divergence, trainer, task, losses: dict[int, float]) -> None:
    for step, loss in losses.items():
        trainer.global_step = step
        callback.on_train_batch_end(trainer, task, {"loss": torch.tensor(loss)}, None, step - 1)


def test_the_rule_non_finite_or_ten_times_the_first_loss():
    callback, (trainer, task) = Divergence(), fake()
    feed(callback, trainer, task, {1: 2.0, 5: 19.9, 10: 0.5})  # the first loss is read at step 1; 9.95x is not diverged
    assert callback.first == 2.0
    with pytest.raises(SemiseqError, match=r"SA pretraining diverged at step 15: training loss is 2e\+31, more than "
                                           r"10x its first value \(2\)"):
        feed(callback, trainer, task, {15: 2e31})  # finite: what this CPU gives at lr=1e30
    for bad in (float("nan"), float("inf")):
        with pytest.raises(SemiseqError, match=rf"diverged at step 5: training loss is {bad} "):
            feed(Divergence(), trainer, task, {1: 2.0, 5: bad})


def test_losses_are_read_on_logging_steps_only():
    """A diverged loss at step 3 is found at step 5, the next step the logger writes: no device sync in between."""
    callback, (trainer, task) = Divergence(), fake()
    feed(callback, trainer, task, {1: 2.0, 2: 2.0, 3: float("nan"), 4: float("nan")})
    with pytest.raises(SemiseqError, match=r"diverged at step 5: training loss is nan \(checked every "
                                           r"trainer.log_every_n_steps=5 steps\); lower pretrain.lr \(now 0.1\)"):
        feed(callback, trainer, task, {5: float("nan")})


def test_a_resumed_stage_keeps_its_first_loss():
    """A resume late in training must not take its low loss as the reference: the first loss is in the checkpoint."""
    callback, (trainer, task) = Divergence(), fake()
    feed(callback, trainer, task, {1: 6.0})
    resumed = Divergence()
    resumed.load_state_dict(callback.state_dict())
    feed(resumed, trainer, task, {101: 0.5, 105: 30.0})  # 60x the resumed run's first loss, 5x the stage's
    assert resumed.first == 6.0


def test_nothing_is_checkpointed_after_an_unread_diverged_loss():
    callback, (trainer, task) = Divergence(), fake(log_every=50)
    feed(callback, trainer, task, {1: 2.0, 7: float("inf")})
    with pytest.raises(SemiseqError, match="diverged at step 7: training loss is inf"):
        callback.on_save_checkpoint(trainer, task, {})


def test_a_non_finite_validation_loss_or_perplexity_stops_the_stage():
    """val/ppl = exp(val/loss) is infinite past a loss of ~709, long before the loss itself overflows."""
    callback, (trainer, task) = Divergence(), fake(step=400)
    trainer.sanity_checking, trainer.state = False, SimpleNamespace(fn="fit")
    trainer.callback_metrics = {"val/loss": torch.tensor(5.0), "val/ppl": torch.tensor(148.4)}
    callback.on_validation_end(trainer, task)  # healthy
    trainer.callback_metrics = {"val/loss": torch.tensor(2e31), "val/ppl": torch.tensor(float("inf"))}
    with pytest.raises(SemiseqError, match=r"SA pretraining diverged at step 400: val/ppl is inf "):
        callback.on_validation_end(trainer, task)


def run_train(tmp: Path, *args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, SEMISEQ_LOG_DIR=str(tmp / "logs"), WANDB_MODE="offline", OMP_NUM_THREADS="1")
    env.pop("HYDRA_FULL_ERROR", None)
    return subprocess.run([sys.executable, str(ROOT / "train.py"), "experiment=smoke", "logger=none", *args], cwd=tmp,
                          env=env, capture_output=True, text=True, timeout=600)


def written(tmp: Path) -> list[str]:
    """Every result, weights file and cache entry under the logs folder."""
    return sorted(str(p.relative_to(tmp)) for pattern in ("*.ckpt", "results.json", "pretrained/*.json")
                  for p in (tmp / "logs").rglob(pattern))


@pytest.mark.parametrize("mode", ["pretrain", "finetune"])
def test_diverged_pretraining_is_one_line_and_never_cached(tmp_path, mode):
    """`mode=pretrain`, and the pretraining an `objective=sa` fine-tune starts on demand, with a learning rate that
    diverges: exit status 1, one line naming the stage, the step, the loss and what to lower; no weights in the cache,
    no results.json, no checkpoint (the last one would hold the diverged weights)."""
    out = run_train(tmp_path, f"mode={mode}", "objective=sa", "pretrain.lr=1e30", "trainer.log_every_n_steps=3")
    lines = out.stderr.splitlines()
    assert out.returncode == 1 and len(lines) == 1, out.stderr[-3000:]
    assert lines[0].startswith("semiseq: error: SA pretraining diverged at step "), lines[0]
    assert re.search(rf"at step \d+: training loss is {DIVERGED} \(checked every "
                                   r"trainer.log_every_n_steps=3 steps\); lower pretrain.lr \(now 1e\+30\), check "
                                   r"pretrain.grad_clip, or check the data; nothing was cached$", lines[0]), lines[0]
    assert written(tmp_path) == []


def test_diverged_fine_tuning_writes_no_result(make_cfg, tmp_path):
    cfg = make_cfg("experiment=smoke", "logger=none", "callbacks=none", "init=random", "finetune.lr=1e30",
                   "finetune.head_lr=1e30")
    with pytest.raises(SemiseqError, match=r"fine-tuning diverged at step \d+: (training loss is " + DIVERGED +
                                           r"|val/loss is (nan|inf)) .*lower finetune.lr \(now 1e\+30\) or "
                                           r"finetune.head_lr.*no result was written$"):
        pipeline.finetune(cfg, pipeline.build_corpus(cfg), tmp_path / "ft")
    assert written(tmp_path) == [] and not list((tmp_path / "ft").rglob("*.ckpt"))


def test_a_healthy_run_is_not_stopped(make_cfg, tmp_path):
    """The default smoke recipe trains to the end under the same checks (no false alarm on a healthy loss)."""
    cfg = make_cfg("experiment=smoke", "logger=none", "callbacks=none", "init=random")
    result = pipeline.finetune(cfg, pipeline.build_corpus(cfg), tmp_path / "ft")
    assert math.isfinite(result["test/loss"]) and Path(result["best_checkpoint"]).is_file()
