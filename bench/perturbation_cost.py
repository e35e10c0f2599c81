"""The step cost of perturbed fine-tuning (``perturbation=random|adversarial|virtual_adversarial``) against plain
fine-tuning, on the same batches, interleaved so that other load on the machine slows every variant alike.

    python bench/perturbation_cost.py [--size rt|imdb] [--steps 30] [--repeats 3] [--threads 1]

Each variant is a ``semiseq.tasks.ClassifierTask`` built as the pipeline builds it (the perturbation's config
from conf/perturbation/, the embeddings normalised), trained by a hand-written loop around its own
``training_step`` (zero_grad / step / backward / clip / Adam): the cost of the method, not of the framework
(bench/train_speed.py measures that). A round runs every variant for ``--steps`` steps over the same labeled
batches (VAT also takes an unlabeled batch of the same size per step, as in training); the table gives the median
ms/step over ``--repeats`` rounds and its ratio to plain fine-tuning's in the same round.

Sizes: ``rt`` = the rt_cpu recipe (vocabulary 20k, 256/256, 20-token sentences, batch 32); ``imdb`` = imdb_cpu
(vocabulary 30k, 256/256, 200-token reviews, batch 32).
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch is imported

import argparse
import statistics
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import torch
from omegaconf import OmegaConf

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from semiseq.tasks import ClassifierTask  # noqa: E402

SIZES = {"rt": dict(vocab=20000, length=20, batch=32), "imdb": dict(vocab=30000, length=200, batch=32)}
VARIANTS = ["none", "random", "adversarial", "virtual_adversarial"]


def build(name: str, vocab: int) -> ClassifierTask:
    node = OmegaConf.to_container(OmegaConf.load(ROOT / "conf" / "perturbation" / f"{name}.yaml"))
    torch.manual_seed(0)
    task = ClassifierTask(2, vocab, dict(embed_dim=256, hidden_dim=256, num_layers=1, embed_dropout=0.5, dropout=0.3),
                          dict(hidden_dim=512, dropout=0.5, readout="last"), lr=1e-3,
                          perturbation=node if "_target_" in node else None)
    if task.perturbation:
        task.net.backbone.normalize_embeddings(torch.rand(vocab) * 1000)
    task.log = lambda *args, **kwargs: None  # what the trainer would do with the logged term: nothing timed here
    task._trainer = SimpleNamespace(log_every_n_steps=10**9, global_step=0)
    return task


def batches(size: dict, steps: int, seed: int = 0) -> list:
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(steps):
        def one():
            lengths = torch.randint(size["length"] // 2, size["length"] + 1, (size["batch"],), generator=g)
            tokens = torch.randint(3, size["vocab"], (size["batch"], size["length"]), generator=g)
            tokens = tokens * (torch.arange(size["length"])[None] < lengths[:, None])
            return tokens, lengths, torch.randint(0, 2, (size["batch"],), generator=g)
        out.append({"labeled": one(), "unlabeled": one()})
    return out


def run(task: ClassifierTask, optimizer, data: list) -> float:
    """Seconds per step over ``data``."""
    reads = bool(task.perturbation and task.perturbation.reads_unlabeled)
    start = time.perf_counter()
    for i, batch in enumerate(data):
        optimizer.zero_grad()
        loss = task.training_step(batch if reads else batch["labeled"], i)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(task.parameters(), 5.0)
        optimizer.step()
    return (time.perf_counter() - start) / len(data)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", choices=sorted(SIZES), default="rt")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    size = SIZES[args.size]
    tasks = {name: build(name, size["vocab"]) for name in VARIANTS}
    optimizers = {name: t.configure_optimizers() for name, t in tasks.items()}
    for t in tasks.values():
        t.train()
    data = batches(size, args.steps)
    for name in VARIANTS:  # warm-up: the first steps allocate
        run(tasks[name], optimizers[name], data[:2])
    times = {name: [] for name in VARIANTS}
    for _ in range(args.repeats):
        for name in VARIANTS:
            times[name].append(run(tasks[name], optimizers[name], data))
    print(f"perturbation cost, size {args.size} ({size}), {args.steps} steps x {args.repeats} rounds, "
          f"{args.threads} thread(s)")
    print("| perturbation | ms/step (median [range]) | x plain (median over rounds) |")
    print("|---|---|---|")
    for name in VARIANTS:
        ms = [1000 * t for t in times[name]]
        ratio = statistics.median(a / b for a, b in zip(times[name], times["none"]))
        print(f"| {name} | {statistics.median(ms):.1f} [{min(ms):.1f}-{max(ms):.1f}] | {ratio:.2f} |")


if __name__ == "__main__":
    main()
