"""Finished runs as a markdown table beside the paper's numbers, plus plots:

    python -m semiseq.report PATH [PATH ...] [--out DIR] [--wandb ENTITY/PROJECT --group NAME]

A PATH is a run folder, a multirun, an experiment folder (``logs/<name>``) or all of ``logs/``: every
``results.json`` below it is a finished run. Each report folder keeps the runs it read (``runs.jsonl.gz``: a line per
run, its results and its config), and that file, or a folder of reports without runs (committed under docs/), is a
PATH too: a later report pools them with new runs after their logs are gone; a run read twice counts once.

Fine-tuning runs are grouped into variants (data, mode, init — with the pretraining settings that differ among its
runs, e.g. ``sa pretrain.max_steps=30000`` —, readout, unlabeled source, network, perturbation, label budget, and the
fine-tuning settings that differ among the runs) over seeds and folds; pretraining runs get a table of their own, a
row per objective, corpus, network and number of steps. Where a variant was fine-tuned with several settings (a grid,
``hparams_search=finetune_grid``), a search table picks per variant the setting with the best mean validation
accuracy: the fair comparison, each init searched alike.
"""

from __future__ import annotations

import argparse
import csv
import gzip
import json
import math
import statistics
import sys
from collections import Counter
from datetime import datetime
from pathlib import Path
from typing import NamedTuple

import yaml

from semiseq import SemiseqError, atomic

# Dai & Le 2015, test error % (/work/shared/PAPER.md). Key: (data, init, variation), where the variation
# lists what differs from a 1-layer classifier with the last-step readout, pretrained on the data's own text.
PAPER = {
    ("imdb", "random", ""): ("LSTM", 13.50),
    ("imdb", "word2vec", ""): ("LSTM + word2vec", 10.00),
    ("imdb", "lm", ""): ("LM-LSTM", 7.64),
    ("imdb", "sa", ""): ("SA-LSTM", 7.24),
    ("imdb", "sa", "linear_gain"): ("SA-LSTM + linear gain", 9.17),
    ("imdb", "sa", "joint"): ("SA-LSTM + joint training", 14.70),
    ("rt", "lm", ""): ("LM-LSTM", 21.7),
    ("rt", "sa", ""): ("SA-LSTM (RT only)", 20.3),
    ("rt", "sa", "unlabeled imdb"): ("SA-LSTM, unlabeled IMDB", 18.6),
    ("rt", "sa", "unlabeled amazon"): ("SA-LSTM, unlabeled Amazon reviews", 16.7),
    ("newsgroups20", "random", ""): ("LSTM (?)", 18.0),
    ("newsgroups20", "lm", ""): ("LM-LSTM (?)", 15.3),
    ("newsgroups20", "sa", ""): ("SA-LSTM", 15.6),
    ("dbpedia_char", "random", ""): ("LSTM", 13.64),
    ("dbpedia_char", "lm", ""): ("LM-LSTM", 1.50),
    ("dbpedia_char", "random", "linear_gain"): ("LSTM + linear gain", 1.32),
    ("dbpedia_char", "sa", ""): ("SA-LSTM", 2.34),
    ("dbpedia_char", "sa", "3 layers, linear_gain"): ("SA-LSTM 3-layer + linear gain", 1.19),
    ("cifar10_rows", "random", ""): ("LSTM", 26.0),
    ("cifar10_rows", "lm", ""): ("LM-LSTM", 18.0),
}
INIT_ORDER = ["random", "word2vec", "lm", "sa"]
# Fine-tuning settings a report tells apart when its runs differ in them (as the override that sets each).
SETTINGS = ["finetune.lr", "finetune.head_lr", "finetune.max_epochs", "finetune.batch_size", "finetune.weight_decay",
            "finetune.lr_decay", "finetune.schedule", "finetune.gradual_unfreezing", "model.head.dropout",
            "model.backbone.embed_dropout", "perturbation.epsilon", "mode.weight"]
