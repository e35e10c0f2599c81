"""Training throughput: semiseq (Lightning) against two hand-written PyTorch loops, same data, batches and seeds.

    python bench/train_speed.py [--steps 200] [--warmup 20] [--repeats 3] [--threads 1] [--clock cpu|wall]
                                [--vocab V] [--embed 32] [--hidden 128] [--softmax full|adaptive] [--tbptt W]
                                [--models sa,lm,clf] [--explain]

The defaults take about 4 minutes on 2 CPU cores (``--explain``: about 12; ``--models lm`` or fewer
``--steps``/``--repeats`` for less). For each model (SA-LSTM pretraining, LM-LSTM pretraining, the
classifier), from the same initial weights, with the recipes of conf/train.yaml (Adam, clipping at 5,
batch 64 / 20):

  semiseq    ``semiseq.tasks.Pretrainer`` / ``ClassifierTask`` fitted by a real ``lightning.Trainer``
             (max_steps, no logger, no checkpoints, no progress bar, no validation) on the batches of a
             ``semiseq.data.SequenceDataModule`` (its DataLoader, as train.py uses it);
  bare nets  the same ``semiseq.nets`` modules and loss functions the task calls, in a hand-written loop
             (zero_grad / forward / loss / backward / clip_grad_norm_ / Adam step) over the same batches,
             collated beforehand;
  bare hand  the same loop around a hand-written nn.Embedding + nn.LSTM + nn.Linear (or the adaptive softmax
             with ``--softmax adaptive``) with a plain padded forward (for SA the encoder runs over the padding
             too, which with bucketed batches costs ~nothing).

Every run is *paired*: a callback runs one step of each bare loop (its own copy of the model, the same
batch, their order alternating) at the start of every Lightning step and times the three apart, so other
load on the machine slows them alike. "vs bare nets" and "vs bare hand" are bare time / Lightning time per
repeat (median [range] over repeats; 0.95 = 5 % framework overhead), "overhead" the Lightning ms/step minus
the hand loop's. Lightning's time runs from the end of one step's bare steps to the start of the next: its
hooks, the step, epoch ends and data loading. Steps are timed in CPU seconds of this thread by default
(``--clock cpu``: with one torch thread and no DataLoader workers all the work runs in it, and the time other
processes hold the core is left out, which on a shared machine is most of the noise); ``--clock wall`` times
them on the wall clock. Throughput is real (non-PAD) input tokens per second: the summed lengths of the
timed batches (steps ``--warmup`` to the end) over their time. The final loss shows that the runs did the
same work (the classifier's differ through dropout only: the paired steps draw their masks from torch's
global RNG in turn, and each DataLoader epoch draws a seed from it).

``--vocab V`` trains on a corpus with a V-token vocabulary (``make_corpus(num_symbols=V-3)`` when its
dense [topics, V, V] transition tables fit in 1 GiB, otherwise the default corpus with its symbols spread
uniformly over V ids) to show the cost of the output softmax. ``--explain`` adds Lightning runs with
parts of semiseq's step changed (logging, metric updates, the DataLoader), and Lightning's own cost per
step around an empty step.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch is imported

import argparse
import logging
import statistics
import subprocess
import sys
import time
import warnings
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

import lightning as L

from semiseq.data import SequenceDataModule
from semiseq.data.corpus import EOS, PAD, Corpus, Sequences, Vocab
from semiseq.data.synthetic import make_corpus
from semiseq.nets import Backbone, Classifier
from semiseq.objectives.lm import LanguageModel
from semiseq.objectives.sa import SequenceAutoencoder
from semiseq.tasks import ClassifierTask, Pretrainer

# The recipes of conf/train.yaml and conf/model/sa_lstm.yaml.
PRETRAIN = {"batch_size": 64, "lr": 3e-3, "grad_clip": 5.0}
FINETUNE = {"batch_size": 20, "lr": 3e-3, "head_lr": 1e-4, "grad_clip": 5.0}
HEAD_DIM, HEAD_DROPOUT = 512, 0.5
CUTOFFS = (2000, 10000)  # the adaptive softmax's (conf/model/lstm.yaml)
MODELS = {"sa": "SA-LSTM pretrain", "lm": "LM-LSTM pretrain", "clf": "classifier"}
# cpu: CPU seconds of this thread (one torch thread and no DataLoader workers: all the work runs here), which
# leaves out the time other processes hold the core; wall: seconds of the clock on the wall
CLOCKS = {"cpu": time.thread_time, "wall": time.perf_counter}


# ----------------------------------------------------------------------------------------- data
def build_corpus(vocab: int | None, seed: int) -> tuple[Corpus, str]:
    if vocab is None:
        return make_corpus(seed=seed), "synthetic default"
    symbols = vocab - 3
    if 2 * 16 * symbols ** 2 * 8 < 2 ** 30:  # the generator's dense float64 transition tables (+ their cdf)
        return make_corpus(seed=seed, num_symbols=symbols), f"make_corpus(num_symbols={symbols})"
    base, rng = make_corpus(seed=seed), np.random.default_rng(seed)

    def spread(s: Sequences) -> Sequences:  # same lengths, tokens uniform over the larger vocabulary
        return Sequences(rng.integers(3, vocab, size=len(s.tokens)).astype(np.int32), s.offsets, s.labels)

    itos = base.vocab.itos[:3] + [f"s{i}" for i in range(symbols)]
    corpus = Corpus(base.name, Vocab(itos), *(spread(s) for s in (base.train, base.val, base.test, base.unlabeled)),
                    base.class_names)
    return corpus, f"default corpus, symbols spread over {vocab} ids"


def datamodule(corpus: Corpus, model: str, seed: int) -> SequenceDataModule:
    task, recipe = ("classify", FINETUNE) if model == "clf" else ("pretrain", PRETRAIN)
    return SequenceDataModule(corpus, task, recipe["batch_size"], seed=seed)


def collect(dm: SequenceDataModule, steps: int) -> list:
    """The batches Lightning will see, in order: one train_dataloader() iterated epoch after epoch."""
    loader, batches = dm.train_dataloader(), []
    while len(batches) < steps:
        for batch in loader:
            batches.append(batch)
            if len(batches) == steps:
                break
    return batches


class Batches:
    """Pre-collated batches served epoch by epoch like the DataLoader they came from (a bare list would be
    read as a list of loaders, and one long epoch would skip Lightning's epoch ends)."""

    def __init__(self, batches: list, epoch_len: int):
        self.batches, self.epoch_len, self.epoch = batches, epoch_len, 0

    def __iter__(self):  # a generator: Lightning's iter() check at setup does not consume an epoch
        start, self.epoch = self.epoch * self.epoch_len, self.epoch + 1
        yield from self.batches[start:start + self.epoch_len]

    def __len__(self) -> int:
        return self.epoch_len


# ----------------------------------------------------------------------------------- the models
def semiseq_task(model: str, vocab: int, args, classes: int) -> L.LightningModule:
    net = {"vocab_size": vocab, "backbone": {"embed_dim": args.embed, "hidden_dim": args.hidden}}
    if model == "clf":
        return ClassifierTask(classes, head={"hidden_dim": HEAD_DIM, "dropout": HEAD_DROPOUT, "readout": "last"},
                              lr=FINETUNE["lr"], head_lr=FINETUNE["head_lr"], **net)
    network = SequenceAutoencoder if model == "sa" else LanguageModel
    return Pretrainer(model, f"{network.__module__}.{network.__qualname__}", lr=PRETRAIN["lr"], **net,
                      output={"softmax": args.softmax, "cutoffs": list(CUTOFFS)}, grad_clip=PRETRAIN["grad_clip"],
                      tbptt_steps=args.tbptt)


def semiseq_net(model: str, vocab: int, args, classes: int) -> nn.Module:
    backbone = Backbone(vocab, args.embed, args.hidden)
    if model == "clf":
        return Classifier(backbone, classes, HEAD_DIM, HEAD_DROPOUT)
    cls = SequenceAutoencoder if model == "sa" else LanguageModel
    return cls(backbone, 0.0, softmax=args.softmax, cutoffs=CUTOFFS)


def nets_backward(model: str, net: nn.Module, batch, window: int | None) -> torch.Tensor:
    """Forward + backward through the semiseq.nets functions the task uses; returns the loss."""
    tokens, lengths, labels = batch
    if model == "clf":
        loss = F.cross_entropy(net(tokens, lengths), labels)
    elif hasattr(net, "window_losses"):  # Pretrainer.training_step: (truncated) BPTT, window by window
        count = net.num_targets(lengths) if hasattr(net, "num_targets") else (lengths + 1).sum()
        total = 0.0
        for part in net.window_losses(tokens, lengths, window or tokens.size(1) + 1):
            (part / count).backward()
            total = total + part.detach()
        return total / count
    else:
        logits, targets = net(tokens, lengths)
        loss = F.cross_entropy(logits.flatten(0, 1), targets.flatten(), ignore_index=PAD)
    loss.backward()
    return loss


class Hand(nn.Module):
    """Embedding + LSTM + Linear (or the adaptive softmax: ``softmax='adaptive'``, on the real targets) written out,
    plain padded forward (parameters created in the same order as semiseq.nets, so the same seed gives the same
    initial weights)."""

    def __init__(self, model: str, vocab: int, embed: int, hidden: int, classes: int, softmax: str = "full"):
        super().__init__()
        self.model = model
        self.embedding = nn.Embedding(vocab, embed, padding_idx=PAD)
        self.lstm = nn.LSTM(embed, hidden, batch_first=True)
        cutoffs = [c for c in CUTOFFS if c < vocab - 1]
        self.adaptive = softmax == "adaptive" and bool(cutoffs)
        if model == "clf":
            self.head = nn.Sequential(nn.Linear(hidden, HEAD_DIM), nn.ReLU(), nn.Dropout(HEAD_DROPOUT),
                                      nn.Linear(HEAD_DIM, classes))
        elif self.adaptive:
            self.output = nn.AdaptiveLogSoftmaxWithLoss(hidden, vocab, cutoffs, div_value=4.0)
        else:
            self.output = nn.Linear(hidden, vocab)

    def backward_batch(self, batch) -> torch.Tensor:
        tokens, lengths, labels = batch
        if self.model == "clf":
            out, _ = self.lstm(self.embedding(tokens))
            loss = F.cross_entropy(self.head(out[torch.arange(len(lengths)), lengths - 1]), labels)
        else:
            state = self.lstm(self.embedding(tokens))[1] if self.model == "sa" else None
            column = tokens.new_full((len(tokens), 1), PAD)
            inputs = torch.cat([column + EOS, tokens], 1)
            targets = torch.cat([tokens, column], 1).scatter_(1, lengths[:, None], EOS)
            out, _ = self.lstm(self.embedding(inputs), state)
            if self.adaptive:
                real = targets != PAD
                loss = self.output(out[real], targets[real]).loss
            else:
                loss = F.cross_entropy(self.output(out).flatten(0, 1), targets.flatten(), ignore_index=PAD)
        loss.backward()
        return loss


def optimizer(model: str, net: nn.Module) -> torch.optim.Optimizer:
    if model != "clf":
        return torch.optim.Adam(net.parameters(), lr=PRETRAIN["lr"])
    head = list(net.head.parameters())
    body = [p for p in net.parameters() if all(p is not h for h in head)]
    return torch.optim.Adam([{"params": body}, {"params": head, "lr": FINETUNE["head_lr"]}], lr=FINETUNE["lr"])


# ---------------------------------------------------------------------------------------- runs
class BareStep:
    """One step of the hand-written loop: zero_grad / forward + backward / clip_grad_norm_ / Adam step."""

    def __init__(self, opt: torch.optim.Optimizer, backward, clip: float):
        self.opt, self.backward, self.clip = opt, backward, clip
        self.params = [p for g in opt.param_groups for p in g["params"]]

    def __call__(self, batch) -> torch.Tensor:
        self.opt.zero_grad()
        loss = self.backward(batch)
        torch.nn.utils.clip_grad_norm_(self.params, self.clip)
        self.opt.step()
        return loss


class Paired(L.Callback):
    """Times Lightning's steps and, run between them, one step of each twin loop on the same batch (``twins``:
    name -> BareStep, each its own model), from step ``warmup`` on: each Lightning step and its twins see the
    machine in the same state, so other load slows them alike and their ratios stay steady. The twins run in
    an order rotated step by step. Lightning's time runs from the end of one step's twins to the start of the
    next (its hooks, step, epoch ends and data loading included). Keeps the last batch and loss, to check that
    the run saw the pre-collated batches and did the same work."""

    def __init__(self, twins: dict[str, BareStep], batches: list, warmup: int, steps: int, clock=time.thread_time):
        self.twins, self.batches, self.warmup, self.steps, self.clock = twins, batches, warmup, steps, clock
        self.lightning, self.twin_time = 0.0, dict.fromkeys(twins, 0.0)
        self.twin_loss = dict.fromkeys(twins)
        self.mark = self.batch = self.loss = None

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        now, i = self.clock(), trainer.global_step
        if i > self.warmup:
            self.lightning += now - self.mark
        names = list(self.twins)
        for name in names[i % len(names):] + names[:i % len(names)]:
            start = self.clock()
            self.twin_loss[name] = self.twins[name](self.batches[i])
            if i >= self.warmup:
                self.twin_time[name] += self.clock() - start
        self.mark = self.clock()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if trainer.global_step == self.steps:
            self.lightning += self.clock() - self.mark
            self.batch = batch
            # manual optimisation returns nothing: the loss logged (as is) or kept by the log patches below
            self.loss = outputs["loss"] if outputs else getattr(pl_module, "last_train_loss", None)
            if self.loss is None:
                self.loss = trainer.callback_metrics.get("train/loss", float("nan"))


def lightning_fit(task: L.LightningModule, data, clip: float, paired: Paired) -> Paired:
    trainer = L.Trainer(accelerator="cpu", devices=1, precision="32-true", max_steps=paired.steps, max_epochs=-1,
                        logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, num_sanity_val_steps=0, limit_val_batches=0,
                        log_every_n_steps=10,  # conf/trainer/default.yaml
                        gradient_clip_val=clip if task.automatic_optimization else None,  # else the task clips
                        callbacks=[paired])
    if isinstance(data, L.LightningDataModule):
        trainer.fit(task, datamodule=data)
    else:
        trainer.fit(task, train_dataloaders=data)
    return paired


# ------------------------------------------------------------------------- --explain: the parts
class Empty(L.LightningModule):
    """A step that only returns a loss of one parameter, optimised as the task is (automatically, or by
    hand with Lightning's manual_backward / clip_gradients / step): what is left is Lightning's loop."""

    def __init__(self, manual: bool = False, clip: float = 5.0):
        super().__init__()
        self.w = nn.Parameter(torch.zeros(1))
        self.automatic_optimization, self.clip = not manual, clip

    def training_step(self, batch, batch_idx):
        if self.automatic_optimization:
            return self.w.sum()
        opt = self.optimizers()
        opt.zero_grad()
        self.manual_backward(self.w.sum())
        self.clip_gradients(opt, gradient_clip_val=self.clip, gradient_clip_algorithm="norm")
        opt.step()

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters())


