"""`psipo run METHOD`: one method on one problem, exactly and/or by gradient descent."""

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
    output,
    with_settings,
)
from psipo_cli.config.settings import DATA, GRADIENT, METHOD, RUN, having

#: `run` takes every method option (applied to its one method), every gradient setting with a flag, and the
#: dataset-reading flags.
SETTINGS = (*having(RUN), *having(DATA), *having(METHOD),
            *(s for s in having(GRADIENT, flag=True) if METHOD not in s.roles))

app = typer.Typer()


@app.command()
@with_settings(SETTINGS)
def run(
    method: Annotated[str, typer.Argument(help="A registered method (psipo_cli.METHODS), e.g. dpo; `psipo methods` "
                                          "lists each with its loss, TRL name, options and kind of exact answer.",
                                          metavar="METHOD")],
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
    """Solve one method on one problem: exact and/or by gradient descent."""
    from psipo_cli.cli.pipeline import apply_method_options, execute_command
    from psipo_cli.solvers.entries import method_entry

    entries = [method_entry(method, "method")]
    flags = {"methods": entries, "problem": problem, "name": name, **apply_method_options(entries, given or {})}
    execute_command("run", {}, flags, tau, beta,
                    output(out, no_save, no_plots, quiet, fmt, no_header, table, log_prob))
