"""What fine-tuning can be asked for beyond the paper: label budgets (the semi-supervised setting), ULMFiT's
discriminative rates, slanted triangular schedule and gradual unfreezing, and SA/LM pretraining started from
word2vec embeddings; each through the real pipeline, with probe callbacks added the way a user adds one.

Every test here was checked by breaking its behaviour in the source on purpose and watching it fail."""

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from lightning.pytorch.callbacks import Callback

from semiseq import SemiseqError, pipeline, stage
from semiseq.data.corpus import PAD, UNK, stratified
from semiseq.tasks import ClassifierTask, Pretrainer, slanted_triangular

from .conftest import probe, read_json


class Steps(Callback):
    """Before each classifier step: every optimizer group's (name, lr), and the backbone + head tensors."""

    seen: list = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if isinstance(pl_module, ClassifierTask):
            (optimizer,) = trainer.optimizers
            Steps.seen.append((trainer.current_epoch, {g["name"]: g["lr"] for g in optimizer.param_groups},
                               {k: v.detach().clone() for k, v in pl_module.state_dict().items()
                                if k.startswith("net.")}))


@pytest.fixture(autouse=True)
def _clear():
    Steps.seen = []


# --- label budgets -------------------------------------------------------------------------------------------------

def test_stratified_keeps_each_class_share_and_its_seed():
    labels = np.array([0] * 60 + [1] * 30 + [2] * 10)
    rows = stratified(labels, 20, seed=3)
    assert Counter(labels[rows].tolist()) == {0: 12, 1: 6, 2: 2} and len(set(rows)) == 20
    assert np.array_equal(rows, np.sort(rows)) and np.array_equal(rows, stratified(labels, 20, seed=3))
    assert not np.array_equal(rows, stratified(labels, 20, seed=4))
    odd = stratified(labels, 7, seed=0)  # shares 4.2 / 2.1 / 0.7: the largest remainder gets the seventh
    assert Counter(labels[odd].tolist()) == {0: 4, 1: 2, 2: 1}


def test_a_label_budget_cuts_fine_tuning_labels_and_keeps_pretraining_whole(smoke_run, tmp_path):
    """data.num_labels / data.num_val: fine-tuning trains on a stratified subset of the training labels and picks its
    epoch on a subset of the validation labels; pretraining reads every text as without a budget, so every budget
    shares one cache entry; results.json says what was used."""
    full_cfg, full = smoke_run()
    cfg, corpus = smoke_run("data.num_labels=10", "data.num_val=8", "finetune.max_epochs=1")
    train, val = corpus.supervised("train"), corpus.supervised("val")
    assert (len(train), len(val)) == (10, 8) and len(corpus.test) == len(full.test)
    shares = Counter(full.train.labels.tolist())
    assert Counter(train.labels.tolist()) == {c: round(10 * n / len(full.train)) for c, n in shares.items()}
    rows = {tuple(full.train[i][0].tolist()) for i in range(len(full.train))}
    assert all(tuple(train[i][0].tolist()) in rows for i in range(10))  # examples of the training split
    assert corpus.fingerprint() == full.fingerprint() and len(corpus.pretrain_text()) == len(full.pretrain_text())
    sa = pipeline.build_objective(cfg)
    assert pipeline.cache_entry(cfg, corpus, sa) == pipeline.cache_entry(full_cfg, full, sa)
    served = {task: sum(len(b[0]) for b in stage.build_datamodule(cfg, corpus, task).train_dataloader())
              for task in ("classify", "pretrain")}
    assert served == {"classify": 10, "pretrain": len(full.pretrain_text())}
    module = stage.build_datamodule(cfg, corpus, "classify")
    assert sum(len(b[0]) for b in module.val_dataloader()) == 8
    assert sum(len(b[0]) for b in stage.build_datamodule(cfg, corpus, "pretrain").val_dataloader()) == len(full.val)
    r = pipeline.finetune(cfg, corpus, tmp_path / "ft")
    assert (r["num_labels"], r["num_val"]) == (10, 8) == tuple(read_json(tmp_path / "ft" / "results.json")[k]
                                                                for k in ("num_labels", "num_val"))


@pytest.mark.parametrize("override,message", [
    ("data.num_labels=0", r"^data.num_labels=0: the train split of synthetic has 40 labeled examples; pass "
                          r"data.num_labels= a number from 1 to 40, or null for all$"),
    ("data.num_val=100000", r"^data.num_val=100000: the validation split of synthetic has"),
    ("data.num_labels=abc", r"^data.num_labels=abc: the train split"),
])
def test_an_impossible_budget_is_one_clear_line(smoke_run, override, message):
    with pytest.raises(SemiseqError, match=message):
        smoke_run(override)


