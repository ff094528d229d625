"""Figures of a run: learning curves, the exact policy against tau, and the KL / win-rate frontier.

Every figure is drawn from the tidy frames alone — the ones a run directory stores as CSV — so that
`render_figures(run_dir)` (``psipo plot RUN_DIR``) redraws them from a copied directory without the
problem file. Nothing here solves anything: the dense tau grid of the exact solution is computed by the
caller and passed in as the ``tau_grid`` frame (`tau_grid_frame` only reshapes solver output into it).

Choices:

- Matplotlib is imported inside the functions (CLI start-up stays fast) and used through its
  object-oriented API with an explicit Agg canvas: no pyplot, no global backend switch, no state shared
  between calls (safe in tests and in a process that already uses another backend). Margins are fixed
  in inches (no layout engine), so each figure is drawn once, when it is saved.
- The step axis of the learning curves is ``symlog`` with a linear part below step 1: a log axis that
  still shows step 0 (the start at ``pi_ref``) at its left edge.
- Several contexts: one file per context, suffixed with the context name (``curves-ctx1.png``); a single
  context gives the plain names (``curves.png``).
- Colours: one per action, the same in every figure (tab10; beyond ten actions evenly spaced viridis,
  and the legend names the eight most probable actions plus "N other actions"); methods in the frontier
  get their own colours, line styles and markers so that coinciding curves (DPO = RLHF with
  ``rm_l2 = 0``) stay visible.
- Ties: curves of actions that coincide (`tie_groups`) are drawn with interleaved dashes (`tie_style`),
  so each colour shows along the line, and the panel says ``tied: a = b``; tied gradient points get
  different markers. The frontier's tau labels are placed so that none overprints another.
- ``log_prob=True`` (``--log-prob``): probability axes on a log scale from `LOG_FLOOR`; smaller values,
  exact zeros included, are drawn on the axis' bottom edge.
- A figure with nothing to show is skipped (returns None): ``curves.png`` without a gradient run,
  ``frontier.png`` without a preference model (unknown win rate).
"""

from __future__ import annotations

import json
import os
import pickle
import sys
from collections.abc import Callable, Mapping, Sequence
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from psipo_cli.errors import InputError
from psipo_cli.outputs.formatting import (
    FRAME_COLUMNS,
    TAU_GRID_COLUMNS,
    fmt_tau,
    read_frame,
    unique,
)
from psipo_cli.outputs.rundir import slug
from psipo_cli.schema import EXACT, GRADIENT

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

FIGURE_STEMS = ("curves", "gap", "policy_vs_tau", "frontier")
DPI = 110
PANEL = (3.2, 2.5)  # inches per panel
METHOD_STYLES = ("-", "--", "-.", ":")
METHOD_MARKERS = ("o", "s", "^", "D", "v", "P", "X")
TIE_MARKERS = ("o", "s", "^", "D", "v")
#: Beyond this many actions the colours come from a perceptual colormap and the legend names only the
#: `TOP_ACTIONS` actions with the largest probability (plus one entry for the others).
MANY_ACTIONS = 10
TOP_ACTIONS = 8
#: Beyond this many methods policy_vs_tau.png draws smaller panels, five to a row (`policy_columns`).
MANY_METHODS = 12
#: Two actions' curves closer than this everywhere (in probability; in decades on a log axis) are drawn as
#: ties: about a third of a pixel on a 2.5-inch panel, so that such curves would hide each other.
TIE_TOLERANCE = 2e-3
DASH = 3.0  # points: the dash length that interleaves the colours of tied curves
#: The log probability axis starts here: smaller values (exact zeros included) sit on its bottom edge.
LOG_FLOOR = 1e-12
TITLE_SIZE, SUPTITLE_SIZE, LEGEND_SIZE, NOTE_SIZE = 10, 12, 9, 7


# -- helpers -----------------------------------------------------------------------------------------
def problem_info(config: Mapping[str, Any] | None) -> dict[str, str]:
    """Name, description and source of the problem a run's config describes ('' when unknown).

    Looked up, first found wins: ``problem_resolved`` (the full problem table the CLI records), a
    ``problem`` table, ``problem`` as a preset name or file path, ``problem_name``/``problem_description``.
    """
    config = config or {}
    info = {"name": "", "description": "", "source": ""}
    for table in (config.get("problem_resolved"), config.get("problem")):
        if isinstance(table, Mapping):
            for key in info:
                info[key] = info[key] or str(table.get(key) or "")
    problem = config.get("problem")
    if isinstance(problem, str) and problem:
        # A file path names the problem by its stem when the file's own name was not recorded.
        info["name"] = info["name"] or (Path(problem).stem if problem.endswith(".toml") else problem)
        info["source"] = info["source"] or problem
    info["name"] = info["name"] or str(config.get("problem_name") or "")
    info["description"] = info["description"] or str(config.get("problem_description") or "")
    return info


def problem_title(config: Mapping[str, Any] | None, fallback: str = "") -> str:
    """The problem's name for titles (see `problem_info`), else `fallback`, else ``problem``."""
    return problem_info(config)["name"] or fallback or "problem"


