"""Peak memory vs corpus size: semiseq's memory-mapped corpus cache against corpora held in memory.

    python bench/memory.py [--docs 5000,20000,80000] [--max-len 400] [--steps 3] [--quick]

Builds IMDB-like corpora (bench/data.py's ``imdb_like``: Zipfian words, log-normal lengths with IMDB's
mean of ~230 words; vocabulary capped at 20,000) of each size through ``semiseq.data.prepare.make_corpus``
into a temporary cache folder. Then, in a fresh Python process per (size, variant), it builds a tiny SA
``Pretrainer`` (E=32, H=64, adaptive softmax), opens the corpus, reads one epoch of the pretraining
DataLoader (``SequenceDataModule``, task pretrain, batch 64, ``max_len`` 400), then fits the Pretrainer for
a few steps with a Lightning ``Trainer`` on a datamodule of the same corpus (batch 16, max_len 100: small
steps, so that the adaptive softmax's transient peak does not hide the data's). Variants:

  bare      no corpus: the same imports and model, fitted on Zipfian random batches of the same shape (the floor)
  semiseq   ``make_corpus`` opens the cache entry, as train.py does: token arrays memory-mapped
  numpy     the same ``.npy`` files read whole into memory (``np.load`` without ``mmap_mode``)
  lists     each document a Python list of ints, as a naive dataset keeps them

Memory is read from /proc/self/status of each process: ``VmHWM`` (peak resident set; read right after
the epoch, and at the end) and ``RssAnon`` (private memory: what has to fit in RAM; its peak is sampled
before the corpus is opened, every 25 batches and after each training step). A memory map's pages count
in the resident set once read, but as *file* pages: clean page cache that the kernel drops under pressure
and that every process reading the same corpus shares (``RssFile`` after the epoch shows them). "corpus"
is the epoch's peak RssAnon minus RssAnon just before the corpus was opened, in the same process. (Not
``getrusage().ru_maxrss``: after fork + exec Linux carries the parent's peak into the child's, and the
parent here holds every generated text.)

The default takes ~2 CPU-minutes (~4 minutes of wall time on the shared 2-core machine; much of it
tokenising the largest corpus), ``--quick`` ~1.5 (2-3 of wall time): each of the 10 child processes
spends 5-8 s importing torch and Lightning.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch is imported

import argparse
import json
import subprocess
import sys
import tempfile
import time
from functools import partial
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from data import imdb_like  # noqa: E402  (bench/data.py)

VOCAB = 20000
STEP_BATCH, STEP_LEN = 16, 100  # the training steps: small, so the model's own peak stays small beside the data's
VARIANTS = ("semiseq", "numpy", "lists")


def proc_status() -> dict[str, float]:
    """VmHWM, VmRSS, RssAnon, RssFile of this process, in MiB."""
    out = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmHWM", "VmRSS", "RssAnon", "RssFile"):
            out[key] = int(value.split()[0]) / 1024
    return out


def corpus_name(docs: int) -> str:
    return f"imdb_like_{docs}"


def source(docs: int):
    """The corpus's source as make_corpus sees it (same identity in parent and children: a cache hit)."""
    return partial(imdb_like, docs)


