"""wandb dashboards: checkpoints as artifacts, the fine-tune run using the pretraining's artifact
(lineage, online), and the final numbers in the run summary."""

import json
import struct
import zlib
from pathlib import Path

from semiseq import pipeline, tracking

from .conftest import make_objective


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

    monkeypatch.setattr(tracking, "wandb_run", wandb_run)
    cfg = make_cfg("experiment=smoke", "logger=csv", "objective=sa")
    pipeline.run(cfg)
    (_, pretraining), (_, finetuning) = stages  # one run per stage
    name = f"pretrained-{pipeline.cache_entry(cfg, pipeline.build_corpus(cfg), make_objective('sa')).stem}"
    assert pretraining.logged == [(name, "pretrained", ["pretrained.ckpt"])] and pretraining.used == []
    assert finetuning.used == [f"{name}:latest"]
    assert finetuning.logged[0][1:] == ("model", ["best.ckpt"])
    results = json.loads((Path(cfg.paths.output_dir) / "results.json").read_text())
    assert finetuning.summary == {"test/error": results["test/error"], "val/acc_best": results["val/acc_best"]}


def test_offline_runs_keep_the_summary_and_skip_lineage(make_cfg, monkeypatch, caplog):
    monkeypatch.setattr(tracking, "wandb_configured", lambda: False)
    cfg = make_cfg("experiment=smoke", "logger=wandb", "objective=sa")
    pipeline.run(cfg)
    run_dir = Path(cfg.paths.output_dir)
    (finetune,) = run_dir.glob("wandb/offline-run-*/run-*.wandb")  # offline: records kept for `wandb sync`
    (pretraining,) = (run_dir / "pretrain-sa").glob("wandb/offline-run-*/run-*.wandb")
    results = json.loads((run_dir / "results.json").read_text())
    summary = offline_summary(finetune)  # what `wandb sync` would upload as the run's summary
    assert {k: summary.get(k) for k in ("test/error", "val/acc_best", "test/acc")} == {
        k: results[k] for k in ("test/error", "val/acc_best", "test/acc")}
    artifacts = [r.artifact for r in wandb_records(pretraining) if r.WhichOneof("record_type") == "artifact"]
    entry = pipeline.cache_entry(cfg, pipeline.build_corpus(cfg), make_objective("sa"))
    assert [(a.name, a.type) for a in artifacts] == [(f"pretrained-{entry.stem}", "pretrained")]  # the weights
    assert "to link as this run's input" not in caplog.text  # offline: no lineage is attempted (it cannot work)


def wandb_records(path: Path):
    """The records of an offline run's .wandb file, read as wandb writes it: a LevelDB-style log (a 7-byte
    header, then 32 KiB blocks of records, each a 7-byte header: crc32, length, type: full/first/middle/last)
    of wandb ``Record`` protobufs. (wandb 0.31 ships no Python reader for it.)"""
    from wandb.proto import wandb_internal_pb2

    data, block = path.read_bytes(), 32768
    assert struct.unpack("<4sHB", data[:7]) == (b":W&B", 0xBEE1, 0), "not a wandb transaction log"
    pos, record = 7, b""
    while pos + 7 <= len(data):
        if block - pos % block < 7:  # too little room left for a header: the block is padded
            pos += block - pos % block
            continue
        crc, length, kind = struct.unpack("<IHB", data[pos:pos + 7])
        chunk, pos = data[pos + 7:pos + 7 + length], pos + 7 + length
        if kind == 0:  # padding
            continue
        assert zlib.crc32(chunk, zlib.crc32(bytes([kind]))) == crc, f"{path}: corrupt record at byte {pos}"
        record = chunk if kind in (1, 2) else record + chunk
        if kind in (1, 4):  # full, or the last part of one
            parsed = wandb_internal_pb2.Record()
            parsed.ParseFromString(record)
            yield parsed


def offline_summary(path: Path) -> dict:
    """The run summary an offline .wandb file ends with: its summary records' updates and removals, in order."""
    summary = {}
    for record in wandb_records(path):
        if record.WhichOneof("record_type") != "summary":
            continue
        for item in record.summary.update:
            summary[item.key or "/".join(item.nested_key)] = json.loads(item.value_json)
        for item in record.summary.remove:
            summary.pop(item.key or "/".join(item.nested_key), None)
    return summary
