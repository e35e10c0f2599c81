"""Any Hugging Face dataset (``data=hf``) read as ``Texts``: from the Hub (``ag_news``, ``SetFit/sst2``) or a local
copy (a ``save_to_disk`` folder, parquet / csv / json files), through the ``datasets`` library. That library is the
optional extra ``pip install -e '.[hf]'``, imported only when data=hf is used."""

from __future__ import annotations

import logging
from pathlib import Path

from semiseq import SemiseqError
from semiseq.data.texts import Texts, held_out

log = logging.getLogger(__name__)

INSTALL = "pip install -c constraints.txt -e '.[hf]'"
BUILDERS = {".parquet": "parquet", ".csv": "csv", ".json": "json", ".jsonl": "json", ".arrow": "arrow"}
LOCAL_COPY = ("pass data.path= a local copy: a folder written by save_to_disk, a parquet / csv / json(l) file, a "
              "folder of such files named by split (train.parquet, test.parquet), or data.path=parquet (csv, json) "
              "with data.data_files={train: ..., test: ...}")
TEXT_TYPES = ("string", "large_string")


def library():
    """The ``datasets`` module, or the error naming the install command."""
    try:
        import datasets
    except ImportError as e:
        raise SemiseqError(f"data=hf reads datasets with the Hugging Face datasets library, which is not installed "
                           f"({e}); install it with {INSTALL}") from e
    return datasets


def open_dataset(path: str, config_name: str | None = None, revision: str | None = None,
                 data_files=None) -> dict:
    """Every split of the dataset ``path`` names, by split name: a folder written by ``save_to_disk`` (a single
    Dataset is the split ``train``), a data file (its split ``train``), a folder of data files, a builder (parquet,
    csv, json) with ``data_files``, or else a dataset on the Hub (``config_name``, ``revision``)."""
    datasets = library()
    local = Path(str(path)).expanduser()
    bars = datasets.utils.logging.is_progress_bar_enabled()
    datasets.disable_progress_bars()  # a bar per split and shard would bury the run's own lines in its log
    try:
        if local.is_dir() and any((local / f).is_file() for f in ("dataset_dict.json", "state.json")):
            loaded = datasets.load_from_disk(str(local))
        else:
            source = str(path)
            if local.is_file():
                if (builder := BUILDERS.get(local.suffix.lower())) is None:
                    raise SemiseqError(f"data.path={path}: cannot tell the format of a {local.suffix!r} file; pass a "
                                       f"{', '.join(BUILDERS)} file, or data.path= the builder (parquet, csv, json) "
                                       f"with data.data_files={path}")
                source, data_files = builder, data_files or str(local)
            elif local.is_dir():
                source = str(local)
            elif str(path).startswith(("/", ".", "~")) or local.suffix.lower() in BUILDERS:
                raise SemiseqError(f"data.path={path} does not exist (relative paths start from {Path.cwd()}); pass "
                                   f"an existing local dataset or a Hugging Face Hub id such as ag_news")
            loaded = datasets.load_dataset(source, name=config_name, revision=revision, data_files=data_files)
    except SemiseqError:
        raise
    except ConnectionError as e:  # the Hub unreachable, or offline with the dataset not in the cache
        raise SemiseqError(_unreachable(datasets, path, config_name, e)) from None
    except datasets.exceptions.DatasetNotFoundError as e:
        raise SemiseqError(f"data.path={path!r} is no local file or folder and no dataset the Hugging Face Hub gives "
                           f"access to ({_line(e)}); check the name (a gated or private dataset needs `hf auth "
                           f"login`), or {LOCAL_COPY}") from None
    except (FileNotFoundError, ValueError, datasets.exceptions.DatasetsError) as e:  # a config, file or revision
        raise SemiseqError(f"could not load the Hugging Face dataset {_title(path, config_name)} ({_line(e)}); check "
                           f"data.path, data.config_name, data.revision and data.data_files") from None
    finally:
        if bars:
            datasets.enable_progress_bars()
    return dict(loaded) if isinstance(loaded, datasets.DatasetDict) else {"train": loaded}


def _unreachable(datasets, path: str, config_name: str | None, e: Exception) -> str:
    title, cache = _title(path, config_name), datasets.config.HF_CACHE_HOME
    get = f"python -c \"import datasets; datasets.load_dataset({str(path)!r}" + (
        f", {config_name!r}" if config_name else "") + ")\""
    if datasets.config.HF_HUB_OFFLINE:
        return (f"the Hugging Face dataset {title} is not in the local cache ({cache}) and offline mode is on "
                f"(HF_DATASETS_OFFLINE=1 or HF_HUB_OFFLINE=1: the Hub is not asked; {_line(e)}); download it once "
                f"with the network ({get}), after which offline runs read it from the cache, or {LOCAL_COPY}")
    return (f"the Hugging Face Hub could not be reached for the dataset {title} ({_line(e)}), and data.path is no "
            f"local file or folder; without a network, set HF_DATASETS_OFFLINE=1 to read a copy already in the cache "
            f"({cache}; {get} with the network puts it there), or {LOCAL_COPY}")


