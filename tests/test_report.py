"""`python -m semiseq.report` on real tiny runs (2 inits x 2 seeds of train.py), and on a fake wandb API."""

import gzip
import json
import shutil
import statistics
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml
from PIL import Image

from semiseq import SemiseqError
from semiseq.report import (
    Variant,
    group,
    label_curves,
    main,
    make_run,
    paper_row,
    report,
)

from .test_train import train


@pytest.fixture(scope="module")
def logs(tmp_path_factory):
    """logs/ with a finished 2x2 multirun (init=random,sa x seed=0,1) and one run folder left incomplete."""
    tmp = tmp_path_factory.mktemp("report")
    # a higher fine-tuning lr than smoke's, so that seeds give different test errors
    out = train(tmp, "-m", "init=random,sa", "seed=0,1", "logger=csv", "finetune.lr=0.03", "finetune.head_lr=null",
                "finetune.max_epochs=3")
    assert out.returncode == 0, out.stderr[-3000:]
    (tmp / "logs" / "smoke" / "runs" / "crashed" / ".hydra").mkdir(parents=True)
    return tmp / "logs"


def cells(md: str, start: str) -> list[str]:
    (line,) = [row for row in md.splitlines() if row.startswith(start)]
    return [c.strip() for c in line.strip("|").split("|")]


def test_table_aggregates_seeds_and_writes_plots(logs, capsys):
    out = report([str(logs)])
    assert out == logs / "report"
    md = (out / "report.md").read_text()
    assert capsys.readouterr().out.startswith("# semiseq report") and "(1 incomplete skipped)" in md
    jobs = sorted((logs / "smoke" / "multiruns").glob("*/[0-9]"))
    results = [json.loads((j / "results.json").read_text()) for j in jobs]
    for init in ("random", "sa"):
        errors = [r["test/error"] for r in results if r["init"] == init]
        row = cells(md, f"| synthetic | finetune | {init} | last | — | 1x16 | — | all | — |")
        assert row[9:14] == ["2", "0,1", f"{statistics.mean(errors):.2f} ± {statistics.stdev(errors):.2f}",
                             f"{min(errors):.2f}", f"{max(errors):.2f}"]
        assert row[15] == "—"  # the paper has no synthetic data
    pretrained = [json.loads(p.read_text()) for p in (logs / "smoke").glob("multiruns/*/*/pretrain-sa/results.json")]
    assert len(pretrained) == 2  # pretraining is seeded by the run's seed: one per seed
    row = cells(md, "| sa | synthetic | — | 1x16 |")
    assert row[4:7] == ["8", "2", f"{statistics.mean(r['val/loss'] for r in pretrained):.3f}"]
    for name in ("test_error.png", "curves.png"):
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        with Image.open(out / name) as image:
            image.verify()
            assert min(image.size) > 100


def test_a_run_repeated_elsewhere_is_marked_where_it_counts_twice(logs, tmp_path):
    """The same config and seed from another folder (a rerun, another machine's) is another run: the report counts it,
    and says so in the row's seeds and its header; the same seed on another fold is no repeat."""
    job = next(j for j in sorted((logs / "smoke" / "multiruns").glob("*/[0-9]"))
               if json.loads((j / "results.json").read_text())["init"] == "random")
    copy = shutil.copytree(job, tmp_path / "elsewhere" / "smoke" / "runs" / "r0")
    row = "| synthetic | finetune | random | last | — | 1x16 | — | all | — |"
    md = (report([str(logs), str(tmp_path / "elsewhere")], out=str(tmp_path / "r1")) / "report.md").read_text()
    assert cells(md, row)[9:11] == ["3", "0,1 (1 repeated)"]
    assert " 1 fine-tuning runs repeat the seed, fold and pretraining of another run" in md.split("\n## ")[0]
    config = yaml.safe_load((copy / ".hydra" / "config.yaml").read_text())
    config["data"]["fold"] = 1
    (copy / ".hydra" / "config.yaml").write_text(yaml.safe_dump(config))
    md = (report([str(logs), str(tmp_path / "elsewhere")], out=str(tmp_path / "r2")) / "report.md").read_text()
    assert cells(md, row)[9:11] == ["3", "0,1"] and "repeat the seed" not in md