# Pretraining settings a report tells apart among runs fine-tuned from pretrained weights (in the init's name: they
# are another start, not a fine-tuning choice the search may pick among) and in the pretraining table. pretrain.seed
# tells them apart only where it is fixed (rt_cpu's 0); where it follows the seed, each seed pretrains its own. Of a
# word2vec init only pretrain.seed (its vectors' seed) counts.
PRETRAINING = ["pretrain.max_steps", "pretrain.batch_size", "pretrain.lr", "objective.noise", "objective.adapt_steps",
               "objective.adapt_lr", "pretrain.seed"]


class Variant(NamedTuple):
    data: str
    mode: str  # finetune, or joint-<objective>
    init: str
    readout: str
    unlabeled: str  # extra unlabeled source ("" = the data's own text only)
    model: str  # layers x hidden units
    perturbation: str = ""  # of the word embeddings while fine-tuning ("" = none)
    labels: str = ""  # the label budget (data.num_labels; "" = every training label)
    finetuning: str = ""  # the fine-tuning settings among SETTINGS in which the report's runs differ


class Pretraining(NamedTuple):
    objective: str
    data: str
    unlabeled: str
    model: str
    steps: str = ""  # pretrain.max_steps ("" for word2vec, which counts epochs)


def _get(cfg: dict, key: str, default=None):
    """``cfg["a"]["b"]`` for key "a.b" (or a flat "a.b" key, as wandb may store it)."""
    if key in cfg:
        return cfg[key]
    for part in key.split("."):
        if not isinstance(cfg, dict) or part not in cfg:
            return default
        cfg = cfg[part]
    return cfg


def paper_row(v: Variant) -> tuple[str, float] | None:
    """The paper's (row, test error %) for a variant, or None where the paper has none (or a label budget)."""
    if v.labels or v.perturbation:
        return None
    mode, _, objective = v.mode.partition("-")
    if mode == "joint" and v.init != "random":  # the paper's joint training starts from random weights
        return None
    layers = v.model.split("x")[0]
    tags = [f"{layers} layers" if layers != "1" else "", v.readout if v.readout != "last" else "",
            "joint" if mode == "joint" else "", f"unlabeled {v.unlabeled}" if v.unlabeled else ""]
    return PAPER.get((v.data, objective or v.init, ", ".join(t for t in tags if t)))


RUNS = "runs.jsonl.gz"  # the runs a report read, beside its report.md


