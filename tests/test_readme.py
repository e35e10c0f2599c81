"""Every `python train.py ...` and `python eval.py ...` command in the ```bash blocks of README.md and of the
measurement logs beside the reports (docs/<dataset>/README.md) composes as Hydra composes it when the command runs,
and each of its jobs passes `semiseq.cli.check` (what the entry point checks before it runs anything). Without `-m`
(and no `hydra.mode: MULTIRUN` from the config) that is one config of all the overrides; with it, Hydra first
composes the master config from the overrides that are not sweeps (so `data.root=` needs a `data=` that has the
key), then each job: here every value of each sweep (those of `hydra.sweeper.params` too, an interval by its bounds)
with the other sweeps at their first. Commands run in an empty folder: the README's paths need not exist, as
composing reads none of them. Placeholders compose as strings: `PATH` and `...` as they are, `<run>` as `run`
(Hydra, like the shell, takes no `<`)."""

import re
import shlex
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra._internal.utils import get_args_parser
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import IntervalSweep, Override
from hydra.errors import HydraException
from hydra.types import RunMode

from semiseq import SemiseqError, cli

from .conftest import CONF, ROOT

ENTRY_POINTS = {"train.py": "train", "eval.py": "eval"}  # script -> its config under conf/
SEPARATORS = {"|", "||", "&&", ";", "&"}
ASSIGNMENT = re.compile(r"[A-Za-z_]\w*=")
PLUGINS = {"hydra/launcher=slurm": "hydra_plugins.hydra_submitit_launcher",  # the sweeps extra: skip without it
           "hydra/launcher=joblib": "hydra_plugins.hydra_joblib_launcher",
           "hparams_search=optuna": "hydra_plugins.hydra_optuna_sweeper"}
PARSER = OverridesParser.create()


def shell_words(line: str) -> list[str]:
    """The words of a shell line as the shell splits them: quotes removed, `# comment` dropped, `|` `&&` `;` apart."""
    lexer = shlex.shlex(line, posix=True, punctuation_chars="|&;")
    lexer.whitespace_split = True
    return list(lexer)


def readme_commands(path: Path = ROOT / "README.md") -> list[tuple[str, list[str], dict[str, str]]]:
    """(file:line, words from the script on, the VAR="..." values set above it in its block) of each command of a
    markdown file that runs an entry point; backslash continuations joined."""
    commands, in_bash, pending, start = [], False, "", 0
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if line.startswith("```"):
            in_bash, variables = line.strip() == "```bash", {}
            continue
        if not in_bash:
            continue
        start = start or number
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        words, pending, first = shell_words(pending + line), "", start
        start = 0
        if len(words) == 1 and ASSIGNMENT.match(words[0]):
            name, value = words[0].split("=", 1)
            variables[name] = value
            continue
        segment: list[str] = []
        for word in [*words, ";"]:
            if word not in SEPARATORS:
                segment.append(word)
                continue
            while segment and ASSIGNMENT.match(segment[0]):  # VAR=value before the command: its environment
                segment.pop(0)
            if len(segment) > 1 and Path(segment[0]).name in ("python", "python3") and segment[1] in ENTRY_POINTS:
                commands.append((f"{path.relative_to(ROOT)}:{first}", segment[1:], dict(variables)))
            segment = []
    return commands


def expand(word: str, variables: dict[str, str], line: str) -> list[str]:
    """`$VAR` and `${VAR}` replaced by their values and split on blanks, as the shell does an unquoted expansion."""

    def value(match: re.Match) -> str:
        name = match[1] or match[2]
        if name not in variables:
            pytest.fail(f"{line}: ${name} is not set in this block (set: {', '.join(variables) or 'none'})")
        return variables[name]

    return re.sub(r"\$(?:\{(\w+)\}|(\w+))", value, word).split() if "$" in word else [word]


def compose_config(config: str, tmp_path: Path, overrides: list[str], hydra: bool = False):
    with initialize_config_dir(config_dir=str(CONF), version_base=None):
        return compose(config, overrides=[f"paths.log_dir={tmp_path}/logs", f"paths.output_dir={tmp_path}/run",
                                          *overrides], return_hydra_config=hydra)


def sweep_values(override: Override) -> list[str]:
    value = override.value()
    if isinstance(value, IntervalSweep):
        return [str(value.start), str(value.end)]
    return list(override.sweep_string_iterator())


def jobs(config: str, tmp_path: Path, overrides: list[str], multirun: bool) -> list[list[str]]:
    """The overrides of the jobs to compose for `python <config>.py [-m] <overrides>`, once the master config
    (the overrides that are not sweeps) composes as Hydra composes it first."""
    parsed = PARSER.parse_overrides(overrides)
    fixed = [o.input_line for o in parsed if not o.is_sweep_override()]
    master = compose_config(config, tmp_path, fixed, hydra=True)
    if not multirun and master.hydra.mode != RunMode.MULTIRUN:
        return [overrides]  # one job (a sweep in it is refused, as Hydra refuses it without -m)
    params = master.hydra.sweeper.get("params") or {}
    sweeps = {}
    for o in PARSER.parse_overrides([f"{k}={v}" for k, v in params.items()]) + parsed:  # the command line wins
        if o.is_sweep_override():
            assert not o.is_hydra_override(), f"Hydra cannot sweep over its own config ({o.input_line})"
            sweeps[o.get_key_element()] = [f"{o.get_key_element()}={v}" for v in sweep_values(o)]
        else:
            sweeps.pop(o.get_key_element(), None)  # a key=value fixes a key of the config's sweep
    first = [values[0] for values in sweeps.values()]
    runs = [first[:i] + [v] + first[i + 1:] for i, values in enumerate(sweeps.values()) for v in values]
    return [fixed + list(run) for run in dict.fromkeys(map(tuple, runs or [[]]))]


COMMANDS = [c for doc in [ROOT / "README.md", *sorted(ROOT.glob("docs/*/README.md"))] for c in readme_commands(doc)]


def test_readme_has_commands():
    assert len(COMMANDS) > 50 and {words[0] for _, words, _ in COMMANDS} == set(ENTRY_POINTS)


@pytest.mark.parametrize("line, words, variables", COMMANDS, ids=[where for where, _, _ in COMMANDS])
def test_readme_command_composes(tmp_path, monkeypatch, line, words, variables):
    monkeypatch.chdir(tmp_path)  # the README's relative paths lead nowhere: composing must not need them
    script, *argv = [re.sub(r"<(\w+)>", r"\1", w)  # <run>, <commit>: placeholders a user fills in
                     for word in words for w in expand(word, variables, line)]
    args = get_args_parser().parse_args(argv)  # Hydra's own command line: -m, and --cfg, --info... (ignored)
    for override, module in PLUGINS.items():
        if override in args.overrides:
            pytest.importorskip(module, reason=f"{override} needs pip install -e '.[sweeps]'")
    config, job = ENTRY_POINTS[script], ["(the master config)"]
    try:
        for job in jobs(config, tmp_path, args.overrides, args.multirun):
            cli.check(compose_config(config, tmp_path, job))
    except (HydraException, SemiseqError) as e:  # the one line train.py / eval.py would print
        error = cli.config_error(e) if isinstance(e, HydraException) else e
        pytest.fail(f"{line}: python {script} {' '.join(argv)}\n  job {' '.join(job)}:\n  {error}",
                    pytrace=False)
