"""Bad input through the real entry points: each case runs `train.py` or `eval.py` in a subprocess, as a user
would, and must end with exit status 1 and exactly one line on stderr, `semiseq: error: ...`, that names the thing
(file and line, key, checkpoint, step) and the fix. No stack trace, whatever the input.

The subprocesses of the selected cases start together, a few at a time (most of each is Python importing torch and
Lightning), in a module fixture; each case then checks its own outcome."""

from __future__ import annotations

import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from hydra import compose, initialize_config_dir

from semiseq import SemiseqError, pipeline
from semiseq.transfer import TransferError, load_backbone

from .conftest import CONF, ROOT, make_objective

WORKERS = min(4, os.cpu_count() or 1)  # subprocesses at a time
SMOKE = ("experiment=smoke", "logger=none")
TINY = ("logger=none", "init=random", "model.backbone.embed_dim=8", "model.backbone.hidden_dim=16",
        "model.head.hidden_dim=16",
        "finetune.max_epochs=1", "trainer.enable_progress_bar=false")  # data other than synthetic: no experiment=smoke

CASES = {}


def case(fn):
    """A case: ``fn(tmp, ckpt)`` writes its input files in ``tmp`` and returns (script, arguments, the fragments the
    error line must hold[, environment variables to set])."""
    CASES[fn.__name__] = fn
    return fn


def write(path: Path, text: str, encoding: str = "utf-8") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text.encode(encoding))
    return path


def files_data(train: Path, test: Path | None = None, *extra: str) -> list[str]:
    return ["data=files", f"data.train={train}", *([f"data.test={test}"] if test else []), *TINY, *extra]


