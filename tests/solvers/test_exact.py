"""The exact dispatch over every method: first-order conditions, gauge, supports, contexts, tau checks.

Expected values are derived by hand (in a comment), from a loss written out from its definition, or from a
theorem of the paper — never with the code under test; the conventions relied on are listed in
`tests/reference/routes.py`.
"""

from __future__ import annotations

import numpy as np
import pytest
from reference.routes import (
    central_diff,
    dpo_grad,
    dpo_loss,
    ipo_grad,
    ipo_loss,
    one_policy,
    pairs,
    policies,
    preset_objectives,
    problem_from,
    psipo_value,
    random_preferences,
    random_simplex,
    random_W,
    reward_grad,
    reward_loss,
    softmax,
    tv,
)
from support import exact_solution

import psipo_cli
from psipo_cli.errors import InputError
from psipo_cli.methods import METHODS
from psipo_cli.problem import build_problem, get_problem, realise

#: The methods whose losses `check_first_order` writes out (every registered method's first-order conditions
#: are also checked against tests/reference/losses.py in tests/conformance).
WRITTEN_HERE = ("rlhf", "dpo", "ipo", "psipo")


def foc_cases():
    """(problem, method, tau, options, objective) for every preset plus random problems."""
    cases = []
    for name, objective in preset_objectives():
        for method in WRITTEN_HERE:
            for tau in (0.1, 1.0, 5.0):
                opts = {"rm_l2": 0.05} if method == "rlhf" else {}
                if method == "psipo":
                    opts = {"psi": "identity"}
                cases.append((name, method, tau, opts, objective))
            if method == "rlhf":
                cases.append((name, method, 1.0, {"rm_l2": 0.0}, objective))
    return cases


def check_first_order(problem, method: str, tau: float, opts: dict, objective: str | None) -> int:
    """Central differences of the loss written in this file, at delta = log(pi / pi_ref): ~0 at 1e-8."""
    try:
        frames = psipo_cli.solve(problem, method, tau, objective=objective, **opts)
    except InputError:
        return 0  # psipo on data without every pair: covered elsewhere
    if frames.metrics.iloc[0].status != "optimal":
        return 0
    pi = next(iter(policies(frames).values()))
    prob = get_problem(problem)
    ctx = prob.contexts[0]
    pi_ref = np.asarray(ctx.pi_ref)
    delta = np.zeros(len(pi))
    m = pi_ref > 0
    delta[m] = np.log(pi[m] / pi_ref[m])
    if objective == "population" or not prob.has_data:
        W = np.outer(ctx.mu, ctx.mu) * ctx.preferences
        np.fill_diagonal(W, 0.0)
    else:
        W = np.asarray(realise(prob).contexts[0].wins)
    if method == "dpo":
        f, h = (lambda d: dpo_loss(d, W, tau)), 1e-5
        analytic = dpo_grad(delta, W, tau)
    elif method == "ipo":
        f, h = (lambda d: ipo_loss(d, W, tau)), 1e-3  # quadratic: central differences are exact
        analytic = ipo_grad(delta, W, tau)
    elif method == "rlhf":
        l2 = opts["rm_l2"]
        r = tau * delta
        r = r - r.mean()  # the loss is shift-invariant; the ridge fixes sum r = 0
        f, h = (lambda x: reward_loss(x, W, l2)), 1e-5
        analytic = reward_grad(r, W, l2)
        delta = r
    else:
        P, mu = ctx.preferences, ctx.mu
        if objective != "population" and prob.has_data:
            S = W + W.T
            P = np.where(S > 0, W / np.where(S > 0, S, 1), 0.5)
            mu = (W.sum(0) + W.sum(1)) / (2 * W.sum())
        if method == "nash":
            # The equilibrium is the ΨPO (identity) optimum whose behaviour policy is the equilibrium itself
            # (pi* = softmax(log pi_ref + P pi* / tau)): the same conditions with mu = pi, held fixed.
            mu = pi
        g = P @ mu
        f, h = (lambda d: -psipo_value(d, pi_ref, g, tau)), 1e-5
        # d pi_y / d delta_z = pi_y (1{y = z} - pi_z), so with q = g - tau log(pi / pi_ref):
        # dJ/d delta_z = pi_z (q_z - E_pi q) (the -tau from differentiating pi log pi cancels).
        q = np.where(m, g - tau * delta, 0.0)
        analytic = -pi * (q - pi @ q)
    fd = central_diff(f, delta, h)
    assert np.max(np.abs(fd[m])) < 1e-8, (method, tau, fd)
    assert np.max(np.abs(analytic[m])) < 1e-8, (method, tau, analytic)
    return 1