def new_figure(
    nrows: int, ncols: int, panel: tuple[float, float] = PANEL, legend_items: int = 0, xlabel: bool = True,
    right: float = 0.25, wgap: float = 0.6, share: bool = False,
) -> tuple[Figure, Any, int]:
    """A figure with an Agg canvas, a grid of axes (always 2-D) and room for a legend of `legend_items`
    entries below them; returns the figure, the axes and the legend's number of columns. `share`: the
    panels share both axes (tick labels then only on the left column and the bottom row, which is what
    `wgap` must leave room for).

    The margins are fixed in inches rather than left to a layout engine: constrained layout measures
    every tick label twice per save (once more than the draw itself) and took half of the figures' time;
    with fixed margins a figure is drawn exactly once, and its axes are where they end up when the
    frontier places its labels.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    left, top, hgap = 0.75, 0.6, 0.6
    bottom = 0.55 if xlabel else 0.35
    # At least 5.5 inches wide, so that the title and the legend below fit even with a single panel.
    width = max(left + panel[0] * ncols + wgap * (ncols - 1) + right, 5.5)
    panel_width = (width - left - right - wgap * (ncols - 1)) / ncols
    legend_cols = max(1, min(legend_items, int(width / 1.7)))
    legend_rows = -(-legend_items // legend_cols) if legend_items else 0
    legend = 0.25 * legend_rows + (0.15 if legend_rows else 0.0)
    height = top + panel[1] * nrows + hgap * (nrows - 1) + bottom + legend
    fig = Figure(figsize=(width, height), dpi=DPI)
    FigureCanvasAgg(fig)
    axes = fig.subplots(nrows, ncols, squeeze=False, sharex=share, sharey=share, gridspec_kw={
        "left": left / width, "right": 1 - right / width, "top": 1 - top / height,
        "bottom": (bottom + legend) / height, "wspace": wgap / panel_width, "hspace": hgap / panel[1],
    })
    return fig, axes, legend_cols


def figure_legend(fig: Figure, handles: list[Any], ncols: int) -> None:
    fig.legend(handles=handles, loc="lower center", bbox_to_anchor=(0.5, 0.08 / fig.get_figheight()),
               ncols=ncols, fontsize=LEGEND_SIZE, frameon=False)


def save_figure(fig: Figure, path: Path) -> Path:
    import logging
    import warnings

    path.parent.mkdir(parents=True, exist_ok=True)
    # Names in scripts the figure font lacks (CJK, emoji, ...) are drawn as boxes; matplotlib would also
    # print a warning per missing glyph to stderr, which carries psipo's own messages only (README).
    mathtext = logging.getLogger("matplotlib.mathtext")
    level = mathtext.level
    mathtext.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=r"Glyph \d+ .*missing from", category=UserWarning)
            # No "Software" version stamp: the same frames give the same bytes on the same matplotlib.
            fig.savefig(path, dpi=DPI, metadata={"Software": None})
    finally:
        mathtext.setLevel(level)
    return path


def action_colors(actions: Sequence[str]) -> dict[str, Any]:
    """One colour per action, in action order: tab10 up to `MANY_ACTIONS` actions, else evenly spaced
    samples of viridis (perceptually uniform, so neighbouring actions differ by equal steps; its light
    yellow end, hard to see on white, is left out)."""
    import matplotlib
    import numpy as np

    if len(actions) <= MANY_ACTIONS:
        cmap = matplotlib.colormaps["tab10"]
        return {a: cmap(i) for i, a in enumerate(actions)}
    cmap = matplotlib.colormaps["viridis"]
    return {a: cmap(x) for a, x in zip(actions, np.linspace(0.0, 0.9, len(actions)), strict=True)}


def method_colors(methods: Sequence[str]) -> dict[str, Any]:
    """One colour per method (Dark2, so they do not read as action colours)."""
    import matplotlib

    cmap = matplotlib.colormaps["Dark2"]
    return {m: cmap(i % cmap.N) for i, m in enumerate(methods)}


def _contexts(*frames: pd.DataFrame | None) -> list[str]:
    out: list[str] = []
    for frame in frames:
        if frame is not None and "context" in frame.columns:
            out += [c for c in unique(frame["context"]) if c not in out]
    return out


def _actions(*frames: pd.DataFrame | None) -> list[str]:
    out: list[str] = []
    for frame in frames:
        if frame is not None and "action" in frame.columns:
            out += [a for a in unique(frame["action"]) if a not in out]
    return out


def _select(frame: pd.DataFrame | None, **where: Any) -> pd.DataFrame:
    """Rows of `frame` matching every ``column=value`` (an empty frame when `frame` is None)."""
    import pandas as pd

    if frame is None:
        return pd.DataFrame()
    mask = pd.Series(True, index=frame.index)
    for column, value in where.items():
        if column not in frame.columns:
            return frame.iloc[0:0]
        mask &= frame[column] == value
    return frame[mask]


def _figure_path(out_dir: Path, stem: str, context: str, several: bool) -> Path:
    return out_dir / (f"{stem}-{slug(context) or 'context'}.png" if several else f"{stem}.png")


def suptitle(fig: Figure, problem: str, what: str, context: str | None) -> None:
    text = f"{problem}: {what}"
    if context is not None:
        text += f" (context {context})"
    fig.suptitle(text, fontsize=SUPTITLE_SIZE, fontweight="bold", y=1 - 0.12 / fig.get_figheight(), va="top")


def _hide_unused(axes: Any, used: int) -> None:
    for ax in axes.flat[used:]:
        ax.set_visible(False)


def _probability_axis(ax: Axes, label: bool, log: bool) -> None:
    ax.grid(True, alpha=0.3, linewidth=0.6)
    if log:
        ax.set_yscale("log")
        log_ticks(ax.yaxis)
        ax.set_ylim(LOG_FLOOR / 2, 2.0)
    else:
        ax.set_ylim(-0.03, 1.03)
    if label:
        ax.set_ylabel("π(y) (log scale)" if log else "π(y) (probability)")


SUPERSCRIPT = str.maketrans("-0123456789", "⁻⁰¹²³⁴⁵⁶⁷⁸⁹")


def power_label(value: float, _position: Any = None) -> str:
    """A log-axis tick label in plain text: ``10⁻²`` for a power of ten, ``0`` for zero (the symlog step
    axis), nothing elsewhere. Matplotlib's default spells these as mathtext, parsed once per label and
    per figure: a tenth of the figures' drawing time."""
    import math

    if value == 0:
        return "0"
    exponent = math.log10(abs(value))
    if abs(exponent - round(exponent)) > 1e-9:
        return ""
    return ("-" if value < 0 else "") + "10" + str(round(exponent)).translate(SUPERSCRIPT)


def log_ticks(axis: Any) -> None:
    """Label the major ticks of a log (or symlog) `axis` with `power_label`."""
    from matplotlib.ticker import FuncFormatter

    axis.set_major_formatter(FuncFormatter(power_label))


def _shown(values: Any, log: bool) -> Any:
    """Probabilities as drawn: on a log axis, values below `LOG_FLOOR` (exact zeros included) on its floor."""
    import numpy as np

    values = np.asarray(values, dtype=float)
    return np.maximum(values, LOG_FLOOR) if log else values


def line_width(k: int, widest: float = 2.6) -> float:
    """Width of action `k`'s line: decreasing with `k`, so that an action whose curve coincides with an
    earlier one (pi(a) = pi(b) on paper-d3) leaves the earlier colour visible as a border."""
    return max(widest - 0.5 * k, 1.0)


def tie_groups(series: Mapping[str, Any], log: bool = False) -> dict[str, tuple[int, int]]:
    """Actions whose curves coincide: ``{action: (rank in its group, group size)}`` for every action
    that ties with another (within `TIE_TOLERANCE` at every point, in decades on a log axis).

    Groups are formed in the order of `series`, each action joining the first group whose first member
    it ties with; actions that tie with nobody are left out.
    """
    import numpy as np

    groups: list[list[str]] = []
    values = {a: np.log10(_shown(v, True)) if log else np.asarray(v, float) for a, v in series.items()}
    for action, v in values.items():
        for group in groups:
            u = values[group[0]]
            if u.shape != v.shape:  # not drawn at the same points (a hand-edited CSV): not a tie
                continue
            both = np.isfinite(u) & np.isfinite(v)
            if both.any() and np.abs(u - v)[both].max() <= TIE_TOLERANCE:
                group.append(action)
                break
        else:
            groups.append([action])
    return {a: (r, len(g)) for g in groups if len(g) > 1 for r, a in enumerate(g)}


def tie_style(rank: int, size: int, dashed: bool) -> Any:
    """The line style of member `rank` of a group of `size` coinciding curves: dashes offset so that the
    members' colours alternate along the line instead of the last one hiding the others.

    A solid line's group keeps member 0 solid underneath and lays the others' dashes over it, one dash
    each per cycle of ``size * DASH`` points; a dashed line's group gives every member one dash per cycle
    of ``(size + 1) * DASH`` points, leaving one gap so that the line still reads as dashed.
    """
    if not dashed and rank == 0:
        return "-"
    cycle = (size + 1 if dashed else size) * DASH
    start = (rank if dashed else rank - 1) * DASH  # where this member's dash begins in the cycle
    return ((cycle - start) % cycle, (DASH, cycle - DASH))


