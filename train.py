"""Entry point: `python train.py [group=option ...] [key=value ...]` (see README.md)."""

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch: idle OpenMP threads must not spin

import hydra  # noqa: E402
from omegaconf import DictConfig  # noqa: E402


@hydra.main(version_base=None, config_path="conf", config_name="train")
def main(cfg: DictConfig) -> float:
    from semiseq.pipeline import run

    return run(cfg)


if __name__ == "__main__":
    main()
