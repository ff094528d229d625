"""`psipo problem list | show | validate`."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from psipo_cli.cli.options import with_settings
from psipo_cli.config.settings import DATA, having

app = typer.Typer(help="List, show and validate problems.", no_args_is_help=True)


@app.command("list")
def problem_list() -> None:
    """The built-in problems (the paper's D1, D2, D3 are aliases of three of them)."""
    from psipo_cli.problem import ALIASES, PRESETS

    for name, table in PRESETS.items():
        aliases = [a for a, n in ALIASES.items() if n == name]
        alias = f" (alias {', '.join(aliases)})" if aliases else ""
        print(f"{name}\t{table['description']}{alias}")


def _open(spec: str | Path, given: dict[str, Any] | None) -> Any:
    """The problem or `DatasetSource` `spec` names, a dataset read as ``--data-format`` and
    ``--skip-bad-rows`` say (refused for a problem that is no dataset, as by `run`)."""
    from psipo_cli.config.settings import setting
    from psipo_cli.errors import InputError
    from psipo_cli.problem import DatasetSource, open_source

    given = {k: v for k, v in (given or {}).items() if v != setting(k).default}
    source = open_source(str(spec), data_format=given.get("data_format", "auto"),
                         skip_bad_rows=given.get("skip_bad_rows", False))
    if not isinstance(source, DatasetSource) and given:
        name, value = next(iter(given.items()))
        raise InputError("--" + name.replace("_", "-"), value, f"{spec} is not a preference dataset (a data file, "
                         "or a problem file with a dataset key)")
    return source


@app.command("show")
@with_settings(having(DATA))
def problem_show(spec: Annotated[str, typer.Argument(help="Preset name, TOML file or preference dataset.",
                                                                metavar="PRESET|FILE")],
                 given: dict[str, Any] | None = None) -> None:
    """Print a problem (actions, policies, preference model and win counts per context), or a dataset's counts."""
    from psipo_cli.problem import DatasetSource

    source = _open(spec, given)
    if isinstance(source, DatasetSource):
        from psipo_cli.problem.datasets import describe

        print(describe(source.data))
        return
    from psipo_cli.cli.pipeline import describe_problem
    from psipo_cli.problem import realise

    print(describe_problem(realise(source, 0)))


@app.command("validate")
@with_settings(having(DATA))
def problem_validate(path: Annotated[Path, typer.Argument(help="Problem TOML file or preference dataset.",
                                                                      metavar="FILE")],
                     given: dict[str, Any] | None = None) -> None:
    """Check a problem file or dataset: exit 0 and one line if valid, exit 2 and the first error otherwise."""
    from psipo_cli.errors import InputError
    from psipo_cli.problem import DatasetSource

    if not path.exists():
        raise InputError("problem", str(path), "no such file")
    source = _open(path, given)
    if isinstance(source, DatasetSource):
        from psipo_cli.problem.datasets import summary

        counts = summary(source.data)
        skipped = f", {counts['rows_skipped']} bad rows skipped" if counts["rows_skipped"] else ""
        print(f"{path}: valid ({counts['prompts']} prompt(s), {counts['completions']} completions, "
              f"{counts['comparisons']:g} comparisons, {counts['ties']:g} ties{skipped})", file=sys.stderr)
        return
    print(f"{path}: valid ({source.n_actions} actions, {len(source.contexts)} context(s))", file=sys.stderr)


@app.command("random")
def problem_random(
    actions: Annotated[int, typer.Option("--actions", help="Number of actions (>= 2; >= 3 for cyclic).")] = 3,
    kind: Annotated[str, typer.Option("--kind", help="bt (Bradley-Terry), nontransitive (independent pairs) "
                                      "or cyclic (generalised rock-paper-scissors).",
                                      metavar="[bt|nontransitive|cyclic]")] = "cyclic",
    seed: Annotated[int, typer.Option("--seed", help="Random seed: the same seed writes the same file.")] = 0,
    output: Annotated[Path | None, typer.Option("--output", help="Write the problem file here (default: stdout).",
                                                metavar="FILE")] = None,
) -> None:
    """Write a random preference problem as a problem file (validated like every problem file)."""
    from psipo_cli.problem import build_problem
    from psipo_cli.problem.loading import parse_toml
    from psipo_cli.problem.random_games import random_table, table_toml

    text = table_toml(random_table(actions, kind, seed))
    build_problem(parse_toml(text, "problem", Path("<generated>")), source="<generated>")
    if output is None:
        sys.stdout.write(text)
        return
    from psipo_cli.sweep.store import write_atomic

    try:
        write_atomic(output, text)
    except OSError as exc:
        from psipo_cli.errors import InputError

        raise InputError("--output", str(output), exc.strerror or str(exc)) from None
    print(f"wrote {output}", file=sys.stderr)
