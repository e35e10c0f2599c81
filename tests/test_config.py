"""Every YAML under conf/ composes and builds what it describes; every sweep composes too."""

import json
from pathlib import Path

import pytest
import torch
import yaml
from hydra.errors import MissingConfigException
from hydra.utils import get_class
from omegaconf import OmegaConf

from semiseq import pipeline, stage, tracking
from semiseq.objectives import NetworkObjective

from . import (
    test_data_cifar,
    test_data_dbpedia,
    test_data_hf,
    test_data_imdb,
    test_data_newsgroups,
    test_data_rt,
)
from .conftest import CONF, ROOT, make_objective

GROUPS = sorted(p.name for p in CONF.iterdir() if p.is_dir() and p.name != "hydra")
OPTIONS = [(g, p.stem) for g in GROUPS for p in sorted((CONF / g).glob("*.yaml"))]


def test_every_group_has_options():
    groups = {"data", "model", "objective", "init", "mode", "trainer", "logger", "callbacks", "paths", "experiment"}
    assert groups <= set(GROUPS)


def tiny_files(tmp_path: Path) -> str:
    (tmp_path / "train.csv").write_text("text,label\n" + "".join(f"text number {i},{'ab'[i % 2]}\n" for i in range(20)))
    return str(tmp_path / "train.csv")


# Each dataset config read from small files in its original format (no download).
DATA_FILES = {
    "rt": lambda tmp: [f"data.root={test_data_rt.write_files(tmp / 'rt')}"],
    "imdb": lambda tmp: [f"data.root={test_data_imdb.write_tree(tmp / 'imdb')}"],
    "newsgroups20": lambda tmp: [f"data.root={test_data_newsgroups.write_bydate(tmp / 'ng')}"],
    "dbpedia_char": lambda tmp: [f"data.root={test_data_dbpedia.write_csv_folder(tmp / 'db')}"],
    "files": lambda tmp: [f"data.train={tiny_files(tmp)}"],
    "hf": lambda tmp: [f"data.path={test_data_hf.imdb_like(tmp / 'hf')}", "data.unlabeled_split=unsupervised"],
    "cifar10_rows": lambda tmp: [f"data.root={test_data_cifar.write_files(tmp / 'cifar')}"],
}


def test_every_dataset_config_is_tested_from_files():
    assert set(DATA_FILES) | {"synthetic"} == {p.stem for p in (CONF / "data").glob("*.yaml")}


def test_the_block_the_text_datasets_share_is_not_offered_as_a_dataset(make_cfg):
    with pytest.raises(MissingConfigException) as e:
        make_cfg("data=nope")
    assert sorted(e.value.options) == sorted({*DATA_FILES, "synthetic"})  # not _shared/text


@pytest.mark.parametrize("group,option", OPTIONS, ids=[f"{g}={o}" for g, o in OPTIONS])
def test_option_composes_and_instantiates(make_cfg, tmp_path, group, option):
    overrides = [f"{group}={option}"] + ([] if group == "experiment" else ["experiment=smoke"])
    if (group, option) == ("trainer", "gpu") and not torch.cuda.is_available():  # the rest of it, on the CPU
        overrides.append("trainer.accelerator=cpu")
    if group == "data" and option != "synthetic":  # the smoke experiment's corpus settings are synthetic's
        overrides = [f"data={option}", *DATA_FILES[option](tmp_path), f"paths.data_dir={tmp_path}/downloads",
                     "model.backbone.embed_dim=8", "model.backbone.hidden_dim=16", "model.head.hidden_dim=16"]
    cfg = make_cfg(*overrides)
    if group == "experiment" and cfg.data.name != "synthetic":  # a paper table's data, from small files
        unsup = cfg.data.get("unlabeled")
        extra = [f"data.unlabeled_root={test_data_imdb.write_tree(tmp_path / 'unsup')}"] if unsup else []
        cfg = make_cfg(*overrides, *DATA_FILES[cfg.data.name](tmp_path), f"paths.data_dir={tmp_path}/downloads", *extra)
    corpus = pipeline.build_corpus(cfg)
    assert (len(corpus.vocab) > 3 or corpus.input_dim) and len(corpus.train) > 0
    objective = pipeline.build_objective(cfg)
    assert objective.name == cfg.objective.name
    network = objective if isinstance(objective, NetworkObjective) else make_objective("sa")
    pretrainer = network.task(cfg, corpus)
    classifier = pipeline.build_classifier(cfg, corpus)
    assert type(pretrainer.net) is network.network and pretrainer.kind == network.name
    for task in (pretrainer, classifier):  # the networks the config describes, at its sizes
        embedding, lstm = task.net.backbone.embedding, task.net.backbone.lstm
        inputs = (embedding.in_features, embedding.out_features) if corpus.input_dim else (
            embedding.num_embeddings, embedding.embedding_dim)
        assert inputs == (corpus.input_dim or len(corpus.vocab), cfg.model.backbone.embed_dim)
        sizes = cfg.model.backbone
        assert (lstm.input_size, lstm.hidden_size, lstm.num_layers) == (sizes.embed_dim, sizes.hidden_dim,
                                                                         sizes.num_layers)
    _, hidden, _, dropout, out = classifier.net.head
    assert (hidden.in_features, hidden.out_features, out.out_features) == (cfg.model.backbone.hidden_dim,
                                                                           cfg.model.head.hidden_dim,
                                                                           corpus.num_classes)
    assert dropout.p == cfg.model.head.dropout and classifier.hparams.head["readout"] == cfg.model.head.readout
    assert (classifier.aux is not None) == (cfg.mode.name == "joint")
    loggers = tracking.make_loggers(cfg, tmp_path, cfg.mode.name, ["test"])
    trainer = stage.build_trainer(cfg, tmp_path, loggers, [], max_steps=1)
    assert trainer.max_steps == 1
    for name, conf in (cfg.get("callbacks") or {}).items():  # each one the group names is in the trainer
        assert any(isinstance(c, get_class(conf._target_)) for c in trainer.callbacks), name
    tracking.finish_loggers(loggers)


