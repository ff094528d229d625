"""cDPO, rDPO, the hinge and GPO's functions (issue 12, part 1): exact answers, statuses, gradients.

Every expected value is derived by hand (in a comment), from the loss written out again here from its
definition (cDPO: Mitchell 2023; rDPO: arXiv 2403.00409; SLiC hinge: arXiv 2305.10425; GPO: arXiv
2402.05749) and minimised by scipy.optimize, from linear programming on that definition, from an Euler
integration of gradient flow, or from finite differences — never with the code under test.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from reference.routes import canonical, pairs, random_W
from scipy.optimize import linprog, minimize
from support import exact_solution

import psipo_cli
from psipo_cli.errors import InputError
from psipo_cli.methods import get_method

TAUS = [0.25, 1.0, 4.0]


def sig(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


def logit(p: float) -> float:
    return math.log(p / (1.0 - p))


# The losses of `x = tau h`, written from their papers' definitions (not imported from the package).
def softplus(x: float) -> float:
    return max(x, 0.0) + math.log1p(math.exp(-abs(x)))


F = {
    ("cdpo", 0.1): lambda x: 0.9 * softplus(-x) + 0.1 * softplus(x),  # -(1-e) log s(x) - e log s(-x)
    ("rdpo", 0.1): lambda x: (0.9 * softplus(-x) - 0.1 * softplus(x)) / 0.8,  # [(1-e) l(x) - e l(-x)] / (1-2e)
    ("gpo", "logistic"): lambda x: softplus(-x),
    ("gpo", "exponential"): lambda x: math.exp(-x),
    ("gpo", "squared"): lambda x: (x - 1.0) ** 2,
    ("gpo", "truncated-quadratic"): lambda x: max(0.0, 1.0 - x) ** 2,
    ("gpo", "savage"): lambda x: 1.0 / (1.0 + math.exp(x)) ** 2,
    ("gpo", "hinge"): lambda x: max(0.0, 1.0 - x),
    ("hinge", None): lambda x: max(0.0, 1.0 - x),
}
OPTION = {"cdpo": "label_smoothing", "rdpo": "label_smoothing", "gpo": "gpo_f"}


def options_of(method: str, value: object) -> dict[str, object]:
    return {} if value is None else {OPTION[method]: value}


def mean_loss(delta: np.ndarray, W: np.ndarray, f, tau: float) -> float:
    return sum(c * f(tau * (delta[w] - delta[l_])) for w, l_, c in pairs(W)) / W.sum()


def two(a: float, b: float) -> np.ndarray:
    """One pair: action 0 beats action 1 `a` times and loses `b` times."""
    return np.array([[0.0, a], [b, 0.0]])


UNIFORM2 = np.array([0.5, 0.5])


# ------------------------------------------------------------------------------------------ one-pair forms
@pytest.mark.parametrize("tau", TAUS)
def test_cdpo_one_pair_closed_form(tau: float) -> None:
    # cDPO is DPO on (1-e) W + e W^T: (1-e) a + e b wins against (1-e) b + e a, so
    # z* = log(((1-e) a + e b) / ((1-e) b + e a)) = logit(e + (1 - 2e) p), p = a / (a + b).
    for a, b in [(3.0, 1.0), (1.0, 0.0), (2.0, 5.0)]:
        p = a / (a + b)
        sol = exact_solution("cdpo", two(a, b), UNIFORM2, tau, label_smoothing=0.1)
        assert sol.status == "optimal"
        assert sol.reward[0] - sol.reward[1] == pytest.approx(logit(0.1 + 0.8 * p), rel=1e-10)
        assert sol.offsets[0] - sol.offsets[1] == pytest.approx(logit(0.1 + 0.8 * p) / tau, rel=1e-10)


def test_cdpo_at_zero_smoothing_is_dpo() -> None:
    # eps = 0 is DPO's loss: a deterministic pair has no minimiser (DPO diverges).
    assert exact_solution("cdpo", two(1.0, 0.0), UNIFORM2, 1.0, label_smoothing=0.0).status == "diverged"


@pytest.mark.parametrize("tau", TAUS)
def test_rdpo_one_pair_closed_form(tau: float) -> None:
    # Stationarity of a [l(z) - c z] + b [l(-z) + c z], c = e/(1-2e), l(x) = -log s(x):
    # -a s(-z) + b s(z) - (a - b) c = 0 gives s(z) = (p - e) / (1 - 2e), p = a / (a + b).
    a, b, eps = 3.0, 1.0, 0.1
    sol = exact_solution("rdpo", two(a, b), UNIFORM2, tau, label_smoothing=eps)
    assert sol.status == "optimal"
    assert sol.reward[0] - sol.reward[1] == pytest.approx(logit((0.75 - eps) / (1 - 2 * eps)), rel=1e-10)


@pytest.mark.parametrize(("a", "b", "eps"), [(1.0, 0.0, 0.1), (3.0, 1.0, 0.3), (1.0, 4.0, 0.25)])
def test_rdpo_unbounded_when_p_outside_eps_band(a: float, b: float, eps: float) -> None:
    # p = 1 > 1 - 0.1; p = 0.75 > 1 - 0.3; p = 0.2 < 0.25: sigma(z*) = (p - e)/(1 - 2e) leaves (0, 1), and the
    # loss along z = t (winner-side) has slope ((1-e) b - e a)/(1-2e) per unit t (by hand) < 0: -inf.
    sol = exact_solution("rdpo", two(a, b), UNIFORM2, 1.0, label_smoothing=eps)
    assert sol.status == "unbounded" and sol.loss == -np.inf and sol.offsets is None and sol.reward is None
    top = 0 if a / (a + b) > 0.5 else 1
    expected = np.zeros(2)
    expected[top] = 1.0
    np.testing.assert_array_equal(sol.policy, expected)
    assert sol.named == ((top,),)  # the set of negative de-noised inflow is the winner alone
    f = lambda x: ((1 - eps) * softplus(-x) - eps * softplus(x)) / (1 - 2 * eps)  # noqa: E731
    direction = np.array([1.0, -1.0]) if top == 0 else np.array([-1.0, 1.0])
    values = [mean_loss(t * direction, two(a, b), f, 1.0) for t in (10.0, 100.0, 1000.0)]
    assert values[0] > values[1] > values[2] and values[2] < -10.0


@pytest.mark.parametrize("tau", TAUS)
@pytest.mark.parametrize(
    ("name", "expected"),
    [
        # a f'(z) = b f'(-z) with a = 3, b = 1 (p = 3/4), solved by hand for each f:
        ("logistic", logit(0.75)),  # s(-z)/s(z) = 1/3: z = log 3
        ("exponential", logit(0.75) / 2),  # 3 e^{-z} = e^{z}: z = log(3) / 2
        ("squared", 0.5),  # 3 (z - 1) + (z + 1) = 0: z = 1/2 = 2p - 1
        ("truncated-quadratic", 0.5),  # the same on |z| < 1
        ("savage", logit(0.75)),  # 3 s(-z)^2 s(z) = s(z)^2 s(-z): s(z)/s(-z) = 3
        ("hinge", 1.0),  # slope -3 + 1 < 0 on (-1, 1), +1 beyond 1: z = 1
    ],
)
def test_gpo_one_pair_optima(name: str, expected: float, tau: float) -> None:
    sol = exact_solution("gpo", two(3.0, 1.0), UNIFORM2, tau, gpo_f=name)
    assert sol.status in ("optimal", "local")
    assert sol.status == ("local" if name == "savage" else "optimal")
    assert sol.reward[0] - sol.reward[1] == pytest.approx(expected, rel=1e-7)


def test_hinge_tied_pair_is_a_set_and_flow_stays_at_pi_ref() -> None:
    # a = b: the loss is constant (= 1 per comparison) on -1 <= z <= 1, so the minimisers are that interval;
    # the sub-gradient at z = 0 is -a + b = 0: the flow does not move.
    sol = exact_solution("hinge", two(2.0, 2.0), UNIFORM2, 1.0)
    assert sol.status == "set"
    np.testing.assert_allclose(sol.reward, 0.0, atol=1e-12)
    assert "[-1, 1]" in sol.detail


@pytest.mark.parametrize("method", [("hinge", None), ("gpo", "truncated-quadratic")])
@pytest.mark.parametrize("winner", [0, 1])
def test_one_way_pair_is_a_set_whichever_action_wins(method: tuple, winner: int) -> None:
    # One comparison won by `winner`: max(0, 1 - z) (and its square) is 0 exactly for z = z_w - z_l >= 1, so the
    # minimisers are the half-line [1, inf) of that margin, whatever the actions' order. psipo listed the pair
    # lower index first and read the range of a0 - a1 when a1 won, (-inf, -1], as a point ("optimal").
    name, f = method
    W = np.zeros((2, 2))
    W[winner, 1 - winner] = 3.0
    sol = exact_solution(name, W, UNIFORM2, 0.5, **({"gpo_f": f} if f else {}))
    assert sol.status == "set", sol.detail
    assert "in [1, inf)" in sol.detail


# ------------------------------------------------- independent route: scipy on the rewritten loss, 2 taus
def reference_offsets(W: np.ndarray, f, tau: float, starts: int = 1) -> tuple[np.ndarray, float]:
    """argmin of the rewritten mean loss in delta (BFGS, best of `starts` seeded starts), canonical gauge."""
    n = W.shape[0]
    rng = np.random.default_rng(7)
    best = None
    for k in range(starts):
        x0 = np.zeros(n) if k == 0 else rng.normal(0.0, 3.0 / tau, n)
        res = minimize(lambda d: mean_loss(d, W, f, tau), x0, method="BFGS", options={"gtol": 1e-11})
        if best is None or res.fun < best.fun:
            best = res
    return canonical(best.x, W), float(best.fun)


SMOOTH = [("cdpo", 0.1), ("rdpo", 0.1), ("gpo", "logistic"), ("gpo", "exponential"), ("gpo", "squared"),
          ("gpo", "savage")]


@pytest.mark.parametrize(("method", "value"), SMOOTH)
def test_smooth_losses_match_scipy_and_z_is_tau_free(method: str, value: object) -> None:
    # Every pair compared both ways (and, for rDPO, p within (eps, 1 - eps): every subset has positive
    # de-noised inflow), so each loss has a finite minimiser; tau * delta* is the same for every tau (the
    # reference solves each tau on its own: the theorem, not the code, says they agree).
    W = np.array([[0, 4, 3, 2], [2, 0, 3, 1], [2, 2, 0, 3], [1, 2, 2, 0]], float)
    pi_ref = np.array([0.1, 0.2, 0.3, 0.4])
    f = F[(method, value)]
    zs = []
    for tau in (0.5, 2.0):
        delta, best = reference_offsets(W, f, tau, starts=8 if value == "savage" else 1)
        sol = exact_solution(method, W, pi_ref, tau, **options_of(method, value))
        np.testing.assert_allclose(sol.offsets, delta, atol=2e-6)
        assert sol.loss == pytest.approx(best, abs=1e-10)
        zs.append(tau * delta)
    np.testing.assert_allclose(zs[0], zs[1], atol=5e-6)


@pytest.mark.parametrize(("method", "value"), [("hinge", None), ("gpo", "hinge"), ("gpo", "truncated-quadratic")])
def test_set_valued_losses_reach_the_minimum(method: str, value: object) -> None:
    # The hinge's minimum is a linear program written here from the definition (t_e >= 0, t_e >= 1 - tau h_e);
    # the truncated quadratic's by BFGS (it is C^1). The reported point attains it at every tau.
    rng = np.random.default_rng(3)
    for _ in range(4):
        W = random_W(rng, 5, 0.7)
        if not W.any():
            continue
        n, E = 5, len(pairs(W))
        f = F[(method, value)]
        for tau in (0.5, 2.0):
            sol = exact_solution(method, W, np.full(n, 0.2), tau, **options_of(method, value))
            assert sol.status in ("set", "optimal")
            if value == "truncated-quadratic":
                _, best = reference_offsets(W, f, tau)
            else:
                c = np.concatenate([np.zeros(n), [cnt / W.sum() for _, _, cnt in pairs(W)]])
                A = np.zeros((E, n + E))
                for e, (w, l_, _) in enumerate(pairs(W)):
                    A[e, w], A[e, l_], A[e, n + e] = -tau, tau, -1.0
                best = linprog(c, A_ub=A, b_ub=-np.ones(E), bounds=[(None, None)] * n + [(0, None)] * E).fun
            assert mean_loss(sol.offsets, W, f, tau) == pytest.approx(best, abs=1e-9)
            assert sol.reward == pytest.approx(tau * sol.offsets)


# --------------------------------------------------------------------------- D1: sets and gradient flow
D1 = np.array([[0, 1, 1], [0, 0, 1], [0, 0, 0]], float)  # a > b, b > c, a > c once each (paper §5.4)
THIRDS = np.full(3, 1 / 3)


def euler_flow(W: np.ndarray, df, steps: int, dt: float) -> np.ndarray:
    """Explicit Euler on z' = -grad sum W f(z_w - z_l) / sum W, from z = 0, `df` a (sub)derivative of f."""
    z = np.zeros(W.shape[0])
    for _ in range(steps):
        g = np.zeros_like(z)
        for w, l_, c in pairs(W):
            d = c * df(z[w] - z[l_]) / W.sum()
            g[w] += d
            g[l_] -= d
        z = z - dt * g
    return z


