"""Mixed precision and torch.compile for LSTM training steps: fp32 vs bf16 autocast vs torch.compile.

    python bench/precision.py [--sizes 32x128,256x512] [--models sa,clf] [--batch 64] [--length 50]
                              [--vocab 2000] [--rounds 3] [--device auto|cpu|cuda] [--threads 1]
                              [--variants bf16,bf16-lstm32,compile,compile-bf16] [--no-compile] [--quick]

Bare PyTorch training steps (zero_grad / forward / loss / backward / clip_grad_norm_ 5 / Adam), on fixed
batches of ``--batch`` sequences of ``--length`` tokens (equal lengths: one shape, so torch.compile compiles
once), for each size ExH (embedding x hidden) and model:

  sa   the SA-LSTM objective: the LSTM reads the sequence, then from that state predicts it again after
       <eos>, through a full softmax over ``--vocab`` words (2,000: the size of an adaptive softmax's head)
  clf  the classifier: the LSTM reads the sequence, the last step goes through a 512-unit ReLU layer
       (dropout 0.5) to 2 classes

each in up to five variants, every one its own copy of the same initial weights:

  fp32             plain float32 (on CUDA: cuDNN's LSTM)
  bf16 autocast    the forward under ``torch.autocast(device, dtype=torch.bfloat16)`` (fp32 weights and Adam).
                   On a CPU without native bf16 (no AVX512-BF16 / AMX) oneDNN has no bf16 LSTM: it fails
  bf16, LSTM fp32  the same with the LSTM kept in float32: embedding, softmax / head in bf16
  compile          ``torch.compile(model)`` in fp32 (Dynamo leaves nn.LSTM to eager unless
                   ``torch._dynamo.config.allow_rnn``, which unrolls it: E=32 H=128 x 50 steps had not
                   compiled after 13 minutes on this shared machine); the first step, which compiles, is timed apart
  compile+bf16     both (with the LSTM in fp32 where bf16 autocast fails)

Steps are *paired*: each round runs one step of every variant on the same batch, in a rotated order, so load
from other processes on the machine slows all variants alike; "vs fp32" is the median over rounds of the
fp32 step time over the variant's (1.20 = 20 % faster) with its range. On a CPU steps are timed in CPU
seconds of this thread (``time.thread_time``; one torch thread), which leaves out the time other processes
hold the core; "compile s" is wall time (the first step's, less a normal step's). Throughput is tokens of
input (batch x length) per second. The final loss after the same steps shows how far bf16 drifts from fp32.
On a CUDA device (``--device auto`` picks it when present) the same runs time cuDNN fp32 against bf16
(``torch.cuda.synchronize()`` around each step). Compilation starts from an empty Inductor cache (a fresh
``TORCHINDUCTOR_CACHE_DIR`` in /tmp unless set). The default takes ~2-3 minutes on one CPU thread (most of
it compiling); ``--quick`` ~30-60 s.
"""

from __future__ import annotations

import os

import atexit
import shutil
import tempfile

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch is imported
if "TORCHINDUCTOR_CACHE_DIR" not in os.environ:  # a cold compile, not a reuse of an earlier run's kernels
    os.environ["TORCHINDUCTOR_CACHE_DIR"] = tempfile.mkdtemp(prefix="precision-inductor-")
    atexit.register(shutil.rmtree, os.environ["TORCHINDUCTOR_CACHE_DIR"], True)

import argparse
import copy
import statistics
import time
import warnings
from contextlib import nullcontext

import torch
import torch.nn.functional as F
from torch import nn

PAD, EOS = 0, 2


class Net(nn.Module):
    """Embedding + LSTM; ``lstm_fp32`` keeps the LSTM in float32 under autocast (the rest in bf16)."""

    lstm_fp32 = False

    def __init__(self, vocab: int, embed: int, hidden: int):
        super().__init__()
        self.embedding = nn.Embedding(vocab, embed, padding_idx=PAD)
        self.lstm = nn.LSTM(embed, hidden, batch_first=True)

    def run_lstm(self, tokens: torch.Tensor, state=None):
        x = self.embedding(tokens)
        if self.lstm_fp32 and torch.is_autocast_enabled(x.device.type):
            with torch.autocast(x.device.type, enabled=False):
                return self.lstm(x.float(), state)
        return self.lstm(x, state)


