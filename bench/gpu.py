"""The GPU path, checked and measured in one command: correctness on CUDA, throughput at the paper's size, a real
SA pretraining on IMDB and from it the time of the paper's IMDB recipe.

    python bench/gpu.py [--out gpu.json] [--imdb-unsup PATH/aclImdb_unsup.tar.gz] [--pretrain-seconds 120]
                        [--steps 20] [--warmup 4] [--device cuda|cuda:N] [--sections check,speed,imdb]
    python bench/gpu.py --dry-run [--out dry.json]    # tiny sizes on the CPU, seconds: the test suite runs it

Sized to finish in one call within 8 minutes on one GPU (H100/H200 class; about half of it the IMDB part:
tokenising 50k reviews, then ``--pretrain-seconds`` of training). It prints one table and writes it as JSON
(``--out``, rewritten after every row, so a run cut short keeps what it measured). Rows:

  check/nets/{sa,lm,clf}       the semiseq networks on the device against the CPU, same weights and batch (mixed
                               lengths, truncated-BPTT windows), float32 with TF32 off: losses within 1e-4
                               (relative), gradients within 1e-2 (relative, the largest over the tensors)
  check/lstm_fp32_under_bf16   semiseq.nets.LSTM under bf16 autocast: float32 out, equal to its output without
                               autocast, while a Linear after it runs in bf16 (and what plain nn.LSTM does there)
  check/encode_vs_packing      Backbone.encode's segment loop (and encode_windows) against pack_padded_sequence on
                               the device, 2 layers, with and without a start state: states and gradients
  check/train_py/{pretrain,finetune}  one ``train.py experiment=smoke trainer=gpu`` (SA pretraining, then
                               fine-tuning): both finish, on the device, bf16-mixed, the LSTM's output float32
  check/train_py/ddp           ``train.py mode=pretrain trainer=ddp trainer.devices=1``: the DDP path (NCCL on GPUs)
  speed/{sa,lm,clf}/{fp32,tf32,bf16-mixed}   training tokens/s at the paper's size (embedding 512, LSTM 1024,
                               adaptive softmax over 100k words, batch 64, 400-step windows, review lengths drawn
                               like IMDB's) through semiseq (its task fitted by a Lightning Trainer over its data
                               module) and through a bare cuDNN loop (nn.Embedding + nn.LSTM + the same softmax, a
                               plain padded forward), paired step by step on the same batches. bf16-mixed keeps the
                               LSTM in float32 in both (semiseq's policy); "lstm16" is the bare loop with the LSTM
                               left to autocast (cuDNN in float16): what that policy costs
  speed/encode_vs_packing      ms for forward + backward of the encoder state: the segment loop against packing
                               (and a plain padded pass) on a length-bucketed batch and on a shuffled one
  imdb/sa_pretrain             ``train.py mode=pretrain experiment=imdb_sa trainer=gpu`` on the 50k unlabeled IMDB
                               reviews for ``--pretrain-seconds``: measured tokens/s and seconds per step
  imdb/recipe                  from it, the paper's recipe: 100k pretraining steps, and 20 fine-tuning epochs over
                               21,250 reviews at the classifier's bf16-mixed tokens/s (speed/clf/bf16-mixed)

``--dry-run`` runs every row at tiny sizes on the CPU (the device checks compare the CPU with itself, train.py
runs with ``trainer.accelerator=cpu``, the IMDB text is a small fixture archive): every code path but CUDA's, so
that the check cannot rot before a GPU runs it. The exit status is 1 when a row fails.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch is imported

import argparse
import contextlib
import copy
import io
import json
import math
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
import traceback
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

import lightning as L  # noqa: E402

from semiseq.data import SequenceDataModule  # noqa: E402
from semiseq.data.corpus import EOS, PAD, SPECIALS, Corpus, Sequences, Vocab, collate  # noqa: E402
from semiseq.nets import LSTM, Backbone, Classifier  # noqa: E402
from semiseq.objectives.lm import LanguageModel  # noqa: E402
from semiseq.objectives.sa import SequenceAutoencoder  # noqa: E402
from semiseq.tasks import ClassifierTask, Pretrainer  # noqa: E402

MODELS = ("sa", "lm", "clf")
PRECISIONS = ("fp32", "tf32", "bf16-mixed")
ROWS = (*(f"check/nets/{m}" for m in MODELS), "check/lstm_fp32_under_bf16", "check/encode_vs_packing",
        "check/train_py/pretrain", "check/train_py/finetune", "check/train_py/ddp",
        *(f"speed/{m}/{p}" for m in MODELS for p in PRECISIONS), "speed/encode_vs_packing",
        "imdb/sa_pretrain", "imdb/recipe")
SECTIONS = ("check", "speed", "imdb")
IMDB_UNSUP = "shared/data/imdb-unsup/aclImdb_unsup.tar.gz"  # under the repository's parent (../shared) or root


@dataclass
class Size:
    """A network and its batches. Lengths: lognormal(mu, sigma) clipped to [lo, hi] (IMDB's reviews, tokenised as
    semiseq does: mu 5.39, sigma 0.64, mean 271, max 2,904), drawn for ``sequences`` texts, batched length-bucketed."""

    vocab: int
    embed: int
    hidden: int
    cutoffs: tuple
    batch: int
    window: int
    head: int
    mu: float
    sigma: float
    lo: int
    hi: int
    sequences: int


# conf/experiment/imdb.yaml with conf/model/paper_lstm.yaml; 200 batches of 64: one chunk of the bucketing sampler
PAPER = Size(100_000, 512, 1024, (4000, 20000, 50000), 64, 400, 512, 5.39, 0.64, 5, 2904, 12_800)
CHECK = Size(20_000, 128, 256, (2000, 10000), 8, 25, 64, 3.0, 0.6, 1, 60, 8)  # the device-vs-CPU checks
TINY = Size(500, 16, 32, (100, 200), 4, 20, 16, 3.0, 0.5, 2, 60, 200)  # --dry-run
RECIPE = {"pretrain_steps": 100_000, "finetune_epochs": 20, "finetune_reviews": 21_250}  # imdb.yaml; 25k - 15 % val
DROPOUT = {"embed_dropout": 0.8, "dropout": 0.5}  # conf/experiment/imdb.yaml


# ---------------------------------------------------------------------------------------------- helpers
def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@contextlib.contextmanager
def tf32(enabled: bool):
    """TF32 for float32 matmuls and cuDNN (its LSTM included) on or off; no effect on a CPU."""
    old = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = enabled
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = old


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    """||a - b|| / ||b||, in float64 on the CPU."""
    a, b = a.detach().double().cpu(), b.detach().double().cpu()
    return float((a - b).norm() / b.norm().clamp(min=1e-30))


def zipf_corpus(size: Size, seed: int = 0) -> Corpus:
    """``size.sequences`` labeled texts with IMDB-like lengths and Zipf(1) tokens over the vocabulary (so the
    adaptive softmax's clusters get their real shares), as the training split; val and test: its first 64."""
    rng = np.random.default_rng(seed)
    lengths = np.clip(rng.lognormal(size.mu, size.sigma, size.sequences).astype(np.int64), size.lo, size.hi)
    ids = np.arange(len(SPECIALS), size.vocab)
    p = 1.0 / (ids - len(SPECIALS) + 1)
    tokens = rng.choice(ids, size=int(lengths.sum()), p=p / p.sum()).astype(np.int32)
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    train = Sequences(tokens, offsets, rng.integers(0, 2, size.sequences))
    small = train.subset(np.arange(min(64, size.sequences)))
    itos = SPECIALS + [f"w{i}" for i in range(size.vocab - len(SPECIALS))]
    none = Sequences(np.zeros(0, np.int32), np.zeros(1, np.int64))
    return Corpus("zipf", Vocab(itos), train, small, small, none, ["neg", "pos"])


def random_batch(size: Size, seed: int = 0, lengths: list[int] | None = None):
    """(tokens [B, T] right-padded, lengths [B], labels [B]) on the CPU, lengths from ``size``'s distribution."""
    g = torch.Generator().manual_seed(seed)
    if lengths is None:
        lengths = np.clip(np.random.default_rng(seed).lognormal(size.mu, size.sigma, size.batch).astype(int),
                          size.lo, size.hi).tolist()
    tokens = torch.randint(len(SPECIALS), size.vocab, (len(lengths), max(lengths)), generator=g)
    for row, n in enumerate(lengths):
        tokens[row, n:] = PAD
    return tokens, torch.tensor(lengths), torch.randint(0, 2, (len(lengths),), generator=g)


def to(batch, device):
    return tuple(t.to(device) for t in batch)


def semiseq_net(model: str, size: Size, dropout: dict | None = None, layers: int = 1) -> nn.Module:
    """The semiseq network (plain torch.nn) a task trains, with ``model.output``'s adaptive softmax."""
    dropout = dropout or {"embed_dropout": 0.0, "dropout": 0.0}
    backbone = Backbone(size.vocab, size.embed, size.hidden, layers, **dropout)
    if model == "clf":
        return Classifier(backbone, 2, size.head, 0.5 if dropout["dropout"] else 0.0)
    cls = SequenceAutoencoder if model == "sa" else LanguageModel
    return cls(backbone, backbone.dropout, "adaptive", tuple(size.cutoffs))


def semiseq_backward(model: str, net: nn.Module, batch, window: int) -> torch.Tensor:
    """Forward + backward as the task's training_step runs them (window by window for SA and LM); the loss."""
    tokens, lengths, labels = batch
    if model == "clf":
        loss = F.cross_entropy(net(tokens, lengths), labels)
        loss.backward()
        return loss.detach()
    count, total = net.num_targets(lengths), 0.0
    for part in net.window_losses(tokens, lengths, window):
        (part / count).backward()
        total = total + part.detach()
    return total / count


# ----------------------------------------------------------------------------------------------- checks
def check_nets(model: str, size: Size, device: torch.device) -> dict:
    torch.manual_seed(0)
    cpu = semiseq_net(model, size)
    dev = copy.deepcopy(cpu).to(device)
    batch = random_batch(size, seed=1)
    with tf32(False):
        losses = [semiseq_backward(model, net, to(batch, d), size.window) for net, d in ((cpu, "cpu"), (dev, device))]
    grads = max(rel(b.grad, a.grad) for a, b in zip(cpu.parameters(), dev.parameters()) if a.grad is not None)
    loss = rel(losses[1], losses[0])
    return {"status": "ok" if loss < 1e-4 and grads < 1e-2 else "fail", "loss_cpu": float(losses[0]),
            "loss_device": float(losses[1]), "loss_rel": loss, "grad_rel_max": grads,
            "lengths": batch[1].tolist(), "window": size.window,
            "summary": f"loss rel diff {loss:.1e} (< 1e-4), grads {grads:.1e} (< 1e-2)"}


def check_lstm_bf16(size: Size, device: torch.device) -> dict:
    torch.manual_seed(0)
    lstm = LSTM(size.embed, size.hidden, batch_first=True).to(device)
    plain = nn.LSTM(size.embed, size.hidden, batch_first=True).to(device)
    plain.load_state_dict(lstm.state_dict())
    after = nn.Linear(size.hidden, 4).to(device)
    x = torch.randn(size.batch, 2 * size.window, size.embed, device=device)
    with tf32(False), torch.no_grad():
        ref = lstm(x)[0]
        with torch.autocast(device.type, dtype=torch.bfloat16):
            out = lstm(x)[0]
            follows = after(out).dtype
            try:
                plain_dtype = str(plain(x)[0].dtype).replace("torch.", "")
            except RuntimeError as e:  # oneDNN without bf16 has no LSTM kernel under autocast
                plain_dtype = f"fails: {str(e).splitlines()[0][:80]}"
    diff = float((out.float() - ref).abs().max())
    ok = out.dtype == torch.float32 and follows == torch.bfloat16 and diff <= 1e-6
    return {"status": "ok" if ok else "fail", "lstm_dtype": str(out.dtype).replace("torch.", ""),
            "linear_after_dtype": str(follows).replace("torch.", ""), "max_abs_diff_vs_no_autocast": diff,
            "plain_nn_lstm_under_autocast": plain_dtype,
            "summary": f"semiseq LSTM {out.dtype} (diff {diff:.1e}), Linear after it {follows}; plain nn.LSTM: "
                       f"{plain_dtype}".replace("torch.", "")}


def packed_state(backbone: Backbone, tokens, lengths, state=None):
    packed = pack_padded_sequence(backbone.embed(tokens), lengths.cpu(), batch_first=True, enforce_sorted=False)
    return backbone.lstm(packed, state)[1]


def check_encode(size: Size, device: torch.device) -> dict:
    torch.manual_seed(0)
    backbone = Backbone(size.vocab, size.embed, size.hidden, num_layers=2).to(device)
    lengths = [1, 2, 2, 5, 9, 17, size.window + 3, 2 * size.window + 1]  # distinct and repeated, beyond a window
    tokens, lengths, _ = to(random_batch(size, seed=2, lengths=lengths), device)
    start = tuple(torch.randn(2, len(lengths), size.hidden, device=device) for _ in range(2))
    worst = {"values": 0.0, "grads": 0.0}
    with tf32(False):
        for name, state in (("no start state", None), ("start state", start)):
            for how in ("encode", "encode_windows"):
                if how == "encode_windows" and state is not None:
                    continue  # encode_windows starts from zeros
                runs = []
                for fn in (lambda: packed_state(backbone, tokens, lengths, state),
                           lambda: backbone.encode(tokens, lengths, state) if how == "encode"
                           else backbone.encode_windows(tokens, lengths, size.window)):
                    backbone.zero_grad()
                    h, c = fn()
                    (h.sum() + (c * c).sum()).backward()  # the SA's decoder reads both
                    runs.append(((h.detach(), c.detach()), [p.grad.clone() for p in backbone.lstm.parameters()]))
                (ref, ref_g), (got, got_g) = runs
                if how == "encode_windows":  # gradient stops at window starts there: compare values only
                    got_g = ref_g
                worst["values"] = max(worst["values"], *(float((a - b).abs().max()) for a, b in zip(got, ref)))
                worst["grads"] = max(worst["grads"], *(rel(a, b) for a, b in zip(got_g, ref_g)))
    ok = worst["values"] < 1e-5 and worst["grads"] < 1e-4
    return {"status": "ok" if ok else "fail", "max_abs_diff": worst["values"], "grad_rel_max": worst["grads"],
            "layers": 2, "lengths": lengths.tolist(),
            "summary": f"2 layers, {len(set(lengths.tolist()))} distinct lengths: states {worst['values']:.1e} "
                       f"(< 1e-5), grads {worst['grads']:.1e} (< 1e-4)"}


# ------------------------------------------------------------------------------- train.py in a subprocess
class Probe(L.Callback):
    """Added to a train.py run (``+callbacks.probe._target_=gpu.Probe +callbacks.probe.out=FILE``): for every stage,
    one JSON line with where it trained (device, precision, strategy, DDP backend) and, at its first step, the
    dtype of the LSTM's output and whether autocast was on around it."""

    def __init__(self, out: str):
        self.out, self.seen, self.handle = out, {}, None

    def on_train_start(self, trainer, pl_module):
        import torch.distributed as dist

        backend = dist.get_backend() if dist.is_available() and dist.is_initialized() else None
        self.seen = {"stage": pl_module.kind, "device": str(trainer.strategy.root_device),
                     "precision": str(trainer.precision), "strategy": type(trainer.strategy).__name__,
                     "world_size": trainer.world_size, "backend": backend}
        self.handle = pl_module.net.backbone.lstm.register_forward_hook(self._hook)

    def _hook(self, module, args, output):
        out = output[0]
        out = out.data if isinstance(out, nn.utils.rnn.PackedSequence) else out
        self.seen.setdefault("lstm_output_dtype", str(out.dtype).replace("torch.", ""))
        self.seen.setdefault("autocast", torch.is_autocast_enabled(out.device.type))

    def on_train_end(self, trainer, pl_module):
        self.handle.remove()
        self.seen["steps"] = trainer.global_step
        if trainer.is_global_zero:
            with open(self.out, "a") as f:
                f.write(json.dumps(self.seen) + "\n")


class TokenMeter(L.Callback):
    """Added to a train.py run: times its training steps from step ``warmup`` to the end (the device synchronised
    at both ends only) and counts their real tokens on the device (read once, at the end: no sync per step);
    writes one JSON line to ``out``."""

    def __init__(self, out: str, warmup: int = 5):
        self.out, self.warmup = out, warmup
        self.start = self.fit_start = None
        self.tokens, self.sequences, self.batches = 0, 0, 0

    def on_fit_start(self, trainer, pl_module):
        self.fit_start = time.perf_counter()

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if trainer.global_step == self.warmup and self.start is None:
            sync(pl_module.device)
            self.start = time.perf_counter()
        if self.start is not None:
            lengths = batch[1]
            self.tokens = self.tokens + lengths.sum()
            self.sequences += len(lengths)
            self.batches += 1

    def on_train_end(self, trainer, pl_module):
        sync(pl_module.device)
        seconds = time.perf_counter() - self.start if self.start is not None else float("nan")
        tokens = int(self.tokens)
        record = {"steps": trainer.global_step, "timed_steps": self.batches, "seconds": seconds, "tokens": tokens,
                  "tokens_per_s": tokens / seconds, "s_per_step": seconds / max(self.batches, 1),
                  "tokens_per_batch": tokens / max(self.batches, 1),
                  "tokens_per_sequence": tokens / max(self.sequences, 1), "batch_size": trainer.datamodule.batch_size,
                  "vocab": len(trainer.datamodule.vocab), "before_timing_s": (self.start or 0) - self.fit_start,
                  "device": str(pl_module.device), "precision": str(trainer.precision)}
        if trainer.is_global_zero:
            with open(self.out, "a") as f:
                f.write(json.dumps(record) + "\n")


class TrainPy:
    """``python train.py ARGS`` run from ``workdir`` with its own log folder (``logs-<tag>``) and this repository's
    src and bench/ importable. :meth:`start` launches it (at once, or when :meth:`result` first asks: on a GPU the
    runs take turns, so that none times another's work); :meth:`result` waits: (exit status, seconds, the end of
    its output)."""

    def __init__(self, tag: str, args: list[str], workdir: Path, timeout: float):
        self.logs, self.timeout, self.proc, self.start_time = workdir / f"logs-{tag}", timeout, None, None
        self.cmd = [sys.executable, str(ROOT / "train.py"), *args, f"paths.log_dir={self.logs}", "logger=none"]
        self.workdir, self.done = workdir, None

    def start(self) -> "TrainPy":
        if self.proc is None:
            paths = (str(ROOT / "src"), str(ROOT / "bench"), os.environ.get("PYTHONPATH", ""))
            env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in paths if p)}
            env.pop("WANDB_SERVICE", None)
            self.start_time = time.perf_counter()
            self.proc = subprocess.Popen(self.cmd, cwd=self.workdir, env=env, stdout=subprocess.PIPE,
                                         stderr=subprocess.STDOUT, text=True)
        return self

    def result(self) -> tuple[int, float, str]:
        if self.done is None:
            self.start()
            try:
                out, _ = self.proc.communicate(timeout=self.timeout - (time.perf_counter() - self.start_time))
                rc = self.proc.returncode
            except subprocess.TimeoutExpired:
                self.proc.kill()
                out, rc = f"timed out after {self.timeout:.0f}s\n" + self.proc.communicate()[0], 124
            self.done = rc, time.perf_counter() - self.start_time, out[-3000:]
        return self.done


