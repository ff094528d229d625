"""`psipo sweep`: validate everything, plan, run the missing chunks, persist each, assemble the results.

Order of events (what a user can rely on):

1. The grid, `--shard`, `--jobs`, `--executor` and `--resume` are checked, every problem is loaded, every
   seed's dataset is drawn and every method's inputs built from it, and every method is solved exactly
   once on each problem (`grid.check_solvable`) — any mistake stops here with one `InputError` line
   naming the cell (exit 2) and **no directory is created**. An output root (`--out`) that cannot be
   created or written stops here too (`OutputError`, exit 1).
2. The executor starts (a Dask scheduler that cannot be reached is still a clean exit 2, no directory).
3. The sweep directory is created up front (or the `--resume` one reopened): it must exist to hold
   partial progress. See `psipo_cli.sweep.store` for its layout.
4. Chunks not yet on disk are computed; each is written (atomically) the moment it finishes.
5. When every chunk of this directory is on disk: ``results.csv`` (chunk files concatenated in chunk
   order), then figures, then the manifest says ``complete``.

Ctrl-C (SIGINT) or SIGTERM stops the workers, records ``interrupted`` in the manifest, and the CLI exits
130 (143) with one line; SIGKILL leaves the manifest at ``running``. Either way `--resume RUN_DIR`
finishes the job and its ``results.csv`` is byte-identical to an uninterrupted run's.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

from psipo_cli.errors import InputError
from psipo_cli.sweep.compute import ChunkTask
from psipo_cli.sweep.grid import SweepGrid, check_solvable, load_grid, with_n
from psipo_cli.sweep.plan import Chunk, parse_shard, plan_chunks, select
from psipo_cli.sweep.store import SweepDirectory, grid_record

DEFAULT_OUT = Path("outputs")


def make_tasks(grid: SweepGrid, chunks: list[Chunk]) -> list[ChunkTask]:
    """The `ChunkTask` of each chunk (problems with `n` applied; the objective resolved per problem)."""
    from psipo_cli.solvers.inputs import resolve_objective

    lanes = grid.lanes()
    variants = grid.variants()
    settings = [grid.gradient_settings(v) for v in variants]
    concrete: dict[tuple[int, int | None], Any] = {}
    tasks = []
    for chunk in chunks:
        key = (chunk.problem, chunk.n)
        if key not in concrete:
            concrete[key] = with_n(grid.loaded[chunk.problem], chunk.n)
        problem = concrete[key]
        tasks.append(
            ChunkTask(
                chunk_id=chunk.id,
                problem_name=grid.loaded[chunk.problem].name,
                n=chunk.n,
                problem=problem,
                lanes=tuple(lanes[m] for m in chunk.methods),
                taus=tuple(grid.tau[t] for t in chunk.taus),
                solver=grid.solver,
                objective=resolve_objective(problem, grid.objective),
                settings=settings[chunk.variant],
                axes=grid.axes(),
                variant=tuple(variants[chunk.variant].items()),
                problem_file=(grid.problems[chunk.problem].file or "") if grid.reads_files() else None,
            )
        )
    return tasks


def grid_difference(recorded: dict[str, Any], grid: SweepGrid) -> str:
    """The first identity key in which `grid` differs from the grid recorded in a directory (for the error
    message; `format` when only the record's format version differs)."""
    old = SweepGrid.from_json(recorded).identity()
    new = grid.identity()
    for key in new:
        if old.get(key) != new[key]:
            return key
    return "format"


def run_sweep(
    config: Path,
    jobs: int = 1,
    resume: Path | None = None,
    shard: str | None = None,
    executor: str = "local",
    scheduler: str | None = None,
    out: Path | None = None,
    quiet: bool = False,
    plots: bool = True,
    argv: list[str] | None = None,
) -> Path:
    """Run (or resume) the sweep of grid file `config`; returns the sweep directory.

    See the module docstring for the order of events. `out` is the root of new sweep directories
    (default ``outputs/``, created if missing); with `resume` the sweep continues in that directory.
    """
    from psipo_cli.sweep.executors import check_executor, open_executor

    grid = load_grid(config)
    wanted = parse_shard(shard)
    address = check_executor(executor, jobs, scheduler)
    directory = None
    if resume is not None:
        if out is not None:
            raise InputError("--out", str(out), "not used with --resume (the sweep continues in RUN_DIR)")
        directory = SweepDirectory.open(Path(resume))
        if directory.digest != grid.digest():
            key = grid_difference(directory.meta["grid"], grid)
            raise InputError(
                "CONFIG", str(config),
                f"differs from the sweep recorded in {resume} (in `{key}`); resume with the same config",
            )
        if wanted is not None and wanted != directory.shard:
            recorded = directory.shard.label if directory.shard else "none"
            raise InputError("--shard", shard, f"{resume} holds shard {recorded}")
        wanted = directory.shard
        _warn_versions(directory, quiet)
    else:
        # An unusable --out is found before the grid is solved or an executor started (exit 1).
        from psipo_cli.outputs.rundir import check_root

        check_root(Path(out) if out is not None else DEFAULT_OUT, create=True)
    check_solvable(grid)
    chunks = plan_chunks(grid)
    mine = select(chunks, wanted)
    tasks = {t.chunk_id: t for t in make_tasks(grid, mine)}

    with open_executor(executor, jobs, address) as pool:
        if directory is None:
            directory = SweepDirectory.create(
                Path(out) if out is not None else DEFAULT_OUT,
                grid_record(grid, chunks, wanted),
                Path(config).read_text(encoding="utf-8"),
            )
        directory.remove_stale()
        done = directory.done_ids()
        todo = [c for c in mine if c.id not in done]
        cells_total = sum(c.cells for c in mine)
        cells_done = cells_total - sum(c.cells for c in todo)
        say(quiet, _opening(directory.path, resume is not None, len(mine), len(todo), executor, pool.workers))
        directory.begin(list(sys.argv if argv is None else argv), executor, pool.workers)
        computed = 0
        solver_seconds = 0.0  # time spent inside the chunks (summed over workers), for the manifest
        started = time.perf_counter()
        try:
            with SweepProgress(cells_total, cells_done, enabled=not quiet and sys.stderr.isatty()) as progress:
                for output in pool.results(tasks[c.id] for c in todo):
                    directory.write_chunk(output)
                    computed += 1
                    solver_seconds += output.seconds
                    progress.advance(output.cells)
        except Exception:
            directory.end("failed", computed, solver_seconds)
            say(False, f"psipo: sweep failed; finished chunks are kept in {directory.path} "
                       f"(psipo sweep {config} --resume {directory.path} continues it)")
            raise
        except BaseException:
            # Ctrl-C (KeyboardInterrupt), SIGTERM (the CLI raises a BaseException for it): the CLI prints
            # its one line ("psipo: interrupted"); how to resume was said when the sweep started.
            directory.end("interrupted", computed, solver_seconds)
            raise
    elapsed = time.perf_counter() - started
    finish(directory, [c.id for c in mine], quiet, plots)
    directory.end("complete", computed, solver_seconds)
    say(quiet, f"wrote {directory.path} ({cells_total} cells; {computed} chunk(s) computed in {elapsed:.1f} s)")
    return directory.path


def _warn_versions(directory: SweepDirectory, quiet: bool) -> None:
    """Chunks computed by another psipo or numpy may differ in the last digits: say so (not an error, since
    a version bump rarely changes numbers, but byte-identity is then not guaranteed)."""
    from psipo_cli.outputs.rundir import library_versions

    recorded = directory.manifest.get("versions") or {}
    current = library_versions()
    changed = [f"{k} {recorded[k]} -> {v}" for k, v in current.items() if k in recorded and recorded[k] != v]
    if changed:
        say(quiet, f"warning: {directory.path} was started with other versions ({'; '.join(changed)}); "
                   "chunks computed now may differ in the last digits from those computed then")


def finish(directory: SweepDirectory, chunk_ids: list[str], quiet: bool, plots: bool) -> None:
    """Write ``results.csv`` from the chunk files, then ``summary.csv``, the figures and ``report.md`` (a
    figure that fails to render is reported but never costs the results, which are already on disk)."""
    from psipo_cli.outputs.formatting import csv_text
    from psipo_cli.sweep.figures import read_results, render_figures
    from psipo_cli.sweep.store import write_atomic
    from psipo_cli.sweep.summary import report_text, summary_frame

    results = directory.write_results([directory.chunk_text(i) for i in chunk_ids])
    summary = summary_frame(read_results(results))
    write_atomic(directory.path / "summary.csv", csv_text(summary))
    figures: list[Path] = []
    if plots:
        try:
            figures = render_figures(results, directory.path / "figures")
        except Exception as exc:  # figures are a convenience; the data are safe on disk
            say(quiet, f"warning: figures not written ({type(exc).__name__}: {exc})")
    write_atomic(directory.path / "report.md", report_text(directory.meta["grid"], summary, figures))


def _opening(path: Path, resumed: bool, total: int, todo: int, executor: str, workers: int) -> str:
    where = f"{executor}, {workers} worker(s)" if executor == "dask" else f"{workers} job(s)"
    if resumed:
        return f"resuming {path}: {total - todo} of {total} chunk(s) already done, {todo} to compute ({where})"
    return f"sweep {path}: {total} chunk(s) to compute ({where}); if interrupted, continue with --resume {path}"


def say(quiet: bool, line: str) -> None:
    if not quiet:
        print(line, file=sys.stderr, flush=True)


class SweepProgress:
    """A rich progress bar on stderr — cells done / total, elapsed, ETA — only when enabled (a terminal,
    not ``--quiet``)."""

    def __init__(self, total: int, done: int, enabled: bool) -> None:
        self.total, self.done, self.enabled = total, done, enabled
        self.bar: Any = None
        self.task: Any = None

    def __enter__(self) -> SweepProgress:
        if self.enabled:
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )

            self.bar = Progress(
                TextColumn("sweep"), BarColumn(), MofNCompleteColumn(), TextColumn("cells"),
                TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn(),
                console=Console(stderr=True), transient=True,
            )
            self.bar.start()
            self.task = self.bar.add_task("sweep", total=self.total, completed=self.done)
        return self

    def advance(self, cells: int) -> None:
        self.done += cells
        if self.bar is not None:
            self.bar.update(self.task, completed=self.done)

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            self.bar.stop()


__all__ = ["finish", "grid_difference", "make_tasks", "run_sweep", "say"]
