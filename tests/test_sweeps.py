"""Sweeps and launchers: every wandb sweep under sweeps/ composes against conf/ for each run it can
start, `hparams_search=optuna` and `hydra/launcher=slurm` compose with valid keys, and a tiny Optuna
search runs through train.py on the joblib launcher."""

import dataclasses
import itertools
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from hydra import compose, initialize_config_dir
from hydra.core.plugins import Plugins
from hydra.core.utils import JobReturn, JobStatus
from hydra_plugins.hydra_submitit_launcher.config import SlurmQueueConf
from omegaconf import OmegaConf
from wandb.sdk.launch.sweeps.utils import create_sweep_command_args

from .conftest import CONF, ROOT

SWEEPS = sorted((ROOT / "sweeps").glob("*.yaml"))
GROUPS = {p.name for p in CONF.iterdir() if p.is_dir()}


def compose_train(tmp_path: Path, overrides: list[str], hydra_config: bool = False):
    with initialize_config_dir(config_dir=str(CONF), version_base=None):
        return compose("train", overrides=[f"paths.log_dir={tmp_path}/logs", *overrides],
                       return_hydra_config=hydra_config)


def candidates(spec: dict) -> list:
    """The values a sweep parameter can take: its values, its value, or the bounds of its distribution."""
    if "values" in spec:
        return list(spec["values"])
    if "value" in spec:
        return [spec["value"]]
    return [spec["min"], spec["max"]]


def sweep_runs(sweep: dict) -> list[dict]:
    """Parameter dicts a sweep can start: the full product for grid; for bayes/random each candidate of
    each parameter, the others at their first."""
    params = {k: candidates(spec) for k, spec in sweep["parameters"].items()}
    if sweep["method"] == "grid":
        return [dict(zip(params, combo)) for combo in itertools.product(*params.values())]
    first = {k: v[0] for k, v in params.items()}
    return [dict(first, **{k: v}) for k, values in params.items() for v in values]


def agent_argv(sweep: dict, run: dict) -> list[str]:
    """train.py's arguments as `wandb agent` builds them (wandb's own formatting of the values)."""
    args = create_sweep_command_args({"args": {k: {"value": v} for k, v in run.items()}})["args_no_hyphens"]
    argv = []
    for part in sweep["command"][3:]:
        argv += args if part == "${args_no_hyphens}" else [part]
    return argv


@pytest.mark.parametrize("path", SWEEPS, ids=[p.stem for p in SWEEPS])
def test_wandb_sweep_is_well_formed(path: Path):
    sweep = yaml.safe_load(path.read_text())
    assert sweep["program"] == "train.py" and sweep["method"] in ("grid", "random", "bayes")
    command = sweep["command"]
    assert command[:3] == ["${env}", "python", "${program}"] and command[-1] == "${args_no_hyphens}", command
    assert all("=" in a and not a.startswith("-") for a in command[3:-1]), "fixed overrides are key=value"
    assert sweep["metric"]["goal"] in ("maximize", "minimize") and sweep["metric"]["name"]
    for key, spec in sweep["parameters"].items():
        # wandb writes None as "None", a string to Hydra: a null must be spelled "null"
        assert None not in candidates(spec), f"{path.name}: {key}: write null as the string 'null'"
        if sweep["method"] == "grid":
            assert "values" in spec or "value" in spec, f"{path.name}: {key}: grid needs values"


@pytest.mark.parametrize("path", SWEEPS, ids=[p.stem for p in SWEEPS])
def test_every_run_of_a_wandb_sweep_composes(tmp_path, path: Path):
    sweep = yaml.safe_load(path.read_text())
    runs = sweep_runs(sweep)
    assert runs
    configs = set()
    with initialize_config_dir(config_dir=str(CONF), version_base=None):
        for run in runs:
            argv = agent_argv(sweep, run)
            cfg = compose("train", overrides=[f"paths.log_dir={tmp_path}/logs", *argv])
            configs.add(OmegaConf.to_yaml(cfg))
            for key, value in run.items():
                if key in GROUPS:
                    continue  # a group option: composing it is the check
                expected = None if value == "null" else value
                assert OmegaConf.select(cfg, key, throw_on_missing=True) == expected, (path.name, argv, key)
    if sweep["method"] == "grid":
        assert len(configs) == len(runs), f"{path.name}: two runs of the grid compose the same config"


def test_sweeps_cover_every_paper_table():
    names = {p.stem for p in SWEEPS}
    assert {"imdb_ablation", "rt_ablation", "rt_cpu_ablation", "newsgroups20_ablation", "dbpedia_ablation",
            "cifar10_ablation", "hparam_search"} <= names


def test_optuna_search_composes_and_searches_existing_keys(tmp_path):
    cfg = compose_train(tmp_path, ["hparams_search=optuna"], hydra_config=True)
    sweeper = cfg.hydra.sweeper
    assert sweeper._target_.endswith("OptunaSweeper") and sweeper.direction == "maximize"
    assert sweeper.sampler._target_ == "optuna.samplers.TPESampler" and sweeper.sampler.seed is not None
    assert sweeper.n_jobs == 1  # the basic launcher runs one trial at a time
    assert {"finetune.lr", "finetune.head_lr", "finetune.batch_size", "model.backbone.embed_dropout",
            "model.head.dropout"} <= set(sweeper.params)
    for key in sweeper.params:
        assert OmegaConf.select(cfg, key, throw_on_missing=True) is not None, key
    joblib = compose_train(tmp_path, ["hparams_search=optuna", "hydra/launcher=joblib", "hydra.launcher.n_jobs=3"],
                           hydra_config=True)
    assert joblib.hydra.sweeper.n_jobs == 3  # trials are launched in batches of the launcher's width


