"""What psipo says about its numbers: the context-weighted summary, implied rewards, per-seed results,
the report's explanation of a gap between gradient and exact, and its caveats (non-Bradley–Terry
preferences, actions outside supp mu).

Every expected value is derived here: closed forms of IPO and DPO on two actions, the population ΨPO
optimum (paper Eq. 7), a Bradley–Terry MLE by scipy on the loss written out, and per-seed distances
recomputed from the runs themselves.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import psipo_cli
from psipo_cli.config.settings import GradientSettings
from psipo_cli.outputs import build_report, csv_text, read_frame
from psipo_cli.outputs.formatting import RUN_COLUMNS, fmt_num
from psipo_cli.outputs.report import gap_cause, gradient_notes, rewrite_report
from psipo_cli.outputs.tables import SolverCell, comparison_rows, summary_records
from psipo_cli.solvers.runs import RunResult


def sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


def kl(p: np.ndarray, q: np.ndarray) -> float:
    mass = p > 0
    return float(np.sum(p[mass] * np.log(p[mass] / q[mass])))


def entropy(p: np.ndarray) -> float:
    mass = p > 0
    return float(-np.sum(p[mass] * np.log(p[mass])))


TWO_CONTEXTS = """
name = "two-contexts"
actions = ["a", "b"]

[[contexts]]
name = "x1"
weight = 3
rewards = [1.0, 0.0]
pairs = [{ winner = "a", loser = "b" }]

