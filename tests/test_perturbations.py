"""Adversarial and virtual adversarial training on the word embeddings (Miyato, Dai & Goodfellow 2017): the
perturbation's norm and mask, its direction, VAT's constant clean branch, the normalised embeddings, and every
option through the real pipeline and train.py.

Every test here was checked by breaking its behaviour in the source on purpose and watching it fail."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from hydra.utils import instantiate
from lightning.pytorch.callbacks import Callback
from omegaconf import OmegaConf

from semiseq import SemiseqError, pipeline
from semiseq.nets import Backbone, Classifier
from semiseq.perturbations import Adversarial, VirtualAdversarial, kl_divergence, scale_l2
from semiseq.tasks import ClassifierTask

from .conftest import CONF, ROOT, probe, read_json

NAMES = ["random", "adversarial", "virtual_adversarial"]


def perturbation(name: str, **settings):
    return instantiate({**OmegaConf.to_container(OmegaConf.load(CONF / "perturbation" / f"{name}.yaml")), **settings})


def batch(seed: int = 0, vocab: int = 30):
    """A trained-free classifier in eval mode (no dropout: every forward is the same function) and a padded batch."""
    torch.manual_seed(seed)
    net = Classifier(Backbone(vocab, 8, 16, normalized=True), 3, 16, 0.0).eval()
    net.backbone.normalize_embeddings(torch.rand(vocab) * 100)
    lengths = torch.tensor([7, 3, 5, 1])
    tokens = torch.randint(3, vocab, (4, 7)) * (torch.arange(7)[None] < lengths[:, None])  # PAD = 0 after the end
    return net, tokens, lengths, torch.tensor([0, 1, 2, 1])


def clean(net, tokens, lengths, labels):
    embedded = net.backbone.embed(tokens)
    logits = net.logits_of(embedded, lengths)
    return embedded, logits, F.cross_entropy(logits, labels)


def test_scale_l2_gives_each_sequence_the_norm_and_zeroes_its_padding():
    x, lengths = torch.randn(3, 5, 4), torch.tensor([5, 2, 1])
    r = scale_l2(x, lengths, 2.5)
    assert torch.allclose(r.flatten(1).norm(dim=1), torch.full((3,), 2.5))
    assert (r[1, 2:] == 0).all() and (r[2, 1:] == 0).all()
    assert torch.allclose(r[1, :2] / r[1, :2].norm(), x[1, :2] / x[1, :2].norm())  # the direction is kept
    assert (scale_l2(torch.zeros(1, 3, 2), torch.tensor([3]), 5.0) == 0).all()  # zero stays zero, no NaN


@pytest.mark.parametrize("name", NAMES)
def test_every_perturbation_has_norm_epsilon_per_sequence_on_real_steps_only(name):
    net, tokens, lengths, labels = batch()
    embedded, logits, loss = clean(net, tokens, lengths, labels)
    r = perturbation(name, epsilon=1.5).perturb(net.logits_of, embedded, lengths, labels, logits, loss)
    assert torch.allclose(r.flatten(1).norm(dim=1), torch.full((4,), 1.5), atol=1e-5)
    padded = torch.arange(7)[None] >= lengths[:, None]
    assert (r[padded] == 0).all() and (r[~padded].abs().sum(-1) > 0).all()
    assert not r.requires_grad


def test_the_adversarial_direction_raises_the_loss_more_than_random_directions_of_its_norm():
    net, tokens, lengths, labels = batch()
    embedded, logits, loss = clean(net, tokens, lengths, labels)
    at = perturbation("adversarial", epsilon=0.5).loss(net.logits_of, embedded, lengths, labels, logits, loss)
    rand = [perturbation("random", epsilon=0.5).loss(net.logits_of, embedded, lengths, labels, logits, loss)
            for _ in range(20)]
    assert at > loss + 1e-3 and at > max(rand)


def test_vat_finds_the_direction_that_moves_the_prediction_most():
    net, tokens, lengths, labels = batch(1)
    embedded, logits, loss = clean(net, tokens, lengths, labels)
    vat = perturbation("virtual_adversarial", epsilon=0.5).loss(net.logits_of, embedded, lengths, None, logits, None)
    rand = [kl_divergence(logits, net.logits_of(embedded + scale_l2(torch.randn_like(embedded), lengths, 0.5),
                                                 lengths)) for _ in range(20)]
    assert vat > 2 * max(rand)


def test_vat_is_zero_without_perturbation_and_its_gradient_skips_the_clean_prediction():
    net, tokens, lengths, labels = batch()
    embedded, logits, loss = clean(net, tokens, lengths, labels)
    zero = perturbation("virtual_adversarial", epsilon=0.0).loss(net.logits_of, embedded, lengths, None, logits, None)
    assert zero.abs() < 1e-7
    vat = VirtualAdversarial("virtual_adversarial", epsilon=1.0)
    term = vat.loss(net.logits_of, embedded, lengths, None, logits, None)
    assert term > 0
    (through_clean,) = torch.autograd.grad(term, logits, retain_graph=True, allow_unused=True)
    assert through_clean is None  # the clean branch is a constant
    assert torch.autograd.grad(term, embedded)[0].abs().sum() > 0  # the perturbed branch trains the network


def test_padding_never_enters_the_adversarial_loss():
    """More padding columns change neither r on the real steps nor the loss (eval mode: AT is deterministic)."""
    net, tokens, lengths, labels = batch()
    wider = torch.cat([tokens, torch.zeros(4, 5, dtype=tokens.dtype)], 1)
    at, seen = Adversarial("adversarial", 1.0), []
    for t in (tokens, wider):
        embedded, logits, loss = clean(net, t, lengths, labels)
        r = at.perturb(net.logits_of, embedded, lengths, labels, logits, loss)
        seen.append((r[:, :7], at.loss(net.logits_of, embedded, lengths, labels, logits, loss).item()))
    assert torch.allclose(seen[0][0], seen[1][0], atol=1e-6) and seen[0][1] == pytest.approx(seen[1][1], rel=1e-5)


def test_normalised_embeddings_have_weighted_mean_zero_and_variance_one_and_keep_the_pretrained_function():
    torch.manual_seed(0)
    pretrained = Classifier(Backbone(20, 6, 8), 2, 8, 0.0).eval()  # a plain embedding, as pretraining leaves it
    backbone = Backbone(20, 6, 8, normalized=True)
    net = Classifier(backbone, 2, 8, 0.0).eval()
    net.load_state_dict(pretrained.state_dict(), strict=False)  # all but the frequencies (as load_backbone)
    tokens, lengths = torch.randint(3, 20, (5, 9)), torch.full((5,), 9)
    before = pretrained(tokens, lengths)
    counts = torch.arange(20.0) ** 2
    backbone.normalize_embeddings(counts)
    table = backbone.embedding(torch.arange(20))
    f = counts / counts.sum()
    assert torch.allclose(f @ table, torch.zeros(6), atol=1e-5)
    assert torch.allclose(f @ table**2, torch.ones(6), atol=1e-3)
    assert torch.allclose(net(tokens, lengths), before, atol=1e-5)  # the LSTM's input weights absorbed it


class Seen(Callback):
    """The classifier's frequencies and the training batches' kinds, per run."""

    runs: list = []

    def on_train_start(self, trainer, pl_module):
        if isinstance(pl_module, ClassifierTask):
            Seen.runs.append({"frequencies": pl_module.net.backbone.embedding.frequencies.clone(), "batches": []})

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if isinstance(pl_module, ClassifierTask):
            Seen.runs[-1]["batches"].append(sorted(batch) if isinstance(batch, dict) else "labeled")


@pytest.mark.parametrize("name", NAMES)
def test_fine_tuning_with_a_perturbation_through_the_pipeline(smoke_run, tmp_path, name):
    """The pipeline builds the perturbation, normalises with the training text's word counts, serves VAT unlabeled
    batches, adds the term to the loss (the weights differ from those of weight 0) and says so in results.json."""
    Seen.runs = []
    cfg, corpus = smoke_run(f"perturbation={name}", "finetune.max_epochs=1", probe(Seen), "init=random")
    r = pipeline.finetune(cfg, corpus, tmp_path / "a")
    assert r["perturbation"] == name and read_json(tmp_path / "a" / "results.json")["perturbation"] == name
    (run,) = Seen.runs
    assert torch.equal(run["frequencies"], torch.from_numpy(corpus.token_counts()).float())
    assert run["frequencies"].sum() == sum(len(t) for t, _ in corpus.pretrain_text())
    assert set(map(str, run["batches"])) == {"['labeled', 'unlabeled']" if name == "virtual_adversarial"
                                             else "labeled"}

    def weights(run_dir, *overrides):
        c, corp = smoke_run(f"perturbation={name}", "finetune.max_epochs=1", "init=random", *overrides)
        pipeline.finetune(c, corp, run_dir)
        return torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]

    with_term, without = weights(tmp_path / "b"), weights(tmp_path / "c", "perturbation.weight=0")
    assert any(not torch.equal(with_term[k], without[k]) for k in with_term)  # the term is trained on


def test_a_perturbation_on_real_valued_steps_is_refused(smoke_run):
    cfg, corpus = smoke_run("perturbation=adversarial")
    corpus.input_dim = 4
    with pytest.raises(SemiseqError, match=r"^perturbation=adversarial perturbs word embeddings, and data=synthetic "
                                           r"has real-valued steps .*; pass perturbation=none$"):
        pipeline.build_classifier(cfg, corpus)


def train(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "SEMISEQ_LOG_DIR": str(tmp_path / "logs"), "WANDB_MODE": "offline"}
    return subprocess.run([sys.executable, str(ROOT / "train.py"), *args, "experiment=smoke", "logger=csv"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)


def test_a_multirun_over_every_perturbation_runs_end_to_end(tmp_path):
    """`train.py -m perturbation=none,random,adversarial,virtual_adversarial`: each job fine-tunes (from the one
    pretraining), logs its term, and its checkpoint loads for eval.py with the word frequencies it trained with."""
    out = train(tmp_path, "-m", "perturbation=none,random,adversarial,virtual_adversarial")
    assert out.returncode == 0, out.stderr[-3000:]
    results = sorted((tmp_path / "logs" / "smoke" / "multiruns").glob("*/*/results.json"))
    assert sorted(read_json(p)["perturbation"] for p in results) == sorted(["none", *NAMES])
    for path in results:
        name = read_json(path)["perturbation"]
        header = next((path.parent / "csv").rglob("metrics.csv")).read_text().splitlines()[0].split(",")
        assert (f"train/{name}_loss" in header) == (name != "none")
        ckpt = torch.load(read_json(path)["best_checkpoint"], weights_only=True)
        held = ckpt["state_dict"].get("net.backbone.embedding.frequencies")
        assert (held is None) == (name == "none") and (held is None or held.sum() > 0)
    best = next(p for p in results if read_json(p)["perturbation"] == "virtual_adversarial")
    env = {**os.environ, "SEMISEQ_LOG_DIR": str(tmp_path / "logs")}
    out = subprocess.run([sys.executable, str(ROOT / "eval.py"), "experiment=smoke",
                          f"ckpt_path={read_json(best)['best_checkpoint']}"], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    (evaluated,) = (tmp_path / "logs").rglob("eval.json")
    assert read_json(evaluated)["test/acc"] == pytest.approx(read_json(best)["test/acc"])  # the same network


@pytest.mark.parametrize("override,message", [
    ("perturbation=adversarial perturbation.epsilon=-1", "perturbation.epsilon=-1 is not a number >= 0"),
    ("perturbation=virtual_adversarial perturbation.iterations=0", "perturbation.iterations=0 is not a positive"),
    ("perturbation=adversarial_training", "perturbation=adversarial_training"),
])
def test_bad_perturbation_settings_get_one_line(tmp_path, override, message):
    out = train(tmp_path, *override.split())
    assert out.returncode != 0
    lines = [line for line in out.stderr.splitlines() if line.startswith("semiseq: error:")]
    assert len(lines) == 1 and message in lines[0], out.stderr[-2000:]
