"""The paper's method, each behaviour checked where it can break: through the real pipeline (pipeline.pretrain,
pipeline.finetune) with probe callbacks added through the config's `callbacks` group, the way a user adds one.

Every test here was checked by breaking its behaviour in the source on purpose and watching it fail."""

import copy
import json
import os
import shutil
from enum import Enum
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from lightning.pytorch.callbacks import Callback
from omegaconf import OmegaConf

import semiseq
from semiseq import pipeline
from semiseq.data.corpus import PAD, collate
from semiseq.nets import linear_gain_loss
from semiseq.objectives.lm import LanguageModel, teacher_forcing
from semiseq.objectives.sa import SequenceAutoencoder
from semiseq.tasks import ClassifierTask, Pretrainer

from .conftest import make_objective, probe


class FirstBatchBackbone(Callback):
    """Records the task's backbone tensors as the first training step of each stage starts."""

    seen: list = []

    def __init__(self):
        self.done = False

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if not self.done:
            self.done = True
            FirstBatchBackbone.seen.append((type(pl_module).__name__, {
                k: v.detach().clone() for k, v in pl_module.state_dict().items() if k.startswith("net.backbone.")}))


class StepLosses(Callback):
    """Before each classifier step: the linear-gain and last-step losses of the batch at the current weights;
    after it: the loss the step trained on."""

    seen: list = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if not isinstance(pl_module, ClassifierTask):  # the pretraining an objective=sa fine-tuning starts
            return
        tokens, lengths, labels = batch
        with torch.no_grad():
            self.gain = linear_gain_loss(pl_module.net.step_logits(tokens), labels, lengths).item()
            self.last = F.cross_entropy(pl_module.net(tokens, lengths), labels).item()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if isinstance(pl_module, ClassifierTask):
            StepLosses.seen.append((self.gain, self.last, float(outputs["loss"])))


class PooledLosses(Callback):
    """Before each classifier step: the batch's loss computed by hand from concat pooling, each text run through the
    LSTM alone without padding (its last output, the max and the mean over its outputs, side by side); after it: the
    loss the step trained on."""

    seen: list = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if not isinstance(pl_module, ClassifierTask):
            return
        tokens, lengths, labels = batch
        net = pl_module.net
        with torch.no_grad():
            rows = []
            for row, n in zip(tokens, lengths.tolist()):
                out = net.backbone.lstm(net.backbone.embedding(row[None, :n]))[0][0]  # [n, H]
                rows.append(torch.cat([out[-1], out.max(0).values, out.mean(0)]))
            self.expected = F.cross_entropy(net.head(torch.stack(rows)), labels).item()
            self.padded = bool((lengths < tokens.size(1)).any())

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if isinstance(pl_module, ClassifierTask):
            PooledLosses.seen.append((self.expected, float(outputs["loss"]), self.padded))


class OptimizerGroups(Callback):
    """Records each optimizer parameter group's learning rate and parameters, and which parameters are the head."""

    seen: list = []

    def on_train_start(self, trainer, pl_module):
        (optimizer,) = trainer.optimizers
        groups = [(g["lr"], [id(p) for p in g["params"]]) for g in optimizer.param_groups]
        OptimizerGroups.seen.append((groups, {id(p) for p in pl_module.net.head.parameters()},
                                     {id(p) for p in pl_module.parameters()}))


class GradNorm(Callback):
    """Records the total gradient norm each optimizer step applies (after any clipping)."""

    seen: list = []

    def on_before_optimizer_step(self, trainer, pl_module, optimizer):
        grads = [p.grad.detach().flatten() for p in pl_module.parameters() if p.grad is not None]
        GradNorm.seen.append(torch.linalg.vector_norm(torch.cat(grads)).item())