# Each paper-table row as its own experiment: what the row's name promises, the config delivers.
ROWS = {"lstm": ("random", "last", "finetune"), "word2vec": ("word2vec", "last", "finetune"),
        "lm": ("lm", "last", "finetune"), "sa": ("sa", "last", "finetune"), "sa_imdb": ("sa", "last", "finetune"),
        "sa_linear_gain": ("sa", "linear_gain", "finetune"), "lstm_linear_gain": ("random", "linear_gain", "finetune"),
        "sa3_linear_gain": ("sa", "linear_gain", "finetune"), "sa_joint": ("sa", "last", "joint")}
TABLES = ["imdb", "rt", "newsgroups20", "dbpedia", "cifar10"]


@pytest.mark.parametrize("table", TABLES)
def test_each_paper_row_is_an_experiment_with_its_variant(make_cfg, table):
    rows = [p.stem for p in (CONF / "experiment").glob(f"{table}_*.yaml")]
    rows = [r for r in rows if r.removeprefix(table + "_") in ROWS]
    assert len(rows) >= 2, rows
    for row in rows:
        cfg = make_cfg(f"experiment={row}")
        init, readout, mode = ROWS[row.removeprefix(table + "_")]
        starts = "random" if cfg.init.name == "random" else cfg.objective.name  # mode=joint: init=random
        assert (starts, cfg.model.head.readout, cfg.mode.name) == ("random" if mode == "joint" else init, readout,
                                                                   mode), row
        if init != "random":  # the row's objective (joint: the loss it adds); its `mode=pretrain` pretrains it
            assert cfg.objective.name == init, row
            assert make_cfg(f"experiment={row}", "mode=pretrain").objective.name == init, row
        assert cfg.model.backbone.hidden_dim >= 1024 and cfg.model.head.hidden_dim == 512, row
        assert cfg.name.startswith(table), row
        assert cfg.model.backbone.num_layers == (3 if "sa3" in row else 1)
        assert (cfg.data.get("unlabeled") == "imdb") == row.endswith("_imdb")


def test_hydra_run_dirs_are_unique_per_microsecond():
    hydra = yaml.safe_load((CONF / "hydra" / "default.yaml").read_text())
    assert "%f" in hydra["run"]["dir"] and "%f" in hydra["sweep"]["dir"]


SWEEPS = sorted((ROOT / "sweeps").glob("*.yaml"))


@pytest.mark.parametrize("path", SWEEPS, ids=[p.stem for p in SWEEPS])
def test_wandb_sweep_parses_and_its_overrides_compose(make_cfg, path: Path):
    sweep = yaml.safe_load(path.read_text())
    assert sweep["program"] == "train.py" and "${args_no_hyphens}" in sweep["command"]
    fixed = [a for a in sweep["command"] if "=" in a]
    for key, spec in sweep["parameters"].items():
        for value in spec.get("values") or [spec[k] for k in ("value", "min", "max") if k in spec]:  # a range: its ends
            make_cfg(*fixed, f"{key}={value}")


