"""The diverged limit of the logistic losses (no minimiser): the ridge path's end, ties between components.

Expected values are derived by hand (in a comment), from a loss written out from its definition, or from a
theorem of the paper — never with the code under test; the conventions relied on are listed in
`tests/reference/routes.py`.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from reference.routes import (
    one_policy,
    random_simplex,
    random_W,
    strongly_connected,
    tv,
)
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import connected_components
from scipy.special import expit
from support import exact_solution


@pytest.mark.parametrize("tau", [0.1, 0.25])
def test_diverged_limit_is_the_end_of_the_ridge_path(tau: float) -> None:
    """docs/maths.md §2.2: the reported limit is the rm_l2 -> 0+ limit of the ridge solution. Checked where the
    maximal component is unique (the split inside it is then fixed by its internal data)."""
    rng = np.random.default_rng(10)
    checked = 0
    for _ in range(60):
        n = int(rng.integers(3, 7))
        W = random_W(rng, n, 0.6)
        if strongly_connected(W):
            continue
        pi_ref = random_simplex(rng, n)
        limit = exact_solution("dpo", W, pi_ref, tau)
        assert limit.status == "diverged"
        ridge_path = [exact_solution("rlhf", W, pi_ref, tau, rm_l2=l2).policy for l2 in (1e-3, 1e-6, 1e-9, 1e-12)]
        gaps = [tv(p, limit.policy) for p in ridge_path]
        if "tie" in limit.detail:  # several top components: see the dedicated tests below
            continue
        assert gaps[-1] < 1e-4, (W, gaps)
        assert gaps[-1] <= gaps[0]
        checked += 1
    assert checked >= 15


def test_diverged_limit_d1_ridge_path() -> None:
    for tau in (0.1, 0.5, 1.0):
        gaps = [
            tv(one_policy("paper-d1", "rlhf", tau, rm_l2=l2), [1, 0, 0]) for l2 in (1e-2, 1e-4, 1e-6, 1e-8)
        ]
        assert all(b < a for a, b in itertools.pairwise(gaps)), gaps
        assert gaps[-1] < 1e-5


# ------------------------------------------------------------------ ties between components (docs/maths.md §4)
#
# Reference routes, written out here from the definitions (nothing from the code under test):
#
# 1. The ridge path at astronomically small l2. The stationarity condition of
#    `mean -log sigmoid(r_w - r_l) + (l2/2) ||r||^2` has, in each row, flows `W[w,l] sigma(-(r_w - r_l)) / N`
#    of size ~l2 log(1/l2) next to O(1) flows of comparisons inside a strongly connected component. Summed
#    over one component those internal flows cancel exactly, so that row is written out without them and
#    divided by l2: it keeps full relative precision, and Newton reaches l2 = e^-690 in double precision.
# 2. Extrapolation along the path. With x = log(1/l2), offsets grow like `T u` where `T + log T = x` (the
#    flows of the margin-1 comparisons are then `l2 T` times O(1), matching `l2 r`), and what is left is a
#    smooth function of eps = 1/T (up to terms ~l2^c and e^{-T (margin - 1)} from comparisons with spare
#    margin, far below rounding here): a ridge problem in eps on the finite part. So a polynomial in eps
#    through the path at x in [300, 690] extrapolates it to eps = 0. In 1/x instead the path has log(x)/x
#    terms and the same fit is poor; at l2 = 1e-12 the policy is still ~3e-3 off. Not smooth where a
#    multiplier is forced to 0 (log-log terms): `test_tie_decided_one_level_down` does that case in
#    110+-digit arithmetic, one level further down.
# 3. Gradient flow in log-time: `dr/dt = -grad F(r)`, integrated in s = log t (`dr/ds = -e^s grad F`,
#    implicit Radau, tolerance 1e-11). Accurate in double precision for data without cycles (every gradient
#    term is then a flow ~1/t, no cancellation); the offsets settle like t^-c with c the smallest multiplier.

TIE_PATH = np.linspace(300.0, 690.0, 9)  # x = log(1/l2)


def scc_labels(W: np.ndarray) -> np.ndarray:
    return connected_components(csr_matrix(W > 0), directed=True, connection="strong")[1]


def ridge_stationarity(r: np.ndarray, W: np.ndarray, l2: float, labels: np.ndarray):
    """Ridge stationarity residual and Jacobian; each component's first row replaced by its row sum / l2."""
    n = len(r)
    w, l_ = np.nonzero(W)
    c = W[w, l_] / W.sum()
    h = r[w] - r[l_]
    flow, dflow = c * expit(-h), c * expit(-h) * expit(h)
    E = np.zeros((len(w), n))
    E[np.arange(len(w)), w], E[np.arange(len(w)), l_] = 1.0, -1.0
    F = -E.T @ flow + l2 * r
    J = E.T @ (dflow[:, None] * E) + l2 * np.eye(n)
    sep = labels[w] != labels[l_]
    for k in np.unique(labels):
        members = labels == k
        EK = E[sep][:, members].sum(axis=1)  # +1 if the winner is in k, -1 if the loser is
        first = np.flatnonzero(members)[0]
        F[first] = (-EK @ flow[sep] + l2 * r[members].sum()) / l2
        J[first] = ((EK * dflow[sep]) @ E[sep] + l2 * members) / l2
    return F, J