def make_run(result: dict, cfg: dict, run_dir: Path | None = None, source: str | None = None) -> dict:
    """One finished run from its results (results.json or a wandb summary) and its config; ``source`` names it
    (its folder, by default) so that a run read twice, from its folder and from a report's RUNS, counts once."""
    mode = result.get("mode") or _get(cfg, "mode.name", "finetune")
    data = result.get("data") or _get(cfg, "data.name", "?")
    unlabeled = _get(cfg, "data.unlabeled") or ""
    size = lambda key: _get(cfg, f"model.backbone.{key}", _get(cfg, f"model.{key}", "?"))  # noqa: E731 (older runs)
    model = f"{size('num_layers')}x{size('hidden_dim')}"
    objective = result.get("objective") or _get(cfg, "objective.name", "?")
    if objective in ("sa", "lm") and _get(cfg, "objective.embeddings"):  # pretraining started from word2vec vectors
        objective += f"+{_get(cfg, 'objective.embeddings')}" + ("(frozen)" if _get(cfg, "objective.freeze_embeddings")
                                                                else "")
    source = source or (str(run_dir.resolve()) if run_dir else None)
    run = dict(dir=run_dir, seed=_get(cfg, "seed"), fold=_get(cfg, "data.fold"), wall_s=result.get("wall_s"), mode=mode,
               record={"run": source, "result": result, "config": cfg})
    if mode == "pretrain":
        steps = "" if objective == "word2vec" else str(_get(cfg, "pretrain.max_steps") or "")
        if noise := _get(cfg, "objective.noise"):  # a denoising SA
            objective += f" objective.noise={noise}"
        if result.get("adapted"):  # its stage on the task's text (the pretraining it starts from: a run of its own)
            objective += "".join(f" objective.{k}={v}" for k in ("adapt_steps", "adapt_lr")
                                 if (v := _get(cfg, f"objective.{k}")) is not None)
        return dict(run, key=Pretraining(objective, data, unlabeled, model, steps), loss=result.get("val/loss"),
                    ppl=result.get("val/ppl"), pretraining={"pretrain.seed": _get(cfg, "pretrain.seed")})
    error = result.get("test/error")
    if error is None and result.get("test/acc") is not None:
        error = 100 * (1 - result["test/acc"])
    init = result.get("init") or ("random" if objective == "none" or mode == "joint" else objective)
    if init == objective.partition("+")[0]:
        init = objective
    readout = result.get("readout") or _get(cfg, "model.head.readout") or "last"
    mode = f"joint-{objective}" if mode == "joint" else mode
    budget = _get(cfg, "data.num_labels")
    perturbation = result.get("perturbation") or _get(cfg, "perturbation.name") or "none"
    val_acc = result.get("val/acc_best")
    settings = {key: _get(cfg, key) for key in SETTINGS}
    if settings["finetune.head_lr"] == settings["finetune.lr"]:
        settings["finetune.head_lr"] = None  # null: the head learns at the lr
    if perturbation == "none":
        settings["perturbation.epsilon"] = None
    start = init.partition("+")[0]  # word2vec's vectors depend on no step count or rate: only its seed tells them apart
    pretraining = [] if start == "random" else ["pretrain.seed"] if start == "word2vec" else PRETRAINING
    return dict(run, key=Variant(data, mode, init, readout, unlabeled, model,
                                 "" if perturbation == "none" else perturbation, str(budget or "")), error=error,
                labels=result.get("num_labels"), settings=settings,
                pretraining={key: _get(cfg, key) if key == "pretrain.seed" else _get(cfg, key) or None  # 0: unset
                             for key in pretraining},
                val_acc=None if val_acc is None or math.isnan(val_acc) else val_acc)


def _starts(rs: list[dict], keys: list[str]) -> list[str]:
    """The pretraining settings among keys in which runs differ; pretrain.seed only where it does not follow the seed
    (there each seed pretrains its own, and the seeds are one init)."""
    return [k for k in keys if len({str(r["pretraining"].get(k)) for r in rs}) > 1
            and not (k == "pretrain.seed" and all(r["pretraining"].get(k) == r["seed"] for r in rs))]


def tell_pretrainings_apart(runs: list[dict]) -> list[dict]:
    """Pretraining runs of one recipe with fixed pretrain seeds that differ: a row each (``sa pretrain.seed=1``)."""
    tagged = []
    for rs in group(runs).values():
        split = _starts(rs, ["pretrain.seed"])
        for r in rs:
            name = f"{r['key'].objective} pretrain.seed={r['pretraining']['pretrain.seed']}"
            tagged.append(dict(r, key=r["key"]._replace(objective=name)) if split else r)
    return tagged


def tell_settings_apart(runs: list[dict]) -> list[dict]:
    """Fine-tuning runs keyed also by the settings in which they differ from the other runs of their variant
    (``finetune.lr=0.003``, as the override that sets it; null: the default, e.g. a head at the backbone's rate).
    Pretrained inits that differ in their pretraining are other inits: ``sa pretrain.max_steps=30000``."""
    tagged = []
    show = lambda v: "null" if v is None else v  # noqa: E731
    for rs in group(runs).values():
        varying = [k for k in SETTINGS if len({str(r["settings"].get(k)) for r in rs}) > 1]
        starts = _starts(rs, PRETRAINING)
        for r in rs:
            init = " ".join([r["key"].init, *(f"{k}={show(r['pretraining'].get(k))}" for k in starts)])
            tagged.append(dict(r, key=r["key"]._replace(
                init=init, finetuning=" ".join(f"{k}={show(r['settings'].get(k))}" for k in varying))))
    return tagged


