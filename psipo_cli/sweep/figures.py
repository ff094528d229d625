"""Figures of a sweep, from ``results.csv`` alone (so that `merge` can draw them too).

Per problem:

- ``<problem>-vs-tau.png``: one column per metric (`kl`, and `win_rate_ref` and `tv_to_optimum` when the
  problem has a preference model; `entropy` otherwise), one row per dataset size `n` when `n` is swept
  (at most `MAX_ROWS`, evenly spread), tau on a log axis, one colour per method, solid for the exact
  solver and dashed with dots for the gradient engine;
- ``<problem>-vs-n.png`` when `n` is swept: the same metrics against `n` (log axis), one row per tau for
  the smallest, the middle and the largest tau of the grid.

Metrics of a multi-context problem are averaged over its contexts (unweighted; say so in the title).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

MAX_ROWS = 4
TEXT = ("problem", "method", "solver", "context", "action", "status", "objective", "detail")
LINESTYLE = {"exact": dict(linestyle="-"), "gradient": dict(linestyle="--", marker=".", markersize=4)}


def read_results(path: Path) -> Any:
    """``results.csv`` as a frame: names stay strings, only empty fields are missing."""
    import pandas as pd

    frame = pd.read_csv(path, dtype={c: str for c in TEXT}, keep_default_na=False,
                        na_values={c: [""] for c in ("n", "kl", "entropy", "loss", "win_rate_ref", "win_rate_mu",
                                                     "reward", "tv_to_optimum", "grad_norm", "prob", "prob_lo",
                                                     "prob_hi")})
    return frame


def _metrics_of(cells: Any) -> list[str]:
    chosen = ["kl"]
    for name in ("win_rate_ref", "tv_to_optimum"):
        if cells[name].notna().any():
            chosen.append(name)
    if len(chosen) == 1:
        chosen.append("entropy")
    return chosen


def _spread(values: list[Any], k: int) -> list[Any]:
    """At most `k` of `values`, evenly spread, first and last included."""
    if len(values) <= k:
        return list(values)
    step = (len(values) - 1) / (k - 1)
    return [values[round(i * step)] for i in range(k)]


def render_figures(results: Path, figures_dir: Path) -> list[Path]:
    """Draw every figure of the sweep whose ``results.csv`` is `results`; returns the paths written."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from psipo_cli.outputs.rundir import slug

    frame = read_results(results)
    if frame.empty:
        return []
    figures_dir.mkdir(parents=True, exist_ok=True)
    keys = ["problem", "n", "method", "tau", "solver"]
    written = []
    for problem in dict.fromkeys(frame["problem"]):
        part = frame[frame["problem"] == problem]
        # One row per cell × solver × context (metrics repeat on every action row), then mean over contexts.
        cells = part.drop_duplicates([*keys, "context"])
        contexts = cells["context"].nunique()
        metrics = _metrics_of(cells)
        cells = cells.groupby(keys, dropna=False, sort=False)[metrics].mean().reset_index()
        methods = list(dict.fromkeys(cells["method"]))
        colours = {m: plt.get_cmap("tab10")(i % 10) for i, m in enumerate(methods)}
        sizes = sorted(v for v in cells["n"].dropna().unique())
        suffix = f" (mean over {contexts} contexts)" if contexts > 1 else ""
        name = slug(problem) or "problem"

        rows = _spread(sizes, MAX_ROWS) if len(sizes) > 1 else [None]
        fig, axes = plt.subplots(len(rows), len(metrics), figsize=(4.2 * len(metrics), 3.2 * len(rows)),
                                 squeeze=False)
        for r, n in enumerate(rows):
            sub = cells if n is None else cells[cells["n"] == n]
            for c, metric in enumerate(metrics):
                ax = axes[r][c]
                _metric_lines(ax, sub, "tau", metric, colours)
                ax.set_xlabel("tau")
                if n is not None:
                    ax.set_title(f"n = {int(n)}", fontsize=9)
        axes[0][0].legend(fontsize=7)
        fig.suptitle(f"{problem}: metrics vs tau{suffix}", fontsize=10)
        fig.tight_layout()
        path = figures_dir / f"{name}-vs-tau.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path)

        if len(sizes) > 1:
            taus = sorted(cells["tau"].unique())
            chosen = _spread(taus, 3)
            fig, axes = plt.subplots(len(chosen), len(metrics), figsize=(4.2 * len(metrics), 3.2 * len(chosen)),
                                     squeeze=False)
            for r, tau in enumerate(chosen):
                sub = cells[cells["tau"] == tau]
                for c, metric in enumerate(metrics):
                    ax = axes[r][c]
                    _metric_lines(ax, sub, "n", metric, colours)
                    ax.set_xlabel("n (comparisons)")
                    ax.set_title(f"tau = {tau:.4g}", fontsize=9)
            axes[0][0].legend(fontsize=7)
            fig.suptitle(f"{problem}: metrics vs dataset size{suffix}", fontsize=10)
            fig.tight_layout()
            path = figures_dir / f"{name}-vs-n.png"
            fig.savefig(path, dpi=110)
            plt.close(fig)
            written.append(path)
    return written


def _metric_lines(ax: Any, cells: Any, x: str, metric: str, colours: dict[str, Any]) -> None:
    """One line per method and solver: `metric` against `x` (log axis)."""
    for (method, solver), line in cells.groupby(["method", "solver"], sort=False):
        line = line.sort_values(x)
        ax.plot(line[x], line[metric], color=colours[method], label=f"{method} ({solver})",
                **LINESTYLE.get(solver, {}))
    ax.set_xscale("log")
    ax.set_ylabel(metric)