def test_wandb_runs_offline_with_group_job_type_tags_and_the_resolved_config(make_cfg, tmp_path, monkeypatch):
    for var in ("WANDB_MODE", "WANDB_API_KEY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("NETRC", str(tmp_path / "no-netrc"))  # no `wandb login` either
    monkeypatch.setenv("HOME", str(tmp_path))
    cfg = make_cfg("experiment=smoke", "name=ablation", "logger=wandb")
    (logger,) = tracking.make_loggers(cfg, tmp_path, "finetune", ["synthetic", "init:sa"])
    try:
        assert logger.experiment.settings.mode == "offline"
        assert (logger.experiment.group, logger.experiment.job_type) == ("ablation", "finetune")
        assert {"synthetic", "init:sa", "lstm:1x16"} <= set(logger.experiment.tags)
        config = logger.experiment.config
        assert config["model"]["backbone"]["hidden_dim"] == 16 and config["name"] == "ablation"
    finally:
        tracking.finish_loggers([logger])
    assert list(tmp_path.glob("wandb/offline-run-*"))


NG_ROWS = sorted(p.stem for p in (CONF / "experiment").glob("newsgroups20_cpu_*.yaml"))


@pytest.mark.parametrize("row", NG_ROWS)
def test_newsgroups20_cpu_recipes_run_end_to_end_on_bydate_files(make_cfg, tmp_path, row):
    """The 20 Newsgroups CPU rows (their results are measured on the real posts, not here): each pretrains what its
    name says and fine-tunes, on posts in the bydate layout, at tiny sizes."""
    root = test_data_newsgroups.write_bydate(tmp_path / "ng")
    cfg = make_cfg(f"experiment={row}", f"data.root={root}", f"paths.data_dir={tmp_path}/downloads", "logger=none",
                   "callbacks=none", "model.backbone.embed_dim=8", "model.backbone.hidden_dim=16",
                   "model.head.hidden_dim=16", "pretrain.max_steps=2", "pretrain.val_every_n_steps=2",
                   "pretrain.batch_size=2", "finetune.max_epochs=1", "finetune.batch_size=2",
                   "trainer.enable_progress_bar=false")
    assert len(NG_ROWS) == 4 and cfg.data.name == "newsgroups20" and cfg.data.max_len == 400
    pipeline.run(cfg)
    result = json.loads((Path(cfg.paths.output_dir) / "results.json").read_text())
    assert result["init"] == {"lstm": "random"}.get(row.rsplit("_", 1)[1], row.rsplit("_", 1)[1])
    assert result["tensors_loaded"] == {"random": 0, "word2vec": 1}.get(result["init"], 5)


def test_the_schemas_change_no_pretrained_weights_cache_key(make_cfg):
    """Typing the config (float fields, Enum choices: semiseq.config) leaves the cache key of every shipped config as
    its yaml alone gives it, so the weights cached before the schemas are found again; the same for the hparams the
    classifier is built from, which must stay primitives (checkpoints load with weights_only=True)."""
    from hydra.core.config_store import ConfigStore

    from semiseq import config

    class Corpus:
        fingerprint = staticmethod(lambda: "the corpus")

    rows = [[], ["model=paper_lstm"], ["mode=joint"], *([f"experiment={p.stem}"] for p in
                                                        sorted((CONF / "experiment").glob("*.yaml")))]

    def keys() -> list[str]:
        cfgs = [make_cfg(*row) for row in rows]
        # repr: a 1.0 for a 1, or an Enum for its string, would show
        return [repr([make_objective(name).key(cfg, Corpus()) for name in ("sa", "lm")]
                     + [config.plain(cfg.model.head)]) for cfg in cfgs]

    typed = keys()
    store = ConfigStore.instance()
    try:
        store.store(name="train_schema", node={})
        store.store(group="schema/mode", name="joint", node={})
        assert OmegaConf.get_type(make_cfg()) is dict  # composed from the yaml alone
        untyped = keys()
    finally:
        store.store(name="train_schema", node=config.Train)
        store.store(group="schema/mode", name="joint", node=config.JointMode)
    assert OmegaConf.get_type(make_cfg()) is config.Train
    assert any("'softmax': 'adaptive'" in k for k in untyped) and any("'readout': 'linear_gain'" in k for k in untyped)
    for row, now, before in zip(rows, typed, untyped):
        assert now == before, row
