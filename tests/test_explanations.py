"""What the exact solvers say about their answers: the implied reward, the
components of a diverged problem, the actions the loss does not see, and closed forms.

Every expected number is derived by hand in the test (derivations in the docstrings and comments) or, for
the ridge reward model, by scipy.optimize on the loss written out here from its definition.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.optimize import minimize
from support import exact_solution

import psipo_cli
from psipo_cli.methods import METHODS
from psipo_cli.methods.population import psipo
from psipo_cli.problem import build_problem, get_problem
from psipo_cli.solvers.exact import solve_exact
from psipo_cli.solvers.runs import method_spec


def softmax(z) -> np.ndarray:
    e = np.exp(np.asarray(z, dtype=float) - np.max(z))
    return e / e.sum()


def named_problem(actions: str, pairs: list[tuple[str, str, float]], **extra) -> object:
    return build_problem(
        {
            "actions": list(actions),
            "pairs": [{"winner": w, "loser": l_, "count": c} for w, l_, c in pairs],
            **extra,
        }
    )


def exact_runs(problem, method: str, taus: list[float], objective: str = "dataset", **options):
    return solve_exact(problem, [method_spec(method, **options)], taus, objective)


# ============================================================================== item 11: outside supp mu

# a, b, c with pi_ref uniform, mu = (1/2, 1/2, 0), P[a, b] = 0.8, P[c, a] = 0.3, P[c, b] = 0.6.
OFF_SUPPORT = {
    "actions": ["a", "b", "c"],
    "pi_ref": [1 / 3, 1 / 3, 1 / 3],
    "mu": [0.5, 0.5, 0.0],
    "preferences": [[0.5, 0.8, 0.7], [0.2, 0.5, 0.4], [0.3, 0.6, 0.5]],
}
TAU = 0.5


def test_population_ipo_outside_supp_mu_stays_at_pi_ref_and_says_so() -> None:
    """Expected counts `W = mu mu^T P` off the diagonal: only a and b are compared,
    W[a, b] = 0.25 * 0.8 = 0.2, W[b, a] = 0.25 * 0.2 = 0.05; c (mu = 0) is in no comparison.

    IPO (Eq. 17) on one pair: 0.2 (h - 1/(2 tau)) + 0.05 (h + 1/(2 tau)) = 0, h = 0.15 / (0.25 * 2 tau) = 0.6
    at tau = 1/2. Canonical gauge: delta = (0.3, -0.3, 0), c at its pi_ref offset.
    ΨPO-identity (Eq. 7): g(y) = sum mu(y') P[y, y'] = (0.65, 0.35, 0.45), pi ∝ exp(g / tau).
    On supp mu both give log(pi_a / pi_b) = 0.6 (Theorem 2); at c they differ.
    """
    problem = build_problem(OFF_SUPPORT)
    ipo_pi = psipo_cli.solve(problem, "ipo", TAU).policy["prob"].to_numpy()
    psipo_pi = psipo_cli.solve(problem, "psipo", TAU, psi="identity").policy["prob"].to_numpy()
    np.testing.assert_allclose(ipo_pi, softmax([0.3, -0.3, 0.0]), rtol=1e-12)
    np.testing.assert_allclose(psipo_pi, softmax(np.array([0.65, 0.35, 0.45]) / TAU), rtol=1e-12)
    assert math.log(ipo_pi[0] / ipo_pi[1]) == pytest.approx(math.log(psipo_pi[0] / psipo_pi[1]), rel=1e-12)
    assert abs(ipo_pi[2] - psipo_pi[2]) > 0.02  # 0.3236 against 0.3021

    (run,) = exact_runs(problem, "ipo", [TAU], "population")
    assert run.detail.startswith("c outside supp mu: the objective does not see it and does not determine its offset")
    assert "stays at its pi_ref offset" in run.detail
    assert "`psipo --psi identity` (paper Theorem 2) differs there" in run.detail
    assert "supp mu = supp pi_ref" in run.detail
    # The same detail reaches the metrics table.
    detail = psipo_cli.solve(problem, "ipo", TAU).metrics["detail"].iloc[0]
    assert "c outside supp mu" in detail


@pytest.mark.parametrize("method", ["dpo", "rlhf"])
def test_population_dpo_and_rlhf_outside_supp_mu(method: str) -> None:
    """Bradley–Terry on the same counts: sigma(h) = 0.2 / 0.25, h = log 4, so delta = (log 4, -log 4, 0) / 2
    / tau; the twin named is ΨPO-logit (Prop. 1)."""
    problem = build_problem(OFF_SUPPORT)
    (run,) = exact_runs(problem, method, [TAU], "population")
    half = math.log(4) / 2 / TAU
    np.testing.assert_allclose(run.policy, softmax([half, -half, 0.0]), rtol=1e-12)
    assert "c outside supp mu" in run.detail
    assert "`psipo --psi logit` (paper Prop. 1, under Bradley–Terry preferences) differs there" in run.detail


def test_ridge_determines_the_unseen_reward() -> None:
    """With rm_l2 > 0 the ridge term sets an unseen action's reward to 0: nothing is left undetermined."""
    (run,) = exact_runs(build_problem(OFF_SUPPORT), "rlhf", [TAU], "population", rm_l2=0.1)
    assert "supp mu" not in run.detail