# --- ULMFiT-style fine-tuning ---------------------------------------------------------------------------------------

def test_discriminative_rates_give_each_layer_group_its_rate(smoke_run, tmp_path):
    """finetune.lr_decay: the head learns at head_lr, the top LSTM layer at lr, each group below lr_decay times
    slower (2 layers: lstm1, lstm0, embedding); every parameter is in exactly one group."""
    cfg, corpus = smoke_run("init=random", "model.backbone.num_layers=2", "finetune.lr=1e-2",
                            "finetune.head_lr=1e-3",
                        "finetune.lr_decay=2", "finetune.max_epochs=1", probe(Steps))
    pipeline.finetune(cfg, corpus, tmp_path / "ft")
    _, rates, _ = Steps.seen[0]
    assert rates == {"head": 1e-3, "lstm1": 1e-2, "lstm0": 5e-3, "embedding": 2.5e-3}
    task = pipeline.build_classifier(cfg, corpus)
    groups = [id(p) for g in task.layer_groups() for p in g]
    assert sorted(groups) == sorted(id(p) for p in task.parameters()) and len(set(groups)) == len(groups)
    assert [id(p) for p in task.layer_groups()[0]] == [id(p) for p in task.net.head.parameters()]


def test_slanted_triangular_schedule_at_given_steps(smoke_run, tmp_path):
    """finetune.schedule=slanted_triangular: the factor of the peak rate is 1/32 at step 0, 1 at the end of the warm-up
    (warmup_fraction of the steps) and falls linearly back to 1/32; the trainer steps the optimizer at those rates."""
    assert slanted_triangular(0, 100) == pytest.approx(1 / 32)
    assert slanted_triangular(10, 100) == 1.0 and slanted_triangular(5, 100) == pytest.approx((1 + 0.5 * 31) / 32)
    assert slanted_triangular(55, 100) == pytest.approx((1 + 0.5 * 31) / 32)
    assert slanted_triangular(100, 100) == pytest.approx(1 / 32)
    cfg, corpus = smoke_run("init=random", "finetune.schedule=slanted_triangular", "finetune.warmup_fraction=0.25",
                        "finetune.lr=1e-2", "finetune.head_lr=null", "finetune.max_epochs=4", probe(Steps))
    pipeline.finetune(cfg, corpus, tmp_path / "ft")
    total = len(Steps.seen)  # 40 labels, batch 16: 3 steps an epoch
    assert total == 12
    for step, (_, rates, _) in enumerate(Steps.seen):
        expected = 1e-2 * slanted_triangular(step, total, 0.25)
        assert rates["head"] == pytest.approx(expected) and rates["embedding"] == pytest.approx(expected), step


def test_gradual_unfreezing_trains_one_more_group_each_epoch(smoke_run, tmp_path):
    """finetune.gradual_unfreezing: epoch 0 changes only the head, epoch 1 also the (one) LSTM layer, epoch 2 also the
    embedding: a frozen tensor is bit for bit what it was."""
    cfg, corpus = smoke_run("init=random", "finetune.gradual_unfreezing=true", "finetune.max_epochs=4",
                        "finetune.lr=1e-2", probe(Steps))
    pipeline.finetune(cfg, corpus, tmp_path / "ft")
    first = {}
    for epoch, _, tensors in Steps.seen:
        first.setdefault(epoch, tensors)
    groups = {"head": "net.head.", "lstm": "net.backbone.lstm.", "embedding": "net.backbone.embedding."}
    changed = {epoch: {name for name, prefix in groups.items()
                       if any(not torch.equal(first[epoch][k], first[epoch + 1][k]) for k in first[epoch]
                              if k.startswith(prefix))} for epoch in (0, 1, 2)}
    assert changed == {0: {"head"}, 1: {"head", "lstm"}, 2: {"head", "lstm", "embedding"}}, changed


# --- pretraining from word2vec embeddings ---------------------------------------------------------------------------

class FirstPretrainingStep(Callback):
    seen: list = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if not isinstance(pl_module, ClassifierTask) and trainer.global_step == 0:
            FirstPretrainingStep.seen.append(pl_module.net.backbone.embedding.weight.detach().clone())