def test_paper_column_for_a_known_variant(logs, tmp_path):
    job = sorted((logs / "smoke" / "multiruns").glob("*/[0-9]"))[-1]  # objective=sa
    run = shutil.copytree(job, tmp_path / "logs" / "rt" / "runs" / "r0")
    results = json.loads((run / "results.json").read_text())
    (run / "results.json").write_text(json.dumps(dict(results, data="rt")))
    cfg = yaml.safe_load((run / ".hydra" / "config.yaml").read_text())
    cfg["data"].update(name="rt", unlabeled="imdb")
    (run / ".hydra" / "config.yaml").write_text(yaml.safe_dump(cfg))
    md = (report([str(tmp_path / "logs")]) / "report.md").read_text()
    assert cells(md, "| rt | finetune | sa | last | imdb | 1x16 | — | all |")[15] == "18.60 (SA-LSTM, unlabeled IMDB)"


def test_label_budgets_make_a_label_efficiency_curve(tmp_path, monkeypatch):
    """Runs at several data.num_labels: a row per budget (no paper value: the paper used every label) and one curve
    per init over the number of labels, the seeds' spread as error bars, the log axis ticked at the budgets run."""
    from matplotlib.figure import Figure

    ticks, savefig = {}, Figure.savefig
    monkeypatch.setattr(Figure, "savefig", lambda fig, path, **kw: (
        ticks.setdefault(Path(path).name, [t.get_text() for t in fig.axes[0].get_xticklabels()]),
        savefig(fig, path, **kw)))

    def run(init, labels, seed, error):
        folder = tmp_path / "logs" / f"{init}-{labels}-{seed}"
        (folder / ".hydra").mkdir(parents=True)
        cfg = {"data": {"name": "imdb", "num_labels": labels}, "objective": {"name": init}, "seed": seed,
               "mode": {"name": "finetune"}, "model": {"backbone": {"num_layers": 1, "hidden_dim": 256}}}
        (folder / ".hydra" / "config.yaml").write_text(yaml.safe_dump(cfg))
        (folder / "results.json").write_text(json.dumps({"mode": "finetune", "data": "imdb", "init": init,
                                                         "num_labels": labels, "test/error": error}))

    for init, errors in (("random", {200: (48, 46), 1000: (40, 38)}), ("sa", {200: (30, 28), 1000: (20, 18)})):
        for labels, (e0, e1) in errors.items():
            run(init, labels, 0, e0), run(init, labels, 1, e1)
    out = report([str(tmp_path / "logs")], out=str(tmp_path / "r"))
    md = (out / "report.md").read_text()
    assert cells(md, "| imdb | finetune | sa | last | — | 1x256 | — | 200 | — |")[9:12] == ["2", "0,1", "29.00 ± 1.41"]
    assert cells(md, "| imdb | finetune | sa | last | — | 1x256 | — | 1000 |")[-1] == "—"
    assert "![label efficiency](label_efficiency.png)" in md
    with Image.open(out / "label_efficiency.png") as image:
        image.verify()
    assert ticks["label_efficiency.png"] == ["200", "1,000"]
    finetune = group([make_run(json.loads((d / "results.json").read_text()),
                               yaml.safe_load((d / ".hydra" / "config.yaml").read_text()))
                      for d in (tmp_path / "logs").iterdir()])
    curves = label_curves(finetune)
    assert {k.init: {n: sorted(e) for n, e in v.items()} for k, v in curves.items()} == {
        "random": {200: [46, 48], 1000: [38, 40]}, "sa": {200: [28, 30], 1000: [18, 20]}}


