"""Denormal floats in back-propagation through long sequences: classifier steps with them kept and flushed.

    python bench/denormals.py [--steps 6] [--length 200] [--batch 32] [--embed 256] [--hidden 256] [--vocab 30000]

A random-init semiseq ``Classifier`` at the size of ``experiment=imdb_cpu_lstm`` (200-token reviews, batch 32,
E256/H256) and a hand-written nn.Embedding + nn.LSTM + nn.Linear loop take Adam steps on the same random
batches with the same dropout masks, each twice, from its own copy of the weights: with denormal floats kept
(torch's default) and flushed to zero (``torch.set_flush_denormal(True)``, what ``semiseq.pipeline.run`` sets).
The two modes alternate step by step, so other load on the machine slows them alike; the first step is left
out of the timing. Prints ms/step per net and mode, the speed-up, the share of the nonzero gradient entries
that are denormal when kept, and the largest difference between the kept and flushed copies' weights at the end
(flushing values below 1.2e-38 moves no weight). Where the CPU cannot flush, it says so and stops.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch import nn  # noqa: E402

from semiseq.nets import Backbone, Classifier  # noqa: E402


class BareClassifier(nn.Module):
    def __init__(self, vocab: int, embed: int, hidden: int):
        super().__init__()
        self.embedding, self.lstm = nn.Embedding(vocab, embed), nn.LSTM(embed, hidden, batch_first=True)
        self.head = nn.Linear(hidden, 2)

    def forward(self, tokens: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        steps = self.lstm(F.dropout(self.embedding(tokens), 0.5))[0]
        return self.head(steps[torch.arange(len(tokens)), lengths - 1])


def build(net: str, args) -> nn.Module:
    if net == "bare hand":
        return BareClassifier(args.vocab, args.embed, args.hidden)
    backbone = Backbone(args.vocab, args.embed, args.hidden, embed_dropout=0.5, dropout=0.3)
    return Classifier(backbone, num_classes=2)


def denormal_share(model: nn.Module) -> float:
    """The share of the nonzero gradient entries that are denormal: the embedding rows of words seen only early
    in a text, whose gradient vanished on its way back through the LSTM."""
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    tiny = torch.finfo(torch.float32).tiny
    return (sum(((g != 0) & (g.abs() < tiny)).sum().item() for g in grads)
            / max(1, sum((g != 0).sum().item() for g in grads)))


def compare(net: str, args) -> dict:
    torch.manual_seed(args.seed)
    first = build(net, args)
    models = {"kept": first, "flushed": build(net, args)}
    models["flushed"].load_state_dict(first.state_dict())
    optims = {mode: torch.optim.Adam(m.parameters(), lr=1e-3) for mode, m in models.items()}
    times, shares = {mode: [] for mode in models}, []
    for step in range(args.steps):
        generator = torch.Generator().manual_seed(args.seed + step)
        tokens = torch.randint(3, args.vocab, (args.batch, args.length), generator=generator)
        labels = torch.randint(0, 2, (args.batch,), generator=generator)
        lengths = torch.full((args.batch,), args.length)
        for mode in (("kept", "flushed") if step % 2 == 0 else ("flushed", "kept")):
            torch.set_flush_denormal(mode == "flushed")
            torch.manual_seed(args.seed + step)  # the same dropout masks in both modes
            start = time.perf_counter()
            optims[mode].zero_grad()
            F.cross_entropy(models[mode](tokens, lengths), labels).backward()
            if mode == "kept":
                shares.append(denormal_share(models[mode]))
            optims[mode].step()
            if step:  # the first step warms up
                times[mode].append(time.perf_counter() - start)
    torch.set_flush_denormal(False)
    ms = {mode: 1000 * sum(t) / len(t) for mode, t in times.items()}
    drift = max((a - b).abs().max().item() for a, b in zip(models["kept"].parameters(),
                                                           models["flushed"].parameters()))
    return {"net": net, **ms, "speedup": ms["kept"] / ms["flushed"], "share": max(shares), "drift": drift}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=6, help="Adam steps per mode (the first is not timed)")
    parser.add_argument("--length", type=int, default=200, help="tokens per text")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--embed", type=int, default=256)
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--vocab", type=int, default=30000)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if args.steps < 2:
        parser.error("--steps must be at least 2 (the first is not timed)")
    torch.set_num_threads(args.threads)
    if not torch.set_flush_denormal(True):
        sys.exit("bench/denormals.py: this CPU cannot flush denormal floats (torch.set_flush_denormal is a no-op)")
    print(f"random-init classifier, {args.length} tokens x batch {args.batch}, E{args.embed}/H{args.hidden}, vocab "
          f"{args.vocab}; {args.steps} Adam steps per mode; torch {torch.__version__}, {args.threads} thread(s), "
          f"load average {os.getloadavg()[0]:.2f}")
    print(f"{'net':10s} {'kept ms/step':>12s} {'flushed':>8s} {'speed-up':>8s} {'denormal grads':>14s} "
          f"{'weight drift':>12s}")
    for net in ("semiseq", "bare hand"):
        r = compare(net, args)
        print(f"{r['net']:10s} {r['kept']:12.1f} {r['flushed']:8.1f} {r['speedup']:7.1f}x {r['share']:13.2%} "
              f"{r['drift']:12.2e}", flush=True)


if __name__ == "__main__":
    main()