# ------------------------------------------------------------------------------------ child process
def child(variant: str, docs: int, cache: str, max_len: int, steps: int) -> dict:
    import lightning as L
    import torch
    from torch.utils.data import DataLoader, Dataset

    from semiseq.data import SequenceDataModule, Sequences, collate
    from semiseq.data.prepare import make_corpus
    from semiseq.tasks import Pretrainer

    torch.set_num_threads(1)
    torch.manual_seed(0)
    peak = {"anon": 0.0}

    def sample() -> dict:
        s = proc_status()
        peak["anon"] = max(peak["anon"], s["RssAnon"])
        return s

    class Sample(L.Callback):
        def on_train_batch_end(self, *args):
            sample()

    class Lists(Dataset):
        """Documents as Python lists of ints, with what SequenceDataModule asks of a split."""

        def __init__(self, seqs: list[list[int]], max_len: int | None = None):
            self.seqs, self.max_len = seqs, max_len

        def __len__(self):
            return len(self.seqs)

        @property
        def lengths(self):
            lengths = np.fromiter(map(len, self.seqs), dtype=np.int64, count=len(self.seqs))
            return lengths if self.max_len is None else np.minimum(lengths, self.max_len)

        def __getitem__(self, i):
            return self.seqs[i][: self.max_len], -1

        def truncated(self, max_len):
            return Lists(self.seqs, max_len)

    task = Pretrainer("sa", "semiseq.objectives.sa.SequenceAutoencoder", vocab_size=VOCAB,
                      backbone={"embed_dim": 32, "hidden_dim": 64},
                      output={"softmax": "adaptive", "cutoffs": [2000, 10000]},
                      lr=1e-3)
    trainer = L.Trainer(accelerator="cpu", devices=1, max_steps=steps, max_epochs=-1, logger=False,
                        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                        num_sanity_val_steps=0, limit_val_batches=0, callbacks=[Sample()])
    before = sample()
    result = {"variant": variant, "docs": docs, "before_anon": before["RssAnon"]}
    start = time.perf_counter()
    if variant == "bare":  # Zipfian ids, like the corpus's frequency-sorted vocabulary
        rng = np.random.default_rng(0)
        fake = [(np.minimum(rng.zipf(1.3, STEP_LEN) + 2, VOCAB - 1).astype(np.int32), -1)
                for _ in range(STEP_BATCH * steps)]
        trainer.fit(task, train_dataloaders=DataLoader(fake, batch_size=STEP_BATCH, collate_fn=collate))
    else:
        corpus = make_corpus(source(docs), name=corpus_name(docs), cache_dir=cache, max_vocab=VOCAB)
        if variant != "semiseq":
            (entry,) = [p for p in Path(cache).glob(corpus_name(docs) + "-*") if p.is_dir()]
            splits = {}
            for split in ("train", "unlabeled"):  # what pretraining reads
                tokens, offsets = np.load(entry / f"{split}.tokens.npy"), np.load(entry / f"{split}.offsets.npy")
                if variant == "lists":
                    ids = tokens.tolist()
                    del tokens
                    splits[split] = Lists([ids[a:b] for a, b in zip(offsets[:-1].tolist(), offsets[1:].tolist())])
                    del ids
                else:
                    splits[split] = Sequences(tokens, offsets)
            corpus.train, corpus.unlabeled = splits["train"], splits["unlabeled"]  # validated when opened
        sample()
        tokens = 0
        for i, (batch, lengths, _) in enumerate(SequenceDataModule(corpus, "pretrain", 64, max_len=max_len,
                                                                   seed=0).train_dataloader()):
            tokens += int(lengths.sum())
            if i % 25 == 0:
                sample()
        epoch = sample()
        result.update(epoch_tokens=tokens, epoch_batches=i + 1, epoch_s=time.perf_counter() - start,
                      epoch_rss=epoch["VmHWM"], epoch_anon=peak["anon"], epoch_file=epoch["RssFile"])
        trainer.fit(task, datamodule=SequenceDataModule(corpus, "pretrain", STEP_BATCH, max_len=STEP_LEN, seed=0))
    end = sample()
    result.update(seconds=time.perf_counter() - start, peak_rss=end["VmHWM"], peak_anon=peak["anon"],
                  steps=trainer.global_step)
    return result


