"""Pretraining, weight transfer and fine-tuning through the real pipeline functions, on tiny data."""

import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from lightning.pytorch import Callback

from semiseq import pipeline, stage
from semiseq.data.corpus import Vocab, collate
from semiseq.tasks import ClassifierTask, Pretrainer
from semiseq.transfer import TransferError, load_backbone

from . import test_data_cifar
from .conftest import ROOT, make_objective, probe


@pytest.fixture
def smoke(make_cfg):
    cfg = make_cfg("experiment=smoke", "logger=none", "callbacks=none")
    return cfg, pipeline.build_corpus(cfg)


@pytest.mark.parametrize("objective,tbptt,softmax", [("sa", None, "full"), ("lm", None, "full"), ("sa", 4, "full"),
                                                     ("lm", 4, "full"), ("sa", None, "adaptive")])
def test_pretraining_loss_falls(smoke, objective, tbptt, softmax, tmp_path):
    cfg, corpus = smoke
    cfg.pretrain.tbptt_steps = tbptt  # smoke sequences have 3-12 tokens: up to 4 windows
    cfg.model.output.softmax, cfg.model.output.cutoffs = softmax, [5, 8]  # 11 tokens: a head and two tail clusters
    cfg.pretrain.max_steps = 40
    cfg.pretrain.val_every_n_steps = 40
    cfg.pretrain.lr = 1e-2
    torch.manual_seed(0)
    task = make_objective(objective).task(cfg, corpus)
    assert task.net.adaptive == (softmax == "adaptive")
    # inference_mode=False: metric states made in `validate` must stay updatable in `fit`
    trainer = stage.build_trainer(cfg, tmp_path, [], [], max_steps=40, enable_checkpointing=False,
                                     inference_mode=False)
    dm = stage.build_datamodule(cfg, corpus, "pretrain")
    before = trainer.validate(task, dm, verbose=False)[0]["val/loss"]
    trainer.fit(task, dm)
    after = trainer.validate(task, dm, verbose=False)[0]["val/loss"]
    assert before > 2.0 and after < before - 0.3, (before, after)


def test_pretrain_checkpoint_loads_safely_with_its_vocabulary(smoke, tmp_path):
    cfg, corpus = smoke
    path = make_objective("sa").pretrain(cfg, corpus, tmp_path / "pre")
    task = Pretrainer.load_from_checkpoint(path, weights_only=True)
    assert task.meta["vocab"] == corpus.vocab.itos and task.hparams.objective == "sa"
    ckpt = torch.load(path, weights_only=True)
    assert ckpt["semiseq"] == {"kind": "sa", "max_len": None, **corpus.meta()}
    assert ckpt["semiseq"]["tokenizer"] == {"level": "word", "lowercase": True, "punctuation": True}


@pytest.fixture
def sa_checkpoint(smoke, tmp_path):
    cfg, corpus = smoke
    return make_objective("sa").pretrain(cfg, corpus, tmp_path / "pre")


def test_init_sa_copies_embedding_and_lstm_exactly(smoke, sa_checkpoint):
    cfg, corpus = smoke
    clf = pipeline.build_classifier(cfg, corpus)
    assert load_backbone(clf, sa_checkpoint, corpus.vocab.itos, corpus.name) == 5  # embedding + 4 LSTM tensors
    saved = torch.load(sa_checkpoint, weights_only=True)["state_dict"]
    for name, tensor in clf.state_dict().items():
        if name.startswith("net.backbone."):
            assert torch.equal(tensor, saved[name]), name


def test_vocabulary_mismatch_is_one_clear_error(smoke, sa_checkpoint):
    cfg, corpus = smoke
    clf = pipeline.build_classifier(cfg, corpus)
    other = Vocab(corpus.vocab.itos[:3] + ["the", "cat"] + corpus.vocab.itos[5:])
    with pytest.raises(TransferError, match=r"vocabulary mismatch.*'imdb'.*first differ at id 3 \('s00' vs 'the'\)"):
        load_backbone(clf, sa_checkpoint, other.itos, "imdb")