class Payload:
    """Pickles as a call to ``os.mkdir(marker)``: unpickling it runs code, which a checkpoint must never do."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return os.mkdir, (self.marker,)


# --- the config ---------------------------------------------------------------------------------------------------

@case
def unknown_group_option(tmp, ckpt):
    return "train.py", [*SMOKE, "model=nope"], ["model=nope is not an option",
                                                "choose model= one of lstm, paper_lstm"]


@case
def unknown_key(tmp, ckpt):
    return "train.py", [*SMOKE, "finetune.lrr=1"], [
        "finetune.lrr is not a config key; finetune has max_epochs, batch_size, lr", "did you mean finetune.lr?",
        "to add a new key anyway, write +finetune.lrr=1"]


@case
def zero_batch_size(tmp, ckpt):
    return "train.py", [*SMOKE, "finetune.batch_size=0"], ["finetune.batch_size=0 is not a positive integer",
                                                           "pass e.g. finetune.batch_size=20"]


@case
def seed_not_an_integer(tmp, ckpt):
    return "train.py", [*SMOKE, "seed=abc"], ["seed='abc' is not an integer from 0 to 2**32 - 1", "pass e.g. seed=0"]


@case
def not_a_choice(tmp, ckpt):
    return "train.py", [*SMOKE, "model.head.readout=lats"], [
        "model.head.readout='lats' is not an option; choose one of last, linear_gain, concat_pool",
        "(did you mean model.head.readout=last?)"]


@case
def required_value_missing(tmp, ckpt):
    return "train.py", ["data=files", *TINY], ["data.train has no value", "required by data=files",
                                               "pass data.train=..."]


@case
def setting_of_other_data(tmp, ckpt):
    train = write(tmp / "train.csv", "text,label\ngood,pos\nbad,neg\n")
    return "train.py", [*SMOKE, "data=files", f"data.train={train}"], [
        "data.corpus.num_topics is not a setting of data=files", "remove it"]


@case
def setting_of_another_objective(tmp, ckpt):
    return "train.py", [*SMOKE, "+objective.window=3"], [
        "objective.window is not a setting of objective=sa",
        "(semiseq.objectives.sa.SA takes name, embeddings, freeze_embeddings, noise, adapt_steps, adapt_lr)",
        "written for another objective= option"]


@case
def unknown_embeddings(tmp, ckpt):
    return "train.py", [*SMOKE, "objective.embeddings=glove"], [
        "objective.embeddings='glove' is not an option; choose word2vec or null"]


@case
def noise_that_is_not_a_probability(tmp, ckpt):
    return "train.py", [*SMOKE, "objective.noise=1.5"], [
        "objective.noise=1.5 is the probability of replacing a token; pass one in [0, 1)"]


@case
def adaptation_steps_that_are_not_a_count(tmp, ckpt):
    return "train.py", [*SMOKE, "objective.adapt_steps=-5"], [
        "objective.adapt_steps=-5 is a number of steps on the task's own text; pass 0 (none) or a positive integer"]


@case
def adaptation_rate_without_steps(tmp, ckpt):
    return "train.py", [*SMOKE, "objective.adapt_lr=0.01"], [
        "objective.adapt_lr=0.01 is the rate of the adaptation steps, and objective.adapt_steps is 0",
        "pass objective.adapt_steps=N"]


@case
def frozen_random_embeddings(tmp, ckpt):
    return "train.py", [*SMOKE, "objective.freeze_embeddings=true"], [
        "objective.freeze_embeddings=true keeps the vectors pretraining starts from",
        "pass objective.embeddings=word2vec"]


@case
def joint_without_a_network(tmp, ckpt):
    return "train.py", [*SMOKE, "mode=joint", "objective=word2vec"], [
        "mode=joint adds a network objective's loss", "objective=word2vec has none; pass objective=sa or lm"]


# --- data files ---------------------------------------------------------------------------------------------------

@case
def data_root_missing(tmp, ckpt):
    return "train.py", ["data=rt", f"data.root={tmp / 'nowhere'}", *TINY], [
        f"RT root {tmp / 'nowhere'} does not exist", "pass a folder holding rt-polarity.neg and rt-polarity.pos"]


@case
def data_root_empty(tmp, ckpt):
    (tmp / "empty").mkdir()
    return "train.py", ["data=rt", f"data.root={tmp / 'empty'}", *TINY], [
        f"{tmp / 'empty'} holds neither rt-polarity.neg and rt-polarity.pos", "pass the archive's path as root"]


@case
def malformed_csv_row(tmp, ckpt):
    train = write(tmp / "train.csv", 'text,label\n"good, really",pos\nbad,neg\nhello, world,pos\n')
    return "train.py", files_data(train), [f"{train}, line 4: 3 fields where the header has 2",
                                           "quote fields that contain ','"]


@case
def jsonl_row_not_json(tmp, ckpt):
    train = write(tmp / "train.jsonl", '{"text": "good", "label": "pos"}\n{"text": "bad", "label": neg}\n')
    return "train.py", files_data(train), [f"{train}, line 2: not valid JSON", "write one JSON object per line"]


@case
def wrong_encoding(tmp, ckpt):
    train = write(tmp / "train.csv", "text,label\ngood,pos\ncafé au lait,neg\n", encoding="latin-1")
    return "train.py", files_data(train), [f"{train}, line 3", "is not valid utf-8",
                                           "pass the file's real encoding, e.g. data.encoding=latin-1"]


@case
def label_out_of_range(tmp, ckpt):
    train = write(tmp / "train.csv", "text,label\ngood,pos\nbad,neg\n")
    test = write(tmp / "test.csv", "text,label\nfine,pos\nhmm,maybe\n")
    return "train.py", files_data(train, test), [f"{test}, line 3: test label 'maybe' does not occur in train",
                                                 "fix the label or add examples of it to train"]


@case
def empty_test_text(tmp, ckpt):
    train = write(tmp / "train.csv", "text,label\ngood,pos\nbad,neg\n")
    test = write(tmp / "test.csv", 'text,label\nfine,pos\n"  ",neg\n')
    return "train.py", files_data(train, test), [f"{test}, line 3: the test text is empty",
                                                 "give it a text or delete it"]


@case
def text_without_tokens_in_test(tmp, ckpt):
    train = write(tmp / "train.csv", "text,label\ngood,pos\nbad,neg\n")
    test = write(tmp / "test.csv", "text,label\nfine,pos\n!!!,neg\n")
    return "train.py", files_data(train, test, "data.corpus.punctuation=false"), [
        "files: test text 1 ('!!!') has no tokens", "cannot be dropped",
        "keep punctuation marks as tokens (data.corpus.punctuation=true)"]


# --- Hugging Face datasets (data=hf): the tests' own, offline (conftest sets HF_DATASETS_OFFLINE=1) ------------------

def hf_data(path, *extra: str) -> list[str]:
    return ["data=hf", f"data.path={path}", *TINY, *extra]


@case
def hf_dataset_not_there_offline(tmp, ckpt):
    return "train.py", hf_data("semiseq-tests/no-such-dataset"), [
        "the Hugging Face dataset 'semiseq-tests/no-such-dataset' is not in the local cache",
        "offline mode is on (HF_DATASETS_OFFLINE=1", "datasets.load_dataset('semiseq-tests/no-such-dataset')",
        "pass data.path= a local copy: a folder written by save_to_disk"]


@case
def hf_missing_column(tmp, ckpt):
    from .test_data_hf import imdb_like

    return "train.py", hf_data(imdb_like(tmp / "imdb"), "data.text_column=review"), [
        "data.text_column='review': split 'train' of", "has no column 'review'; its columns are ['text', 'label']"]


@case
def hf_missing_split(tmp, ckpt):
    from .test_data_hf import imdb_like

    return "train.py", hf_data(imdb_like(tmp / "imdb"), "data.unlabeled_split=unlabeled"), [
        "data.unlabeled_split='unlabeled':",
        "has no split 'unlabeled'; its splits are ['train', 'test', 'unsupervised']"]


@case
def hf_label_not_a_class(tmp, ckpt):
    from .test_data_hf import save_dataset

    path = save_dataset(tmp / "scores", train={"text": ["good", "bad", "fine"], "stars": [4.5, 1.0, 3.5]})
    return "train.py", hf_data(path, "data.label_column=stars", "data.test_split=null"), [
        "data.label_column='stars': split 'train' of", "holds Value('float64')",
        "a label must be a class label (ClassLabel), an integer or a string"]


@case
def hf_without_the_extra(tmp, ckpt):
    from .test_data_hf import imdb_like

    shadow = write(tmp / "shadow" / "datasets.py", "raise ModuleNotFoundError(\"No module named 'datasets'\", "
                                                   "name='datasets')\n")  # as if not installed
    path = os.pathsep.join(p for p in (str(shadow.parent), os.environ.get("PYTHONPATH")) if p)
    return "train.py", hf_data(imdb_like(tmp / "imdb")), [
        "data=hf reads datasets with the Hugging Face datasets library, which is not installed",
        "install it with pip install -c constraints.txt -e '.[hf]'"], {"PYTHONPATH": path}


# --- empty splits: the stage that reads one stops before it starts ----------------------------------------------------

@case
def no_training_examples(tmp, ckpt):
    return "train.py", [*SMOKE, "data.corpus.num_train=0"], [
        "synthetic: the train split is empty (data.corpus.num_train=0), and fine-tuning needs it",
        "pass e.g. data.corpus.num_train=200"]


@case
def empty_test_split(tmp, ckpt):
    return "train.py", [*SMOKE, "objective=sa", "data.corpus.num_test=0"], [
        "synthetic: the test split is empty (data.corpus.num_test=0), and fine-tuning needs it",
        "pass e.g. data.corpus.num_test=1000"]


@case
def validation_split_rounds_to_nothing(tmp, ckpt):
    train = write(tmp / "train.csv", "text,label\ngood,pos\nbad,neg\nfine,pos\n")
    test = write(tmp / "test.csv", "text,label\nok,pos\n")
    return "train.py", files_data(train, test), [
        "files: the validation split is empty (data.corpus.val_fraction=0.15 of 3 training examples rounds to 0)",
        "fine-tuning needs it", "pass data.corpus.val_fraction=0.33 or more"]


@case
def header_only_test_file(tmp, ckpt):
    train = write(tmp / "train.csv", "text,label\n" + "".join(f"w{i},{('pos', 'neg')[i % 2]}\n" for i in range(8)))
    test = write(tmp / "test.csv", "text,label\n")
    return "train.py", files_data(train, test), [
        f"files: the test split is empty (the test file {test} holds no examples), and fine-tuning needs it",
        "pass data.test=null to hold out part of the training set"]


@case
def no_text_to_pretrain_on(tmp, ckpt):
    return "train.py", [*SMOKE, "mode=pretrain", "data.corpus.num_unlabeled=0", "data.corpus.num_train=0"], [
        "synthetic: the pretraining text (unlabeled + train) is empty", "pretraining needs it",
        "pass e.g. data.corpus.num_unlabeled=20000"]


# --- checkpoints --------------------------------------------------------------------------------------------------

def init_from(path: Path, *extra: str, init: str = "sa") -> list[str]:
    return [*SMOKE, f"objective={init}", f"init.checkpoint={path}", *extra]


@case
def checkpoint_missing(tmp, ckpt):
    return "train.py", init_from(tmp / "nope.ckpt"), [f"checkpoint {tmp / 'nope.ckpt'} does not exist",
                                                      "pass init.checkpoint=PATH"]


@case
def checkpoint_truncated(tmp, ckpt):
    bad = tmp / "cut.ckpt"
    bad.write_bytes(Path(ckpt.sa).read_bytes()[:1000])
    return "train.py", init_from(bad), [f"checkpoint {bad} is not a readable PyTorch checkpoint",
                                        "it may be truncated", "write it again with train.py"]


@case
def checkpoint_with_pickled_object(tmp, ckpt):
    bad = tmp / "payload.ckpt"
    weights = torch.load(ckpt.sa, weights_only=True)
    torch.save({**weights, "extra": Payload(tmp / "payload-ran")}, bad)
    return "train.py", init_from(bad), [f"checkpoint {bad} holds a pickled Python object (posix.mkdir)",
                                        "semiseq refuses it", "weights_only=True"]


@case
def init_from_a_classifier(tmp, ckpt):
    return "train.py", init_from(ckpt.clf), [f"checkpoint {ckpt.clf} holds a fine-tuned classifier, not SA-LSTM",
                                             "pass a pretraining checkpoint"]


@case
def vocabulary_mismatch(tmp, ckpt):
    return "train.py", init_from(ckpt.sa, "data.corpus.num_symbols=9"), [
        f"vocabulary mismatch: checkpoint {ckpt.sa} has 11 tokens but dataset 'synthetic' has 12",
        "Pretrain on this dataset's vocabulary"]


@case
def shape_mismatch(tmp, ckpt):
    return "train.py", init_from(ckpt.sa, "model.backbone.hidden_dim=24"), [
        f"shape mismatch for net.backbone.lstm.weight_ih_l0: checkpoint {ckpt.sa} has (64, 8), the model has (96, 8)",
        "use the same model.* sizes as for pretraining"]


# --- eval.py ------------------------------------------------------------------------------------------------------

@case
def eval_pretraining_checkpoint_cannot_predict(tmp, ckpt):
    write(tmp / "in.txt", "s01 s02\n")
    return "eval.py", ["action=predict", f"ckpt_path={ckpt.sa}", "input=in.txt"], [
        f"{ckpt.sa} is a pretraining checkpoint (SA-LSTM) with no classifier", "fine-tune it first"]


@case
def eval_input_wrong_encoding(tmp, ckpt):
    write(tmp / "in.txt", "s01 s02\ns03\ncafé s03\n", encoding="latin-1")
    return "eval.py", ["action=predict", f"ckpt_path={ckpt.clf}", "input=in.txt"], [
        "in.txt, line 3 is not valid utf-8", "pass the input's real encoding, e.g. encoding=latin-1"]


@case
def eval_zero_batch_size(tmp, ckpt):
    return "eval.py", ["experiment=smoke", f"ckpt_path={ckpt.clf}", "batch_size=0"], [
        "batch_size=0 is not a positive integer", "pass e.g. batch_size=256"]


# --- running them -------------------------------------------------------------------------------------------------

def smoke_cfg(tmp: Path, *overrides: str):
    with initialize_config_dir(config_dir=str(CONF), version_base=None):
        return compose("train", overrides=[f"paths.log_dir={tmp}/logs", f"paths.output_dir={tmp}/run",
                                           "experiment=smoke", "logger=none", "callbacks=none", *overrides])


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory) -> SimpleNamespace:
    """SA and LM pretraining checkpoints and a classifier fine-tuned from the SA one, as `experiment=smoke` makes."""
    tmp = tmp_path_factory.mktemp("checkpoints")
    cfg = smoke_cfg(tmp, "objective=sa")
    corpus = pipeline.build_corpus(cfg)
    sa, lm = (make_objective(objective).pretrain(cfg, corpus, tmp / objective) for objective in ("sa", "lm"))
    cfg.init.checkpoint = str(sa)
    results = pipeline.finetune(cfg, corpus, tmp / "clf")
    return SimpleNamespace(sa=str(sa), lm=str(lm), clf=results["best_checkpoint"], tmp=tmp, results=results)


def run(script: str, args: list[str], cwd: Path, extra_env: dict | None = None) -> subprocess.CompletedProcess:
    env = dict(os.environ, SEMISEQ_LOG_DIR=str(cwd / "logs"), SEMISEQ_DATA_DIR=str(cwd / "downloads"),
               WANDB_MODE="offline", OMP_NUM_THREADS="1", **(extra_env or {}))
    env.pop("HYDRA_FULL_ERROR", None)  # as a user runs it
    return subprocess.run([sys.executable, str(ROOT / script), *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=600)


@pytest.fixture(scope="module")
def outcomes(request, ckpt, tmp_path_factory) -> dict:
    """Run every selected case's command, a few at a time: name -> (completed process, fragments, its folder)."""
    selected = {item.callspec.params["name"] for item in request.session.items
                if item.module.__name__ == __name__ and "name" in getattr(getattr(item, "callspec", None), "params",
                                                                          {})}
    jobs = {}
    for name in sorted(selected):
        tmp = tmp_path_factory.mktemp(name)
        script, args, fragments, *env = CASES[name](tmp, ckpt)
        jobs[name] = (script, args, fragments, tmp, *env)
    with ThreadPoolExecutor(WORKERS) as pool:
        done = {name: pool.submit(run, script, args, tmp, *env) for name, (script, args, _, tmp, *env) in jobs.items()}
        return {name: (future.result(), jobs[name][2], jobs[name][3]) for name, future in done.items()}