def _tie_note(ax: Axes, ties: Mapping[str, tuple[int, int]], prefix: str = "tied") -> None:
    """Name the tied actions in the panel (``tied: a = b``), at the spot along its edges with the fewest
    plotted points (so that the note does not hide a curve)."""
    import numpy as np

    if not ties:
        return
    groups: list[list[str]] = []
    for action, (rank, _) in ties.items():
        if rank == 0:
            groups.append([action])
        else:
            groups[-1].append(action)
    # At most three groups, each of at most three names: the note must stay a note with 30 actions.
    shown = [" = ".join(g) if len(g) <= 3 else f"{g[0]} = {g[1]} = ... ({len(g)} actions)" for g in groups[:3]]
    more = f"; {len(groups) - 3} more" if len(groups) > 3 else ""
    text = f"{prefix}: " + "; ".join(shown) + more
    ax.autoscale_view()
    to_axes = ax.transAxes.inverted()
    xy = []
    for line in ax.get_lines():  # in axes fractions, through each line's own transform (axhline: blended)
        data = to_axes.transform(line.get_transform().transform(line.get_xydata())) if len(line.get_xdata()) \
            else np.empty((0, 2))
        if len(data) == 2:  # a straight line (axhline): its points are everywhere between its ends
            data = np.linspace(data[0], data[1], 50)
        xy.append(data)
    xy = np.concatenate(xy) if xy else np.empty((0, 2))
    # Candidate spots (axes fraction, alignment), each judged by the points in a box around the note.
    spots = [(x, y, ha, va) for y, va in ((0.97, "top"), (0.03, "bottom"), (0.75, "center"), (0.5, "center"),
                                          (0.25, "center")) for x, ha in ((0.98, "right"), (0.02, "left"))]

    def crowd(spot: tuple[float, float, str, str]) -> int:
        x, y, ha, va = spot
        x0 = x - 0.5 if ha == "right" else x
        y0 = {"top": y - 0.1, "bottom": y, "center": y - 0.05}[va]
        # The box reaches 0.05 beyond the note on each side: a line just outside it still touches the text.
        inside = (xy[:, 0] >= x0 - 0.05) & (xy[:, 0] <= x0 + 0.55) & (xy[:, 1] >= y0 - 0.05) & \
            (xy[:, 1] <= y0 + 0.15)
        return int(inside.sum())

    x, y, ha, va = min(spots, key=crowd)
    ax.text(x, y, text, transform=ax.transAxes, ha=ha, va=va, fontsize=NOTE_SIZE, color="0.25",
            bbox={"boxstyle": "round,pad=0.2", "facecolor": "white", "edgecolor": "none", "alpha": 0.8})


def point_ranks(values: Mapping[str, Any], log: bool = False) -> dict[str, Any]:
    """Per point, the rank of each action among the actions whose points coincide there (0 for the
    first, in the order of `values`; within `TIE_TOLERANCE`, in decades on a log axis).

    `values` maps each action to its values at the same x positions (NaN: no point)."""
    import numpy as np

    actions = list(values)
    v = np.array([np.log10(_shown(values[a], True)) if log else np.asarray(values[a], float) for a in actions])
    ranks = np.zeros(v.shape, dtype=int)
    for i in range(1, len(actions)):
        close = np.abs(v[:i] - v[i]) <= TIE_TOLERANCE  # earlier actions on the same spot
        ranks[i] = close.sum(axis=0)
    return {a: ranks[i] for i, a in enumerate(actions)}


def top_actions(frame: pd.DataFrame, column: str, actions: Sequence[str]) -> list[str]:
    """The actions the legend names: all of them up to `MANY_ACTIONS`, else the `TOP_ACTIONS` with the
    largest `column` anywhere in `frame` (in action order)."""
    if len(actions) <= MANY_ACTIONS or frame.empty:
        return list(actions)
    peak = frame.groupby("action", sort=False)[column].max()
    chosen = set(peak.sort_values(ascending=False, kind="stable").index[:TOP_ACTIONS])
    return [a for a in actions if a in chosen]


def _legend_handles(
    actions: Sequence[str], named: Sequence[str], colors: Mapping[str, Any], extra: Sequence[Any]
) -> list[Any]:
    from matplotlib.lines import Line2D

    handles = [Line2D([], [], color=colors[a], linewidth=2.5, label=f"y = {a}") for a in named]
    others = len(actions) - len(named)
    if others:
        handles.append(Line2D([], [], color="0.6", linewidth=1.2, label=f"{others} other actions"))
    return handles + list(extra)


# -- the tau grid frame ------------------------------------------------------------------------------
def tau_grid_frame(policy: pd.DataFrame, metrics: pd.DataFrame) -> pd.DataFrame:
    """Reshape an exact solve over a dense tau grid into the ``tau_grid`` frame the figures read.

    Parameters
    ----------
    policy, metrics : DataFrame
        `Frames.policy` and `Frames.metrics` of ``psipo_cli.solve(problem, methods, grid, solver="exact")``.

    Returns
    -------
    DataFrame
        Columns ``method, tau, context, action, prob, kl, win_rate_ref, status`` (exact rows only).
    """
    keys = ["method", "tau", "context"]
    exact_policy = policy[policy["solver"] == EXACT]
    exact_metrics = metrics[metrics["solver"] == EXACT][[*keys, "kl", "win_rate_ref", "status"]]
    merged = exact_policy.merge(exact_metrics, on=keys, how="left", validate="many_to_one")
    out = merged[TAU_GRID_COLUMNS].reset_index(drop=True)
    # `win_rate_ref` may arrive as objects (None without a preference model): make it a float column.
    out["win_rate_ref"] = out["win_rate_ref"].astype(float)
    return out


