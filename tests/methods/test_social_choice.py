"""The social-choice comparison (`psipo_cli.methods.nash.social`, `Frames.social_choice`, the report's
"Social choice" section): non-transitivity detected from the majority relation, each objective's score
recomputed here from its definition (Bradley–Terry likelihood by scipy, `P mu` by hand, the maximal lottery's
defining inequalities)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.optimize import minimize

import psipo_cli
from psipo_cli.methods.nash.social import majority_cycles, social_choice
from psipo_cli.outputs.report import build_report
from psipo_cli.problem import build_problem

# a beats b, c, d (a Condorcet winner); b > c > d > b is a cycle among the others.
WINNER_AND_CYCLE = np.array([
    [0.5, 0.6, 0.7, 0.8],
    [0.4, 0.5, 0.9, 0.2],
    [0.3, 0.1, 0.5, 0.65],
    [0.2, 0.8, 0.35, 0.5],
])
SKEWED = np.array([[0.5, 0.9, 0.3], [0.1, 0.5, 0.7], [0.7, 0.3, 0.5]])  # a > b > c > a, unequal margins


def test_majority_cycles() -> None:
    assert majority_cycles(SKEWED) == ((0, 1, 2),)
    assert majority_cycles(WINNER_AND_CYCLE) == ((1, 2, 3),)
    order = np.array([[0.5, 0.9, 0.6], [0.1, 0.5, 0.8], [0.4, 0.2, 0.5]])  # a > b > c, weakly transitive
    assert majority_cycles(order) == ()
    assert social_choice(order, np.ones(3) / 3, np.ones(3) / 3) is None


def test_scores_from_their_definitions() -> None:
    mu = np.array([0.5, 0.3, 0.2])
    found = social_choice(SKEWED, mu, np.ones(3) / 3)
    assert found is not None and found.condorcet is None
    np.testing.assert_allclose(found.borda, SKEWED @ mu, rtol=1e-15)
    # Bradley–Terry MLE on W = mu mu^T P: minimise -sum W log sigmoid(r_w - r_l), zero mean.
    W = np.outer(mu, mu) * SKEWED
    np.fill_diagonal(W, 0.0)

    def nll(r: np.ndarray) -> float:
        d = r[:, None] - r[None, :]
        return float(np.sum(W * np.logaddexp(0.0, -d)))

    r = minimize(nll, np.zeros(3), method="BFGS", options={"gtol": 1e-12}).x
    np.testing.assert_allclose(found.bradley_terry, r - r.mean(), atol=1e-7)
    # Maximal lottery: P(y ≻ p) <= 1/2 for every y (here with equality: full support).
    np.testing.assert_allclose(SKEWED @ found.lottery, 0.5, atol=1e-12)


def test_condorcet_winner_next_to_a_cycle_gets_the_lottery() -> None:
    found = social_choice(WINNER_AND_CYCLE, np.ones(4) / 4, np.ones(4) / 4)
    assert found is not None and found.cycles == ((1, 2, 3),) and found.condorcet == 0
    np.testing.assert_allclose(found.lottery, [1, 0, 0, 0], atol=1e-12)


def test_frame_and_report_only_on_non_transitive_problems() -> None:
    assert psipo_cli.solve("paper-d1", "dpo", 1.0, solver="exact").social_choice.empty
    table = {"name": "w", "actions": ["a", "b", "c", "d"], "preferences": WINNER_AND_CYCLE.tolist()}
    frames = psipo_cli.solve(build_problem(table), ["dpo", "nash"], 1.0, solver="exact")
    social = frames.social_choice
    assert social.action.tolist() == ["a", "b", "c", "d"]
    assert social.cycle.iloc[0] == "{b, c, d}" and social.condorcet.tolist() == [1, 0, 0, 0]
    assert social.lottery_rank.iloc[0] == 1
    report = build_report(frames.policy, frames.metrics, {"problem": "w"}, tables={"social_choice": social})
    assert "## Social choice" in report and "a is the Condorcet winner" in report
    plain = psipo_cli.solve("paper-d1", "dpo", 1.0, solver="exact")
    assert "## Social choice" not in build_report(plain.policy, plain.metrics, {}, tables={
        "social_choice": plain.social_choice})


@pytest.mark.parametrize("seed", range(3))
def test_random_cyclic_games_are_flagged(seed: int) -> None:
    from psipo_cli.problem.random_games import random_table

    frames = psipo_cli.solve(build_problem(random_table(7, "cyclic", seed)), "nash", 1.0, solver="exact")
    assert len(frames.social_choice) == 7 and frames.social_choice.condorcet.sum() == 0