def search(finetune: dict) -> dict:
    """Per variant fine-tuned with several settings: {variant without its settings: (the setting with the best mean
    validation accuracy, the first listed on a tie; how many settings were tried)}."""
    tried = {}
    for v, rs in finetune.items():
        accs = [r["val_acc"] for r in rs if r.get("val_acc") is not None]
        if v.finetuning and len(accs) == len(rs):
            tried.setdefault(v._replace(finetuning=""), []).append((statistics.mean(accs), v))
    return {base: (max(points, key=lambda p: p[0])[1], len(points)) for base, points in tried.items()
            if len(points) > 1}


def across_pretrainings(finetune: dict, best: dict) -> dict:
    """Inits pretrained more than once (a fixed pretrain.seed each): {the init without its seed: each pretraining's
    variant (its searched pick, or its one setting)}, so that an init is judged over its pretrainings, not by one."""
    pooled, settings = {}, Counter(v._replace(finetuning="") for v in finetune)
    for v in finetune:
        base = v._replace(finetuning="")
        if (v != best[base][0]) if base in best else settings[base] > 1:
            continue  # not the pick of a searched pretraining, nor the one setting of an unsearched one
        init = " ".join(w for w in v.init.split(" ") if not w.startswith("pretrain.seed="))
        if init != v.init:
            pooled.setdefault(base._replace(init=init), []).append(v)
    return {v: picks for v, picks in pooled.items() if len(picks) > 1}


def _read(path: Path, parse) -> dict:
    try:
        value = parse(path.read_text())
    except (OSError, ValueError, yaml.YAMLError) as e:
        raise SemiseqError(f"cannot read {path}: {type(e).__name__}: {e}; delete or re-run that run") from None
    if not isinstance(value, dict):
        raise SemiseqError(f"cannot read {path}: expected a mapping, got {type(value).__name__}; delete or re-run it")
    return value


def load_run(path: Path) -> dict:
    """A run from its results.json and the Hydra config beside it (or the parent run's, for a
    ``pretrain-*`` folder made on demand)."""
    result = _read(path, json.loads)
    configs = [d / ".hydra" / "config.yaml" for d in (path.parent, path.parent.parent)]
    cfg = next((_read(c, yaml.safe_load) for c in configs if c.exists()), {})
    return make_run(result, cfg, path.parent)


def load_records(path: Path) -> dict[str, dict]:
    """The runs of a report's RUNS file, by source; a run whose folder is still there keeps it (its curves)."""
    runs = {}
    try:
        with gzip.open(path, "rt", encoding="utf-8") as f:
            for n, line in enumerate(f, 1):
                record = json.loads(line)
                if not isinstance(record, dict) or not {"run", "result", "config"} <= record.keys():
                    raise ValueError(f"line {n} is not a run (run, result, config)")
                folder = Path(record["run"]) if record["run"] and Path(record["run"]).is_dir() else None
                runs[record["run"] or f"{path}:{n}"] = make_run(record["result"], record["config"], folder,
                                                                record["run"])
    except (OSError, EOFError, ValueError) as e:  # gzip.BadGzipFile is an OSError, json's errors ValueErrors
        raise SemiseqError(f"cannot read {path}: {type(e).__name__}: {e}; delete it or write it again with "
                           f"python -m semiseq.report") from None
    return runs


