"""Figures of a sweep, from ``results.csv`` alone (so that `merge` and ``psipo plot SWEEP_DIR`` draw them too).

Per problem:

- ``<problem>-vs-tau.png``: one column per metric (KL, and the win rate against pi_ref and the distance
  to the population optimum when the problem has a preference model; the entropy otherwise), one row per
  dataset size `n` when `n` is swept (at most `MAX_ROWS`, evenly spread), tau on a log axis, one colour
  per method, solid for the exact solver and dashed with dots for the gradient engine;
- ``<problem>-vs-n.png`` when `n` is swept: the same metrics against `n` (log axis), one row per method
  and one line per swept tau, coloured on a log scale of tau (a colour bar when there are more than
  `TAU_LEGEND` values, else a legend).

Metrics of a multi-context problem are the context-weighted mean `sum_x rho(x) m(x)` (the paper's
`E_{x ~ rho}`, Eq. 6), with the weights of the ``context_weight`` column; the title says so. The fonts,
margins and Agg canvas are those of the run figures (`psipo_cli.outputs.figures`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

MAX_ROWS = 4
WGAP = 1.0  # inches between panels: every panel has its own y label (the metrics differ)
TAU_LEGEND = 6
TEXT = ("problem", "problem_file", "method", "solver", "context", "action", "status", "objective", "detail")
NUMBERS = ("n", "kl", "entropy", "loss", "win_rate_ref", "win_rate_mu", "reward", "tv_to_optimum", "grad_norm",
           "nash_gap", "exploitability", "prob", "prob_lo", "prob_hi", "context_weight")
LINESTYLE = {"exact": {"linestyle": "-"}, "gradient": {"linestyle": "--", "marker": ".", "markersize": 4}}
#: What each metric column is called on the figures.
METRIC_LABELS = {
    "kl": r"KL($\pi$ || $\pi_{\mathrm{ref}}$) (nats)",
    "win_rate_ref": r"win rate against $\pi_{\mathrm{ref}}$",
    "tv_to_optimum": "TV distance to the\npopulation optimum",
    "entropy": r"entropy of $\pi$ (nats)",
}
SOLVER_LABELS = {"exact": "exact", "gradient": "gradient (seed mean)"}


def read_results(path: Path) -> Any:
    """``results.csv`` as a frame: names stay strings, only empty fields are missing."""
    import pandas as pd

    return pd.read_csv(path, dtype={c: str for c in TEXT}, keep_default_na=False,
                       na_values={c: [""] for c in NUMBERS})


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


def context_mean(rows: Any, keys: list[str], metrics: list[str]) -> Any:
    """Per `keys`, the context-weighted mean of each metric: `sum_x rho(x) m(x) / sum_x rho(x)` over the
    contexts where the metric is known (paper Eq. 6), `rho` from ``context_weight`` (equal weights when the
    column is absent, as in sweeps written before it existed).

    `rows` holds one row per `keys` × context."""
    import numpy as np

    weights = rows["context_weight"] if "context_weight" in rows.columns else np.ones(len(rows))
    frame = rows[keys].copy()
    for m in metrics:
        known = rows[m].notna().to_numpy()
        frame[f"{m}__w"] = np.where(known, weights, 0.0)
        frame[f"{m}__wm"] = np.where(known, rows[m].to_numpy(float) * weights, 0.0)
    sums = frame.groupby(keys, dropna=False, sort=False).sum().reset_index()
    for m in metrics:
        w = sums[f"{m}__w"].to_numpy(float)
        sums[m] = np.divide(sums[f"{m}__wm"].to_numpy(float), w, out=np.full(len(w), np.nan), where=w > 0)
    return sums[[*keys, *metrics]]


def _with_swept_labels(frame: Any) -> Any:
    """The results with the values of the swept settings (the columns between `n` and `method`) folded into
    the method's name (`dpo lr=0.1`), so that every figure draws each setting as its own line."""
    columns = list(frame.columns)
    axes = columns[columns.index("n") + 1:columns.index("method")] if "method" in columns else []
    if not axes:
        return frame
    frame = frame.copy()
    for axis in axes:  # an empty value: the method does not take this swept option
        frame["method"] += frame[axis].astype(str).map(lambda v, a=axis: "" if v in ("", "nan") else f" {a}={v}")
    return frame


def render_figures(results: Path, figures_dir: Path) -> list[Path]:
    """Draw every figure of the sweep whose ``results.csv`` is `results` into `figures_dir`; returns the
    paths written (and removes the PNGs there it did not write: figures of data no longer present)."""
    from psipo_cli.outputs.figures import remove_stale, save_figure
    from psipo_cli.outputs.rundir import slug

    frame = _with_swept_labels(read_results(results))
    written: list[Path] = []
    if not frame.empty:
        figures_dir.mkdir(parents=True, exist_ok=True)
        keys = ["problem", "n", "method", "tau", "solver"]
        for problem in dict.fromkeys(frame["problem"]):
            part = frame[frame["problem"] == problem]
            # One row per cell × solver × context (metrics repeat on every action row).
            per_context = part.drop_duplicates([*keys, "context"])
            contexts = per_context["context"].nunique()
            metrics = _metrics_of(per_context)
            cells = context_mean(per_context, keys, metrics)
            weighted = "context_weight" in per_context.columns
            how = "weighted by rho" if weighted else "unweighted"
            suffix = f" (mean over {contexts} contexts, {how})" if contexts > 1 else ""
            name = slug(problem) or "problem"
            titles = (problem, f"metrics against τ{suffix}")
            written.append(save_figure(draw_vs_tau(cells, metrics, titles), figures_dir / f"{name}-vs-tau.png"))
            if cells["n"].dropna().nunique() > 1:
                titles = (problem, f"metrics against dataset size{suffix}")
                written.append(save_figure(draw_vs_n(cells, metrics, titles), figures_dir / f"{name}-vs-n.png"))
    remove_stale(figures_dir, written)
    return written


