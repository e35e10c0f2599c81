"""How far SA pretraining moved the word2vec vectors it started from (drift.txt beside this file):

    python docs/rt_cpu/2026-12-03-frozen/drift.py WORD2VEC.ckpt SA.ckpt

the cache entries (logs/cache/pretrained/) of objective=word2vec and of an SA pretrained from those vectors. Prints
the cosine of each word's two vectors (all words, and the 1,000 most frequent: the vocabulary is sorted by
frequency), the relative change of the whole table, and a few sentiment words' nearest neighbours in each."""

import sys

import torch
import torch.nn.functional as F

from semiseq.data.corpus import SPECIALS

WORDS = ["good", "bad", "boring", "brilliant", "funny", "dull"]


def table(path: str) -> tuple[list[str], torch.Tensor]:
    ckpt = torch.load(path, weights_only=True)
    return ckpt["semiseq"]["vocab"], ckpt["state_dict"]["net.backbone.embedding.weight"]


def neighbours(weight: torch.Tensor, i: int, itos: list[str], k: int = 8) -> list[str]:
    sims = F.cosine_similarity(weight[i : i + 1], weight, dim=1)
    sims[i] = -2.0
    return [itos[j] for j in sims.topk(k).indices.tolist()]


def main(w2v_path: str, sa_path: str) -> None:
    itos, before = table(w2v_path)
    sa_itos, after = table(sa_path)
    assert itos == sa_itos, "the two checkpoints have different vocabularies"
    words = slice(len(SPECIALS), None)
    cos = F.cosine_similarity(before[words], after[words], dim=1)
    change, ratio = (after - before).norm() / before.norm(), after.norm() / before.norm()
    print(f"vocab {len(itos)}: cosine(word2vec, SA) mean {cos.mean():.3f}, 1,000 most frequent words "
          f"{cos[:1000].mean():.3f}; relative change |SA - word2vec| / |word2vec| {change:.3f}, norm ratio {ratio:.3f}")
    stoi = {w: i for i, w in enumerate(itos)}
    for word in (w for w in WORDS if w in stoi):
        print(f"{word}: word2vec {neighbours(before, stoi[word], itos)}; SA {neighbours(after, stoi[word], itos)}")


if __name__ == "__main__":
    main(*sys.argv[1:3])