def test_runs_that_differ_in_fine_tuning_are_told_apart_and_each_init_is_searched_alike(tmp_path):
    """Runs of one variant at several fine-tuning settings: a row per setting, named by the overrides in which they
    differ (not by the ones they share, nor by a head_lr equal to the lr), and per variant the setting with the best
    mean validation accuracy, whose test error is the variant's result: chosen on validation, not on test."""
    def run(name, init, seed, val, error, lr=1e-3, epochs=4, perturbation="none", epsilon=5.0):
        folder = tmp_path / "logs" / name / str(seed)
        (folder / ".hydra").mkdir(parents=True)
        cfg = {"data": {"name": "rt"}, "objective": {"name": init}, "seed": seed, "mode": {"name": "finetune"},
               "model": {"backbone": {"num_layers": 1, "hidden_dim": 256}},
               "finetune": {"lr": lr, "head_lr": lr, "max_epochs": epochs, "batch_size": 32},
               "perturbation": {"name": perturbation, "epsilon": epsilon}}
        (folder / ".hydra" / "config.yaml").write_text(yaml.safe_dump(cfg))
        (folder / "results.json").write_text(json.dumps({"mode": "finetune", "data": "rt", "init": init,
                                                         "perturbation": perturbation, "val/acc_best": val,
                                                         "test/error": error}))

    for seed, (val_low, val_high) in enumerate(((0.70, 0.75), (0.72, 0.77))):
        run("random-low", "random", seed, val_low, 30.0 + 2 * seed)
        run("random-high", "random", seed, val_high, 28.0 + seed, lr=3e-3)
        run("sa-low", "sa", seed, 0.80, 20.0, epsilon=5.0 - 4 * seed)  # an epsilon no perturbation uses: one row
        run("sa-high", "sa", seed, 0.78, 18.0, lr=3e-3)  # better on test, worse on validation: not chosen
        run("sa-at-eps1", "sa", seed, 0.81, 17.0, perturbation="adversarial", epsilon=1.0)
        run("sa-at-eps5", "sa", seed, 0.79, 19.0, perturbation="adversarial")
        run("word2vec", "word2vec", seed, 0.79, 21.0, epochs=4 + 4 * seed)
    md = (report([str(tmp_path / "logs")], out=str(tmp_path / "r")) / "report.md").read_text()
    md, search = md.split("## Fine-tuning search")
    head = "| rt | finetune | random | last | — | 1x256 | — | all |"
    assert cells(md, f"{head} finetune.lr=0.001 |")[9:12] == ["2", "0,1", "31.00 ± 1.41"]
    assert cells(md, f"{head} finetune.lr=0.003 |")[9:12] == ["2", "0,1", "28.50 ± 0.71"]
    at = "| rt | finetune | sa | last | — | 1x256 | adversarial | all |"
    assert cells(md, f"{at} perturbation.epsilon=1.0 |")[11] == "17.00 ± 0.00"
    assert cells(md, f"{at} perturbation.epsilon=5.0 |")[11] == "19.00 ± 0.00"
    for epochs in (4, 8):  # one seed each: two settings, not one row of two seeds
        assert cells(md, f"| rt | finetune | word2vec | last | — | 1x256 | — | all | finetune.max_epochs={epochs} |")
    assert cells(search, f"{head}")[8:] == ["finetune.lr=0.003", "2", "76.00", "2", "0,1", "28.50 ± 0.71", "28.00",
                                            "29.00"]
    assert cells(search, "| rt | finetune | sa | last | — | 1x256 | — | all |")[8:12] == [
        "finetune.lr=0.001", "2", "80.00", "2"]
    assert cells(search, f"{at}")[8:10] == ["perturbation.epsilon=1.0", "2"]