def empty_backward(module: Empty):
    def backward(batch):
        loss = module.w.sum()
        loss.backward()
        return loss
    return backward


@contextmanager
def patched(cls, **methods):
    """Replace (or add) methods of ``cls`` for the duration of the block."""
    old = {name: cls.__dict__.get(name) for name in methods}
    for name, fn in methods.items():
        setattr(cls, name, fn)
    try:
        yield
    finally:
        for name, fn in old.items():
            setattr(cls, name, fn) if fn is not None else delattr(cls, name)


@contextmanager
def unchanged():
    yield


def log_no_train(self, name, value, *args, **kwargs):
    if name == "train/loss":
        self.last_train_loss = value
    if not (self.trainer.training and name.startswith("train/")):
        L.LightningModule.log(self, name, value, *args, **kwargs)



def clf_step_bare(self, batch, batch_idx):  # ClassifierTask.training_step without its epoch sums
    tokens, lengths, labels = batch
    return F.cross_entropy(self.net(tokens, lengths), labels)


def explain_variants(model: str) -> list[tuple[str, object, bool]]:
    """(label, context manager factory, pre-collated batches instead of the datamodule)."""
    if model == "clf":
        out = [("no per-step loss/accuracy sums", lambda: patched(ClassifierTask, training_step=clf_step_bare), False)]
    else:
        out = [("no self.log", lambda: patched(Pretrainer, log=log_no_train), False)]
    return out + [("batch list, not DataLoader", unchanged, True)]


