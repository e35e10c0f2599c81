"""The cost of a sweep of N fine-tunes: pretraining runs once (the weights cache), not N times.

    python bench/sweep_cost.py [--sizes 1,3,6] [--naive 3] [--pretrain-steps 150] [--epochs 3] [--quick]

Each sweep is the real entry point, ``python train.py -m objective=sa seed=0,..,N-1 pretrain.seed=0``, on a small
synthetic corpus (4,000 unlabeled sequences, 200 labels; E=32, H=128 as conf/model/sa_lstm.yaml), with a
fresh ``SEMISEQ_LOG_DIR`` (so an empty pretrained-weights cache) per sweep. Pinning ``pretrain.seed`` makes
every job's pretraining config the same: the first job pretrains and stores the weights, the others find
them in the cache. The baseline is a sweep that cannot share (``pretrain.seed`` left to follow ``seed``, the
default: each seed pretrains its own SA, as the README's ablation intends), measured for one N; for the other
N it is derived from each shared sweep's own times (its wall time plus N-1 more pretrainings).

From each sweep's folder: the number of pretraining runs (``pretrain-sa/`` folders) and of cached checkpoints,
each job's "using cached sa weights" log line, and the wall times that results.json records for the
pretraining (fit) and each fine-tune (fit + test); "overhead" is the rest of the sweep's wall time (Python,
imports, Hydra, data, Trainer set-up). The default takes ~3-4 minutes on 2 shared CPU cores (each sweep
spends 10-20 s starting), ``--quick`` ~1-2.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SETTINGS = ["data.corpus.num_unlabeled=4000", "pretrain.val_every_n_steps=100000", "logger=none",
            "callbacks=none", "trainer.enable_progress_bar=false", "threads=1"]


def sweep(n: int, pin: bool, args, log_dir: Path) -> dict:
    """Run one ``train.py -m`` sweep of n seeds; returns its wall time and what it left behind."""
    cmd = [sys.executable, str(ROOT / "train.py"), "-m", "objective=sa", f"seed={','.join(map(str, range(n)))}",
           f"name=sweep{n}", f"pretrain.max_steps={args.pretrain_steps}", f"finetune.max_epochs={args.epochs}",
           *SETTINGS, *(["pretrain.seed=0"] if pin else [])]
    env = {**os.environ, "SEMISEQ_LOG_DIR": str(log_dir), "PYTHONWARNINGS": "ignore"}
    start = time.perf_counter()
    out = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if out.returncode:
        raise RuntimeError(f"sweep failed ({' '.join(cmd)}):\n{out.stderr[-3000:]}")
    jobs = sorted(p.parent for p in log_dir.glob(f"sweep{n}/multiruns/*/*/results.json"))
    pretrains = sorted(log_dir.glob(f"sweep{n}/multiruns/*/*/pretrain-sa/results.json"))
    cached = sum("using cached sa weights" in (j / "train.log").read_text() for j in jobs)
    return {"n": n, "pin": pin, "wall": wall, "jobs": len(jobs), "pretrain_runs": len(pretrains),
            "ckpts": len(list(log_dir.glob("cache/pretrained/sa-*.ckpt"))), "cached": cached,
            "pretrain_s": sum(json.loads(p.read_text())["wall_s"] for p in pretrains),
            "finetune_s": [json.loads((j / "results.json").read_text())["wall_s"] for j in jobs],
            "acc": [json.loads((j / "results.json").read_text())["test/acc"] for j in jobs]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1,3,6", help="sweep sizes N (fine-tunes per sweep)")
    parser.add_argument("--naive", type=int, default=3, help="N of the measured sweep that cannot share (0: none)")
    parser.add_argument("--pretrain-steps", type=int, default=150)
    parser.add_argument("--epochs", type=int, default=3, help="finetune.max_epochs")
    parser.add_argument("--quick", action="store_true", help="sizes 1,2, naive 2, 40 pretraining steps, 1 epoch")
    args = parser.parse_args()
    sizes = [int(n) for n in args.sizes.split(",")]
    if args.quick:
        sizes, args.naive, args.pretrain_steps, args.epochs = [1, 2], 2, 40, 1
    print(f"train.py -m objective=sa seed=0..N-1 pretrain.seed=0 {' '.join(SETTINGS)} pretrain.max_steps="
          f"{args.pretrain_steps} finetune.max_epochs={args.epochs}\n{os.cpu_count()} CPUs shared with other jobs, "
          f"load average {os.getloadavg()[0]:.2f}; each sweep one process, jobs in turn (Hydra's basic launcher)",
          flush=True)
    results = []
    plan = [(n, True) for n in sizes] + ([(args.naive, False)] if args.naive else [])
    with tempfile.TemporaryDirectory() as tmp:
        for k, (n, pin) in enumerate(plan):
            results.append(sweep(n, pin, args, Path(tmp) / str(k)))
            r = results[-1]
            print(f"  N={n} {'shared' if pin else 'unshared'}: {r['wall']:.0f}s", flush=True)

    print(f"\n{'sweep':14s} {'jobs':>4s} {'pretrain':>8s} {'cached':>6s} {'cache':>5s} | {'wall':>6s} = "
          f"{'pretrain':>8s} + {'fine-tunes':>10s} + {'rest':>5s} | {'shared':>6s} {'unshared':>8s} {'unshared':>8s}")
    print(f"{'':14s} {'':4s} {'runs':>8s} {'jobs':>6s} {'ckpts':>5s} | {'s':>6s}   {'s':>8s}   {'s':>10s}   "
          f"{'s':>5s} | {'s':>6s} {'s':>8s} {'/shared':>8s}")
    print("-" * 108)
    for r in results:
        n, runs, ft = r["n"], r["pretrain_runs"], sum(r["finetune_s"])
        one = r["pretrain_s"] / runs  # one pretraining, as timed in this sweep (the load varies between sweeps)
        shared = r["wall"] - (runs - 1) * one  # measured when pinned; else the wall less the repeated pretrainings
        unshared = shared + (n - 1) * one  # every job pretrains its own weights
        label = f"N={n} " + ("shared" if r["pin"] else "unshared")
        print(f"{label:14s} {r['jobs']:4d} {runs:8d} {r['cached']:6d} {r['ckpts']:5d} | {r['wall']:6.1f}   "
              f"{r['pretrain_s']:8.1f}   {ft:10.1f}   {r['wall'] - r['pretrain_s'] - ft:5.1f} | "
              f"{shared:6.1f}{'' if r['pin'] else '*':1s}{unshared:8.1f}{'*' if r['pin'] else '':1s}"
              f"{unshared / shared:8.2f}")
    print("(pretrain runs: pretrain-sa/ folders the sweep made; cached jobs: jobs that logged 'using cached sa "
          "weights';\n cache ckpts: sa-*.ckpt files in the sweep's cache; pretrain and fine-tunes: the fit (+ test) "
          "times that\n results.json records; rest: Python, imports, Hydra, data, Trainer set-up, checkpoint writes;\n"
          " *: derived from the measured sweep by adding or removing N-1 pretrainings at the time this sweep's took)")
    for r in results:
        if r["pin"] and (r["pretrain_runs"] != 1 or r["cached"] != r["jobs"] - 1):
            print(f"WARNING: the N={r['n']} shared sweep pretrained {r['pretrain_runs']} times")
    pair = [r for r in results if r["n"] == args.naive]
    if len(pair) == 2:
        a, b = sorted(pair, key=lambda r: not r["pin"])
        print(f"measured, N={args.naive}: unshared {b['wall']:.1f}s / shared {a['wall']:.1f}s = "
              f"{b['wall'] / a['wall']:.2f}x (pretrainings {b['pretrain_runs']} vs {a['pretrain_runs']})")
    accs = ", ".join(f"N={r['n']}{'' if r['pin'] else ' unshared'} {100 * sum(r['acc']) / len(r['acc']):.1f}%"
                     for r in results)
    print(f"mean test accuracy (tiny settings, only a check that the jobs ran): {accs}")

if __name__ == "__main__":
    main()