def identity(path: str, config_name: str | None = None, revision: str | None = None, data_files=None,
             train_split: str = "train", test_split: str | None = "test", unlabeled_split=None, **_) -> dict:
    """What the corpus cache keys a dataset by beyond the arguments that name it: the fingerprint of each split read
    (``datasets``' digest of its content: a local copy's data, the files of the Hub revision it was loaded from), so
    an edited copy or an updated Hub dataset is tokenised anew. (See ``semiseq.data.prepare.describe``.)"""
    splits = open_dataset(path, config_name, revision, data_files)
    return {split: splits[split]._fingerprint for split in (train_split, test_split, *_names(unlabeled_split))
            if split in splits}


def load(path: str, config_name: str | None = None, revision: str | None = None, data_files=None,
         text_column: str = "text", label_column: str = "label", train_split: str = "train",
         test_split: str | None = "test", unlabeled_split: str | list[str] | None = None, test_fraction: float = 0.1,
         seed: int = 0, name: str | None = None) -> Texts:
    """Read the labeled ``train_split`` and ``test_split`` (None: hold out ``test_fraction`` of train) and the texts of
    ``unlabeled_split`` (one split or several, e.g. IMDB's ``unsupervised``) of a dataset (:func:`open_dataset`).
    Class names are the label column's ``ClassLabel`` names, else its sorted values (integers numerically). ``name``
    (None: from the path) names the corpus in results and messages. Bad input raises ``SemiseqError``."""
    if text_column == label_column:
        raise SemiseqError(f"data.text_column and data.label_column are both {text_column!r}; pass the column that "
                           f"holds the labels as data.label_column")
    splits = open_dataset(path, config_name, revision, data_files)
    title = _title(path, config_name)
    unlabeled_splits = _names(unlabeled_split)
    for option, split in (("train_split", train_split), ("test_split", test_split),
                          *(("unlabeled_split", s) for s in unlabeled_splits)):
        if split is not None and split not in splits:
            raise SemiseqError(f"data.{option}={split!r}: {title} has no split {split!r}; its splits are "
                               f"{list(splits)}; pass data.{option}= one of them"
                               + (", or null to hold out part of the training split" if option == "test_split" else ""))
    records, feature, order = _labeled(splits, train_split, text_column, label_column, title, "train")
    test_records = [] if test_split is None else _labeled(splits, test_split, text_column, label_column, title,
                                                          "test")[0]
    classes = (list(feature.names) if _is_class_label(feature) else
               [str(c) for c in sorted({label for _, label, _ in records}, key=order)])
    if len(classes) < 2:
        raise SemiseqError(f"data.label_column={label_column!r}: split {train_split!r} of {title} has {len(classes)} "
                           f"class(es) {classes}, but a classifier needs at least 2; check data.label_column and "
                           f"data.train_split")
    index = {c: i for i, c in enumerate(classes)}
    for _, label, where in test_records:
        if str(label) not in index:
            raise SemiseqError(f"{where} of {title} has label {label!r}, which is not a class of split "
                               f"{train_split!r} ({_shown(classes)}); fix the label, or pass data.test_split= another "
                               f"split")
    if test_split is None:
        if not 0 < test_fraction < 1:
            raise SemiseqError(f"data.test_fraction={test_fraction} must lie strictly between 0 and 1 (e.g. 0.1), or "
                               f"pass data.test_split= a split of {title} to test on")
        held = held_out(len(records), test_fraction, seed)
        test_records = [r for r, h in zip(records, held) if h]
        records = [r for r, h in zip(records, held) if not h]

    unlabeled = []
    for split in unlabeled_splits:
        texts = _texts(splits[split], text_column, split, title)
        kept = [t for t in texts if t is not None and t.strip()]
        if len(kept) < len(texts):
            log.warning("%s: dropped %d empty text(s) of split %r", title, len(texts) - len(kept), split)
        unlabeled += kept
    texts = Texts(name or _short_name(path, config_name, data_files), classes,
                  [r[0] for r in records], [index[str(r[1])] for r in records],
                  [r[0] for r in test_records], [index[str(r[1])] for r in test_records], unlabeled)
    log.info("%s: %d train, %d test, %d unlabeled texts; classes %s", title, len(texts.train), len(texts.test),
             len(texts.unlabeled), texts.class_names)
    return texts