class PretrainingStages(Callback):
    """For each pretraining stage: its whole network as its first step starts, its learning rate, and every text
    its training batches hold."""

    seen: list = []

    def on_train_start(self, trainer, pl_module):
        if isinstance(pl_module, Pretrainer):
            (optimizer,) = trainer.optimizers
            state = {k: v.detach().clone() for k, v in pl_module.state_dict().items()}
            PretrainingStages.seen.append({"state": state, "lr": optimizer.param_groups[0]["lr"], "texts": [],
                                           "batches": 0})

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if isinstance(pl_module, Pretrainer):
            tokens, lengths, _ = batch
            PretrainingStages.seen[-1]["texts"] += [tuple(row[:n].tolist()) for row, n in zip(tokens, lengths)]
            PretrainingStages.seen[-1]["batches"] += 1


@pytest.fixture(autouse=True)
def _clear_probes():
    for cls in (FirstBatchBackbone, StepLosses, OptimizerGroups, GradNorm, PretrainingStages):
        cls.seen = []


def test_sa_decoder_starts_from_the_encoder_state(smoke_run, tmp_path):
    """SA-LSTM: the decoder reconstructs the text from the encoder's final state. A trained SA reconstructs far better
    from that state than the same decoder started from zeros (a language model on the same weights), and its
    losses (window_losses, with and without truncated BPTT, and forward) are those of a decoder started there."""
    cfg, corpus = smoke_run("pretrain.max_steps=300", "pretrain.val_every_n_steps=300", "pretrain.lr=1e-2",
                        "model.backbone.hidden_dim=32")
    sa = Pretrainer.load_from_checkpoint(make_objective("sa").pretrain(cfg, corpus, tmp_path / "pre"),
                                         weights_only=True).eval().net
    assert type(sa) is SequenceAutoencoder
    lm = LanguageModel(sa.backbone)  # the same weights, started from zeros
    lm.load_state_dict(sa.state_dict())
    tokens, lengths, _ = collate([corpus.val[i] for i in range(len(corpus.val))])
    inputs, targets = teacher_forcing(tokens, lengths)
    count = sa.num_targets(lengths).item()
    with torch.no_grad():
        from_state = sa.nll(sa.backbone.scan(inputs, sa.backbone.encode(tokens, lengths))[0], targets).item()
        from_zeros = sa.nll(sa.backbone.scan(inputs)[0], targets).item()
        (whole,) = sa.window_losses(tokens, lengths, tokens.size(1) + 1)
        windows = sum(sa.window_losses(tokens, lengths, 4))  # truncated BPTT: the state goes on, detached
        logits, forward_targets = sa(tokens, lengths)
        real = forward_targets != PAD
        forward = F.cross_entropy(logits[real], forward_targets[real], reduction="sum").item()
        (lm_loss,) = lm.window_losses(tokens, lengths, tokens.size(1) + 1)
    for name, loss in {"window_losses": whole.item(), "window_losses(4)": windows.item(), "forward": forward}.items():
        assert loss == pytest.approx(from_state, rel=1e-5), (name, loss / count, from_state / count)
    assert lm_loss.item() == pytest.approx(from_zeros, rel=1e-5)
    # measured over seeds 0-3: 1.09-1.20 nats per token from the encoder state vs 2.7-3.3 from zeros (chance: 2.4)
    assert from_state / count < 1.5 and from_state < 0.6 * from_zeros, (from_state / count, from_zeros / count)


