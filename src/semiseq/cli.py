"""What ``train.py`` and ``eval.py`` share: bad input ends as one ``semiseq: error: ...`` line and exit status 1,
never a stack trace: :func:`run` for a config Hydra refuses while composing (against :mod:`semiseq.config`'s schemas),
:func:`check` for what composing lets through (a missing value, a number out of range, a data setting its parser does
not take)."""

import difflib
import inspect
import os
import re
import sys
from collections.abc import Callable
from dataclasses import fields, is_dataclass
from typing import NoReturn

from hydra.errors import ConfigCompositionException, OverrideParseException
from omegaconf import DictConfig, OmegaConf

from semiseq import SemiseqError, config


def fail(error: BaseException | str) -> NoReturn:
    """Print ``semiseq: error: <error>`` on stderr and exit with status 1."""
    print(f"semiseq: error: {error}", file=sys.stderr, flush=True)
    sys.exit(1)


def run(hydra_main: Callable[[], object]) -> None:
    """Call a ``@hydra.main`` function; a config Hydra refuses is one line (with ``HYDRA_FULL_ERROR=1`` set by the
    user: Hydra's own report and stack trace)."""
    if os.environ.get("HYDRA_FULL_ERROR") == "1":
        hydra_main()
        return
    os.environ["HYDRA_FULL_ERROR"] = "1"  # Hydra then raises its errors to us instead of printing them
    try:
        hydra_main()
    except (ConfigCompositionException, OverrideParseException) as e:  # raised while composing, before any job
        fail(config_error(e))


def config_error(e: Exception) -> str:
    """One sentence from the text of a Hydra composition error and of its cause: what was wrong, the choices it lists,
    and for a key of a schema (:mod:`semiseq.config`) the schema's keys or the field's kind."""
    text = f"{e}\n{e.__cause__ or ''}".split("Config search path")[0]
    key = m[1] if (m := re.search(r"full_key: (\S+)", text)) else ""
    parent, _, name = key.rpartition(".")
    schema = getattr(config, m[1], None) if (m := re.search(r"object_type=(\w+)", text)) else None
    known = {f.name: f for f in fields(schema)} if is_dataclass(schema) else {}
    where = f" (in {m[1]})" if (m := re.match(r"In '(.+?)': \w+ raised", text)) else ""  # set by a yaml file
    if m := re.search(r"Could not find '(.+)/([^/']+)'", text):  # an option of a group
        group, options = m[1], re.findall(r"^\t(\S+)$", text, re.MULTILINE)
        return f"{group}={m[2]} is not an option; choose {group}= one of {', '.join(options)}" + _close(
            m[2], options, f"{group}=")
    if m := re.search(r"Invalid value '(.*)', expected one of \[(.*)\]", text):  # a choice: an Enum's
        return (f"{key}={m[1]!r} is not an option; choose one of {m[2]}" + _close(m[1], m[2].split(", "), f"{key}=")
                + where)
    m = re.search(r"Value '(.*)' of type '(\w+)' could not be converted|field '\w+' is not (Optional)", text)
    if m and "meaning" in getattr(known.get(name), "metadata", {}):  # a type: the field's kind says more
        return config.refusal(key, "None" if m[3] else repr(m[1]) if m[2] == "str" else m[1], known[name]) + where
    if "not in struct" in text or re.search(r"Key '.*' not in '", text):  # not a key (of a schema: `known`)
        add = re.search(r"use (\+\S+)", text)
        keys = f"; {parent or 'the top level'} has {', '.join(known)}" if known else ""
        return (f"{key} is not a config key{keys}"
                + _close(name, list(known), f"{parent}." if parent else "") + where
                + (f"; to add a new key anyway, write {add[1]}" if add else ""))
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if isinstance(e, OverrideParseException):
        return f"cannot parse an override ({lines[0]}); quote values with spaces or special characters: 'name=\"a b\"'"
    return ": ".join(line for line in lines if not line.startswith(("full_key:", "object_type=", "reference_type=")))


def _close(name: str, options: list[str], prefix: str = "") -> str:
    match = difflib.get_close_matches(name, options, 1)
    return f" (did you mean {prefix}{match[0]}?)" if match else ""


def check(cfg: DictConfig) -> None:
    """Refuse a config with a missing (``???``) value, a number outside its field's kind (:mod:`semiseq.config`), or
    a ``data.corpus`` setting its parser does not take, with one :class:`SemiseqError` naming the key and the fix."""
    missing = sorted(k for k, v in config.flat(OmegaConf.to_container(cfg, resolve=False)).items() if v == "???")
    if missing:
        by = f" by data={cfg.data.name}" if missing[0].startswith("data.") else ""
        raise SemiseqError(f"{missing[0]} has no value (??? in the config) and is required{by}; pass {missing[0]}=..."
                           + (f" (also missing: {', '.join(missing[1:])})" if missing[1:] else ""))
    config.check(cfg, OmegaConf.get_type(cfg))
    for key in ("data.corpus", "data.corpus.source", "objective"):
        node = OmegaConf.select(cfg, key)
        if isinstance(node, DictConfig) and "_target_" in node:
            group = key.split(".")[0]
            _check_arguments(node, key, f"{group}={OmegaConf.select(cfg, f'{group}.name', default='?')}")


def _check_arguments(node: DictConfig, key: str, option: str) -> None:
    from hydra.utils import get_object

    params = inspect.signature(get_object(node._target_)).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return
    unknown = [str(k) for k in node if not str(k).startswith("_") and k not in params]
    if unknown:
        raise SemiseqError(f"{key}.{unknown[0]} is not a setting of {option} ({node._target_} takes "
                           f"{', '.join(params)}); remove it: an override or experiment= written for another "
                           f"{option.split('=')[0]}= option may have set it")
