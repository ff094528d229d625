"""Terminal tables, ``--format csv --table``, intervals with one seed, and `psipo problem show`.

The frames here are built by hand (every number chosen so that its printed spelling is known), so the
tests check the layout and the spelling, not the solvers.
"""

from __future__ import annotations

import csv
import io
import json
import math
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from rich.console import Console

import psipo_cli
from psipo_cli.cli.pipeline import describe_problem
from psipo_cli.errors import InputError
from psipo_cli.metrics import t_interval
from psipo_cli.outputs.formatting import CURVE_COLUMNS, METRIC_COLUMNS, POLICY_COLUMNS
from psipo_cli.outputs.tables import print_summary, table_csv

ROOT = Path(__file__).resolve().parents[1]


def frames_with(actions: list[str], probs: dict[tuple[str, str], list[float]], win_rate: bool = True) -> object:
    """A `Frames`-like object: policy and metrics rows for (method, solver) -> probabilities at tau 0.5."""
    policy, metrics = [], []
    for (method, solver), values in probs.items():
        for action, p in zip(actions, values, strict=True):
            policy.append((method, 0.5, solver, "default", action, p, p, p))
        status = "optimal" if solver == "exact" else "converged"
        metrics.append({"method": method, "tau": 0.5, "solver": solver, "context": "default", "status": status,
                        "kl": 0.25, "win_rate_ref": 0.625 if win_rate else None, "seeds": 1,
                        "objective": "dataset", "detail": ""})
    return SimpleNamespace(policy=pd.DataFrame(policy, columns=POLICY_COLUMNS),
                           metrics=pd.DataFrame(metrics).reindex(columns=METRIC_COLUMNS))


# Probabilities and their spelling (fmt_prob's rules: 0 and 1 only when exact, one significant digit below
# 5e-4, "1-<gap>" within 5e-5 of one, four decimals below 5e-4 of one, else three decimals).
AWKWARD = {
    1 - 4e-11: "1-4e-11",
    3e-11: "3e-11",
    0.99962: "0.9996",
    0.25: "0.250",
    1e-11: "1e-11",
    0.0: "0",
}


def awkward_frames(method: str = "rlhf(rm_l2=0.1)") -> object:
    actions = ["optimal-action", "b", "c"]
    return frames_with(actions, {
        (method, "exact"): [1 - 4e-11, 3e-11, 1e-11],
        (method, "gradient"): [0.99962, 0.25, 0.0],
    })


def terminal(width: int) -> tuple[Console, io.StringIO]:
    buffer = io.StringIO()
    return Console(file=buffer, force_terminal=True, width=width, color_system=None, legacy_windows=False), buffer


def test_a_narrow_terminal_gets_the_long_layout_with_every_digit() -> None:
    console, buffer = terminal(80)
    print_summary(awkward_frames(), "p", console=console)
    text = buffer.getvalue()
    lines = text.splitlines()
    assert "…" not in text and max(len(line) for line in lines) <= 80
    words = text.split()
    for spelling in AWKWARD.values():
        assert spelling in words, spelling  # whole, not cut
    # One block for the one method × tau: a row per action, then KL, win rate and status.
    rows = [line.split() for line in lines]
    assert ["rlhf(rm_l2=0.1)", "0.5", "pi(optimal-action)", "1-4e-11", "0.9996"] in rows
    assert ["status", "optimal", "converged"] in rows


def test_a_pipe_gets_the_full_wide_table() -> None:
    buffer = io.StringIO()  # not a terminal
    print_summary(awkward_frames(), "p", console=Console(file=buffer, width=80))
    text = buffer.getvalue()
    assert "…" not in text
    rows = [line.split() for line in text.splitlines()]
    # The wide layout: one row for the method × tau, exact and gradient side by side, wider than 80.
    row = next(r for r in rows if r[:1] == ["rlhf(rm_l2=0.1)"])
    assert row == ["rlhf(rm_l2=0.1)", "0.5", "1-4e-11", "3e-11", "1e-11", "0.250", "0.625", "optimal",
                   "0.9996", "0.250", "0", "0.250", "0.625", "converged"]
    assert max(len(line) for line in text.splitlines()) > 80


def test_the_one_minus_notation_is_explained_under_the_table() -> None:
    buffer = io.StringIO()
    print_summary(awkward_frames(), "p", console=Console(file=buffer))
    assert "1-4e-11 means 1 - 4e-11 (one minus 4e-11)" in buffer.getvalue()
    plain = frames_with(["a", "b"], {("dpo", "exact"): [0.75, 0.25]})
    buffer = io.StringIO()
    print_summary(plain, "p", console=Console(file=buffer))
    assert "one minus" not in buffer.getvalue()


def test_thirty_actions_and_long_names_fit_80_columns() -> None:
    actions = [f"action-{k:02d}" for k in range(30)]
    p = np.full(30, 1 / 30)
    frames = frames_with(actions, {("a-method-with-a-long-label", "exact"): list(p),
                                   ("a-method-with-a-long-label", "gradient"): list(p)})
    console, buffer = terminal(80)
    print_summary(frames, "thirty", console=console)
    text = buffer.getvalue()
    assert "…" not in text and max(len(line) for line in text.splitlines()) <= 80
    for action in actions:
        assert f"pi({action})" in text
    # 1/30 = 0.0333... -> "0.033", twice (exact and gradient) on each action's row.
    assert text.count("0.033") == 60