def test_first_order_conditions_on_presets() -> None:
    checked = sum(check_first_order(*case) for case in foc_cases())
    # Every optimal preset case: IPO everywhere, RLHF with a ridge everywhere, psipo-identity, and
    # DPO/RLHF(rm_l2 = 0) on cycle and bt-finite (the others diverge).
    assert checked >= 60, checked


def test_first_order_conditions_on_random_problems() -> None:
    rng = np.random.default_rng(15)
    checked = 0
    for _ in range(15):
        n = int(rng.integers(2, 6))
        W = random_W(rng, n, 0.7, both_ways=bool(rng.random() < 0.6))
        pi_ref = random_simplex(rng, n)
        P = random_preferences(rng, n)
        problem = problem_from(W, pi_ref, preferences=P.tolist())
        for method, opts in (("dpo", {}), ("ipo", {}), ("rlhf", {"rm_l2": 0.01}), ("rlhf", {"rm_l2": 0.0})):
            for tau in (0.2, 2.0):
                checked += check_first_order(problem, method, tau, opts, None)
                checked += check_first_order(problem, method, tau, opts, "population")
        checked += check_first_order(problem, "psipo", 0.5, {"psi": "identity"}, "population")
    assert checked > 150


# ============================================================================== gauge, supports, contexts


def test_gauge_and_absent_actions() -> None:
    """Two weak components ({0,1,2} and {3,4}) and two absent actions (5, 6): the offsets sum to zero on
    each component and vanish on absent actions. The softmax constant is fixed by delta(absent) = 0."""
    W = np.zeros((7, 7))
    W[0, 1], W[1, 0], W[1, 2], W[2, 1], W[0, 2] = 3, 1, 2, 2, 1  # strongly connected
    W[3, 4], W[4, 3] = 5, 1
    pi_ref = np.array([0.1, 0.2, 0.05, 0.15, 0.2, 0.1, 0.2])
    for sol in (
        exact_solution("ipo", W, pi_ref, 0.7),
        exact_solution("dpo", W, pi_ref, 0.7),
        exact_solution("rlhf", W, pi_ref, 0.7),
        exact_solution("rlhf", W, pi_ref, 0.7, rm_l2=0.3),
    ):
        assert sol.status == "optimal"
        delta = np.log(sol.policy / pi_ref)
        delta -= delta[5]
        assert delta[6] == pytest.approx(0.0, abs=1e-12)
        assert abs(delta[:3].sum()) < 1e-10 and abs(delta[3:5].sum()) < 1e-10
        np.testing.assert_allclose(sol.offsets, delta, atol=1e-10)
    # Absent actions keep their pi_ref mass relative to each other, in every solution.
    for method in ("dpo", "ipo"):
        pi = one_policy(problem_from(W, pi_ref), method, 0.3)
        assert pi[5] / pi[6] == pytest.approx(pi_ref[5] / pi_ref[6], rel=1e-12)


def test_gauge_with_a_diverged_component_elsewhere() -> None:
    """IPO never diverges; its offsets are the canonical minimiser even when DPO's would not exist."""
    W = np.zeros((5, 5))
    W[0, 1] = W[1, 2] = W[3, 4] = 1  # two chains
    pi_ref = np.full(5, 0.2)
    tau = 0.5
    sol = exact_solution("ipo", W, pi_ref, tau)
    # By hand: chain a > b > c has b = (1, 0, -1), Lap = [[1,-1,0],[-1,2,-1],[0,-1,1]]; delta = x/(2 tau)
    # with Lap x = b, sum x = 0: x = (1, 0, -1). Chain d > e: x = (1/2, -1/2).
    expected = np.array([1, 0, -1, 0.5, -0.5]) / (2 * tau)
    np.testing.assert_allclose(sol.offsets, expected, atol=1e-12)
    np.testing.assert_allclose(sol.policy, softmax(expected), atol=1e-12)


@pytest.mark.parametrize("method", list(METHODS))
def test_zero_pi_ref_gets_zero(method: str) -> None:
    problem = build_problem(
        {
            "actions": list("abcd"),
            "pi_ref": [0.0, 0.5, 0.3, 0.2],
            "mu": [0.25, 0.25, 0.25, 0.25],
            "rewards": [5.0, 0.0, 1.0, -1.0],
        }
    )
    for tau in (0.1, 1.0):
        pi = one_policy(problem, method, tau, **({"psi": "logit"} if method == "psipo" else {}))
        assert pi[0] == 0.0
        assert pi.sum() == pytest.approx(1.0)


@pytest.mark.parametrize("method", ["dpo", "rlhf"])
def test_diverged_limit_with_the_leader_outside_supp_pi_ref(method: str) -> None:
    """Population counts from a mu wider than pi_ref. Order a > b > c, pi_ref(a) = 0, mu uniform:
    max-margin u = (1, 0, -1), a gets nothing (pi_ref = 0), so all mass goes to b, the fastest-growing
    offset pi_ref supports (not NaN)."""
    problem = build_problem(
        {"actions": list("abc"), "order": list("abc"), "pi_ref": [0, 0.5, 0.5], "mu": [1 / 3] * 3}
    )
    for tau in (0.1, 1.0, 10.0):
        np.testing.assert_array_equal(one_policy(problem, method, tau), [0.0, 1.0, 0.0])