def test_shape_mismatch_names_the_tensor(smoke, sa_checkpoint, make_cfg):
    cfg, corpus = smoke
    wide = pipeline.build_classifier(make_cfg("experiment=smoke", "model.backbone.hidden_dim=24"), corpus)
    with pytest.raises(TransferError, match=r"shape mismatch for net.backbone.lstm.weight_ih_l0"):
        load_backbone(wide, sa_checkpoint, corpus.vocab.itos)


class Payload:  # an arbitrary object that must never be unpickled from a checkpoint
    pass


@pytest.mark.parametrize("content", ["pickled", "truncated", "foreign", "missing"])
def test_unsafe_or_broken_checkpoints_are_refused(smoke, sa_checkpoint, tmp_path, content):
    cfg, corpus = smoke
    bad = tmp_path / "bad.ckpt"
    if content == "pickled":
        ckpt = torch.load(sa_checkpoint, weights_only=True)
        ckpt["extra"] = Payload()
        torch.save(ckpt, bad)
    elif content == "truncated":
        bad.write_bytes(Path(sa_checkpoint).read_bytes()[:1000])
    elif content == "foreign":
        torch.save({"state_dict": {}}, bad)
    message = {"pickled": "holds a pickled Python object", "truncated": "is not a readable PyTorch checkpoint",
               "foreign": "not written by semiseq", "missing": "does not exist"}[content]
    with pytest.raises(TransferError, match=message):
        load_backbone(pipeline.build_classifier(cfg, corpus), bad, corpus.vocab.itos)


def recomputed_test_metrics(checkpoint: str, corpus, bf16: bool = False) -> tuple[float, float]:
    """(test accuracy, mean test cross-entropy) of a saved classifier on the whole test split, computed here in
    one batch without Lightning (``bf16``: under CPU bf16 autocast, as trainer.precision=bf16-mixed runs it)."""
    task = ClassifierTask.load_from_checkpoint(checkpoint, weights_only=True).eval()
    tokens, lengths, labels = collate([corpus.test[i] for i in range(len(corpus.test))])
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        logits = task(tokens, lengths).float()
    return (logits.argmax(-1) == labels).double().mean().item(), F.cross_entropy(logits, labels).item()


@pytest.mark.parametrize("init", ["random", "checkpoint"])
def test_finetune_from_random_and_from_checkpoint(smoke, sa_checkpoint, tmp_path, init):
    cfg, corpus = smoke
    if init == "checkpoint":
        cfg.init.checkpoint = str(sa_checkpoint)
    else:
        cfg.init.name = "random"
    r = pipeline.finetune(cfg, corpus, tmp_path / "ft")
    assert r["tensors_loaded"] == (5 if init == "checkpoint" else 0)
    assert r["init_checkpoint"] == (str(sa_checkpoint) if init == "checkpoint" else "")
    # the numbers reported are those of the best validation epoch's checkpoint on the test split
    acc, loss = recomputed_test_metrics(r["best_checkpoint"], corpus)
    assert r["test/acc"] == pytest.approx(acc, abs=1e-6) and r["test/loss"] == pytest.approx(loss, rel=1e-5)
    assert r["test/error"] == pytest.approx(100 * (1 - r["test/acc"]), abs=1e-3)
    assert Path(r["best_checkpoint"]).is_file() and (tmp_path / "ft" / "results.json").is_file()
    clf = ClassifierTask.load_from_checkpoint(r["best_checkpoint"], weights_only=True)
    assert clf.meta["vocab"] == corpus.vocab.itos
    # the tested epoch is kept as weights alone; the optimiser's state is last.ckpt's, the point a resume starts from
    best, last = (torch.load(r[k], weights_only=True) for k in ("best_checkpoint", "last_checkpoint"))
    assert "optimizer_states" not in best and "optimizer_states" in last and best["state_dict"].keys()