def test_inits_pretrained_for_longer_are_other_inits_each_searched_on_its_own(tmp_path):
    """SA runs from 10,000 and from 30,000 pretraining steps: two inits (rows, searches and pretraining rows), not one
    init whose search picks among pretraining lengths; random init, the same in both, stays one row. So are a
    denoising SA and an SA with the adaptation stage (whose pretraining row is the adapted one; the pretraining it
    starts from is the plain SA's)."""
    def run(name, init, seed, val, error, steps, lr=1e-3, mode="finetune", noise=0.0, adapt=0, part=""):
        folder = tmp_path / "logs" / name / str(seed)
        (folder / ".hydra").mkdir(parents=True, exist_ok=True)
        cfg = {"data": {"name": "rt"}, "objective": {"name": init if init != "random" else "sa"}, "seed": seed,
               "mode": {"name": mode}, "model": {"backbone": {"num_layers": 1, "hidden_dim": 256}},
               "finetune": {"lr": lr}, "pretrain": {"max_steps": steps, "batch_size": 64, "lr": 2e-3}}
        cfg["objective"].update({"noise": noise} if noise or seed else {})  # runs of older code lack it: 0 alike
        cfg["objective"].update({"adapt_steps": adapt, "adapt_lr": None} if adapt or seed else {})
        (folder / ".hydra" / "config.yaml").write_text(yaml.safe_dump(cfg))
        result = ({"mode": "pretrain", "data": "rt", "objective": init, "val/loss": val,
                   "adapted": bool(adapt) and not part}
                  if mode == "pretrain" else
                  {"mode": "finetune", "data": "rt", "init": init, "val/acc_best": val, "test/error": error})
        (folder / part).mkdir(exist_ok=True)
        (folder / part / "results.json").write_text(json.dumps(result))

    for seed in (0, 1):
        for steps, (val, error) in ((10000, (0.78, 22.0)), (30000, (0.80, 21.0))):
            run(f"sa{steps}-low", "sa", seed, val, error, steps)
            run(f"sa{steps}-high", "sa", seed, val - 0.01, error - 1, steps, lr=3e-3)
            run(f"pretrain{steps}", "sa", seed, steps / 1e4, None, steps, mode="pretrain")
        run("random", "random", seed, 0.70, 30.0, 5000 * (seed + 1))  # its pretraining settings are never used
        run("denoising", "sa", seed, 0.81, 20.0, 30000, noise=0.1)
        run("pretrain-denoising", "sa", seed, 2.5, None, 30000, mode="pretrain", noise=0.1)
        run("adapted", "sa", seed, 0.82, 19.0, 10000, adapt=500)
        # mode=pretrain with the stage: the adapted weights in the run, the pretraining they start from beside them
        run("pretrain-adapted", "sa", seed, 0.9, None, 10000, mode="pretrain", adapt=500)
        run("pretrain-adapted", "sa", seed, 1.0, None, 10000, mode="pretrain", adapt=500, part="pretrain-sa")
    md = (report([str(tmp_path / "logs")], out=str(tmp_path / "r")) / "report.md").read_text()
    md, search = md.split("## Fine-tuning search")
    search, pretraining = search.split("## Pretraining")
    for steps, error in ((10000, "22.00"), (30000, "21.00")):
        head = (f"| rt | finetune | sa pretrain.max_steps={steps} objective.noise=null objective.adapt_steps=null "
                "| last | — | 1x256 | — | all |")
        assert cells(md, f"{head} finetune.lr=0.001 |")[9:12] == ["2", "0,1", f"{error} ± 0.00"]
        assert cells(search, head)[8:10] == ["finetune.lr=0.001", "2"]
    # the pretraining an adapted SA starts from is one more of the 10,000-step SA's
    assert [cells(pretraining, f"| sa | rt | — | 1x256 | {steps} |")[5] for steps in (10000, 30000)] == ["4", "2"]
    assert cells(md, "| rt | finetune | sa pretrain.max_steps=30000 objective.noise=0.1 objective.adapt_steps=null "
                     "| last |")[11] == "20.00 ± 0.00"
    assert cells(pretraining, "| sa objective.noise=0.1 | rt | — | 1x256 | 30000 |")[5:7] == ["2", "2.500"]
    assert cells(md, "| rt | finetune | sa pretrain.max_steps=10000 objective.noise=null objective.adapt_steps=500 "
                     "| last |")[11] == "19.00 ± 0.00"
    assert cells(pretraining, "| sa objective.adapt_steps=500 | rt | — | 1x256 | 10000 |")[5:7] == ["2", "0.900"]
    assert cells(md, "| rt | finetune | random | last | — | 1x256 | — | all | — |")[9] == "2"


