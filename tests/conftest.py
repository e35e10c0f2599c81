import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ["WANDB_MODE"] = "offline"
os.environ.setdefault("WANDB_SILENT", "true")
# data=hf: no test reaches the Hugging Face Hub (the tests write their datasets); train.py subprocesses inherit it
os.environ["HF_DATASETS_OFFLINE"] = os.environ["HF_HUB_OFFLINE"] = "1"

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402
import torch  # noqa: E402
from hydra import compose, initialize_config_dir  # noqa: E402

import semiseq.config  # noqa: E402,F401  (stores the schemas conf/ extends)

ROOT = Path(__file__).resolve().parents[1]
CONF = ROOT / "conf"

torch.set_num_threads(1)


@pytest.fixture
def make_cfg(tmp_path):
    """Compose conf/train.yaml like `train.py` would, with every path inside tmp_path."""

    def _make(*overrides: str):
        with initialize_config_dir(config_dir=str(CONF), version_base=None):
            return compose("train", overrides=[f"paths.log_dir={tmp_path}/logs", f"paths.output_dir={tmp_path}/run",
                                               *overrides])

    return _make


@pytest.fixture
def smoke_run(make_cfg):
    """``(cfg, corpus)`` of the smoke experiment (no loggers, no extra callbacks) with more overrides."""
    from semiseq import pipeline

    def _make(*overrides: str):
        cfg = make_cfg("experiment=smoke", "logger=none", "callbacks=none", *overrides)
        return cfg, pipeline.build_corpus(cfg)

    return _make


def probe(callback: type) -> str:
    """The override that adds the Callback class ``callback`` to every stage's trainer, as a user adds one."""
    return f"+callbacks.probe._target_={callback.__module__}.{callback.__qualname__}"


def make_objective(name: str):
    """The objective conf/objective/<name>.yaml builds (None for none)."""
    from omegaconf import OmegaConf

    from semiseq import objectives

    return objectives.build(OmegaConf.load(CONF / "objective" / f"{name}.yaml"))


def read_json(path) -> dict:
    import json

    return json.loads(Path(path).read_text())


@pytest.fixture(autouse=True)
def _no_shared_wandb_service():
    """A wandb run made in this process starts a wandb service and exports WANDB_SERVICE; train.py
    subprocesses would inherit it and share that service, which still holds the run of a killed process
    (a resumed run then finds its id "in use"). Each subprocess must start its own, as for a user."""
    os.environ.pop("WANDB_SERVICE", None)
    yield
    os.environ.pop("WANDB_SERVICE", None)
