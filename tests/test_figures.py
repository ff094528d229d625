"""Figures: ties, the frontier's labels, many actions, the log probability axis, stale files, sweeps.

Every check reads the matplotlib objects (lines, texts, legends), not pixels. Frames are built by hand
where the expected property follows from how they are built (written next to each one).
"""

from __future__ import annotations

import subprocess
import sys
from itertools import combinations
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from matplotlib.text import Text

import psipo_cli
from psipo_cli.outputs import figures
from psipo_cli.outputs.formatting import CURVE_COLUMNS, POLICY_COLUMNS, csv_text
from psipo_cli.outputs.rundir import RunDirectory
from psipo_cli.sweep import figures as sweep_figures

ROOT = Path(__file__).resolve().parents[1]


def dash(line) -> tuple:
    """A line's dash pattern as matplotlib draws it: (offset, on/off sequence or None for solid)."""
    return line._unscaled_dash_pattern


def lines_by_label(ax) -> dict[str, object]:
    return {line.get_label(): line for line in ax.get_lines() if not line.get_label().startswith("_")}


def texts(fig) -> list[str]:
    return [t.get_text() for ax in fig.axes for t in ax.texts]


# -- ties ---------------------------------------------------------------------------------------------------
def test_tie_style_interleaves_the_dashes() -> None:
    # Two solid curves: the first stays solid, the second is dashes of DASH on, DASH off over it.
    assert figures.tie_style(0, 2, dashed=False) == "-"
    assert figures.tie_style(1, 2, dashed=False) == (0.0, (figures.DASH, figures.DASH))
    # Along the line (position x), member r's dash is on where (x + offset) mod cycle < DASH. For a group of
    # three dashed curves no two members are on at the same place, and together they leave one gap per
    # cycle (so the line still reads as dashed); for solid curves the dashed members never overlap either.
    for dashed, size in ((True, 3), (False, 3), (True, 2)):
        styles = [figures.tie_style(r, size, dashed) for r in range(size)]
        patterns = [s for s in styles if s != "-"]
        cycle = patterns[0][1][0] + patterns[0][1][1]
        x = np.linspace(0, cycle, 400, endpoint=False) + 1e-6
        on = np.array([((x + offset) % cycle) < seq[0] for offset, seq in patterns])
        assert on.sum(axis=0).max() == 1
        assert on.any(axis=0).mean() == pytest.approx(len(patterns) / (cycle / figures.DASH), abs=0.01)


def test_tied_actions_are_drawn_distinguishably_in_policy_vs_tau() -> None:
    # paper-d3 (README): a and b form one strongly connected component, so pi(a) = pi(b) for DPO and IPO.
    frames = psipo_cli.solve("paper-d3", ["dpo", "ipo"], list(np.geomspace(0.1, 2, 7)))
    grid = figures.tau_grid_frame(frames.policy, frames.metrics)
    fig = figures.draw_policy_vs_tau(grid, frames.policy, "paper-d3")
    for ax in fig.axes[:2]:
        lines = lines_by_label(ax)
        a, b, c = lines["y = a"], lines["y = b"], lines["y = c"]
        assert np.allclose(a.get_ydata(), b.get_ydata(), atol=1e-9)  # the tie is there ...
        assert dash(a) != dash(b)  # ... and drawn so that both show
        assert dash(c) == dash(a) == (0, None)  # untied curves stay solid
        assert any("tied: a = b" in t.get_text() for t in ax.texts)


def synthetic_curves(actions: list[str], means: dict[str, np.ndarray], steps: np.ndarray) -> pd.DataFrame:
    rows = [(int(s), "dpo", 1.0, "default", a, m, m - 0.01, m + 0.01)
            for a in actions for s, m in zip(steps, means[a], strict=True)]
    return pd.DataFrame(rows, columns=CURVE_COLUMNS)


