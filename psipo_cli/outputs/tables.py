"""What `psipo run` / `psipo compare` print: the comparison table, JSON records and CSV (the README's output
contract).

- `comparison_rows` lays the policy and metrics frames out as method × tau (× context) rows with the
  exact and gradient results side by side; `comparison_table` renders them as a `rich.table.Table`, and
  the report (`report.py`) as markdown.
- `policy_records` / `metric_records` / `summary_records` are the JSON records of ``--format json``: stable
  keys in the order of the output contract, plain Python values, and ``None`` (JSON ``null``) for every
  unknown metric — never NaN, which is not JSON.
- `table_csv` is ``--format csv [--table policy|metrics|summary|curves]`` (`policy_csv` its default): one
  table as CSV, with the same number spelling as the run directory's files; ``header=False``
  (``--no-header``) lets the outputs of several calls be concatenated into one valid table.
- `print_summary` is ``--format table``: the wide table in full off a terminal, the long layout when the
  wide one does not fit the terminal; numbers are never shortened.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from psipo_cli.config.choices import TABLES
from psipo_cli.errors import InputError
from psipo_cli.outputs.formatting import (
    FRAME_COLUMNS,
    METRIC_COLUMNS,
    POLICY_COLUMNS,
    SUMMARY_COLUMNS,
    csv_text,
    fmt_num,
    fmt_policy,
    fmt_prob,
    fmt_tau,
    is_missing,
    records,
    unique,
)
from psipo_cli.schema import SOLVER_ORDER

if TYPE_CHECKING:
    import pandas as pd
    from rich.table import Table

STATUS_STYLES = {
    "optimal": "green",
    "converged": "green",
    "limit": "yellow",
    "diverged": "yellow",
    "running": "yellow",
    "mixed": "magenta",
}


def _frame(frames: Any, attribute: str) -> pd.DataFrame:
    """`frames.<attribute>` for a `Frames`-like object, or `frames` itself when it is a DataFrame."""
    return getattr(frames, attribute) if hasattr(frames, attribute) else frames


# -- JSON and CSV -------------------------------------------------------------------------------------
def policy_records(frames: Any) -> list[dict[str, Any]]:
    """The policy records: ``{method, tau, solver, context, action, prob, prob_lo, prob_hi}``.

    Parameters
    ----------
    frames : `psipo_cli.api.Frames` or the policy DataFrame
    """
    return records(_frame(frames, "policy"), POLICY_COLUMNS)


def metric_records(frames: Any) -> list[dict[str, Any]]:
    """The metric records: ``method, tau, solver, context, status``, the metrics (`METRIC_NAMES`)
    (``None`` when unknown), then ``seeds, objective, detail``.

    Parameters
    ----------
    frames : `psipo_cli.api.Frames` or the metrics DataFrame
    """
    return records(_frame(frames, "metrics"), METRIC_COLUMNS)


def summary_records(frames: Any) -> list[dict[str, Any]]:
    """The context-weighted summary records (``Frames.summary``): the keys of the metric records but
    ``context``, the metrics averaged over contexts with their weights (``None`` when unknown).

    Parameters
    ----------
    frames : `psipo_cli.api.Frames` or the summary DataFrame
    """
    return records(_frame(frames, "summary"), SUMMARY_COLUMNS)


def json_document(frames: Any, run_dir: Any = None) -> str:
    """The one JSON object of ``--format json``:
    ``{"run_dir": str|null, "policy": [...], "metrics": [...], "summary": [...]}``.

    `allow_nan=False` makes a NaN that slipped through an error rather than invalid JSON.
    """
    document = {
        "run_dir": None if run_dir is None else str(run_dir),
        "policy": policy_records(frames),
        "metrics": metric_records(frames),
        "summary": summary_records(frames) if hasattr(frames, "summary") else [],
    }
    return json.dumps(document, indent=2, ensure_ascii=False, allow_nan=False) + "\n"


def policy_csv(frames: Any, header: bool = True) -> str:
    """``--format csv``: the policy records as CSV text (``\\n`` line ends, shortest round-trip floats,
    empty field for unknown values); without the header line when `header` is False."""
    return table_csv(frames, "policy", header=header)




def table_csv(frames: Any, table: str = "policy", header: bool = True) -> str:
    """``--format csv --table NAME``: the frame `frames.<table>` as CSV text, spelled as the run
    directory's files are (columns in their documented order, then any extra ones).

    Raises
    ------
    InputError
        `frames` has no table called `table`.
    """
    frame = getattr(frames, table, None) if table in TABLES else None
    if frame is None:
        raise InputError("--table", table, f"must be one of {', '.join(t for t in TABLES if hasattr(frames, t))}")
    return csv_text(frame, FRAME_COLUMNS.get(table), header=header)


# -- the comparison rows --------------------------------------------------------------------------------
@dataclass
class SolverCell:
    """One solver's result for one method, tau and context."""

    probs: list[float | None]
    lo: list[float | None]
    hi: list[float | None]
    status: str = "-"
    kl: float | None = None
    win_rate: float | None = None
    detail: str = ""