def run_child(variant: str, docs: int, cache: str, args) -> dict:
    cmd = [sys.executable, __file__, "--child", variant, "--docs", str(docs), "--cache", cache,
           "--max-len", str(args.max_len), "--steps", str(args.steps)]
    out = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "PYTHONWARNINGS": "ignore"})
    if out.returncode:
        raise RuntimeError(f"child {variant} {docs} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


# ------------------------------------------------------------------------------------------ parent
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", default="5000,20000,80000", help="comma-separated corpus sizes (documents)")
    parser.add_argument("--max-len", type=int, default=400)
    parser.add_argument("--steps", type=int, default=3, help="Lightning training steps after the epoch")
    parser.add_argument("--quick", action="store_true", help="sizes 2000,4000,8000")
    parser.add_argument("--child", choices=("bare", *VARIANTS), help=argparse.SUPPRESS)
    parser.add_argument("--cache", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        import logging
        import warnings

        warnings.filterwarnings("ignore")
        logging.disable(logging.WARNING)
        print(json.dumps(child(args.child, int(args.docs), args.cache, args.max_len, args.steps)))
        return
    sizes = [2000, 4000, 8000] if args.quick else [int(d) for d in args.docs.split(",")]
    from semiseq.data.prepare import make_corpus

    print(f"{os.cpu_count()} CPUs (shared with other jobs), load average {os.getloadavg()[0]:.2f}; 1 torch thread "
          f"per process; tiny SA Pretrainer E=32 H=64, vocabulary {VOCAB:,}, batch 64, max_len {args.max_len}, "
          f"{args.steps} Lightning steps after one epoch", flush=True)
    with tempfile.TemporaryDirectory() as cache:
        built = {}
        for docs in sizes:
            start = time.perf_counter()
            corpus = make_corpus(source(docs), name=corpus_name(docs), cache_dir=cache, max_vocab=VOCAB)
            (entry,) = [p for p in Path(cache).glob(corpus_name(docs) + "-*") if p.is_dir()]
            text = corpus.pretrain_text()
            built[docs] = (int(text.lengths.sum()), sum(f.stat().st_size for f in entry.iterdir()) / 2 ** 20)
            print(f"built {docs:,} docs in {time.perf_counter() - start:.0f}s: {built[docs][0]:,} pretraining "
                  f"tokens, cache {built[docs][1]:.0f} MiB", flush=True)
            del corpus, text
        bare = run_child("bare", sizes[0], cache, args)
        rows = {(docs, v): run_child(v, docs, cache, args) for docs in sizes for v in VARIANTS}

    print(f"\nbare (python + torch + Lightning + the model, {bare['steps']} steps on Zipfian random batches, no "
          f"corpus): peak RSS {bare['peak_rss']:.0f} MiB, peak anon {bare['peak_anon']:.0f} MiB\n")
    head = (f"{'docs':>7s} {'tokens':>11s} {'cache':>5s}  {'variant':8s} | {'one epoch: peak RSS':>19s} {'anon':>5s} "
            f"{'corpus':>6s} {'file':>5s} {'s':>5s} | {'+ steps: peak RSS':>17s} {'anon':>5s}")
    print(head + "\n" + "-" * len(head))
    for docs in sizes:
        for k, v in enumerate(VARIANTS):
            r = rows[docs, v]
            first = f"{docs:7,d} {built[docs][0]:11,d} {built[docs][1]:5.0f}" if k == 0 else " " * 25
            print(f"{first}  {v:8s} | {r['epoch_rss']:19.0f} {r['epoch_anon']:5.0f} "
                  f"{r['epoch_anon'] - r['before_anon']:6.0f} {r['epoch_file']:5.0f} {r['epoch_s']:5.1f} | "
                  f"{r['peak_rss']:17.0f} {r['peak_anon']:5.0f}")
    print("(MiB. tokens: pretraining tokens (unlabeled + train); cache: the corpus's cache entry on disk; peak RSS: "
          "VmHWM; anon: peak RssAnon;\n corpus: epoch peak anon minus anon before the corpus was opened; "
          "file: RssFile after the epoch (mapped pages: page cache); s: open + one epoch)")
    small, large = sizes[0], sizes[-1]
    added = built[large][0] - built[small][0]
    print(f"\nfrom {small:,} to {large:,} docs ({built[large][0] / built[small][0]:.1f}x the tokens), one epoch:")
    for v in VARIANTS:
        a, b = rows[small, v], rows[large, v]
        per_token = (b["epoch_anon"] - a["epoch_anon"]) * 2 ** 20 / added
        print(f"  {v:8s} peak RSS {a['epoch_rss']:5.0f} -> {b['epoch_rss']:5.0f} MiB "
              f"({b['epoch_rss'] / a['epoch_rss']:.2f}x), peak anon {a['epoch_anon']:5.0f} -> {b['epoch_anon']:5.0f} "
              f"MiB ({b['epoch_anon'] / a['epoch_anon']:.2f}x, {per_token:+5.1f} bytes per added token)")
    semi = rows[large, "semiseq"]
    print(f"  at {large:,} docs: numpy {rows[large, 'numpy']['epoch_anon'] / semi['epoch_anon']:.2f}x, lists "
          f"{rows[large, 'lists']['epoch_anon'] / semi['epoch_anon']:.2f}x semiseq's peak anon. With the steps: "
          f"semiseq {semi['peak_anon']:.0f} MiB anon, bare {bare['peak_anon']:.0f} (its random batches are all "
          f"{STEP_LEN} long; bucketed corpus batches are shorter)")

if __name__ == "__main__":
    main()
