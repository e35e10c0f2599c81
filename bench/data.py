"""Data pipeline benchmark: tokenise + cache throughput, and padding waste with and without bucketing.

    python bench/data.py [--docs 100000] [--rt ../shared/data/rt-polarity]

Corpora: the real Rotten Tomatoes files when present, and a synthetic IMDB-sized corpus (Zipfian
words, log-normal lengths with IMDB's mean of ~230 words). The baseline for tokenisation is a bare
loop (`re.findall` + a dict lookup per token) with no cache, measured in the same run.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import tempfile
import time
from functools import partial
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from semiseq.data.module import BucketBatchSampler  # noqa: E402
from semiseq.data.prepare import make_corpus  # noqa: E402
from semiseq.data.texts import Texts  # noqa: E402

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


def imdb_like(n: int, seed: int = 0) -> Texts:
    rng = np.random.default_rng(seed)
    words = np.array([f"w{i}" for i in range(50000)])
    lengths = np.clip(rng.lognormal(np.log(175), 0.75, size=n).astype(int), 10, 2500)
    ids = np.minimum(rng.zipf(1.3, size=int(lengths.sum())) - 1, len(words) - 1)
    flat = words[ids]
    bounds = np.concatenate([[0], np.cumsum(lengths)])
    docs = [" ".join(flat[a:b]) + "." for a, b in zip(bounds[:-1], bounds[1:])]
    half = n // 4
    return Texts("imdb_like", ["neg", "pos"], docs[:half], [i % 2 for i in range(half)], docs[half:2 * half],
                 [i % 2 for i in range(half)], unlabeled=docs[2 * half:])


def bare_tokenise(texts: Texts) -> int:
    pattern, vocab, n = re.compile(r"\w+(?:'\w+)?|[^\w\s]"), {}, 0
    for doc in [*texts.train, *texts.test, *texts.unlabeled]:
        ids = [vocab.setdefault(t, len(vocab)) for t in pattern.findall(doc.lower())]
        n += len(ids)
    return n


def padding_waste(lengths: np.ndarray, batch_size: int, bucket: bool) -> float:
    batches = list(BucketBatchSampler(lengths, batch_size, bucket=bucket, seed=0))
    padded = sum(len(b) * lengths[b].max() for b in batches)
    return 1 - lengths.sum() / padded


def measure(name: str, texts: Texts, cache: Path) -> None:
    docs = len(texts.train) + len(texts.test) + len(texts.unlabeled)
    start = time.perf_counter()
    bare_tokenise(texts)
    bare = time.perf_counter() - start
    source = partial(lambda t: t, texts)
    start = time.perf_counter()
    corpus = make_corpus(source, name=name, cache_dir=str(cache), max_vocab=100000)
    cold = time.perf_counter() - start
    start = time.perf_counter()
    make_corpus(source, name=name, cache_dir=str(cache), max_vocab=100000)
    warm = time.perf_counter() - start
    print(f"{name:10s} {docs:>8,d} docs  bare loop {docs / bare:>9,.0f} docs/s   semiseq tokenise+cache "
          f"{docs / cold:>9,.0f} docs/s ({bare / cold:.2f}x bare, {cold:.1f}s)   cached reopen {warm * 1000:.0f} ms")
    for max_len in (None, 400):
        lengths = corpus.pretrain_text().truncated(max_len).lengths
        for batch in (32, 64):
            print(f"{'':10s} padding waste, max_len {str(max_len):4s} batch {batch}: "
                  f"{100 * padding_waste(lengths, batch, False):5.1f}% shuffled, "
                  f"{100 * padding_waste(lengths, batch, True):4.1f}% bucketed")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=int, default=100000)
    parser.add_argument("--rt", default=str(SHARED / "rt-polarity"))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        if Path(args.rt).is_dir():
            from semiseq.data import rt

            measure("rt", rt.load(args.rt), Path(tmp))
        else:
            print(f"rt: skipped ({args.rt} not found)")
        measure("imdb_like", imdb_like(args.docs), Path(tmp))


if __name__ == "__main__":
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    main()
