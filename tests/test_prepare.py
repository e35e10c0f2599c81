"""Tokenisation, vocabulary, validation split and the corpus cache."""

from functools import partial

import numpy as np
import pytest

from semiseq.data.corpus import UNK
from semiseq.data.prepare import make_corpus
from semiseq.data.texts import Texts
from semiseq.data.tokenize import Tokenizer, build_vocab

CALLS = []


def toy_source(n: int = 40, path: str = "") -> Texts:
    CALLS.append(n)
    train = [f"Good movie number {i}, really good!" if i % 2 else f"bad film {i} ... so bad" for i in range(n)]
    return Texts("toy", ["neg", "pos"], train, [i % 2 for i in range(n)],
                 ["bad testonlyword movie", "bad"], [0, 0], unlabeled=["unlabeled good words here", "!!!", ""])


def test_word_and_char_tokenizers():
    assert Tokenizer()("Don't panic, it's FINE.") == ["don't", "panic", ",", "it's", "fine", "."]
    assert Tokenizer(punctuation=False)("Don't panic, it's FINE.") == ["don't", "panic", "it's", "fine"]
    assert Tokenizer(lowercase=False)("Hi!") == ["Hi", "!"]
    assert Tokenizer("char")("Ab c") == ["a", "b", " ", "c"]
    with pytest.raises(ValueError, match="'word' or 'char'"):
        Tokenizer("bpe")


def test_vocab_is_by_frequency_then_alphabetical_with_limits():
    vocab = build_vocab([["b", "a", "c", "a"], ["b", "d"]], min_freq=2)
    assert vocab.itos == ["<pad>", "<unk>", "<eos>", "a", "b"]
    assert build_vocab([["b", "a", "c", "a"]], max_size=4).itos == ["<pad>", "<unk>", "<eos>", "a"]


def test_split_vocabulary_and_encoding(tmp_path):
    corpus = make_corpus(partial(toy_source, 40), val_fraction=0.25, seed=0)
    assert (len(corpus.train), len(corpus.val), len(corpus.test)) == (30, 10, 2)
    assert len(corpus.unlabeled) == 2  # the empty text is dropped; "!!!" is three tokens
    assert "testonlyword" not in corpus.vocab.stoi  # test text never enters the vocabulary
    assert "unlabeled" in corpus.vocab.stoi  # unlabeled training text does
    ids, _ = corpus.test[0]
    assert corpus.vocab.decode(ids) == ["bad", "<unk>", "movie"] and ids[1] == UNK
    again = make_corpus(partial(toy_source, 40), val_fraction=0.25, seed=0)
    assert np.array_equal(corpus.val.labels, again.val.labels)
    other = make_corpus(partial(toy_source, 40), val_fraction=0.25, seed=1)
    assert not np.array_equal(corpus.val.tokens, other.val.tokens)


def test_cache_is_reused_memory_mapped_and_rebuilt_when_corrupt(tmp_path):
    CALLS.clear()
    build = partial(make_corpus, partial(toy_source, 40), name="toy", cache_dir=str(tmp_path))
    first = build()
    second = build()
    assert CALLS == [40]  # tokenised once
    assert isinstance(second.unlabeled.tokens, np.memmap)
    assert second.vocab.itos == first.vocab.itos and np.array_equal(second.train.tokens, first.train.tokens)
    expected = np.array(first.train.tokens)  # a copy: the corruption below truncates the mapped file
    (entry,) = [p for p in tmp_path.iterdir() if p.is_dir()]
    (entry / "train.tokens.npy").write_bytes(b"garbage")
    third = build()
    assert CALLS == [40, 40] and np.array_equal(third.train.tokens, expected)
    make_corpus(partial(toy_source, 41), name="toy", cache_dir=str(tmp_path))  # another config, another entry
    assert len([p for p in tmp_path.iterdir() if p.is_dir()]) == 2


def test_edited_data_file_makes_a_new_cache_entry(tmp_path):
    data = tmp_path / "data.txt"
    data.write_text("v1")
    make_corpus(partial(toy_source, 40, path=str(data)), name="toy", cache_dir=str(tmp_path / "c"))
    data.write_text("version 2")
    make_corpus(partial(toy_source, 40, path=str(data)), name="toy", cache_dir=str(tmp_path / "c"))
    assert len([p for p in (tmp_path / "c").iterdir() if p.is_dir()]) == 2


def test_unlabeled_text_of_another_dataset_split_into_sentences(monkeypatch):
    from semiseq.data import prepare
    from semiseq.data.tokenize import split_sentences

    assert split_sentences(" One film. Two films!  Three? 4.5 stars... ok ") == ["One film.", "Two films!", "Three?",
                                                                                "4.5 stars...", "ok"]
    extra = ["A great movie. I loved it! Did you?", "Just one"]
    monkeypatch.setattr(prepare, "unlabeled_loader", lambda name: lambda root, cache_dir: extra)
    whole = make_corpus(partial(toy_source, 40), unlabeled="imdb")
    split = make_corpus(partial(toy_source, 40), unlabeled="imdb", unlabeled_sentences=True)
    assert len(whole.unlabeled) == 2 + 2 and len(split.unlabeled) == 2 + 4  # toy_source's own two + the extra
    assert split.vocab.decode(split.unlabeled[2][0]) == ["a", "great", "movie", "."]
