"""Figures of a run (issue 4): learning curves, the exact policy against tau, and the KL / win-rate frontier.

Every figure is drawn from the tidy frames alone — the ones a run directory stores as CSV — so that
`render_figures(run_dir)` (``psipo plot RUN_DIR``) redraws them from a copied directory without the
problem file. Nothing here solves anything: the dense tau grid of the exact solution is computed by the
caller and passed in as the ``tau_grid`` frame (`tau_grid_frame` only reshapes solver output into it).

Choices:

- Matplotlib is imported inside the functions (CLI start-up stays fast) and used through its
  object-oriented API with an explicit Agg canvas: no pyplot, no global backend switch, no state shared
  between calls (safe in tests and in a process that already uses another backend).
- The step axis of the learning curves is ``symlog`` with a linear part below step 1: a log axis that
  still shows step 0 (the start at ``pi_ref``) at its left edge.
- Several contexts: one file per context, suffixed with the context name (``curves-ctx1.png``); a single
  context gives the plain names (``curves.png``).
- Colours: one per action, the same in every figure; methods in the frontier get their own colours,
  line styles and markers so that coinciding curves (DPO = RLHF with ``rm_l2 = 0``) stay visible.
- A figure with nothing to show is skipped (returns None): ``curves.png`` without a gradient run,
  ``frontier.png`` without a preference model (unknown win rate).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
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

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

FIGURE_STEMS = ("curves", "policy_vs_tau", "frontier")
DPI = 110
PANEL = (3.2, 2.5)  # inches per panel
METHOD_STYLES = ("-", "--", "-.", ":")
METHOD_MARKERS = ("o", "s", "^", "D", "v", "P", "X")
EXACT = "exact"
GRADIENT = "gradient"


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


def _new_figure(nrows: int, ncols: int, panel: tuple[float, float] = PANEL) -> tuple[Figure, Any]:
    """A figure with an Agg canvas and a grid of axes (always 2-D)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    # At least 5.5 inches wide, so that the title and the legend below fit even with a single panel.
    width = max(panel[0] * ncols + 0.6, 5.5)
    fig = Figure(figsize=(width, panel[1] * nrows + 1.2), layout="constrained", dpi=DPI)
    FigureCanvasAgg(fig)
    axes = fig.subplots(nrows, ncols, squeeze=False)
    return fig, axes


def _save(fig: Figure, path: Path) -> Path:
    import logging
    import warnings

    path.parent.mkdir(parents=True, exist_ok=True)
    # Names in scripts the figure font lacks (CJK, emoji, ...) are drawn as boxes; matplotlib would also
    # print a warning per missing glyph to stderr, which is for messages of psipo's own (DESIGN §5).
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
    """One colour per action, in action order (tab10, tab20 beyond ten actions)."""
    import matplotlib

    cmap = matplotlib.colormaps["tab10" if len(actions) <= 10 else "tab20"]
    return {a: cmap(i % cmap.N) for i, a in enumerate(actions)}


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


def _suptitle(fig: Figure, problem: str, what: str, context: str | None) -> None:
    text = f"{problem}: {what}"
    if context is not None:
        text += f" (context {context})"
    fig.suptitle(text, fontsize=12, fontweight="bold")


def _hide_unused(axes: Any, used: int) -> None:
    for ax in axes.flat[used:]:
        ax.set_visible(False)


def _probability_axis(ax: Axes, label: bool) -> None:
    ax.set_ylim(-0.03, 1.03)
    ax.grid(True, alpha=0.3, linewidth=0.6)
    if label:
        ax.set_ylabel(r"$\pi(y)$ (probability)")


def _legend_columns(fig: Figure, items: int) -> int:
    """As many legend entries per row as fit across the figure (about 1.7 inches each)."""
    return max(1, min(items, int(fig.get_figwidth() / 1.7)))


def line_width(k: int, widest: float = 2.6) -> float:
    """Width of action `k`'s line: decreasing with `k`, so that an action whose curve coincides with an
    earlier one (pi(a) = pi(b) on paper-d3) leaves the earlier colour visible as a border."""
    return max(widest - 0.5 * k, 1.0)