def test_tied_learning_curves_get_different_styles() -> None:
    steps = np.array([0, 1, 10, 100, 1000])
    rise = np.array([1 / 3, 0.4, 0.45, 0.5, 0.5])
    # a and b follow the same path (a tie); c takes the rest, 1 - 2 rise.
    curves = synthetic_curves(["a", "b", "c"], {"a": rise, "b": rise.copy(), "c": 1 - 2 * rise}, steps)
    exact = zip("abc", (0.5, 0.5, 0.0), strict=True)
    policy = pd.DataFrame([("dpo", 1.0, "exact", "default", a, p, p, p) for a, p in exact], columns=POLICY_COLUMNS)
    fig = figures.draw_curves(curves, policy, "p")
    ax = fig.axes[0]
    lines = lines_by_label(ax)
    assert dash(lines["y = a"]) == (0, None) and dash(lines["y = b"]) != dash(lines["y = a"])
    assert dash(lines["y = c"]) == (0, None)
    # The exact lines: pi(a) = pi(b) = 1/2 dashed with interleaved offsets; pi(c) = 0 plainly dashed.
    exact = [line for line in ax.get_lines() if line.get_label().startswith("_") and len(line.get_ydata()) == 2]
    at_half = [line for line in exact if line.get_ydata()[0] == 0.5]
    assert len(at_half) == 2 and dash(at_half[0]) != dash(at_half[1])
    assert any("tied: a = b" in t for t in texts(fig))