# -- curves.png ---------------------------------------------------------------------------------------
def draw_curves(
    curves: pd.DataFrame,
    policy: pd.DataFrame | None,
    problem: str = "problem",
    context: str | None = None,
    log_prob: bool = False,
) -> Figure | None:
    """Learning curves: one row per method, one column per tau; per action the seed mean with its 95% CI
    band, and the exact solution of the same method and tau as a dashed line of the same colour.

    Parameters
    ----------
    curves : DataFrame
        Columns ``step, method, tau, context, action, mean, lo, hi`` (``lo``, ``hi`` NaN with one seed:
        no band).
    policy : DataFrame or None
        The policy frame; its ``solver == "exact"`` rows give the dashed lines.
    problem : problem name for the title.
    context : the context to draw (default: the first one in `curves`); named in the title when the
        frames hold several.
    log_prob : log probability axis (from `LOG_FLOOR` to 1).

    Returns
    -------
    The figure, or None when `curves` has no rows for this context.
    """
    ctx = context if context is not None else (_contexts(curves) or [None])[0]
    data = _select(curves, context=ctx)
    if data.empty:
        return None
    methods = unique(data["method"])
    taus = sorted(unique(data["tau"]))
    actions = _actions(policy, data)
    colors = action_colors(actions)
    named = top_actions(data, "mean", actions)
    exact = _select(policy, solver=EXACT, context=ctx)
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    extra = [
        Line2D([], [], color="0.3", linewidth=1.6, label="gradient: seed mean"),
        Patch(facecolor="0.3", alpha=0.25, label="95% CI over seeds"),
    ]
    if not exact.empty:
        extra.append(Line2D([], [], color="0.3", linestyle="--", linewidth=1.2, label="exact solution"))
    handles = _legend_handles(actions, named, colors, extra)
    fig, axes, legend_cols = new_figure(len(methods), len(taus), legend_items=len(handles), wgap=0.2, share=True)
    max_step = float(data["step"].max())
    band_alpha = 0.2 * min(1.0, MANY_ACTIONS / len(actions))  # thirty overlapping bands stay see-through
    for i, method in enumerate(methods):
        for j, tau in enumerate(taus):
            ax = axes[i, j]
            panel = _select(data, method=method, tau=tau).sort_values("step", kind="stable")
            ax.set_title(f"{method}, τ = {fmt_tau(tau)}", fontsize=TITLE_SIZE, y=1.0)
            _probability_axis(ax, label=j == 0, log=log_prob)
            ax.set_xscale("symlog", linthresh=1.0)
            log_ticks(ax.xaxis)
            ax.set_xlim(0.0, max(max_step, 1.0))
            if i == len(methods) - 1:
                ax.set_xlabel("step (log scale; 0 at left)")
            # Shared axes: tick labels on the outer panels only (half the texts to draw).
            ax.tick_params(labelbottom=i == len(methods) - 1, labelleft=j == 0)
            if panel.empty:
                ax.text(0.5, 0.5, "no gradient run", ha="center", va="center", transform=ax.transAxes)
                continue
            rows = {a: panel[panel["action"] == a] for a in actions}
            rows = {a: r for a, r in rows.items() if not r.empty}
            ties = tie_groups({a: r["mean"].to_numpy(float) for a, r in rows.items()}, log_prob)
            targets = {a: _select(exact, method=method, tau=tau, action=a) for a in rows}
            targets = {a: float(t["prob"].iloc[0]) for a, t in targets.items() if not t.empty}
            exact_ties = tie_groups({a: [p] for a, p in targets.items()}, log_prob)
            for k, (action, r) in enumerate(rows.items()):
                color = colors[action]
                steps = r["step"].to_numpy(dtype=float)
                ax.fill_between(steps, _shown(r["lo"], log_prob), _shown(r["hi"], log_prob), color=color,
                                alpha=band_alpha, linewidth=0)
                rank, size = ties.get(action, (0, 1))
                ax.plot(steps, _shown(r["mean"], log_prob), color=color, linewidth=line_width(k, 2.2),
                        linestyle=tie_style(rank, size, dashed=False), label=f"y = {action}")
                if action in targets:
                    rank, size = exact_ties.get(action, (0, 1))
                    ax.axhline(float(_shown(targets[action], log_prob)), color=color, linewidth=1.2,
                               linestyle=tie_style(rank, size, dashed=True) if size > 1 else "--")
            _tie_note(ax, ties or exact_ties, "tied" if ties else "tied (exact)")
    figure_legend(fig, handles, legend_cols)
    suptitle(fig, problem, "learning curves", ctx if len(_contexts(curves, policy)) > 1 else None)
    return fig


def plot_curves(
    curves: pd.DataFrame,
    policy: pd.DataFrame | None,
    path: str | Path,
    problem: str = "problem",
    context: str | None = None,
    log_prob: bool = False,
) -> Path | None:
    """`draw_curves` saved to `path`; returns the path written, or None when there is nothing to draw."""
    fig = draw_curves(curves, policy, problem, context, log_prob)
    return None if fig is None else save_figure(fig, Path(path))


# -- gap.png ------------------------------------------------------------------------------------------
#: The gap's axis floor: double precision puts the duality gap's own floor near 1e-16.
GAP_FLOOR = 1e-16


def draw_gap(gap_curves: pd.DataFrame | None, problem: str = "problem", context: str | None = None) -> Figure | None:
    """The duality gap of the regularised preference game (`nash_gap`) against the step, log-log: one panel
    per tau, one line per method (seed mean, 95% band); 0 only at the equilibrium `pi*_tau`.

    Returns None when `gap_curves` has no rows for this context (no gradient run, or no preference model).
    """
    ctx = context if context is not None else (_contexts(gap_curves) or [None])[0]
    data = _select(gap_curves, context=ctx)
    if data.empty:
        return None
    methods = unique(data["method"])
    taus = sorted(unique(data["tau"]))
    colors = method_colors(methods)
    import numpy as np
    from matplotlib.lines import Line2D

    handles = [Line2D([], [], color=colors[m], linewidth=1.6, label=m) for m in methods]
    fig, axes, legend_cols = new_figure(1, len(taus), legend_items=len(handles), wgap=0.2, share=True)
    max_step = float(data["step"].max())
    for j, tau in enumerate(taus):
        ax = axes[0, j]
        ax.set_title(f"τ = {fmt_tau(tau)}", fontsize=TITLE_SIZE, y=1.0)
        ax.set_xscale("symlog", linthresh=1.0)
        log_ticks(ax.xaxis)
        ax.set_xlim(0.0, max(max_step, 1.0))
        ax.set_yscale("log")
        ax.set_xlabel("step (log scale; 0 at left)")
        if j == 0:
            ax.set_ylabel("duality gap (log scale)")
        for method in methods:
            panel = _select(data, method=method, tau=tau).sort_values("step", kind="stable")
            if panel.empty:
                continue
            steps = panel["step"].to_numpy(float)
            clip = lambda v: np.maximum(np.asarray(v, float), GAP_FLOOR)  # noqa: E731 (an exact 0 has no log)
            ax.fill_between(steps, clip(panel["lo"]), clip(panel["hi"]), color=colors[method], alpha=0.2,
                            linewidth=0)
            ax.plot(steps, clip(panel["mean"]), color=colors[method], linewidth=1.6)
    figure_legend(fig, handles, legend_cols)
    suptitle(fig, problem, "duality gap to the regularised equilibrium", ctx if len(_contexts(gap_curves)) > 1
             else None)
    return fig


def plot_gap(gap_curves: pd.DataFrame | None, path: str | Path, problem: str = "problem",
             context: str | None = None) -> Path | None:
    """`draw_gap` saved to `path`; returns the path written, or None when there is nothing to draw."""
    fig = draw_gap(gap_curves, problem, context)
    return None if fig is None else save_figure(fig, Path(path))