@pytest.mark.parametrize("objective", ["sa", "lm"])
def test_the_adaptation_stage_continues_the_whole_pretrained_network_on_the_training_texts(smoke_run, tmp_path,
                                                                                           objective):
    """objective.adapt_steps (ULMFiT's target-task stage): a fine-tuning pretrains the SA (LM) on all the text into
    the entry the one without the stage uses, then continues that whole network (output layer too) for adapt_steps
    steps at adapt_lr on the training texts alone (none of the other unlabeled text), and fine-tunes from the
    result."""
    cfg, corpus = smoke_run(f"objective={objective}", "objective.adapt_steps=6", "objective.adapt_lr=0.02",
                            "pretrain.lr=3e-3", probe(PretrainingStages))
    result = pipeline.finetune(cfg, corpus, tmp_path / "ft")
    general, adapted = PretrainingStages.seen
    plain, _ = smoke_run(f"objective={objective}", "pretrain.lr=3e-3")
    shared = pipeline.cache_entry(plain, corpus, pipeline.build_objective(plain))
    assert shared.is_file() and Path(result["init_checkpoint"]) != shared
    pretrained = torch.load(shared, weights_only=True)["state_dict"]
    assert adapted["state"].keys() == pretrained.keys() and any(k.startswith("net.output.") for k in pretrained)
    for name, tensor in pretrained.items():
        assert torch.equal(adapted["state"][name], tensor), name
    assert (general["lr"], adapted["lr"]) == (3e-3, 0.02)
    train = {tuple(corpus.train[i][0].tolist()) for i in range(len(corpus.train))}
    others = {tuple(corpus.unlabeled[i][0].tolist()) for i in range(len(corpus.unlabeled))} - train
    assert adapted["batches"] == 6 and set(adapted["texts"]) == train  # 40 texts, batches of 32: every one
    assert others and others & set(general["texts"])
    steps = json.loads((tmp_path / "ft" / f"pretrain-{objective}-adapted" / "results.json").read_text())["steps"]
    assert steps == 6
    final = torch.load(result["init_checkpoint"], weights_only=True)["state_dict"]
    assert not torch.equal(final["net.output.weight"], pretrained["net.output.weight"])  # adapted: it moved


def test_init_sa_fine_tuning_starts_from_the_pretrained_backbone(smoke_run, tmp_path):
    """objective=sa: the first training step of the fine-tuning starts from exactly the pretrained checkpoint's
    embedding and LSTM tensors (not from a classifier built afresh after the weights were loaded)."""
    cfg, corpus = smoke_run("objective=sa", probe(FirstBatchBackbone))
    result = pipeline.finetune(cfg, corpus, tmp_path / "ft")  # pretrains into the cache first
    saved = torch.load(result["init_checkpoint"], weights_only=True)["state_dict"]
    saved = {k: v for k, v in saved.items() if k.startswith("net.backbone.")}
    (pretraining, start), (finetuning, first) = FirstBatchBackbone.seen
    assert (pretraining, finetuning) == ("Pretrainer", "ClassifierTask") and result["tensors_loaded"] == len(saved) == 5
    assert first.keys() == saved.keys()
    for name, tensor in saved.items():
        assert torch.equal(first[name], tensor), name
        assert not torch.equal(start[name], tensor), name  # pretraining moved it: the check can tell


def test_linear_gain_readout_is_what_the_classifier_trains_on(smoke_run, tmp_path):
    """model.head.readout=linear_gain: each fine-tuning step's loss is nets.linear_gain_loss of the batch (the label at
    every step, weighted t/(T-1)), not the last step's cross-entropy; on a 2-layer network."""
    cfg, corpus = smoke_run("init=random", "model.backbone.num_layers=2", "model.head.readout=linear_gain",
                            "model.head.dropout=0", "finetune.max_epochs=1", probe(StepLosses))
    # no dropout: the probe sees the step's own numbers
    assert cfg.model.backbone.dropout == cfg.model.backbone.embed_dropout == 0
    pipeline.finetune(cfg, corpus, tmp_path / "ft")
    assert len(StepLosses.seen) == 3  # 40 training texts, batches of 16
    for gain, last, trained in StepLosses.seen:
        # the same float32 computation: equal to rounding; the readouts differ by 4e-4 here (random init, ~log 2 each)
        assert trained == pytest.approx(gain, rel=1e-6), (gain, last, trained)
        assert abs(trained - last) > 1e-4, (gain, last, trained)


