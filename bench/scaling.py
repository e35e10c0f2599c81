"""How SA pretraining time grows with corpus size, sequence length, vocabulary and hidden size.

    python bench/scaling.py [--parts a,b,c,d] [--min-time 1.5] [--threads 1] [--paper] [--quick]

Every point trains semiseq's SA-LSTM (``semiseq.objectives.sa.SequenceAutoencoder``, as ``Pretrainer.training_step``
runs it: ``window_losses`` window by window, then clip_grad_norm_ 5 and Adam) in a loop without Lightning
(bench/train_speed.py measures Lightning's overhead: a few %), *paired* step by step with a bare PyTorch SA
(nn.Embedding + nn.LSTM read over the padded batch, the same LSTM decoding from that state, full or adaptive
softmax) on the same batch, so load from other processes slows both alike. Throughput is real (non-PAD)
input tokens per second of wall time ("tok/s") and per second of this thread's CPU time ("tok/CPU-s",
``time.thread_time``: with one torch thread the work runs in it, and the time other processes on this shared
machine hold the core is left out; the laws and projections use it). Each point runs one warm-up step per
side, then steps until each side has run ``--min-time`` wall seconds (at least 2 steps).

  (a) corpus size: one epoch of the pretraining DataLoader (``SequenceDataModule``, batch 64) over the
      synthetic corpus (lengths 20-60, vocabulary 35) with 1,000 to 8,000 unlabeled sequences; E=32 H=128.
      semiseq's epoch time includes the DataLoader (tokenised corpus -> padded batches)
  (b) sequence length: batches of 64 x T tokens, T = 25, 100, 400, whole-sequence BPTT and truncated BPTT
      (``tbptt_steps`` 50); E=32 H=128, vocabulary 2,000, full softmax
  (c) vocabulary: V = 5k, 20k, 100k, full vs adaptive softmax (conf/model/paper_lstm.yaml's cutoffs 4000,
      20000, 50000); batches of 64 x 25; E=32 H=128
  (d) hidden size: H = 128, 512, 1024 with E = H/2; batches of 64 x 50, vocabulary 2,000, full softmax

Tokens in (b)-(d) are drawn from a Zipf(1) law over the vocabulary (ids sorted by frequency, as semiseq's
vocabulary is), so the adaptive softmax sees a realistic share of rare targets. For each part a simple law
is fitted (least squares) and printed, with the FLOPs it implies: an LSTM pass costs 8*H*(E+H) FLOPs per
token forward (4 gates, input and recurrent matrices, multiply-add = 2), an SA runs two passes (encoder,
decoder), the full softmax 2*H*V, training ~3x the forward. ``--paper`` adds one point at the paper's IMDB
network (E=512, H=1024, vocabulary 100k, adaptive softmax, batches of 64 x 100; ~1-2 minutes alone) and
prints the projection of the IMDB recipe on this CPU from it. The default takes ~2-3 CPU-minutes on one
thread (~4-5 minutes of wall time on the shared 2-core machine; ``--paper`` adds ~1), ``--quick`` ~1; the
tables of a full run, the laws and the projections on one GPU and on this CPU are in bench/SCALING.md.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch is imported

import argparse
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from semiseq.data import SequenceDataModule  # noqa: E402
from semiseq.data.corpus import EOS, PAD  # noqa: E402
from semiseq.data.synthetic import make_corpus  # noqa: E402
from semiseq.nets import Backbone  # noqa: E402
from semiseq.objectives.sa import SequenceAutoencoder  # noqa: E402

CUTOFFS = (4000, 20000, 50000)  # conf/model/paper_lstm.yaml
DIV = 4.0  # semiseq's AdaptiveLogSoftmaxWithLoss div_value


# ---------------------------------------------------------------------------------------- FLOPs
def zipf_probs(vocab: int) -> np.ndarray:
    """P(id) for ids 3..vocab-1 (PAD, UNK, EOS excluded) under Zipf(1): p(rank r) ~ 1/r."""
    p = 1.0 / np.arange(1, vocab - 2)
    return p / p.sum()


def cutoffs_for(vocab: int) -> list[int]:
    return [c for c in CUTOFFS if c < vocab - 1]


def softmax_flops(hidden: int, vocab: int, softmax: str) -> float:
    """Forward FLOPs per target of the output layer; the adaptive one's tails weighted by their Zipf(1) share."""
    if softmax == "full":
        return 2.0 * hidden * vocab
    cuts = cutoffs_for(vocab)
    bounds = [*cuts, vocab]
    p = np.concatenate([[0, 0, 0], zipf_probs(vocab)])
    flops = 2.0 * hidden * (cuts[0] + len(cuts))  # the head: frequent words + one logit per tail cluster
    for i in range(len(cuts)):
        proj = max(1, int(hidden // DIV ** (i + 1)))
        share = p[bounds[i]:bounds[i + 1]].sum()
        flops += share * 2.0 * (hidden * proj + proj * (bounds[i + 1] - bounds[i]))
    return flops


def sa_train_flops(embed: int, hidden: int, vocab: int, softmax: str) -> float:
    """Training FLOPs per token of an SA: (encoder + decoder LSTM passes + output layer) x 3 (fwd + bwd)."""
    return 3.0 * (2 * 8.0 * hidden * (embed + hidden) + softmax_flops(hidden, vocab, softmax))


# --------------------------------------------------------------------------------------- models
class BareSA(nn.Module):
    """The SA in plain PyTorch: the encoder reads the padded batch (its state after the last column), the
    decoder starts from it; full softmax over every padded position (PAD ignored) or the adaptive softmax."""

    def __init__(self, vocab: int, embed: int, hidden: int, softmax: str):
        super().__init__()
        self.embedding = nn.Embedding(vocab, embed, padding_idx=PAD)
        self.lstm = nn.LSTM(embed, hidden, batch_first=True)
        self.adaptive = softmax == "adaptive" and bool(cutoffs_for(vocab))
        self.output = (nn.AdaptiveLogSoftmaxWithLoss(hidden, vocab, cutoffs_for(vocab), div_value=DIV)
                       if self.adaptive else nn.Linear(hidden, vocab))

    def loss(self, tokens: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        _, state = self.lstm(self.embedding(tokens))
        column = tokens.new_full((len(tokens), 1), PAD)
        inputs = torch.cat([column + EOS, tokens], 1)
        targets = torch.cat([tokens, column], 1).scatter_(1, lengths[:, None], EOS)
        out, _ = self.lstm(self.embedding(inputs), state)
        if self.adaptive:
            real = targets != PAD
            return self.output(out[real], targets[real]).loss
        return F.cross_entropy(self.output(out).flatten(0, 1), targets.flatten(), ignore_index=PAD)


class Pair:
    """semiseq's SA and the bare one, same sizes and seed, each with its own Adam. Each step is timed in wall
    seconds and in CPU seconds of this thread (``time.thread_time``: with one torch thread the work runs here,
    and the time other processes hold the core is left out)."""

    def __init__(self, vocab: int, embed: int, hidden: int, softmax: str = "full", window: int | None = None):
        torch.manual_seed(0)
        self.net = SequenceAutoencoder(Backbone(vocab, embed, hidden), 0.0, softmax, CUTOFFS)
        torch.manual_seed(0)
        self.bare = BareSA(vocab, embed, hidden, softmax)
        self.window = window
        self.opts = [torch.optim.Adam(m.parameters(), lr=1e-3) for m in (self.net, self.bare)]

    def semiseq_step(self, tokens, lengths) -> np.ndarray:
        start, opt = clocks(), self.opts[0]
        opt.zero_grad()
        count = self.net.num_targets(lengths)
        for loss in self.net.window_losses(tokens, lengths, self.window or tokens.size(1) + 1):
            (loss / count).backward()
        nn.utils.clip_grad_norm_(self.net.parameters(), 5.0)
        opt.step()
        return clocks() - start

    def bare_step(self, tokens, lengths) -> np.ndarray:
        start, opt = clocks(), self.opts[1]
        opt.zero_grad()
        self.bare.loss(tokens, lengths).backward()
        nn.utils.clip_grad_norm_(self.bare.parameters(), 5.0)
        opt.step()
        return clocks() - start

    def run(self, batches: list, min_time: float, min_steps: int = 2) -> dict:
        """Warm up on the first batch, then alternate steps over the batches until both sides ran ``min_time``
        wall seconds; returns real tokens/s of each side, per wall and per CPU second."""
        self.semiseq_step(*batches[0])
        self.bare_step(*batches[0])
        tokens, sem, bare, i = 0, np.zeros(2), np.zeros(2), 0
        while i < min_steps or min(sem[0], bare[0]) < min_time:
            batch = batches[i % len(batches)]
            if i % 2:  # alternate which side goes first
                bare += self.bare_step(*batch)
                sem += self.semiseq_step(*batch)
            else:
                sem += self.semiseq_step(*batch)
                bare += self.bare_step(*batch)
            tokens += int(batch[1].sum())
            i += 1
        return speeds(tokens, sem, bare, i)


def clocks() -> np.ndarray:
    return np.array([time.perf_counter(), time.thread_time()])


def speeds(tokens: int, sem: np.ndarray, bare: np.ndarray, steps: int) -> dict:
    return {"wall": tokens / sem[0], "cpu": tokens / sem[1], "bare_wall": tokens / bare[0],
            "bare_cpu": tokens / bare[1], "ratio": bare[1] / sem[1], "step_cpu": sem[1] / steps}


def zipf_batches(vocab: int, batch: int, length: int, n: int = 2, seed: int = 0) -> list:
    rng = np.random.default_rng(seed)
    p = zipf_probs(vocab)
    return [(torch.from_numpy(rng.choice(len(p), size=(batch, length), p=p) + 3),
             torch.full((batch,), length, dtype=torch.int64)) for _ in range(n)]


# ---------------------------------------------------------------------------------------- fits
def fit_line(x, y) -> tuple[float, float, float]:
    """Least squares y = a + b x; returns (a, b, R^2)."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    b, a = np.polyfit(x, y, 1)
    r2 = 1 - ((y - a - b * x) ** 2).sum() / max(((y - y.mean()) ** 2).sum(), 1e-30)
    return a, b, r2


def loglog(x, y) -> float:
    """The exponent k of y ~ x^k."""
    return float(np.polyfit(np.log(x), np.log(y), 1)[0])


# ---------------------------------------------------------------------------------------- parts
HEAD = (f"| {'semiseq tok/s':>13s} {'tok/CPU-s':>9s} {'CPU ms/step':>11s} | {'bare tok/CPU-s':>14s} | "
        f"{'semiseq/bare':>12s}")


def cols(r: dict) -> str:
    return (f"| {r['wall']:13,.0f} {r['cpu']:9,.0f} {1000 * r['step_cpu']:11.1f} | {r['bare_cpu']:14,.0f} | "
            f"{r['ratio']:12.2f}")


def part_a(args) -> dict:
    sizes = [500, 1000, 2000] if args.quick else [1000, 2000, 4000, 8000]
    print("\n(a) corpus size: one epoch, synthetic corpus (lengths 20-60, vocabulary 35), E=32 H=128, batch 64")
    print(f"{'unlabeled':>9s} {'tokens':>8s} {'batches':>7s} | {'epoch wall s':>12s} {'CPU s':>6s} {'data CPU s':>10s} "
          + HEAD)
    rows = []
    for n in sizes:
        corpus = make_corpus(seed=0, num_unlabeled=n, num_train=200, num_val=200, num_test=200)
        pair = Pair(len(corpus.vocab), 32, 128)
        loader = SequenceDataModule(corpus, "pretrain", 64, seed=0).train_dataloader()
        first = next(iter(loader))
        pair.semiseq_step(*first[:2])
        pair.bare_step(*first[:2])  # warm-up
        data, sem, bare = np.zeros(2), np.zeros(2), np.zeros(2)
        tokens = batches = 0
        mark = clocks()
        for tokens_b, lengths, _ in loader:
            data += clocks() - mark
            if batches % 2:
                bare += pair.bare_step(tokens_b, lengths)
                sem += pair.semiseq_step(tokens_b, lengths)
            else:
                sem += pair.semiseq_step(tokens_b, lengths)
                bare += pair.bare_step(tokens_b, lengths)
            tokens += int(lengths.sum())
            batches += 1
            mark = clocks()
        epoch = sem + data  # semiseq's epoch: its DataLoader and its steps
        r = speeds(tokens, epoch, bare, batches)
        rows.append((n, tokens, epoch[1]))
        print(f"{n:9,d} {tokens:8,d} {batches:7d} | {epoch[0]:12.2f} {epoch[1]:6.2f} {data[1]:10.2f} " + cols(r),
              flush=True)
    a, b, r2 = fit_line([r[1] for r in rows], [r[2] for r in rows])
    worst = max(abs(r[2] - a - b * r[1]) / r[2] for r in rows)
    print(f"law: epoch CPU s = {a:.2f} + {1e6 * b:.1f} us x tokens (R^2 {r2:.4f}, worst residual {100 * worst:.1f}%): "
          f"linear in corpus size, {1 / b:,.0f} tokens/CPU-s")
    return {"us_per_token": 1e6 * b}


def part_b(args) -> dict:
    lengths = [25, 100, 200] if args.quick else [25, 100, 400]
    window = 50
    print(f"\n(b) sequence length: batches of 64 x T, E=32 H=128, vocabulary 2,000 full softmax; tbptt window {window}")
    print(f"{'T':>5s} {'BPTT':>8s} " + HEAD)
    rows = []
    for t in lengths:
        batches = zipf_batches(2000, 64, t)
        for w in (None, window):
            if w is not None and w >= t:
                continue
            r = Pair(2000, 32, 128, window=w).run(batches, args.min_time)
            rows.append((t, w, r["cpu"]))
            print(f"{t:5d} {'whole' if w is None else f'tbptt {w}':>8s} " + cols(r), flush=True)
    whole = [(t, s) for t, w, s in rows if w is None]
    k = loglog([t for t, _ in whole], [s for _, s in whole])
    a, b, _ = fit_line([64 * t for t, _ in whole], [64 * t / s for t, s in whole])
    tb = {t: s for t, w, s in rows if w is not None}
    ratio = ", ".join(f"T={t}: {tb[t] / s:.2f}x" for t, s in whole if t in tb)
    print(f"law: tokens/CPU-s ~ T^{k:+.2f}; CPU s/step = {1000 * a:.1f} ms + {1e6 * b:.1f} us x tokens: time linear "
          f"in length; truncated BPTT tokens/CPU-s vs whole: {ratio}")
    return {"T_exponent": k}


def part_c(args) -> dict:
    vocabs = [5000, 20000, 50000] if args.quick else [5000, 20000, 100000]
    print("\n(c) vocabulary: batches of 64 x 25, E=32 H=128, Zipf(1) tokens; adaptive cutoffs "
          f"{','.join(map(str, CUTOFFS))} (those < V)")
    print(f"{'V':>7s} {'softmax':>8s} {'MFLOP/tok':>9s} " + HEAD)
    rows = []
    for v in vocabs:
        batches = zipf_batches(v, 64, 25)
        for softmax in ("full", "adaptive"):
            r = Pair(v, 32, 128, softmax).run(batches, args.min_time)
            rows.append((v, softmax, r["cpu"]))
            print(f"{v:7,d} {softmax:>8s} {softmax_flops(128, v, softmax) / 1e6:9.2f} " + cols(r), flush=True)
    a, b, r2 = fit_line([3 * softmax_flops(128, v, sm) for v, sm, _ in rows], [1 / s for _, _, s in rows])
    exps = ", ".join(f"{sm} ~ V^{loglog([v for v, m, _ in rows if m == sm], [s for _, m, s in rows if m == sm]):+.2f}"
                     for sm in ("full", "adaptive"))
    print(f"(MFLOP/tok: the output layer's forward FLOPs per target)\nlaw: CPU s/token = {1e6 * a:.0f} us + "
          f"3 x softmax FLOPs / {1e-9 / b:.1f} GFLOP/s (R^2 {r2:.3f}, all {len(rows)} points); tokens/CPU-s: {exps}")
    return {"us_rest": 1e6 * a, "softmax_gflops": 1e-9 / b}


def part_d(args) -> dict:
    hiddens = [128, 256, 512] if args.quick else [128, 512, 1024]
    print("\n(d) hidden size: batches of 64 x 50, E=H/2, vocabulary 2,000 full softmax")
    print(f"{'H':>5s} {'E':>4s} {'MFLOP/tok':>9s} {'GFLOP/CPU-s':>11s} " + HEAD)
    rows = []
    for h in hiddens:
        r = Pair(2000, h // 2, h).run(zipf_batches(2000, 64, 50), args.min_time)
        flops = sa_train_flops(h // 2, h, 2000, "full")
        rows.append((h, r["cpu"], flops * r["cpu"] / 1e9))
        print(f"{h:5d} {h // 2:4d} {flops / 1e6:9.1f} {flops * r['cpu'] / 1e9:11.1f} " + cols(r), flush=True)
    k = loglog([h for h, _, _ in rows], [s for _, s, _ in rows])
    print(f"(MFLOP/tok: training FLOPs per token, 3 x (2 LSTM passes + softmax) forward)\nlaw: tokens/CPU-s ~ "
          f"H^{k:+.2f}: FLOPs grow ~H^2 but the achieved rate rises from {rows[0][2]:.1f} to {rows[-1][2]:.1f} "
          f"GFLOP/CPU-s as the matrices grow")
    return {"gflops": {h: g for h, _, g in rows}}


def part_paper(args) -> None:
    """One point at the paper's IMDB network, and the projection of the recipe on this CPU from it."""
    v, e, h, t = 100000, 512, 1024, 100
    print(f"\n(paper) E={e} H={h}, vocabulary {v:,} adaptive softmax, batches of 64 x {t}, Zipf(1) tokens")
    print(f"{'':14s} " + HEAD)
    r = Pair(v, e, h, "adaptive").run(zipf_batches(v, 64, t, n=1), args.min_time, min_steps=1)
    flops = sa_train_flops(e, h, v, "adaptive")
    print(f"{'paper network':14s} " + cols(r))
    print(f"{flops / 1e6:.0f} training MFLOP/token: {flops * r['cpu'] / 1e9:.1f} GFLOP per CPU-second")
    epoch, recipe = 20e6, 100000 * 64 * 270  # ~20M tokens an epoch; conf/experiment/imdb.yaml: 100k steps x 64
    print(f"projection on this CPU ({args.threads} thread, per CPU-second): an epoch of ~20M tokens "
          f"{epoch / r['cpu'] / 3600:.1f} h; conf/experiment/imdb.yaml's 100,000 steps x 64 reviews "
          f"(~{recipe / 1e9:.2f}B tokens) {recipe / r['cpu'] / 86400:.0f} days")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parts", default="a,b,c,d")
    parser.add_argument("--min-time", type=float, default=1.5, help="seconds per side per point (after warm-up)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--paper", action="store_true", help="add the paper-sized point and its projection")
    parser.add_argument("--quick", action="store_true", help="smaller sizes, --min-time 0.3")
    args = parser.parse_args()
    if args.quick:
        args.min_time = 0.3
    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore")
    print(f"torch {torch.__version__}, {args.threads} thread(s), {os.cpu_count()} CPUs shared with other jobs, "
          f"load average {os.getloadavg()[0]:.2f}; paired semiseq / bare PyTorch steps, >= {args.min_time}s a side",
          flush=True)
    start = time.perf_counter()
    parts = {"a": part_a, "b": part_b, "c": part_c, "d": part_d}
    for p in args.parts.split(","):
        parts[p](args)
    if args.paper:
        part_paper(args)
    print(f"\n{time.perf_counter() - start:.0f}s; load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