@pytest.mark.parametrize("name", sorted(CASES))
def test_bad_input_is_one_clear_line(outcomes, name):
    out, fragments, _ = outcomes[name]
    lines = out.stderr.splitlines()
    assert out.returncode == 1 and "Traceback" not in out.stderr, out.stderr[-3000:]
    assert len(lines) == 1 and lines[0].startswith("semiseq: error: "), out.stderr[-3000:]
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])


def test_a_pickled_object_in_a_checkpoint_is_refused_unrun(outcomes, tmp_path):
    """The payload is live (a plain torch.load runs it), yet train.py refused the checkpoint without running it."""
    _, _, tmp = outcomes["checkpoint_with_pickled_object"]
    assert not (tmp / "payload-ran").exists()
    torch.load(tmp / "payload.ckpt", weights_only=False)  # what semiseq never does
    assert (tmp / "payload-ran").is_dir()


def test_an_empty_split_stops_the_run_before_its_pretraining(outcomes):
    """An objective=sa fine-tune with no test examples is refused up front, not after pretraining its weights."""
    _, _, tmp = outcomes["empty_test_split"]
    assert not list((tmp / "logs").rglob("*.ckpt"))


# --- safe loading: every checkpoint the pipeline writes loads with weights_only=True --------------------------------

PRIMITIVES = (str, int, float, bool, type(None), torch.Tensor, torch.Size)