def read_lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def finite(x) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x)


def train_py_jobs(ctx: "Context", unsup: Path | None) -> dict[str, TrainPy]:
    """The train.py runs of the check and imdb sections (not started yet)."""
    cpu = ["trainer.accelerator=cpu"] if ctx.dry else []

    def probe(tag: str) -> list[str]:
        return ["+callbacks.probe._target_=gpu.Probe", f"+callbacks.probe.out={ctx.work}/probe-{tag}.jsonl"]

    jobs = {"smoke": TrainPy("smoke", ["experiment=smoke", "trainer=gpu", *cpu, *probe("smoke")], ctx.work, 300),
            "ddp": TrainPy("ddp", ["experiment=smoke", "mode=pretrain", "trainer=ddp", "trainer.devices=1",
                                   "trainer.precision=bf16-mixed", *cpu, *probe("ddp")], ctx.work, 300)}
    if unsup is not None and unsup.exists():
        jobs["imdb"] = imdb_job(ctx, unsup)
    return jobs


def check_train_py(ctx: "Context", jobs: dict[str, TrainPy]) -> list[tuple[str, dict]]:
    """One train.py run with trainer=gpu (SA pretraining on demand, then fine-tuning) and one DDP pretraining."""
    rc, seconds, out = jobs["smoke"].result()
    stages = {s["stage"]: s for s in read_lines(ctx.work / "probe-smoke.jsonl")}
    runs = sorted((jobs["smoke"].logs / "smoke" / "runs").glob("*/results.json"))
    results = {"finetune": json.loads(runs[-1].read_text()) if runs else {}}
    pre = runs[-1].parent / "pretrain-sa" / "results.json" if runs else None
    results["pretrain"] = json.loads(pre.read_text()) if pre and pre.exists() else {}
    rows = []
    for stage, kind, metric in (("pretrain", "sa", "val/loss"), ("finetune", "classifier", "test/acc")):
        seen, res = stages.get(kind, {}), results[stage]
        ok = (rc == 0 and finite(res.get(metric)) and seen.get("device", "").startswith(ctx.device.type)
              and seen.get("precision") == "bf16-mixed" and seen.get("lstm_output_dtype") == "float32"
              and seen.get("autocast") is True)
        rows.append((f"check/train_py/{stage}", {
            "status": "ok" if ok else "fail", "rc": rc, "seconds": seconds, metric: res.get(metric),
            "steps": seen.get("steps"), **{k: seen.get(k) for k in ("device", "precision", "lstm_output_dtype",
                                                                     "autocast")},
            **({} if ok else {"output_tail": out}),
            "summary": f"rc {rc}, {metric} {res.get(metric)}, on {seen.get('device')} {seen.get('precision')}, LSTM "
                       f"out {seen.get('lstm_output_dtype')} with autocast {seen.get('autocast')}"}))
    rc, seconds, out = jobs["ddp"].result()
    seen = next(iter(read_lines(ctx.work / "probe-ddp.jsonl")), {})
    backend = "nccl" if ctx.device.type == "cuda" else "gloo"
    ok = rc == 0 and seen.get("backend") == backend and seen.get("lstm_output_dtype") == "float32"
    rows.append(("check/train_py/ddp", {
        "status": "ok" if ok else "fail", "rc": rc, "seconds": seconds,
        **{k: seen.get(k) for k in ("device", "strategy", "backend", "world_size", "precision", "steps")},
        **({} if ok else {"output_tail": out}),
        "summary": f"rc {rc}, {seen.get('strategy')} over {seen.get('backend')} (expected {backend}), "
                   f"{seen.get('world_size')} process(es), {seen.get('steps')} steps"}))
    return rows