def test_a_fixed_pretraining_seed_tells_inits_apart_a_following_one_does_not(tmp_path):
    """RT's SA pretrained twice (pretrain.seed 0 and 1, each for every fine-tuning seed): two inits, so that the
    pretraining's own spread shows. Where pretrain.seed follows the seed (each seed pretrains its own, the default),
    the seeds are one init, averaged. The same for word2vec's vectors (their seed is all that tells them apart: a
    step count their runs happen to differ in does not) and for the pretraining rows."""
    def run(name, data, seed, pretrain_seed, error, init="sa", steps=100, mode="finetune", lr=1e-3, val=0.8):
        folder = tmp_path / "logs" / name / str(seed)
        (folder / ".hydra").mkdir(parents=True)
        cfg = {"data": {"name": data}, "objective": {"name": init}, "seed": seed, "mode": {"name": mode},
               "model": {"backbone": {"num_layers": 1, "hidden_dim": 256}}, "finetune": {"lr": lr},
               "pretrain": {"max_steps": steps, "seed": pretrain_seed}}
        (folder / ".hydra" / "config.yaml").write_text(yaml.safe_dump(cfg))
        result = ({"mode": "pretrain", "data": data, "objective": init, "val/loss": error} if mode == "pretrain" else
                  {"mode": "finetune", "data": data, "init": init, "val/acc_best": val, "test/error": error})
        (folder / "results.json").write_text(json.dumps(result))

    for seed in (0, 1, 2):
        run("sa-p0", "rt", seed, 0, 20.0 + seed)
        run("sa-p1", "rt", seed, 1, 30.0 + seed)
        run("sa-follows", "imdb", seed, seed, 10.0 + seed)
        run("w2v-p0", "rt", seed, 0, 40.0 + seed, init="word2vec", steps=100)
        run("w2v-p1", "rt", seed, 1, 50.0 + seed, init="word2vec", steps=200)
        run("w2v-steps", "imdb", seed, 0, 60.0 + seed, init="word2vec", steps=100 * (seed + 1))
        run("pretrain-follows", "imdb", seed, seed, 1.0 + seed, mode="pretrain")
        for pretrain_seed, (low, high) in enumerate(((0.8, 0.7), (0.7, 0.9))):  # each pretraining picks its own rate
            run(f"sst-p{pretrain_seed}-low", "sst", seed, pretrain_seed, 20.0 + 20 * pretrain_seed + seed, val=low)
            run(f"sst-p{pretrain_seed}-high", "sst", seed, pretrain_seed, 10.0 + 20 * pretrain_seed + seed, lr=3e-3,
                val=high)
            # one setting each, not the same one: each pretraining's one setting is pooled
            run(f"mr-p{pretrain_seed}", "mr", seed, pretrain_seed, 20.0 + 10 * pretrain_seed + seed,
                lr=(1e-3, 3e-3)[pretrain_seed])
    run("pretrain-p0", "rt", 0, 0, 2.0, mode="pretrain")
    run("pretrain-p1", "rt", 0, 1, 3.0, mode="pretrain")
    md = (report([str(tmp_path / "logs")], out=str(tmp_path / "r")) / "report.md").read_text()
    md, pretraining = md.split("## Pretraining")
    md, pooled = md.split("## Across pretrainings")
    for data, init, settings, each, error in (("rt", "sa", "— / —", "21.00 / 31.00", "26.00"),
                                              ("rt", "word2vec", "— / —", "41.00 / 51.00", "46.00"),
                                              ("sst", "sa", "finetune.lr=0.001 / finetune.lr=0.003", "21.00 / 31.00",
                                               "26.00"),
                                              ("mr", "sa", "finetune.lr=0.001 / finetune.lr=0.003", "21.00 / 31.00",
                                               "26.00")):
        row = cells(pooled, f"| {data} | finetune | {init} | last |")
        assert row[8:13] == [settings, "2", each, "6", "0,1,2"] and row[13] == f"{error} ± 5.55"
    assert "| imdb |" not in pooled  # each seed pretrained its own: one init already, nothing to pool
    for pretrain_seed, sa, word2vec in ((0, "21.00", "41.00"), (1, "31.00", "51.00")):
        row = cells(md, f"| rt | finetune | sa pretrain.seed={pretrain_seed} | last |")
        assert row[9:12] == ["3", "0,1,2", f"{sa} ± 1.00"]
        row = cells(md, f"| rt | finetune | word2vec pretrain.seed={pretrain_seed} | last |")
        assert row[9:12] == ["3", "0,1,2", f"{word2vec} ± 1.00"]
        row = cells(pretraining, f"| sa pretrain.seed={pretrain_seed} | rt |")
        assert row[5:7] == ["1", f"{2 + pretrain_seed}.000"]
    assert cells(md, "| imdb | finetune | sa | last |")[9:12] == ["3", "0,1,2", "11.00 ± 1.00"]
    assert cells(md, "| imdb | finetune | word2vec | last |")[9:12] == ["3", "0,1,2", "61.00 ± 1.00"]
    assert cells(pretraining, "| sa | imdb |")[5:7] == ["3", "2.000"]