def test_actions_in_no_comparison_are_named_on_data() -> None:
    """d and e are never compared (pi_ref > 0): named, with no population twin."""
    problem = named_problem("abcde", [("a", "b", 2), ("b", "a", 1), ("b", "c", 1), ("c", "b", 1), ("a", "c", 1)])
    # Losses of the compared differences (and RLHF's reward model) do not see d and e at all; losses of single
    # actions and the reference-free ones do, through the normalisation (tests/methods/single_action).
    of_differences = ("pairwise", "pairwise-link", "reward-model")
    for method in [name for name, m in METHODS.items() if m.family.name in of_differences]:
        (run,) = exact_runs(problem, method, [1.0])
        assert "d, e in no comparison: the objective does not see them" in run.detail, method
        assert "differs there" not in run.detail
        assert run.policy[3] == pytest.approx(run.policy[4], rel=1e-12)  # both at their (equal) pi_ref offset


def test_action_with_zero_pi_ref_is_not_listed() -> None:
    """pi_ref(d) = 0: d gets probability 0 whatever its offset, so there is nothing to flag."""
    problem = named_problem("abcd", [("a", "b", 2), ("b", "a", 1)], pi_ref=[0.4, 0.3, 0.3, 0.0])
    (run,) = exact_runs(problem, "ipo", [1.0])
    assert "c in no comparison" in run.detail and "d" not in run.detail.split(" in no comparison")[0]


# ============================================================================== item 9: diverged components


def test_diverged_detail_lists_components_and_losers_d3() -> None:
    """D3 = {a>b, b>a, b>c}: components {a, b} and {c}; {c} loses to {a, b} and gets probability 0."""
    (run,) = exact_runs(get_problem("paper-d3"), "dpo", [1.0])
    assert run.status == "diverged"
    assert run.detail.startswith(
        "no minimiser: the comparison graph (winner -> loser) has strongly connected components {a, b}, {c}; "
        "{c} loses to another component, so it gets probability 0 for every tau"
    )
    assert run.policy[2] == 0.0


def test_diverged_detail_union_keeps_the_count_note() -> None:
    """D1 on {a, b, c} and d > e: every action is its own component; b, c, e lose one comparison each.
    d loses nothing but gets 0 too (its max-margin u = 1/2 < u_a = 1): the existing count note says 4."""
    problem = named_problem("abcde", [("a", "b", 1), ("b", "c", 1), ("a", "c", 1), ("d", "e", 1)])
    for method in ("dpo", "rlhf"):
        (run,) = exact_runs(problem, method, [0.5])
        assert "strongly connected components {a}, {b}, {c}, {d}, {e}; {b}, {c}, {e} lose to another" in run.detail
        assert "4 of the compared actions get probability 0" in run.detail
        assert run.reward is None


def test_diverged_detail_keeps_the_tie_note() -> None:
    """a > c and b > c once each: {a} and {b} tie at the top of the max-margin direction."""
    problem = named_problem("abc", [("a", "c", 1), ("b", "c", 1)])
    (run,) = exact_runs(problem, "dpo", [1.0])
    assert "components {a}, {b}, {c}; {c} loses to another component" in run.detail
    assert "tie between 2 components of the max-margin direction" in run.detail