def _labeled(splits: dict, split: str, text_column: str, label_column: str, title: str, role: str) -> tuple:
    """A labeled split's non-empty (text, label, where) records (a ClassLabel's labels as its names), its label
    feature and the key its labels sort by."""
    ds = splits[split]
    texts = _texts(ds, text_column, split, title)
    feature = _feature(ds, label_column, "label_column", split, title)
    values = _values(ds, label_column)
    if _is_class_label(feature):
        missing = [i for i, v in enumerate(values) if v is None or v < 0]  # -1: no label (GLUE's test splits)
        order = None
    elif _is_value(feature, ("int", "uint")):
        missing, order = [i for i, v in enumerate(values) if v is None], (lambda v: v)  # integers sort numerically
    elif _is_value(feature, TEXT_TYPES):
        values = [None if v is None else v.strip() for v in values]
        missing, order = [i for i, v in enumerate(values) if not v], str
    else:
        raise SemiseqError(f"data.label_column={label_column!r}: split {split!r} of {title} holds {feature!r}, and a "
                           f"label must be a class label (ClassLabel), an integer or a string; pass another column of "
                           f"{ds.column_names}, or convert it first (dataset.class_encode_column({label_column!r}))")
    if missing:
        others = [s for s in splits if s != split]
        raise SemiseqError(f"{len(missing)} of the {len(values)} examples of split {split!r} of {title} have no label "
                           f"(the first: example {missing[0]}, {values[missing[0]]!r}); every example of a labeled "
                           f"split needs one: pass data.{role}_split= a split with labels (of {others})"
                           + (", or data.test_split=null to hold out part of the training split" if role == "test"
                              else "") + ", or drop those examples first (dataset.filter)")
    if _is_class_label(feature):
        values = [feature.names[v] for v in values]
    records = [(text, label, f"split {split!r}, example {i}") for i, (text, label) in enumerate(zip(texts, values))]
    if role == "test":  # dropping a test example would silently change the score
        if (empty := next((where for text, _, where in records if text is None or not text.strip()), None)):
            raise SemiseqError(f"{empty} of {title}: the test text is empty; every test example counts towards the "
                               f"score, so it cannot be dropped: give it a text or drop it from the dataset first")
    kept = [r for r in records if r[0] is not None and r[0].strip()]
    if len(kept) < len(records):
        log.warning("%s: dropped %d empty text(s) of split %r", title, len(records) - len(kept), split)
    return kept, feature, order


def _feature(ds, column: str, option: str, split: str, title: str):
    if column not in ds.column_names:
        raise SemiseqError(f"data.{option}={column!r}: split {split!r} of {title} has no column {column!r}; its "
                           f"columns are {ds.column_names}; pass data.{option}= one of them")
    return ds.features[column]


def _texts(ds, column: str, split: str, title: str) -> list:
    feature = _feature(ds, column, "text_column", split, title)
    if not _is_value(feature, TEXT_TYPES):
        text = [c for c, f in ds.features.items() if _is_value(f, TEXT_TYPES)]
        raise SemiseqError(f"data.text_column={column!r}: split {split!r} of {title} holds {feature!r}, not text; "
                           f"pass data.text_column= a column of strings" + (f": one of {text}" if text else
                                                                            f" (its columns: {ds.column_names})"))
    return _values(ds, column)


def _values(ds, column: str) -> list:
    return ds.select_columns([column]).with_format("arrow")[column].to_pylist()  # arrow: fast for millions of rows


def _is_class_label(feature) -> bool:
    return type(feature).__name__ == "ClassLabel"


def _is_value(feature, dtypes: tuple[str, ...]) -> bool:
    return type(feature).__name__ == "Value" and str(feature.dtype).startswith(dtypes)


def _names(splits) -> list[str]:
    return [] if splits is None else [splits] if isinstance(splits, str) else list(splits)


def _title(path: str, config_name: str | None) -> str:
    return repr(str(path)) + (f" (config {config_name!r})" if config_name else "")


def _short_name(path: str, config_name: str | None, data_files=None) -> str:
    """``ag_news``, ``sst2`` (SetFit/sst2), ``glue-sst2``; a local copy: its file's or folder's name."""
    local = Path(str(path)).expanduser()
    if str(path) in BUILDERS.values() and not local.exists() and data_files:  # parquet + data_files: their folder's
        first = data_files if isinstance(data_files, str) else next(iter(
            data_files.values() if isinstance(data_files, dict) else data_files))
        local = Path(first if isinstance(first, str) else first[0]).expanduser().resolve().parent
    base = (local.name if local.is_dir() else local.stem) if local.exists() else str(path).rstrip("/").split("/")[-1]
    return base + (f"-{config_name}" if config_name else "")


def _shown(items: list, most: int = 10) -> str:
    """A list in a message, cut after ``most`` items."""
    return str(items) if len(items) <= most else f"{str(items[:most])[:-1]}, ... ({len(items):,} in all)]"


def _line(e: Exception) -> str:
    """An exception's text on one line (the error is one line of the terminal)."""
    return " ".join(f"{type(e).__name__}: {e}".split())


load.identity = identity  # what the corpus cache keys the data by (semiseq.data.prepare.describe)
