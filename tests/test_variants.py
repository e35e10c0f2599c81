"""The paper's variants: linear label gain, word2vec init, joint training (unit checks + real runs)."""

import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from lightning.pytorch.callbacks import Callback

import semiseq
from semiseq import pipeline, stage
from semiseq.nets import Backbone, Classifier, linear_gain_loss
from semiseq.objectives import word2vec
from semiseq.tasks import ClassifierTask

from .conftest import probe


def test_linear_gain_weights_steps_by_position_over_the_real_length():
    torch.manual_seed(0)
    logits, labels = torch.randn(2, 5, 3), torch.tensor([1, 2])
    lengths = torch.tensor([5, 3])
    ce = F.cross_entropy(logits.flatten(0, 1), labels.repeat_interleave(5), reduction="none").view(2, 5)
    row0 = (ce[0] * torch.tensor([0, 1, 2, 3, 4]) / 4).sum() / (10 / 4)  # t/(L-1), L=5
    row1 = (ce[1, :3] * torch.tensor([0, 0.5, 1])).sum() / 1.5  # L=3; padded steps 3, 4 weigh nothing
    assert torch.allclose(linear_gain_loss(logits, labels, lengths), (row0 + row1) / 2)
    garbage = logits.clone()
    garbage[1, 3:] = 100.0  # what padded steps output cannot matter
    assert torch.allclose(linear_gain_loss(garbage, labels, lengths), (row0 + row1) / 2)
    one = linear_gain_loss(logits[:1, :1], labels[:1], torch.tensor([1]))  # a one-step sequence: its only step
    assert torch.allclose(one, ce[0, 0])


def test_linear_gain_predicts_from_the_last_step():
    net = Classifier(Backbone(10, 4, 8), 3).eval()
    tokens, lengths = torch.randint(3, 10, (4, 6)), torch.tensor([6, 2, 4, 1])
    steps = net.step_logits(tokens)
    assert torch.allclose(net(tokens, lengths), steps[torch.arange(4), lengths - 1], atol=1e-6)


@pytest.fixture
def smoke(make_cfg):
    return lambda *o: make_cfg("experiment=smoke", "callbacks=none", *o)


def test_word2vec_init_copies_its_vectors_into_the_embedding_only(smoke, tmp_path):
    cfg = smoke("objective=word2vec", "logger=none")
    corpus = pipeline.build_corpus(cfg)
    path = pipeline.init_checkpoint(cfg, corpus, tmp_path)
    ckpt = torch.load(path, weights_only=True)
    weight = ckpt["state_dict"]["net.backbone.embedding.weight"]
    assert ckpt["semiseq"]["kind"] == "word2vec" and weight.shape == (len(corpus.vocab), cfg.model.backbone.embed_dim)
    assert weight[0].abs().sum() == 0  # PAD
    again = word2vec.embeddings(corpus, cfg.model.backbone.embed_dim, epochs=cfg.objective.epochs,
                                seed=cfg.pretrain.seed)
    assert torch.equal(weight, again)  # one worker + a seed: reproducible
    task = pipeline.build_classifier(cfg, corpus)
    lstm_before = task.net.backbone.lstm.weight_hh_l0.clone()
    assert semiseq.transfer.load_backbone(task, path, corpus.vocab.itos, corpus.name) == 1
    assert torch.equal(task.net.backbone.embedding.weight.detach(), weight)
    assert torch.equal(task.net.backbone.lstm.weight_hh_l0, lstm_before)
    assert pipeline.init_checkpoint(cfg, corpus, tmp_path / "again") == path  # cached


def test_word2vec_vectors_reflect_cooccurrence():
    """Tokens that always appear together get closer vectors than tokens that never do."""
    from semiseq.data.corpus import Corpus, Sequences, Vocab

    rng = torch.Generator().manual_seed(0)
    texts = []
    for _ in range(600):  # words 3-6 co-occur with each other, 7-10 with each other
        group = 3 if torch.rand(1, generator=rng) < 0.5 else 7
        texts.append((group + torch.randint(0, 4, (8,), generator=rng)).tolist())
    seqs = Sequences.from_lists(texts)
    empty = Sequences.from_lists([[3]], labels=[0])
    corpus = Corpus("toy", Vocab(["<pad>", "<unk>", "<eos>", *map(str, range(3, 11))]), empty, empty, empty, seqs,
                    ["a"], {})
    w = F.normalize(word2vec.embeddings(corpus, 16, epochs=10), dim=1)
    within, across = (w[3] @ w[4] + w[7] @ w[8]) / 2, (w[3] @ w[7] + w[4] @ w[8]) / 2
    assert within > across + 0.3, (within, across)


def test_joint_task_shares_one_backbone_and_adds_the_weighted_objective(smoke):
    cfg = smoke("mode=joint", "mode.weight=0.5", "logger=none")
    corpus = pipeline.build_corpus(cfg)
    task = pipeline.build_classifier(cfg, corpus)
    assert task.aux.backbone is task.net.backbone and task.hparams.joint["objective"] == "sa"
    optimizer = task.configure_optimizers()
    assert sum(len(g["params"]) for g in optimizer.param_groups) == len(list(task.parameters()))
    dm = stage.build_datamodule(cfg, corpus, "joint")
    batch, _, _ = next(iter(dm.train_dataloader()))  # CombinedLoader: (batch, batch_idx, dataloader_idx)
    assert set(batch) == {"labeled", "unlabeled"} and len(batch["unlabeled"][0]) == cfg.mode.text_batch_size

    class _Trainer:  # training_step reads log_every_n_steps only
        log_every_n_steps, global_step = 1000, 0

    task.trainer = _Trainer()  # type: ignore[assignment]
    torch.manual_seed(0)
    task.train(False)  # no dropout: the parts can be recomputed exactly
    loss = task.training_step(batch, 0)
    tokens, lengths, labels = batch["labeled"]
    (aux,) = task.aux.window_losses(*batch["unlabeled"][:2], 10**6)
    expected = F.cross_entropy(task.net(tokens, lengths), labels) + 0.5 * aux / task.aux.num_targets(batch[
        "unlabeled"][1])
    assert torch.allclose(loss, expected, atol=1e-6)