def find_runs(paths: list[str]) -> tuple[list[dict], int]:
    """Every finished run under the paths (a run's own results.json before a report's record of it; a folder holding
    runs is read only for them), and the number of run folders without results.json."""
    found, recorded, skipped = {}, {}, set()
    for path in map(Path, paths):
        if not path.exists():
            raise SemiseqError(f"{path} does not exist; give a run folder, a multirun, an experiment folder, logs/ "
                               f"or a report's {RUNS}")
        files = [path] if path.is_file() else list(path.rglob("results.json"))
        found.update({f.resolve(): f for f in files if f.name != RUNS})
        # a folder of runs is read live (a run deleted from it is gone, whatever its reports hold); reports' records
        # are read from a report, a folder of reports (docs/) or the file
        for f in [path] if path.name == RUNS else [] if files or path.is_file() else path.rglob(RUNS):
            recorded.update(load_records(f))
        if path.is_dir():
            skipped |= {h.parent.resolve() for h in path.rglob(".hydra") if not (h.parent / "results.json").exists()
                        and not (h.parent / "resumed.json").exists()}  # a `resume=` command's folder: not a run
    runs = {str(f.parent): load_run(found[f]) for f in sorted(found)}
    return list(runs.values()) + [r for source, r in recorded.items() if source not in runs], len(skipped)


def wandb_runs(path: str, group: str) -> tuple[list[dict], int]:
    """The finished runs of one wandb group, read like local ones from their summary and config."""
    import wandb

    try:
        found = list(wandb.Api().runs(path, filters={"group": group}))
    except Exception as e:  # no key, no network, no such project: one line, not a traceback
        raise SemiseqError(f"cannot read wandb runs of {path} group {group!r}: {e}") from None
    runs = []
    for r in found:
        if r.state != "finished":
            continue
        summary = r.summary
        tags = dict(t.split(":", 1) for t in r.tags or [] if ":" in t)
        result = {"mode": r.job_type, "objective": tags.get("objective") or tags.get("joint"), "init": tags.get("init"),
                  "wall_s": summary.get("_runtime"),
                  **{k: summary.get(k) for k in ("test/error", "test/acc", "val/acc_best", "val/loss", "val/ppl")}}
        runs.append(make_run(result, dict(r.config), source=f"wandb:{path}/{getattr(r, 'id', len(runs))}"))
    return runs, len(found) - len(runs)


def group(runs: list[dict]) -> dict:
    by_key = {}
    for r in runs:
        by_key.setdefault(r["key"], []).append(r)
    init = lambda k: k[2].split(" ")[0]  # noqa: E731 (an init's name, without the pretraining that tells it apart)
    order = lambda k: (k[0], k[1], INIT_ORDER.index(init(k)) if init(k) in INIT_ORDER else 9, k)  # noqa: E731
    return dict(sorted(by_key.items(), key=lambda kv: order(kv[0])))


def _mean(runs: list[dict], key: str, fmt: str = "{:.2f}") -> str:
    values = [r[key] for r in runs if r[key] is not None]
    return fmt.format(statistics.mean(values)) if values else "—"


def _cells(v: Variant) -> str:
    return " | ".join([*(x or "—" for x in v[:-2]), v.labels or "all", v.finetuning or "—"])


def _repeats(rs: list[dict]) -> int:
    """Runs of a row with the seed, fold and pretraining of another: the same settings run again (on another machine,
    say) or a setting the report does not tell apart. A run is known by its folder, so each counts as a seed of its
    own. (A row pooled across pretrainings holds each seed once per pretraining: no repeat.)"""
    runs = Counter((r["seed"], r.get("fold"), json.dumps(r.get("pretraining"), sort_keys=True, default=str))
                   for r in rs if r["seed"] is not None)
    return sum(n - 1 for n in runs.values())


