"""What `run` and `compare` do once their flags are parsed: solve, save, print."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from psipo_cli.cli.options import Output, numbers
from psipo_cli.errors import InputError
from psipo_cli.solvers.experiment import RunConfig, specs_of


def load_problem_spec(
    spec: str | dict[str, Any], base_dir: str = ".", data_format: str = "auto", skip_bad_rows: bool = False
) -> Any:
    """The configured problem (preset, file, dataset, or inline table), errors attributed to the right key:
    a `Problem`, or the `DatasetSource` of a dataset whose prompts do not share one completion list (solved
    prompt by prompt: `execute_dataset`). `data_format` and `skip_bad_rows` (``--data-format``,
    ``--skip-bad-rows``) say how a dataset is read and are refused for a problem that is no dataset (they
    would do nothing)."""
    from psipo_cli.problem import DatasetSource, open_source
    from psipo_cli.problem.datasets.data import shared_actions

    try:
        source = open_source(spec, base_dir, data_format, skip_bad_rows)
        if isinstance(source, DatasetSource) and shared_actions(source.data)[0] is not None:
            source = source.problem()
    except InputError as exc:
        if exc.key == "problem" and not exc.where:
            raise InputError("--problem", exc.value, exc.reason) from None
        raise
    if not isinstance(source, DatasetSource) and source.dataset is None:
        for flag, value, default in (("--data-format", data_format, "auto"), ("--skip-bad-rows", skip_bad_rows, False)):
            if value != default:
                raise InputError(flag, value, f"the problem {source.name!r} is not a preference dataset (a data "
                                 "file, or a problem file with a dataset key)")
    return source


def apply_method_options(entries: list[dict[str, Any]], given: dict[str, Any]) -> dict[str, Any]:
    """Move the method options among the flags `given` (`--psi`, `--rm-l2`, `--rm-steps`, `--eps`) into the
    method tables `entries` of the methods that take them (`Method.options`; a flag overrides the table's
    value); returns the other flags. An option that none of the methods takes is an error naming it."""
    from psipo_cli.config.settings import METHOD, having
    from psipo_cli.methods import get_method

    rest = dict(given)
    for s in having(METHOD):
        if s.name not in rest:
            continue
        value = rest.pop(s.name)
        takers = [e for e in entries if s.name in get_method(str(e["method"])).options]
        if not takers:
            names = ", ".join(dict.fromkeys(str(e["method"]) for e in entries))
            raise InputError(s.option, value, f"not an option of {names}")
        for entry in takers:
            entry[s.name] = value
    return rest


def execute_command(
    command: str, experiment: dict[str, Any], flags: dict[str, Any], tau: list[str] | None,
    beta: list[str] | None, output: Output,
) -> None:
    """`run` and `compare` once parsed: resolve the configuration (defaults < `experiment` < `flags`, the
    flags given as setting names), then `execute`. `--tau` and `--beta` (its alias) take comma lists and
    repeat; every value of both counts."""
    from psipo_cli.config.taus import tau_values
    from psipo_cli.solvers.experiment import resolve

    taus = tau_values(numbers(tau), "--tau") if tau else []
    taus += tau_values(numbers(beta), "--beta") if beta else []
    if taus:
        flags = {**flags, "tau": taus}
    config = resolve(command, experiment, flags)
    execute(config, out=output.out, save=output.save, plots=output.plots, quiet=output.quiet, fmt=output.fmt,
            header=output.header, table=output.table, log_prob=output.log_prob)


def execute(
    config: RunConfig, out: Path, save: bool, plots: bool, quiet: bool, fmt: str, header: bool,
    table: str = "policy", log_prob: bool = False,
) -> None:
    """Validate everything, solve, write the run directory (atomically), print in `fmt` (`table`: which
    table ``--format csv`` prints; `log_prob`: figures with a log probability axis)."""
    from psipo_cli import api
    from psipo_cli.problem import DatasetSource
    from psipo_cli.solvers.inputs import resolve_objective

    # Everything the user gave is checked before any work starts.
    if fmt == "path" and not save:
        raise InputError("--format", fmt, "needs a run directory (drop --no-save)")
    problem = load_problem_spec(config.problem, config.base_dir, config.data_format, config.skip_bad_rows)
    if isinstance(problem, DatasetSource):
        execute_dataset(config, problem, out, save, quiet, fmt, header, table)
        return
    specs = specs_of(config)
    settings = config.settings
    objective = resolve_objective(problem, config.objective)
    api.check_taus(config.tau)
    _check_table(api.Frames, table, fmt)
    if save:
        # An unusable --out is found now, not after the computation (exit 1, as when the disk fills up).
        from psipo_cli.outputs.rundir import check_root

        check_root(out, create=True)

    painter = None
    if save and plots:  # the figures' child gets matplotlib ready while this process solves
        from psipo_cli.outputs.figures import Painter

        painter = Painter.start(log_prob)
    try:
        with _progress(quiet) as progress:
            frames = api.solve(problem, specs, config.tau, solver=config.solver, objective=objective,
                               settings=settings, progress=progress)
        run_dir = None
        if save:
            run_dir = _save(config, problem, specs, frames, settings, out, plots, log_prob, painter)
            if not quiet:
                print(f"wrote {run_dir}", file=sys.stderr)
    finally:
        if painter is not None:
            painter.close()
    _print(frames, run_dir, fmt, header, table, lambda tables: tables.print_summary(frames, problem))


#: A per-prompt table of a dataset run (`policy`, `metrics`, `rewards`, `actions`, `contexts`) with more rows
#: than this is written gzip-compressed (`policy.csv.gz`, ...): 10^5 prompts × 4 completions × 12 method-tau
#: cells are 4.8 million rows.
COMPRESS_ROWS = 100_000


def execute_dataset(
    config: RunConfig, source: Any, out: Path, save: bool, quiet: bool, fmt: str, header: bool, table: str
) -> None:
    """`run` / `compare` on a dataset whose prompts have their own completions: every prompt solved exactly
    (`psipo_cli.dataset_run`), the tables written (compressed beyond `COMPRESS_ROWS` rows), the
    context-weighted summary printed. `--solver gradient` (or `both`) runs every prompt by gradient descent
    too, in chunks of prompts (`psipo_cli.dataset_gradient`); the population objective is refused up front."""
    from dataclasses import fields

    import pandas as pd

    from psipo_cli import api
    from psipo_cli.dataset_run import DatasetFrames, dataset_frames
    from psipo_cli.solvers.runs import check_options

    where = source.data.source.path
    if config.objective == "population":
        raise InputError("--objective", config.objective, f"{where} is data: it has no preference model (use "
                         "--objective dataset)")
    specs = specs_of(config)
    for spec in specs:
        check_options(spec)
    api.check_taus(config.tau)
    _check_table(DatasetFrames, table, fmt)
    if save:
        from psipo_cli.outputs.rundir import check_root

        check_root(out, create=True)
    parts, solutions = [], None
    if config.solver in ("exact", "both"):
        from psipo_cli.solvers.dataset import solve_dataset

        solutions = solve_dataset(source.data, specs, config.tau)
        parts.append(dataset_frames(source.data, specs, config.tau, solutions))
    if config.solver in ("gradient", "both"):
        from psipo_cli.dataset_gradient import gradient_dataset_frames

        with _progress(quiet) as progress:
            parts.append(gradient_dataset_frames(source.data, specs, config.tau, config.settings, progress,
                                                 exact=solutions))
    frames = DatasetFrames(*(pd.concat([getattr(p, f.name) for p in parts], ignore_index=True)
                             for f in fields(DatasetFrames)))
    run_dir = _save_dataset(config, source, frames, out) if save else None
    if run_dir is not None and not quiet:
        print(f"wrote {run_dir}", file=sys.stderr)
    _print(frames, run_dir, fmt, header, table,
           lambda tables: sys.stdout.write(tables.dataset_summary_text(frames.summary, source.data)))


def _save_dataset(config: RunConfig, source: Any, frames: Any, out: Path) -> Path:
    from psipo_cli.outputs import report
    from psipo_cli.outputs.rundir import RunDirectory
    from psipo_cli.problem.datasets import dataset_record, id_tables

    data = source.data
    resolved = {"name": source.name, "source": data.source.path, "description": source.description,
                "dataset": dataset_record(data)}
    recorded = {**config.to_json(), "problem_resolved": resolved}
    inputs = ([config.config_file] if config.config_file else []) + [
        {"path": path, "sha256": digest} for path, digest in source.files]
    contexts, actions = id_tables(data)
    seeds = None if config.solver == "exact" else config.settings.seeds
    with RunDirectory(out, config.command, config.name, recorded, sys.argv, seeds=seeds, create_root=True,
                      inputs=inputs) as rd:
        paths = [rd.write_csv(stem, frame, compress=len(frame) > COMPRESS_ROWS) for stem, frame in (
            ("policy", frames.policy), ("metrics", frames.metrics), ("rewards", frames.rewards),
            ("contexts", contexts), ("actions", actions))]
        paths.append(rd.write_csv("summary", frames.summary))  # one row per method and tau: always plain
        rd.write_text("report.md", report.dataset_report(recorded, frames.summary, [p.name for p in paths]))
    return rd.final_path


def _check_table(frames_type: type, table: str, fmt: str) -> None:
    """``--table`` names a table `Frames` has, and comes with ``--format csv`` (checked before any work)."""
    from dataclasses import fields

    from psipo_cli.outputs.tables import TABLES

    available = [t for t in TABLES if t in {f.name for f in fields(frames_type)} or hasattr(frames_type, t)]
    if table not in available:
        raise InputError("--table", table, f"must be one of {', '.join(available)}")
    if table != "policy" and fmt != "csv":
        raise InputError("--table", table, "needs --format csv (json holds policy and metrics)")


def _save(
    config: RunConfig, problem: Any, specs: list, frames: Any, settings: Any, out: Path, plots: bool,
    log_prob: bool = False, painter: Any = None,
) -> Path:
    from psipo_cli import api
    from psipo_cli.outputs import figures, report
    from psipo_cli.outputs.rundir import RunDirectory, run_tables
    from psipo_cli.problem import problem_table

    recorded = {**config.to_json(), "problem_resolved": problem_table(problem, files=True)}
    extra = {}
    if plots:
        datasets = settings.seeds if problem.is_sampled else 1
        extra["tau_grid"] = api.tau_grid(problem, specs, config.tau, frames.objective, datasets, settings=settings)
    # The files read, for the manifest: the experiment file, then the problem file and its pairs_csv.
    inputs = ([config.config_file] if config.config_file else []) + recorded["problem_resolved"]["files"]
    # Every table goes in, header-only when empty, so that every run directory has the same files.
    tables = run_tables(frames)
    if problem.dataset is not None:
        from psipo_cli.problem.datasets import id_tables

        extra["contexts"], extra["actions"] = id_tables(problem.dataset)
    with RunDirectory(out, config.command, config.name, recorded, sys.argv, seeds=settings.seeds,
                      create_root=True, inputs=inputs) as rd:
        rd.write_frames(policy=frames.policy, metrics=frames.metrics, curves=frames.curves, **tables, **extra)
        # Drawn from the CSVs just written, by the function `psipo plot` runs: one path, the same figures.
        if not plots:
            figure_paths = []
        elif painter is not None:
            figure_paths = painter.paint(rd.path)
        else:
            figure_paths = figures.render_figures(rd.path, log_prob=log_prob)
        rd.write_text("report.md", report.render_report(recorded, frames.policy, frames.metrics, figure_paths,
                                                        tables=tables))
    return rd.final_path


def _print(
    frames: Any, run_dir: Path | None, fmt: str, header: bool, table: str, summary: Callable[[Any], Any]
) -> None:
    """What stdout gets: the run directory, the JSON document, one table as CSV, or the terminal table
    (`summary(tables)`, the problem's or the dataset's)."""
    from psipo_cli.outputs import tables

    if fmt == "path":
        if run_dir is None:
            raise InputError("--format", fmt, "needs a run directory (drop --no-save)")
        print(run_dir)
    elif fmt == "json":
        sys.stdout.write(tables.json_document(frames, run_dir))
    elif fmt == "csv":
        sys.stdout.write(tables.table_csv(frames, table, header=header))
    else:
        summary(tables)


class _progress:
    """A rich progress bar on stderr, shown only on a terminal, not with --quiet, after one second."""

    def __init__(self, quiet: bool) -> None:
        self.enabled = not quiet and sys.stderr.isatty()
        self.bar: Any = None
        self.task: Any = None
        self.started = time.monotonic()

    def __enter__(self) -> Callable[[int, int], None] | None:
        return self.update if self.enabled else None

    def update(self, done: int, total: int) -> None:
        if self.bar is None:
            if time.monotonic() - self.started < 1.0:
                return
            from rich.console import Console
            from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

            self.bar = Progress(TextColumn("gradient"), BarColumn(), TextColumn("{task.percentage:>3.0f}%"),
                                TimeRemainingColumn(), console=Console(stderr=True), transient=True)
            self.bar.start()
            self.task = self.bar.add_task("gradient", total=total)
        self.bar.update(self.task, completed=done, total=total)

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            self.bar.stop()


def describe_problem(problem: Any) -> str:
    """A plain-text view of a problem for `psipo problem show`."""
    import numpy as np

    lines = [f"{problem.name}: {problem.description}".rstrip(": "), f"actions: {', '.join(problem.actions)}"]
    for note in problem.notes:
        lines.append(f"note: {note}")
    for ctx in problem.contexts:
        lines.append(f"\ncontext {ctx.name} (weight {ctx.weight:g})")
        lines.append("  pi_ref: " + "  ".join(f"{a}={p:.4g}" for a, p in zip(problem.actions, ctx.pi_ref, strict=True)))
        lines.append("  mu:     " + "  ".join(f"{a}={p:.4g}" for a, p in zip(problem.actions, ctx.mu, strict=True)))
        if ctx.rewards is not None:
            pairs = zip(problem.actions, ctx.rewards, strict=True)
            lines.append("  rewards (Bradley-Terry): " + "  ".join(f"{a}={r:g}" for a, r in pairs))
        if ctx.preferences is not None:
            lines.append(f"  preferences P[row beats column] (from {ctx.model}):")
            lines += _matrix(problem.actions, [[f"{v:.3f}" for v in row] for row in ctx.preferences])
        if ctx.wins is not None:
            total = np.asarray(ctx.wins).sum()
            label = (
                f"sampled, dataset 0 of sample n={ctx.sample.n} seed={ctx.sample.seed}" if ctx.sample else "recorded"
            )
            lines.append(f"  win counts W[winner, loser] ({label}; {_count(total)} comparisons):")
            lines += _matrix(problem.actions, [[_count(v) for v in row] for row in ctx.wins])
    return "\n".join(lines)


def _count(value: float) -> str:
    """A comparison count in full (``12345678``, not ``1.23457e+07``); non-integers in shortest form."""
    value = float(value)
    return str(int(value)) if value.is_integer() and abs(value) < 1e15 else repr(value)


def _matrix(actions: list[str], cells: list[list[str]]) -> list[str]:
    """Rows of an action × action matrix, indented by two spaces: row names left-aligned, each column
    right-aligned under its header and as wide as its longest entry (header or value) plus two spaces.

    Widths are terminal cells (`rich.cells.cell_len`), so names in wide scripts (CJK) line up too."""
    from rich.cells import cell_len

    def pad(text: str, width: int, right: bool) -> str:
        fill = " " * (width - cell_len(text))
        return fill + text if right else text + fill

    name_width = max(cell_len(a) for a in actions)
    widths = [max(cell_len(a), *(cell_len(row[j]) for row in cells)) + 2 for j, a in enumerate(actions)]
    lines = ["  " + " " * name_width + "".join(pad(a, w, True) for a, w in zip(actions, widths, strict=True))]
    for action, row in zip(actions, cells, strict=True):
        lines.append("  " + pad(action, name_width, False) + "".join(
            pad(v, w, True) for v, w in zip(row, widths, strict=True)))
    return lines