def test_slurm_launcher_composes_into_a_valid_sbatch_script(tmp_path, monkeypatch):
    import submitit
    from submitit.slurm.slurm import SlurmExecutor

    own = yaml.safe_load((CONF / "hydra" / "launcher" / "slurm.yaml").read_text())
    fields = {f.name for f in dataclasses.fields(SlurmQueueConf)}
    assert set(own) - {"defaults"} <= fields
    cfg = compose_train(tmp_path, ["hydra/launcher=slurm", "trainer=ddp", "trainer.devices=4", "trainer.num_nodes=2",
                                   "hydra.launcher.partition=gpu"], hydra_config=True)
    launcher_cfg = OmegaConf.to_container(cfg.hydra.launcher, resolve=True)
    assert launcher_cfg["tasks_per_node"] == launcher_cfg["gpus_per_node"] == 4 and launcher_cfg["nodes"] == 2

    # Run the plugin's own launch() with submission stubbed out (no SLURM here): submitit validates
    # every parameter and we read the sbatch script it would submit.
    monkeypatch.setattr(SlurmExecutor, "affinity", staticmethod(lambda: 1))
    scripts = []

    def fake_map_array(self, fn, *iterables):
        scripts.append(self._executor._make_submission_file_text("python train.py", "uid"))
        ret = JobReturn(status=JobStatus.COMPLETED, _return_value=0.5)
        return [type("Job", (), {"results": lambda _self: [ret]})() for _ in zip(*iterables)]

    monkeypatch.setattr(submitit.AutoExecutor, "map_array", fake_map_array)
    launcher = Plugins.instance().instantiate_launcher(hydra_context=None, task_function=None, config=cfg)
    (ret,) = launcher.launch([["objective=sa"]], initial_job_idx=0)
    assert ret.return_value == 0.5
    (script,) = scripts
    for line in ("#SBATCH --nodes=2", "#SBATCH --ntasks-per-node=4", "#SBATCH --gpus-per-node=4",
                 "#SBATCH --partition=gpu", "#SBATCH --time=720", "#SBATCH --mem=64GB",
                 "#SBATCH --cpus-per-task=4", "export PYTHONUNBUFFERED=1", "export SLURM_KILL_ON_BAD_EXIT=1"):
        assert line in script, (line, script)


def test_optuna_search_on_the_joblib_launcher_runs_trials_in_parallel(tmp_path):
    """Two trials at once through train.py: own run dirs in one multirun dir, one SA pretraining shared
    through the cache, and the sweeper's best value is the best job's validation accuracy."""
    env = dict(os.environ, WANDB_MODE="offline", HYDRA_FULL_ERROR="1", OMP_NUM_THREADS="1")
    # model.backbone.embed_dropout is part of the pretraining cache key: fixing it keeps both trials on one SA
    command = [sys.executable, str(ROOT / "train.py"), "-m", "experiment=smoke", "hparams_search=optuna",
               "hydra.sweeper.n_trials=2", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2",
               f"paths.log_dir={tmp_path}", f"paths.cache_dir={tmp_path}/cache", "logger=csv",
               "model.backbone.embed_dropout=0.0"]
    out = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    (sweep_dir,) = (tmp_path / "smoke" / "multiruns").iterdir()
    jobs = sorted(p for p in sweep_dir.iterdir() if p.is_dir() and p.name.isdigit())
    assert [j.name for j in jobs] == ["0", "1"]
    results = [json.loads((j / "results.json").read_text()) for j in jobs]
    assert "Joblib.Parallel(n_jobs=2" in out.stdout + out.stderr and "is launching 2 jobs" in out.stdout + out.stderr
    for job in jobs:  # each trial ran with its own sampled recipe, and the fixed key
        overrides = yaml.safe_load((job / ".hydra" / "overrides.yaml").read_text())
        assert "model.backbone.embed_dropout=0.0" in overrides and any(o.startswith("finetune.lr=") for o in overrides)
        config = yaml.safe_load((job / ".hydra" / "config.yaml").read_text())
        lr = next(o for o in overrides if o.startswith("finetune.lr=")).split("=")[1]
        assert config["finetune"]["lr"] == float(lr)
    best = yaml.safe_load((sweep_dir / "optimization_results.yaml").read_text())
    assert best["best_value"] == max(r["val/acc_best"] for r in results)
    assert set(best["best_params"]) == {"finetune.lr", "finetune.head_lr", "finetune.batch_size", "model.head.dropout"}
    assert len(list((tmp_path / "cache" / "pretrained").glob("sa-*.ckpt"))) == 1
    assert sorted(p.name for j in jobs for p in j.glob("pretrain-*")) == ["pretrain-sa"]