# -- the frontier's labels ------------------------------------------------------------------------------------
def frontier_frames(methods: list[str], taus: list[float]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Exact paper-d1 results and "gradient" rows at the same points (what converged runs give)."""
    frames = psipo_cli.solve("paper-d1", methods, taus)
    grid = psipo_cli.solve("paper-d1", methods, list(np.geomspace(min(taus) / 4, max(taus) * 4, 25)))
    gradient = frames.metrics.assign(solver="gradient")
    metrics = pd.concat([frames.metrics, gradient], ignore_index=True)
    return figures.tau_grid_frame(grid.policy, grid.metrics), metrics


def assert_labels_apart(fig) -> list[str]:
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    ax = fig.axes[0]
    labels = [t for t in ax.texts if "= " in t.get_text() and "left out" not in t.get_text()]
    boxes = [Text.get_window_extent(t, renderer) for t in labels]  # the texts, without leader lines
    for (i, a), (j, b) in combinations(enumerate(boxes), 2):
        assert not a.overlaps(b), (labels[i].get_text(), labels[j].get_text())
    frame = ax.get_window_extent(renderer)
    for box in boxes:
        assert frame.x0 <= box.x0 and box.x1 <= frame.x1 and frame.y0 <= box.y0 and box.y1 <= frame.y1
    return [t.get_text() for t in labels]


def test_frontier_tau_labels_do_not_overprint() -> None:
    taus = [0.1, 0.5, 1.0, 2.0]
    grid, metrics = frontier_frames(["dpo", "ipo"], taus)
    labels = assert_labels_apart(figures.draw_frontier(grid, metrics, "paper-d1"))
    # DPO's answer is the same for every tau (diverged: pi = (1, 0, 0)), so its four points share a label;
    # IPO's four points are apart (its optimum moves with tau), one label each.
    assert "τ = 0.1, 0.5, 1, 2" in labels
    for tau in ("0.1", "0.5", "1", "2"):
        assert f"τ = {tau}" in labels


@pytest.mark.parametrize("methods", [["dpo", "rlhf", "ipo"], ["ipo", "dpo", "rlhf"]])
def test_frontier_labels_stay_apart_when_crowded(methods: list[str]) -> None:
    # Twelve close taus of IPO plus DPO and RLHF on DPO's point: more labels than room near the top right.
    taus = list(np.round(np.geomspace(0.05, 0.2, 12), 4))
    grid, metrics = frontier_frames(methods, taus)
    fig = figures.draw_frontier(grid, metrics, "paper-d1")
    labels = assert_labels_apart(fig)
    # DPO's and RLHF's answers do not depend on tau (diverged; RLHF with rm_l2 = 0 is DPO, paper Prop. 4):
    # their twelve points coincide and get one label, shared by the two methods, placed first.
    assert labels.count("τ = 0.05 ... 0.2 (12 values)") == 1
    shown = {tau for label in labels if "values" not in label for tau in label.split("= ")[1].split(", ")}
    omitted = [t for t in texts(fig) if "left out" in t]
    # Every IPO tau is either in a label or the figure says how many labels were left out.
    missing = {figures.fmt_tau(t) for t in taus} - shown
    assert not missing or omitted == [f"{len(missing)} τ label(s) left out (no room)"]


# -- many methods ---------------------------------------------------------------------------------------------
def many_methods(n: int) -> pd.DataFrame:
    """Exact rows of `n` methods on three actions at four taus, method k's policy softmax((k, 0, -k) / 10 tau)
    (any valid policies do: the checks are about layout), with labels as long as the zoo's longest."""
    rows = []
    for k in range(n):
        for tau in (0.1, 0.5, 1.0, 2.0):
            p = np.exp(np.array([k, 0.0, -k]) / (10 * tau))
            p /= p.sum()
            rows += [(f"gpo-truncated-quadratic-{k}", tau, "exact", "default", a, q, q, q)
                     for a, q in zip("abc", p, strict=True)]
    return pd.DataFrame(rows, columns=POLICY_COLUMNS)


def visible_texts(fig) -> list:
    """Every drawn, non-empty text of the figure: the suptitle, the legend, and per visible panel its title,
    axis labels, notes and the labels of the major ticks inside its view."""
    fig.canvas.draw()
    found = [*fig.texts, *(t for legend in fig.legends for t in legend.get_texts())]
    for ax in fig.axes:
        if not ax.get_visible():
            continue
        found += [ax.title, ax.xaxis.label, ax.yaxis.label, *ax.texts]
        for axis in (ax.xaxis, ax.yaxis):
            low, high = sorted(axis.get_view_interval())
            found += [tick.label1 for tick in axis.get_major_ticks() if low <= tick.get_loc() <= high]
    return [t for t in found if t.get_visible() and t.get_text().strip()]


@pytest.mark.parametrize("n", [18, 20])
def test_policy_vs_tau_stays_readable_with_a_zoo_of_methods(n: int) -> None:
    # 18 methods in five columns leave the last row two panels short (columns 3 and 4 end one row higher);
    # 20 fill four rows of five. Either way: one panel per method on shared axes, the tau axis labelled under
    # the lowest panel of each column only, the probability axis on the left column only, one legend of
    # actions, and no two texts of the figure overprinting (the old layout put every panel's tau label on
    # the title of the panel below).
    fig = figures.draw_policy_vs_tau(None, many_methods(n), "zoo")
    panels = [ax for ax in fig.axes if ax.get_visible()]
    assert len(panels) == n
    ncols = 5
    assert {ax.get_xlim() for ax in panels} == {panels[0].get_xlim()}
    assert {ax.get_ylim() for ax in panels} == {panels[0].get_ylim()}
    for m, ax in enumerate(panels):
        lowest = m + ncols >= n
        assert bool(ax.get_xlabel()) == lowest
        assert any(t.get_visible() and t.get_text() for t in ax.get_xticklabels()) == lowest
        assert bool(ax.get_ylabel()) == (m % ncols == 0)
    assert len(fig.legends) == 1
    assert [t.get_text() for t in fig.legends[0].get_texts()][:3] == ["y = a", "y = b", "y = c"]
    renderer = fig.canvas.get_renderer()
    drawn = visible_texts(fig)
    boxes = [t.get_window_extent(renderer) for t in drawn]
    for (i, a), (j, b) in combinations(enumerate(boxes), 2):
        assert not a.overlaps(b), (drawn[i].get_text(), drawn[j].get_text())
    width, height = fig.canvas.get_width_height()
    for text, box in zip(drawn, boxes, strict=True):
        assert 0 <= box.x0 and box.x1 <= width and 0 <= box.y0 and box.y1 <= height, text.get_text()


# -- many actions ---------------------------------------------------------------------------------------------
def thirty_actions() -> tuple[list[str], pd.DataFrame]:
    """30 actions whose probability decreases with the index at every tau: pi_k ∝ exp(-k / (10 tau))."""
    actions = [f"y{k:02d}" for k in range(30)]
    rows = []
    for tau in (0.1, 0.3, 1.0, 3.0):
        p = np.exp(-np.arange(30) / (10 * tau))
        p /= p.sum()
        rows += [("ipo", tau, "exact", "default", a, q, q, q) for a, q in zip(actions, p, strict=True)]
    return actions, pd.DataFrame(rows, columns=POLICY_COLUMNS)


def test_thirty_actions_get_distinct_colours_and_a_summarised_legend() -> None:
    actions, policy = thirty_actions()
    fig = figures.draw_policy_vs_tau(None, policy, "thirty")
    lines = lines_by_label(fig.axes[0])
    colours = {tuple(np.round(lines[f"y = {a}"].get_color(), 6)) for a in actions}
    assert len(colours) == 30
    legend = [t.get_text() for t in fig.legends[0].get_texts()]
    assert len(legend) == len(set(legend))
    # pi decreases with k at every tau, so the most probable actions are y00, ..., y07.
    named = [t for t in legend if t.startswith("y = ")]
    assert named == [f"y = y{k:02d}" for k in range(figures.TOP_ACTIONS)]
    assert f"{30 - figures.TOP_ACTIONS} other actions" in legend


def test_log_probability_axis_shows_small_probabilities_and_zeros_on_its_floor() -> None:
    _, policy = thirty_actions()
    policy.loc[policy["action"] == "y29", ["prob", "prob_lo", "prob_hi"]] = 0.0
    fig = figures.draw_policy_vs_tau(None, policy, "thirty", log_prob=True)
    ax = fig.axes[0]
    assert ax.get_yscale() == "log" and "log" in ax.get_ylabel()
    lines = lines_by_label(ax)
    # At tau = 0.1, pi(y28) = e^-28 / sum_k e^-k (about 4e-13 < LOG_FLOOR); y29 is exactly 0: both on the floor.
    assert lines["y = y29"].get_ydata().tolist() == [figures.LOG_FLOOR] * 4
    assert lines["y = y28"].get_ydata()[0] == figures.LOG_FLOOR
    assert ax.get_ylim()[0] < figures.LOG_FLOOR


def test_log_prob_flag_reaches_the_figures(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "psipo_cli", "run", "ipo", "--tau", "1", "--solver", "exact", "--out", str(tmp_path),
         "--format", "path", "--log-prob", "--quiet"], capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    run_dir = Path(result.stdout.strip())
    assert (run_dir / "figures" / "policy_vs_tau.png").is_file()
    result = subprocess.run([sys.executable, "-m", "psipo_cli", "plot", str(run_dir), "--log-prob"],
                            capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, result.stderr


# -- stale figures ---------------------------------------------------------------------------------------------
def test_plot_removes_figures_it_can_no_longer_draw(tmp_path: Path) -> None:
    steps = np.array([0, 10, 100])
    rise = np.array([0.5, 0.6, 0.7])
    curves = synthetic_curves(["a", "b"], {"a": rise, "b": 1 - rise}, steps)
    policy = pd.DataFrame([("dpo", 1.0, "gradient", "default", a, p, p - 0.01, p + 0.01)
                           for a, p in zip("ab", (0.7, 0.3), strict=True)], columns=POLICY_COLUMNS)
    metrics = pd.DataFrame({"method": ["dpo"], "tau": [1.0], "solver": ["gradient"], "context": ["default"],
                            "status": ["running"], "kl": [0.08], "win_rate_ref": [None]})
    with RunDirectory(tmp_path, "run", "stale", {}) as rd:
        rd.write_frames(policy=policy, metrics=metrics, curves=curves)
    run = rd.final_path
    assert sorted(p.name for p in figures.render_figures(run)) == ["curves.png", "policy_vs_tau.png"]
    (run / "curves.csv").write_text(csv_text(curves.iloc[0:0], CURVE_COLUMNS))  # the curves are gone
    assert [p.name for p in figures.render_figures(run)] == ["policy_vs_tau.png"]
    assert sorted(p.name for p in (run / "figures").iterdir()) == ["policy_vs_tau.png"]


# -- sweeps ------------------------------------------------------------------------------------------------------
def test_context_mean_uses_the_context_weights() -> None:
    rows = pd.DataFrame({
        "problem": ["p"] * 4, "n": [np.nan] * 4, "method": ["dpo"] * 4, "tau": [1.0, 1.0, 2.0, 2.0],
        "solver": ["exact"] * 4, "context": ["x1", "x2", "x1", "x2"], "context_weight": [0.75, 0.25, 0.75, 0.25],
        "kl": [1.0, 3.0, 2.0, np.nan],
    })
    out = sweep_figures.context_mean(rows, ["problem", "n", "method", "tau", "solver"], ["kl"])
    # tau 1: 0.75 * 1 + 0.25 * 3 = 1.5 (the unweighted mean would be 2); tau 2: only x1 is known -> 2.
    assert out["kl"].tolist() == [1.5, 2.0]


def sweep_results(taus: list[float]) -> pd.DataFrame:
    """A results.csv by hand: one problem, two dataset sizes, two methods, both solvers, one action row."""
    from psipo_cli.sweep.compute import RESULT_COLUMNS

    rows = []
    for n in (10, 100):
        for method in ("dpo", "ipo"):
            for tau in taus:
                for solver in ("exact", "gradient"):
                    kl = 1 / (tau * n)
                    rows.append({"problem": "bt", "n": n, "method": method, "tau": tau, "solver": solver,
                                 "context": "default", "action": "a", "prob": 0.5, "status": "optimal", "kl": kl,
                                 "entropy": 1.0, "win_rate_ref": 0.6, "tv_to_optimum": 0.1, "seeds": 2,
                                 "context_weight": 1.0})
    return pd.DataFrame(rows).reindex(columns=RESULT_COLUMNS)


def test_sweep_figures_have_readable_labels_and_every_tau() -> None:
    from psipo_cli.outputs.figures import SUPTITLE_SIZE, TITLE_SIZE

    taus = list(np.geomspace(0.05, 5, 9))
    cells = sweep_figures.context_mean(sweep_results(taus), ["problem", "n", "method", "tau", "solver"],
                                       ["kl", "win_rate_ref", "tv_to_optimum"])
    metrics = ["kl", "win_rate_ref", "tv_to_optimum"]
    fig = sweep_figures.draw_vs_n(cells, metrics, ("bt", "metrics against dataset size"))
    panels = [ax for ax in fig.axes if ax.get_xscale() == "log"]
    for ax in panels:
        assert ax.get_ylabel() in sweep_figures.METRIC_LABELS.values()
        assert ax.title.get_fontsize() == TITLE_SIZE
        # Every swept tau, for both solvers, in its own colour.
        assert len(ax.get_lines()) == 2 * len(taus)
        assert len({tuple(line.get_color()) for line in ax.get_lines()}) == len(taus)
    labels = " ".join(ax.get_ylabel() for ax in fig.axes)
    assert "win_rate_ref" not in labels and "tv_to_optimum" not in labels
    assert any("every swept value" in ax.get_ylabel() for ax in fig.axes)  # the colour bar
    assert fig._suptitle.get_fontsize() == SUPTITLE_SIZE
    fig = sweep_figures.draw_vs_tau(cells, metrics, ("bt", "metrics against tau"))
    legend = [t.get_text() for t in fig.legends[0].get_texts()]
    assert legend == ["dpo", "ipo", "exact", "gradient (seed mean)"]


def test_plot_re_renders_a_sweep_directory_and_drops_stale_figures(tmp_path: Path) -> None:
    sweep = tmp_path / "sweep"
    (sweep / "figures").mkdir(parents=True)
    (sweep / "results.csv").write_text(csv_text(sweep_results([0.1, 1.0])))
    (sweep / "figures" / "gone-vs-tau.png").write_bytes(b"stale")
    result = subprocess.run([sys.executable, "-m", "psipo_cli", "plot", str(sweep)], capture_output=True,
                            text=True, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in (sweep / "figures").iterdir()) == ["bt-vs-n.png", "bt-vs-tau.png"]


def test_log_tick_labels_are_plain_powers_of_ten() -> None:
    # 10^2, 10^-1 and 10^0 in Unicode superscripts; 0 on the symlog step axis; no label between powers.
    assert [figures.power_label(v) for v in (100.0, 0.1, 1.0, 0.0, 20.0)] == ["10²", "10⁻¹", "10⁰", "0", ""]


def _pid_file(directory: Path, name: str) -> Path:
    """A stand-in figure task: writes the id of the process that ran it, returns the path."""
    import os

    path = directory / name
    path.write_text(str(os.getpid()))
    return path


@pytest.mark.skipif(not hasattr(__import__("os"), "fork") or (__import__("os").cpu_count() or 1) < 2,
                    reason="drawn serially without fork or a second CPU")
def test_figures_are_drawn_by_two_processes_in_task_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Three tasks (as curves, policy_vs_tau, frontier): the first (ceil(3 / 3) = 1) is drawn by a forked
    child, the other two here; the paths come back in task order, a task returning None included. (Other
    tests may leave threads behind, which makes `draw_in_parallel` serial: the count is set to 1 here.)"""
    import functools
    import os

    monkeypatch.setattr("threading.active_count", lambda: 1)

    tasks = [functools.partial(_pid_file, tmp_path, "0.png"), lambda: None,
             functools.partial(_pid_file, tmp_path, "2.png")]
    assert figures.draw_in_parallel(tasks) == [tmp_path / "0.png", None, tmp_path / "2.png"]
    assert int((tmp_path / "0.png").read_text()) != os.getpid()
    assert int((tmp_path / "2.png").read_text()) == os.getpid()


def test_a_failing_child_task_is_drawn_again_here_and_raises_here(tmp_path: Path) -> None:
    """The child's failure is not lost: its tasks run again in this process, whose exception surfaces."""
    calls: list[int] = []

    def broken() -> Path:
        calls.append(1)  # in the child this list is a copy: only this process' call is seen here
        raise RuntimeError("cannot draw")

    import functools

    with pytest.raises(RuntimeError, match="cannot draw"):
        figures.draw_in_parallel([broken, functools.partial(_pid_file, tmp_path, "ok.png")])
    assert calls == [1]


def test_parallel_figures_are_the_bytes_of_serial_ones(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A run directory's figures drawn in two processes equal, byte for byte, those drawn serially
    (one CPU reported: `draw_in_parallel` then runs every task here)."""
    import shutil

    run = tmp_path / "run"
    subprocess.run([sys.executable, "-m", "psipo_cli", "compare", "--tau", "0.5", "--tau", "2", "--steps", "200",
                    "--seeds", "2", "--out", str(tmp_path / "out"), "--name", "x", "-q", "-f", "path"],
                   cwd=ROOT, check=True, capture_output=True)
    shutil.copytree(next((tmp_path / "out").iterdir()), run)
    monkeypatch.setattr("threading.active_count", lambda: 1)
    monkeypatch.setattr("os.cpu_count", lambda: 2)
    parallel = {p.name: p.read_bytes() for p in figures.render_figures(run)}
    monkeypatch.setattr("os.cpu_count", lambda: 1)
    serial = {p.name: p.read_bytes() for p in figures.render_figures(run)}
    # paper-d1 has a preference model: its gradient runs get the duality-gap curves too.
    assert sorted(parallel) == ["curves.png", "frontier.png", "gap.png", "policy_vs_tau.png"]
    assert parallel == serial