@pytest.mark.parametrize("objective", ["sa", "lm"])
def test_cifar_rows_pretrain_with_l2_then_finetune(make_cfg, tmp_path, objective):
    root = test_data_cifar.write_files(tmp_path / "cifar")
    cfg = make_cfg("data=cifar10_rows", f"data.root={root}", f"objective={objective}", "model.backbone.embed_dim=8",
                   "model.backbone.hidden_dim=16", "model.head.hidden_dim=16", "logger=none", "callbacks=none",
                   "pretrain.lr=1e-2",
                   "pretrain.max_steps=30", "pretrain.val_every_n_steps=30", "pretrain.batch_size=4",
                   "finetune.max_epochs=2", "finetune.batch_size=4", "trainer.enable_progress_bar=false")
    corpus = pipeline.build_corpus(cfg)
    assert corpus.input_dim == 96 and corpus.train[0][0].shape == (32, 96)
    torch.manual_seed(0)
    task = make_objective(objective).task(cfg, corpus)
    trainer = stage.build_trainer(cfg, tmp_path, [], [], max_steps=30, enable_checkpointing=False,
                                     inference_mode=False)
    dm = stage.build_datamodule(cfg, corpus, "pretrain")
    before = trainer.validate(task, dm, verbose=False)[0]["val/loss"]  # summed squared error per row
    trainer.fit(task, dm)
    after = trainer.validate(task, dm, verbose=False)[0]["val/loss"]
    assert after < 0.8 * before, (before, after)
    r = pipeline.finetune(cfg, corpus, tmp_path / "ft")  # pretrains into the cache first
    assert r["tensors_loaded"] == 6  # the linear input layer's weight and bias + 4 LSTM tensors
    acc, loss = recomputed_test_metrics(r["best_checkpoint"], corpus)  # the best epoch's weights were tested
    assert r["test/acc"] == pytest.approx(acc, abs=1e-6) and r["test/loss"] == pytest.approx(loss, rel=1e-5)


def test_an_image_checkpoint_refuses_text_clearly(make_cfg, tmp_path):
    from semiseq import SemiseqError, inference

    root = test_data_cifar.write_files(tmp_path / "cifar")
    cfg = make_cfg("data=cifar10_rows", f"data.root={root}", "init=random", "model.backbone.embed_dim=8",
                   "model.backbone.hidden_dim=16",
                   "model.head.hidden_dim=16", "logger=none", "callbacks=none", "finetune.max_epochs=1",
                   "trainer.enable_progress_bar=false")
    r = pipeline.finetune(cfg, pipeline.build_corpus(cfg), tmp_path / "ft")
    model = inference.load(r["best_checkpoint"])
    with pytest.raises(SemiseqError, match="reads pixel rows .*not text"):
        model.predict(["an image?"])


class DenormalsFlushed(Callback):
    seen: list = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):  # 1e-40 is denormal in float32
        DenormalsFlushed.seen.append((torch.tensor([1e-30]) * torch.tensor([1e-10])).item() == 0.0)


def test_every_run_trains_with_denormal_floats_flushed(make_cfg):
    """Back-propagated through long texts, a random-init LSTM's gradients vanish into denormal floats, which an
    x86 CPU computes many times slower (bench/denormals.py): pipeline.run flushes them in every stage."""
    if not torch.set_flush_denormal(False):
        pytest.skip("this CPU cannot flush denormal floats")
    DenormalsFlushed.seen = []
    pipeline.run(make_cfg("experiment=smoke", "logger=none", "callbacks=none", "finetune.max_epochs=1",
                          probe(DenormalsFlushed)))
    assert len(DenormalsFlushed.seen) > 1 and all(DenormalsFlushed.seen)  # pretraining's steps and fine-tuning's


def test_the_denormals_benchmark_measures_both_modes_on_the_same_weights():
    done = subprocess.run([sys.executable, str(ROOT / "bench" / "denormals.py"), "--steps", "2", "--length", "40",
                           "--batch", "4", "--embed", "8", "--hidden", "8", "--vocab", "50"],
                          capture_output=True, text=True, timeout=120)
    if "cannot flush" in done.stderr:
        pytest.skip(done.stderr.strip())
    assert done.returncode == 0, done.stderr[-2000:]
    rows = [line.split() for line in done.stdout.splitlines() if line.startswith(("semiseq", "bare hand"))]
    assert [r[0] for r in rows] == ["semiseq", "bare"] and all(float(r[-1]) == 0.0 for r in rows)  # no weight moved
