"""Datasets: corpora, vocabulary, batching."""

from semiseq.data.corpus import EOS, PAD, SPECIALS, UNK, Corpus, Sequences, Vocab, collate
from semiseq.data.module import BucketBatchSampler, SequenceDataModule

__all__ = ["EOS", "PAD", "SPECIALS", "UNK", "Corpus", "Sequences", "Vocab", "collate",
           "BucketBatchSampler", "SequenceDataModule"]