def _legend_handles(actions: Sequence[str], colors: Mapping[str, Any], extra: Sequence[Any]) -> list[Any]:
    from matplotlib.lines import Line2D

    handles = [Line2D([], [], color=colors[a], linewidth=2.5, label=f"y = {a}") for a in actions]
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
def plot_curves(
    curves: pd.DataFrame,
    policy: pd.DataFrame | None,
    path: str | Path,
    problem: str = "problem",
    context: str | None = None,
) -> Path | None:
    """Learning curves: one row per method, one column per tau; per action the seed mean with its 95% CI
    band, and the exact solution of the same method and tau as a dashed line of the same colour.

    Parameters
    ----------
    curves : DataFrame
        Columns ``step, method, tau, context, action, mean, lo, hi``.
    policy : DataFrame or None
        The policy frame; its ``solver == "exact"`` rows give the dashed lines.
    path : path of the PNG to write.
    problem : problem name for the title.
    context : the context to draw (default: the first one in `curves`); named in the title when the
        frames hold several.

    Returns
    -------
    The path written, or None when `curves` has no rows for this context.
    """
    ctx = context if context is not None else (_contexts(curves) or [None])[0]
    data = _select(curves, context=ctx)
    if data.empty:
        return None
    methods = unique(data["method"])
    taus = sorted(unique(data["tau"]))
    actions = _actions(policy, data)
    colors = action_colors(actions)
    exact = _select(policy, solver=EXACT, context=ctx)
    fig, axes = _new_figure(len(methods), len(taus))
    max_step = float(data["step"].max())
    for i, method in enumerate(methods):
        for j, tau in enumerate(taus):
            ax = axes[i, j]
            panel = _select(data, method=method, tau=tau)
            ax.set_title(f"{method}, $\\tau$ = {fmt_tau(tau)}", fontsize=10)
            _probability_axis(ax, label=j == 0)
            ax.set_xscale("symlog", linthresh=1.0)
            ax.set_xlim(0.0, max(max_step, 1.0))
            if i == len(methods) - 1:
                ax.set_xlabel("step (log scale; 0 at left)")
            if panel.empty:
                ax.text(0.5, 0.5, "no gradient run", ha="center", va="center", transform=ax.transAxes)
                continue
            for k, action in enumerate(actions):
                rows = panel[panel["action"] == action].sort_values("step")
                if rows.empty:
                    continue
                color = colors[action]
                steps = rows["step"].to_numpy(dtype=float)
                ax.fill_between(
                    steps, rows["lo"].to_numpy(float), rows["hi"].to_numpy(float),
                    color=color, alpha=0.2, linewidth=0,
                )
                ax.plot(steps, rows["mean"].to_numpy(float), color=color, linewidth=line_width(k, 2.2))
                target = _select(exact, method=method, tau=tau, action=action)
                if not target.empty:
                    ax.axhline(float(target["prob"].iloc[0]), color=color, linestyle="--", linewidth=1.2)
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    extra = [
        Line2D([], [], color="0.3", linewidth=1.6, label="gradient: seed mean"),
        Patch(facecolor="0.3", alpha=0.25, label="95% CI over seeds"),
    ]
    if not exact.empty:
        extra.append(Line2D([], [], color="0.3", linestyle="--", linewidth=1.2, label="exact solution"))
    fig.legend(
        handles=_legend_handles(actions, colors, extra), loc="outside lower center",
        ncols=_legend_columns(fig, len(actions) + len(extra)), fontsize=9, frameon=False,
    )
    _suptitle(fig, problem, "learning curves", ctx if len(_contexts(curves, policy)) > 1 else None)
    return _save(fig, Path(path))