def reference_ridge_path(W: np.ndarray, xs: np.ndarray) -> np.ndarray:
    """Ridge reward models at l2 = e^-x for each x in `xs` (ascending), by damped Newton with continuation."""
    labels = scc_labels(W)
    grid = [*np.geomspace(1.0, xs[0], 25)[:-1], *xs]
    path: list[np.ndarray] = []
    for k, x in enumerate(grid):
        if k >= 2:  # linear extrapolation in x of the last two solutions
            r = path[-1] + (path[-1] - path[-2]) * (x - grid[k - 1]) / (grid[k - 1] - grid[k - 2])
        else:
            r = path[-1] if path else np.zeros(W.shape[0])
        F, J = ridge_stationarity(r, W, math.exp(-x), labels)
        for _ in range(100):
            step = np.linalg.solve(J, -F)
            t = 1.0
            while True:
                F_new, J_new = ridge_stationarity(r + t * step, W, math.exp(-x), labels)
                if np.linalg.norm(F_new) <= (1 - 1e-4 * t) * np.linalg.norm(F) or t < 1e-10:
                    break
                t /= 2
            r, F, J = r + t * step, F_new, J_new
            if np.max(np.abs(t * step)) < 1e-14 * max(1.0, np.abs(r).max()):
                break
        path.append(r)
    return np.array(path[-len(xs) :])


def path_eps(x: float) -> float:
    """eps = 1/T with T + log T = x (fixed point iteration, a contraction for x > 2)."""
    T = x
    for _ in range(60):
        T = x - math.log(T)
    return 1.0 / T


def extrapolate(xs: np.ndarray, values: np.ndarray, degree: int) -> float:
    return float(np.polyfit([path_eps(x) for x in xs], values, degree)[-1])


def gradient_flow(W: np.ndarray, s_end: float) -> object:
    """Gradient flow on the mean logistic loss from r = 0: t in [0, 1], then s = log t in [0, s_end]."""
    from scipy.integrate import solve_ivp

    w, l_ = np.nonzero(W)
    c = W[w, l_] / W.sum()
    E = np.zeros((len(w), W.shape[0]))
    E[np.arange(len(w)), w], E[np.arange(len(w)), l_] = 1.0, -1.0

    def grad(r):
        return -E.T @ (c * expit(-(E @ r)))

    def hess(r):
        h = E @ r
        return E.T @ ((c * expit(-h) * expit(h))[:, None] * E)

    first = solve_ivp(lambda t, r: -grad(r), (0.0, 1.0), np.zeros(W.shape[0]), method="Radau",
                      rtol=1e-11, atol=1e-13, jac=lambda t, r: -hess(r))
    return solve_ivp(lambda s, r: -math.exp(s) * grad(r), (0.0, s_end), first.y[:, -1], method="Radau",
                     rtol=1e-11, atol=1e-13, jac=lambda s, r: -math.exp(s) * hess(r), dense_output=True).sol


def tie_W(n: int, counts: dict[tuple[int, int], float]) -> np.ndarray:
    W = np.zeros((n, n))
    for (w, l_), c in counts.items():
        W[w, l_] = c
    return W


def test_symmetric_tie_between_components() -> None:
    """a > b and c > d, once each: two identical source components, the ridge path keeps them equal."""
    W = tie_W(4, {(0, 1): 1, (2, 3): 1})
    for tau in (0.1, 1.0, 10.0):
        np.testing.assert_allclose(exact_solution("dpo", W, np.full(4, 0.25), tau).policy, [0.5, 0, 0.5, 0], atol=1e-9)


