"""The paper's "LSTM + word2vec" baseline: word vectors trained with gensim on the same text the
pretraining objectives see (unlabeled + training), stored as a backbone checkpoint holding only
the embedding, so ``transfer.load_backbone`` initialises the classifier from it like from SA/LM."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import torch
from omegaconf import DictConfig

from semiseq import SemiseqError
from semiseq.atomic import save_torch, write_json
from semiseq.data import Corpus
from semiseq.objectives import Objective
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
        raise SemiseqError("objective=word2vec needs gensim: pip install gensim") from e
    if corpus.input_dim is not None:
        raise SemiseqError(f"objective=word2vec needs word tokens; {corpus.name!r} has real-valued steps")
    model = Word2Vec(_Texts(corpus), vector_size=dim, window=window, min_count=1, sg=int(sg), negative=negative,
                     epochs=epochs, seed=seed, workers=workers)
    generator = torch.Generator().manual_seed(seed)
    weight = torch.randn(len(corpus.vocab), dim, generator=generator) * 0.1
    weight[0] = 0.0  # PAD
    ids = [int(w) for w in model.wv.index_to_key]
    weight[ids] = torch.from_numpy(model.wv.vectors.copy())
    return weight


class Word2Vec(Objective):
    """Word vectors (gensim) for ``model.backbone.embed_dim``, trained on the pretraining text; the LSTM stays
    random. Settings: ``sg`` (skip-gram, else CBOW), ``window``, ``epochs``, ``negative``."""

    def __init__(self, name: str = "word2vec", sg: bool = True, window: int = 5, epochs: int = 5, negative: int = 5):
        super().__init__(name, sg=sg, window=window, epochs=epochs, negative=negative)

    description = "word2vec embeddings"

    def key(self, cfg: DictConfig, corpus: Corpus, processes: int = 1) -> dict:
        return {**super().key(cfg, corpus), "embed_dim": cfg.model.backbone.embed_dim}  # trained in one process

    def pretrain(self, cfg: DictConfig, corpus: Corpus, run_dir: Path, one_device: bool = False,
                 start: Path | None = None) -> Path:
        """Train the vectors and write ``run_dir/checkpoints/word2vec.ckpt`` (the embedding only)."""
        start = time.perf_counter()
        weight = embeddings(corpus, cfg.model.backbone.embed_dim, seed=cfg.pretrain.seed,
                            workers=cfg.get("threads") or 1, **self.settings)
        path = run_dir / "checkpoints" / "word2vec.ckpt"
        meta = dict(corpus.meta(), max_len=cfg.data.max_len, kind=self.name)
        save_torch({"state_dict": {PREFIX + "embedding.weight": weight}, "semiseq": meta}, path)
        wall = time.perf_counter() - start
        write_json(run_dir / "results.json", {"mode": "pretrain", "objective": self.name, "checkpoint": str(path),
                                              "wall_s": wall})
        log.info("trained word2vec (%d-d, %d epochs) in %.0fs -> %s", weight.size(1), self.settings["epochs"], wall,
                 path)
        return path