def test_table_csv_prints_each_table() -> None:
    frames = psipo_cli.solve("paper-d1", ["dpo", "ipo"], [0.5, 1.0], solver="exact")
    for name, columns, rows in (("policy", POLICY_COLUMNS, 2 * 2 * 3), ("metrics", METRIC_COLUMNS, 2 * 2),
                                ("curves", CURVE_COLUMNS, 0)):
        text = table_csv(frames, name)
        table = list(csv.reader(io.StringIO(text)))
        assert table[0] == columns and len(table) - 1 == rows, name
        assert table_csv(frames, name, header=False) == "".join(text.splitlines(keepends=True)[1:])
    metrics = list(csv.DictReader(io.StringIO(table_csv(frames, "metrics"))))
    assert {r["status"] for r in metrics if r["method"] == "dpo"} == {"diverged"}
    with pytest.raises(InputError) as info:
        table_csv(frames, "nonsense")
    assert info.value.key == "--table"


def test_cli_table_flag() -> None:
    def psipo(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "psipo_cli", *args], capture_output=True, text=True, cwd=ROOT)

    result = psipo("run", "ipo", "--tau", "0.5", "--solver", "exact", "--no-save", "--format", "csv",
                   "--table", "metrics")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[0] == ",".join(METRIC_COLUMNS)
    result = psipo("run", "ipo", "--tau", "0.5", "--solver", "exact", "--no-save", "--table", "metrics")
    assert result.returncode == 2 and "--table" in result.stderr and "csv" in result.stderr
    result = psipo("run", "ipo", "--no-save", "--format", "csv", "--table", "bogus")
    assert result.returncode == 2 and "--table" in result.stderr


# -- one seed: no interval -----------------------------------------------------------------------------
def test_t_interval_of_one_sample_is_unknown_and_of_two_is_cauchy() -> None:
    mean, lo, hi = t_interval(np.array([[0.25, 0.75]]))
    assert mean.tolist() == [0.25, 0.75] and np.isnan(lo).all() and np.isnan(hi).all()
    # Two samples 0 and 1: mean 1/2, sd = sqrt(1/2); t with one degree of freedom is Cauchy, whose 0.975
    # quantile is tan(pi (0.975 - 1/2)); half width = tan(0.475 pi) sqrt(1/2) / sqrt(2) = tan(0.475 pi) / 2.
    mean, lo, hi = t_interval(np.array([0.0, 1.0]))
    half = math.tan(0.475 * math.pi) / 2
    assert mean == 0.5 and lo == pytest.approx(0.5 - half, rel=1e-12) and hi == pytest.approx(0.5 + half, rel=1e-12)


def test_one_seed_leaves_gradient_bounds_empty_and_exact_bounds_at_the_point(tmp_path: Path) -> None:
    from psipo_cli.config.settings import GradientSettings
    from psipo_cli.outputs.figures import render_figures
    from psipo_cli.outputs.rundir import RunDirectory
    from psipo_cli.outputs.tables import json_document

    frames = psipo_cli.solve("paper-d1", ["ipo"], [1.0], solver="both",
                             settings=GradientSettings(seeds=1, steps=20))
    rows = list(csv.DictReader(io.StringIO(table_csv(frames, "policy"))))
    assert {r["solver"] for r in rows} == {"exact", "gradient"}
    for row in rows:
        if row["solver"] == "gradient":
            assert row["prob_lo"] == row["prob_hi"] == "" and row["prob"] != ""
        else:
            assert row["prob_lo"] == row["prob"] == row["prob_hi"]
    doc = json.loads(json_document(frames))
    for record in doc["policy"]:
        assert list(record)[-2:] == ["prob_lo", "prob_hi"]  # the keys stay
        if record["solver"] == "gradient":
            assert record["prob_lo"] is None and record["prob_hi"] is None
    curves = list(csv.DictReader(io.StringIO(table_csv(frames, "curves"))))
    assert curves and all(r["lo"] == r["hi"] == "" for r in curves)
    # Tables and figures cope, also re-drawn from the saved CSVs.
    console, buffer = terminal(80)
    print_summary(frames, "paper-d1", console=console)
    assert "converged" in buffer.getvalue() or "running" in buffer.getvalue()
    with RunDirectory(tmp_path, "run", "one-seed", {}) as rd:
        rd.write_frames(policy=frames.policy, metrics=frames.metrics, curves=frames.curves)
    names = sorted(p.name for p in render_figures(rd.final_path))
    assert names == ["curves.png", "frontier.png", "policy_vs_tau.png"]


# -- problem show ----------------------------------------------------------------------------------------
def right_edges(line: str) -> list[int]:
    """Where each whitespace-separated token of `line` ends."""
    edges, inside = [], False
    for i, char in enumerate(line + " "):
        if char != " " and not inside:
            inside = True
        elif char == " " and inside:
            inside = False
            edges.append(i)
    return edges


def test_problem_show_aligns_matrix_columns_for_any_name_length(tmp_path: Path) -> None:
    path = tmp_path / "long.toml"
    path.write_text(
        'name = "long"\nactions = ["a", "a-rather-long-action-name", "mid"]\nrewards = [1.0, 0.0, -1.0]\n'
        'pairs = [{ winner = "a", loser = "mid", count = 12345678 }, '
        '{ winner = "a-rather-long-action-name", loser = "mid" }]\n'
    )
    text = describe_problem(psipo_cli.problem.load_problem(path))
    lines = text.splitlines()
    for title in ("preferences P[row beats column]", "win counts W[winner, loser]"):
        start = next(i for i, line in enumerate(lines) if title in line)
        header, body = lines[start + 1], lines[start + 2:start + 5]
        columns = right_edges(header)
        assert len(columns) == 3
        for row in body:
            assert right_edges(row)[1:] == columns, (header, row)  # first token is the row's name
    assert "12345678" in text  # a count in full, not 1.23457e+07