@dataclass
class ComparisonRow:
    """One method × tau × context row, with a `SolverCell` per solver that ran."""

    method: str
    tau: float
    context: str
    cells: dict[str, SolverCell] = field(default_factory=dict)


@dataclass
class Comparison:
    """The rows plus what the columns need: actions, solvers present, contexts, whether win rates exist."""

    actions: list[str]
    solvers: list[str]
    contexts: list[str]
    has_win_rate: bool
    rows: list[ComparisonRow]


def comparison_rows(policy: pd.DataFrame, metrics: pd.DataFrame | None = None) -> Comparison:
    """Lay the frames out as method × tau × context rows with each solver's result side by side.

    Methods and contexts keep their first-seen order (the order the user gave); taus are ascending.
    """
    actions = unique(policy["action"])
    solvers = [s for s in SOLVER_ORDER if s in set(policy["solver"])]
    solvers += [s for s in unique(policy["solver"]) if s not in solvers]
    contexts = unique(policy["context"])
    methods = unique(policy["method"])
    taus = sorted(unique(float(t) for t in policy["tau"]))
    metric_at: dict[tuple[str, float, str, str], dict[str, Any]] = {}
    if metrics is not None:
        for rec in records(metrics, METRIC_COLUMNS):
            metric_at[(rec["method"], float(rec["tau"]), rec["solver"], rec["context"])] = rec
    has_win = any(rec.get("win_rate_ref") is not None for rec in metric_at.values())

    cells: dict[tuple[str, float, str, str], SolverCell] = {}
    by_action: dict[tuple[str, float, str, str], dict[str, tuple[Any, Any, Any]]] = {}
    for rec in records(policy, POLICY_COLUMNS):
        key = (rec["method"], float(rec["tau"]), rec["solver"], rec["context"])
        cell = cells.get(key)
        if cell is None:
            cell = cells[key] = SolverCell([], [], [])
            by_action[key] = {}
            m = metric_at.get(key)
            if m is not None:
                cell.status, cell.kl, cell.win_rate = m["status"] or "-", m["kl"], m["win_rate_ref"]
                cell.detail = m.get("detail") or ""
        by_action[key][rec["action"]] = (rec["prob"], rec["prob_lo"], rec["prob_hi"])
    # Place each probability by action name: the columns line up whatever the row order of the frame.
    for key, cell in cells.items():
        values = [by_action[key].get(a, (None, None, None)) for a in actions]
        cell.probs, cell.lo, cell.hi = ([v[i] for v in values] for i in range(3))

    rows = []
    for method in methods:
        for tau in taus:
            for context in contexts:
                row = ComparisonRow(method, tau, context)
                for solver in solvers:
                    cell = cells.get((method, tau, solver, context))
                    if cell is not None:
                        row.cells[solver] = cell
                if row.cells:
                    rows.append(row)
    return Comparison(actions, solvers, contexts, has_win, rows)


# -- the rich table -------------------------------------------------------------------------------------
LAYOUTS = ("auto", "wide", "long")


def comparison_table(
    policy: Any,
    metrics: pd.DataFrame | None = None,
    title: str | None = None,
    action_columns: bool | None = None,
    layout: str = "auto",
    width: int | None = None,
) -> Table:
    """The terminal table: per method × tau (× context), each solver's policy, KL, win rate (when a
    preference model is known) and status.

    Two layouts, and no number is ever shortened to fit (a cell shows all of `fmt_prob` / `fmt_num`):

    - ``wide``: one row per method × tau (× context), the solvers side by side — the full table;
    - ``long``: one block per method × tau (× context), one row per action and metric, one column per
      solver. Its width does not grow with the number of actions or solvers, so it fits an 80-column
      terminal whatever the problem (only long *names* wrap, never a number).

    Parameters
    ----------
    policy : `Frames` (then `metrics` defaults to its metrics) or the policy DataFrame.
    metrics : the metrics DataFrame.
    title : table title (e.g. the problem name).
    action_columns : wide layout only: one column per action (True) or the policy on one line,
        ``a 0.964 · b 0.034`` (False). Default: one column per action up to four actions.
    layout : ``wide``, ``long``, or ``auto`` (default): wide when `width` is None (not a terminal: print
        everything) or the wide table fits in `width`, else long.
    width : the terminal's width, None when the table is not printed to a terminal.
    """
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {LAYOUTS}, not {layout!r}")
    if metrics is None and hasattr(policy, "metrics"):
        metrics = policy.metrics
    comparison = comparison_rows(_frame(policy, "policy"), metrics)
    if action_columns is None:
        action_columns = len(comparison.actions) <= 4
    if layout == "long":
        return _long_table(comparison, title)
    wide = _wide_table(comparison, title, action_columns)
    if layout == "wide" or width is None or natural_width(wide) <= width:
        return wide
    return _long_table(comparison, title)


