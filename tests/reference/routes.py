"""Independent routes for the exact-solver tests: losses and gradients written out from their definitions
(paper Eqs. 2-7), reference optimisers, and problem builders. Nothing here calls the exact solvers.

Every expected value in those tests is derived by hand (the derivation is in a comment), or computed from a
loss written out from its definition (finite differences, scipy.optimize on the raw loss), or read off a
theorem of the paper. Nothing is computed with the helpers of the code under test.

Conventions of the code under test that the tests rely on (the README's "What the exact solver reports"):
- offsets `delta = log(pi / pi_ref)`, policies `pi ∝ pi_ref exp(delta)`;
- dataset losses are means over the recorded comparisons (same minimiser as the sums);
- RLHF's reward model is `mean_{(w,l)} -log sigmoid(r_w - r_l) + (rm_l2 / 2) ||r||^2`;
- canonical gauge: offsets sum to zero on each weakly connected component, zero on absent actions.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
from scipy.optimize import minimize
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import connected_components

import psipo_cli
from psipo_cli.problem import PRESETS, build_problem

TAUS = [0.1, 0.5, 1.0, 3.0]
WIDE_TAUS = list(np.logspace(-3, 3, 13))

# ============================================================================== independent reference maths


def softmax(z: np.ndarray) -> np.ndarray:
    z = np.asarray(z, dtype=float)
    finite = np.isfinite(z)
    out = np.zeros_like(z)
    e = np.exp(z[finite] - z[finite].max())
    out[finite] = e / e.sum()
    return out


def tilt(pi_ref: np.ndarray, target: np.ndarray) -> np.ndarray:
    """`pi ∝ pi_ref exp(target)`, with `pi = 0` where `pi_ref = 0`."""
    with np.errstate(divide="ignore"):
        return softmax(np.log(pi_ref) + target)


def pairs(W: np.ndarray) -> list[tuple[int, int, float]]:
    return [(int(w), int(l_), float(W[w, l_])) for w, l_ in zip(*np.nonzero(W), strict=True)]


def dpo_loss(delta: np.ndarray, W: np.ndarray, tau: float) -> float:
    """Paper Eq. 4, mean over comparisons: -log sigmoid(tau (delta_w - delta_l)) = log(1 + e^{-tau h})."""
    total = sum(c * math.log1p(math.exp(-tau * (delta[w] - delta[l_]))) for w, l_, c in pairs(W))
    return total / W.sum()


def dpo_grad(delta: np.ndarray, W: np.ndarray, tau: float) -> np.ndarray:
    # d/dh log(1 + e^{-tau h}) = -tau e^{-tau h} / (1 + e^{-tau h}) = -tau sigmoid(-tau h).
    g = np.zeros(len(delta))
    for w, l_, c in pairs(W):
        d = -tau / (1.0 + math.exp(tau * (delta[w] - delta[l_])))
        g[w] += c * d
        g[l_] -= c * d
    return g / W.sum()


def ipo_loss(delta: np.ndarray, W: np.ndarray, tau: float) -> float:
    """Paper Eq. 17, mean over comparisons: (h - 1/(2 tau))^2."""
    return sum(c * (delta[w] - delta[l_] - 0.5 / tau) ** 2 for w, l_, c in pairs(W)) / W.sum()


def ipo_grad(delta: np.ndarray, W: np.ndarray, tau: float) -> np.ndarray:
    g = np.zeros(len(delta))
    for w, l_, c in pairs(W):
        d = 2.0 * (delta[w] - delta[l_] - 0.5 / tau)
        g[w] += c * d
        g[l_] -= c * d
    return g / W.sum()


def reward_loss(r: np.ndarray, W: np.ndarray, l2: float) -> float:
    """RLHF stage 1 (paper Eq. 2 with a ridge): mean -log sigmoid(r_w - r_l) + (l2/2) ||r||^2."""
    return dpo_loss(r, W, 1.0) + 0.5 * l2 * float(r @ r)


def reward_grad(r: np.ndarray, W: np.ndarray, l2: float) -> np.ndarray:
    return dpo_grad(r, W, 1.0) + l2 * r


def psipo_value(delta: np.ndarray, pi_ref: np.ndarray, g: np.ndarray, tau: float) -> float:
    """Paper Eq. 6 for one context: sum_y pi(y) g(y) - tau KL(pi || pi_ref), pi ∝ pi_ref exp(delta)."""
    pi = tilt(pi_ref, delta)
    m = pi > 0
    return float(np.sum(pi[m] * g[m]) - tau * np.sum(pi[m] * np.log(pi[m] / pi_ref[m])))


def central_diff(f, x: np.ndarray, h: float = 1e-6) -> np.ndarray:
    """`(f(x + h e_i) - f(x - h e_i)) / 2h` for every coordinate: O(h^2) accurate."""
    g = np.zeros(len(x))
    for i in range(len(x)):
        e = np.zeros(len(x))
        e[i] = h
        g[i] = (f(x + e) - f(x - e)) / (2 * h)
    return g


def kl(pi: np.ndarray, ref: np.ndarray) -> float:
    m = pi > 0
    return float(np.sum(pi[m] * np.log(pi[m] / ref[m])))


def tv(p: np.ndarray, q: np.ndarray) -> float:
    return 0.5 * float(np.abs(np.asarray(p) - np.asarray(q)).sum())


def weak_components(W: np.ndarray) -> list[np.ndarray]:
    """Weakly connected components of the comparison graph (actions in at least one comparison)."""
    active = (W.sum(0) + W.sum(1)) > 0
    _, labels = connected_components(csr_matrix(W + W.T > 0), directed=False)
    return [np.flatnonzero((labels == k) & active) for k in np.unique(labels[active])]


def canonical(delta: np.ndarray, W: np.ndarray) -> np.ndarray:
    """The canonical gauge of docs/maths.md §2.2, applied to any minimiser."""
    out = np.zeros(len(delta))
    for members in weak_components(W):
        out[members] = delta[members] - delta[members].mean()
    return out


def bfgs(f, grad, n: int) -> np.ndarray:
    res = minimize(f, np.zeros(n), jac=grad, method="BFGS", options={"gtol": 1e-11, "maxiter": 10_000})
    return res.x


def strongly_connected(W: np.ndarray) -> bool:
    """Every comparison inside a strongly connected component (the MLE exists)."""
    _, labels = connected_components(csr_matrix(W > 0), directed=True, connection="strong")
    return all(labels[w] == labels[l_] for w, l_, _ in pairs(W))


# ============================================================================== problems and access


def problem_from(W: np.ndarray, pi_ref: np.ndarray | None = None, name: str = "random", **model) -> object:
    n = W.shape[0]
    table = {
        "name": name,
        "actions": [f"y{i}" for i in range(n)],
        "pairs": [{"winner": f"y{w}", "loser": f"y{l_}", "count": c} for w, l_, c in pairs(W)],
        **model,
    }
    if pi_ref is not None:
        table["pi_ref"] = [float(v) for v in pi_ref]
    return build_problem(table)


def model_problem(pi_ref, mu, P, name: str = "model") -> object:
    n = len(pi_ref)
    return build_problem(
        {
            "name": name,
            "actions": [f"y{i}" for i in range(n)],
            "pi_ref": [float(v) for v in pi_ref],
            "mu": [float(v) for v in mu],
            "preferences": np.asarray(P).tolist(),
        }
    )


def policies(frames, context: str = "default") -> dict[tuple[str, float], np.ndarray]:
    """{(method label, tau): policy vector in action order} from a Frames' policy table."""
    df = frames.policy[frames.policy["context"] == context]
    out = {}
    for (label, tau), grp in df.groupby(["method", "tau"], sort=False):
        out[(label, float(tau))] = grp["prob"].to_numpy()
    return out


