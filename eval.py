"""Entry point: `python eval.py ckpt_path=PATH [action=test|predict|embed] [key=value ...]` (see conf/eval.yaml)."""

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch: idle OpenMP threads must not spin

import logging  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import TYPE_CHECKING  # noqa: E402

import hydra  # noqa: E402

import semiseq.config  # noqa: E402,F401  (stores the schemas conf/ extends, before Hydra composes)
from omegaconf import DictConfig, open_dict  # noqa: E402

if TYPE_CHECKING:
    from semiseq.inference import Model

warnings.filterwarnings("ignore", message=".*LeafSpec.*")  # Lightning 2.6 on torch 2.13, harmless

log = logging.getLogger("eval")


def run_test(cfg: DictConfig, model: "Model", run_dir: Path) -> None:
    """Run the test loop on the data's test split; print and log the result, write eval.json."""
    from hydra.utils import instantiate

    from semiseq import inference, pipeline, tracking
    from semiseq.atomic import write_json

    with open_dict(cfg):  # the checkpoint's network, for the loggers (wandb tags it) and the logged config
        cfg.model = dict(model.task.hparams)
    corpus = pipeline.build_corpus(cfg)
    loggers = tracking.make_loggers(cfg, run_dir, "eval", [corpus.name, f"checkpoint:{Path(model.path).name}"])
    trainer = instantiate(cfg.trainer, _partial_=True, default_root_dir=str(run_dir), logger=loggers or False)
    r = inference.evaluate(model, corpus, trainer, cfg.batch_size)
    write_json(run_dir / "eval.json", r)
    tracking.finish_loggers(loggers)
    log.info("confusion matrix (rows: true class, columns: predicted):\n%s",
             confusion_table(r["class_names"], r["confusion_matrix"]))
    print(f"[semiseq] {corpus.name} test: accuracy {100 * r['test/acc']:.2f}% (error {r['test/error']:.2f}%) on "
          f"{r['num_examples']} examples -> {run_dir / 'eval.json'}", flush=True)


def confusion_table(names: list[str], matrix: list[list[int]]) -> str:
    """The confusion matrix as aligned text, one row per true class."""
    corner = "true\\pred"
    width = max(len(str(x)) for x in [corner, *names, *(n for row in matrix for n in row)]) + 2
    lines = [corner.rjust(width) + "".join(name.rjust(width) for name in names)]
    lines += [name.rjust(width) + "".join(str(n).rjust(width) for n in row) for name, row in zip(names, matrix)]
    return "\n".join(lines)


def run(cfg: DictConfig) -> None:
    """Check the arguments, load the checkpoint and run ``cfg.action``."""
    from semiseq import SemiseqError

    if not cfg.ckpt_path:
        raise SemiseqError("no checkpoint given; pass ckpt_path=PATH (results.json's best_checkpoint for a "
                           "classifier, or checkpoints/pretrained.ckpt of a pretraining run)")
    import torch

    from semiseq import inference

    # Hydra already logs to the console and the run's log file: drop Lightning's own console handler (there once
    # Lightning is imported), which would print every Lightning line a second time.
    logging.getLogger("lightning").handlers.clear()
    if cfg.get("threads"):
        torch.set_num_threads(cfg.threads)
    run_dir = Path(cfg.paths.output_dir)
    model = inference.load(cfg.ckpt_path, cfg.device)
    if cfg.action == "test":
        return run_test(cfg, model, run_dir)
    start = time.perf_counter()
    args = dict(batch_size=cfg.batch_size, text_column=cfg.text_column, encoding=cfg.encoding,
                progress=cfg.trainer.enable_progress_bar)
    if cfg.action == "predict":
        output = cfg.output or run_dir / "predictions.jsonl"
        count = inference.predict_file(model, cfg.input, output, **args)
    else:
        output, _, count = inference.embed_file(model, cfg.input, cfg.output or run_dir / "embeddings", **args)
    seconds = time.perf_counter() - start
    # stdout may be carrying the predictions (output=-): the summary then goes to stderr
    print(f"[semiseq] {cfg.action}: {count} texts in {seconds:.1f}s ({count / seconds:,.0f} texts/s) -> {output}",
          file=sys.stderr if str(output) == "-" else sys.stdout, flush=True)


@hydra.main(version_base=None, config_path="conf", config_name="eval")
def main(cfg: DictConfig) -> None:
    from semiseq import SemiseqError, cli

    try:
        cli.check(cfg)
        run(cfg)
    except SemiseqError as e:  # bad input: one clear line, no stack trace
        cli.fail(e)
    except BrokenPipeError:  # `output=- | head`: the reader has what it wanted
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # so the exit's flush cannot fail again
        sys.exit(1)


if __name__ == "__main__":
    from semiseq import cli

    cli.run(main)  # a config error (unknown option or key) is one line too