@pytest.mark.parametrize(("method", "value"), [("hinge", None), ("gpo", "truncated-quadratic")])
def test_d1_set_and_where_gradient_flow_goes(method: str, value: object) -> None:
    # By hand (hinge): at z = 0 every margin is below 1, velocity sum (e_w - e_l) / 3 = (2, 0, -2) / 3; both
    # adjacent margins reach 1 at t = 3/4 (a - c reaches 2 > 1), where 0 is a sub-gradient: z = (1, 0, -1).
    # Every z with r_a - r_b >= 1 and r_b - r_c >= 1 is a minimiser (loss 0): a set, unbounded.
    # Truncated quadratic: a - c leaves at margin 1, then r_a - r_b and r_b - r_c relax to 1: the same limit.
    # An Euler integration of the flow with a small step lands there too.
    sol = exact_solution(method, D1, THIRDS, 0.5, **options_of(method, value))
    assert sol.status == "set"
    np.testing.assert_allclose(sol.reward, [1.0, 0.0, -1.0], atol=1e-9)
    if value is None:
        df = lambda x: -1.0 if x < 1.0 else 0.0  # noqa: E731
        euler = euler_flow(D1, df, 4000, 1e-3)
        np.testing.assert_allclose(euler, [1.0, 0.0, -1.0], atol=5e-3)
    else:
        euler = euler_flow(D1, lambda x: -2.0 * max(0.0, 1.0 - x), 60000, 1e-3)
        np.testing.assert_allclose(euler, [1.0, 0.0, -1.0], atol=1e-6)
    text = psipo_cli.solve("paper-d1", method, 0.5, **options_of(method, value)).metrics.iloc[0]["detail"]
    assert "r_a - r_b in [1, inf)" in text and "r_b - r_c in [1, inf)" in text