def test_concat_pool_readout_is_what_the_classifier_trains_and_predicts_on(smoke_run, tmp_path):
    """model.head.readout=concat_pool: each fine-tuning step's loss is the cross-entropy of the head on [last; max;
    mean] of each text's own LSTM outputs (padding read by none of the three), and the run's test error is the one
    that readout gives; on a 2-layer network."""
    cfg, corpus = smoke_run("init=random", "model.backbone.num_layers=2", "model.head.readout=concat_pool",
                            "model.head.dropout=0", "finetune.max_epochs=1", probe(PooledLosses))
    assert cfg.model.backbone.dropout == cfg.model.backbone.embed_dropout == 0
    result = pipeline.finetune(cfg, corpus, tmp_path / "ft")
    assert result["readout"] == "concat_pool" and len(PooledLosses.seen) == 3
    assert any(padded for *_, padded in PooledLosses.seen)  # batches with texts of several lengths
    for expected, trained, _ in PooledLosses.seen:
        assert trained == pytest.approx(expected, rel=1e-5), (expected, trained)
    task = ClassifierTask.load_from_checkpoint(result["best_checkpoint"], weights_only=True)
    assert task.net.head[1].in_features == 3 * cfg.model.backbone.hidden_dim
    test = corpus.supervised("test")
    tokens, lengths, labels = collate([test[i] for i in range(len(test))])
    with torch.no_grad():
        wrong = (task.net.eval()(tokens, lengths).argmax(-1) != labels).float().mean().item()
    assert result["test/error"] == pytest.approx(100 * wrong, abs=1e-4)


@pytest.mark.parametrize("mode", ["init=random", "mode=joint"])
def test_head_lr_is_the_learning_rate_of_exactly_the_head(smoke_run, tmp_path, mode):
    """finetune.head_lr: the optimizer the trainer steps gives the classifier head's parameters head_lr, and every
    other parameter (embedding, LSTM; joint training's output layer) finetune.lr."""
    cfg, corpus = smoke_run(mode, "finetune.lr=3e-3", "finetune.head_lr=1e-4", "finetune.max_epochs=1",
                            probe(OptimizerGroups))
    pipeline.finetune(cfg, corpus, tmp_path / "ft")
    ((groups, head, every),) = OptimizerGroups.seen
    params = [p for _, ps in groups for p in ps]
    assert len(params) == len(set(params)) and set(params) == every  # each parameter in one group
    by_lr = {}
    for lr, ps in groups:
        by_lr.setdefault(lr, set()).update(ps)
    assert by_lr == {1e-4: head, 3e-3: every - head}, {lr: len(ps) for lr, ps in by_lr.items()}
    assert head and every - head


def test_pretrain_grad_clip_bounds_the_gradient_norm(smoke_run, tmp_path):
    """pretrain.grad_clip: every pretraining step applies gradients of total norm at most the clip (the
    pretrainer clips them itself: it optimises manually); without a clip the same steps' norms are far larger."""
    clip = 1e-3
    cfg, corpus = smoke_run(f"pretrain.grad_clip={clip}", "pretrain.max_steps=4", "pretrain.val_every_n_steps=4",
                        probe(GradNorm))
    make_objective("sa").pretrain(cfg, corpus, tmp_path / "clipped")
    clipped, GradNorm.seen = GradNorm.seen, []
    cfg, corpus = smoke_run("pretrain.grad_clip=null", "pretrain.max_steps=4", "pretrain.val_every_n_steps=4",
                        probe(GradNorm))
    make_objective("sa").pretrain(cfg, corpus, tmp_path / "free")
    assert len(clipped) == len(GradNorm.seen) == 4
    assert max(clipped) <= clip * (1 + 1e-4), clipped
    assert min(GradNorm.seen) > 10 * clip, GradNorm.seen


def _leaves(tree, prefix: str) -> dict:
    if isinstance(tree, dict):
        return {k: v for key, sub in tree.items() for k, v in _leaves(sub, f"{prefix}.{key}").items()}
    return {prefix: tree}