@pytest.mark.parametrize("tau", [0.5, 1.0])
def test_asymmetric_tie_between_components(tau: float) -> None:
    """a > b once and c > d twice. Ridge FOC per component (mean loss, N = 3): with r_a = -r_b = x1 and
    r_c = -r_d = x2, sigmoid(-2 x_k) = (N rm_l2 / c_k) x_k, i.e. 2 x_k + log x_k ≈ log(c_k / (N rm_l2)).
    So 2 (x2 - x1) = log(c2 / c1) - log(x2 / x1) -> log 2 as rm_l2 -> 0 (both x_k ~ log(1/rm_l2)/2):
    r_c - r_a -> log(2)/2 and pi(a) / pi(c) -> 2^(-1/(2 tau)). Gradient descent (Soudry et al.) gives the
    same: dx_k/dt ∝ c_k e^{-2 x_k}, x_k = log(4 c_k t / N) / 2."""
    W = tie_W(4, {(0, 1): 1, (2, 3): 2})
    pa = 1.0 / (1.0 + 2 ** (1 / (2 * tau)))
    pi = exact_solution("dpo", W, np.full(4, 0.25), tau).policy
    np.testing.assert_allclose(pi, [pa, 0, 1 - pa, 0], atol=1e-10)
    assert pi[1] == pi[3] == 0.0


def test_asymmetric_tie_against_the_ridge_path_and_gradient_flow() -> None:
    """The same limit, log(2)/2 for r_c - r_a, by routes 1-3 above: the ridge path out to l2 = e^-690,
    extrapolated in eps; and gradient flow to t = e^25. Also shows why a finite rm_l2 cannot do: at
    rm_l2 = 1e-12 the ridge solution is still ~1e-2 off in r_c - r_a."""
    W = tie_W(4, {(0, 1): 1, (2, 3): 2})
    exact = math.log(2) / 2
    pi = exact_solution("dpo", W, np.full(4, 0.25), 1.0).policy
    code = math.log(pi[2] / pi[0])
    path = reference_ridge_path(W, TIE_PATH)
    gap = path[:, 2] - path[:, 0]
    assert abs(extrapolate(TIE_PATH, gap, 3) - exact) < 1e-9
    assert abs(code - exact) < 1e-12
    assert "gradient descent" not in exact_solution("dpo", W, np.full(4, 0.25), 1.0).detail
    assert abs(gap[-1] - exact) > 1e-4  # at l2 = e^-690 the raw path is still 5e-4 away
    ridge_at_1e12 = reference_ridge_path(W, np.array([12 * math.log(10)]))[0]
    assert abs(ridge_at_1e12[2] - ridge_at_1e12[0] - exact) > 5e-3
    flow = gradient_flow(W, 25.0)
    assert abs(flow(25.0)[2] - flow(25.0)[0] - exact) < 1e-8


@pytest.mark.parametrize("tau", [0.3, 1.0, 4.0])
def test_tie_of_two_sources_sharing_a_loser(tau: float) -> None:
    """a > c three times, b > c once. Max-margin: u_a = u_b = 1/3, u_c = -2/3 (multipliers 1/3 each), so a
    and b tie in one component. Ridge FOC: (3/N) sigmoid(-(r_a - r_c)) = l2 r_a, (1/N) sigmoid(-(r_b - r_c))
    = l2 r_b; dividing, 3 e^{-(r_a - r_b)} ≈ r_a / r_b -> 1, so r_a - r_b -> log 3 and
    pi(a) / pi(b) -> (pi_ref(a) / pi_ref(b)) 3^(1/tau). Gradient flow: the same ratio of the two flows."""
    W = tie_W(3, {(0, 2): 3, (1, 2): 1})
    pi_ref = np.array([0.2, 0.5, 0.3])
    pi = exact_solution("dpo", W, pi_ref, tau).policy
    ratio = 0.2 / 0.5 * 3 ** (1 / tau)
    np.testing.assert_allclose(pi, [ratio / (1 + ratio), 1 / (1 + ratio), 0], atol=1e-10)
    if tau == 1.0:
        path = reference_ridge_path(W, TIE_PATH)
        assert abs(extrapolate(TIE_PATH, path[:, 0] - path[:, 1], 3) - math.log(3)) < 1e-8
        flow = gradient_flow(W, 40.0)  # settles like t^(-1/3): e^(-40/3) ~ 1e-6
        assert abs(flow(40.0)[0] - flow(40.0)[1] - math.log(3)) < 1e-4