def natural_width(table: Table) -> int:
    """The width `table` takes when nothing is squeezed (measured on an unbounded console: a measurement
    is otherwise clamped to the console's width)."""
    from rich.console import Console

    return Console(width=100_000).measure(table).maximum


#: What the ``1-3e-07`` spelling of `fmt_prob` means, printed under every table that uses it.
ONE_MINUS_NOTE = "{example} means 1 - {gap} (one minus {gap}): a probability within 5e-05 of 1."


def _new_table(title: str | None) -> Table:
    from rich import box
    from rich.table import Table

    # No vertical rules and one space between columns: whether the table fits 80 columns depends on it.
    return Table(
        title=title, header_style="bold", title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False,
        collapse_padding=True, caption_justify="left",
    )


def _number_column(table: Table, header: str) -> None:
    # no_wrap: rich may squeeze only the columns that can wrap (names), never a number.
    table.add_column(header, justify="right", no_wrap=True)


def _name_column(table: Table, header: str, **style: Any) -> None:
    # A name longer than the terminal folds onto the next line rather than pushing numbers out.
    table.add_column(header, overflow="fold", **style)


def one_minus_note(texts: Sequence[str]) -> str | None:
    """What the ``1-3e-07`` spelling means, with the first such number in `texts` as the example; None when
    no text uses it (terminal tables and report.md both print it under their table)."""
    words = (word.strip("|·*") for text in texts for word in text.split())
    example = next((word for word in words if word.startswith("1-")), None)
    return None if example is None else ONE_MINUS_NOTE.format(example=example, gap=example[2:])


def _caption(table: Table, texts: list[str]) -> None:
    """Explain the ``1-3e-07`` spelling below the table when one of its cells uses it."""
    note = one_minus_note(texts)
    if note is not None:
        table.caption = note


def _status(cell: SolverCell) -> Any:
    from rich.text import Text

    return Text(cell.status, style=STATUS_STYLES.get(cell.status, "red"))


def _solver_cells(comparison: Comparison, cell: SolverCell | None, action_columns: bool) -> list[Any]:
    """Policy, KL, win rate (when known) and status of one solver's result."""
    count = (len(comparison.actions) if action_columns else 1) + 2 + comparison.has_win_rate
    if cell is None:
        return ["-"] * count
    cells: list[Any] = (
        [fmt_prob(p) for p in cell.probs] if action_columns else [describe_policy(comparison.actions, cell)]
    )
    cells.append(fmt_num(cell.kl))
    if comparison.has_win_rate:
        cells.append(fmt_num(cell.win_rate))
    cells.append(_status(cell))
    return cells


def _solver_columns(table: Table, comparison: Comparison, action_columns: bool, prefix: str) -> None:
    if action_columns:
        for action in comparison.actions:
            _number_column(table, f"{prefix}pi({action})")
    else:
        table.add_column(f"{prefix}policy")
    _number_column(table, f"{prefix}KL")
    if comparison.has_win_rate:
        _number_column(table, f"{prefix}win rate")
    table.add_column(f"{prefix}status", no_wrap=True)


def _wide_table(comparison: Comparison, title: str | None, action_columns: bool) -> Table:
    """One row per method × tau (× context), the solvers side by side."""
    several_contexts = len(comparison.contexts) > 1
    several_solvers = len(comparison.solvers) > 1
    # One solver: its name once, in the title, rather than above every column.
    only = f"{comparison.solvers[0]} solver" if not several_solvers and comparison.solvers else None
    table = _new_table(f"{title} ({only})" if title and only else title or only)
    _name_column(table, "method", style="bold")
    _number_column(table, "tau")
    if several_contexts:
        _name_column(table, "context")
    for solver in comparison.solvers:
        _solver_columns(table, comparison, action_columns, prefix=f"{solver}\n" if several_solvers else "")
    texts: list[str] = []
    for i, row in enumerate(comparison.rows):
        # A rule between methods keeps a long tau sweep readable.
        end_section = i + 1 < len(comparison.rows) and comparison.rows[i + 1].method != row.method
        cells: list[Any] = [row.method, fmt_tau(row.tau), *([row.context] if several_contexts else [])]
        for solver in comparison.solvers:
            cells += _solver_cells(comparison, row.cells.get(solver), action_columns)
        texts += [c for c in cells if isinstance(c, str)]
        table.add_row(*cells, end_section=end_section)
    _caption(table, texts)
    return table


