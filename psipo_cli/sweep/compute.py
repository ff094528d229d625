"""What a worker does with one chunk: one `api.solve` call, laid out as rows of `results.csv`.

A `ChunkTask` carries everything the worker needs, pickled (the `Problem` itself, not a path: Dask workers
on other machines may not see the grid's files). `run_chunk` returns the chunk's CSV text; the *driver*
writes it to disk, so workers need no shared file system.

`results.csv` layout (`RESULT_COLUMNS`): one row per cell × solver × context × action —
`problem, n, method, tau, solver, context, action, prob, prob_lo, prob_hi` (as `policy.csv` of `psipo run`),
then the cell's metrics for that solver and context (as `metrics.csv`: `status, kl, entropy, loss,
win_rate_ref, win_rate_mu, reward, tv_to_optimum, grad_norm, nash_gap, exploitability, seeds, objective,
detail`; the two game metrics are empty where the context has no preference model), repeated on every
action row so that the table is tidy for filtering, and last `context_weight`, the context's normalised
weight rho(x) (what a mean over contexts must weight by, paper Eq. 6). `n` is empty for problems whose
data are not sampled. A grid that sweeps settings (`lr = [0.01, 0.1]`, `rm_l2 = [0, 0.1]`) gets one column
per swept setting after `n` (`result_columns`), empty for a method that does not take a swept option.
Rows are in grid order (method, tau, solver: exact then gradient, context, action — the orders of the
grid and of the problem file), never in completion order; numbers are written in shortest round-trip form
(`formatting.csv_cell`), so the same results always give the same bytes.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from psipo_cli.schema import RESULT_KEYS, RESULT_METRICS, RESULT_POLICY, SOLVER_ORDER

if TYPE_CHECKING:
    from psipo_cli.config.settings import GradientSettings
    from psipo_cli.sweep.grid import SweptMethod



def result_columns(axes: tuple[str, ...] = (), files: bool = False) -> list[str]:
    """The columns of `results.csv`: `problem` (the problem's name), `problem_file` when the grid reads
    problem files (`files`), `n`, the swept settings `axes` (if any), then the results."""
    head = [RESULT_KEYS[0], *(["problem_file"] if files else []), RESULT_KEYS[1]]
    return [*head, *axes, *RESULT_KEYS[2:], *RESULT_POLICY, *RESULT_METRICS, "context_weight"]


RESULT_COLUMNS = result_columns()
BLAS_THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


@dataclass(frozen=True)
class ChunkTask:
    """One chunk, ready to solve: a problem (with `n` applied), its methods and tau values, the settings
    (with `seeds`), and the values of the swept settings for the `results.csv` columns (`axes`: the
    variant's gradient settings and each method's swept options). `problem_name` is the `problem` cell;
    `problem_file` the `problem_file` cell (the file as the grid lists it, `""` for a preset or inline
    table), None when the grid reads no problem file (no such column)."""

    chunk_id: str
    problem_name: str
    n: int | None
    problem: Any
    lanes: tuple[SweptMethod, ...]
    taus: tuple[float, ...]
    solver: str
    objective: str
    settings: GradientSettings
    axes: tuple[str, ...] = ()
    variant: tuple[tuple[str, Any], ...] = ()
    problem_file: str | None = None

    @property
    def specs(self) -> tuple[Any, ...]:
        return tuple(lane.spec for lane in self.lanes)


@dataclass(frozen=True)
class ChunkOutput:
    """The CSV text of a chunk (header included), its cell count and the seconds `api.solve` took."""

    chunk_id: str
    text: str
    cells: int
    seconds: float
    pid: int


def run_chunk(task: ChunkTask) -> ChunkOutput:
    """Solve one chunk (this runs in the worker)."""
    from psipo_cli import api

    started = time.perf_counter()
    frames = api.solve(
        task.problem, list(task.specs), list(task.taus), solver=task.solver, objective=task.objective,
        settings=task.settings,
    )
    seconds = time.perf_counter() - started
    return ChunkOutput(task.chunk_id, chunk_csv(task, frames), len(task.specs) * len(task.taus), seconds,
                       os.getpid())


def n_column(problem: Any, n: int | None) -> int | None:
    """The dataset size to report: the swept `n`, else the problem's own when every sampled context
    draws the same number of comparisons; None when its data are not sampled."""
    if n is not None:
        return n
    sizes = {c.sample.n for c in problem.contexts if c.sample is not None}
    return sizes.pop() if len(sizes) == 1 else None


def chunk_csv(task: ChunkTask, frames: Any) -> str:
    """The rows of one chunk as CSV text, in grid order (see the module docstring)."""
    import csv
    import io

    from psipo_cli.outputs.formatting import csv_cell

    problem = task.problem
    policy: dict[tuple, list[Any]] = {}
    for row in frames.policy.itertuples(index=False):
        policy[(row.method, row.tau, row.solver, row.context, row.action)] = [row.prob, row.prob_lo, row.prob_hi]
    metrics: dict[tuple, list[Any]] = {}
    metric_frame = frames.metrics
    columns = [metric_frame[c].tolist() for c in ["method", "tau", "solver", "context", *RESULT_METRICS]]
    for values in zip(*columns, strict=True):
        metrics[tuple(values[:4])] = list(values[4:])
    solvers = [s for s in SOLVER_ORDER if task.solver in (s, "both")]
    n_value = n_column(problem, task.n)
    weights = [c.weight for c in problem.contexts]  # rho(x), normalised: for context-weighted means
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(result_columns(task.axes, files=task.problem_file is not None))
    problem_cells = [task.problem_name, *([] if task.problem_file is None else [task.problem_file])]
    for lane in task.lanes:
        spec = lane.spec
        swept = {**dict(task.variant), **dict(lane.values)}
        for tau in task.taus:
            for solver in solvers:
                for context, weight in zip(problem.context_names, weights, strict=True):
                    metric = metrics[(spec.label, tau, solver, context)]
                    for action in problem.actions:
                        prob = policy[(spec.label, tau, solver, context, action)]
                        keys = [*problem_cells, n_value, *(swept.get(a) for a in task.axes), lane.label, tau,
                                solver, context, action]
                        writer.writerow([csv_cell(v) for v in (*keys, *prob, *metric, weight)])
    return buffer.getvalue()


def init_worker() -> None:
    """Process-pool initializer.

    - One BLAS thread per worker: the pool already parallelises (the driver also sets the variables
      before the workers start, so that they hold when numpy is first imported).
    - Ctrl-C is left to the driver, which stops the workers itself (no traceback from every worker).
    - A worker whose driver died (SIGKILL, OOM killer) exits instead of waiting forever for work that
      will never come: a daemon thread watches the parent process id.
    """
    import signal
    import threading

    for var in BLAS_THREAD_VARS:
        os.environ[var] = "1"
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.5)
        os._exit(1)

    threading.Thread(target=watch, name="psipo-parent-watch", daemon=True).start()