@pytest.mark.parametrize("tau", [0.5, 1.0, 3.0])
def test_tie_of_a_cycle_with_a_pair(tau: float) -> None:
    """Component K = {a, b} with a > b twice and b > a once (internal MLE r_a - r_b = log 2), K beats e
    (a > e) and f (b > f) once each; separately c > d three times; g is never compared. N = 8.
    Max-margin: 2 u_K = alpha_e + alpha_f, u_e = -alpha_e, u_f = -alpha_f, margins 1: alpha = 1/2 each,
    u_K = 1/2 = u_c. Ridge FOC: e and f rows give -r_e N l2 = e^{-(r_a - r_e)}, -r_f N l2 = e^{-(r_b - r_f)};
    their ratio -> 1 forces r_a - r_e = r_b - r_f, i.e. r_e - r_f = log 2; the weak component sums to 0,
    so with x = -r_e: r_a = x + log 2, r_b = x and e^{-2x} / 2 = N l2 x. The pair: c = -d = y with
    3 e^{-2y} = N l2 y. Subtracting: 2 (y - x) -> log 6, so r_c - r_a -> log(6)/2 - log 2 = log(3/2)/2
    (r_c - r_b -> log(6)/2) and pi ∝ pi_ref (2, 1, sqrt 6)^(1/tau) on (a, b, c), 0 elsewhere."""
    a, b, e, f, c, d = range(6)
    W = tie_W(7, {(a, b): 2, (b, a): 1, (a, e): 1, (b, f): 1, (c, d): 3})
    pi_ref = np.array([0.1, 0.2, 0.1, 0.1, 0.3, 0.1, 0.1])
    weights = pi_ref[[a, b, c]] * np.array([2.0, 1.0, 6**0.5]) ** (1 / tau)
    expected = np.zeros(7)
    expected[[a, b, c]] = weights / weights.sum()
    np.testing.assert_allclose(exact_solution("dpo", W, pi_ref, tau).policy, expected, atol=1e-10)
    if tau == 1.0:
        path = reference_ridge_path(W, TIE_PATH)
        assert abs(extrapolate(TIE_PATH, path[:, c] - path[:, a], 3) - math.log(1.5) / 2) < 1e-8


@pytest.mark.parametrize("tau", [0.5, 2.0])
def test_tie_of_a_cycle_and_a_singleton_beating_the_same_loser(tau: float) -> None:
    """K = {a, b} with a > b three times, b > a once (r_a - r_b -> log 3), and c, all beat d: a > d once,
    b > d twice, c > d once. Max-margin (sizes 2, 1, 1): u_K = u_c = 1/4, u_d = -3/4, one component.
    Ridge FOC, rows of K summed and row c, with r_a = k + log(3)/2, r_b = k - log(3)/2:
    e^{-(k - r_d)} (3^{-1/2} + 2 * 3^{1/2}) / N = 2 l2 k and e^{-(r_c - r_d)} / N = l2 r_c. Dividing, with
    k / r_c -> 1: k - r_c -> log(7 / (2 sqrt 3)), so r_a - r_c -> log(7/2) and r_b - r_c -> log(7/6)."""
    a, b, c, d = range(4)
    W = tie_W(4, {(a, b): 3, (b, a): 1, (a, d): 1, (b, d): 2, (c, d): 1})
    pi_ref = np.array([0.3, 0.2, 0.4, 0.1])
    weights = pi_ref[:3] * np.array([3.5, 7 / 6, 1.0]) ** (1 / tau)
    policy = exact_solution("dpo", W, pi_ref, tau).policy
    np.testing.assert_allclose(policy, [*(weights / weights.sum()), 0], atol=1e-10)
    if tau == 2.0:
        path = reference_ridge_path(W, TIE_PATH)
        assert abs(extrapolate(TIE_PATH, path[:, a] - path[:, c], 3) - math.log(3.5)) < 1e-8


def test_tie_broken_at_order_log_log() -> None:
    """a > b, c > d and a > d, once each (N = 3). Max-margin u = (1/2, -1/2, 1/2, -1/2): all three margins
    are 1, but the multipliers are forced: u_b = -alpha_ab, u_c = alpha_cd, u_a = alpha_ab + alpha_ad give
    alpha_ad = 0. The ridge FOC, with p, q, s = flows / (N l2) of a>b, c>d, a>d: r_a = p + s, r_b = -p,
    r_c = q, r_d = -q - s and p = e^{-(2p + s)} / (3 l2), q = e^{-(2q + s)} / (3 l2),
    s = e^{-(p + q + 2s)} / (3 l2). So p = q, s / p = e^{-s}: r_a - r_c = s with s e^s = p ~ log(1/l2)/2.
    The gap grows without bound, like log log(1/l2): the limit puts all mass on a, for every tau, although
    at l2 = 1e-12 c still has 14% of it, and 1.3% at l2 = e^-690 (tau = 1). The reference path follows
    s e^s = p to 1e-9."""
    W = tie_W(4, {(0, 1): 1, (2, 3): 1, (0, 3): 1})
    for tau in (0.5, 1.0, 5.0):
        sol = exact_solution("dpo", W, np.full(4, 0.25), tau)
        np.testing.assert_array_equal(sol.policy, [1.0, 0, 0, 0])
        assert "log log(1/l2)" in sol.detail
    path = reference_ridge_path(W, np.array([12 * math.log(10), 100.0, 300.0, 690.0]))
    p, s = -path[:, 1], path[:, 0] - path[:, 2]
    np.testing.assert_allclose(s * np.exp(s), p, rtol=1e-9)
    assert np.all(np.diff(s) > 0.2) and 1.5 < s[0] < 2.5 and s[-1] > 4