def one_policy(problem, method: str, tau: float, **kw) -> np.ndarray:
    (pi,) = policies(psipo_cli.solve(problem, method, tau, **kw)).values()
    return pi


def statuses(frames) -> dict[tuple[str, float], str]:
    return {(r.method, float(r.tau)): r.status for r in frames.metrics.itertuples()}


def random_W(rng: np.random.Generator, n: int, density: float, both_ways: bool = False) -> np.ndarray:
    """Random integer win counts; `both_ways` makes every compared pair go both ways (MLE exists)."""
    W = np.zeros((n, n))
    for i, j in itertools.combinations(range(n), 2):
        if rng.random() < density:
            if both_ways:
                W[i, j], W[j, i] = rng.integers(1, 5, size=2)
            else:
                a, b = (i, j) if rng.random() < 0.5 else (j, i)
                W[a, b] = rng.integers(1, 4)
                if rng.random() < 0.3:
                    W[b, a] = rng.integers(1, 4)
    if not W.any():
        W[0, 1] = 1.0
    return W


def random_preferences(rng: np.random.Generator, n: int) -> np.ndarray:
    U = rng.random((n, n))
    P = np.triu(U, 1)
    P = P + np.tril(1.0 - P.T, -1)
    np.fill_diagonal(P, 0.5)
    return P


def random_simplex(rng: np.random.Generator, n: int, zeros: int = 0) -> np.ndarray:
    p = rng.dirichlet(np.ones(n))
    if zeros:
        p[rng.choice(n, size=zeros, replace=False)] = 0.0
    return p / p.sum()




def preset_objectives() -> list[tuple[str, str]]:
    out = []
    for name, table in PRESETS.items():
        if any(k in table for k in ("pairs", "sample")):
            out.append((name, "dataset"))
        if any(k in table for k in ("preferences", "rewards", "order")):
            out.append((name, "population"))
    return out
