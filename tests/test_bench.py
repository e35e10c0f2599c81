"""bench/gpu.py, the prepared GPU check, in its --dry-run: every row at tiny sizes on the CPU (the device checks
compare the CPU with itself, train.py runs with trainer.accelerator=cpu, the IMDB text is a fixture archive), so
that the check a GPU runs once cannot rot before it does. ~40 s on 2 busy cores."""

import json
import math
import subprocess
import sys

import pytest

from tests.conftest import ROOT

MODELS, PRECISIONS = ("sa", "lm", "clf"), ("fp32", "tf32", "bf16-mixed")
# written out here, not read from bench/gpu.py: a row the script stops producing fails this test
ROWS = [*(f"check/nets/{m}" for m in MODELS), "check/lstm_fp32_under_bf16", "check/encode_vs_packing",
        "check/train_py/pretrain", "check/train_py/finetune", "check/train_py/ddp",
        *(f"speed/{m}/{p}" for m in MODELS for p in PRECISIONS), "speed/encode_vs_packing",
        "imdb/sa_pretrain", "imdb/recipe"]


@pytest.fixture(scope="module")
def dry_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("gpu") / "gpu.json"
    done = subprocess.run([sys.executable, str(ROOT / "bench" / "gpu.py"), "--dry-run", "--out", str(out)],
                          cwd=out.parent, capture_output=True, text=True, timeout=300)
    return done, json.loads(out.read_text()) if out.exists() else {}


def positive(row: dict, *keys: str) -> bool:
    return all(isinstance(row.get(k), (int, float)) and math.isfinite(row[k]) and row[k] > 0 for k in keys)


def test_the_dry_run_passes_and_prints_every_row(dry_run):
    done, table = dry_run
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert [r["id"] for r in table["rows"]] == ROWS
    assert all(r["status"] == "ok" for r in table["rows"]), [(r["id"], r["summary"]) for r in table["rows"]
                                                             if r["status"] != "ok"]
    assert all(r["id"] in done.stdout for r in table["rows"])  # the printed table
    assert table["meta"]["dry_run"] is True and table["meta"]["device"] == "cpu"


def test_the_checks_compare_what_they_say(dry_run):
    rows = {r["id"]: r for r in dry_run[1]["rows"]}
    for m in MODELS:
        assert rows[f"check/nets/{m}"]["loss_rel"] < 1e-4 and positive(rows[f"check/nets/{m}"], "loss_cpu")
    bf16 = rows["check/lstm_fp32_under_bf16"]
    assert (bf16["lstm_dtype"], bf16["linear_after_dtype"]) == ("float32", "bfloat16")
    assert rows["check/encode_vs_packing"]["max_abs_diff"] < 1e-5 and rows["check/encode_vs_packing"]["layers"] == 2
    for stage in ("pretrain", "finetune"):
        row = rows[f"check/train_py/{stage}"]
        assert (row["rc"], row["device"], row["precision"], row["lstm_output_dtype"], row["autocast"]) == (
            0, "cpu", "bf16-mixed", "float32", True)
    assert (rows["check/train_py/ddp"]["strategy"], rows["check/train_py/ddp"]["backend"]) == ("DDPStrategy", "gloo")


def test_the_speed_and_imdb_rows_hold_measurements(dry_run):
    rows = {r["id"]: r for r in dry_run[1]["rows"]}
    for m in MODELS:
        for p in PRECISIONS:
            row = rows[f"speed/{m}/{p}"]
            assert positive(row, "semiseq_tokens_per_s", "bare_tokens_per_s", "ratio", "tokens_per_batch")
            assert 0.05 < row["ratio"] < 20 and row["timed_steps"] >= 3 and row["tf32"] == (p != "fp32")
            assert ("bare_lstm16_tokens_per_s" in row or "bare_lstm16_error" in row) == (p == "bf16-mixed")
    for kind in ("bucketed", "shuffled"):
        assert positive(rows["speed/encode_vs_packing"][kind], "segments_ms", "packed_ms", "padded_ms")
    pre, recipe = rows["imdb/sa_pretrain"], rows["imdb/recipe"]
    assert positive(pre, "tokens_per_s", "s_per_step", "tokens_per_sequence") and pre["timed_steps"] >= 3
    assert pre["device"] == "cpu" and pre["precision"] == "bf16-mixed"
    assert positive(recipe, "pretrain_hours", "finetune_hours", "total_hours")
    assert recipe["pretrain_hours"] == pytest.approx(100_000 * pre["s_per_step"] / 3600)