def _long_table(comparison: Comparison, title: str | None) -> Table:
    """One block per method × tau (× context): a row per action (pi), then KL, win rate and status; one
    column per solver. The keys are printed on the first row of each block only."""
    several_contexts = len(comparison.contexts) > 1
    table = _new_table(title)
    _name_column(table, "method", style="bold")
    _number_column(table, "tau")
    if several_contexts:
        _name_column(table, "context")
    _name_column(table, "")
    for solver in comparison.solvers:
        _number_column(table, solver)
    texts: list[str] = []
    for row in comparison.rows:
        cells = [row.cells.get(solver) for solver in comparison.solvers]
        lines: list[list[Any]] = [
            [f"pi({action})", *(fmt_prob(c.probs[k]) if c else "-" for c in cells)]
            for k, action in enumerate(comparison.actions)
        ]
        lines.append(["KL", *(fmt_num(c.kl) if c else "-" for c in cells)])
        if comparison.has_win_rate:
            lines.append(["win rate", *(fmt_num(c.win_rate) if c else "-" for c in cells)])
        lines.append(["status", *(_status(c) if c else "-" for c in cells)])
        keys = [row.method, fmt_tau(row.tau), *([row.context] if several_contexts else [])]
        for j, line in enumerate(lines):
            texts += [c for c in line if isinstance(c, str)]
            table.add_row(*(keys if j == 0 else [""] * len(keys)), *line, end_section=j == len(lines) - 1)
    _caption(table, texts)
    return table


def summary_table(frames: Any, problem: Any = None, width: int | None = None) -> Table:
    """`comparison_table` of a `Frames`, titled with the problem's name (a `Problem` or a string)."""
    title = getattr(problem, "name", problem)
    return comparison_table(
        frames.policy, frames.metrics, title=None if title is None else str(title), width=width
    )


def print_summary(frames: Any, problem: Any = None, console: Any = None) -> None:
    """Print `summary_table` (``--format table``) to `console` (default: a console on stdout).

    On a terminal: the wide layout when it fits the terminal's width, else the long one. Anywhere else
    (a pipe, a file): the wide table at its full width, whatever ``COLUMNS`` says — a file has no width.
    """
    from rich.console import Console

    console = console if console is not None else Console()
    terminal = console.is_terminal
    table = summary_table(frames, problem, width=console.width if terminal else None)
    if not terminal:
        console = Console(file=console.file, width=natural_width(table), color_system=None)
    console.print(table)


def dataset_summary_text(summary: pd.DataFrame, data: Any) -> str:
    """``--format table`` of a run on a dataset whose prompts have their own completions: the counts, then
    the context-weighted summary (each prompt weight 1 / m), one line per method and tau (and solver, a
    column when a gradient run is among them)."""
    from psipo_cli.problem.datasets.data import count_text

    solvers = set(summary["solver"]) != {"exact"}
    lines = [
        f"{count_text(data.n_contexts)} prompts, {count_text(data.n_actions)} completions, "
        f"{count_text(float(data.count.sum()))} comparisons; metrics averaged over prompts (equal weights)",
        f"{'method':<12}{'tau':>6}  {'solver    ' if solvers else ''}{'status':<10}{'KL':>10}{'entropy':>10}"
        f"{'loss':>10}  detail",
    ]
    for rec in records(summary, SUMMARY_COLUMNS):
        solver = f"{rec['solver']:<10}" if solvers else ""
        lines.append(f"{rec['method']:<12}{fmt_tau(rec['tau']):>6}  {solver}{rec['status']:<10}"
                     f"{fmt_num(rec['kl']):>10}{fmt_num(rec['entropy']):>10}{fmt_num(rec['loss']):>10}  "
                     f"{rec['detail'] or ''}".rstrip())
    return "\n".join(lines) + "\n"


def describe_policy(actions: Sequence[str], cell: SolverCell) -> str:
    """A solver cell's policy on one line (``a 0.964 · b 0.034 · c 0.001``); `-` if a value is missing."""
    if any(is_missing(p) for p in cell.probs):
        return "-"
    return fmt_policy(actions, cell.probs)