def test_a_finetune_grid_through_train_py_is_searched_per_init(tmp_path):
    """hparams_search=finetune_grid over two inits: every init gets the same settings, the head at the backbone's
    rate, and the report picks per init the setting of the best validation accuracy, with that run's test error."""
    out = train(tmp_path, "-m", "hparams_search=finetune_grid", "init=random,sa", "finetune.lr=0.003,0.03",
                "logger=csv", "finetune.max_epochs=2")
    assert out.returncode == 0, out.stderr[-3000:]
    jobs = sorted((tmp_path / "logs" / "smoke" / "multiruns").glob("*/[0-9]"))
    runs = [(yaml.safe_load((j / ".hydra" / "config.yaml").read_text()), json.loads((j / "results.json").read_text()))
            for j in jobs]
    assert sorted((r["init"], c["finetune"]["lr"]) for c, r in runs) == [
        ("random", 0.003), ("random", 0.03), ("sa", 0.003), ("sa", 0.03)]
    assert {c["finetune"]["head_lr"] for c, _ in runs} == {None}
    # a search keeps each finished run's results and best weights, not its resume point (checkpoints.keep_last)
    pretrainings = list(tmp_path.glob("logs/smoke/multiruns/*/*/pretrain-sa"))
    assert len(pretrainings) == 1 and (pretrainings[0] / "checkpoints" / "pretrained.ckpt").is_file()
    assert not list(tmp_path.glob("logs/**/last.ckpt")) and {r["last_checkpoint"] for _, r in runs} == {""}
    assert all(Path(r["best_checkpoint"]).is_file() for _, r in runs)
    md = (report([str(tmp_path / "logs")], out=str(tmp_path / "r")) / "report.md").read_text()
    search = md.split("## Fine-tuning search")[1].split("## Pretraining")[0]
    for init in ("random", "sa"):
        mine = sorted((f"finetune.lr={c['finetune']['lr']}", r) for c, r in runs if r["init"] == init)
        setting, best = max(mine, key=lambda m: m[1]["val/acc_best"])
        assert cells(search, f"| synthetic | finetune | {init} | last |")[8:14] == [
            setting, "2", f"{100 * best['val/acc_best']:.2f}", "1", "0", f"{best['test/error']:.2f} ± 0.00"]


def test_paper_rows():
    assert paper_row(Variant("imdb", "finetune", "random", "last", "", "1x1024")) == ("LSTM", 13.50)
    assert paper_row(Variant("imdb", "finetune", "word2vec", "last", "", "1x1024"))[1] == 10.00
    assert paper_row(Variant("imdb", "finetune", "sa", "linear_gain", "", "1x1024"))[1] == 9.17
    assert paper_row(Variant("imdb", "joint-sa", "random", "last", "", "1x1024"))[1] == 14.70
    assert paper_row(Variant("rt", "finetune", "sa", "last", "", "1x1024"))[1] == 20.3
    assert paper_row(Variant("dbpedia_char", "finetune", "sa", "linear_gain", "", "3x1024"))[1] == 1.19
    assert paper_row(Variant("imdb", "finetune", "sa", "last", "", "2x1024")) is None
    joint = make_run({"mode": "joint", "data": "imdb", "init": "random", "test/error": 15.0},
                     {"mode": {"name": "joint"}, "objective": {"name": "sa"},
                      "model": {"backbone": {"num_layers": 1, "hidden_dim": 1024}}})
    assert joint["key"] == Variant("imdb", "joint-sa", "random", "last", "", "1x1024")
    assert paper_row(joint["key"]) == ("SA-LSTM + joint training", 14.70)
    siatl = make_run({"mode": "joint", "data": "imdb", "init": "sa", "test/error": 8.0},  # joint from the SA weights
                     {"mode": {"name": "joint"}, "objective": {"name": "sa"},
                      "model": {"backbone": {"num_layers": 1, "hidden_dim": 1024}}})
    assert siatl["key"] == Variant("imdb", "joint-sa", "sa", "last", "", "1x1024") and paper_row(siatl["key"]) is None
    plain, at = (make_run({"data": "imdb", "init": "sa", "test/error": e, "perturbation": p},
                          {"seed": 0, "model": {"backbone": {"num_layers": 1, "hidden_dim": 1024}}})
                 for e, p in ((8.0, "none"), (7.0, "adversarial")))
    assert plain["key"].perturbation == "" and paper_row(plain["key"]) is not None  # the rows of before
    assert at["key"] == plain["key"]._replace(perturbation="adversarial") and paper_row(at["key"]) is None
    from semiseq.report import markdown
    assert "| adversarial | all | — | 1 | 0 | 7.00 ± 0.00 |" in markdown(group([plain, at]), {}, "")
    cfg = {"objective": {"name": "sa", "embeddings": "word2vec"},
           "model": {"backbone": {"num_layers": 1, "hidden_dim": 1024}}}
    warm = make_run({"data": "rt", "init": "sa", "test/error": 19.0}, cfg)  # SA pretraining from word2vec vectors
    assert warm["key"].init == "sa+word2vec" and paper_row(warm["key"]) is None
    assert make_run({"mode": "pretrain", "objective": "sa"}, cfg)["key"].objective == "sa+word2vec"
    older = make_run({"mode": "pretrain", "objective": "lm"}, {"model": {"num_layers": 1, "hidden_dim": 256}})
    assert older["key"].model == "1x256"  # a run made before model.backbone existed


