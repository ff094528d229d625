"""A finished sweep writes `summary.csv` (each cell's metrics weighted over its contexts) and `report.md`.

The weighted metrics are checked against `psipo_cli.solve(...).summary`, which aggregates a run's contexts
by another route (`psipo_cli.metrics.context_summary` on the runs, not the sweep's `results.csv`)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd

import psipo_cli

PROBLEM = """
[[problems]]
name = "two-prompts"
actions = ["a", "b", "c"]
order = ["a", "b", "c"]
[[problems.contexts]]
name = "x1"
weight = 3.0
pairs = [{ winner = "a", loser = "b", count = 2 }, { winner = "b", loser = "a" }, { winner = "b", loser = "c" }]
[[problems.contexts]]
name = "x2"
weight = 1.0
pairs = [{ winner = "c", loser = "a" }, { winner = "a", loser = "c" }, { winner = "b", loser = "c", count = 3 }]
"""


def test_sweep_writes_a_weighted_summary_and_a_report(tmp_path: Path) -> None:
    grid = tmp_path / "grid.toml"
    grid.write_text('name = "weights"\nmethods = ["ipo", "dpo"]\ntau = [0.5, 2.0]\nsolver = "exact"\n' + PROBLEM)
    done = subprocess.run(
        [sys.executable, "-m", "psipo_cli", "sweep", str(grid), "--out", str(tmp_path / "out"), "--quiet",
         "--format", "path"], capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, done.stderr
    sweep = Path(done.stdout.strip())
    summary = pd.read_csv(sweep / "summary.csv")
    assert len(summary) == 4  # 2 methods × 2 tau, one solver, one row per cell (not per context or action)

    import tomllib

    table = tomllib.loads(PROBLEM)["problems"][0]
    expected = psipo_cli.solve(table, ["ipo", "dpo"], [0.5, 2.0]).summary
    merged = summary.merge(expected, on=["method", "tau", "solver"], suffixes=("", "_run"))
    assert len(merged) == 4
    for name in ("kl", "entropy", "loss", "win_rate_ref", "tv_to_optimum"):
        np.testing.assert_allclose(merged[name], merged[f"{name}_run"], rtol=1e-12, atol=1e-15)
    assert (merged["status"] == merged["status_run"]).all()

    report = (sweep / "report.md").read_text()
    assert report.startswith("# psipo sweep: weights")
    for _, row in summary.groupby(["method", "solver", "status"]).size().reset_index().iterrows():
        assert f"| {row['method']} | {row['solver']} | {row['status']} | {row[0]} |" in report
