"""`psipo plot DIR`: re-render the figures of a run or sweep directory from its CSVs alone."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from psipo_cli.cli.options import LogProb
from psipo_cli.errors import InputError

app = typer.Typer()


@app.command()
def plot(
    run_dir: Annotated[Path, typer.Argument(help="A run directory (run, compare) or a sweep directory.",
                                         metavar="RUN_DIR")],
    log_prob: LogProb = False,
) -> None:
    """Re-render every figure of a run or sweep directory from its saved CSVs alone."""
    from psipo_cli.outputs.figures import render_figures

    if (run_dir / "results.csv").is_file() and not (run_dir / "policy.csv").is_file():
        from psipo_cli.sweep.figures import render_figures as render_sweep

        if log_prob:
            raise InputError("--log-prob", True, "sweep figures have no probability axis")
        paths = render_sweep(run_dir / "results.csv", run_dir / "figures")
    elif (run_dir / "policy.csv").is_file():
        paths = render_figures(run_dir, log_prob=log_prob)
    else:
        raise InputError("RUN_DIR", str(run_dir), "not a run directory (no policy.csv) nor a sweep directory "
                         "(no results.csv)")
    for path in paths:
        print(f"wrote {path}", file=sys.stderr)


@app.command()
def version() -> None:
    """Print the psipo version."""
    from psipo_cli import __version__

    print(__version__)