def test_tie_decided_one_level_down() -> None:
    """Two copies of {a > b, a > c, b > d} (counts (2, 1, 2) and (1, 1, 1); N = 10). Level 1: u = (1, 0, 0,
    -1) in each; a > c has margin 1 but multiplier 0 (u_c = -alpha_ac = 0), so {a, b, d} is fixed by the
    flows = multipliers alpha_ab = alpha_bd = 1: (W_ab / N) e^{-(r_a - r_b)} = 1, (W_bd / N) e^{-(r_b - r_d)}
    = 1 (up to the common T u), centred: phi_a = (2 log(W_ab / N) + log(W_bd / N)) / 3. Its constant against c
    is set one order down, by the same max-margin problem on {a, b, d} (size 3) -> c (size 1): u2 = (1/4,
    -3/4), multiplier 3/4 = s e^{-(psi - psi_c)} with s = (W_ac / N) e^{-phi_a}, centred: psi =
    log(4 s / 3) / 4. Both copies have u2 = 1/4 at a, so they still tie, and r_a - r_a' -> (phi_a + psi) -
    (phi_a' + psi'). The ridge path converges here only like 1/log log(1/l2): still 1.5e-3 away at
    l2 = exp(-e^120). The check: ridge path in 110-digit arithmetic out to that l2, extrapolated in
    eps2 = 1/T2, T2 + log T2 = log T (T as above): route 2 one level down."""
    W = tie_W(8, {(0, 1): 2, (0, 2): 1, (1, 3): 2, (4, 5): 1, (4, 6): 1, (5, 7): 1})
    N = W.sum()

    def offset(ab: float, ac: float, bd: float) -> float:
        phi_a = (2 * math.log(ab / N) + math.log(bd / N)) / 3
        return phi_a + math.log(4 * (ac / N) * math.exp(-phi_a) / 3) / 4

    exact = offset(2, 1, 2) - offset(1, 1, 1)
    for tau in (0.5, 1.0):
        pi = exact_solution("dpo", W, np.full(8, 1 / 8), tau).policy
        assert math.log(pi[0] / pi[4]) == pytest.approx(exact / tau, abs=1e-10)
        assert pi[[1, 2, 3, 5, 6, 7]].max() == 0.0
    mp = pytest.importorskip("mpmath")
    mp.mp.dps = 130  # offsets reach e^120 ~ 1e52 and must keep ~60 digits after the point
    xs = np.linspace(4.5, 120.0, 30)  # log log(1/l2); the first 12 points only start the continuation
    path = high_precision_ridge_path(W, [mp.exp(x) for x in [*np.linspace(0.5, 4.0, 12), *xs]], mp)[12:]
    eps2 = []
    for x in xs:  # T + log T = e^x, then T2 + log T2 = log T
        T = mp.lambertw(mp.exp(mp.exp(x))).real
        eps2.append(float(1 / mp.lambertw(T).real))
    gap = np.array([float(r[0] - r[4]) for r in path])
    assert abs(gap[-1] - exact) > 1e-3
    assert abs(np.polyfit(eps2, gap, 7)[-1] - exact) < 1e-6  # degrees 4, 6, 8: 6e-6, 9e-7, 4e-9


def test_tie_across_a_comparison_with_spare_margin() -> None:
    """Chains a > b > x (once each) and c > y > z (c > y twice), plus a > z once; N = 6. u = (1, 0, -1) on
    each chain; a > z has margin 2, so its flow is ~l2^2 and drops out. Ridge FOC with r = T u + phi
    (T + log T = log(1/l2), so e^-T = l2 T): rows a and x give (W_ab / N) e^{-(phi_a - phi_b)} = 1 and
    (W_bx / N) e^{-(phi_b - phi_x)} = 1; each chain sums to 0 (only the a > z flow joins them). So
    phi_a = (2 log(W_ab / N) + log(W_bx / N)) / 3 per chain and r_c - r_a -> 2 log(2) / 3.
    Gradient flow from 0 keeps only the total sum: a > z moves offset between the chains, and
    its flow (O(1/t^2), integrable) shifts the chain sums by finite amounts set by the whole run. Here
    r_c - r_a settles near 0.0116, not 0.462: the note says gradient descent need not approach this split."""
    a, b, x, c, y, z = range(6)
    W = tie_W(6, {(a, b): 1, (b, x): 1, (c, y): 2, (y, z): 1, (a, z): 1})
    sol = exact_solution("dpo", W, np.full(6, 1 / 6), 1.0)
    assert math.log(sol.policy[c] / sol.policy[a]) == pytest.approx(2 * math.log(2) / 3, abs=1e-10)
    assert "gradient descent" in sol.detail
    path = reference_ridge_path(W, TIE_PATH)
    assert abs(extrapolate(TIE_PATH, path[:, c] - path[:, a], 3) - 2 * math.log(2) / 3) < 1e-8
    flow = gradient_flow(W, 25.0)
    settled = flow(25.0)[c] - flow(25.0)[a]
    assert abs(settled - (flow(20.0)[c] - flow(20.0)[a])) < 1e-6
    assert abs(settled - 2 * math.log(2) / 3) > 0.4
    # Without a > z both routes agree, and the note has no caveat.
    W[a, z] = 0
    sol = exact_solution("dpo", W, np.full(6, 1 / 6), 1.0)
    assert "gradient descent" not in sol.detail
    flow = gradient_flow(W, 30.0)
    assert abs(flow(30.0)[c] - flow(30.0)[a] - 2 * math.log(2) / 3) < 1e-6