# -- policy_vs_tau.png --------------------------------------------------------------------------------
def draw_policy_vs_tau(
    tau_grid: pd.DataFrame | None,
    policy: pd.DataFrame,
    problem: str = "problem",
    context: str | None = None,
    metrics: pd.DataFrame | None = None,
    log_prob: bool = False,
) -> Figure | None:
    """Exact pi(y) against tau (log axis), one panel per method; gradient results as points with CI bars.

    Parameters
    ----------
    tau_grid : DataFrame or None
        The exact solution on a dense tau grid (``method, tau, context, action, prob, ...``). Without it
        the exact rows of `policy` (the run's own tau values) are drawn instead, joined by lines.
    policy : DataFrame
        The policy frame; its ``solver == "gradient"`` rows are drawn as points with their CI (no bar
        where the bounds are unknown, i.e. with one seed).
    problem, context, log_prob : as in `draw_curves`.
    metrics : DataFrame, optional
        The metrics frame: the exact statuses for the panel titles when `tau_grid` is absent.

    Returns
    -------
    The figure, or None when there is nothing to draw for this context.
    """

    ctx = context if context is not None else (_contexts(tau_grid, policy) or [None])[0]
    grid = _select(tau_grid, context=ctx)
    dense = not grid.empty
    if not dense:
        grid = _select(policy, solver=EXACT, context=ctx)
    gradient = _select(policy, solver=GRADIENT, context=ctx)
    if grid.empty and gradient.empty:
        return None
    methods = unique([*grid.get("method", []), *gradient.get("method", [])])
    actions = _actions(policy, grid)
    colors = action_colors(actions)
    named = top_actions(grid if not grid.empty else gradient, "prob", actions)
    from matplotlib.lines import Line2D

    exact_label = "exact (dense τ grid)" if dense else "exact"
    extra = [Line2D([], [], color="0.3", linewidth=1.8, label=exact_label)]
    if not gradient.empty:
        extra.append(
            Line2D([], [], color="0.3", marker="o", linestyle="none", label="gradient: seed mean, 95% CI")
        )
    handles = _legend_handles(actions, named, colors, extra)
    ncols = policy_columns(len(methods))
    nrows = -(-len(methods) // ncols)
    # Small multiples on shared axes: the tau axis is labelled once per column (under its lowest panel) and
    # the probability axis once per row, so that a zoo of twenty methods reads as one figure; more than
    # `MANY_METHODS` methods get smaller panels in `policy_columns(n)` columns.
    panel = (3.6, 2.8) if len(methods) <= MANY_METHODS else (3.0, 2.3)
    fig, axes, legend_cols = new_figure(nrows, ncols, panel=panel, legend_items=len(handles), wgap=0.25,
                                        share=True)
    for m, method in enumerate(methods):
        ax = axes.flat[m]
        lowest = m + ncols >= len(methods)  # no panel below this one: it carries the column's tau axis
        exact_rows = _select(grid, method=method).sort_values("tau", kind="stable")
        status_rows = exact_rows if dense else _select(metrics, solver=EXACT, context=ctx, method=method)
        statuses = unique(status_rows["status"]) if "status" in status_rows.columns else []
        status = f" (exact: {' / '.join(statuses)})" if statuses and statuses != ["optimal"] else ""
        ax.set_title(f"{method}{status}", fontsize=TITLE_SIZE, y=1.0)
        ax.set_xscale("log")
        log_ticks(ax.xaxis)
        if lowest:
            ax.set_xlabel("τ (KL coefficient, log scale)")
        ax.tick_params(labelbottom=lowest, labelleft=m % ncols == 0)
        _probability_axis(ax, label=m % ncols == 0, log=log_prob)
        lines = {a: exact_rows[exact_rows["action"] == a] for a in actions}
        lines = {a: line for a, line in lines.items() if not line.empty}
        ties = tie_groups({a: line["prob"].to_numpy(float) for a, line in lines.items()}, log_prob)
        points = {a: _select(gradient, method=method, action=a) for a in actions}
        # One point per tau (a hand-edited CSV may repeat one): the first, as drawn on top.
        points = {a: p.drop_duplicates("tau").set_index("tau")["prob"] if not p.empty else None
                  for a, p in points.items()}
        on_grid = sorted({t for p in points.values() if p is not None for t in p.index})
        ranks = point_ranks({a: p.reindex(on_grid).to_numpy(float) for a, p in points.items() if p is not None},
                            log_prob)
        for k, action in enumerate(actions):
            color = colors[action]
            if action in lines:
                rank, size = ties.get(action, (0, 1))
                ax.plot(
                    lines[action]["tau"].to_numpy(float), _shown(lines[action]["prob"], log_prob), color=color,
                    linewidth=line_width(k), marker=None if dense else ".",
                    linestyle=tie_style(rank, size, dashed=False), label=f"y = {action}",
                )
            if action in ranks:
                _gradient_points(ax, _select(gradient, method=method, action=action), on_grid, ranks[action],
                                 color, log_prob)
        _tie_note(ax, ties)
    _hide_unused(axes, len(methods))
    figure_legend(fig, handles, legend_cols)
    several = len(_contexts(tau_grid, policy)) > 1
    suptitle(fig, problem, "policy against τ", ctx if several else None)
    return fig


def policy_columns(n_methods: int) -> int:
    """Columns of the policy-vs-tau grid for `n_methods` panels: up to four, five beyond `MANY_METHODS`
    (twenty methods then fill four rows of five instead of five rows of four)."""
    return min(n_methods, 4 if n_methods <= MANY_METHODS else 5)


def _gradient_points(ax: Axes, rows: pd.DataFrame, on_grid: list[float], ranks: Any, color: Any, log: bool) -> None:
    """One action's gradient results as points with 95% CI bars; a point that coincides with an earlier
    action's (rank r > 0) gets the r-th marker of `TIE_MARKERS`, smaller, so that both stay visible."""
    import numpy as np

    rank_at = dict(zip(on_grid, ranks, strict=True))
    rows = rows.assign(rank=[rank_at[t] for t in rows["tau"]])
    for rank, part in rows.groupby("rank", sort=True):
        prob = part["prob"].to_numpy(float)
        # Missing bounds (one seed) draw no bar: fmin/fmax pick the point itself over a NaN. They also
        # clip, so a rounding error in lo > mean cannot make matplotlib reject a negative error length.
        low = np.fmin(part["prob_lo"].to_numpy(float), prob)
        high = np.fmax(part["prob_hi"].to_numpy(float), prob)
        shown = _shown(prob, log)
        yerr = np.vstack([shown - _shown(low, log), _shown(high, log) - shown])
        ax.errorbar(
            part["tau"].to_numpy(float), shown, yerr=yerr, fmt=TIE_MARKERS[int(rank) % len(TIE_MARKERS)],
            color=color, markersize=6 - 1.5 * min(int(rank), 2), markeredgecolor="white", markeredgewidth=0.6,
            capsize=3, elinewidth=1.2,
        )


def plot_policy_vs_tau(
    tau_grid: pd.DataFrame | None,
    policy: pd.DataFrame,
    path: str | Path,
    problem: str = "problem",
    context: str | None = None,
    metrics: pd.DataFrame | None = None,
    log_prob: bool = False,
) -> Path | None:
    """`draw_policy_vs_tau` saved to `path`; returns the path written, or None when there is nothing."""
    fig = draw_policy_vs_tau(tau_grid, policy, problem, context, metrics, log_prob)
    return None if fig is None else save_figure(fig, Path(path))


# -- frontier.png -------------------------------------------------------------------------------------
#: Where a tau label may go relative to its point (offset in points, horizontal and vertical alignment),
#: in order of preference: below right, above right, below left, above left, then further out.
LABEL_SPOTS = (
    (6, -4, "left", "top"), (6, 4, "left", "bottom"), (-6, -4, "right", "top"), (-6, 4, "right", "bottom"),
    (0, -9, "center", "top"), (0, 9, "center", "bottom"), (10, -16, "left", "top"), (-10, -16, "right", "top"),
    (10, 16, "left", "bottom"), (-10, 16, "right", "bottom"), (14, -28, "left", "top"), (-14, -28, "right", "top"),
    (14, 28, "left", "bottom"), (-14, 28, "right", "bottom"), (0, -36, "center", "top"), (0, 36, "center", "bottom"),
)
CLUSTER_PX = 12.0  # points of one method closer than this (pixels) share one label


def draw_frontier(
    tau_grid: pd.DataFrame | None,
    metrics: pd.DataFrame,
    problem: str = "problem",
    context: str | None = None,
) -> Figure | None:
    """KL(pi || pi_ref) against the win rate over pi_ref: one curve per method over the dense tau grid,
    gradient results as points labelled with their tau.

    Labels never overprint one another, a point or the legend: points of one method that nearly
    coincide share one label (``tau = 0.5, 1, 2``), and each label takes the first free spot of
    `LABEL_SPOTS` around its point; a label with no free spot is left out and a note says so.

    Parameters
    ----------
    tau_grid : DataFrame or None
        Dense exact grid with ``kl`` and ``win_rate_ref`` (one row per action; the first is used). Without
        it the exact rows of `metrics` (the run's own tau values) are drawn instead.
    metrics : DataFrame
        The metrics frame; ``solver == "gradient"`` rows give the points.
    problem, context : as in `draw_curves`.

    Returns
    -------
    The figure, or None when the win rate is unknown (no preference model) for this context.
    """
    import numpy as np

    ctx = context if context is not None else (_contexts(tau_grid, metrics) or [None])[0]
    grid = _select(tau_grid, context=ctx)
    dense = not grid.empty
    if dense:
        grid = grid.drop_duplicates(["method", "tau"])
    else:
        grid = _select(metrics, solver=EXACT, context=ctx)
    gradient = _select(metrics, solver=GRADIENT, context=ctx)
    exact_at_run = _select(metrics, solver=EXACT, context=ctx)

    def known(frame: pd.DataFrame) -> pd.DataFrame:
        if frame.empty or "win_rate_ref" not in frame.columns:
            return frame.iloc[0:0]
        wr = frame["win_rate_ref"].astype(float)
        kl = frame["kl"].astype(float)
        return frame[np.isfinite(wr.to_numpy()) & np.isfinite(kl.to_numpy())]

    grid, gradient, exact_at_run = known(grid), known(gradient), known(exact_at_run)
    if grid.empty and gradient.empty:
        return None
    methods = unique([*grid.get("method", []), *gradient.get("method", [])])
    colors = method_colors(methods)
    fig, axes, _ = new_figure(1, 1, panel=(6.4, 4.6))
    ax = axes[0, 0]
    ax.axhline(0.5, color="0.6", linewidth=0.8, linestyle=":")
    labels: list[tuple[str, Any, Any]] = []  # (method, points to label, colour)
    for k, method in enumerate(methods):
        color, marker = colors[method], METHOD_MARKERS[k % len(METHOD_MARKERS)]
        line = grid[grid["method"] == method].sort_values("tau")
        if not line.empty:
            kl, wr = line["kl"].to_numpy(float), line["win_rate_ref"].to_numpy(float)
            # A tau-independent answer (DPO's limit) collapses to one point: draw it as a hollow marker,
            # sized by method so that coinciding methods stay visible.
            collapsed = np.ptp(kl) < 1e-9 and np.ptp(wr) < 1e-9
            label = f"{method} (exact" + (", same for every τ)" if collapsed else ")")
            ax.plot(
                kl, wr, color=color, linestyle=METHOD_STYLES[k % len(METHOD_STYLES)], linewidth=2.0,
                marker=marker if collapsed else None, markersize=11 - 2 * (k % 3),
                markerfacecolor="none", markeredgewidth=1.8, label=label,
            )
        run = exact_at_run[exact_at_run["method"] == method]
        if not run.empty and dense:
            ax.plot(
                run["kl"].to_numpy(float), run["win_rate_ref"].to_numpy(float), linestyle="none",
                marker=marker, markersize=4, color=color,
            )
        points = gradient[gradient["method"] == method]
        if not points.empty:
            ax.plot(
                points["kl"].to_numpy(float), points["win_rate_ref"].to_numpy(float), linestyle="none",
                marker=marker, markersize=7, color=color, markeredgecolor="black", markeredgewidth=0.7,
                label=f"{method} (gradient)",
            )
        # Label tau at the run's own values: the gradient points, or the exact ones without gradient.
        labels.append((method, points if not points.empty else run, color))
    ax.set_xlabel(r"KL($\pi$ || $\pi_{\mathrm{ref}}$) (nats)")
    ax.set_ylabel(r"win rate against $\pi_{\mathrm{ref}}$, $p^*(\pi \succ \pi_{\mathrm{ref}})$")
    ax.grid(True, alpha=0.3, linewidth=0.6)
    ax.margins(x=0.08, y=0.08)
    handles, _ = ax.get_legend_handles_labels()
    if dense and not exact_at_run.empty:
        from matplotlib.lines import Line2D

        handles.append(
            Line2D([], [], color="0.3", marker="o", markersize=4, linestyle="none",
                   label="exact at the run's τ values")
        )
    legend = ax.legend(handles=handles, fontsize=8, loc="lower right", frameon=True, framealpha=0.85)
    omitted = _label_taus(fig, ax, labels, legend)
    if omitted:
        ax.text(0.01, 0.99, f"{omitted} τ label(s) left out (no room)", transform=ax.transAxes,
                ha="left", va="top", fontsize=NOTE_SIZE, color="0.35")
    several = len(_contexts(tau_grid, metrics)) > 1
    suptitle(fig, problem, "KL against win rate", ctx if several else None)
    return fig


def _label_taus(fig: Figure, ax: Axes, labels: Sequence[tuple[str, Any, Any]], legend: Any) -> int:
    """Annotate tau next to the points of `labels` without overlaps (see `draw_frontier`); returns how
    many labels found no room."""
    import numpy as np
    from matplotlib.text import Text
    from matplotlib.transforms import Bbox

    ax.autoscale_view()
    ax.set_xlim(ax.get_xlim())  # freeze the limits: the labels are placed in display coordinates
    ax.set_ylim(ax.get_ylim())
    renderer = fig.canvas.get_renderer()
    frame = ax.get_window_extent(renderer)
    to_display = ax.transData.transform
    clusters: list[tuple[np.ndarray, list[str], Any]] = []
    taken = [legend.get_window_extent(renderer)]
    for _, points, color in labels:
        xy = to_display(np.column_stack([points["kl"].to_numpy(float), points["win_rate_ref"].to_numpy(float)]))
        own: list[tuple[np.ndarray, list[str], Any]] = []
        for spot, tau in zip(xy, points["tau"], strict=True):
            r = 6.0  # a marker's half-size in pixels: labels keep off every point
            taken.append(Bbox([spot - r, spot + r]))
            near = next((c for c in own if np.hypot(*(c[0] - spot)) < CLUSTER_PX), None)
            if near is None:
                own.append((spot, [fmt_tau(tau)], color))
            else:
                near[1].append(fmt_tau(tau))
        for spot, taus, color in own:
            # Methods whose points coincide at the same taus (RLHF with rm_l2 = 0 is DPO) share a label.
            same = next((i for i, c in enumerate(clusters) if c[1] == taus and np.hypot(*(c[0] - spot)) < CLUSTER_PX),
                        None)
            if same is None:
                clusters.append((spot, taus, color))
            else:
                clusters[same] = (clusters[same][0], taus, "0.2")
    omitted = 0
    to_data = ax.transData.inverted().transform
    # Points that carry several taus first (a tau-independent answer says the most), then in drawing order.
    for spot, taus, color in sorted(clusters, key=lambda c: -len(c[1])):
        values = ", ".join(taus) if len(taus) <= 4 else f"{taus[0]} ... {taus[-1]} ({len(taus)} values)"
        for dx, dy, ha, va in LABEL_SPOTS:
            text = ax.annotate(f"τ = {values}", tuple(to_data(spot)), textcoords="offset points",
                               xytext=(dx, dy), ha=ha, va=va, fontsize=NOTE_SIZE, color=color,
                               # A label away from its point gets a thin leader line back to it.
                               arrowprops=None if abs(dy) < 20 else {"arrowstyle": "-", "color": color,
                                                                     "linewidth": 0.5, "shrinkB": 4})
            text.update_positions(renderer)
            box = Text.get_window_extent(text, renderer).padded(1.0)  # the text alone, not its leader line
            inside = frame.containsx(box.x0) and frame.containsx(box.x1) and frame.containsy(box.y0) and \
                frame.containsy(box.y1)
            if inside and not any(box.overlaps(other) for other in taken):
                taken.append(box)
                break
            text.remove()
        else:
            omitted += 1
    return omitted


def plot_frontier(
    tau_grid: pd.DataFrame | None,
    metrics: pd.DataFrame,
    path: str | Path,
    problem: str = "problem",
    context: str | None = None,
) -> Path | None:
    """`draw_frontier` saved to `path`; returns the path written, or None when the win rate is unknown."""
    fig = draw_frontier(tau_grid, metrics, problem, context)
    return None if fig is None else save_figure(fig, Path(path))


# -- all figures ----------------------------------------------------------------------------------------
def write_figures(
    out_dir: str | Path,
    policy: pd.DataFrame,
    metrics: pd.DataFrame,
    curves: pd.DataFrame | None = None,
    tau_grid: pd.DataFrame | None = None,
    problem: str = "problem",
    log_prob: bool = False,
    gap_curves: pd.DataFrame | None = None,
) -> list[Path]:
    """Draw every figure that has something to show into `out_dir` (created if needed).

    One file per figure and context (suffixed with the context name when there are several). Returns the
    paths written, in the order curves, gap, policy_vs_tau, frontier. `log_prob`: log probability axes.
    """
    out = Path(out_dir)
    contexts = _contexts(policy, metrics, curves, tau_grid)
    several = len(contexts) > 1
    tasks: list[Callable[[], Path | None]] = []
    if curves is not None:
        tasks += [
            partial(plot_curves, curves, policy, _figure_path(out, "curves", c, several), problem, c, log_prob)
            for c in contexts
        ]
    if gap_curves is not None:
        tasks += [partial(plot_gap, gap_curves, _figure_path(out, "gap", c, several), problem, c) for c in contexts]
    tasks += [
        partial(plot_policy_vs_tau, tau_grid, policy, _figure_path(out, "policy_vs_tau", c, several), problem, c,
                metrics, log_prob)
        for c in contexts
    ]
    tasks += [
        partial(plot_frontier, tau_grid, metrics, _figure_path(out, "frontier", c, several), problem, c)
        for c in contexts
    ]
    return [p for p in draw_in_parallel(tasks) if p is not None]


def draw_in_parallel(tasks: Sequence[Callable[[], Path | None]]) -> list[Path | None]:
    """`[task() for task in tasks]`, the first third of them drawn in a forked child process.

    Drawing a figure is single-threaded matplotlib work (ticks, text layout, Agg rasterisation), so a
    second CPU can draw some while this process draws the rest. `write_figures` lists the learning curves
    first, one task per context, and they cost about as much as the other two figures together: the
    child takes the first `ceil(len / 3)` tasks. It inherits the frames (fork: nothing to pickle) and
    sends back only the paths it wrote. Each figure is drawn by the same code either way, so the files
    are the same bytes. Serial where fork is unavailable, with one CPU, one task or other threads
    running, and as the fallback: when the child fails, this process draws its figures itself (so that
    an error surfaces here, with its own message).
    """
    import threading

    # Forking a process with other threads can leave the child holding a lock nobody will release.
    if len(tasks) < 2 or not hasattr(os, "fork") or (os.cpu_count() or 1) < 2 or threading.active_count() > 1:
        return [task() for task in tasks]
    split = -(-len(tasks) // 3)
    theirs, mine = list(tasks[:split]), list(tasks[split:])
    read_end, write_end = os.pipe()
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:  # the child: draw, report the paths, leave without running the parent's exit handlers
        code = 1
        try:
            os.close(read_end)
            paths = [task() for task in theirs]
            with os.fdopen(write_end, "w", encoding="utf-8") as pipe:
                json.dump([None if p is None else str(p) for p in paths], pipe)
            code = 0
        finally:
            os._exit(code)
    os.close(write_end)
    try:
        drawn = [task() for task in mine]
    finally:
        with os.fdopen(read_end, encoding="utf-8") as pipe:
            reply = pipe.read()
        _, status = os.waitpid(pid, 0)
    if os.waitstatus_to_exitcode(status) == 0:
        child = [None if p is None else Path(p) for p in json.loads(reply)]
    else:
        child = [task() for task in theirs]
    return child + drawn


class Painter:
    """`render_figures` of a run directory in a forked child that gets ready while this process computes.

    Matplotlib's import, its font and the first drawing's caches cost about 0.4 s of a ``psipo compare``,
    which this process would otherwise spend after the solve. `Painter.start()` forks the child early (when
    `forking.fork_pays`); the child imports and warms up, then waits for `paint(run_dir)` to send the
    directory once its CSVs are written, and draws from those CSVs with the code ``psipo plot`` runs (the
    same bytes). If the child fails, `paint` draws here.
    """

    def __init__(self, log_prob: bool) -> None:
        from psipo_cli.forking import Forked

        self.log_prob = log_prob
        read_end, go = os.pipe()
        self.go: int | None = go
        self.child = Forked(_paint_when_told, read_end, go, log_prob)
        os.close(read_end)

    @classmethod
    def start(cls, log_prob: bool = False) -> Painter | None:
        """A started painter, or None where a fork does not pay (`forking.fork_pays`)."""
        from psipo_cli.forking import fork_pays

        return cls(log_prob) if fork_pays() else None

    def paint(self, run_dir: str | Path) -> list[Path]:
        """The figures of `run_dir` (whose CSVs are written), drawn by the child: `render_figures`' paths."""
        go, self.go = self.go, None
        try:
            with os.fdopen(go, "wb") as pipe:
                pickle.dump(str(run_dir), pipe)
        except BrokenPipeError:
            pass  # the child is gone: `result` draws here
        paths = self.child.result(retry=lambda: render_figures(run_dir, log_prob=self.log_prob))
        return [Path(p) for p in paths]

    def close(self) -> None:
        """End the child without painting (an error in this process); idempotent."""
        if self.go is not None:
            os.close(self.go)
            self.go = None
        self.child.close()


def _paint_when_told(
    go: int, parent_end: int, log_prob: bool, progress: Callable[[int, int], None] | None = None
) -> list[str]:
    """In the painter's child: import and warm up matplotlib, wait for the run directory on `go`, draw.

    `parent_end` is the parent's end of the pipe, inherited by the fork: closed here, so that the read
    ends (with no directory) when the parent closes its end or dies."""
    os.close(parent_end)
    import gc

    import pandas  # noqa: F401  (render_figures reads the CSVs)
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(1, 1), dpi=DPI)  # loads the font and fills matplotlib's first-draw caches
    FigureCanvasAgg(fig)
    fig.subplots().set_title("τ")
    fig.canvas.draw()
    # The imported modules' objects live as long as the process: kept out of the garbage collector's
    # passes, which otherwise walk them over and over while the figures allocate (about a fifth of the
    # drawing's CPU time).
    gc.freeze()
    with os.fdopen(go, "rb") as pipe:
        run_dir = pickle.load(pipe)  # EOFError when the parent closed its end without a directory
    return [str(p) for p in render_figures(run_dir, log_prob=log_prob)]


def render_frames(
    run_dir: str | Path,
    policy: pd.DataFrame,
    metrics: pd.DataFrame,
    curves: pd.DataFrame | None = None,
    tau_grid: pd.DataFrame | None = None,
    config: Mapping[str, Any] | None = None,
    log_prob: bool = False,
    gap_curves: pd.DataFrame | None = None,
) -> list[Path]:
    """`write_figures` into ``run_dir/figures/``, titled with the problem name from `config`.

    The same call `render_figures` makes after reading the CSVs back, so a run's figures and those of
    ``psipo plot`` are drawn by one code path from the same values.
    """
    run_dir = Path(run_dir)
    return write_figures(
        run_dir / "figures", policy, metrics, curves=curves, tau_grid=tau_grid,
        problem=problem_title(config, fallback=run_dir.name), log_prob=log_prob, gap_curves=gap_curves,
    )


def load_run_frames(run_dir: str | Path) -> dict[str, Any]:
    """The frames and config a run directory holds: ``policy``, ``metrics``, ``curves``, ``tau_grid``
    (None when its CSV is absent) and ``config`` (``{}`` when ``config.json`` is absent).

    Raises
    ------
    InputError
        `run_dir` is not a run directory (no ``policy.csv`` or ``metrics.csv``), or one of its files is not
        what psipo writes (not UTF-8, not CSV, a column missing, text where numbers belong, bad JSON).
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise InputError("RUN_DIR", str(run_dir), "not a directory")
    frames: dict[str, Any] = {}
    for stem, columns in FRAME_COLUMNS.items():
        csv = run_dir / f"{stem}.csv"
        if not csv.is_file():
            if stem in ("policy", "metrics"):
                raise InputError("RUN_DIR", str(run_dir), f"not a psipo run directory (no {stem}.csv)")
            frames[stem] = None
            continue
        frames[stem] = _checked_frame(run_dir, csv, columns)
    config_file = run_dir / "config.json"
    try:
        text = config_file.read_text(encoding="utf-8") if config_file.is_file() else "{}"
        frames["config"] = json.loads(text)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        reason = exc.msg if isinstance(exc, json.JSONDecodeError) else "not UTF-8"
        raise InputError("RUN_DIR", str(run_dir), f"config.json is not valid JSON ({reason})") from exc
    if not isinstance(frames["config"], dict):
        raise InputError("RUN_DIR", str(run_dir), "config.json is not a JSON object")
    return frames


# Columns that the figures read as numbers, and the key columns every file of that kind must have.
_NUMERIC = {"tau", "prob", "prob_lo", "prob_hi", "step", "mean", "lo", "hi", "kl", "entropy", "loss",
            "win_rate_ref", "win_rate_mu", "reward", "tv_to_optimum", "grad_norm", "seeds"}
_REQUIRED = {
    "policy": list(FRAME_COLUMNS["policy"]),
    "metrics": ["method", "tau", "solver", "context", "status", "kl", "win_rate_ref"],
    "curves": list(FRAME_COLUMNS["curves"]),
    "tau_grid": list(FRAME_COLUMNS["tau_grid"]),
}


def _checked_frame(run_dir: Path, csv: Path, columns: Sequence[str]) -> Any:
    """`read_frame(csv)`, or an `InputError` naming the file and what is wrong with it (a hand-edited or
    truncated CSV is bad input to `psipo plot`, not a crash)."""
    import pandas as pd

    stem = csv.stem
    try:
        frame = read_frame(csv, columns)
    except (ValueError, OSError) as exc:  # pandas' parser errors and UnicodeDecodeError are ValueErrors
        reason = "not UTF-8" if isinstance(exc, UnicodeDecodeError) else str(exc).splitlines()[0]
        raise InputError("RUN_DIR", str(run_dir), f"{csv.name} is not a psipo CSV ({reason})") from None
    missing = [c for c in _REQUIRED.get(stem, []) if c not in frame.columns]
    if missing:
        raise InputError("RUN_DIR", str(run_dir), f"{csv.name} lacks the column(s) {', '.join(missing)}")
    for column in sorted(_NUMERIC & set(frame.columns)):
        try:
            frame[column] = pd.to_numeric(frame[column])
        except (ValueError, TypeError):
            raise InputError("RUN_DIR", str(run_dir), f"{csv.name}: column {column} holds non-numbers") from None
        if frame[column].isin([float("inf"), float("-inf")]).any():  # psipo never writes an infinity
            raise InputError("RUN_DIR", str(run_dir), f"{csv.name}: column {column} holds an infinity")
    # Interval bounds may be empty (one seed: no interval); every other key field must be there.
    keys = ("method", "solver", "context", "action", "status", "tau", "step", "prob", "mean")
    for column in keys:
        if column in frame.columns and frame[column].isna().any():
            raise InputError("RUN_DIR", str(run_dir), f"{csv.name}: empty {column} field(s) (a truncated file?)")
    return frame


def render_figures(run_dir: str | Path, log_prob: bool = False) -> list[Path]:
    """Redraw every figure of a run directory from its CSV files (and ``config.json`` for the title).

    Nothing else is read — not the problem file, not the solvers — so this works on a copied or archived
    directory. Figures go to ``run_dir/figures/``; a PNG there that could not be drawn again (its data
    are gone from the CSVs) is removed, so the directory never shows a stale figure. Returns the paths
    written.
    """
    frames = load_run_frames(run_dir)
    written = render_frames(
        run_dir, frames["policy"], frames["metrics"], frames["curves"], frames["tau_grid"], frames["config"],
        log_prob=log_prob, gap_curves=frames["gap_curves"],
    )
    remove_stale(Path(run_dir) / "figures", written)
    return written


def remove_stale(figures_dir: Path, written: Sequence[Path]) -> list[Path]:
    """Delete the PNGs of `figures_dir` (psipo's own directory) that are not in `written`; returns them."""
    keep = {Path(p).resolve() for p in written}
    stale = [p for p in sorted(figures_dir.glob("*.png")) if p.resolve() not in keep] if figures_dir.is_dir() else []
    for path in stale:
        path.unlink()
    return stale