def only_primitives(value, where: str = "") -> list[str]:
    """Where ``value`` holds anything but containers of tensors and primitives."""
    if isinstance(value, dict):
        return [w for k, v in value.items() for w in only_primitives(k, where) + only_primitives(v, f"{where}/{k}")]
    if isinstance(value, (list, tuple)):
        return [w for i, v in enumerate(value) for w in only_primitives(v, f"{where}[{i}]")]
    return [] if isinstance(value, PRIMITIVES) else [f"{where}: {type(value).__name__}"]


def test_every_checkpoint_the_pipeline_writes_loads_with_weights_only(ckpt):
    cfg = smoke_cfg(ckpt.tmp, "objective=word2vec")
    word2vec = pipeline.init_checkpoint(cfg, pipeline.build_corpus(cfg), ckpt.tmp / "w2v")
    paths = [Path(ckpt.sa), Path(ckpt.sa).with_name("last.ckpt"), Path(ckpt.lm), Path(ckpt.clf),
             Path(ckpt.clf).with_name("last.ckpt"), word2vec]  # pretraining (final, periodic), classifier, word2vec
    assert all(p.is_file() for p in paths), paths
    for path in paths:
        loaded = torch.load(path, map_location="cpu", weights_only=True)
        assert only_primitives(loaded) == [], path
        assert loaded["semiseq"]["kind"] in ("sa", "lm", "classifier", "word2vec"), path