[[contexts]]
name = "x2"
weight = 1
{model}
pairs = [{ winner = "a", loser = "b" }, { winner = "b", loser = "a" }]
"""


def two_contexts(tmp_path: Path, model: str = "rewards = [0.0, 0.0]") -> Path:
    path = tmp_path / "two.toml"
    path.write_text(TWO_CONTEXTS.replace("{model}", model), encoding="utf-8")
    return path


# -- item 8: the context-weighted summary -----------------------------------------------------------------
def test_summary_is_the_weighted_mean_over_contexts(tmp_path: Path) -> None:
    frames = psipo_cli.solve(two_contexts(tmp_path), ["ipo", "dpo"], [1.0])
    summary = frames.summary.set_index("method")
    # Weights 3 and 1, normalised: rho = (3/4, 1/4).
    rho1, rho2 = 0.75, 0.25
    uniform = np.array([0.5, 0.5])
    # IPO at tau = 1. x1 (a > b once): the loss (h - 1/2)^2 is zero at h = delta_a - delta_b = 1/2, so
    # pi(a) = sigmoid(1/2). x2 (a > b and b > a): the mean of (h - 1/2)^2 and (-h - 1/2)^2 is least at h = 0,
    # where it is 1/4; pi is uniform.
    pi1 = np.array([sigmoid(0.5), 1 - sigmoid(0.5)])
    P1 = np.array([[0.5, sigmoid(1.0)], [sigmoid(-1.0), 0.5]])
    # Population IPO optimum of x1 (paper Eq. 7 with mu uniform): g(y) = sum_y' mu(y') P(y, y'),
    # pi* ∝ exp(g / tau); in x2 P = 1/2 everywhere and pi* is uniform.
    g = P1 @ uniform
    star1 = np.exp(g) / np.exp(g).sum()
    ipo = summary.loc["ipo"]
    assert ipo["status"] == "optimal" and ipo["solver"] == "exact" and "context" not in summary.columns
    assert ipo["kl"] == pytest.approx(rho1 * kl(pi1, uniform), abs=1e-12)
    assert ipo["entropy"] == pytest.approx(rho1 * entropy(pi1) + rho2 * math.log(2), abs=1e-12)
    assert ipo["loss"] == pytest.approx(rho2 * 0.25, abs=1e-12)
    assert ipo["win_rate_ref"] == pytest.approx(rho1 * float(pi1 @ P1 @ uniform) + rho2 * 0.5, abs=1e-12)
    assert ipo["reward"] == pytest.approx(rho1 * pi1[0] + rho2 * 0.0, abs=1e-12)
    assert ipo["tv_to_optimum"] == pytest.approx(rho1 * abs(pi1[0] - star1[0]), abs=1e-9)
    # DPO: x1 is separable (pi -> (1, 0), diverged); x2 has its minimiser at h = 0 (optimal, uniform).
    dpo = summary.loc["dpo"]
    assert dpo["status"] == "mixed"
    assert "statuses over contexts: diverged: 1 (x1), optimal: 1 (x2)" in dpo["detail"]
    assert dpo["kl"] == pytest.approx(rho1 * math.log(2), abs=1e-9)
    assert dpo["entropy"] == pytest.approx(rho2 * math.log(2), abs=1e-9)


def test_a_metric_empty_in_one_context_stays_empty(tmp_path: Path) -> None:
    # x2 has no preference model: its win rate is unknown, so the weighted win rate is too.
    frames = psipo_cli.solve(two_contexts(tmp_path, model=""), "ipo", [1.0])
    row = frames.summary.iloc[0]
    assert pd.isna(row["win_rate_ref"]) and pd.isna(row["reward"])
    assert "win_rate_ref is empty in context x2" in row["detail"]
    pi1 = np.array([sigmoid(0.5), 1 - sigmoid(0.5)])
    assert row["kl"] == pytest.approx(0.75 * kl(pi1, np.array([0.5, 0.5])), abs=1e-12)


def test_summary_in_json_and_in_the_run_directory(tmp_path: Path) -> None:
    import subprocess
    import sys

    problem = two_contexts(tmp_path)
    result = subprocess.run(
        [sys.executable, "-m", "psipo_cli", "compare", "--problem", str(problem), "--methods", "ipo,dpo",
         "--tau", "1", "--solver", "exact", "--out", str(tmp_path / "out"), "--no-plots", "--format", "json"],
        capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    metric_keys = list(doc["metrics"][0])
    assert [list(rec) for rec in doc["summary"]] == [[k for k in metric_keys if k != "context"]] * 2
    ipo = next(rec for rec in doc["summary"] if rec["method"] == "ipo")
    assert ipo["loss"] == pytest.approx(0.25 * 0.25, abs=1e-12)
    run_dir = Path(doc["run_dir"])
    on_disk = read_frame(run_dir / "summary.csv")
    assert list(on_disk["method"]) == ["ipo", "dpo"]
    assert on_disk["loss"].iloc[0] == pytest.approx(0.0625, abs=1e-12)
    report = (run_dir / "report.md").read_text()
    assert "## Weighted over contexts" in report and "| ipo | 1 | exact |" in report
    # The report is rebuilt from the run directory alone (psipo plot's route), identically.
    before = report
    rewrite_report(run_dir)
    assert (run_dir / "report.md").read_text() == before


def test_summary_records_drop_only_the_context(tmp_path: Path) -> None:
    frames = psipo_cli.solve(two_contexts(tmp_path), "ipo", [0.5, 1.0])
    records = summary_records(frames)
    assert len(records) == 2
    assert list(records[0]) == [c for c in frames.metrics.columns if c != "context"]
    json.dumps(records, allow_nan=False)


# -- item 9: implied rewards and per-seed results ---------------------------------------------------------
def run(label: str, solver: str, seed: int, reward: np.ndarray | None, tau: float = 1.0) -> RunResult:
    return RunResult(label, label, tau, solver, seed, 0, np.array([0.5, 0.5]), "optimal", 0.0, reward=reward)


def test_rewards_frame_holds_exact_rewards_only() -> None:
    from psipo_cli.api import rewards_frame
    from psipo_cli.problem import get_problem

    problem = get_problem("paper-two-actions")
    runs = [
        run("ipo", "exact", 0, np.array([1.0, -1.0])),
        run("ipo", "exact", 1, np.array([3.0, -2.0])),  # two datasets: the seed mean, (2, -1.5)
        run("dpo", "exact", 0, None),  # diverged: infinite, left empty
        run("ipo", "gradient", 0, np.array([9.0, 9.0])),  # gradient rows are left out (gauge not fixed)
    ]
    frame = rewards_frame(problem, runs)
    assert list(frame.columns) == ["method", "tau", "solver", "context", "action", "reward"]
    assert set(frame["solver"]) == {"exact"}
    ipo = frame[frame["method"] == "ipo"]
    assert ipo["reward"].tolist() == [2.0, -1.5] and ipo["action"].tolist() == list(problem.actions)
    assert frame[frame["method"] == "dpo"]["reward"].isna().all()
    lines = csv_text(frame).splitlines()
    assert lines[3:] == ["dpo,1.0,exact,default,y1,", "dpo,1.0,exact,default,y2,"]


def test_per_seed_results_are_each_runs_final_policy() -> None:
    settings = GradientSettings(steps=300, seeds=3)
    frames = psipo_cli.solve("paper-d1", ["ipo", "dpo"], [1.0], solver="both", settings=settings)
    table = frames.per_seed
    assert list(table.columns) == RUN_COLUMNS
    assert len(table) == len(frames.runs) * 3
    for r in frames.runs:
        rows = table[(table["method"] == r.label) & (table["solver"] == r.solver) & (table["seed"] == r.seed)]
        assert rows["prob"].tolist() == r.policy.tolist()
        assert set(rows["status"]) == {r.status} and rows["action"].tolist() == ["a", "b", "c"]
    # The policy table's gradient row is the mean of the seeds' rows.
    seeds = table[(table["solver"] == "gradient") & (table["method"] == "ipo")]
    mean = seeds.groupby("action", sort=False)["prob"].mean().to_numpy()
    policy = frames.policy[(frames.policy["solver"] == "gradient") & (frames.policy["method"] == "ipo")]
    np.testing.assert_allclose(policy["prob"].to_numpy(), mean, rtol=0, atol=1e-15)


def test_new_tables_are_in_the_run_directory_and_byte_identical(tmp_path: Path) -> None:
    import subprocess
    import sys

    dirs = []
    for i in range(2):
        result = subprocess.run(
            [sys.executable, "-m", "psipo_cli", "run", "ipo", "--steps", "200", "--seeds", "2", "--out",
             str(tmp_path / str(i)), "--no-plots", "--format", "path"],
            capture_output=True, text=True, timeout=300,
        )
        assert result.returncode == 0, result.stderr
        dirs.append(Path(result.stdout.strip()))
    for name in ("summary.csv", "rewards.csv", "runs.csv", "logit_gap.csv"):
        assert (dirs[0] / name).read_bytes() == (dirs[1] / name).read_bytes(), name
    runs = read_frame(dirs[0] / "runs.csv")
    assert len(runs) == (2 + 1) * 4 * 3  # (2 gradient seeds + 1 exact) x 4 default taus x 3 actions


# -- item 9: DPO against ΨPO-logit off Bradley–Terry --------------------------------------------------------
NON_BT = """
name = "non-bt"
actions = ["a", "b", "c"]
preferences = [[0.5, 0.9, 0.2], [0.1, 0.5, 0.7], [0.8, 0.3, 0.5]]
"""


def test_logit_gap_is_the_distance_between_dpo_and_psipo_logit(tmp_path: Path) -> None:
    from scipy.optimize import minimize

    path = tmp_path / "non-bt.toml"
    path.write_text(NON_BT, encoding="utf-8")
    P = np.array([[0.5, 0.9, 0.2], [0.1, 0.5, 0.7], [0.8, 0.3, 0.5]])
    mu = np.full(3, 1 / 3)
    frames = psipo_cli.solve(path, ["dpo", "ipo"], [0.5, 2.0])
    gap = frames.logit_gap
    assert list(gap["context"]) == ["default", "default"] and set(gap["model"]) == {"preferences"}
    # Population DPO (paper Eq. 5 on W = mu mu^T P): delta = r / tau with r the Bradley–Terry MLE on W
    # (Prop. 4), found here by BFGS on the loss written out.
    W = np.outer(mu, mu) * P
    np.fill_diagonal(W, 0.0)

    def bt_loss(r: np.ndarray) -> float:
        d = r[:, None] - r[None, :]
        return float(np.sum(W * np.logaddexp(0.0, -d)))

    r = minimize(bt_loss, np.zeros(3), method="BFGS", options={"gtol": 1e-12}).x
    g = np.log(P / (1 - P)) @ mu  # ΨPO-logit: g(y) = sum_y' mu(y') logit P(y, y')
    for tau, tv in zip(gap["tau"], gap["tv"], strict=True):
        dpo = np.exp(r / tau) / np.exp(r / tau).sum()
        logit = np.exp(g / tau) / np.exp(g / tau).sum()
        assert tv == pytest.approx(0.5 * np.abs(dpo - logit).sum(), abs=1e-7)
        assert tv > 0.01  # off Bradley–Terry, Prop. 1 does not hold
    report = build_report(frames.policy, frames.metrics, {"problem": "non-bt"}, [], tables={"logit_gap": gap})
    why = report.split("## Why\n\n", 1)[1].split("\n## ", 1)[0]
    assert "not Bradley–Terry" in why and "Prop. 1" in why
    assert f"{fmt_num(gap['tv'].iloc[0])} at tau = 0.5" in why
    # Bradley–Terry contexts: Prop. 1 holds, nothing to compare; the deterministic order: both put all
    # mass on the top action.
    bt = tmp_path / "bt.toml"
    bt.write_text('name = "bt"\nactions = ["a", "b"]\nrewards = [1.0, 0.0]\n', encoding="utf-8")
    assert psipo_cli.solve(bt, "dpo", [1.0]).logit_gap.empty
    order = psipo_cli.solve("paper-d1", "dpo", [1.0]).logit_gap
    assert order["model"].tolist() == ["order"] and order["tv"].tolist() == [0.0]
    assert psipo_cli.solve(path, "ipo", [1.0]).logit_gap.empty  # neither DPO, RLHF nor ΨPO-logit ran


# -- item 11: actions outside supp mu ------------------------------------------------------------------------
def test_report_flags_actions_outside_supp_mu(tmp_path: Path) -> None:
    from psipo_cli.problem import get_problem, problem_table

    path = tmp_path / "mu.toml"
    path.write_text(
        'name = "mu"\nactions = ["a", "b", "c"]\nrewards = [1.0, 0.0, -1.0]\nmu = [0.5, 0.5, 0.0]\n',
        encoding="utf-8",
    )
    problem = get_problem(path)
    frames = psipo_cli.solve(problem, ["ipo"], [1.0])
    config = {"methods": ["ipo"], "problem_resolved": problem_table(problem)}
    report = build_report(frames.policy, frames.metrics, config, [])
    assert "`c` lies outside supp mu" in report and "ΨPO-identity" in report and "differs there" in report
    assert "`a`" not in report.split("outside supp mu", 1)[0].rsplit("\n", 1)[-1]
    full = get_problem("paper-two-actions")
    frames = psipo_cli.solve(full, ["ipo"], [1.0])
    report = build_report(frames.policy, frames.metrics, {"methods": ["ipo"], "problem_resolved": problem_table(full)})
    assert "outside supp mu" not in report


# -- item 3: why the gradient run and the exact answer differ --------------------------------------------------
BT_POPULATION = 'name = "bt-pop"\nactions = ["a", "b", "c", "d"]\nrewards = [1.0, 0.5, 0.0, -0.5]\n'


def gap_section(frames: psipo_cli.api.Frames, config: dict) -> list[str]:
    return gradient_notes(comparison_rows(frames.policy, frames.metrics), metrics=frames.metrics, config=config)


def test_minibatch_noise_on_a_unique_optimum_is_named_as_such(tmp_path: Path) -> None:
    path = tmp_path / "bt.toml"
    path.write_text(BT_POPULATION, encoding="utf-8")
    settings = GradientSettings(steps=6000, seeds=5, batch_size=9)
    frames = psipo_cli.solve(path, "ipo", [0.1], solver="both", settings=settings)
    exact = next(r for r in frames.runs if r.solver == "exact")
    assert exact.status == "optimal"  # population IPO: a unique optimum
    gradient = [r for r in frames.runs if r.solver == "gradient"]
    assert {r.status for r in gradient} == {"converged"}
    # Independently: the gap of the seed mean, and each seed's own distance to the optimum.
    mean = np.mean([r.policy for r in gradient], axis=0)
    assert 0.5 * np.abs(mean - exact.policy).sum() > 0.01  # otherwise there is no note to check
    per_seed = np.mean([0.5 * np.abs(r.policy - exact.policy).sum() for r in gradient])
    notes = gap_section(frames, {"batch_size": 9})
    assert len(notes) == 1
    note = notes[0]
    assert "minibatch noise floor" in note and "unique (status optimal)" in note
    assert f"lies {fmt_num(per_seed)} in total variation" in note
    assert "--batch-size 0" in note and "--average" in note and "--lr-schedule" in note
    for wrong in ("optimiser effect", "do not pin down", "Adam's split", "still moving"):
        assert wrong not in note
    # Full batch: the same problem lands on the optimum, and there is no gap to explain.
    settings = GradientSettings(steps=6000, seeds=2, batch_size=0)
    full = psipo_cli.solve(path, "ipo", [0.1], solver="both", settings=settings)
    notes = gap_section(full, {"batch_size": 0})
    assert notes == ["- Gradient and exact agree to within 0.010 in total variation for every method and tau."]


def test_dpo_on_d1_is_still_moving_towards_an_unattained_infimum() -> None:
    settings = GradientSettings(steps=2000, seeds=2)
    frames = psipo_cli.solve("paper-d1", "dpo", [1.0, 2.0], solver="both", settings=settings)
    notes = gap_section(frames, {"batch_size": 9})
    assert len(notes) == 1
    assert "still moving (status running)" in notes[0] and "unattained infimum" in notes[0]
    assert "noise floor" not in notes[0]
    assert "do not pin down" not in notes[0]  # the limit (1, 0, 0) is unique: no tie


def test_a_tie_between_winning_components_is_named(tmp_path: Path) -> None:
    path = tmp_path / "tie.toml"
    path.write_text(
        'name = "tie"\nactions = ["a", "b", "c", "d"]\n'
        'pairs = [{ winner = "a", loser = "b" }, { winner = "c", loser = "d", count = 2 }]\n',
        encoding="utf-8",
    )
    frames = psipo_cli.solve(path, "dpo", [0.5], solver="both", settings=GradientSettings(steps=2000, seeds=2))
    notes = gap_section(frames, {"batch_size": 9})
    assert len(notes) == 1 and "do not pin down the split between tied winning components" in notes[0]


def cell(status: str, detail: str = "") -> SolverCell:
    return SolverCell([0.5, 0.5], [0.5, 0.5], [0.5, 0.5], status=status, detail=detail)


@pytest.mark.parametrize(
    ("gradient", "exact", "batch", "key"),
    [
        ("running", "optimal", 9, "running"),
        ("stalled", "optimal", 9, "stalled"),
        ("converged", "optimal", 9, "noise"),
        ("converged", "optimal", 0, "unexplained"),
        ("converged", "diverged", 9, "set"),
        ("converged", "limit", 9, "limit"),
        ("mixed", "optimal", 9, "mixed"),
    ],
)
def test_gap_causes(gradient: str, exact: str, batch: int, key: str) -> None:
    found, why = gap_cause(cell(gradient, "why it is so"), cell(exact), batch, {"noise": 0.004})
    assert found == key
    if exact == "optimal":  # a unique optimum is never "a set or a limit the data do not pin down"
        assert "pin down" not in why and "optimiser's" not in why
    if key == "noise":
        assert "0.004" in why  # the run's own measured fluctuation
    if key in ("running", "stalled"):
        assert "why it is so" in why  # the gradient detail is quoted


def test_report_quotes_exact_details_and_implied_rewards() -> None:
    frames = psipo_cli.solve("paper-d1", ["dpo", "ipo"], [0.5, 1.0])
    rewards = pd.DataFrame(
        {
            "method": ["ipo"] * 6, "tau": [0.5] * 3 + [1.0] * 3, "solver": ["exact"] * 6,
            "context": ["default"] * 6, "action": ["a", "b", "c"] * 2, "reward": [1 / 3, 0.0, -1 / 3] * 2,
        }
    )
    report = build_report(frames.policy, frames.metrics, {"problem": "paper-d1"}, [], tables={"rewards": rewards})
    why = report.split("## Why\n\n", 1)[1].split("\n## ", 1)[0]
    detail = frames.metrics[frames.metrics["method"] == "dpo"]["detail"].iloc[0]
    assert f"- DPO (diverged, tau = 0.5 and 1): {detail}." in why
    assert "| ipo | every tau | 0.333 | 0 | -0.333 |" in why


TWO_COMPONENTS = """
name = "two-components"
actions = ["a", "b", "c", "d", "e", "f"]
pairs = [{ winner = "a", loser = "b", count = 5 }, { winner = "b", loser = "c" }, { winner = "a", loser = "c" },
         { winner = "d", loser = "e" }, { winner = "f", loser = "e", count = 3 }]