def _other(value):
    """A value of a setting that differs from ``value``."""
    if isinstance(value, bool):
        return not value
    if isinstance(value, Enum):  # a choice (model.output.softmax): another one
        return next(choice for choice in type(value) if choice != value)
    if isinstance(value, (int, float)):
        return value + 1
    if isinstance(value, str):
        return value + "x"
    if isinstance(value, list):
        return [*value, 7]
    assert value is None, value
    return 7


def _entry(cfg):
    """The cache entry's name (its folder aside) for ``cfg``'s objective, on the corpus ``cfg`` builds."""
    return pipeline.cache_entry(cfg, pipeline.build_corpus(cfg), pipeline.build_objective(cfg)).name


# Corpus settings that leave what pretraining reads as it was: the test split's size and the number of classes
# (label = topic % num_classes): pretraining reads no test text and no label.
TEST_ONLY = {"data.corpus.num_test", "data.corpus.num_classes"}


def test_pretrained_weights_cache_key_holds_every_pretraining_setting(make_cfg):
    """The pretrained-weights cache is keyed by what determines the weights: the corpus' content (every synthetic
    corpus setting that changes the texts), the network, the output layer and the whole pretraining recipe. Change
    any one and a fine-tuning pretrains anew instead of reusing stale weights; fine-tuning settings share it."""
    cfg = make_cfg("experiment=smoke")
    base = _entry(cfg)
    recipe = {k: v for node in ("model.backbone", "model.output", "pretrain", "data.corpus")
              for k, v in _leaves(OmegaConf.to_container(OmegaConf.select(cfg, node), resolve=True), node).items()}
    recipe.update({"data.max_len": cfg.data.max_len, "data.bucket": cfg.data.bucket})
    assert {"data.corpus.seed", "data.corpus.num_unlabeled", "model.backbone.hidden_dim", "model.backbone.num_layers",
            "model.output.softmax", "pretrain.lr", "pretrain.max_steps", "pretrain.seed", "pretrain.grad_clip",
            "pretrain.early_stopping_patience"} <= recipe.keys()
    for key, value in recipe.items():
        if key == "data.corpus._target_":
            continue
        changed = copy.deepcopy(cfg)
        # a valid other corpus (num_topics a multiple of num_classes, min_len <= max_len); max_len truncates some texts
        other = (value * 2 or 1) if key.startswith("data.corpus.") else 5 if key == "data.max_len" else _other(value)
        OmegaConf.update(changed, key, other, merge=False)
        if key in TEST_ONLY:
            assert _entry(changed) == base, f"{key} changes no text pretraining reads, yet changes the cache key"
        else:
            assert _entry(changed) != base, f"{key}={other} leaves the cache key unchanged"
    assert _entry(make_cfg("experiment=smoke", "objective=lm")) != base
    # the run's own seed is the pretraining seed unless pretrain.seed says otherwise
    assert _entry(make_cfg("experiment=smoke", "seed=1")) != base
    pinned = _entry(make_cfg("experiment=smoke", "pretrain.seed=0"))
    assert pinned == base
    for overrides in (["seed=1"], ["finetune.lr=1"], ["finetune.max_epochs=9"], ["finetune.head_lr=1"],
                      ["finetune.batch_size=3"], ["trainer.enable_progress_bar=true"], ["logger=none"],
                      ["callbacks=none"], ["name=other"], ["threads=2"], ["data.num_workers=1"],
                      ["data.eval_batch_size=7"], ["checkpoints.pretrain_every_n_steps=3"]):
        assert _entry(make_cfg("experiment=smoke", "pretrain.seed=0", *overrides)) == pinned, overrides
    for node in ("finetune", "model.head"):
        for key, value in _leaves(OmegaConf.to_container(OmegaConf.select(cfg, node), resolve=True), node).items():
            changed = copy.deepcopy(cfg)
            OmegaConf.update(changed, key, "linear_gain" if key.endswith("readout") else _other(value), merge=False)
            assert _entry(changed) == base, key