def test_an_earlier_report_is_never_overwritten(logs, tmp_path, capsys):
    first = report([str(logs)], out=str(tmp_path / "r"))
    before = (first / "report.md").read_bytes()
    second = report([str(logs)], out=str(tmp_path / "r"))
    assert second != first and second.name.startswith("r-") and (second / "report.md").is_file()
    assert (first / "report.md").read_bytes() == before


def test_a_report_keeps_its_runs_and_a_later_one_pools_them_with_new_ones(logs, tmp_path):
    """A report folder holds the runs it read (runs.jsonl.gz): from it alone, the logs gone, a later report gives
    the same tables; with the logs too, each run counts once; with a new run, the new run joins its variant."""
    first = report([str(logs)], out=str(tmp_path / "first"))
    gone = shutil.copytree(first, tmp_path / "docs" / "first")  # committed; logs/ deleted (a fresh machine)
    tables = lambda out: (out / "report.md").read_text().split("\n", 3)[3]  # noqa: E731 (without the header)
    counted = lambda out: (out / "report.md").read_text().split("\n")[2].split(" finished")[0]  # noqa: E731
    for paths in ([gone / "runs.jsonl.gz"], [gone], [gone, logs]):
        again = report([str(p) for p in paths], out=str(tmp_path / f"again{len(list(tmp_path.iterdir()))}"))
        assert tables(again) == tables(first) and counted(again) == counted(first), paths
    job = sorted((logs / "smoke" / "multiruns").glob("*/0"))[0]  # init=random seed=0
    new = shutil.copytree(job, tmp_path / "new" / "runs" / "r5", ignore=shutil.ignore_patterns("pretrain-*"))
    cfg = yaml.safe_load((new / ".hydra" / "config.yaml").read_text())
    (new / ".hydra" / "config.yaml").write_text(yaml.safe_dump(dict(cfg, seed=5)))
    (new / "results.json").write_text(json.dumps(dict(json.loads((new / "results.json").read_text()),
                                                      **{"test/error": 99.0})))
    pooled = (report([str(gone), str(new)], out=str(tmp_path / "pooled")) / "report.md").read_text()
    row = cells(pooled, "| synthetic | finetune | random | last | — | 1x16 | — | all | — |")
    assert row[9:11] == ["3", "0,1,5"] and row[13] == "99.00"
    deleted = shutil.copytree(logs, tmp_path / "logs2")
    report([str(deleted)])  # its report (and its runs) inside logs2/
    shutil.rmtree(sorted((deleted / "smoke" / "multiruns").glob("*/1"))[0])  # random seed 1: deleted, so gone
    md = (report([str(deleted)]) / "report.md").read_text()
    assert cells(md, "| synthetic | finetune | random | last | — | 1x16 | — | all | — |")[9:11] == ["1", "0"]


