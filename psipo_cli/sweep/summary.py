"""A sweep's ``summary.csv`` and ``report.md``, from ``results.csv`` alone (so that `merge` writes them too).

``summary.csv`` has one row per cell × solver: each metric weighted over the cell's contexts with their
weights rho (the ``context_weight`` column; the paper's `E_{x ~ rho}`, Eq. 6) — the same aggregate as a run
directory's ``summary.csv``: a metric empty in any context is empty, ``grad_norm`` is the largest over
contexts, and the status is the contexts' common one or ``mixed``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from psipo_cli.schema import MIXED

#: Metrics of ``results.csv`` that the summary weights over contexts (``grad_norm`` is a maximum).
WEIGHTED = [
    "kl", "entropy", "loss", "win_rate_ref", "win_rate_mu", "reward", "tv_to_optimum", "nash_gap", "exploitability",
]


def summary_frame(results: Any) -> Any:
    """One row per cell × solver of `results` (a ``results.csv`` frame): the cell's keys (every column
    before ``context``), ``status``, the context-weighted metrics, ``grad_norm`` (max) and ``contexts``."""
    from psipo_cli.sweep.figures import context_mean

    columns = list(results.columns)
    keys = columns[: columns.index("context")]
    per_context = results.drop_duplicates([*keys, "context"])  # metrics repeat on every action row
    groups = per_context.groupby(keys, dropna=False, sort=False)
    frame = context_mean(per_context, keys, WEIGHTED)
    incomplete = groups[WEIGHTED].agg(lambda column: column.isna().any()).reset_index(drop=True)
    for m in WEIGHTED:
        frame[m] = frame[m].mask(incomplete[m].to_numpy())  # empty in any context: empty (as in a run)
    frame["grad_norm"] = groups["grad_norm"].max().to_numpy()  # an inf-norm over every context's parameters
    statuses = groups["status"].agg(lambda s: s.iloc[0] if s.nunique() == 1 else MIXED).to_numpy()
    frame.insert(len(keys), "status", statuses)
    frame["contexts"] = groups["context"].nunique().to_numpy()
    return frame


def report_text(grid: Mapping[str, Any], summary: Any, figures: Sequence[Path]) -> str:
    """``report.md`` of a finished sweep: what was run, how many cells ended in each status per method and
    solver, and the figures."""
    methods = ", ".join(m.get("label") or m["method"] for m in grid["methods"])
    taus = grid["tau"]
    tau_text = f"{len(taus)} values from {min(taus):g} to {max(taus):g}" if len(taus) > 1 else f"{taus[0]:g}"
    problems = ", ".join(p["key"] for p in grid["problems"])
    lines = [
        f"# psipo sweep: {grid['name']}",
        "",
        *([grid["description"], ""] if grid.get("description") else []),
        "## What was run",
        "",
        f"- **Methods**: {methods}",
        f"- **tau**: {tau_text}",
        f"- **Problems**: {problems}" + (f"; dataset sizes n = {', '.join(map(str, grid['n']))}" if grid["n"] else ""),
        f"- **Seeds**: {grid['seeds']}; **solver**: {grid['solver']}",
        f"- **Cells × solvers**: {len(summary)} (one row each in `summary.csv`; every context and action in "
        "`results.csv`). The resolved grid is in `grid.json`.",
        "",
        "## Statuses",
        "",
        "How many cells ended in each status (`mixed`: the seeds or the contexts of a cell disagree; each cell's "
        "row, with its metrics weighted over contexts, is in `summary.csv`).",
        "",
    ]
    counts = summary.groupby(["method", "solver", "status"]).size()
    lines += ["| method | solver | status | cells |", "| --- | --- | --- | ---: |"]
    lines += [f"| {m} | {s} | {st} | {c} |" for (m, s, st), c in counts.items()]
    if figures:
        lines += ["", "## Figures", ""]
        lines += [f"![{path.stem}](figures/{path.name})" for path in figures]
    return "\n".join(lines) + "\n"


__all__ = ["WEIGHTED", "report_text", "summary_frame"]