def test_pretraining_follows_its_own_seed_not_the_run_that_starts_it(smoke_run, tmp_path):
    """pretrain.seed is what the cache key holds of the seeds, so it alone decides the weights: the same pretraining
    started by the fine-tuning of seed 0 or of seed 3 (whichever job of a sweep takes the cache's lock first) gives
    the same tensors, batch order included; another pretrain.seed gives others."""
    def weights(*overrides):
        run_dir = tmp_path / "-".join(overrides).replace("=", "")
        cfg, corpus = smoke_run("model.backbone.dropout=0.3", *overrides, f"paths.output_dir={run_dir}")
        state = torch.load(pipeline.pretrain(cfg, corpus, Path(cfg.paths.output_dir)), weights_only=True)
        return state["state_dict"]

    first = weights("seed=0", "pretrain.seed=0")
    again = weights("seed=3", "pretrain.seed=0")
    assert all(torch.equal(first[k], again[k]) for k in first)
    other = weights("seed=0", "pretrain.seed=3")
    assert not all(torch.equal(first[k], other[k]) for k in first)


def test_the_adaptation_stage_has_its_own_key_and_the_general_pretraining_that_of_the_objective_without_it(make_cfg):
    """objective.adapt_steps and adapt_lr are part of the key; the stage starts from the weights the objective without
    it caches (so both rows share one pretraining), and the adapted key holds that entry's key."""
    plain = _entry(make_cfg("experiment=smoke"))
    adapted = {(n, lr): _entry(make_cfg("experiment=smoke", f"objective.adapt_steps={n}", f"objective.adapt_lr={lr}"))
               for n in (5, 6) for lr in ("null", 0.01)}
    assert len({plain, *adapted.values()}) == 5
    cfg = make_cfg("experiment=smoke", "objective.adapt_steps=5")
    objective, corpus = pipeline.build_objective(cfg), pipeline.build_corpus(cfg)
    assert pipeline.cache_entry(cfg, corpus, objective.start()).name == plain
    assert objective.key(cfg, corpus)["start"] == objective.start().key(cfg, corpus)


def test_the_same_data_anywhere_hits_the_cache_and_changed_text_misses_it(make_cfg, tmp_path, monkeypatch):
    """The key holds the corpus' content, not where its files or caches live: the same RT files in another folder,
    reached through another log folder, corpus cache and data folder, and a moved weights cache all find the weights
    pretrained once; one edited sentence pretrains anew."""
    from . import test_data_rt

    def cfg_for(root, cache, name):
        return make_cfg("data=rt", f"data.root={root}", f"paths.cache_dir={cache}",
                        f"paths.data_dir={tmp_path / name / 'data'}", f"paths.log_dir={tmp_path / name / 'logs'}",
                        "model.backbone.embed_dim=8", "model.backbone.hidden_dim=16", "pretrain.max_steps=4",
                        "pretrain.val_every_n_steps=2", "pretrain.batch_size=8", "logger=none", "callbacks=none",
                        "trainer.enable_progress_bar=false")

    def weights(cfg) -> Path:
        return pipeline.init_checkpoint(cfg, pipeline.build_corpus(cfg), Path(cfg.paths.output_dir))

    first = weights(cfg_for(test_data_rt.write_files(tmp_path / "a" / "rt"), tmp_path / "cache", "a"))
    assert first.parent == tmp_path / "cache" / "pretrained"
    pretrain = pipeline.objectives.NetworkObjective.pretrain
    monkeypatch.setattr(pipeline.objectives.NetworkObjective, "pretrain",
                        lambda *a, **k: pytest.fail("pretrained again although the cache holds the weights"))
    elsewhere = cfg_for(test_data_rt.write_files(tmp_path / "b" / "copy"), str(tmp_path / "cache") + "/", "b")
    assert weights(elsewhere) == first
    shutil.copytree(tmp_path / "cache", tmp_path / "moved")
    moved = weights(cfg_for(tmp_path / "b" / "copy", tmp_path / "moved", "c"))
    assert moved.name == first.name and moved.parent == tmp_path / "moved" / "pretrained"
    edited = tmp_path / "b" / "copy" / "rt-polarity.pos"
    edited.write_bytes(edited.read_bytes().replace(b"a", b"the", 1))
    monkeypatch.setattr(pipeline.objectives.NetworkObjective, "pretrain", pretrain)
    again = weights(cfg_for(tmp_path / "b" / "copy", tmp_path / "cache", "d"))
    assert again != first and again.is_file()


