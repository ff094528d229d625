"""`psipo sweep` and `psipo merge`: thin wrappers over `psipo_cli.sweep`.

stdout gets the sweep directory (one line, for `dir=$(psipo sweep grid.toml)`), or with `--format json`
one JSON object (`psipo_cli.sweep.store.json_document`); progress and messages go
to stderr. Exit codes as everywhere: 2 for a bad grid or bad flags (nothing written), 130 on Ctrl-C (the
directory keeps every finished chunk and can be resumed), 1 for a runtime failure.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from psipo_cli.config.choices import EXECUTORS, SWEEP_FORMATS, metavar
from psipo_cli.config.validate import choice

#: `--format` of `sweep` and `merge`: the directory (one line, for `dir=$(psipo sweep grid.toml)`), or one
#: JSON object with the directory, its status and the rows of results.csv.
Format = Annotated[str, typer.Option("--format", "-f", help="What stdout gets.", metavar=metavar(SWEEP_FORMATS))]

app = typer.Typer()


@app.command()
def sweep(
    config: Annotated[
        Path, typer.Argument(help="Sweep grid (TOML): experiments/sweep-example.toml.", metavar="CONFIG")
    ],
    jobs: Annotated[int, typer.Option("--jobs", "-j", help="Local worker processes (one BLAS thread each).",
                                      metavar="INTEGER")] = 1,
    resume: Annotated[
        Path | None, typer.Option(help="Continue the sweep in RUN_DIR: compute only its missing chunks.",
                                  metavar="RUN_DIR")
    ] = None,
    shard: Annotated[
        str | None, typer.Option(help="Run only shard i of N (1-based, e.g. 2/4) into its own directory.",
                                 metavar="i/N")
    ] = None,
    executor: Annotated[str, typer.Option(help="Where chunks run.", metavar=metavar(EXECUTORS))] = "local",
    scheduler: Annotated[
        str | None, typer.Option(help="Dask scheduler address [env DASK_SCHEDULER_ADDRESS; neither: a local "
                                      "Dask cluster of --jobs workers].", metavar="ADDRESS")
    ] = None,
    out: Annotated[Path | None, typer.Option(help="Root of new sweep directories [outputs].", metavar="DIR")] = None,
    no_plots: Annotated[bool, typer.Option("--no-plots", help="Write no figures.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress or messages on stderr.")] = False,
    fmt: Format = "path",
) -> None:
    """Run a grid of problems × n × methods × tau (× seeds): parallel, resumable, shardable.

    Cells sharing a problem and dataset size are solved together by the vectorised engine, in chunks
    that are saved as they finish; results.csv does not depend on --jobs, shards or interruptions. The
    sweep directory is created up front, once the grid has been checked, so that progress survives
    an interruption: resume it with --resume RUN_DIR and the same CONFIG.
    """
    from psipo_cli.sweep.runner import run_sweep

    choice("--format", fmt, SWEEP_FORMATS)
    _print(run_sweep(config, jobs=jobs, resume=resume, shard=shard, executor=executor, scheduler=scheduler,
                     out=out, quiet=quiet, plots=not no_plots), fmt)


@app.command()
def merge(
    dirs: Annotated[
        list[Path], typer.Argument(help="Sweep directories of one grid (e.g. its shards).", metavar="DIR")
    ],
    out: Annotated[Path | None, typer.Option(help="Root of the merged sweep directory [outputs].",
                                             metavar="DIR")] = None,
    no_plots: Annotated[bool, typer.Option("--no-plots", help="Write no figures.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No messages on stderr.")] = False,
    fmt: Format = "path",
) -> None:
    """Combine the shards of a sweep into one directory, with the results.csv of a single full run."""
    from psipo_cli.sweep.merge import merge_sweeps

    choice("--format", fmt, SWEEP_FORMATS)
    _print(merge_sweeps(dirs, out=out, quiet=quiet, plots=not no_plots), fmt)


def _print(path: Path, fmt: str) -> None:
    if fmt == "json":
        from psipo_cli.sweep.store import json_document

        sys.stdout.write(json_document(path))
    else:
        print(path)