def test_rdpo_d1_unbounded_names_the_subset() -> None:
    # S = {a}: it loses 0 comparisons and wins 2: inflow ((1-e) 0 - e 2) / (1 - 2e) = -0.25 at e = 0.1 < 0.
    frames = psipo_cli.solve("paper-d1", "rdpo", [0.5, 2.0])
    for row in frames.metrics.itertuples():
        assert row.status == "unbounded"
        assert "into {a}" in row.detail and "-0.25" in row.detail
    for pi in frames.policy.groupby("tau")["prob"]:
        np.testing.assert_array_equal(pi[1].to_numpy(), [1.0, 0.0, 0.0])


def test_rdpo_recovers_the_reward_under_flip_noise() -> None:
    # Population counts W[i, j] = P[i, j] with P = e + (1 - 2e) sigma(r_i - r_j): the de-noised counts
    # ((1-e) P - e P^T) / (1 - 2e) are sigma(r_i - r_j) (by hand: P + P^T = 1), so z* is the Bradley–Terry
    # MLE of exact BT probabilities, r itself (centred).
    r = np.array([1.0, 0.2, -0.4, -0.8])
    eps = 0.2
    n = len(r)
    P = eps + (1 - 2 * eps) / (1.0 + np.exp(-(r[:, None] - r[None, :])))
    W = np.where(np.eye(n, dtype=bool), 0.0, P)
    sol = exact_solution("rdpo", W, np.full(n, 0.25), 1.0, label_smoothing=eps)
    assert sol.status == "optimal"
    np.testing.assert_allclose(sol.reward, r - r.mean(), atol=1e-9)
    # cDPO and DPO on the same noisy counts shrink the reward: their z* is the BT MLE of P, not of P_BT.
    dpo = exact_solution("dpo", W, np.full(n, 0.25), 1.0)
    assert np.ptp(dpo.reward) < np.ptp(r) - 0.3