@pytest.mark.filterwarnings("ignore:Checkpoint directory")  # the resumed run's own folder
def test_pipeline_loads_every_checkpoint_with_weights_only(smoke_run, tmp_path, monkeypatch):
    """Every checkpoint a fine-tuning reads is loaded with torch.load(weights_only=True): the pretrained weights
    (transfer), last.ckpt when it resumes (Lightning's fit) and best.ckpt for the test (Lightning's test)."""
    import lightning.fabric.plugins.io.torch_io as torch_io
    import lightning.fabric.utilities.cloud_io as cloud_io

    cfg, corpus = smoke_run("objective=sa", "finetune.max_epochs=1")
    run_dir = tmp_path / "run"
    first = pipeline.finetune(cfg, corpus, run_dir)
    (run_dir / "results.json").unlink()  # interrupted, say: resume it for one more epoch
    cfg.resume, cfg.finetune.max_epochs = str(run_dir), 2

    loads, lightning_loads = [], []
    torch_load, pl_load = torch.load, torch_io.pl_load

    def recording_torch_load(f, *args, **kwargs):
        where = f if isinstance(f, (str, os.PathLike)) else getattr(f, "path", getattr(f, "name", f))  # a file object
        loads.append((str(where), kwargs.get("weights_only", "not given")))
        return torch_load(f, *args, **kwargs)

    def recording_pl_load(path, *args, **kwargs):
        lightning_loads.append((str(path), kwargs.get("weights_only", "not given")))
        return pl_load(path, *args, **kwargs)

    monkeypatch.setattr(torch, "load", recording_torch_load)
    monkeypatch.setattr(torch_io, "pl_load", recording_pl_load)
    monkeypatch.setattr(cloud_io, "_load", recording_pl_load)
    result = pipeline.finetune(cfg, corpus, run_dir)
    assert result["epochs"] == 2 and first["init_checkpoint"] == result["init_checkpoint"]
    assert [p for p, _ in lightning_loads] == [str(run_dir / "checkpoints" / n) for n in ("last.ckpt", "best.ckpt")]
    assert [w for _, w in lightning_loads] == [True, True], lightning_loads
    loaded = {p for p, _ in loads}
    assert {result["init_checkpoint"], *(p for p, _ in lightning_loads)} <= loaded, loads
    assert all(w is True for _, w in loads), loads


def test_embed_returns_the_top_lstm_layer_state(smoke_run, tmp_path):
    """inference embed: a text's row is the top LSTM layer's final (h, c), on a 2-layer network (not layer 0's)."""
    cfg, corpus = smoke_run("init=random", "model.backbone.num_layers=2", "finetune.max_epochs=1")
    model = semiseq.load(pipeline.finetune(cfg, corpus, tmp_path / "ft")["best_checkpoint"], device="cpu")
    texts = [" ".join(corpus.vocab.decode(corpus.test[i][0])) for i in range(8)]
    embedded = torch.from_numpy(model.embed(texts))
    tokens, lengths, _ = collate([(model.encode(t), -1) for t in texts])
    with torch.no_grad():
        h, c = model.backbone.encode(tokens, lengths)
    assert h.shape == (2, 8, cfg.model.backbone.hidden_dim) and embedded.shape == (8, 2 * cfg.model.backbone.hidden_dim)
    from_top, from_first = ((embedded - torch.cat([h[layer], c[layer]], -1)).abs().max().item() for layer in (-1, 0))
    assert from_top < 1e-6 and from_first > 1e-2, f"max |embed - layer state|: top {from_top}, first {from_first}"