# ------------------------------------------------------------------------------------------------ speed
class Hand(nn.Module):
    """The bare loop's network, written out: nn.Embedding + nn.LSTM (cuDNN on CUDA) + the same adaptive softmax
    (pretraining) or head (classifier), dropout as semiseq's, a plain padded forward. SA's encoder runs over the
    padding, windows before the last without a graph; the decoder and LM back-propagate window by window."""

    def __init__(self, model: str, size: Size, lstm_fp32: bool = True):
        super().__init__()
        self.model, self.window, self.lstm_fp32 = model, size.window, lstm_fp32
        self.embedding = nn.Embedding(size.vocab, size.embed, padding_idx=PAD)
        self.embed_dropout, self.dropout = nn.Dropout(DROPOUT["embed_dropout"]), nn.Dropout(DROPOUT["dropout"])
        self.lstm = nn.LSTM(size.embed, size.hidden, batch_first=True)
        if model == "clf":
            self.head = nn.Sequential(nn.Linear(size.hidden, size.head), nn.ReLU(), nn.Dropout(0.5),
                                      nn.Linear(size.head, 2))
        else:
            self.output = nn.AdaptiveLogSoftmaxWithLoss(size.hidden, size.vocab, list(size.cutoffs), div_value=4.0)

    def run(self, tokens, state=None):
        x = self.embed_dropout(self.embedding(tokens))
        if self.lstm_fp32 and torch.is_autocast_enabled(x.device.type):
            with torch.autocast(x.device.type, enabled=False):
                return self.lstm(x.float(), state)
        return self.lstm(x, state)

    def nll(self, out, targets) -> torch.Tensor:
        if out.device.type == "cpu" and torch.is_autocast_enabled("cpu"):  # CPU autocast's log_softmax stays bf16,
            with torch.autocast("cpu", enabled=False):  # which the adaptive softmax cannot copy into its output
                return self.output(out.float(), targets).loss * targets.numel()
        return self.output(out, targets).loss * targets.numel()

    def backward_batch(self, batch) -> torch.Tensor:
        tokens, lengths, labels = batch
        if self.model == "clf":
            out, _ = self.run(tokens)
            loss = F.cross_entropy(self.head(self.dropout(out[torch.arange(len(lengths)), lengths - 1])), labels)
            loss.backward()
            return loss.detach()
        w, state = self.window, None
        if self.model == "sa":
            starts = range(0, tokens.size(1), w)
            for k, s in enumerate(starts):
                with torch.no_grad() if k < len(starts) - 1 else contextlib.nullcontext():
                    _, state = self.run(tokens[:, s:s + w], state)
        column = tokens.new_full((len(tokens), 1), PAD)
        inputs, targets = torch.cat([column + EOS, tokens], 1), torch.cat([tokens, column], 1)
        targets.scatter_(1, lengths[:, None], EOS)
        count, total = (lengths + 1).sum(), 0.0
        for s in range(0, inputs.size(1), w):
            out, state = self.run(inputs[:, s:s + w], state)
            real = targets[:, s:s + w] != PAD
            y = targets[:, s:s + w][real]
            loss = self.nll(self.dropout(out[real]), y)
            (loss / count).backward()
            total, state = total + loss.detach(), tuple(t.detach() for t in state)
        return total / count