def high_precision_ridge_path(W: np.ndarray, xs: list, mp) -> list:
    """Ridge stationarity solved by damped Newton in mpmath at l2 = exp(-x) (x ascending, mp numbers).

    No rearranged rows needed: the working precision covers the cancellations."""
    n = W.shape[0]
    N = mp.mpf(float(W.sum()))
    comparisons = [(int(w), int(l_), mp.mpf(float(W[w, l_])) / N) for w, l_ in zip(*np.nonzero(W), strict=True)]

    def residual(r, l2):
        F, J = [l2 * r[i] for i in range(n)], mp.eye(n) * l2
        for w, l_, c in comparisons:
            s = 1 / (1 + mp.exp(r[w] - r[l_]))
            F[w] -= c * s
            F[l_] += c * s
            for i, sign in ((w, 1), (l_, -1)):
                J[i, w] += sign * c * s * (1 - s)
                J[i, l_] -= sign * c * s * (1 - s)
        return mp.matrix(F) / l2, J / l2

    # Start each solve from the curve r = T a + log(T) b + c through the last three solutions: the level-1
    # and level-2 terms of the expansion (T + log T = x); a straight line in x would overshoot by ~x.
    path, Ts = [], []
    r = mp.matrix([0] * n)
    for k, x in enumerate(xs):
        T = mp.lambertw(mp.exp(x)).real
        if k >= 3:
            basis = mp.matrix([[Ts[i], mp.log(Ts[i]), 1] for i in (-3, -2, -1)])
            point = mp.matrix([[T, mp.log(T), 1]])
            weights = point * mp.inverse(basis)  # Lagrange weights of the three previous solutions
            r = weights[0] * path[-3] + weights[1] * path[-2] + weights[2] * path[-1]
        elif path:
            r = path[-1]
        Ts.append(T)
        l2 = mp.exp(-x)
        F, J = residual(r, l2)
        for _ in range(200):
            step = mp.lu_solve(J, -F)
            t = mp.mpf(1)
            while True:
                F_new, J_new = residual(r + t * step, l2)
                if mp.norm(F_new) <= (1 - t / 10**4) * mp.norm(F) or t < mp.mpf(10) ** -30:
                    break
                t /= 2
            r, F, J = r + t * step, F_new, J_new
            if mp.norm(step) < mp.mpf(10) ** -60 * (1 + mp.norm(r)):
                break
        path.append(r)
    return path