# --- the same checks, below the command line ------------------------------------------------------------------------

def test_labels_out_of_range_name_split_example_and_value():
    from semiseq.data.corpus import Corpus, Sequences, Vocab
    from semiseq.data.texts import Texts

    with pytest.raises(SemiseqError, match=r"mine: test example 1 has label 2, out of range for the 2 classes"):
        Texts("mine", ["neg", "pos"], ["a", "b"], [0, 1], ["c", "d"], [1, 2])
    good, bad = Sequences.from_lists([[3]], labels=[0]), Sequences.from_lists([[3], [4, 3]], labels=[0, 5])
    with pytest.raises(SemiseqError, match=r"toy: val example 1 has label 5, out of range for the 2 classes"):
        Corpus("toy", Vocab(["<pad>", "<unk>", "<eos>", "a", "b"]), good, bad, good, good, ["neg", "pos"])


def test_an_empty_sequence_is_refused_when_the_corpus_is_built():
    from semiseq.data.corpus import Corpus, Sequences, Vocab

    good, empty = Sequences.from_lists([[3]], labels=[0]), Sequences.from_lists([[3], []])
    with pytest.raises(SemiseqError, match=r"toy: unlabeled sequence 1 has no tokens \(1 such\)"):
        Corpus("toy", Vocab(["<pad>", "<unk>", "<eos>", "a"]), good, good, good, empty, ["a", "b"])