def test_long_listings_are_cut() -> None:
    """A chain of 12 actions: 12 singleton components, 11 losers; at most 8 of each are listed."""
    names = "abcdefghijkl"
    problem = named_problem(names, [(names[i], names[i + 1], 1) for i in range(11)])
    (run,) = exact_runs(problem, "dpo", [1.0])
    assert "{a}, {b}, {c}, {d}, {e}, {f}, {g}, {h}, ... (+4 more)" in run.detail
    assert "{b}, {c}, {d}, {e}, {f}, {g}, {h}, {i}, ... (+3 more) lose to another" in run.detail


# ============================================================================== item 9: implied rewards


def test_dpo_reward_is_the_bradley_terry_mle_for_every_tau() -> None:
    """Tree a - b - c (counts a>b 4, b>a 1, b>c 1, c>b 2): r_a - r_b = log 4, r_b - r_c = log(1/2) (one
    stationarity condition per edge), and the gauge sum r = 0 gives r_b = (log(1/2) - log 4) / 3."""
    problem = named_problem("abc", [("a", "b", 4), ("b", "a", 1), ("b", "c", 1), ("c", "b", 2)])
    r_b = (math.log(0.5) - math.log(4)) / 3
    expected = np.array([r_b + math.log(4), r_b, r_b - math.log(0.5)])
    for run in exact_runs(problem, "dpo", [0.1, 1.0, 7.0]) + exact_runs(problem, "rlhf", [0.1, 1.0]):
        np.testing.assert_allclose(run.reward, expected, rtol=1e-12, atol=1e-15)


def test_ipo_reward_is_tau_times_delta() -> None:
    """D1: Lap^+ b = (2/3, 0, -2/3), delta = Lap^+ b / (2 tau), so tau delta = (1/3, 0, -1/3) for every tau."""
    for run in exact_runs(get_problem("paper-d1"), "ipo", [0.01, 1.0, 30.0]):
        np.testing.assert_allclose(run.reward, [1 / 3, 0.0, -1 / 3], atol=1e-15)
        np.testing.assert_allclose(run.policy, softmax(np.array([1 / 3, 0.0, -1 / 3]) / run.tau), rtol=1e-12)


def test_rlhf_reward_is_the_ridge_fit() -> None:
    """D1 with rm_l2 = 0.1: the reward model minimises mean log(1 + exp(-(r_w - r_l))) + 0.05 ||r||^2
    (written out here), solved by scipy."""

    def loss(r: np.ndarray) -> float:
        h = np.array([r[0] - r[1], r[1] - r[2], r[0] - r[2]])
        return float(np.mean(np.log1p(np.exp(-h))) + 0.05 * r @ r)

    expected = minimize(loss, np.zeros(3), method="BFGS", options={"gtol": 1e-12}).x
    (run,) = exact_runs(get_problem("paper-d1"), "rlhf", [1.0], rm_l2=0.1)
    np.testing.assert_allclose(run.reward, expected, atol=1e-7)


def test_psipo_reward_is_g_and_none_in_the_limit() -> None:
    """g(y) = sum mu(y') Psi(P[y, y']) = (0.65, 0.35, 0.45) with Psi = identity on OFF_SUPPORT. With
    Psi = logit on an order, g is infinite (P = 0 or 1): status limit, no reward."""
    (run,) = exact_runs(build_problem(OFF_SUPPORT), "psipo", [TAU], "population", psi="identity")
    np.testing.assert_allclose(run.reward, [0.65, 0.35, 0.45], atol=1e-15)
    (limit,) = exact_runs(get_problem("paper-d1"), "psipo", [TAU], "population", psi="logit")
    assert limit.status == "limit" and limit.reward is None


def test_objective_level_rewards() -> None:
    """The same fields on the objectives' own Solution (tau = 2: DPO reward r_hat = tau delta)."""
    W = np.array([[0, 3, 0], [1, 0, 1], [0, 1, 0]], dtype=float)
    pi_ref = np.full(3, 1 / 3)
    sol = exact_solution("dpo", W, pi_ref, 2.0)
    np.testing.assert_allclose(sol.reward, 2.0 * sol.offsets, rtol=1e-15)
    assert exact_solution("ipo", W, pi_ref, 2.0).reward is not None
    assert exact_solution("rlhf", W, pi_ref, 2.0).reward is not None
    assert psipo.solve(pi_ref, pi_ref, np.full((3, 3), 0.5), 1.0, "identity").reward is not None


# ============================================================================== item 9: closed forms


