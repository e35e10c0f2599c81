"""What ``train.py`` and ``eval.py`` share: bad input ends as one ``semiseq: error: ...`` line and exit status 1,
never a stack trace.

Hydra reports a config the user got wrong (an unknown option or key, an unparsable override) in several lines;
:func:`run` turns that into one sentence listing the valid choices. :func:`check` refuses impossible values
(a zero batch size, a negative learning rate, a missing ``???`` value, a data setting its parser does not take)
before anything is built, instead of failing deep inside a data loader or a constructor.
"""

from __future__ import annotations

import difflib
import inspect
import math
import os
import re
import sys
from collections.abc import Callable
from typing import NoReturn

from omegaconf import DictConfig, OmegaConf

from semiseq import SemiseqError


def fail(error: BaseException | str) -> NoReturn:
    """Print ``semiseq: error: <error>`` on stderr and exit with status 1."""
    print(f"semiseq: error: {error}", file=sys.stderr, flush=True)
    sys.exit(1)


def run(hydra_main: Callable[[], object]) -> None:
    """Call a ``@hydra.main`` function; an unknown option or key, or an override Hydra cannot parse, is reported as
    one line (with ``HYDRA_FULL_ERROR=1`` set by the user: Hydra's own report and stack trace)."""
    if os.environ.get("HYDRA_FULL_ERROR") == "1":
        hydra_main()
        return
    from hydra.errors import ConfigCompositionException, OverrideParseException

    os.environ["HYDRA_FULL_ERROR"] = "1"  # Hydra then raises its errors to us instead of printing them
    try:
        hydra_main()
    except (ConfigCompositionException, OverrideParseException) as e:  # raised while composing, before any job
        fail(config_error(e))


def config_error(e: Exception) -> str:
    """One sentence for a Hydra composition error: what was wrong and the valid choices."""
    from hydra.errors import MissingConfigException, OverrideParseException

    if isinstance(e, MissingConfigException) and e.options and "/" in (e.missing_cfg_file or ""):
        group, _, name = e.missing_cfg_file.rpartition("/")
        return (f"{group}={name} is not an option; choose {group}= one of {', '.join(e.options)}"
                + _close(name, e.options, f"{group}="))
    if isinstance(e, OverrideParseException):
        return (f"cannot parse the override {e.override!r} ({str(e.message).splitlines()[0]}); quote values with "
                "spaces or special characters, e.g. 'name=\"a b\"'")
    cause = e.__cause__
    if getattr(cause, "full_key", None) and getattr(cause, "parent_node", None) is not None and "struct" in str(cause):
        parent, _, name = cause.full_key.rpartition(".")
        keys = [str(k) for k in cause.parent_node.keys() if parent or k != "hydra"]
        add = re.search(r"use (\+\S+)", str(e))
        return (f"{cause.full_key} is not a config key; {parent or 'the top level'} has {', '.join(keys)}"
                + _close(name, keys, f"{parent}." if parent else "")
                + (f"; to add a new key anyway, write {add[1]}" if add else ""))
    lines = [line.strip() for text in (str(e), str(cause or "")) for line in text.splitlines()]
    return " ".join(line for line in lines if line and not line.startswith(("Config search path", "provider=")))


def _close(name: str, options: list[str], prefix: str = "") -> str:
    match = difflib.get_close_matches(name, options, 1)
    return f" (did you mean {prefix}{match[0]}?)" if match else ""