# ---------------------------------------------------------------------------------------- main
def run_model(model: str, corpus: Corpus, args) -> list[tuple]:
    vocab, classes = len(corpus.vocab), corpus.num_classes
    clip = (FINETUNE if model == "clf" else PRETRAIN)["grad_clip"]
    batches = collect(datamodule(corpus, model, args.seed), args.steps)
    epoch_len = len(datamodule(corpus, model, args.seed).train_dataloader())
    tokens = sum(int(b[1].sum()) for b in batches[args.warmup:])
    # run -> one (Lightning s, {twin: s}, Lightning's final loss, {twin: final loss}) per repeat
    paired: dict[str, list[tuple[float, dict, float, dict]]] = {}

    def twins() -> dict[str, BareStep]:
        torch.manual_seed(args.seed)
        net = semiseq_net(model, vocab, args, classes)
        torch.manual_seed(args.seed)
        hand = Hand(model, vocab, args.embed, args.hidden, classes, args.softmax)
        return {"bare nets": BareStep(optimizer(model, net), lambda b: nets_backward(model, net, b, args.tbptt), clip),
                "bare hand": BareStep(optimizer(model, hand), hand.backward_batch, clip)}

    def fit(name: str, task: L.LightningModule, data, bare: dict[str, BareStep]) -> Paired:
        result = lightning_fit(task, data, clip, Paired(bare, batches, args.warmup, args.steps, CLOCKS[args.clock]))
        paired.setdefault(name, []).append((result.lightning, result.twin_time, float(result.loss),
                                            {k: float(v) for k, v in result.twin_loss.items()}))
        return result

    variants = explain_variants(model) if args.explain else []
    for _ in range(args.repeats):
        torch.manual_seed(args.seed)
        task = semiseq_task(model, vocab, args, classes)
        result = fit("semiseq", task, datamodule(corpus, model, args.seed), twins())
        if not all(torch.equal(a, b) for a, b in zip(result.batch, batches[-1])):
            raise RuntimeError("Lightning's last batch differs from the pre-collated one")
        for label, ctx, as_list in variants:
            torch.manual_seed(args.seed)
            with ctx():
                data = Batches(batches, epoch_len) if as_list else datamodule(corpus, model, args.seed)
                fit(f"semiseq, {label}", semiseq_task(model, vocab, args, classes), data, twins())
        if args.explain:
            empty, twin = Empty(manual=not task.automatic_optimization, clip=clip), Empty()
            fit("Lightning loop, empty step", empty, datamodule(corpus, model, args.seed),
                {"bare nets": BareStep(torch.optim.Adam(twin.parameters()), empty_backward(twin), clip)})
            paired["Lightning loop, empty step"][-1] = (*paired["Lightning loop, empty step"][-1][:2], float("nan"), {})

    timed, rows = args.steps - args.warmup, []

    def ratios(rs, twin: str) -> list[float] | None:
        return [t[twin] / light for light, t, _, _ in rs] if twin in rs[0][1] else None

    semiseq = paired["semiseq"]
    for twin in ("bare hand", "bare nets"):  # the twins' own rows, from the plain semiseq runs
        times = [t[twin] for _, t, _, _ in semiseq]
        rows.append((twin, statistics.median(times), None, None, None, semiseq[-1][3][twin]))
    for name, rs in paired.items():
        over = statistics.median(light - t["bare hand"] for light, t, _, _ in rs) if "bare hand" in rs[0][1] else None
        rows.append((name, statistics.median(light for light, _, _, _ in rs), ratios(rs, "bare nets"),
                     ratios(rs, "bare hand"), over, rs[-1][2]))
    return [(MODELS[model], name, 1000 * med / timed, tokens / med, nets, hand,
             None if over is None else 1000 * over / timed, loss)
            for name, med, nets, hand, over, loss in rows]


