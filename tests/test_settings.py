"""Every declared setting works the same way on every surface: the flags of `run`/`compare`, `psipo_cli.solve`,
experiment files and sweep grids (README: "The same names work in experiment files, sweep grids and
`GradientSettings`").

The test walks `SETTINGS`: a setting added there is covered here without editing this file. For each one it
takes a valid value other than the default and an invalid value, both built from the declaration's own range
or choices (just inside / just outside it), and checks that every surface accepts the first — and records
it — and rejects the second with the same reason, keyed by the setting's name (as a flag on the command
line, `methods.NAME` for a method option of a grid).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest

from psipo_cli import solve
from psipo_cli.cli import app
from psipo_cli.config.settings import DATA, GRADIENT, METHOD, RUN, SETTINGS, GradientSettings, Setting
from psipo_cli.errors import InputError
from psipo_cli.methods import METHODS

# The dataset-reading settings (role DATA: `--data-format`, `--skip-bad-rows`) apply where a preference dataset
# is read — flags of run/compare/problem, experiment-file keys —, not to presets, `solve` or grids:
# tests/test_dataset_settings.py covers their surfaces.
SURFACED = [s for s in SETTINGS if s.flag and DATA not in s.roles]
METHOD_ONLY = [s for s in SURFACED if s.roles == (METHOD,)]


def valid(s: Setting) -> Any:
    """A value inside the declared range (or a declared choice) that is not the default."""
    if s.type == "int":
        return s.minimum + 1
    if s.type == "real":
        lo, hi = s.interval.lo, s.interval.hi
        if math.isinf(hi):
            return 2 * s.default if s.default else 0.5
        middle = (lo + hi) / 2
        return middle if middle != s.default else (lo + middle) / 2
    if s.type == "choice":
        return s.choices[-1] if s.choices[-1] != s.default else s.choices[0]
    return "identity"  # a built-in Psi (the only text setting)


def invalid(s: Setting) -> Any:
    """A value just outside the declared range, or not a declared choice."""
    if s.type == "int":
        return s.minimum - 1
    if s.type == "real":
        return s.interval.lo if s.interval.lo_open else s.interval.lo - 1
    return "nope" if s.type == "choice" else ""


def method_for(s: Setting) -> str:
    """A registered method that takes the method option `s` (any method for the other settings)."""
    return next(name for name, m in METHODS.items() if s.name in m.options) if METHOD in s.roles else "ipo"


def name_of(key: str) -> str:
    """The setting an error key names: `--rm-l2`, `rm_l2`, `methods.rm_l2` -> `rm_l2`."""
    return key.split(".")[-1].lstrip("-").replace("-", "_")


def cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """`psipo ARGS` in this process: exit code, stdout, stderr."""
    try:
        result = app(list(args), prog_name="psipo")
        code = 0 if result in (None, 0) else int(result)
    except SystemExit as exc:
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def toml_value(value: Any) -> str:
    return json.dumps(value) if isinstance(value, str) else repr(value)


def cli_args(s: Setting, value: Any) -> list[str]:
    """`run METHOD ... --flag value` (exact solves on paper-d1: quick, and every setting is still validated)."""
    solver = [] if s.name == "solver" else ["--solver", "exact"]
    return ["run", method_for(s), "--problem", "paper-d1", "--tau", "1", *solver, s.option, str(value)]


def recorded(config: dict[str, Any], s: Setting, as_option: bool) -> Any:
    """The value in `config.json`: in the method's table for a method option (`run` applies `rm_steps` and
    `eps` to its one method; an experiment file's top-level `rm_steps` is the gradient setting)."""
    return config["methods"][0][s.name] if as_option else config[s.name]