class JointStart(Callback):
    """Records the joint objective network's tensors (backbone + output layer) as training starts."""

    seen: list = []

    def on_train_start(self, trainer, pl_module):
        if isinstance(pl_module, ClassifierTask):  # not the pretraining the cache runs first
            JointStart.seen.append({k: v.detach().clone() for k, v in pl_module.aux.state_dict().items()})


@pytest.mark.parametrize("init", ["init=pretrained", "init=sa"])
def test_joint_training_from_pretrained_weights_starts_where_pretraining_left_it(smoke, init):
    """mode=joint init=pretrained (SiATL): the classifier starts from the objective's cached weights, and the loss
    joint training keeps on starts from the pretrained output layer too; mode=joint alone stays from scratch."""
    JointStart.seen = []
    cfg = smoke("mode=joint", init, "logger=none", probe(JointStart))
    assert cfg.init.name == "pretrained" and cfg.objective.name == "sa"
    results = pipeline.finetune(cfg, pipeline.build_corpus(cfg), Path(cfg.paths.output_dir))
    ckpt = torch.load(results["init_checkpoint"], weights_only=True)["state_dict"]
    pretrained = {k.removeprefix("net."): v for k, v in ckpt.items()}
    (start,) = JointStart.seen
    assert set(start) == set(pretrained) and any(k.startswith("output.") for k in start)
    for name, tensor in start.items():
        assert torch.equal(tensor, pretrained[name]), name
    assert results["init"] == "sa" and results["mode"] == "joint" and results["tensors_loaded"] == len(pretrained)

    JointStart.seen = []
    scratch = smoke("mode=joint", "logger=none", probe(JointStart), "paths.output_dir=" + cfg.paths.output_dir + "2")
    assert scratch.init.name == "random"  # the paper's joint training: instead of pretraining
    results = pipeline.finetune(scratch, pipeline.build_corpus(scratch), Path(scratch.paths.output_dir))
    assert results["init"] == "random" and results["tensors_loaded"] == 0
    output = [k for k in start if k.startswith("output.")]
    assert not any(torch.equal(JointStart.seen[0][k], pretrained[k]) for k in output)


def test_joint_training_at_weight_zero_trains_the_classifier_as_fine_tuning_does(smoke):
    """mode=joint init=pretrained mode.weight=0 is fine-tuning from the same weights on the same labeled batches
    (without dropout: the objective's batches draw no random numbers then), to the same weights."""
    weights, base = {}, smoke().paths.output_dir
    for name, extra in (("finetune", []), ("joint", ["mode=joint", "init=pretrained", "mode.weight=0"])):
        cfg = smoke("logger=none", "model.head.dropout=0", *extra, f"paths.output_dir={base}-{name}")
        results = pipeline.finetune(cfg, pipeline.build_corpus(cfg), Path(cfg.paths.output_dir))
        assert results["init"] == "sa" and results["mode"] == name
        weights[name] = torch.load(results["last_checkpoint"], weights_only=True)["state_dict"]
    assert {k for k in weights["joint"] if k.startswith("net.")} == set(weights["finetune"])
    for name, tensor in weights["finetune"].items():
        assert torch.equal(weights["joint"][name], tensor), name


def test_joint_training_refuses_pretrained_weights_with_another_output_layer(smoke, tmp_path):
    cfg = smoke("mode=joint", "init=pretrained", "logger=none")
    corpus = pipeline.build_corpus(cfg)
    path = pipeline.init_checkpoint(cfg, corpus, tmp_path)  # pretrained with the full softmax
    other = pipeline.build_classifier(smoke("mode=joint", "model.output.softmax=adaptive", "model.output.cutoffs=[4]",
                                            "logger=none"), corpus)
    with pytest.raises(semiseq.transfer.TransferError, match=r"lacks the output layer .*same model.output"):
        semiseq.transfer.load_backbone(other, path, corpus.vocab.itos, corpus.name)


def test_joint_and_linear_gain_runs_end_to_end(smoke, tmp_path):
    cfg = smoke("mode=joint", "model.head.readout=linear_gain", "logger=csv")
    assert pipeline.init_checkpoint(cfg, None, tmp_path) is None  # joint training starts from scratch
    val = pipeline.run(cfg)
    run_dir = Path(cfg.paths.output_dir)
    results = json.loads((run_dir / "results.json").read_text())
    assert results["mode"] == "joint" and results["readout"] == "linear_gain" and val == results["val/acc_best"]
    header = (run_dir / "csv" / "version_0" / "metrics.csv").read_text().splitlines()[0].split(",")
    assert {"train/sa_loss", "train/classifier_loss", "train/loss", "train/acc", "val/acc"} <= set(header)
    model = semiseq.load(results["best_checkpoint"])  # the joint checkpoint is a classifier for inference
    assert model.kind == "classifier" and len(model.predict(["a b c"])) == 1
    task = ClassifierTask.load_from_checkpoint(results["best_checkpoint"], weights_only=True)
    assert task.aux is not None and task.hparams.head["readout"] == "linear_gain"