@pytest.mark.parametrize("tau", [0.05, 1.0, 4.0])
def test_ipo_closed_form_on_a_complete_order(tau: float) -> None:
    """k = 4 actions in the order b > d > a > c, 3 comparisons per pair, plus e never compared.

    Lap = c (k I - 1 1^T) and b_y = c (wins - losses) = c (k - 1 - 2 rank_y). On sum-zero vectors
    Lap = c k I, so delta_y = (k - 1 - 2 rank_y) / (2 k tau): ranks (b, d, a, c) = (0, 1, 2, 3) give
    (3, 1, -1, -3) / (8 tau), e stays at 0.
    """
    order = "bdac"
    pairs = [(order[i], order[j], 3) for i in range(4) for j in range(i + 1, 4)]
    (run,) = exact_runs(named_problem("abcde", pairs), "ipo", [tau])
    expected = np.array([-1, 3, -3, 1, 0]) / (8 * tau)  # a, b, c, d, e
    np.testing.assert_allclose(run.policy, softmax(expected), rtol=1e-12)
    assert (
        "closed form (a complete order on the 4 compared actions, 3 comparisons per pair): "
        f"delta_y = (k - 1 - 2 rank_y) / (2 k tau), so neighbours differ by 1/(k tau) = {1 / (4 * tau):.6g}"
    ) in run.detail
    assert "e in no comparison" in run.detail


def test_ipo_closed_form_on_the_population_order() -> None:
    """paper-d1's model (order a > b > c, mu = pi_ref uniform): W = mu mu^T P has 1/9 on each ordered pair."""
    (run,) = exact_runs(get_problem("paper-d1"), "ipo", [1.0], "population")
    assert "closed form (a complete order on the 3 compared actions" in run.detail


def test_ipo_closed_form_on_one_pair() -> None:
    """a > b x 3, b > a x 1: 3 (h - 1/(2 tau)) + (h + 1/(2 tau)) = 0, h = 1 / (4 tau); at tau = 0.5, h = 1/2."""
    (run,) = exact_runs(named_problem("ab", [("a", "b", 3), ("b", "a", 1)]), "ipo", [0.5])
    np.testing.assert_allclose(run.policy, softmax([0.25, -0.25]), rtol=1e-12)
    assert "closed form (the compared pairs form a forest" in run.detail


def test_dpo_closed_form_on_a_forest() -> None:
    """a > b x 3, b > a x 1 and c > d x 2, d > c x 5: log(pi_a / pi_b) = log 3 / tau, log(pi_c / pi_d) =
    log(2/5) / tau, and the two components each sum to zero."""
    problem = named_problem("abcd", [("a", "b", 3), ("b", "a", 1), ("c", "d", 2), ("d", "c", 5)])
    tau = 0.7
    (run,) = exact_runs(problem, "dpo", [tau])
    h1, h2 = math.log(3) / tau, math.log(2 / 5) / tau
    np.testing.assert_allclose(run.policy, softmax([h1 / 2, -h1 / 2, h2 / 2, -h2 / 2]), rtol=1e-12)
    assert "closed form (the compared pairs form a forest" in run.detail


def test_no_closed_form_without_its_preconditions() -> None:
    """A complete order with unequal counts (a>c twice) has a cycle in its pairs and unequal counts: IPO
    states none; a strongly connected cycle is no forest: DPO states none."""
    (ipo_run,) = exact_runs(named_problem("abc", [("a", "b", 1), ("b", "c", 1), ("a", "c", 2)]), "ipo", [1.0])
    assert "closed form" not in ipo_run.detail
    (dpo_run,) = exact_runs(named_problem("abc", [("a", "b", 1), ("b", "c", 1), ("c", "a", 1)]), "dpo", [1.0])
    assert dpo_run.status == "optimal" and "closed form" not in dpo_run.detail


def test_single_action_losses_name_the_actions_in_no_comparison() -> None:
    """NCA sees d and e only through the normalisation: named (not by index), with what they do."""
    problem = named_problem("abcde", [("a", "b", 2), ("b", "a", 1), ("b", "c", 1), ("c", "b", 1), ("a", "c", 1)])
    (run,) = exact_runs(problem, "nca", [1.0])
    assert "d, e in no comparison: the objective does not see them directly; they take the mass" in run.detail
    assert "indices" not in run.detail