@pytest.mark.parametrize("s", SURFACED, ids=lambda s: s.name)
def test_every_surface_accepts_a_valid_value(s: Setting, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from psipo_cli.solvers.experiment import load_experiment, resolve
    from psipo_cli.sweep.grid import resolve_grid

    value = valid(s)
    # The command line: the value reaches config.json.
    code, out, err = cli(capsys, *cli_args(s, value), "--out", str(tmp_path / "runs"), "--no-plots", "-f", "path")
    assert code == 0, err
    assert recorded(json.loads((Path(out.strip()) / "config.json").read_text()), s, METHOD in s.roles) == value
    # Python: `solve` takes it as a keyword.
    keyword = {s.name: value}
    solve("paper-d1", method_for(s), 1.0, **({"solver": "exact"} | keyword))
    # Experiment files: a top-level key, or a key of the method's table for a method option.
    entry = {"method": method_for(s), **(keyword if s in METHOD_ONLY else {})}
    top = "" if s in METHOD_ONLY else f"{s.name} = {toml_value(value)}\n"
    options = "".join(f", {k} = {toml_value(v)}" for k, v in entry.items() if k != "method")
    path = tmp_path / "experiment.toml"
    path.write_text(f'{top}methods = [{{ method = "{entry["method"]}"{options} }}]\n', encoding="utf-8")
    config = resolve("compare", load_experiment(path), {}).to_json()
    assert recorded(config, s, s in METHOD_ONLY) == value
    # Sweep grids: a top-level key (method options apply to the methods that take them) ...
    data = {"methods": [method_for(s)], "problems": ["paper-d1"], s.name: value}
    grid = resolve_grid(data, tmp_path)
    if s in METHOD_ONLY:
        assert grid.methods[0][s.name] == value
    elif RUN in s.roles:
        assert getattr(grid, s.name) == value
    else:
        assert getattr(grid.gradient_settings(), s.name) == value
    # ... and, but for `seeds` (runs inside a cell) and the run choices, a list of values is an axis.
    if (GRADIENT in s.roles and s.name != "seeds") or s in METHOD_ONLY:
        # A second valid value: the default, else one more (inside a bounded range: halfway to its low end).
        bounded = s.type == "real" and not math.isinf(s.interval.hi)
        other = s.default if s.default is not None else (s.interval.lo + value) / 2 if bounded else value + 1
        swept = resolve_grid({**data, s.name: [value, other]}, tmp_path)
        assert swept.axes() == (s.name,)


@pytest.mark.parametrize("s", SURFACED, ids=lambda s: s.name)
def test_every_surface_rejects_an_invalid_value_with_the_same_reason(
    s: Setting, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from psipo_cli.solvers.entries import entry_spec
    from psipo_cli.solvers.experiment import resolve
    from psipo_cli.solvers.runs import check_options
    from psipo_cli.sweep.grid import check_solvable, resolve_grid

    value = invalid(s)
    reasons = {}
    code, out, err = cli(capsys, *cli_args(s, value), "--no-save")
    assert code == 2 and out == "" and err.count("\n") == 1, err
    assert err.startswith(f"psipo: {s.option} = "), err
    reasons["cli"] = err.split(": ", 2)[2].strip()

    with pytest.raises(InputError) as exc:
        solve("paper-d1", method_for(s), 1.0, **({"solver": "exact"} | {s.name: value}))
    assert name_of(exc.value.key) == s.name
    reasons["api"] = exc.value.reason

    with pytest.raises(InputError) as exc:
        if s in METHOD_ONLY:  # a method table's values are checked where every method spec is
            check_options(entry_spec({"method": method_for(s), s.name: value}))
        else:
            resolve("compare", {"methods": [{"method": method_for(s)}], s.name: value}, {})
    assert name_of(exc.value.key) == s.name
    reasons["experiment"] = exc.value.reason

    with pytest.raises(InputError) as exc:
        grid = resolve_grid({"methods": [method_for(s)], "problems": ["paper-d1"], s.name: value}, tmp_path)
        check_solvable(grid)
    assert name_of(exc.value.key) == s.name
    reasons["sweep"] = exc.value.reason.split(" (problem ")[0]  # the sweep adds the cell it was found in

    assert len(set(reasons.values())) == 1, reasons


def test_reasons_say_the_declared_range_in_words() -> None:
    # Spelled out by hand from the README's settings: lr > 0, batch_size >= 0, lr_final in (0, 1],
    # ema_decay in [0, 1), eps in (0, 0.5), optimizer adam | sgd | md.
    expected = {
        "lr": "must be a positive finite number",
        "batch_size": "must be a non-negative integer",
        "steps": "must be a positive integer",
        "lr_final": "must lie in (0, 1]",
        "ema_decay": "must lie in [0, 1)",
        "eps": "must lie in (0, 0.5)",
        "optimizer": "must be one of adam, sgd, md",
    }
    for name, reason in expected.items():
        s = next(s for s in SETTINGS if s.name == name)
        with pytest.raises(InputError, match=f"^{s.option} = .*: {reason}$".replace("(", r"\(").replace(")", r"\)")
                           .replace("[", r"\[").replace("]", r"\]")):
            GradientSettings(**{name: invalid(s)})


def test_help_shows_every_flag_with_its_default(capsys: pytest.CaptureFixture[str]) -> None:
    import dataclasses

    defaults = {f.name: f.default for f in dataclasses.fields(GradientSettings)}
    for command, names in (("run", [s.name for s in SURFACED]),
                           ("compare", [s.name for s in SURFACED if s not in METHOD_ONLY])):
        code, out, _ = cli(capsys, command, "--help")
        assert code == 0
        text = " ".join(out.split())
        for name in names:
            s = next(s for s in SETTINGS if s.name == name)
            assert s.option in text, (command, s.option)
            if defaults.get(name) is not None:
                assert f"[{s.default_text()}]" in text and s.default == defaults[name]


# ============================================================================================ docs/options.md
DOCS = Path(__file__).resolve().parents[1] / "docs" / "options.md"
README = Path(__file__).resolve().parents[1] / "README.md"


def test_docs_options_is_generated_from_the_declarations() -> None:
    from psipo_cli.config.settings import options_markdown

    assert DOCS.read_text(encoding="utf-8") == options_markdown(), (
        "docs/options.md is stale: python -m psipo_cli.config.settings > docs/options.md")


def test_docs_options_table_lists_every_flag_with_the_engine_defaults(capsys: pytest.CaptureFixture[str]) -> None:
    import dataclasses

    rows = [line.split("|")[1:-1] for line in DOCS.read_text(encoding="utf-8").splitlines()
            if line.startswith("| `--")]
    table = {cells[0].strip().strip("`"): cells[2].strip().strip("`") for cells in rows}
    # Every flag of `run` is in the table (read from `psipo run --help`, not from the declarations).
    _, out, _ = cli(capsys, "run", "--help")
    import re

    flags = set(re.findall(r"^\s+(?:-[a-z], )?(--[a-z0-9-]+)", out, flags=re.MULTILINE))
    outputs = {"--tau", "--beta", "--problem", "--out", "--name", "--no-save", "--no-plots", "--quiet", "--format",
               "--no-header", "--table", "--log-prob", "--help"}
    assert set(table) == flags - outputs
    # The defaults in the table are the dataclass's own (GradientSettings' fields), where it has the field.
    for field in dataclasses.fields(GradientSettings):
        flag = "--" + field.name.replace("_", "-")
        if flag in table and field.default is not None:
            assert float(table[flag]) == field.default if isinstance(field.default, float) else (
                table[flag] == str(field.default)), flag


def test_readme_option_defaults_agree_with_the_declarations() -> None:
    import re

    text = " ".join(README.read_text(encoding="utf-8").split())
    paragraph = text[text.index("Options shared by `run` and `compare`"):]
    paragraph = paragraph[:paragraph.index("The gradient defaults")]
    quoted = dict(re.findall(r"`(--[a-z-]+)` \(([0-9.e+-]+)[;)]", paragraph))  # `--steps` (18000), `--lr` (0.01)
    by_flag = {s.option: s for s in SETTINGS}
    checked = [flag for flag in quoted if flag in by_flag]
    assert len(checked) >= 4, quoted
    for flag in checked:
        assert float(quoted[flag]) == by_flag[flag].default, flag
    for word in re.findall(r"`(--[a-z-]+) ([a-z|-]+)`", paragraph):  # `--solver exact|gradient|both`
        if word[0] in by_flag:
            assert tuple(word[1].split("|")) == by_flag[word[0]].choices, word