def test_empty_training_texts_are_dropped_with_a_warning(tmp_path, caplog):
    """Unlabeled and training texts with no tokens carry nothing to learn: dropped, and said so (test texts are not:
    see the empty_test_text and text_without_tokens_in_test cases)."""
    from semiseq.data.prepare import make_corpus
    from semiseq.data.texts import Texts

    texts = Texts("mine", ["neg", "pos"], ["good", "!!!", "bad", "fine"], [1, 0, 0, 1], ["ok"], [1], ["?", "more"])
    with caplog.at_level("WARNING"):
        corpus = make_corpus(lambda: texts, punctuation=False, val_fraction=0.0)
    assert len(corpus.train) == 3 and len(corpus.unlabeled) == 1 and len(corpus.test) == 1
    assert "dropped 1 empty train texts" in caplog.text and "dropped 1 empty unlabeled texts" in caplog.text


def test_synthetic_settings_that_cannot_work(make_cfg):
    for override, message in [
            ("data.corpus.num_classes=3", r"num_topics=4 must be a multiple of data.corpus.num_classes=3 .*pass e\.g\. "
                                          r"data.corpus.num_classes=2"),
            ("data.corpus.min_len=0", r"min_len=0 .*a sequence of length 0\); pass e\.g\. data.corpus.min_len=1"),
            ("data.corpus.num_val=-1", r"num_val=-1 is not a number of sequences \(an integer >= 0\); pass e\.g\. "
                                       r"data.corpus.num_val=1000")]:
        with pytest.raises(SemiseqError, match=message):
            pipeline.build_corpus(make_cfg("experiment=smoke", override))