def _errors(rs: list[dict]) -> str:
    """n | seeds | mean ± std | min | max of the runs' test errors."""
    errors, seeds = [r["error"] for r in rs], sorted({str(r["seed"]) for r in rs if r["seed"] is not None})
    std = statistics.stdev(errors) if len(errors) > 1 else 0.0
    again = f" ({n} repeated)" if (n := _repeats(rs)) else ""
    return (f"{len(rs)} | {','.join(seeds) or '—'}{again} | {statistics.mean(errors):.2f} ± {std:.2f} | "
            f"{min(errors):.2f} | {max(errors):.2f}")


def markdown(finetune: dict, pretrain: dict, header: str) -> str:
    lines = [header]
    if finetune:
        lines += ["", "## Fine-tuning: test error % (lower is better), mean ± std over seeds and folds", "",
                  "| data | mode | init | readout | unlabeled | model | perturbation | labels | fine-tuning | n "
                  "| seeds | test error % | min | max | wall s | paper |", "|" + "---|" * 16]
        for v, rs in finetune.items():
            lines.append(f"| {_cells(v)} | {_errors(rs)} | {_mean(rs, 'wall_s', '{:.1f}')} | "
                         f"{f'{paper[1]:.2f} ({paper[0]})' if (paper := paper_row(v)) else '—'} |")
        best = search(finetune)
        if best:
            lines += ["", "## Fine-tuning search: per variant, the setting with the best mean validation accuracy", "",
                      "| data | mode | init | readout | unlabeled | model | perturbation | labels | best setting "
                      "| settings tried | val acc % | n | seeds | test error % | min | max |", "|" + "---|" * 16]
            for v, (chosen, tried) in best.items():
                rs = finetune[chosen]
                lines.append(f"| {_cells(chosen)} | {tried} | {100 * statistics.mean(r['val_acc'] for r in rs):.2f} "
                             f"| {_errors(rs)} |")
        if pooled := across_pretrainings(finetune, best):
            lines += ["", "## Across pretrainings: each pretraining's pick (or its one setting), its runs pooled", "",
                      "| data | mode | init | readout | unlabeled | model | perturbation | labels | each one's setting "
                      "| pretrainings | each one's test error % | n | seeds | test error % | min | max |",
                      "|" + "---|" * 16]
            for v, picks in pooled.items():
                each = " / ".join(f"{statistics.mean(r['error'] for r in finetune[p]):.2f}" for p in picks)
                settings = v._replace(finetuning=" / ".join(p.finetuning or "—" for p in picks))
                lines.append(f"| {_cells(settings)} | {len(picks)} | {each} "
                             f"| {_errors([r for p in picks for r in finetune[p]])} |")
    if pretrain:
        lines += ["", "## Pretraining: validation loss at the end, mean over runs", "",
                  "| objective | data | unlabeled | model | steps | n | val/loss | val/ppl | wall s |",
                  "|" + "---|" * 9]
        for k, rs in pretrain.items():
            lines.append(f"| {' | '.join(x or '—' for x in k)} | {len(rs)} | {_mean(rs, 'loss', '{:.3f}')} "
                         f"| {_mean(rs, 'ppl')} | {_mean(rs, 'wall_s', '{:.1f}')} |")
    return "\n".join(lines) + "\n"


def _metrics(run_dir: Path | None, x: str, y: str) -> tuple[list, list]:
    """(x, y) points of a run's CSV metrics where y was logged."""
    files = sorted(run_dir.glob("csv/version_*/metrics.csv")) if run_dir else []
    if not files:
        return [], []
    with open(files[-1]) as f:
        rows = list(csv.DictReader(f))
    points = [(float(row[x]), float(row[y])) for row in rows if row.get(y) and row.get(x)]
    return [p[0] for p in points], [p[1] for p in points]