"""


def test_a_choice_the_data_leave_is_named_only_under_adam(tmp_path: Path) -> None:
    # {a, b, c} and {d, e, f} are never compared with each other: IPO's loss fixes log(pi / pi_ref) only up
    # to one constant per group, so moving mass between the groups keeps it optimal. The exact answer is
    # the zero-sum gauge; SGD keeps the sums (each pair's gradient is +g on the winner, -g on the loser),
    # Adam rescales each coordinate and does not.
    path = tmp_path / "two.toml"
    path.write_text(TWO_COMPONENTS, encoding="utf-8")
    notes = {}
    for optimizer in ("adam", "sgd"):
        settings = GradientSettings(steps=6000, seeds=2, batch_size=0, optimizer=optimizer)
        frames = psipo_cli.solve(path, "ipo", [0.1], solver="both", settings=settings)
        exact = frames.metrics[frames.metrics["solver"] == "exact"].iloc[0]
        assert exact["status"] == "optimal"
        assert "leave 2 connected components on supp pi_ref" in exact["detail"]
        notes[optimizer] = gap_section(frames, {"batch_size": 0, "optimizer": optimizer})
    assert len(notes["adam"]) == 1 and "the data leave a choice" in notes["adam"][0]
    assert "noise floor" not in notes["adam"][0]
    assert notes["sgd"] == ["- Gradient and exact agree to within 0.010 in total variation for every method and tau."]
    # One component (D1): no such note; RLHF with a ridge is unique whatever the graph.
    assert "connected components" not in psipo_cli.solve("paper-d1", "ipo", [1.0]).metrics["detail"].iloc[0]
    ridge = psipo_cli.solve(path, "rlhf", [1.0], rm_l2=0.1).metrics["detail"].iloc[0]
    assert "connected components" not in ridge