def test_sa_pretraining_can_start_from_word2vec_embeddings(smoke_run, tmp_path):
    """objective.embeddings=word2vec: the word2vec vectors are trained first (their own cache entry), the SA's first
    step starts from them, and the SA's weights get a cache entry of their own."""
    FirstPretrainingStep.seen = []
    cfg, corpus = smoke_run("objective.embeddings=word2vec", "finetune.max_epochs=1", probe(FirstPretrainingStep))
    plain_cfg, _ = smoke_run()
    sa = pipeline.build_objective(cfg)
    assert pipeline.cache_entry(cfg, corpus, sa) != pipeline.cache_entry(plain_cfg, corpus,
                                                                          pipeline.build_objective(plain_cfg))
    r = pipeline.finetune(cfg, corpus, tmp_path / "ft")
    vectors_cfg, _ = smoke_run("objective=word2vec")
    vectors = pipeline.cache_entry(vectors_cfg, corpus, pipeline.build_objective(vectors_cfg))
    assert vectors.is_file() and Path(r["init_checkpoint"]) == pipeline.cache_entry(cfg, corpus, sa)
    weight = torch.load(vectors, weights_only=True)["state_dict"]["net.backbone.embedding.weight"]
    (start,) = FirstPretrainingStep.seen
    assert torch.equal(start, weight)
    key = json.loads(pipeline.cache_entry(cfg, corpus, sa).with_suffix(".json").read_text())["key"]
    assert key["embeddings"] == "word2vec" and key["start"]["objective"] == "word2vec"


def test_frozen_word2vec_embeddings_stay_the_vectors_while_the_sa_pretrains(smoke_run, tmp_path):
    """objective.freeze_embeddings=true: the SA's pretrained embedding is the word2vec vectors to the bit while its
    LSTM trains; a cache entry of its own (the unfrozen one differs); fine-tuning then trains the embedding again."""
    cfg, corpus = smoke_run("objective.embeddings=word2vec", "objective.freeze_embeddings=true",
                            "finetune.max_epochs=1", probe(Steps))
    r = pipeline.finetune(cfg, corpus, tmp_path / "ft")
    vectors_cfg, _ = smoke_run("objective=word2vec")
    vectors = torch.load(pipeline.cache_entry(vectors_cfg, corpus, pipeline.build_objective(vectors_cfg)),
                         weights_only=True)["state_dict"]
    sa = pipeline.build_objective(cfg)
    pretrained = torch.load(pipeline.cache_entry(cfg, corpus, sa), weights_only=True)["state_dict"]
    assert Path(r["init_checkpoint"]) == pipeline.cache_entry(cfg, corpus, sa)
    assert torch.equal(pretrained["net.backbone.embedding.weight"], vectors["net.backbone.embedding.weight"])
    unfrozen_cfg, _ = smoke_run("objective.embeddings=word2vec")
    unfrozen = pipeline.pretrained(unfrozen_cfg, corpus, pipeline.build_objective(unfrozen_cfg), tmp_path / "u")
    assert unfrozen != pipeline.cache_entry(cfg, corpus, sa)  # the same recipe, the embedding training
    moved = torch.load(unfrozen, weights_only=True)["state_dict"]
    assert not torch.equal(moved["net.backbone.embedding.weight"], vectors["net.backbone.embedding.weight"])
    lstm = [k for k in pretrained if k.startswith("net.backbone.lstm.")]
    assert lstm and all(not torch.equal(pretrained[k], moved[k]) for k in lstm)  # both LSTMs trained, differently
    first, last = Steps.seen[0][2], Steps.seen[-1][2]
    assert torch.equal(first["net.backbone.embedding.weight"], vectors["net.backbone.embedding.weight"])
    assert not torch.equal(last["net.backbone.embedding.weight"], first["net.backbone.embedding.weight"])


class EncoderReads(Callback):
    """Every batch of the SA's pretraining and validation: (training?, the batch's tokens, what the encoder read)."""

    seen: list = []

    def on_fit_start(self, trainer, pl_module):
        if isinstance(pl_module, Pretrainer):
            encoder = pl_module.net.encoder
            read = encoder.encode_windows

            def spy(tokens, lengths, window):
                EncoderReads.seen.append((pl_module.training, self.batch, tokens.clone()))
                return read(tokens, lengths, window)

            encoder.encode_windows = spy

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self.batch = batch[0].clone()

    def on_validation_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0):
        self.batch = batch[0].clone()