# -- policy_vs_tau.png --------------------------------------------------------------------------------
def plot_policy_vs_tau(
    tau_grid: pd.DataFrame | None,
    policy: pd.DataFrame,
    path: str | Path,
    problem: str = "problem",
    context: str | None = None,
    metrics: pd.DataFrame | None = None,
) -> Path | None:
    """Exact pi(y) against tau (log axis), one panel per method; gradient results as points with CI bars.

    Parameters
    ----------
    tau_grid : DataFrame or None
        The exact solution on a dense tau grid (``method, tau, context, action, prob, ...``). Without it
        the exact rows of `policy` (the run's own tau values) are drawn instead, joined by lines.
    policy : DataFrame
        The policy frame; its ``solver == "gradient"`` rows are drawn as points with their CI.
    path, problem, context : as in `plot_curves`.
    metrics : DataFrame, optional
        The metrics frame: the exact statuses for the panel titles when `tau_grid` is absent.

    Returns
    -------
    The path written, or None when there is nothing to draw for this context.
    """
    import numpy as np

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
    ncols = min(len(methods), 4)
    nrows = -(-len(methods) // ncols)
    fig, axes = _new_figure(nrows, ncols, panel=(3.6, 2.8))
    for k, method in enumerate(methods):
        ax = axes.flat[k]
        exact_rows = _select(grid, method=method)
        status_rows = exact_rows if dense else _select(metrics, solver=EXACT, context=ctx, method=method)
        statuses = unique(status_rows["status"]) if "status" in status_rows.columns else []
        status = f" (exact: {' / '.join(statuses)})" if statuses and statuses != ["optimal"] else ""
        ax.set_title(f"{method}{status}", fontsize=10)
        ax.set_xscale("log")
        ax.set_xlabel(r"$\tau$ (KL coefficient, log scale)")
        _probability_axis(ax, label=k % ncols == 0)
        for k, action in enumerate(actions):
            color = colors[action]
            line = exact_rows[exact_rows["action"] == action].sort_values("tau")
            if not line.empty:
                ax.plot(
                    line["tau"].to_numpy(float), line["prob"].to_numpy(float), color=color,
                    linewidth=line_width(k), marker=None if dense else ".",
                )
            points = _select(gradient, method=method, action=action).sort_values("tau")
            if not points.empty:
                prob = points["prob"].to_numpy(float)
                # Missing bounds (one seed) draw no bar; bounds are clipped so a rounding error in
                # lo > mean cannot make matplotlib reject a negative error length.
                lower = np.nan_to_num(prob - points["prob_lo"].to_numpy(float), nan=0.0).clip(min=0.0)
                upper = np.nan_to_num(points["prob_hi"].to_numpy(float) - prob, nan=0.0).clip(min=0.0)
                ax.errorbar(
                    points["tau"].to_numpy(float), prob, yerr=np.vstack([lower, upper]), fmt="o",
                    color=color, markersize=5, markeredgecolor="white", markeredgewidth=0.6,
                    capsize=3, elinewidth=1.2,
                )
    _hide_unused(axes, len(methods))
    from matplotlib.lines import Line2D

    exact_label = "exact (dense $\\tau$ grid)" if dense else "exact"
    extra = [Line2D([], [], color="0.3", linewidth=1.8, label=exact_label)]
    if not gradient.empty:
        extra.append(
            Line2D([], [], color="0.3", marker="o", linestyle="none", label="gradient: seed mean, 95% CI")
        )
    fig.legend(
        handles=_legend_handles(actions, colors, extra), loc="outside lower center",
        ncols=_legend_columns(fig, len(actions) + len(extra)), fontsize=9, frameon=False,
    )
    several = len(_contexts(tau_grid, policy)) > 1
    _suptitle(fig, problem, r"policy against $\tau$", ctx if several else None)
    return _save(fig, Path(path))


# -- frontier.png -------------------------------------------------------------------------------------
def plot_frontier(
    tau_grid: pd.DataFrame | None,
    metrics: pd.DataFrame,
    path: str | Path,
    problem: str = "problem",
    context: str | None = None,
) -> Path | None:
    """KL(pi || pi_ref) against the win rate over pi_ref: one curve per method over the dense tau grid,
    gradient results as points annotated with their tau.

    Parameters
    ----------
    tau_grid : DataFrame or None
        Dense exact grid with ``kl`` and ``win_rate_ref`` (one row per action; the first is used). Without
        it the exact rows of `metrics` (the run's own tau values) are drawn instead.
    metrics : DataFrame
        The metrics frame; ``solver == "gradient"`` rows give the points.
    path, problem, context : as in `plot_curves`.

    Returns
    -------
    The path written, or None when the win rate is unknown (no preference model) for this context.
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
    kl_max = max(float(np.nanmax(f["kl"].to_numpy(float))) for f in (grid, gradient) if not f.empty)
    fig, axes = _new_figure(1, 1, panel=(6.4, 4.6))
    ax = axes[0, 0]
    ax.axhline(0.5, color="0.6", linewidth=0.8, linestyle=":")
    for k, method in enumerate(methods):
        color, marker = colors[method], METHOD_MARKERS[k % len(METHOD_MARKERS)]
        line = grid[grid["method"] == method].sort_values("tau")
        if not line.empty:
            kl, wr = line["kl"].to_numpy(float), line["win_rate_ref"].to_numpy(float)
            # A tau-independent answer (DPO's limit) collapses to one point: draw it as a hollow marker,
            # sized by method so that coinciding methods stay visible.
            collapsed = np.ptp(kl) < 1e-9 and np.ptp(wr) < 1e-9
            label = f"{method} (exact" + (", same for every $\\tau$)" if collapsed else ")")
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
        # Annotate tau at the run's own values: the gradient points, or the exact ones without gradient.
        # Points that coincide (a tau-independent answer) get one label listing their taus.
        annotated = points if not points.empty else run
        spots: dict[tuple[float, float], list[str]] = {}
        kls, wrs = annotated["kl"].astype(float), annotated["win_rate_ref"].astype(float)
        for kl_value, wr_value, tau in zip(kls, wrs, annotated["tau"], strict=True):
            spots.setdefault((round(kl_value, 3), round(wr_value, 3)), []).append(fmt_tau(tau))
        for (kl_value, wr_value), labels in spots.items():
            right = kl_value > 0.6 * kl_max  # labels of points near the right edge go to their left
            ax.annotate(
                f"$\\tau$ = {', '.join(labels)}", (kl_value, wr_value), textcoords="offset points",
                xytext=(-6 if right else 6, -11 - 9 * (k % 3)), ha="right" if right else "left",
                fontsize=7, color=color,
            )
    ax.set_xlabel(r"KL($\pi$ || $\pi_{\mathrm{ref}}$) (nats)")
    ax.set_ylabel(r"win rate against $\pi_{\mathrm{ref}}$, $p^*(\pi \succ \pi_{\mathrm{ref}})$")
    ax.grid(True, alpha=0.3, linewidth=0.6)
    ax.margins(x=0.08, y=0.08)
    handles, _ = ax.get_legend_handles_labels()
    if dense and not exact_at_run.empty:
        from matplotlib.lines import Line2D

        handles.append(
            Line2D([], [], color="0.3", marker="o", markersize=4, linestyle="none",
                   label="exact at the run's $\\tau$ values")
        )
    ax.legend(handles=handles, fontsize=8, loc="lower right", frameon=True, framealpha=0.85)
    several = len(_contexts(tau_grid, metrics)) > 1
    _suptitle(fig, problem, "KL against win rate", ctx if several else None)
    return _save(fig, Path(path))


# -- all figures ----------------------------------------------------------------------------------------
def write_figures(
    out_dir: str | Path,
    policy: pd.DataFrame,
    metrics: pd.DataFrame,
    curves: pd.DataFrame | None = None,
    tau_grid: pd.DataFrame | None = None,
    problem: str = "problem",
) -> list[Path]:
    """Draw every figure that has something to show into `out_dir` (created if needed).

    One file per figure and context (suffixed with the context name when there are several). Returns the
    paths written, in the order curves, policy_vs_tau, frontier.
    """
    out = Path(out_dir)
    contexts = _contexts(policy, metrics, curves, tau_grid)
    several = len(contexts) > 1
    written: list[Path | None] = []
    if curves is not None:
        written += [
            plot_curves(curves, policy, _figure_path(out, "curves", c, several), problem, c) for c in contexts
        ]
    written += [
        plot_policy_vs_tau(
            tau_grid, policy, _figure_path(out, "policy_vs_tau", c, several), problem, c, metrics=metrics
        )
        for c in contexts
    ]
    written += [
        plot_frontier(tau_grid, metrics, _figure_path(out, "frontier", c, several), problem, c)
        for c in contexts
    ]
    return [p for p in written if p is not None]


def render_frames(
    run_dir: str | Path,
    policy: pd.DataFrame,
    metrics: pd.DataFrame,
    curves: pd.DataFrame | None = None,
    tau_grid: pd.DataFrame | None = None,
    config: Mapping[str, Any] | None = None,
) -> list[Path]:
    """`write_figures` into ``run_dir/figures/``, titled with the problem name from `config`.

    The same call `render_figures` makes after reading the CSVs back, so a run's figures and those of
    ``psipo plot`` are drawn by one code path from the same values.
    """
    run_dir = Path(run_dir)
    return write_figures(
        run_dir / "figures", policy, metrics, curves=curves, tau_grid=tau_grid,
        problem=problem_title(config, fallback=run_dir.name),
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
    keys = ("method", "solver", "context", "action", "status", "tau", "step", "prob", "prob_lo", "prob_hi",
            "mean", "lo", "hi")
    for column in keys:
        if column in frame.columns and frame[column].isna().any():
            raise InputError("RUN_DIR", str(run_dir), f"{csv.name}: empty {column} field(s) (a truncated file?)")
    return frame


def render_figures(run_dir: str | Path) -> list[Path]:
    """Redraw every figure of a run directory from its CSV files (and ``config.json`` for the title).

    Nothing else is read — not the problem file, not the solvers — so this works on a copied or archived
    directory. Figures go to ``run_dir/figures/``; returns the paths written.
    """
    frames = load_run_frames(run_dir)
    return render_frames(
        run_dir, frames["policy"], frames["metrics"], frames["curves"], frames["tau_grid"], frames["config"]
    )
