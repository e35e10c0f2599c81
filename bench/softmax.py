"""Pretraining over a large vocabulary: full vs adaptive softmax, against a bare PyTorch loop.

    python bench/softmax.py [--steps 60] [--embed 256] [--hidden 512] [--rt ../shared/data/rt-polarity]

Trains an LM for the same batches three ways: a bare PyTorch loop (embedding + LSTM + a full softmax
over every padded position), semiseq's full softmax (only real positions are projected) and
semiseq's adaptive softmax; prints ms/step, real tokens/s, the ratio to the bare loop and the
validation loss (nats/token) after the same number of steps. Data: the real Rotten Tomatoes files
when present, else a Zipfian IMDB-like corpus.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from functools import partial
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch import nn  # noqa: E402

from semiseq.data import PAD, BucketBatchSampler, collate  # noqa: E402
from semiseq.data.prepare import make_corpus  # noqa: E402
from semiseq.nets import Backbone  # noqa: E402
from semiseq.objectives.lm import LanguageModel, teacher_forcing  # noqa: E402

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


class BareLM(nn.Module):
    def __init__(self, vocab: int, embed: int, hidden: int):
        super().__init__()
        self.embedding, self.lstm = nn.Embedding(vocab, embed), nn.LSTM(embed, hidden, batch_first=True)
        self.output = nn.Linear(hidden, vocab)

    def loss(self, tokens, lengths):
        inputs, targets = teacher_forcing(tokens, lengths)
        logits = self.output(self.lstm(self.embedding(inputs))[0])
        return F.cross_entropy(logits.flatten(0, 1), targets.flatten(), ignore_index=PAD)


def semiseq_loss(net: LanguageModel, tokens, lengths):
    (total,) = net.window_losses(tokens, lengths, tokens.size(1) + 1)
    return total / (lengths + 1).sum()


def run(name, model, loss_fn, batches, val, steps) -> None:
    torch.manual_seed(0)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    tokens_seen, start = 0, None
    for i, (tokens, lengths, _) in enumerate(batches[:steps]):
        if i == 3:  # warm-up excluded
            start, tokens_seen = time.perf_counter(), 0
        opt.zero_grad()
        loss_fn(model, tokens, lengths).backward()
        nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        opt.step()
        tokens_seen += int((lengths + 1).sum())
    seconds = time.perf_counter() - start
    model.eval()
    with torch.no_grad():
        nll = sum(float(loss_fn(model, t, n)) * int((n + 1).sum()) for t, n, _ in val)
        count = sum(int((n + 1).sum()) for _, n, _ in val)
    model.train()
    per_step = 1000 * seconds / (steps - 3)
    print(f"{name:22s} {per_step:8.0f} ms/step {tokens_seen / seconds:9,.0f} tokens/s   val loss {nll / count:.3f}")
    return tokens_seen / seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--embed", type=int, default=256)
    parser.add_argument("--hidden", type=int, default=512)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rt", default=str(SHARED / "rt-polarity"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if Path(args.rt).is_dir():
        from semiseq.data import rt

        corpus = make_corpus(partial(rt.load, args.rt), max_vocab=20000)
    else:
        from data import imdb_like  # bench/data.py

        corpus = make_corpus(partial(imdb_like, 12000), max_vocab=20000)
        corpus = type(corpus)(**{**corpus.__dict__, "train": corpus.unlabeled.truncated(100)})
    data, vocab = corpus.train.truncated(100), len(corpus.vocab)
    sampler = BucketBatchSampler(data.lengths, args.batch, seed=0)
    batches = [collate([data[i] for i in b]) for b in sampler][: args.steps]
    val = [collate([corpus.val[i] for i in b]) for b in BucketBatchSampler(corpus.val.lengths, 256, shuffle=False)]
    print(f"{corpus.name}: vocabulary {vocab:,}, {len(batches)} batches of {args.batch}, E={args.embed} "
          f"H={args.hidden}, {args.threads} threads")

    def semiseq(softmax):
        torch.manual_seed(0)
        return LanguageModel(Backbone(vocab, args.embed, args.hidden), softmax=softmax, cutoffs=(2000, 10000))

    torch.manual_seed(0)
    bare = run("bare PyTorch, full", BareLM(vocab, args.embed, args.hidden), lambda m, t, n: m.loss(t, n),
               batches, val, args.steps)
    for softmax in ("full", "adaptive"):
        speed = run(f"semiseq, {softmax}", semiseq(softmax), semiseq_loss, batches, val, args.steps)
        print(f"{'':22s} {speed / bare:.2f}x the bare loop's tokens/s")


if __name__ == "__main__":
    main()