def draw_vs_tau(cells: Any, metrics: list[str], titles: tuple[str, str]) -> Any:
    """Metric against tau: one column per metric, one row per (spread) dataset size, a colour per method.

    `cells`: one row per problem × n × method × tau × solver (`context_mean`); `titles`: the problem and
    what the figure shows. Returns the matplotlib Figure."""
    from psipo_cli.outputs.figures import (
        TITLE_SIZE,
        figure_legend,
        method_colors,
        new_figure,
        suptitle,
    )

    methods = list(dict.fromkeys(cells["method"]))
    colours = method_colors(methods)
    sizes = sorted(cells["n"].dropna().unique())
    rows = _spread(sizes, MAX_ROWS) if len(sizes) > 1 else [None]
    handles = _style_handles(methods, colours, sorted(set(cells["solver"])))
    fig, axes, legend_cols = new_figure(len(rows), len(metrics), panel=(3.6, 2.6), legend_items=len(handles),
                                        wgap=WGAP)
    for r, n in enumerate(rows):
        sub = cells if n is None else cells[cells["n"] == n]
        for c, metric in enumerate(metrics):
            ax = axes[r][c]
            for (method, solver), line in sub.groupby(["method", "solver"], sort=False):
                line = line.sort_values("tau")
                ax.plot(line["tau"], line[metric], color=colours[method], **LINESTYLE.get(solver, {}))
            _axes(ax, metric, "τ (KL coefficient, log scale)", last_row=r == len(rows) - 1)
            if n is not None:
                ax.set_title(f"n = {int(n)}", fontsize=TITLE_SIZE, y=1.0)
    figure_legend(fig, handles, legend_cols)
    suptitle(fig, *titles, None)
    return fig


def draw_vs_n(cells: Any, metrics: list[str], titles: tuple[str, str]) -> Any:
    """Metric against the dataset size: one row per method, one column per metric, one line per swept tau
    in a log colour scale of tau (as `draw_vs_tau`; returns the Figure)."""
    import matplotlib
    import numpy as np
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import ListedColormap, LogNorm, Normalize
    from matplotlib.lines import Line2D

    from psipo_cli.outputs.figures import (
        LEGEND_SIZE,
        TITLE_SIZE,
        figure_legend,
        new_figure,
        suptitle,
    )

    methods = list(dict.fromkeys(cells["method"]))
    taus = sorted(cells["tau"].unique())
    norm = LogNorm(min(taus), max(taus)) if len(taus) > 1 else Normalize(taus[0] / 2, taus[0] * 2)
    # viridis without its light-yellow end (hard to see on white), as for the actions of the run figures.
    cmap = ListedColormap(matplotlib.colormaps["viridis"](np.linspace(0.0, 0.9, 256)))
    solvers = sorted(set(cells["solver"]))
    handles = [Line2D([], [], color="0.3", label=SOLVER_LABELS.get(s, s), **LINESTYLE.get(s, {})) for s in solvers]
    few = len(taus) <= TAU_LEGEND
    if few:
        handles += [Line2D([], [], color=cmap(norm(t)), linewidth=2, label=f"τ = {t:.3g}") for t in taus]
    fig, axes, legend_cols = new_figure(len(methods), len(metrics), panel=(3.6, 2.6), legend_items=len(handles),
                                        right=0.25 if few else 1.1, wgap=WGAP)
    for r, method in enumerate(methods):
        sub = cells[cells["method"] == method]
        for c, metric in enumerate(metrics):
            ax = axes[r][c]
            for (tau, solver), line in sub.groupby(["tau", "solver"], sort=True):
                line = line.sort_values("n")
                ax.plot(line["n"], line[metric], color=cmap(norm(tau)), **LINESTYLE.get(solver, {}))
            _axes(ax, metric, "n (comparisons, log scale)", last_row=r == len(methods) - 1)
            ax.set_title(method, fontsize=TITLE_SIZE, y=1.0)
    if not few:
        top, bottom = axes[0][-1].get_position().y1, axes[-1][-1].get_position().y0
        cax = fig.add_axes((1 - 0.85 / fig.get_figwidth(), bottom, 0.15 / fig.get_figwidth(), top - bottom))
        bar = fig.colorbar(ScalarMappable(norm=norm, cmap=cmap), cax=cax)
        bar.set_label("τ (every swept value)", fontsize=LEGEND_SIZE)
    figure_legend(fig, handles, legend_cols)
    suptitle(fig, *titles, None)
    return fig


def _axes(ax: Any, metric: str, xlabel: str, last_row: bool) -> None:
    from psipo_cli.outputs.figures import log_ticks

    ax.set_xscale("log")
    log_ticks(ax.xaxis)
    ax.set_ylabel(METRIC_LABELS.get(metric, metric))
    ax.grid(True, alpha=0.3, linewidth=0.6)
    if last_row:
        ax.set_xlabel(xlabel)


def _style_handles(methods: list[str], colours: dict[str, Any], solvers: list[str]) -> list[Any]:
    """Legend entries: one colour per method, one line style per solver."""
    from matplotlib.lines import Line2D

    handles = [Line2D([], [], color=colours[m], linewidth=2, label=m) for m in methods]
    return handles + [Line2D([], [], color="0.3", label=SOLVER_LABELS.get(s, s), **LINESTYLE.get(s, {}))
                      for s in solvers]