class SA(Net):
    """One LSTM as encoder, then from its state as decoder, full softmax; forward returns the mean token loss."""

    def __init__(self, vocab: int, embed: int, hidden: int):
        super().__init__(vocab, embed, hidden)
        self.output = nn.Linear(hidden, vocab)

    def forward(self, tokens: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        _, state = self.run_lstm(tokens)
        inputs = torch.cat([torch.full_like(tokens[:, :1], EOS), tokens], 1)
        targets = torch.cat([tokens, torch.full_like(tokens[:, :1], EOS)], 1)
        out, _ = self.run_lstm(inputs, state)
        return F.cross_entropy(self.output(out).flatten(0, 1).float(), targets.flatten())


class Clf(Net):
    """The LSTM's last step through a 512-unit ReLU head to 2 classes; forward returns the cross-entropy."""

    def __init__(self, vocab: int, embed: int, hidden: int):
        super().__init__(vocab, embed, hidden)
        self.head = nn.Sequential(nn.Linear(hidden, 512), nn.ReLU(), nn.Dropout(0.5), nn.Linear(512, 2))

    def forward(self, tokens: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        out, _ = self.run_lstm(tokens)
        return F.cross_entropy(self.head(out[:, -1]).float(), labels)


MODELS = {"sa": ("SA-LSTM pretrain", SA), "clf": ("classifier", Clf)}
VARIANTS = {"bf16 autocast": "bf16", "bf16, LSTM fp32": "bf16-lstm32", "compile": "compile",
            "compile+bf16": "compile-bf16"}


class Variant:
    """One model copy, its optimiser and how its forward runs."""

    def __init__(self, name: str, net: nn.Module, device: str, bf16: bool, compiled: bool, lstm_fp32: bool):
        self.name, self.net, self.device, self.failed = name, net, device, None
        net.lstm_fp32 = lstm_fp32
        self.params = list(net.parameters())
        self.opt = torch.optim.Adam(self.params, lr=1e-3)
        self.forward = torch.compile(net) if compiled else net
        self.autocast = (lambda: torch.autocast(device, dtype=torch.bfloat16)) if bf16 else nullcontext
        self.times: list[float] = []  # CPU seconds of this thread on a CPU, wall seconds on a GPU
        self.walls: list[float] = []
        self.first = self.loss = float("nan")

    def step(self, batch) -> tuple[float, float]:
        """One training step; returns (wall s, timed s): on a CPU the CPU time of this thread (with one torch
        thread the work runs here; the time other processes hold the core is left out), on a GPU the wall
        time with the device synchronised at both ends."""
        sync(self.device)
        start, cpu = time.perf_counter(), time.thread_time()
        self.opt.zero_grad()
        with self.autocast():
            loss = self.forward(*batch)
        loss.backward()
        nn.utils.clip_grad_norm_(self.params, 5.0)
        self.opt.step()
        sync(self.device)
        self.loss = float(loss)
        wall = time.perf_counter() - start
        return wall, (time.thread_time() - cpu if self.device == "cpu" else wall)


def sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def autocast_lstm(device: str) -> str:
    """What dtype nn.LSTM computes in under bf16 autocast here, or why it fails."""
    lstm, x = nn.LSTM(8, 8, batch_first=True).to(device), torch.randn(2, 3, 8, device=device)
    try:
        with torch.autocast(device, dtype=torch.bfloat16):
            return str(lstm(x)[0].dtype).replace("torch.", "")
    except RuntimeError as e:
        return f"fails ({str(e).splitlines()[0][:70]}...)"


def compile_works(device: str) -> str | None:
    """None when torch.compile can build a kernel here, else why not (no C++ compiler, no Triton, ...)."""
    try:
        f = torch.compile(lambda x: torch.relu(x) * 2)
        f(torch.randn(8, device=device))
        return None
    except Exception as e:  # noqa: BLE001 - any failure means: no compile variant on this machine
        return f"{type(e).__name__}: {str(e).splitlines()[0][:100]}"


def run(model: str, embed: int, hidden: int, args, device: str, compile_ok: bool, bf16_lstm_fails: bool) -> list[tuple]:
    gen = torch.Generator().manual_seed(0)
    batches = [(torch.randint(3, args.vocab, (args.batch, args.length), generator=gen).to(device),
                torch.randint(0, 2, (args.batch,), generator=gen).to(device)) for _ in range(args.rounds + 1)]
    torch.manual_seed(0)
    base = MODELS[model][1](args.vocab, embed, hidden).to(device)
    kinds = [("fp32", False, False, False), ("bf16 autocast", True, False, False),
             ("bf16, LSTM fp32", True, False, True)]
    if compile_ok:
        kinds += [("compile", False, True, False), ("compile+bf16", True, True, bf16_lstm_fails)]
    kinds = [k for k in kinds if k[0] == "fp32" or VARIANTS[k[0]] in args.variants.split(",")]
    variants = [Variant(name, copy.deepcopy(base), device, *flags) for name, *flags in kinds]
    for v in variants:  # the first step: warm-up, and for the compiled ones the compilation
        torch.manual_seed(1)
        try:
            v.first = v.step(batches[0])[0]
        except RuntimeError as e:
            v.failed = str(e).splitlines()[0][:60]
    failed = [v for v in variants if v.failed]
    variants = [v for v in variants if not v.failed]
    for r, batch in enumerate(batches[1:]):
        for k in range(len(variants)):
            v = variants[(r + k) % len(variants)]  # rotated order: no variant always runs first
            torch.manual_seed(2 + r)  # the same dropout masks for every variant
            wall, timed = v.step(batch)
            v.walls.append(wall)
            v.times.append(timed)
    fp32 = variants[0]
    tokens = args.batch * args.length
    rows = [(MODELS[model][0], f"{embed}x{hidden}", v.name, None, None, None, None, v.failed) for v in failed]
    for v in variants:
        ratios = [a / b for a, b in zip(fp32.times, v.times)]
        med = statistics.median(v.times)
        compile_s = v.first - statistics.median(v.walls) if "compile" in v.name else None
        rows.append((MODELS[model][0], f"{embed}x{hidden}", v.name, 1000 * med, tokens / med, ratios, compile_s,
                     v.loss))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="32x128,256x512", help="comma-separated EMBEDxHIDDEN")
    parser.add_argument("--models", default="sa,clf")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--length", type=int, default=50)
    parser.add_argument("--vocab", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3, help="timed rounds (each: one step of every variant)")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--variants", default=",".join(VARIANTS.values()), help="besides fp32: "
                        + ", ".join(VARIANTS.values()))
    parser.add_argument("--no-compile", action="store_true")
    parser.add_argument("--quick", action="store_true", help="size 32x128, SA only, 2 rounds")
    args = parser.parse_args()
    if args.quick:
        args.sizes, args.models, args.rounds = "32x128", "sa", 2
    device = ("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device
    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore")
    why = "--no-compile" if args.no_compile else compile_works(device)
    name = torch.cuda.get_device_name() if device == "cuda" else f"CPU, {args.threads} thread(s) of {os.cpu_count()}"
    if device == "cuda":
        bf16_hw = "yes" if torch.cuda.is_bf16_supported() else "no"
    else:
        flags = open("/proc/cpuinfo").read() if os.path.exists("/proc/cpuinfo") else ""
        native = "avx512_bf16" in flags or "amx_bf16" in flags
        bf16_hw = "yes (avx512_bf16/amx)" if native else "no (no avx512_bf16/amx)"
    lstm_dtype = autocast_lstm(device)
    print(f"{name}; torch {torch.__version__}; native bf16 math: {bf16_hw}; nn.LSTM under bf16 autocast: "
          f"{lstm_dtype}\ntorch.compile: {'yes' if why is None else 'no (' + why + ')'}; batch {args.batch} x "
          f"{args.length} tokens, vocabulary {args.vocab}, {args.rounds} paired rounds; load average "
          f"{os.getloadavg()[0]:.2f} (machine shared with other jobs)", flush=True)
    per = "CPU-s" if device == "cpu" else "s"
    head = (f"{'model':16s} {'ExH':>8s}  {'variant':15s} {'ms/step':>8s} {'tokens/' + per:>13s}  "
            f"{'vs fp32 (paired)':>20s} {'compile s':>9s}  final loss")
    print(head + "\n" + "-" * len(head), flush=True)
    for size in args.sizes.split(","):
        embed, hidden = (int(x) for x in size.split("x"))
        for model in args.models.split(","):
            for m, s, v, ms, tps, ratios, comp, loss in run(model, embed, hidden, args, device, why is None,
                                                            lstm_dtype.startswith("fails")):
                if ms is None:
                    print(f"{m:16s} {s:>8s}  {v:15s} failed: {loss}", flush=True)
                    continue
                ratio = f"{statistics.median(ratios):.2f} [{min(ratios):.2f}-{max(ratios):.2f}]"
                print(f"{m:16s} {s:>8s}  {v:15s} {ms:8.1f} {tps:13,.0f}  {ratio:>20s} "
                      f"{'' if comp is None else f'{comp:9.1f}':>9s}  {loss:.6f}", flush=True)
    print(f"load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