def plot(finetune: dict, pretrain: dict, out: Path) -> list[Path]:
    """test_error.png (a bar per variant, the paper's value as a marker) and curves.png (per-run learning curves)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    color = plt.get_cmap("tab10")
    label = lambda k: " ".join(x for x in k if x not in ("", "finetune", "last"))  # noqa: E731
    fig, ax = plt.subplots(figsize=(9, 1.5 + 0.45 * len(finetune)))
    legend = {"runs": "runs", "paper": "paper"}  # each label once: pop it when used
    for i, (v, rs) in enumerate(finetune.items()):
        errors = [r["error"] for r in rs]
        ax.barh(i, statistics.mean(errors), xerr=statistics.stdev(errors) if len(errors) > 1 else 0, capsize=4,
                color=color(i % 10), alpha=0.7)
        ax.scatter(errors, [i] * len(errors), s=12, color="black", zorder=3, label=legend.pop("runs", None))
        if paper := paper_row(v):
            ax.scatter([paper[1]], [i], marker="D", s=50, color="red", zorder=4, label=legend.pop("paper", None))
    ax.set_yticks(range(len(finetune)), [label(v) for v in finetune])
    ax.invert_yaxis()
    ax.set_xlabel("test error % (bar: mean, whisker: std over seeds/folds)")
    if finetune:
        ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0))
    else:
        ax.text(0.5, 0.5, "no fine-tuning runs", ha="center", transform=ax.transAxes)
    fig.tight_layout()
    fig.savefig(out / "test_error.png", dpi=120)
    plt.close(fig)

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    for ax, groups, (x, y) in ((axes[0], pretrain, ("step", "val/loss")), (axes[1], finetune, ("epoch", "val/acc"))):
        for i, (k, rs) in enumerate(groups.items()):
            for j, r in enumerate(rs):
                xs, ys = _metrics(r["dir"], x, y)
                ax.plot(xs, ys, marker=".", color=color(i % 10), alpha=0.8, label=label(k) if j == 0 else None)
        ax.set_xlabel(x), ax.set_ylabel(y), ax.set_title(f"{'pretraining' if x == 'step' else 'fine-tuning'}: {y}")
        if ax.lines:
            ax.legend(fontsize=7)
        else:
            ax.text(0.5, 0.5, "no CSV metrics", ha="center", transform=ax.transAxes)
    fig.tight_layout()
    fig.savefig(out / "curves.png", dpi=120)
    plt.close(fig)
    written = [out / "test_error.png", out / "curves.png"]
    curves = label_curves(finetune)
    if curves:
        fig, ax = plt.subplots(figsize=(7, 4.5))
        for i, (k, points) in enumerate(curves.items()):
            xs = sorted(points)
            means = [statistics.mean(points[x]) for x in xs]
            stds = [statistics.stdev(points[x]) if len(points[x]) > 1 else 0.0 for x in xs]
            ax.errorbar(xs, means, yerr=stds, marker="o", capsize=4, color=color(i % 10), label=label(k))
            for x in xs:
                ax.scatter([x] * len(points[x]), points[x], s=10, color=color(i % 10), alpha=0.5)
        ax.set_xscale("log")
        budgets = sorted({x for points in curves.values() for x in points})  # ticks at the budgets run, not 3x10^2
        ax.set_xticks(budgets, [f"{x:,}" for x in budgets]), ax.xaxis.set_minor_formatter(plt.NullFormatter())
        ax.set_xlabel("training labels (log scale)"), ax.set_ylabel("test error % (mean ± std over seeds)")
        ax.set_title("label efficiency"), ax.legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(out / "label_efficiency.png", dpi=120)
        plt.close(fig)
        written.append(out / "label_efficiency.png")
    return written


def label_curves(finetune: dict) -> dict:
    """Test errors by number of training labels, one curve per variant measured at two label counts or more:
    {variant without its budget: {labels: [errors]}}."""
    curves = {}
    for v, rs in finetune.items():
        for r in rs:
            if r.get("labels"):
                curves.setdefault(v._replace(labels=""), {}).setdefault(r["labels"], []).append(r["error"])
    return {k: points for k, points in curves.items() if len(points) > 1}


def out_dir(out: str | None, paths: list[str]) -> Path:
    """``--out``, else ``<first PATH>/report``; a new timestamped folder when a report is already there."""
    first = Path(paths[0]) if paths else Path(".")
    path = Path(out) if out else (first.parent if first.is_file() else first) / "report"
    if (path / "report.md").exists():
        path = path.with_name(f"{path.name}-{datetime.now():%Y-%m-%d_%H-%M-%S_%f}")
    path.mkdir(parents=True, exist_ok=True)
    return path


def report(paths: list[str], out: str | None = None, wandb_path: str | None = None, wandb_group: str | None = None):
    """Collect runs, write ``report.md`` and the plots into a new folder, print the tables; returns the folder."""
    runs, skipped = find_runs(paths)
    if wandb_path:
        more, more_skipped = wandb_runs(wandb_path, wandb_group)
        runs, skipped = runs + more, skipped + more_skipped
    finished = [r for r in runs if r["mode"] == "pretrain" or r["error"] is not None]  # a wandb run may lack test/*
    runs, skipped = finished, skipped + len(runs) - len(finished)
    sources = [*paths] + ([f"wandb {wandb_path} group {wandb_group}"] if wandb_path else [])
    if not runs:
        raise SemiseqError(f"no finished runs (results.json) in {', '.join(sources)}; {skipped} incomplete")
    finetune = group(tell_settings_apart([r for r in runs if r["mode"] != "pretrain"]))
    pretrain = group(tell_pretrainings_apart([r for r in runs if r["mode"] == "pretrain"]))
    header = (f"# semiseq report\n\n{len(runs)} finished runs from {', '.join(sources)} "
              f"({skipped} incomplete skipped), {datetime.now():%Y-%m-%d %H:%M}.")
    if repeated := sum(_repeats(rs) for rs in finetune.values()):
        header += (f" {repeated} fine-tuning runs repeat the seed, fold and pretraining of another run in their row "
                   "(\"repeated\" beside the row's seeds): the same settings run again, on another machine say, or a "
                   "setting this report does not tell apart; each counts as a seed of its own.")
    out = out_dir(out, paths)
    lines = "".join(json.dumps(r["record"], default=str) + "\n" for r in runs)
    atomic.write_bytes(out / RUNS, gzip.compress(lines.encode(), mtime=0))  # mtime 0: the same runs, the same bytes
    md = markdown(finetune, pretrain, header)
    atomic.write_text(out / "report.md", md + "\n![test error](test_error.png)\n\n![learning curves](curves.png)\n")
    written = [out / "report.md", out / RUNS, *plot(finetune, pretrain, out)]
    if out.joinpath("label_efficiency.png").is_file():
        atomic.write_text(out / "report.md", out.joinpath("report.md").read_text()
                          + "\n![label efficiency](label_efficiency.png)\n")
    print(md + "\n" + "\n".join(f"wrote {p}" for p in written), flush=True)
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m semiseq.report", description=__doc__.split("\n\n")[0])
    parser.add_argument("paths", nargs="*", metavar="PATH",
                        help=f"run, multirun, experiment or report folders, logs/, or a report's {RUNS}")
    parser.add_argument("--out", help="output folder (default: <first PATH>/report)")
    parser.add_argument("--wandb", metavar="ENTITY/PROJECT", help="also read the runs of a wandb group (online)")
    parser.add_argument("--group", help="the wandb group: the experiment name")
    args = parser.parse_args(argv)
    if not args.paths and not args.wandb:
        parser.error("give a PATH or --wandb ENTITY/PROJECT --group NAME")
    if args.wandb and not args.group:
        parser.error("--wandb needs --group NAME (the experiment name)")
    try:
        report(args.paths, args.out, args.wandb, args.group)
    except SemiseqError as e:
        print(f"semiseq: error: {e}", file=sys.stderr, flush=True)
        sys.exit(1)


if __name__ == "__main__":
    main()
