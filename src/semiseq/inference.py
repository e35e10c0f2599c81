"""Use what was trained: load a checkpoint, then predict labels, embed texts or test it on a dataset.

``eval.py`` is a thin command line over these functions; from Python::

    model = semiseq.load("logs/.../checkpoints/best.ckpt")
    model.predict(["a new text", ""])        # ['positive', None]: an empty text has no prediction
    model.predict_proba(["a new text"])      # float32 [N, classes], rows sum to 1 (NaN rows for empty texts)
    model.embed(["a new text"])              # float32 [N, 2 * hidden]: the top LSTM layer's final (h, c)

Texts are read as training read them: the checkpoint's tokeniser and vocabulary (unknown words become ``<unk>``),
truncated to its ``max_len``.
"""

from __future__ import annotations

import functools
import io
import itertools
import json
import os
import shutil
import sys
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import Callback
from torchmetrics.classification import MulticlassConfusionMatrix
from tqdm import tqdm

from semiseq import SemiseqError, atomic
from semiseq.data.corpus import Corpus, Vocab, collate
from semiseq.data.files import SUFFIXES, codec, open_text, read_records
from semiseq.data.module import SequenceDataModule
from semiseq.data.tokenize import Tokenizer
from semiseq.tasks import ClassifierTask, Pretrainer
from semiseq.transfer import check_vocab, read_checkpoint

WINDOW = 16  # file commands read this many batches at a time and sort them by length: little padding
_JSON = json.JSONEncoder(ensure_ascii=False).encode  # one encoder for every output line: ~30% faster than dumps


