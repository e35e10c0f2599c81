"""The paper's "LSTM + word2vec" baseline: word vectors trained with gensim on the same text the
pretraining objectives see (unlabeled + training), stored as a backbone checkpoint holding only
the embedding, so ``transfer.load_backbone`` initialises the classifier from it like from SA/LM."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import torch
from omegaconf import DictConfig

from semiseq import SemiseqError, atomic, runs
from semiseq.data import Corpus
from semiseq.transfer import PREFIX

log = logging.getLogger(__name__)


class _Texts:
    """The corpus' pretraining texts as lists of token names, re-iterable (gensim reads them once per epoch)."""

    def __init__(self, corpus: Corpus):
        self.texts, self.names = corpus.pretrain_text(), [str(i) for i in range(len(corpus.vocab))]

    def __iter__(self):
        for i in range(len(self.texts)):
            yield [self.names[t] for t in self.texts[i][0].tolist()]


def embeddings(corpus: Corpus, dim: int, window: int = 5, epochs: int = 5, negative: int = 5, sg: bool = True,
               seed: int = 0, workers: int = 1) -> torch.Tensor:
    """word2vec (skip-gram by default) vectors [V, dim] in the corpus' vocabulary order; words
    word2vec never saw keep a small random vector, PAD a zero one."""
    try:
        from gensim.models import Word2Vec
    except ImportError as e:  # pragma: no cover - gensim is a dependency
        raise SemiseqError("init=word2vec needs gensim: pip install gensim") from e
    if corpus.input_dim is not None:
        raise SemiseqError(f"init=word2vec needs word tokens; {corpus.name!r} has real-valued steps")
    model = Word2Vec(_Texts(corpus), vector_size=dim, window=window, min_count=1, sg=int(sg), negative=negative,
                     epochs=epochs, seed=seed, workers=workers)
    generator = torch.Generator().manual_seed(seed)
    weight = torch.randn(len(corpus.vocab), dim, generator=generator) * 0.1
    weight[0] = 0.0  # PAD
    ids = [int(w) for w in model.wv.index_to_key]
    weight[ids] = torch.from_numpy(model.wv.vectors.copy())
    return weight


def pretrain(cfg: DictConfig, corpus: Corpus, run_dir: Path) -> Path:
    """Train the vectors for ``cfg.model.embed_dim`` and write ``run_dir/checkpoints/word2vec.ckpt``."""
    start = time.perf_counter()
    params = cfg.init
    weight = embeddings(corpus, cfg.model.embed_dim, params.window, params.epochs, params.negative, params.sg,
                        cfg.pretrain.seed, cfg.get("threads") or 1)
    path = run_dir / "checkpoints" / "word2vec.ckpt"
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = dict(corpus.meta(), max_len=cfg.data.max_len, kind="word2vec")
    atomic.save_torch({"state_dict": {PREFIX + "embedding.weight": weight}, "semiseq": meta}, path)
    wall = time.perf_counter() - start
    runs.write_json(run_dir / "results.json", {"mode": "pretrain", "objective": "word2vec", "checkpoint": str(path),
                                               "wall_s": wall})
    log.info("trained word2vec (%d-d, %d epochs) in %.0fs -> %s", weight.size(1), params.epochs, wall, path)
    return path