class BareLoop:
    """One step of the hand-written loop: batch to the device, zero_grad, forward + backward (bf16 autocast for
    bf16-mixed), clip_grad_norm_ 1.0, Adam 1e-3 (conf/experiment/imdb.yaml)."""

    def __init__(self, net: Hand, device: torch.device, bf16: bool):
        self.net, self.device, self.bf16 = net.to(device), device, bf16
        self.params = list(net.parameters())
        self.opt = torch.optim.Adam(self.params, lr=1e-3)

    def __call__(self, batch) -> float:
        batch = to(batch, self.device)
        self.opt.zero_grad()
        with torch.autocast(self.device.type, dtype=torch.bfloat16) if self.bf16 else contextlib.nullcontext():
            loss = self.net.backward_batch(batch)
        torch.nn.utils.clip_grad_norm_(self.params, 1.0)
        self.opt.step()
        return loss


class Paired(L.Callback):
    """Between Lightning's steps, one step of each bare loop on the same batch (order rotated step by step), from
    step ``warmup`` on; the device is synchronised around each, so each side's time is its own (Lightning's: from
    the end of one step's bare steps to the start of the next: its hooks, data loading and step). A bare loop
    that fails (the float16 cuDNN LSTM where there is none) is dropped, its error kept."""

    def __init__(self, bare: dict[str, BareLoop], batches: list, warmup: int, steps: int, device: torch.device):
        self.bare, self.batches, self.warmup, self.steps, self.device = bare, batches, warmup, steps, device
        self.lightning, self.times = [], {k: [] for k in bare}
        self.loss, self.bare_loss, self.errors, self.mark = None, {}, {}, None

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        sync(self.device)
        now, i = time.perf_counter(), trainer.global_step
        if i > self.warmup:
            self.lightning.append(now - self.mark)
        names = list(self.bare)
        for name in names[i % len(names):] + names[:i % len(names)]:
            start = time.perf_counter()
            try:
                self.bare_loss[name] = float(self.bare[name](self.batches[i]))
            except RuntimeError as e:
                self.errors[name] = str(e).splitlines()[0][:120]
                del self.bare[name]
                continue
            sync(self.device)
            if i >= self.warmup:
                self.times[name].append(time.perf_counter() - start)
        sync(self.device)
        self.mark = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if trainer.global_step == self.steps:
            sync(self.device)
            self.lightning.append(time.perf_counter() - self.mark)
            loss = outputs.get("loss") if isinstance(outputs, dict) else outputs
            self.loss = float(loss) if isinstance(loss, torch.Tensor) else float("nan")


