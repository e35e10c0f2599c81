"""wandb dashboards: checkpoints as artifacts, the fine-tune run using the pretraining's artifact
(lineage, online), and the final numbers in the run summary."""

import json
from pathlib import Path

from semiseq import pipeline, runs


class FakeRun:
    """Records what semiseq asks of a wandb run."""

    def __init__(self, mode: str):
        self.settings = type("Settings", (), {"mode": mode})()
        self.summary, self.used, self.logged = {}, [], []

    def use_artifact(self, name):
        self.used.append(name)

    def log_artifact(self, artifact):
        self.logged.append((artifact.name, artifact.type, sorted(artifact.manifest.entries)))


def test_pretraining_is_an_artifact_the_finetune_run_uses(make_cfg, monkeypatch):
    stages = []  # (the stage's loggers list, its fake run)

    def wandb_run(loggers):
        for seen, run in stages:
            if seen is loggers:
                return run
        stages.append((loggers, FakeRun("online")))
        return stages[-1][1]

    monkeypatch.setattr(runs, "wandb_run", wandb_run)
    cfg = make_cfg("experiment=smoke", "logger=csv", "init=sa")
    pipeline.run(cfg)
    (_, pretraining), (_, finetuning) = stages  # one run per stage
    name = f"pretrained-{runs.cache_path(cfg, 'sa').stem}"
    assert pretraining.logged == [(name, "pretrained", ["pretrained.ckpt"])] and pretraining.used == []
    assert finetuning.used == [f"{name}:latest"]
    assert finetuning.logged[0][1:] == ("model", ["best.ckpt"])
    results = json.loads((Path(cfg.paths.output_dir) / "results.json").read_text())
    assert finetuning.summary == {"test/error": results["test/error"], "val/acc_best": results["val/acc_best"]}


def test_offline_runs_keep_the_summary_and_skip_lineage(make_cfg, monkeypatch):
    monkeypatch.setattr(runs, "wandb_configured", lambda: False)
    cfg = make_cfg("experiment=smoke", "logger=wandb", "init=sa")
    pipeline.run(cfg)
    run_dir = Path(cfg.paths.output_dir)
    (finetune,) = run_dir.glob("wandb/offline-run-*/run-*.wandb")  # offline: records kept for `wandb sync`
    (pretraining,) = (run_dir / "pretrain-sa").glob("wandb/offline-run-*/run-*.wandb")
    assert b"val/acc_best" in finetune.read_bytes() and b"test/error" in finetune.read_bytes()
    assert runs.artifact_name(cfg, "sa").encode() in pretraining.read_bytes()  # the weights, as an artifact