def test_checkpoints_of_another_kind_or_no_checkpoint_at_all(ckpt, make_cfg, tmp_path):
    cfg = make_cfg("experiment=smoke")
    corpus = pipeline.build_corpus(cfg)

    def load(path, init="sa"):
        return load_backbone(pipeline.build_classifier(cfg, corpus), path, corpus.vocab.itos, corpus.name,
                             make_objective(init))

    with pytest.raises(TransferError, match=r"holds the weights of objective lm, not SA-LSTM pretraining weights as "
                                            r"objective=sa asks; pass objective=lm to start from it"):
        load(ckpt.lm)
    assert load(ckpt.lm, "lm") == 5
    with pytest.raises(TransferError, match=r"is not a readable PyTorch checkpoint .*or another kind of file"):
        load(write(tmp_path / "notes.ckpt", "not weights\n"))
    with pytest.raises(TransferError, match=r"is a folder; pass the \.ckpt file in it"):
        load(tmp_path)


def test_the_schemas_refuse_a_choice_type_or_key_they_lack_in_one_line(make_cfg, tmp_path):
    """Hydra refuses while composing what semiseq.config's schemas do not allow, and cli.config_error makes one line of
    Hydra's text: the key, the value, the choices (an Enum's) or the keys of the schema, the field's range, and the
    file that set it when a yaml did; only mode=joint's schema has mode.weight."""
    from hydra.errors import ConfigCompositionException

    from semiseq import cli

    def refusal(*overrides, name="train"):
        with pytest.raises(ConfigCompositionException) as e:
            with initialize_config_dir(config_dir=str(CONF), version_base=None):
                compose(name, overrides=[f"hydra.searchpath=[file://{tmp_path}]", *overrides])
        return cli.config_error(e.value)

    assert refusal("model.output.softmax=adaptiv") == ("model.output.softmax='adaptiv' is not an option; choose one of "
                                                       "full, adaptive (did you mean model.output.softmax=adaptive?)")
    assert refusal("action=tset", name="eval") == ("action='tset' is not an option; choose one of test, predict, embed "
                                                   "(did you mean action=test?)")
    assert refusal("mode=joint", "mode.weight=x") == "mode.weight='x' is not a number >= 0; pass e.g. mode.weight=1.0"
    assert refusal("mode.weight=1") == ("mode.weight is not a config key; mode has name; to add a new key anyway, "
                                        "write +mode.weight=1")
    assert refusal("pretrain.early_stopping_patience=x") == (  # a type, no range: Hydra's words
        "Error merging override pretrain.early_stopping_patience=x: Value 'x' of type 'str' could not be converted to "
        "Integer")
    write(tmp_path / "experiment" / "mine.yaml", "# @package _global_\nfinetune: {max_epoch: 3}\n")
    assert refusal("experiment=mine").startswith("finetune.max_epoch is not a config key; finetune has max_epochs, ")
    assert refusal("experiment=mine").endswith("(did you mean finetune.max_epochs?) (in experiment/mine)")
    for overrides, message in [(["mode=joint", "mode.weight=-1"], "mode.weight=-1 is not a number >= 0; pass e.g. "
                                                                   "mode.weight=1.0"),  # -1 as typed, not -1.0
                               (["pretrain.lr=-1"],
                                "pretrain.lr=-1 is not a positive number; pass e.g. pretrain.lr=0.003"),
                               (["model.head.dropout=1"], "model.head.dropout=1 is not a number in [0, 1); pass e.g. "
                                                          "model.head.dropout=0.5"),
                               (["pretrain.tbptt_steps=0"], "pretrain.tbptt_steps=0 is not a positive integer or null; "
                                                            "pass e.g. pretrain.tbptt_steps=400")]:
        with pytest.raises(SemiseqError) as e:
            cli.check(make_cfg(*overrides))
        assert str(e.value) == message
    cli.check(make_cfg("mode=joint", "mode.text_batch_size=null", "pretrain.tbptt_steps=null", "finetune.head_lr=null"))