def test_random_ties_against_the_ridge_path() -> None:
    """u depends only on which component beats which and on the component sizes, not on the counts: disjoint
    copies of one random pattern, each with its own random counts, tie at the top of u. Half the cases also
    get one comparison from copy 0 to copy 1, which may break the tie, keep it, or create a multiplier
    forced to 0. Reference: the ridge path (route 1) extrapolated in eps (route 2), with pi_ref and tau
    random. Where a multiplier is forced to 0 the path is not smooth in eps (log-log terms, see the two
    tests above): the extrapolations of degree 3 and 4 then disagree, and the check is only that the path
    moves towards the reported limit at every step."""
    rng = np.random.default_rng(21)
    checked = ties = trends = 0
    for _ in range(40):
        k = int(rng.integers(2, 5))
        while True:
            pattern = random_W(rng, k, 0.7) > 0
            if not strongly_connected(pattern.astype(float)):
                break
        copies = int(rng.integers(2, 4))
        n = k * copies
        W = np.zeros((n, n))
        for j in range(copies):
            block = slice(j * k, (j + 1) * k)
            W[block, block] = pattern * rng.integers(1, 5, size=(k, k))
        if rng.random() < 0.5:
            W[int(rng.integers(k)), k + int(rng.integers(k))] += 1
        pi_ref = random_simplex(rng, n)
        tau = float(rng.choice([0.3, 1.0, 3.0]))
        pi = exact_solution("dpo", W, pi_ref, tau).policy
        path = reference_ridge_path(W, TIE_PATH)
        lead = int(np.argmax(path[-1]))
        top = path[-1] - path[-1, lead] > -20.0  # the rest trail by >= gap(u) * 690 (gaps are >= 1/12 here)
        gaps = path[:, top] - path[:, [lead]]
        limit = np.array([extrapolate(TIE_PATH, g, 3) for g in gaps.T])
        smooth = np.max(np.abs(limit - [extrapolate(TIE_PATH, g, 4) for g in gaps.T])) < 1e-7
        if smooth:
            assert np.array_equal(top, pi > 0), (W, top, pi)
            weights = pi_ref[top] * np.exp((limit - limit.max()) / tau)
            np.testing.assert_allclose(pi[top], weights / weights.sum(), atol=1e-7, err_msg=str(W))
            checked += 1
            ties += len(np.unique(scc_labels(W)[top])) > 1
        else:
            # r_j - r_i for winners i, j of the limit, or -> -inf when j gets 0: the path must head there.
            winner = int(np.argmax(pi))
            for j in np.flatnonzero(top):
                d = path[:, j] - path[:, winner]
                ratio = pi[j] * pi_ref[winner] / (pi[winner] * pi_ref[j])
                target = tau * math.log(ratio) if pi[j] > 0 else -np.inf
                if j != winner:
                    assert np.all(np.diff(d) * np.sign(target - d[:-1]) > 0), (W, j, d, target)
            trends += 1
    assert checked >= 30 and ties >= 15 and trends >= 1, (checked, ties, trends)