def test_savage_on_a_separable_problem_diverges() -> None:
    # Savage's f -> 0 only as x -> inf (type A), so D1 has no minimiser: a gets everything for every tau.
    frames = psipo_cli.solve("paper-d1", "gpo", [0.5, 2.0], gpo_f="savage")
    assert set(frames.metrics["status"]) == {"diverged"}


# ------------------------------------------------------------------------------------ gradients and options
LOSS_CASES = [("cdpo", 0.1), ("cdpo", 0.3), ("rdpo", 0.1), ("rdpo", 0.4), ("hinge", None)] + [
    ("gpo", g) for g in ("logistic", "exponential", "squared", "truncated-quadratic", "savage", "hinge")
]


@pytest.mark.parametrize(("method", "value"), LOSS_CASES)
def test_pair_grad_and_margin_derivatives_by_finite_differences(method: str, value: object) -> None:
    loss = get_method(method).loss_at(options_of(method, value))
    # Points away from the kink at tau h = 1 of the hinge and the truncated quadratic.
    h = np.array([-2.3, -0.7, 0.2, 0.9, 1.7, 3.1])
    step = 1e-6

    def fd(fn, x: np.ndarray) -> np.ndarray:  # central differences, elementwise (the functions are elementwise)
        return (fn(x + step) - fn(x - step)) / (2 * step)

    for tau in (0.3, 1.0, 2.5):
        x = h[np.abs(tau * h - 1.0) > 1e-3]
        np.testing.assert_allclose(loss.pair_grad(x, tau), fd(lambda v, t=tau: loss.pair_loss(v, t), x), rtol=1e-6,
                                   atol=1e-8)
    z = h[np.abs(h - 1.0) > 1e-3]
    np.testing.assert_allclose(loss.margin_grad(z), fd(loss.margin, z), rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(loss.margin_curv(z), fd(loss.margin_grad, z), rtol=1e-5, atol=1e-7)
    # pair_loss is the paper's definition at x = tau h.
    f = F[(method, value)] if (method, value) in F else None
    if f is not None:
        np.testing.assert_allclose(loss.pair_loss(h, 0.7), [f(0.7 * x) for x in h], rtol=1e-12)


def test_gradient_runs_converge_to_the_exact_answer_and_do_not_depend_on_company() -> None:
    # cDPO on D1 is strictly convex: full-batch gradient descent reaches its optimum; run alone or next to
    # other methods, its policy is the same to the byte (one lane per method and tau).
    settings = psipo_cli.GradientSettings(steps=4000, batch_size=0, seeds=1, lr=0.05)
    alone = psipo_cli.solve("paper-d1", "cdpo", 1.0, solver="both", settings=settings).policy
    mixed = psipo_cli.solve("paper-d1", ["cdpo", "gpo", "hinge"], 1.0, solver="both", settings=settings).policy
    a = alone[alone["solver"] == "gradient"]["prob"].to_numpy()
    m = mixed[(mixed["solver"] == "gradient") & (mixed["method"] == "cdpo")]["prob"].to_numpy()
    np.testing.assert_array_equal(a, m)
    exact = alone[alone["solver"] == "exact"]["prob"].to_numpy()
    np.testing.assert_allclose(a, exact, atol=1e-4)


@pytest.mark.parametrize("bad", [0.5, -0.1, 0.7])
def test_label_smoothing_outside_zero_half_is_refused(bad: float) -> None:
    with pytest.raises(InputError) as info:
        psipo_cli.solve("paper-d1", "cdpo", 1.0, label_smoothing=bad)
    assert "[0, 0.5)" in info.value.reason


def test_gpo_f_unknown_is_refused() -> None:
    with pytest.raises(InputError):
        psipo_cli.solve("paper-d1", "gpo", 1.0, gpo_f="cubic")


def test_rdpo_on_the_boundary_is_refused_with_a_reason() -> None:
    # a = 3, b = 1, eps = 1/4: sigma(z*) = (3/4 - 1/4) / (1/2) = 1, z* = +inf, while the slope at infinity is
    # ((1-e) b - e a) / (1 - 2e) = 0: bounded, not attained (by hand). Refused, not a fake optimum.
    with pytest.raises(InputError) as info:
        exact_solution("rdpo", two(3.0, 1.0), UNIFORM2, 1.0, label_smoothing=0.25)
    assert "exactly 0" in info.value.reason


def test_rdpo_subset_search_sees_sets_inside_a_component() -> None:
    # Two components: {0, 1} with a deterministic pair (unbounded on its own) and {2, 3} compared both ways.
    # The witness is {0}: inflow (0.9 * 0 - 0.1 * 2) / 0.8 = -0.25.
    W = np.zeros((4, 4))
    W[0, 1] = 2.0
    W[2, 3], W[3, 2] = 1.0, 1.0
    sol = exact_solution("rdpo", W, np.full(4, 0.25), 1.0, label_smoothing=0.1)
    assert sol.status == "unbounded" and sol.named == ((0,),) and "-0.25" in sol.detail