def test_seeds_must_be_integers(make_cfg):
    """Every seed the config passes on (fine-tuning, pretraining, the data's), refused before int() or numpy sees it:
    by the schema while composing (not an integer: the line train.py prints for it) or by cli.check (out of range, or
    the free-form data.corpus.seed)."""
    from hydra.errors import ConfigCompositionException

    from semiseq import cli

    def check(compose_cfg):
        try:
            cfg = compose_cfg()
        except ConfigCompositionException as e:
            raise SemiseqError(cli.config_error(e)) from e
        cli.check(cfg)

    check(lambda: make_cfg("seed=4294967295", "pretrain.seed=0"))
    for override in ("pretrain.seed=abc", "data.corpus.seed=x", "seed=-1", "seed=1.5", "seed=4294967296", "seed=null"):
        key = override.partition("=")[0]
        with pytest.raises(SemiseqError, match=rf"^{key}=.* is not an integer from 0 to 2\*\*32 - 1; pass e\.g\. "
                                               rf"{key}=0$"):
            check(lambda: make_cfg(override))
    with initialize_config_dir(config_dir=str(CONF), version_base=None):
        with pytest.raises(SemiseqError, match=r"^data.corpus.seed='x' is not an integer"):
            check(lambda: compose("eval", overrides=["data.corpus.seed=x"]))


@pytest.mark.parametrize("suffix", [".txt", ".jsonl", ".csv"])
def test_a_byte_that_does_not_decode_is_named_by_its_line(tmp_path, suffix):
    """The reader decodes chunks of 8192 bytes, ahead of the lines it hands out: the line named is the byte's, near
    the start of a file and in every row around the end of the first chunk (Windows line ends, and a CSV field over
    two lines, which the CSV reader may be halfway through when the chunk fails)."""
    from semiseq.inference import open_texts

    row = {".txt": "s01 s02", ".jsonl": '{"text": "s01 s02"}', ".csv": '"s01\r\ns02",x'}[suffix]
    header = ["text,label"] if suffix == ".csv" else []
    near = (8192 - len("".join(header))) // (len(row) + 2)  # the row at the chunk's end
    for shift in range(len(row) + 2):  # the first row longer by `shift`: the chunk ends at every place of a row
        for bad in (3, *range(near - 2, near + 2)):
            rows = [row.replace("s01", "s01" + " " * shift)] + [row] * (near + 5)
            rows[bad - 1] = row.replace("s02", "café")
            data = "\r\n".join(header + rows).encode("latin-1")
            at = data[:data.index(b"\xe9")].count(b"\n") + 1  # its line (a CSV row takes two)
            path = tmp_path / f"in{suffix}"
            path.write_bytes(data)
            with pytest.raises(SemiseqError, match=rf"in{suffix}, line {at} is not valid utf-8 \(invalid "
                                                   r"continuation byte\); pass the input's real encoding"):
                list(open_texts(path))


def test_an_unreadable_row_of_texts_to_predict_names_its_line(tmp_path):
    from semiseq.inference import open_texts

    with pytest.raises(SemiseqError, match=r"in\.jsonl, line 2: not valid JSON .*write one JSON object per line"):
        list(open_texts(write(tmp_path / "in.jsonl", '{"text": "a"}\n{"text": b}\n')))