class Model:
    """A loaded checkpoint that reads raw text: a classifier, or a pretrained (SA / LM) backbone."""

    def __init__(self, task: ClassifierTask | Pretrainer, meta: dict, path: str, device: torch.device):
        self.task, self.path, self.device = task.eval().to(device), path, device
        self.kind: str = meta["kind"]
        self.data: str = meta.get("data", "?")
        self.vocab = Vocab(meta["vocab"])
        self.pixels = bool(meta.get("input_dim"))  # real-valued steps (CIFAR-10 rows): no text to read
        self.tokenizer = None if self.pixels else Tokenizer(**meta["tokenizer"])
        self.max_len: int | None = meta.get("max_len")
        self.class_names: list[str] = list(meta["class_names"]) if self.kind == "classifier" else []
        self.backbone = task.net.backbone

    def __repr__(self) -> str:
        return (f"Model(kind={self.kind!r}, data={self.data!r}, class_names={self.class_names}, "
                f"vocab={len(self.vocab)}, max_len={self.max_len}, path={self.path!r})")

    @property
    def embed_dim(self) -> int:
        """Width of :meth:`embed`'s rows: the top layer's h and c."""
        return 2 * self.backbone.lstm.hidden_size

    def encode(self, text: str) -> list[int]:
        """Token ids of ``text`` as training saw them: tokenised, unknown words as <unk>, cut to ``max_len``."""
        if self.pixels:
            raise SemiseqError(f"{self.path} reads pixel rows ({self.data}), not text: test it with "
                               "`python eval.py ckpt_path=... data=cifar10_rows`")
        return self.vocab.encode(self.tokenizer(text))[: self.max_len]

    def require_classifier(self, action: str) -> None:
        """Refuse ``action`` (e.g. 'predict') on a pretraining checkpoint, saying what to do instead."""
        if self.kind != "classifier":
            raise SemiseqError(
                f"{self.path} is a pretraining checkpoint ({self.kind.upper()}-LSTM) with no classifier, so it cannot "
                f"be used to {action}: fine-tune it first (python train.py objective={self.kind} "
                f"init.checkpoint={self.path}) and use the fine-tuned checkpoint (results.json's best_checkpoint)")

    def predict_proba(self, texts: Iterable[str], batch_size: int = 256) -> np.ndarray:
        """Class probabilities, float32 [N, classes]; the row of a text with no tokens is NaN."""
        self.require_classifier("predict")
        return self._apply(texts, lambda t, n: torch.softmax(self.task.net(t, n), -1), len(self.class_names),
                           np.nan, batch_size)

    def predict(self, texts: Iterable[str], batch_size: int = 256) -> list[str | None]:
        """The most probable class name of each text (None for a text with no tokens)."""
        return self.labels(self.predict_proba(texts, batch_size))

    def labels(self, probs: np.ndarray) -> list[str | None]:
        """Class names of the argmax of each row of :meth:`predict_proba` (None for NaN rows)."""
        names = np.array([*self.class_names, None], dtype=object)
        best = np.where(np.isnan(probs[:, 0]), len(self.class_names), np.argmax(np.nan_to_num(probs), axis=1))
        return names[best].tolist()

    def embed(self, texts: Iterable[str], batch_size: int = 256) -> np.ndarray:
        """float32 [N, 2 * hidden]: the top LSTM layer's h and c after each text's last token (for an SA, the
        state its decoder starts from). A text with no tokens gets zeros, the state before any token."""

        def state(tokens: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
            h, c = self.backbone.encode(tokens, lengths)
            return torch.cat([h[-1], c[-1]], dim=-1)

        return self._apply(texts, state, self.embed_dim, 0.0, batch_size)

    @torch.inference_mode()
    def _apply(self, texts: Iterable[str], fn: Callable, width: int, fill: float, batch_size: int) -> np.ndarray:
        """``fn(tokens, lengths)`` over batches of texts of similar length, rows back in input order."""
        if isinstance(texts, str):
            raise TypeError("pass a list of texts, e.g. [text], not a single string")
        ids = [self.encode(t) for t in texts]
        out = np.full((len(ids), width), fill, dtype=np.float32)
        rows = sorted((i for i, seq in enumerate(ids) if seq), key=lambda i: len(ids[i]))
        for start in range(0, len(rows), batch_size):
            batch = rows[start:start + batch_size]
            tokens, lengths, _ = collate([(ids[i], -1) for i in batch])
            out[batch] = fn(tokens.to(self.device), lengths.to(self.device)).float().cpu().numpy()
        return out


def load(path: str | os.PathLike, device: str | torch.device | None = None) -> Model:
    """Load a semiseq checkpoint (classifier, SA or LM) safely (``weights_only=True``) onto ``device``
    (default: CUDA when available, else CPU)."""
    if not Path(path).exists():  # a folder: read_checkpoint names the file to pass
        raise SemiseqError(f"checkpoint {path} does not exist; pass the path of a .ckpt written by train.py "
                           "(results.json's best_checkpoint, or checkpoints/pretrained.ckpt)")
    ckpt = read_checkpoint(path)
    meta, hparams = ckpt["semiseq"], ckpt.get("hyper_parameters")
    if not hparams or (meta.get("kind") != "classifier" and "network" not in hparams):
        raise SemiseqError(f"checkpoint {path} has kind {meta.get('kind')!r} and no network to rebuild (word2vec "
                           "checkpoints hold only embeddings); pass a classifier or an SA / LM checkpoint written "
                           "by train.py")
    task = (ClassifierTask if meta["kind"] == "classifier" else Pretrainer)(**hparams)
    try:
        task.load_state_dict(ckpt["state_dict"])
    except RuntimeError as e:
        raise SemiseqError(f"checkpoint {path}: its weights do not fit its own hyper-parameters "
                           f"({str(e).splitlines()[0]}); it may be corrupt: train it again") from e
    task.on_load_checkpoint(ckpt)
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    return Model(task, meta, str(path), device)


# --- files in, files out (what eval.py's predict and embed run) ---------------------------------------------------


def open_texts(path: str | os.PathLike | None, text_column: str = "text",
               encoding: str = "utf-8") -> Iterator[tuple[int, str]]:
    """(line number, text) for every text of ``path``: one text per line (``-``: stdin), or the ``text_column`` of a
    .csv/.tsv/.jsonl file. A missing file or unknown encoding raises ``SemiseqError`` now, not when first read."""
    if path is None or str(path) == "":
        raise SemiseqError("no input given; pass input=FILE (one text per line, or a .csv/.tsv/.jsonl file with "
                           "text_column=NAME) or input=- to read standard input")
    enc = codec(encoding)
    if str(path) == "-":
        return _read(io.TextIOWrapper(sys.stdin.buffer, encoding=enc), "stdin", "lines", text_column, encoding)
    path = Path(path).expanduser()
    if not path.is_file():
        raise SemiseqError(f"input file {path} does not exist; check input= (relative paths start from {Path.cwd()})")
    fmt = SUFFIXES.get(path.suffix.lower(), "lines")
    return _read(open_text(path, fmt, enc), str(path), fmt, text_column, encoding)


def _read(stream: io.TextIOBase, name: str, fmt: str, column: str, encoding: str) -> Iterator[tuple[int, str]]:
    try:
        for line, (text,) in read_records(stream, name, fmt, {"text_column": column}, encoding,
                                          "pass the input's real encoding, e.g. encoding=latin-1"):
            yield line, text
    finally:
        if name == "stdin":
            stream.detach()  # leave sys.stdin itself open
        else:
            stream.close()


def _windows(records: Iterator[tuple[int, str]], size: int) -> Iterator[list[tuple[int, str]]]:
    while window := list(itertools.islice(records, size)):
        yield window


def _progress(desc: str, enabled: bool) -> tqdm:
    # on stderr, as stdout may carry the predictions; shown after a second, so that bad input found in the first
    # lines ends with its one error line only
    return tqdm(desc=desc, unit=" texts", disable=not enabled, delay=1.0)


def _writer(output: str | os.PathLike):
    """Standard output for ``-``, else a file that replaces ``output`` once every line is in it."""
    if str(output) == "-":
        return open(sys.stdout.fileno(), "w", encoding="utf-8", closefd=False)
    return atomic.writing(output, "w", encoding="utf-8", newline="\n")


def predict_file(model: Model, input: str | os.PathLike, output: str | os.PathLike, batch_size: int = 256,
                 text_column: str = "text", encoding: str = "utf-8", progress: bool = True) -> int:
    """Write one JSON line per input text, in input order: ``{"text", "label", "probs": {class: p}}`` (label and
    probs null for a text with no tokens); ``output='-'`` is stdout. Returns the number of texts."""
    model.require_classifier("predict")
    records, count = open_texts(input, text_column, encoding), 0
    with _writer(output) as out, _progress("predict", progress) as bar:
        for window in _windows(records, batch_size * WINDOW):
            texts = [text for _, text in window]
            probs = model.predict_proba(texts, batch_size)
            rows = probs.astype(np.float64).round(6).tolist()
            out.write("".join(_JSON({"text": text, "label": label,
                                     "probs": None if label is None else dict(zip(model.class_names, row))}) + "\n"
                              for text, label, row in zip(texts, model.labels(probs), rows)))
            count += len(window)
            bar.update(len(window))
    return count


def embed_file(model: Model, input: str | os.PathLike, output: str | os.PathLike, batch_size: int = 256,
               text_column: str = "text", encoding: str = "utf-8", progress: bool = True) -> tuple[Path, Path, int]:
    """Write ``OUT.npy`` (float32 [N, 2 * hidden], rows as :meth:`Model.embed`) and ``OUT.index.jsonl``
    (``{"line", "text"}`` per row) for ``output=OUT``; returns both paths and N. Memory stays flat: rows go to disk
    as they come and the .npy header is written last."""
    stem = str(output).removesuffix(".npy")
    npy, index, part = Path(stem + ".npy"), Path(stem + ".index.jsonl"), Path(stem + ".npy.part")
    records, count = open_texts(input, text_column, encoding), 0
    npy.parent.mkdir(parents=True, exist_ok=True)
    try:
        with open(part, "wb") as rows, _writer(index) as out, _progress("embed", progress) as bar:
            for window in _windows(records, batch_size * WINDOW):
                rows.write(model.embed([text for _, text in window], batch_size).tobytes())
                out.write("".join(_JSON({"line": line, "text": text}) + "\n" for line, text in window))
                count += len(window)
                bar.update(len(window))
        with atomic.writing(npy) as f, open(part, "rb") as rows:
            header = {"descr": np.lib.format.dtype_to_descr(np.dtype(np.float32)), "fortran_order": False,
                      "shape": (count, model.embed_dim)}
            np.lib.format.write_array_header_1_0(f, header)
            shutil.copyfileobj(rows, f)
    finally:
        part.unlink(missing_ok=True)
    return npy, index, count


# --- the test loop (what eval.py's test runs) ----------------------------------------------------------------------


class _ConfusionMatrix(Callback):
    """Collects the test loop's confusion matrix from the classifier's own forward pass (no second pass)."""

    def __init__(self, num_classes: int):
        self.metric, self.logits = MulticlassConfusionMatrix(num_classes), []

    def on_test_start(self, trainer, pl_module):
        self.hook = pl_module.net.register_forward_hook(lambda module, args, out: self.logits.append(out))

    def on_test_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0):
        self.metric.update(self.logits.pop().argmax(-1).cpu(), batch[2].cpu())

    def on_test_end(self, trainer, pl_module):
        self.hook.remove()