def test_diverged_limit_absent_action_beats_growing_losers() -> None:
    """a (pi_ref = 0) beats b and c; b and c tie; d is never compared (mu(d) = 0) but pi_ref(d) > 0.
    u: a - {b, c} >= 1 with weights 1 and 2 gives u_a = 2/3, u_b = u_c = -1/3, while the absent d stays at
    delta = 0: pi(b), pi(c) -> 0 like exp(-s / (3 tau)), and d takes all the mass. The ridge path agrees."""
    P = [[0.5, 1, 1, 0.5], [0, 0.5, 0.5, 0.5], [0, 0.5, 0.5, 0.5], [0.5, 0.5, 0.5, 0.5]]
    pi_ref = [0, 0.3, 0.3, 0.4]
    problem = build_problem(
        {"actions": list("abcd"), "preferences": P, "pi_ref": pi_ref, "mu": [1 / 3, 1 / 3, 1 / 3, 0]}
    )
    for tau in (0.5, 2.0):
        np.testing.assert_array_equal(one_policy(problem, "dpo", tau), [0, 0, 0, 1.0])
    gaps = [tv(one_policy(problem, "rlhf", 0.5, rm_l2=l2), [0, 0, 0, 1]) for l2 in (1e-3, 1e-6, 1e-9)]
    assert gaps[0] > gaps[1] > gaps[2] and gaps[2] < 1e-4


#: One method of each family (and kind of exact answer) for the default run; every method under `-m slow`
#: (the single-action searches and KTO's fixed point take seconds per context).
FAMILY_SAMPLE = ("rlhf", "dpo", "ipo", "psipo", "cdpo", "exo", "chipo", "nca", "cpo", "nash", "online-ipo", "sppo")


@pytest.mark.parametrize("methods", [
    pytest.param(FAMILY_SAMPLE, id="one-per-family"),
    pytest.param(tuple(METHODS), id="every-method", marks=pytest.mark.slow),
])
def test_multi_context_equals_each_context_alone(methods: tuple[str, ...]) -> None:
    rng = np.random.default_rng(16)
    n = 4
    actions = list("abcd")
    contexts = []
    for k in range(3):
        W = random_W(rng, n, 1.0, both_ways=k == 0)  # every pair compared: psipo from data needs it
        contexts.append(
            {
                "name": f"ctx{k}",
                "weight": float(k + 1),
                "pi_ref": random_simplex(rng, n).tolist(),
                "rewards": rng.normal(size=n).tolist(),
                "pairs": [{"winner": actions[w], "loser": actions[l_], "count": c} for w, l_, c in pairs(W)],
            }
        )
    del contexts[2]["rewards"]
    contexts[2]["order"] = list("dcba")
    multi = build_problem({"name": "multi", "actions": actions, "contexts": contexts})
    methods = list(methods)
    taus = [0.3, 2.0]
    short = {"steps": 300, "seeds": 2}  # the gradient runs' lanes must not mix contexts either; short runs do
    for objective in ("dataset", "population"):
        frames = psipo_cli.solve(multi, methods, taus, objective=objective, psi="identity", **short)
        for ctx in contexts:
            alone = build_problem({"name": "alone", "actions": actions, **{**ctx, "name": "default"}})
            alone_frames = psipo_cli.solve(alone, methods, taus, objective=objective, psi="identity", **short)
            single = policies(alone_frames)
            together = policies(frames, context=ctx["name"])
            assert together.keys() == single.keys()
            for key in single:
                np.testing.assert_allclose(together[key], single[key], atol=1e-12)
            # ... and the same metrics, each against its own context's pi_ref, model and optimum.
            columns = ["kl", "entropy", "loss", "win_rate_ref", "win_rate_mu", "reward", "tv_to_optimum"]
            mine = frames.metrics[frames.metrics.context == ctx["name"]]
            for column in columns:
                a = mine[column].to_numpy(dtype=float)
                b = alone_frames.metrics[column].to_numpy(dtype=float)
                np.testing.assert_allclose(a, b, atol=1e-12, equal_nan=True)
            assert mine.status.tolist() == alone_frames.metrics.status.tolist()


@pytest.mark.parametrize("tau", [0.0, -1.0, float("nan"), float("inf")])
def test_bad_tau(tau: float) -> None:
    with pytest.raises(InputError) as info:
        psipo_cli.solve("paper-d1", "ipo", tau)
    assert "tau" in str(info.value)
