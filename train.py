"""Entry point: `python train.py [group=option ...] [key=value ...]` (see README.md)."""

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch: idle OpenMP threads must not spin

import logging  # noqa: E402
import warnings  # noqa: E402

import hydra  # noqa: E402

import semiseq.config  # noqa: E402,F401  (stores the schemas conf/ extends, before Hydra composes)
from omegaconf import DictConfig  # noqa: E402

warnings.filterwarnings("ignore", message=".*LeafSpec.*")  # Lightning 2.6 on torch 2.13, harmless


@hydra.main(version_base=None, config_path="conf", config_name="train")
def main(cfg: DictConfig) -> float:
    from semiseq import SemiseqError, cli
    from semiseq.pipeline import run

    # Hydra already logs to the console and the run's log file: drop Lightning's own console
    # handler, which would print every Lightning line a second time.
    logging.getLogger("lightning").handlers.clear()

    try:
        cli.check(cfg)
        return run(cfg)
    except SemiseqError as e:  # bad input: one clear line, no stack trace
        cli.fail(e)


if __name__ == "__main__":
    from semiseq import cli

    cli.run(main)  # a config error (unknown option or key) is one line too
