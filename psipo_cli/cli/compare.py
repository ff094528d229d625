"""`psipo compare [CONFIG]`: several methods on one problem over a tau grid; flags override CONFIG."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from psipo_cli.cli.options import (
    Beta,
    Format,
    LogProb,
    Name,
    NoHeader,
    NoPlots,
    NoSave,
    Out,
    ProblemOpt,
    Quiet,
    TableOpt,
    Tau,
    comma_list,
    output,
    with_settings,
)
from psipo_cli.config.settings import DATA, GRADIENT, METHOD, RUN, having
from psipo_cli.errors import InputError

#: `compare` takes every method option (applied to the compared methods that take it) and every gradient
#: setting with a flag, and the dataset-reading flags.
SETTINGS = (*having(RUN), *having(DATA), *having(METHOD),
            *(s for s in having(GRADIENT, flag=True) if METHOD not in s.roles))
DEFAULT_METHODS = ("rlhf", "dpo", "ipo")

app = typer.Typer()


@app.command()
@with_settings(SETTINGS)
def compare(
    config: Annotated[Path | None, typer.Argument(help="Experiment file (experiments/*.toml).",
                                                  metavar="CONFIG")] = None,
    methods: Annotated[list[str] | None, typer.Option(
        help=f"Methods, as dpo,ipo or by repeating the flag (`psipo methods` lists them) "
        f"[{','.join(DEFAULT_METHODS)}].",
        metavar="METHOD[,METHOD...]")] = None,
    tau: Tau = None,
    beta: Beta = None,
    problem: ProblemOpt = None,
    out: Out = Path("outputs"),
    name: Name = None,
    no_save: NoSave = False,
    no_plots: NoPlots = False,
    quiet: Quiet = False,
    fmt: Format = "table",
    no_header: NoHeader = False,
    table: TableOpt = "policy",
    log_prob: LogProb = False,
    given: dict[str, Any] | None = None,
) -> None:
    """Compare methods (default rlhf, dpo, ipo) on one problem over a tau grid; flags override CONFIG."""
    from psipo_cli.cli.pipeline import apply_method_options, execute_command
    from psipo_cli.solvers.entries import method_entry
    from psipo_cli.solvers.experiment import load_experiment

    if config is not None and not config.exists() and _is_method(str(config)):
        # `--methods dpo ipo`: the shell split the list, and Click took `ipo` for CONFIG.
        raise InputError("config", str(config), "a method, not an experiment file: give several methods as "
                         f"--methods {','.join([*comma_list(methods), str(config)])}")
    experiment = load_experiment(config) if config is not None else {}
    if methods is not None:
        entries = [method_entry(m, "--methods") for m in comma_list(methods)]
        if not entries:
            raise InputError("--methods", ",".join(methods), "give at least one method")
    else:
        entries = [dict(e) for e in experiment.get("methods", [{"method": m} for m in DEFAULT_METHODS])]
    flags: dict[str, Any] = {"problem": problem, "name": name, "methods": entries,
                             **apply_method_options(entries, given or {})}
    execute_command("compare", experiment, flags, tau, beta,
                    output(out, no_save, no_plots, quiet, fmt, no_header, table, log_prob))


def _is_method(word: str) -> bool:
    from psipo_cli.methods import METHODS

    return word in METHODS