# key: (what it must be, an example value). "?" means null is allowed too.
SEEDS = {"data.corpus.seed": ("seed", 0)}  # the data's own (synthetic corpus, validation split), in every data config
TRAIN_VALUES = {
    "seed": ("seed", 0), "pretrain.seed": ("seed", 0), **SEEDS,  # seed first: pretrain.seed defaults to ${seed}
    "pretrain.max_steps": ("int", 600), "pretrain.batch_size": ("int", 64), "pretrain.val_every_n_steps": ("int", 200),
    "pretrain.tbptt_steps": ("int?", 400), "pretrain.lr": ("positive", 3e-3), "pretrain.weight_decay": ("number", 0.0),
    "pretrain.grad_clip": ("number?", 5.0),
    "finetune.max_epochs": ("int", 20), "finetune.batch_size": ("int", 20), "finetune.lr": ("positive", 3e-3),
    "finetune.head_lr": ("positive?", 1e-4), "finetune.weight_decay": ("number", 0.0),
    "finetune.grad_clip": ("number?", 5.0),
    "data.max_len": ("int?", 400), "data.eval_batch_size": ("int", 256), "data.corpus.val_fraction": ("fraction", 0.15),
    "model.backbone.embed_dim": ("int", 32), "model.backbone.hidden_dim": ("int", 128),
    "model.backbone.num_layers": ("int", 1), "model.head.hidden_dim": ("int", 512),
    "model.backbone.embed_dropout": ("fraction", 0.0), "model.backbone.dropout": ("fraction", 0.0),
    "model.head.dropout": ("fraction", 0.5), "mode.weight": ("number", 1.0), "mode.text_batch_size": ("int?", 64),
    "trainer.log_every_n_steps": ("int", 10), "threads": ("int?", 1),
}
EVAL_VALUES = {"batch_size": ("int", 256), "threads": ("int?", 1), **SEEDS}
CHOICES = {"model.head.readout": ("last", "linear_gain"), "model.output.softmax": ("full", "adaptive")}
MEANING = {"int": "a positive integer", "positive": "a positive number", "number": "a number >= 0",
           "fraction": "a number in [0, 1)", "seed": "an integer from 0 to 2**32 - 1"}


def check(cfg: DictConfig, values: dict[str, tuple[str, object]] = TRAIN_VALUES) -> None:
    """Refuse a config with a missing (``???``) value, an impossible number (see ``values``), an unknown choice, or
    a ``data.corpus`` setting its parser does not take, with one :class:`SemiseqError` naming the key and the fix."""
    missing = sorted(_missing(OmegaConf.to_container(cfg, resolve=False)))
    if missing:
        raise SemiseqError(f"{missing[0]} has no value (??? in the config) and is required"
                           f"{f' by data={cfg.data.name}' if missing[0].startswith('data.') else ''}; pass "
                           f"{missing[0]}=..." + (f" (also missing: {', '.join(missing[1:])})" if missing[1:] else ""))
    for key, (kind, example) in values.items():
        value = OmegaConf.select(cfg, key, default="<absent>")
        if value == "<absent>" or (value is None and kind.endswith("?")):
            continue
        base = kind.rstrip("?")
        number = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
        ok = number and {"int": isinstance(value, int) and value > 0, "positive": value > 0,
                         "number": value >= 0, "fraction": 0 <= value < 1,
                         "seed": isinstance(value, int) and 0 <= value < 2**32}[base]  # numpy's and Lightning's range
        if not ok:
            raise SemiseqError(f"{key}={value!r} is not {MEANING[base]}{' or null' if kind.endswith('?') else ''}; "
                               f"pass e.g. {key}={example}")
    for key, options in CHOICES.items():
        value = OmegaConf.select(cfg, key, default=options[0])
        if value not in options:
            raise SemiseqError(f"{key}={value!r} is not an option; choose one of {', '.join(options)}"
                               + _close(str(value), list(options), f"{key}="))
    for key in ("data.corpus", "data.corpus.source"):
        node = OmegaConf.select(cfg, key)
        if isinstance(node, DictConfig) and "_target_" in node:
            _check_arguments(node, key, cfg.data.get("name", "?"))


def _missing(value, key: str = ""):
    """Keys whose value is ``???``, without resolving interpolations (which would fail on the first such key)."""
    if isinstance(value, (dict, list)):
        for k, v in value.items() if isinstance(value, dict) else enumerate(value):
            yield from _missing(v, f"{key}.{k}" if key else str(k))
    elif value == "???":
        yield key


def _check_arguments(node: DictConfig, key: str, data: str) -> None:
    from hydra.utils import get_object

    params = inspect.signature(get_object(node._target_)).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return
    unknown = [str(k) for k in node if not str(k).startswith("_") and k not in params]
    if unknown:
        raise SemiseqError(f"{key}.{unknown[0]} is not a setting of data={data} ({node._target_} takes "
                           f"{', '.join(params)}); remove it: an override or experiment= made for other data may "
                           "have set it")
