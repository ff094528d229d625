"""`psipo diagnose DATA`: what each method's exact optimum does to every prompt of a preference dataset.

Thin: parse, check everything, call `psipo_cli.diagnose`, write the run directory, print. stdout gets the
table, one JSON object (`--format json`), or the run directory (`--format path`).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from psipo_cli.cli.options import Name, NoPlots, NoSave, Out, Quiet, Tau, comma_list, numbers, with_settings
from psipo_cli.config.choices import EXECUTORS, metavar
from psipo_cli.config.settings import DATA, METHOD, having

#: `--format` of `diagnose`: the terminal table, one JSON object, or the run directory.
DIAGNOSE_FORMATS = ("table", "json", "path")
Format = Annotated[str, typer.Option("--format", "-f", help="What stdout gets.", metavar=metavar(DIAGNOSE_FORMATS))]

app = typer.Typer()


@app.command()
@with_settings((*having(DATA), *(s for s in having(METHOD) if s.name != "rm_steps")))
def diagnose(
    data: Annotated[str, typer.Argument(help="Preference dataset, or a problem file with a dataset key.",
                                        metavar="DATA")],
    methods: Annotated[list[str] | None, typer.Option(
        help="Methods, as dpo,ipo or by repeating the flag [rlhf,dpo,ipo].", metavar="METHOD[,METHOD...]")] = None,
    tau: Tau = None,
    jobs: Annotated[int, typer.Option("--jobs", "-j", help="Local worker processes (one BLAS thread each), "
                                      "each solving chunks of prompts.", metavar="INTEGER")] = 1,
    executor: Annotated[str, typer.Option(help="Where chunks of prompts run.", metavar=metavar(EXECUTORS))] = "local",
    scheduler: Annotated[str | None, typer.Option(
        help="Dask scheduler address [env DASK_SCHEDULER_ADDRESS; neither: a local Dask cluster of --jobs "
        "workers].", metavar="ADDRESS")] = None,
    out: Out = Path("outputs"),
    name: Name = None,
    no_save: NoSave = False,
    no_plots: NoPlots = False,
    quiet: Quiet = False,
    fmt: Format = "table",
    given: dict[str, Any] | None = None,
) -> None:
    """Diagnose a preference dataset: per method and tau, the prompts whose exact optimum is not attained,
    the completions sent to 0, KL to pi_ref, and how the methods' answers differ.

    Every prompt is solved exactly on its own comparisons (default rlhf, dpo, ipo at tau 0.1, 0.5, 1, 2);
    --jobs N or --executor dask send chunks of prompts to workers, as psipo sweep does.
    """
    from psipo_cli.cli.pipeline import apply_method_options
    from psipo_cli.config.taus import DEFAULT_TAUS, tau_values
    from psipo_cli.config.validate import choice
    from psipo_cli.diagnose import DEFAULT_METHODS
    from psipo_cli.errors import InputError
    from psipo_cli.problem import DatasetSource, open_source
    from psipo_cli.solvers.entries import entry_spec, method_entry
    from psipo_cli.solvers.runs import check_options
    from psipo_cli.sweep.executors import check_executor

    # Everything the user gave is checked before the dataset is read or any work starts.
    choice("--format", fmt, DIAGNOSE_FORMATS)
    if fmt == "path" and no_save:
        raise InputError("--format", fmt, "needs a run directory (drop --no-save)")
    taus = tau_values(numbers(tau), "--tau") if tau else list(DEFAULT_TAUS)
    entries = [method_entry(m, "--methods") for m in (comma_list(methods) if methods is not None else DEFAULT_METHODS)]
    if not entries:
        raise InputError("--methods", ",".join(methods or []), "give at least one method")
    flags = apply_method_options(entries, given or {})
    specs = [entry_spec(e) for e in entries]
    labels = [s.label for s in specs]
    if len(set(labels)) != len(labels):
        raise InputError("--methods", ",".join(labels), "each method once")
    for spec in specs:
        check_options(spec)
    address = check_executor(executor, jobs, scheduler)
    if not no_save:
        from psipo_cli.outputs.rundir import check_root

        check_root(out, create=True)
    source = open_source(data, data_format=flags.get("data_format", "auto"),
                         skip_bad_rows=flags.get("skip_bad_rows", False))
    if not isinstance(source, DatasetSource):
        raise InputError("DATA", data, "not a preference dataset (a data file, or a problem file with a dataset "
                         "key); psipo compare solves problems")
    doc, kl = _run(source.data, specs, taus, executor, jobs, address)
    run_dir = None
    if not no_save:
        run_dir = _save(source, doc, kl, entries, taus, flags, executor, jobs, out, name, no_plots)
        if not quiet:
            print(f"wrote {run_dir}", file=sys.stderr)
    if fmt == "path":
        print(run_dir)
    elif fmt == "json":
        from psipo_cli.outputs.rundir import dump_json

        sys.stdout.write(dump_json({**doc, "run_dir": None if run_dir is None else str(run_dir)}))
    else:
        from psipo_cli.outputs.diagnosis import table_text

        sys.stdout.write(table_text(doc))


def _run(data: Any, specs: list, taus: list[float], executor: str, jobs: int, address: str | None) -> tuple:
    """The diagnosis and the per-prompt KL values; in this process (`--jobs 1`), else in chunks of prompts on
    the executor (four per worker, so that a slow chunk does not hold the others up)."""
    from psipo_cli.diagnose import diagnose

    if executor == "local" and jobs == 1:
        doc, results = diagnose(data, specs, taus)
        return doc, results.kl
    from psipo_cli.sweep.executors import open_executor

    with open_executor(executor, jobs, address) as pool:
        doc, results = diagnose(data, specs, taus, executor=pool, chunks=4 * pool.workers)
    return doc, results.kl


def _save(source: Any, doc: dict[str, Any], kl: Any, entries: list, taus: list[float], flags: dict[str, Any],
          executor: str, jobs: int, out: Path, name: str | None, no_plots: bool) -> Path:
    from psipo_cli.outputs import diagnosis
    from psipo_cli.outputs.formatting import csv_text
    from psipo_cli.outputs.rundir import RunDirectory
    from psipo_cli.problem.datasets import dataset_record

    config = {
        "command": "diagnose", "name": name or source.name, "data": source.data.source.path, "methods": entries,
        "tau": list(taus), "solver": "exact", "objective": "dataset", "data_format": flags.get("data_format", "auto"),
        "skip_bad_rows": flags.get("skip_bad_rows", False), "executor": executor, "jobs": jobs,
        "dataset": dataset_record(source.data),
    }
    inputs = [{"path": path, "sha256": digest} for path, digest in source.files]
    with RunDirectory(out, "diagnose", name or source.name, config, sys.argv, create_root=True, inputs=inputs) as rd:
        rd.write_json("diagnosis.json", doc)
        methods, pairs = diagnosis.frames(doc)
        rd.write_text("methods.csv", csv_text(methods, diagnosis.METHOD_COLUMNS))
        rd.write_text("pairs.csv", csv_text(pairs, diagnosis.PAIR_COLUMNS))
        figures = [] if no_plots else diagnosis.render_figures(rd.work, doc, kl, [e.get("label") or e["method"]
                                                                                   for e in entries], taus)
        rd.write_text("report.md", diagnosis.report_text(doc, figures))
    return rd.final_path