def semiseq_task(model: str, size: Size) -> L.LightningModule:
    backbone = {"embed_dim": size.embed, "hidden_dim": size.hidden, **DROPOUT}
    if model == "clf":
        return ClassifierTask(2, size.vocab, backbone, {"hidden_dim": size.head, "dropout": 0.5, "readout": "last"},
                              lr=1e-3)
    network = SequenceAutoencoder if model == "sa" else LanguageModel
    return Pretrainer(model, f"{network.__module__}.{network.__qualname__}", size.vocab, backbone,
                      {"softmax": "adaptive", "cutoffs": list(size.cutoffs)}, lr=1e-3, grad_clip=1.0,
                      tbptt_steps=size.window)


def collect(dm: SequenceDataModule, steps: int) -> list:
    loader, batches = dm.train_dataloader(), []
    while len(batches) < steps:
        batches.extend(b for b, _ in zip(loader, range(steps - len(batches))))
    return batches


def train_flops(model: str, size: Size) -> float:
    """Training FLOPs per token (an estimate): 3 x (8H(E+H) per LSTM pass + the adaptive softmax's head)."""
    passes = {"sa": 2, "lm": 1, "clf": 1}[model]
    softmax = 0 if model == "clf" else 2 * size.hidden * (size.cutoffs[0] + len(size.cutoffs))
    return 3.0 * (passes * 8 * size.hidden * (size.embed + size.hidden) + softmax)


