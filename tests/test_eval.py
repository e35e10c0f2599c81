"""`eval.py` end to end in subprocesses, as a user runs it, on tiny checkpoints trained once."""

import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from hydra import compose, initialize_config_dir

from semiseq import pipeline
from semiseq.inference import load

from .conftest import CONF, ROOT, make_objective

LINES = ["s01 s02 s03 s04", "", "Zebra s05 qux!", " ".join(["s06 s07"] * 30)]  # empty, unknown words, over-long


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """An SA checkpoint and a classifier fine-tuned from it, with the settings of `experiment=smoke`."""
    tmp = tmp_path_factory.mktemp("eval")
    with initialize_config_dir(config_dir=str(CONF), version_base=None):
        cfg = compose("train", overrides=[f"paths.log_dir={tmp}/logs", f"paths.output_dir={tmp}/run",
                                          "experiment=smoke", "logger=none", "callbacks=none", "objective=sa"])
    corpus = pipeline.build_corpus(cfg)
    sa = make_objective("sa").pretrain(cfg, corpus, tmp / "sa")
    cfg.init.checkpoint = str(sa)
    results = pipeline.finetune(cfg, corpus, tmp / "clf")
    return SimpleNamespace(sa=sa, clf=results["best_checkpoint"], results=results)


def evaluate(cwd: Path, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    env = dict(os.environ, SEMISEQ_LOG_DIR=str(cwd / "logs"), WANDB_MODE="offline", HYDRA_FULL_ERROR="0")
    return subprocess.run([sys.executable, str(ROOT / "eval.py"), *args], cwd=cwd, env=env, input=stdin,
                          capture_output=True, text=True, timeout=300)


def test_test_action_prints_accuracy_and_writes_a_confusion_matrix(trained, tmp_path):
    out = evaluate(tmp_path, "experiment=smoke", f"ckpt_path={trained.clf}", "logger=csv")
    assert out.returncode == 0, out.stderr[-3000:]
    assert "[semiseq] synthetic test: accuracy" in out.stdout and "% (error" in out.stdout
    assert "confusion matrix" in out.stdout and "Traceback" not in out.stderr
    (report,) = tmp_path.glob("logs/smoke/runs/*/eval.json")
    r = json.loads(report.read_text())
    assert np.sum(r["confusion_matrix"]) == r["num_examples"] == 32  # the smoke test split
    assert r["test/acc"] == pytest.approx(trained.results["test/acc"])  # what training's own test reported
    assert r["class_names"] == ["class0", "class1"]
    (metrics,) = report.parent.glob("csv/*/metrics.csv")
    assert "test/acc" in metrics.read_text()


def test_predict_from_a_file_and_from_stdin(trained, tmp_path):
    (tmp_path / "in.txt").write_text("\n".join(LINES) + "\n")
    out = evaluate(tmp_path, "action=predict", f"ckpt_path={trained.clf}", "input=in.txt", "output=out/pred.jsonl")
    assert out.returncode == 0, out.stderr[-3000:]
    rows = [json.loads(line) for line in (tmp_path / "out" / "pred.jsonl").read_text().splitlines()]
    assert [r["text"] for r in rows] == LINES  # input order, one row per line
    assert rows[1] == {"text": "", "label": None, "probs": None}
    for r in rows[:1] + rows[2:]:
        assert sum(r["probs"].values()) == pytest.approx(1.0, abs=1e-5)
        assert r["label"] == max(r["probs"], key=r["probs"].get)
    assert [r["label"] for r in rows] == load(trained.clf, "cpu").predict(LINES)  # the CLI is the API

    piped = evaluate(tmp_path, "action=predict", f"ckpt_path={trained.clf}", "input=-", "output=-",
                     stdin="\n".join(LINES) + "\n")
    assert piped.returncode == 0, piped.stderr[-3000:]
    assert [json.loads(line) for line in piped.stdout.splitlines()] == rows  # stdout holds only predictions


def test_embed_writes_npy_and_index(trained, tmp_path):
    (tmp_path / "in.csv").write_text('id,review\n1,s01 s02\n2,""\n3,"s03\ns04"\n')
    out = evaluate(tmp_path, "action=embed", f"ckpt_path={trained.sa}", "input=in.csv", "text_column=review",
                   "output=emb/reviews")
    assert out.returncode == 0, out.stderr[-3000:]
    emb = np.load(tmp_path / "emb" / "reviews.npy")
    index = [json.loads(line) for line in (tmp_path / "emb" / "reviews.index.jsonl").read_text().splitlines()]
    assert emb.shape == (3, 2 * 16) and emb.dtype == np.float32
    assert index == [{"line": 2, "text": "s01 s02"}, {"line": 3, "text": ""}, {"line": 4, "text": "s03\ns04"}]
    np.testing.assert_allclose(emb, load(trained.sa, "cpu").embed([r["text"] for r in index]), atol=1e-6)
    assert not list((tmp_path / "emb").glob("*.part"))


@pytest.mark.parametrize("case", ["wrong kind", "missing file"])
def test_bad_input_is_one_line_and_exit_1(trained, tmp_path, case):
    (tmp_path / "in.txt").write_text("s01 s02\n")
    ckpt, source, message = {"wrong kind": (trained.sa, "in.txt", "is a pretraining checkpoint (SA-LSTM)"),
                             "missing file": (trained.clf, "nope.txt", "input file nope.txt does not exist")}[case]
    out = evaluate(tmp_path, "action=predict", f"ckpt_path={ckpt}", f"input={source}")
    assert out.returncode == 1
    assert out.stderr.strip().splitlines() == [out.stderr.strip()]  # one line
    assert out.stderr.startswith("semiseq: error: ") and message in out.stderr and "Traceback" not in out.stderr