@pytest.mark.parametrize("compiled_from", [pytest.param(100, id="numpy-loop"), pytest.param(0, id="compiled")])
def test_nonneg_quadratic_matches_scipy_nnls_on_the_normal_equations(
    compiled_from: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`_nonneg_quadratic(C^T C, C^T d)` is `argmin_{x >= 0} ||C x - d||`, which scipy's NNLS solves
    independently; dependent columns (as dependent margin constraints give) included. Both routes: the
    numpy loop and (every size handed to it) the compiled NNLS on the Cholesky factor of the normal
    equations."""
    from scipy.optimize import nnls

    import psipo_cli.methods.pairwise._limit as limit
    from psipo_cli.methods.pairwise._limit import _nonneg_quadratic

    monkeypatch.setattr(limit, "COMPILED_NNLS_FROM", compiled_from)

    rng = np.random.default_rng(3)
    for trial in range(60):
        m, k = int(rng.integers(2, 9)), int(rng.integers(1, 7))
        C = rng.normal(size=(m, k))
        if trial % 3 == 0 and k > 2:  # a column that is the sum of two others: C^T C is singular
            C[:, 2] = C[:, 0] + C[:, 1]
        d = rng.normal(size=m)
        x = _nonneg_quadratic(C.T @ C, C.T @ d)
        assert np.all(x >= 0)
        _, best = nnls(C, d)
        assert np.linalg.norm(C @ x - d) == pytest.approx(best, rel=1e-8, abs=1e-10)


def test_max_margin_needs_no_scipy_optimize() -> None:
    """The DPO limit on the paper's D1 (a > b > c, each comparison once) is computed without importing
    scipy.optimize (~0.2 s of a CLI call's start-up). The max-margin direction there, by hand: minimise
    `u_a^2 + u_b^2 + u_c^2` with `u_a - u_b >= 1`, `u_b - u_c >= 1` (so `u_a - u_c >= 2 >= 1`): both active,
    and the minimum-norm solution is `u = (1, 0, -1)`."""
    import subprocess
    import sys

    code = (
        "import sys, numpy as np; from psipo_cli.methods.linalg import comparison_graph; "
        "from psipo_cli.methods.pairwise._limit import max_margin_direction; "
        "W = np.array([[0, 1, 1], [0, 0, 1], [0, 0, 0]], float); "
        "print(*max_margin_direction(W, comparison_graph(W)), 'scipy.optimize' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert [float(x) for x in out[:3]] == pytest.approx([1.0, 0.0, -1.0], abs=1e-12)
    assert out[3] == "False"


def test_the_level_one_max_margin_qp_is_solved_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """a > c and b > c once each: the max-margin direction ties a and b (minimise `u_a^2 + u_b^2 + u_c^2` with
    `u_a - u_c >= 1`, `u_b - u_c >= 1`: `u = (2/3, 2/3, -1/3)`), so the limit needs the expansion between the
    tied components, whose first level is that same QP: one solve, not two (on a graph of 10^5 actions it is
    the costliest step). Both edges carry a positive multiplier, so the expansion ends at level 1 and the
    tie splits evenly by symmetry. The multipliers of that QP are unique and positive, so the check that the
    polished solution is a KKT point needs no second non-negative least-squares solve: one in all."""
    import psipo_cli.methods.pairwise._limit as limit
    from psipo_cli.methods import get_method
    from psipo_cli.methods.linalg import comparison_graph

    calls: list[int] = []
    original = limit._min_norm_margin

    def counted(size: np.ndarray, edges: np.ndarray) -> np.ndarray:
        calls.append(len(edges))
        return original(size, edges)

    monkeypatch.setattr(limit, "_min_norm_margin", counted)
    nnls_calls: list[int] = []
    nnls = limit._nonneg_quadratic

    def counted_nnls(M: np.ndarray, b: np.ndarray) -> np.ndarray:
        nnls_calls.append(len(b))
        return nnls(M, b)

    monkeypatch.setattr(limit, "_nonneg_quadratic", counted_nnls)
    W = np.array([[0.0, 0.0, 1.0], [0.0, 0.0, 1.0], [0.0, 0.0, 0.0]])
    loss = get_method("dpo").loss
    out = limit.separated_limit(W, np.full(3, -np.log(3)), comparison_graph(W), loss)
    assert calls == [2] and nnls_calls == [2]
    np.testing.assert_allclose(out.policy(np.full(3, -np.log(3)), 1.0), [0.5, 0.5, 0.0], atol=1e-12)


def test_condensation_strengths_are_logarithms_that_do_not_underflow() -> None:
    """`scc_quotient` returns `log a_KJ`, `a_KJ = sum W[w, l] exp(-(m_w - m_l)) / sum W` over the separating
    comparisons `K -> J` (docs/maths.md §2.2). Here {0, 3} is one component (0 beats 3 once, 3 beats 0
    1e-300 times) with internal offsets m_0 = 400, m_3 = -400, and 0 beats 1 1e-300 times: by hand
    log a = log(1e-300) - (400 - 0) - log(sum W) = -690.78 - 400 - log(2 + 2e-300) ≈ -1091.47, so `a` itself
    is below the smallest double (about e^-745) and a product `W exp(-(m_w - m_l))` would be 0."""
    from psipo_cli.methods.linalg import comparison_graph
    from psipo_cli.methods.pairwise._limit import scc_quotient

    W = np.zeros((4, 4))
    W[0, 3], W[3, 0], W[0, 1], W[2, 1] = 1.0, 1e-300, 1e-300, 1.0
    m = np.array([400.0, 0.0, 0.0, -400.0])
    node, _, edges, log_strength = scc_quotient(W, comparison_graph(W), m)
    assert node[0] == node[3] and len({node[0], node[1], node[2]}) == 3
    total = W.sum()
    by_edge = {(int(k), int(j)): s for (k, j), s in zip(edges, log_strength, strict=True)}
    assert by_edge[(node[0], node[1])] == pytest.approx(math.log(1e-300) - 400.0 - math.log(total), rel=1e-14)
    assert by_edge[(node[2], node[1])] == pytest.approx(math.log(1.0) - math.log(total), abs=1e-14)
    assert len(by_edge) == 2


def test_reward_model_limit_with_rewards_in_the_thousands_is_finite_and_warning_free() -> None:
    """Found by the numerics fuzzer: population Bradley-Terry with rewards (0, 0, 1000, -500) and pi_ref
    (1e-24, 1e-300, 1e-24, 1). In doubles sigma(±1000) and sigma(1500) round to 1 or 0, so the preferences are
    deterministic except a0 vs a1 (1/2) and a3 beating a0 with sigma(-500) ≈ 7e-218 (a0, a3 one component with
    internal offsets 500 apart); the condensation's strengths then span e^±1000, beyond a double. In exact
    arithmetic RLHF's optimum is pi ∝ pi_ref exp(r / tau): at tau = 1e-4 a2's weight beats every other by a
    factor of at least 1e-24 exp(1000 / 1e-4), so the answer is one-hot on a2, and so is the separable limit."""
    import warnings

    from psipo_cli import api
    from psipo_cli.problem import build_problem

    problem = build_problem({"name": "big-rewards", "actions": ["a0", "a1", "a2", "a3"],
                             "pi_ref": [1e-24, 1e-300, 1e-24, 1.0], "rewards": [0.0, 0.0, 1000.0, -500.0]})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        frames = api.solve(problem, ["rlhf", "dpo"], [1e-4], solver="exact")
    for method in ("rlhf", "dpo"):
        policy = frames.policy[frames.policy.method == method].sort_values("action")["prob"].to_numpy()
        np.testing.assert_array_equal(policy, [0.0, 0.0, 1.0, 0.0])