def speed(model: str, precision: str, ctx: "Context") -> dict:
    size, device = ctx.size, ctx.device
    task_name = "classify" if model == "clf" else "pretrain"
    dm = SequenceDataModule(ctx.corpus, task_name, size.batch, seed=0)
    batches = collect(SequenceDataModule(ctx.corpus, task_name, size.batch, seed=0), ctx.steps)
    bf16 = precision == "bf16-mixed"
    bare = {}
    for name, lstm_fp32 in (("bare", True), *((("bare, lstm16", False),) if bf16 else ())):
        torch.manual_seed(0)
        bare[name] = BareLoop(Hand(model, size, lstm_fp32), device, bf16)
    torch.manual_seed(0)
    task = semiseq_task(model, size)
    timer = Paired(bare, batches, ctx.warmup, ctx.steps, device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    with tf32(precision != "fp32"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer = L.Trainer(accelerator=device.type, devices=[device.index or 0] if device.type == "cuda" else 1,
                            precision="bf16-mixed" if bf16 else "32-true", max_steps=ctx.steps, max_epochs=-1,
                            logger=False, enable_checkpointing=False, enable_progress_bar=False,
                            enable_model_summary=False, num_sanity_val_steps=0, limit_val_batches=0,
                            gradient_clip_val=1.0 if model == "clf" else None, callbacks=[timer])
        trainer.fit(task, datamodule=dm)
    tokens = sum(int(b[1].sum()) for b in batches[ctx.warmup:ctx.steps])
    light = sum(timer.lightning)
    row = {"semiseq_tokens_per_s": tokens / light, "semiseq_ms_per_step": 1000 * light / len(timer.lightning),
           "timed_steps": len(timer.lightning), "tokens_per_batch": tokens / len(timer.lightning),
           "distinct_lengths_per_batch": statistics.mean(len(set(b[1].tolist())) for b in batches[ctx.warmup:]),
           "semiseq_est_tflops": tokens / light * train_flops(model, size) / 1e12, "semiseq_final_loss": timer.loss,
           "tf32": precision != "fp32", "peak_gpu_gib": (torch.cuda.max_memory_allocated(device) / 2 ** 30
                                                         if device.type == "cuda" else None)}
    for name, times in timer.times.items():
        key = name.replace("bare, lstm16", "bare_lstm16")
        if name in timer.errors or not times:
            row[f"{key}_error"] = timer.errors.get(name, "no timed steps")
            continue
        per_step = [a / b for a, b in zip(times, timer.lightning)]  # bare / semiseq, step by step
        row.update({f"{key}_tokens_per_s": tokens / sum(times), f"{key}_ms_per_step": 1000 * sum(times) / len(times),
                    f"{key}_final_loss": timer.bare_loss.get(name)})
        if name == "bare":
            row.update({"ratio": sum(times) / light, "ratio_step_median": statistics.median(per_step),
                        "ratio_step_range": [min(per_step), max(per_step)]})
    del trainer, task, bare, timer
    if device.type == "cuda":
        torch.cuda.empty_cache()
    ok = all(finite(row.get(k)) and row[k] > 0 for k in ("semiseq_tokens_per_s", "bare_tokens_per_s"))
    lstm16 = (f"; bare with LSTM16 {row['bare_lstm16_tokens_per_s']:,.0f}" if "bare_lstm16_tokens_per_s" in row
              else f"; bare with LSTM16: {row['bare_lstm16_error']}" if "bare_lstm16_error" in row else "")
    row.update(status="ok" if ok else "fail",
               summary=f"semiseq {row['semiseq_tokens_per_s']:,.0f} tok/s ({row['semiseq_est_tflops']:.1f} TFLOP/s "
                       f"est.), bare {row.get('bare_tokens_per_s', float('nan')):,.0f}: x{row.get('ratio', 0):.3f} "
                       f"(step median {row.get('ratio_step_median', 0):.3f}){lstm16}")
    return row


def speed_encode(ctx: "Context", rounds: int) -> dict:
    """Forward + backward of the encoder state (h, c after each real end), three ways, on one bucketed and one
    shuffled batch; rounds rotate the order. TF32 on (the fastest float32 setting)."""
    size, device = ctx.size, ctx.device
    torch.manual_seed(0)
    backbone = Backbone(size.vocab, size.embed, size.hidden).to(device)
    bucketed = collect(SequenceDataModule(ctx.corpus, "pretrain", size.batch, seed=0), 4)
    bucketed = max(bucketed, key=lambda b: b[1].sum())  # the longest of 4: timing noise matters least
    rows = np.random.default_rng(0).choice(len(ctx.corpus.train), size.batch, replace=False)
    shuffled = collate([ctx.corpus.train[int(i)] for i in rows])
    ways = {"segments": lambda t, n: backbone.encode(t, n), "packed": lambda t, n: packed_state(backbone, t, n),
            "padded": lambda t, n: backbone.scan(t)[1]}  # padded: the state after the padding (inexact)
    out = {}
    with tf32(True):
        for kind, batch in (("bucketed", bucketed), ("shuffled", shuffled)):
            tokens, lengths = batch[0].to(device), batch[1].to(device)
            times = {k: [] for k in ways}
            for r in range(rounds + 1):
                names = list(ways)
                for name in names[r % 3:] + names[:r % 3]:
                    backbone.zero_grad()
                    sync(device)
                    start = time.perf_counter()
                    h, c = ways[name](tokens, lengths)
                    (h.sum() + c.sum()).backward()
                    sync(device)
                    if r:  # the first round warms up
                        times[name].append(time.perf_counter() - start)
            ms = {k: 1000 * statistics.median(v) for k, v in times.items()}
            out[kind] = {"distinct_lengths": len(set(lengths.tolist())), "max_length": int(lengths.max()),
                         **{f"{k}_ms": v for k, v in ms.items()}, "segments_vs_packed": ms["packed"] / ms["segments"]}
    ok = all(finite(v) for o in out.values() for v in o.values())
    return {"status": "ok" if ok else "fail", **out, "rounds": rounds,
            "summary": "; ".join(f"{k} ({o['distinct_lengths']} lengths): segments {o['segments_ms']:.1f} ms, packed "
                                 f"{o['packed_ms']:.1f}, padded {o['padded_ms']:.1f}" for k, o in out.items())}


# ------------------------------------------------------------------------------------------------- IMDB
def fixture_unsup(folder: Path, n: int = 120, seed: int = 0) -> Path:
    """A small aclImdb_unsup.tar.gz of made-up reviews (aclImdb/train/unsup/<id>_0.txt), for --dry-run."""
    rng = np.random.default_rng(seed)
    words = "the a film movie plot actor good bad great dull scene story , . ! and but was is not very".split()
    path = folder / "aclImdb_unsup.tar.gz"
    with tarfile.open(path, "w:gz") as tar:
        for i in range(n):
            data = " ".join(rng.choice(words, rng.integers(3, 60))).encode()
            info = tarfile.TarInfo(f"aclImdb/train/unsup/{i}_0.txt")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def imdb_job(ctx: "Context", unsup: Path) -> TrainPy:
    """An SA pretraining through train.py on the unlabeled reviews (as ``data=files`` with a few placeholder labeled
    lines, which pretraining also reads, and ``data.unlabeled=imdb``), stopped by ``trainer.max_time``."""
    labeled = ctx.work / "placeholder.csv"
    labeled.write_text("text,label\n" + "".join(f"{w} film number {i},{w}\n" for i in range(20)
                                                for w in ("good", "bad")))
    seconds = ctx.pretrain_seconds
    args = ["mode=pretrain", "experiment=imdb_sa", "trainer=gpu", "data=files", f"data.train={labeled}",
            "data.unlabeled=imdb", f"data.unlabeled_root={unsup}", f"paths.cache_dir={ctx.work}/cache",
            f"+trainer.max_time=00:00:{seconds // 60:02d}:{seconds % 60:02d}",
            "+callbacks.meter._target_=gpu.TokenMeter", f"+callbacks.meter.out={ctx.work}/meter.jsonl",
            f"+callbacks.meter.warmup={ctx.warmup}"]
    if ctx.dry:
        args += ["trainer.accelerator=cpu", f"model.backbone.embed_dim={ctx.size.embed}",
                 f"model.backbone.hidden_dim={ctx.size.hidden}", "model.output.cutoffs=[20]",
                 "pretrain.batch_size=8", f"pretrain.tbptt_steps={ctx.size.window}", "pretrain.max_steps=8"]
    return TrainPy("imdb", args, ctx.work, seconds + 420)


def imdb(ctx: "Context", jobs: dict[str, TrainPy], unsup: Path | None) -> list[tuple[str, dict]]:
    """The IMDB pretraining's tokens/s, and from it the paper's recipe."""
    if "imdb" not in jobs:
        why = f"no IMDB unlabeled archive ({unsup or IMDB_UNSUP}); pass --imdb-unsup PATH"
        return [("imdb/sa_pretrain", {"status": "skip", "summary": why}),
                ("imdb/recipe", {"status": "skip", "summary": why})]
    rc, wall, out = jobs["imdb"].result()
    m = next(iter(read_lines(ctx.work / "meter.jsonl")), {})
    ok = rc == 0 and finite(m.get("tokens_per_s")) and m["tokens_per_s"] > 0
    pre = {"status": "ok" if ok else "fail", "rc": rc, "wall_s": wall, **m, **({} if ok else {"output_tail": out}),
           "summary": (f"{m.get('tokens_per_s', float('nan')):,.0f} tok/s, {m.get('s_per_step', float('nan')):.3f} "
                       f"s/step over {m.get('timed_steps')} steps ({m.get('tokens_per_batch', float('nan')):,.0f} "
                       f"tokens a batch), vocabulary {m.get('vocab')}; {wall:.0f}s in all")}
    rows = [("imdb/sa_pretrain", pre)]
    clf = ctx.rows.get("speed/clf/bf16-mixed", {}).get("semiseq_tokens_per_s")
    if not ok:
        rows.append(("imdb/recipe", {"status": "fail", "summary": "no pretraining measurement"}))
        return rows
    pretrain_h = RECIPE["pretrain_steps"] * m["s_per_step"] / 3600
    finetune_tokens = RECIPE["finetune_epochs"] * RECIPE["finetune_reviews"] * m["tokens_per_sequence"]
    finetune_h = finetune_tokens / clf / 3600 if finite(clf) else float("nan")
    rows.append(("imdb/recipe", {
        "status": "ok" if finite(pretrain_h) else "fail", "pretrain_hours": pretrain_h, "finetune_hours": finetune_h,
        "total_hours": pretrain_h + finetune_h, **RECIPE, "finetune_tokens": finetune_tokens,
        "classifier_tokens_per_s": clf,
        "summary": f"pretraining {RECIPE['pretrain_steps']:,} steps x {m['s_per_step']:.3f} s = {pretrain_h:.2f} h; "
                   f"fine-tuning {finetune_tokens / 1e6:.0f}M tokens at {clf or float('nan'):,.0f} tok/s = "
                   f"{finetune_h:.2f} h; total {pretrain_h + finetune_h:.2f} h"}))
    return rows


# ------------------------------------------------------------------------------------------------- main
@dataclass
class Context:
    device: torch.device
    dry: bool
    size: Size
    check: Size
    steps: int
    warmup: int
    pretrain_seconds: int
    work: Path
    corpus: Corpus | None = None
    rows: dict | None = None


def revision() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                             timeout=10, check=False)
        return out.stdout.strip() or "?"
    except (OSError, subprocess.SubprocessError):
        return "?"


def meta(ctx: Context) -> dict:
    cuda = ctx.device.type == "cuda"
    return {"dry_run": ctx.dry, "device": str(ctx.device),
            "device_name": torch.cuda.get_device_name(ctx.device) if cuda else f"CPU ({os.cpu_count()} cores)",
            "capability": ".".join(map(str, torch.cuda.get_device_capability(ctx.device))) if cuda else None,
            "torch": torch.__version__, "cuda": torch.version.cuda, "cudnn": torch.backends.cudnn.version(),
            "lightning": L.__version__, "semiseq": revision(), "sizes": asdict(ctx.size),
            "check_sizes": asdict(ctx.check),
            "steps": ctx.steps, "warmup": ctx.warmup, "pretrain_seconds": ctx.pretrain_seconds,
            "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]])}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dry-run", action="store_true", help="tiny sizes on the CPU (the test suite's run)")
    parser.add_argument("--out", default="gpu.json", help="the table as JSON (rewritten after every row)")
    parser.add_argument("--device", default="cuda", help="cuda or cuda:N (ignored with --dry-run)")
    parser.add_argument("--imdb-unsup", type=Path, default=None,
                        help=f"aclImdb_unsup.tar.gz (default: ../{IMDB_UNSUP} or ./{IMDB_UNSUP} when there)")
    parser.add_argument("--pretrain-seconds", type=int, default=None, help="the IMDB pretraining (default 120)")
    parser.add_argument("--steps", type=int, default=None, help="steps per throughput run (default 20; dry 4)")
    parser.add_argument("--warmup", type=int, default=None, help="untimed first steps (default 4; dry 1)")
    parser.add_argument("--sections", default=",".join(SECTIONS), help="comma-separated: " + ", ".join(SECTIONS))
    args = parser.parse_args()
    sections = set(args.sections.split(","))
    if unknown := sections - set(SECTIONS):
        parser.error(f"unknown sections {sorted(unknown)}; choose from {list(SECTIONS)}")
    if args.dry_run:
        device = torch.device("cpu")
        torch.set_num_threads(1)
    else:
        if not torch.cuda.is_available():
            parser.error("no CUDA device here: run on a GPU, or pass --dry-run (tiny sizes on the CPU)")
        device = torch.device(args.device if ":" in args.device else "cuda:0")
        torch.cuda.set_device(device)
        if device.index:  # train.py's subprocesses take the same GPU
            os.environ["CUDA_VISIBLE_DEVICES"] = str(device.index)
    unsup = args.imdb_unsup or next((p for p in (ROOT.parent / IMDB_UNSUP, ROOT / IMDB_UNSUP) if p.exists()), None)
    for name in ("lightning.pytorch", "lightning.fabric"):
        import logging

        logging.getLogger(name).setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", ".*does not have many workers.*")
    out_path = Path(args.out)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="semiseq-gpu-") as tmp:
        ctx = Context(device, args.dry_run, TINY if args.dry_run else PAPER, TINY if args.dry_run else CHECK,
                      args.steps or (4 if args.dry_run else 20), args.warmup or (1 if args.dry_run else 4),
                      args.pretrain_seconds or (60 if args.dry_run else 120), Path(tmp), rows={})
        if args.dry_run and "imdb" in sections:
            unsup = fixture_unsup(Path(tmp))
        jobs = train_py_jobs(ctx, unsup)
        if "check" not in sections:
            jobs.pop("smoke"), jobs.pop("ddp")
        if "imdb" not in sections:
            jobs.pop("imdb", None)
        if ctx.dry:  # on the CPU they may overlap the in-process rows (on a GPU they would time each other)
            for job in jobs.values():
                job.start()
        info = meta(ctx)
        print(f"{info['device_name']} ({info['device']}); torch {info['torch']}, CUDA {info['cuda']}, cuDNN "
              f"{info['cudnn']}, lightning {info['lightning']}; semiseq {info['semiseq']}"
              f"{'; DRY RUN (tiny sizes on the CPU)' if ctx.dry else ''}", flush=True)
        print(f"{'row':34s} {'status':6s} {'at':>6s}  summary\n" + "-" * 120, flush=True)

        def record(name: str, row: dict) -> None:
            ctx.rows[name] = row = {**row, "at_s": round(time.perf_counter() - started, 1)}  # when it was done
            print(f"{name:34s} {row['status']:6s} {row['at_s']:5.0f}s  {row.get('summary', '')}", flush=True)
            out_path.write_text(json.dumps({"meta": {**info, "seconds": time.perf_counter() - started},
                                            "rows": [{"id": k, **v} for k, v in ctx.rows.items()]}, indent=1,
                                           default=str))

        def attempt(names: list[str], fn) -> None:
            """Run ``fn`` (-> a row, or [(name, row)]) and record its rows; an exception is an error row for each."""
            try:
                got = fn()
                for name, row in ([(names[0], got)] if isinstance(got, dict) else got):
                    record(name, row)
            except Exception as e:  # noqa: BLE001 - one broken row must not lose the others
                first = str(e).splitlines()[0][:90] if str(e) else ""
                for name in names:
                    if name not in ctx.rows:
                        record(name, {"status": "error", "error": f"{type(e).__name__}: {e}",
                                      "traceback": traceback.format_exc()[-2000:],
                                      "summary": f"{type(e).__name__}: {first}"})

        if "check" in sections:
            for model in MODELS:
                attempt([f"check/nets/{model}"], lambda: check_nets(model, ctx.check, device))
            attempt(["check/lstm_fp32_under_bf16"], lambda: check_lstm_bf16(ctx.check, device))
            attempt(["check/encode_vs_packing"], lambda: check_encode(ctx.check, device))
            attempt(["check/train_py/pretrain", "check/train_py/finetune", "check/train_py/ddp"],
                    lambda: check_train_py(ctx, jobs))
        if "speed" in sections:
            ctx.corpus = zipf_corpus(ctx.size)
            for model in MODELS:
                for precision in PRECISIONS:
                    attempt([f"speed/{model}/{precision}"], lambda: speed(model, precision, ctx))
            attempt(["speed/encode_vs_packing"], lambda: speed_encode(ctx, 3 if ctx.dry else 6))
        if "imdb" in sections:
            attempt(["imdb/sa_pretrain", "imdb/recipe"], lambda: imdb(ctx, jobs, unsup))
        for name in ROWS:  # every row is in the table, those of sections not run too
            if name not in ctx.rows:
                record(name, {"status": "skip", "summary": f"section {name.split('/')[0]} not run (--sections)"})
    bad = [k for k, v in ctx.rows.items() if v["status"] in ("fail", "error")]
    print(f"{len(ctx.rows)} rows in {time.perf_counter() - started:.0f}s -> {out_path}"
          + (f"; FAILED: {', '.join(bad)}" if bad else ""), flush=True)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