def test_bad_inputs_are_one_line_errors(logs, tmp_path, capsys):
    with pytest.raises(SemiseqError, match="does not exist"):
        report([str(tmp_path / "nowhere")])
    (tmp_path / "empty" / "x" / ".hydra").mkdir(parents=True)
    with pytest.raises(SemiseqError, match=r"no finished runs .*; 1 incomplete"):
        report([str(tmp_path / "empty")])
    bad = shutil.copytree(sorted((logs / "smoke" / "multiruns").glob("*/0"))[0], tmp_path / "bad")
    (bad / "results.json").write_text('{"mode": "finetune", "test/err')
    with pytest.raises(SystemExit) as exit:
        main([str(bad)])
    assert exit.value.code == 1
    err = capsys.readouterr().err
    assert err.startswith(f"semiseq: error: cannot read {bad / 'results.json'}: JSONDecodeError")
    assert err.count("\n") == 1
    (tmp_path / "r1").mkdir()
    (tmp_path / "r1" / "runs.jsonl.gz").write_bytes(b"not gzip")
    with pytest.raises(SemiseqError, match=r"cannot read .*r1/runs.jsonl.gz: BadGzipFile: .*; delete it or write it"):
        report([str(tmp_path / "r1")])
    (tmp_path / "r2").mkdir()
    (tmp_path / "r2" / "runs.jsonl.gz").write_bytes(gzip.compress(b'{"run": null, "result": {}, "config": {}}\n[1]\n'))
    with pytest.raises(SemiseqError, match=r"r2/runs.jsonl.gz: ValueError: line 2 is not a run"):
        report([str(tmp_path / "r2" / "runs.jsonl.gz")])
    out = subprocess.run([sys.executable, "-m", "semiseq.report", str(tmp_path / "nowhere")], capture_output=True,
                         text=True)
    assert out.returncode == 1 and out.stderr == f"semiseq: error: {tmp_path / 'nowhere'} does not exist; give a " \
        "run folder, a multirun, an experiment folder, logs/ or a report's runs.jsonl.gz\n"


class FakeApi:
    """The part of wandb.Api the report uses: runs(path, filters) -> runs with state, job_type, tags,
    config (nested, or flat as wandb may store it) and summary."""

    calls = []

    def runs(self, path, filters):
        self.calls.append((path, filters))
        nested = {"data": {"name": "imdb", "unlabeled": None}, "objective": {"name": "sa"},
                  "mode": {"name": "finetune"}, "pretrain": {"max_steps": 5000},
                  "model": {"backbone": {"num_layers": 1, "hidden_dim": 1024}}}
        flat = {"data.name": "imdb", "objective.name": "sa", "model.backbone.num_layers": 1,
                "model.backbone.hidden_dim": 1024, "pretrain.max_steps": 5000}  # the same start: one row

        def run(state, job_type, config, seed, tags=(), **summary):
            return SimpleNamespace(state=state, job_type=job_type, tags=list(tags), config=dict(config, seed=seed),
                                   summary=summary)

        return [run("finished", "finetune", nested, 0, **{"test/error": 7.0, "_runtime": 100}),
                run("finished", "finetune", flat, 1, **{"test/error": 8.0, "_runtime": 300}),
                run("running", "finetune", nested, 2),
                run("finished", "pretrain", nested, 0, ["imdb", "objective:lm"], **{"val/loss": 4.5, "val/ppl": 90.0})]


def test_wandb_runs_through_the_api(tmp_path, monkeypatch, capsys):
    import wandb

    monkeypatch.setattr(wandb, "Api", FakeApi)
    main(["--wandb", "me/semiseq", "--group", "imdb_sa", "--out", str(tmp_path / "r")])
    assert FakeApi.calls == [("me/semiseq", {"group": "imdb_sa"})]
    md = (tmp_path / "r" / "report.md").read_text()
    assert "3 finished runs from wandb me/semiseq group imdb_sa (1 incomplete skipped)" in md
    row = cells(md, "| imdb | finetune | sa | last | — | 1x1024 | — | all | — |")
    assert row[9:] == ["2", "0,1", "7.50 ± 0.71", "7.00", "8.00", "200.0", "7.24 (SA-LSTM)"]
    assert cells(md, "| lm | imdb | — | 1x1024 |")[4:] == ["5000", "1", "4.500", "90.00", "—"]
    assert (tmp_path / "r" / "curves.png").is_file()  # no CSV from wandb: the panels say so

    def offline(*args, **kwargs):
        raise ValueError("no API key")

    monkeypatch.setattr(wandb, "Api", offline)
    with pytest.raises(SemiseqError, match="cannot read wandb runs of me/semiseq group 'imdb_sa': no API key"):
        report([], out=str(tmp_path / "r2"), wandb_path="me/semiseq", wandb_group="imdb_sa")