def evaluate(model: Model, corpus: Corpus, trainer: Callable[..., L.Trainer] | None = None,
             batch_size: int = 256) -> dict:
    """Test a classifier on ``corpus.test`` (cut to the checkpoint's ``max_len``, as in training) with the Trainer
    that ``trainer(callbacks=...)`` makes (default: quiet, no logger). Returns test/acc, test/error (%), test/loss and
    the confusion matrix (rows: true class, columns: predicted). Refuses data whose vocabulary or classes differ."""
    model.require_classifier("test")
    check_vocab(model.vocab.itos, corpus.vocab.itos, model.path, corpus.name,
                fix="Test with the data settings the checkpoint was trained with (e.g. the same data= and data.*).")
    if list(corpus.class_names) != model.class_names:
        raise SemiseqError(f"class mismatch: checkpoint {model.path} predicts {model.class_names} but dataset "
                           f"{corpus.name!r} has {list(corpus.class_names)}; test on the data it was trained on")
    confusion = _ConfusionMatrix(len(model.class_names))
    data = SequenceDataModule(corpus, "classify", batch_size, batch_size, model.max_len)
    trainer = trainer or functools.partial(L.Trainer, logger=False, enable_progress_bar=False,
                                           enable_model_summary=False)
    (metrics,) = trainer(callbacks=[confusion]).test(model.task, datamodule=data, verbose=False)
    return {"checkpoint": model.path, "data": corpus.name, "num_examples": len(corpus.test),
            **{k: float(v) for k, v in metrics.items()}, "class_names": model.class_names,
            "confusion_matrix": confusion.metric.compute().tolist()}