def test_a_denoising_sa_reads_corrupted_text_while_training_and_clean_text_otherwise(smoke_run, tmp_path):
    """objective.noise=0.5 (Hill et al. 2016): while pretraining, the encoder reads each real token as <unk> with
    probability 0.5 and padding as padding; validation reads the text as it is; the weights get a cache entry of their
    own; joint training's SA loss corrupts alike."""
    EncoderReads.seen = []
    cfg, corpus = smoke_run("objective.noise=0.5", probe(EncoderReads))
    sa = pipeline.build_objective(cfg)
    noisy = pipeline.pretrained(cfg, corpus, sa, tmp_path / "noisy")
    train = [(batch, read) for training, batch, read in EncoderReads.seen if training]
    val = [(batch, read) for training, batch, read in EncoderReads.seen if not training]
    assert len(train) == cfg.pretrain.max_steps and val
    changed = sum(int((batch != read).sum()) for batch, read in train)
    real = sum(int(((batch != PAD) & (batch != UNK)).sum()) for batch, _ in train)
    assert all(torch.equal(read[batch != read], torch.full_like(read[batch != read], UNK)) for batch, read in train)
    assert all(torch.equal(read == PAD, batch == PAD) for batch, read in train)
    assert 0.45 < changed / real < 0.55, (changed, real)  # 2,040 tokens: 4.5 standard deviations each side
    assert all(torch.equal(batch, read) for batch, read in val)
    assert read_json(noisy.with_suffix(".json"))["key"]["noise"] == 0.5
    clean_cfg, _ = smoke_run()
    assert noisy != pipeline.cache_entry(clean_cfg, corpus, pipeline.build_objective(clean_cfg))
    joint_cfg, _ = smoke_run("objective.noise=0.5", "mode=joint")
    assert pipeline.build_classifier(joint_cfg, corpus).aux.noise == 0.5


def test_a_denoising_sa_on_real_valued_steps_is_refused(smoke_run):
    """<unk> is a token: real-valued steps (CIFAR's rows of pixels) have none to replace them with."""
    cfg, corpus = smoke_run("objective.noise=0.5")
    corpus.input_dim = 4
    with pytest.raises(SemiseqError, match=r"^objective.noise=0.5 replaces tokens by <unk>, and this data has "
                                           r"real-valued steps; pass objective.noise=0$"):
        pipeline.build_objective(cfg).task(cfg, corpus)


# --- the epoch's training metrics ----------------------------------------------------------------------------------

class ReadSumsMidEpoch(Callback):
    """Reads the task's running sums after step 2, as semiseq.resume.LastCheckpoint does when it saves mid-epoch."""

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if batch_idx == 2:
            self.mid = pl_module.train_sums.clone()


def test_the_epochs_train_loss_and_accuracy_are_over_all_its_samples():
    """train/loss and train/acc are the epoch's means over every training sample (batches of unequal sizes weighted by
    their size), also when the running sums are read mid-epoch; lr=0 and no dropout keep the network fixed, so the
    expected values come from the network itself, batch by batch."""
    import lightning as L

    from semiseq.data import SequenceDataModule
    from semiseq.data.synthetic import make_corpus

    torch.manual_seed(0)
    corpus = make_corpus(num_unlabeled=0, num_train=45, num_val=10, num_test=10)
    task = ClassifierTask(corpus.num_classes, len(corpus.vocab), backbone={"embed_dim": 8, "hidden_dim": 16},
                          head={"hidden_dim": 8, "dropout": 0.0, "readout": "last"}, lr=0.0)
    dm = SequenceDataModule(corpus, "classify", batch_size=8, seed=0)  # 45 = 5 x 8 + 5: the last batch is smaller
    reader = ReadSumsMidEpoch()
    trainer = L.Trainer(max_epochs=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, num_sanity_val_steps=0, limit_val_batches=0, callbacks=[reader])
    trainer.fit(task, datamodule=dm)
    task.eval()
    with torch.no_grad():
        epoch0 = SequenceDataModule(corpus, "classify", batch_size=8, seed=0).train_dataloader()  # the same order
        batches = [(task(tokens, lengths), labels) for tokens, lengths, labels in epoch0]
    losses = torch.cat([F.cross_entropy(logits, labels, reduction="none") for logits, labels in batches])
    correct = torch.cat([logits.argmax(-1) == labels for logits, labels in batches])
    assert len(losses) == 45
    assert trainer.callback_metrics["train/loss"].item() == pytest.approx(losses.mean().item(), rel=1e-5)
    assert trainer.callback_metrics["train/acc"].item() == pytest.approx(correct.float().mean().item(), abs=1e-6)
    first = sum(len(labels) for _, labels in batches[:3])
    assert reader.mid[2].item() == first and reader.mid[1].item() == correct[:first].sum().item()