def revision() -> str:
    """The commit checked out (read-only git), so that numbers can be tied to a version of the code."""
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=Path(__file__).resolve().parents[1],
                             capture_output=True, text=True, timeout=10, check=False)
        return f"HEAD {out.stdout.strip() or '?'}"
    except (OSError, subprocess.SubprocessError):
        return "?"


def fmt_ratios(rs: list[float] | None) -> str:
    return "" if rs is None else f"{statistics.median(rs):.3f} [{min(rs):.3f}-{max(rs):.3f}]"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=200, help="optimizer steps per run (warm-up included)")
    parser.add_argument("--warmup", type=int, default=20, help="first steps left out of the timing")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--vocab", type=int, default=None, help="vocabulary size (default: the synthetic 35)")
    parser.add_argument("--embed", type=int, default=32)
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--tbptt", type=int, default=None, help="pretrain.tbptt_steps (bare hand ignores it)")
    parser.add_argument("--softmax", default="full", choices=["full", "adaptive"],
                        help="model.output.softmax for pretraining (and the bare hand loop's)")
    parser.add_argument("--models", default="sa,lm,clf", help="comma-separated: sa, lm, clf")
    parser.add_argument("--explain", action="store_true", help="also time semiseq with parts changed")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--clock", default="cpu", choices=list(CLOCKS),
                        help="time steps in CPU seconds of this thread (default) or wall seconds")
    args = parser.parse_args()
    if not 0 <= args.warmup < args.steps:
        parser.error("--warmup must be in [0, --steps)")
    if unknown := set(args.models.split(",")) - set(MODELS):
        parser.error(f"unknown models {sorted(unknown)}; choose from {list(MODELS)}")
    torch.set_num_threads(args.threads)
    for name in ("lightning.pytorch", "lightning.fabric"):
        logging.getLogger(name).setLevel(logging.ERROR)
    warnings.filterwarnings("ignore")  # Lightning's hints (few DataLoader workers, no logger, ...)

    corpus, source = build_corpus(args.vocab, args.seed)
    print(f"corpus: {source}, vocabulary {len(corpus.vocab)}; embed {args.embed}, hidden {args.hidden}, "
          f"softmax {args.softmax}, tbptt {args.tbptt}; {args.steps} steps ({args.warmup} warm-up), {args.repeats} "
          f"repeats\nsemiseq {revision()}, torch {torch.__version__}, lightning {L.__version__}, {args.threads} "
          f"thread(s), {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}")
    header = (f"{'model':16s}  {'run':45s} {'ms/step':>7s} {'real tok/s':>10s}  {'vs bare nets (paired)':>22s} "
              f"{'vs bare hand (paired)':>22s} {'overhead':>8s}  final loss")
    print(header)
    print(f"{'':16s}  {'':45s} {'median':>7s} {'':10s}  {'median [range]':>22s} {'median [range]':>22s} "
          f"{'ms/step':>8s}")
    print("-" * len(header), flush=True)
    for model in args.models.split(","):
        for m, name, ms, tps, nets, hand, over, loss in run_model(model, corpus, args):
            print(f"{m:16s}  {name:45s} {ms:7.2f} {tps:10,.0f}  {fmt_ratios(nets):>22s} {fmt_ratios(hand):>22s} "
                  f"{'' if over is None else f'{over:+8.2f}':>8s}  {loss:.6f}", flush=True)
    print(f"load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
