"""Shared machinery of the exact solvers: comparison graphs, Laplacian systems and damped Newton.

The pairwise losses on a win-count matrix `W` (paper Eqs. 4 and 17) and RLHF's reward model (paper Eq. 2)
share it.

A pairwise loss `L(delta) = mean_{(w, l) ~ W} f(delta_w - delta_l)` depends on the offsets only through
differences, so its gradient `f'(h) (e_w - e_l)` sums to zero on every connected component of the
comparison graph: this is where the canonical gauge (zero sum per component, zero on absent actions) comes
from.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from psipo_cli.methods.spec import PairFn
from psipo_cli.numerics import softmax


def pairs_of(W: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The distinct recorded comparisons of `W`: winners, losers and their counts."""
    w, l_ = np.nonzero(W)
    return w, l_, W[w, l_]


def mean_pair_loss(delta: np.ndarray, W: np.ndarray, f: PairFn, tau: float) -> float:
    """`sum_{w,l} W[w,l] f(delta_w - delta_l) / sum W` — the mean loss per comparison."""
    w, l_, c = pairs_of(W)
    return float(np.sum(c * f(delta[w] - delta[l_], tau)) / np.sum(c))


def mean_pair_grad(delta: np.ndarray, W: np.ndarray, df: PairFn, tau: float) -> np.ndarray:
    """Gradient of `mean_pair_loss` with respect to `delta`: `sum W f'(h) (e_w - e_l) / sum W`."""
    w, l_, c = pairs_of(W)
    g = c * df(delta[w] - delta[l_], tau) / np.sum(c)
    n = len(delta)
    return np.bincount(w, weights=g, minlength=n) - np.bincount(l_, weights=g, minlength=n)


def laplacian_rhs(W: np.ndarray) -> np.ndarray:
    """`b = sum W[w,l] (e_w - e_l)`: wins minus losses of each action (the right-hand side of IPO's
    normal equations `Lap delta = b / (2 tau)`)."""
    return W.sum(axis=1) - W.sum(axis=0)


def unseen_actions(W: np.ndarray, pi_ref: np.ndarray) -> tuple[int, ...]:
    """Actions pi_ref supports that appear in no comparison of `W` (on the population objective, where
    `W = mu mu^T P`, those outside supp mu): a pairwise loss never sees them, so it does not determine their
    offsets, which the canonical gauge leaves at 0."""
    active = (W.sum(axis=0) + W.sum(axis=1)) > 0
    return tuple(np.flatnonzero(~active & (pi_ref > 0)).tolist())


def forest_pairs(W: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """The compared pairs `(x, y)`, `x < y`, if they form a forest (no cycle, directions ignored), else None.

    On a forest the differences `delta_x - delta_y` along the pairs can be set independently, so a pairwise
    loss is minimised pair by pair: the closed forms of DPO and IPO on such data.
    """
    S = W + W.T
    x, y = np.nonzero(np.triu(S, 1))
    active = S.sum(axis=1) > 0
    components = len(np.unique(edge_components(x, y, W.shape[0])[active]))
    return (x, y) if len(x) == int(active.sum()) - components else None


@dataclass(frozen=True)
class ComparisonGraph:
    """Components of the directed graph winner -> loser.

    Attributes
    ----------
    active : bool array (n,)
        Actions that appear in at least one comparison.
    weak : int array (n,)
        Weakly connected component of each action (absent actions are singletons).
    strong : int array (n,)
        Strongly connected component of each action.
    separating : bool array (n, n)
        `W[w, l] > 0` with `w` and `l` in different strongly connected components.
    """

    active: np.ndarray
    weak: np.ndarray
    strong: np.ndarray
    separating: np.ndarray

    @property
    def has_minimiser(self) -> bool:
        """The unregularised Bradley–Terry MLE exists iff no comparison separates two SCCs."""
        return not self.separating.any()


DENSE_GRAPH_UP_TO = 64  # actions; up to here a boolean transitive closure beats scipy's sparse graph tools


def comparison_graph(W: np.ndarray) -> ComparisonGraph:
    """Weak and strong components of the comparison graph of `W`.

    Labels are only compared for equality. Small graphs use the transitive closure (a few `n x n` boolean
    products: microseconds, and no scipy.sparse import for the CLI); large ones scipy's `csgraph`.
    """
    edges = W > 0
    if W.shape[0] <= DENSE_GRAPH_UP_TO:
        reach = _closure(edges)
        strong = np.argmax(reach & reach.T, axis=1)  # smallest member of each SCC
        weak = np.argmax(_closure(edges | edges.T), axis=1)
    else:
        from scipy.sparse import csr_matrix
        from scipy.sparse.csgraph import connected_components

        adjacency = csr_matrix(edges)
        _, weak = connected_components(adjacency, directed=True, connection="weak")
        _, strong = connected_components(adjacency, directed=True, connection="strong")
    separating = edges & (strong[:, None] != strong[None, :])
    active = (W.sum(axis=0) + W.sum(axis=1)) > 0
    return ComparisonGraph(active=active, weak=weak, strong=strong, separating=separating)


def _closure(edges: np.ndarray) -> np.ndarray:
    """Reflexive transitive closure of a boolean adjacency matrix, by repeated squaring."""
    reach = edges | np.eye(edges.shape[0], dtype=bool)
    while True:
        step = reach.astype(np.int64)
        wider = (step @ step) > 0
        if np.array_equal(wider, reach):
            return reach
        reach = wider


SPARSE_FROM = 300  # nodes; below this dense LU is faster than scipy's sparse LU


class LaplacianSystem:
    """The linear system `(Lap + shift I) x = rhs`, `Lap = sum_e weight_e (e_i - e_j)(e_i - e_j)^T`.

    Shared by IPO's normal equations and the Newton steps of the Bradley–Terry fits (their Hessians are
    such Laplacians, plus `l2 I` under a ridge). Edges with `weight = 0` (e.g. an underflowed curvature)
    are dropped; `labels` are the connected components of the rest.

    With `shift = 0` the matrix is singular: its null space holds the constants on each component. `solve`
    then grounds one node per component (`x = 0` there, its row and column deleted), which leaves a
    nonsingular, positive definite system, and `centre` applies the gauge afterwards. The grounded node is
    the one of largest weighted degree: when the weights span many decades, a heavy edge left inside the
    reduced system puts `heavy + light` on a diagonal that elimination subtracts `heavy` from again, and the
    light weights — which carry the answer along that edge — are lost to rounding. Attached to the ground,
    the heavy weight only adds to a diagonal. (Minimum-norm least squares on the whole singular Laplacian
    has the same cancellation and no such choice.) Nodes without edges get `x = 0`.

    With `shift > 0` the system is nonsingular and solved as it is. Sparse LU for `n >= SPARSE_FROM`
    (or `sparse=True`), dense below; the factorisation is reused across `solve` calls.
    """

    def __init__(
        self, i: np.ndarray, j: np.ndarray, weight: np.ndarray, n: int, shift: float = 0.0, sparse: bool | None = None
    ) -> None:
        keep = weight > 0
        i, j, weight = i[keep], j[keep], weight[keep]
        self.labels = edge_components(i, j, n)
        degree = np.bincount(i, weights=weight, minlength=n) + np.bincount(j, weights=weight, minlength=n)
        unknown = np.ones(n, dtype=bool) if shift > 0 else degree > 0
        if shift == 0:
            order = np.lexsort((-degree, self.labels))  # within each component, the heaviest node first
            unknown[order[np.r_[True, self.labels[order][1:] != self.labels[order][:-1]]]] = False
        self.unknown = np.flatnonzero(unknown)
        position = np.full(n, -1)
        position[self.unknown] = np.arange(len(self.unknown))
        inside = unknown[i] & unknown[j]
        rows = np.concatenate([np.arange(len(self.unknown)), position[i[inside]], position[j[inside]]])
        cols = np.concatenate([np.arange(len(self.unknown)), position[j[inside]], position[i[inside]]])
        values = np.concatenate([degree[self.unknown] + shift, -weight[inside], -weight[inside]])
        self._solve = _factorise(rows, cols, values, len(self.unknown), n >= SPARSE_FROM if sparse is None else sparse)

    def solve(self, rhs: np.ndarray) -> np.ndarray:
        """The solution that is 0 on the grounded nodes (`shift = 0`; `rhs` summing to 0 on each component)."""
        x = np.zeros(len(rhs))
        if len(self.unknown):
            x[self.unknown] = self._solve(rhs[self.unknown])
        return x

    def centre(self, x: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
        """The canonical gauge: `x` minus its (weighted) mean on each component; 0 on nodes without edges."""
        weights = np.ones(len(x)) if weights is None else weights
        mean = np.bincount(self.labels, weights=weights * x) / np.bincount(self.labels, weights=weights)
        return x - mean[self.labels]


def _factorise(
    rows: np.ndarray, cols: np.ndarray, values: np.ndarray, m: int, sparse: bool
) -> Callable[[np.ndarray], np.ndarray]:
    """A solver for the `m x m` matrix given as coordinates (duplicates summed)."""
    if m == 0:
        return lambda rhs: rhs
    if not sparse:
        A = np.zeros((m, m))
        np.add.at(A, (rows, cols), values)
        return lambda rhs: np.linalg.solve(A, rhs)
    from scipy.sparse import csc_matrix
    from scipy.sparse.linalg import splu

    return splu(csc_matrix((values, (rows, cols)), shape=(m, m))).solve


def edge_components(i: np.ndarray, j: np.ndarray, n: int) -> np.ndarray:
    """Connected components of the undirected graph on `n` nodes with edges `(i_e, j_e)`, labelled
    `0, 1, ...` (a node without edges is its own component)."""
    if n <= DENSE_GRAPH_UP_TO:
        adjacency = np.zeros((n, n), dtype=bool)
        adjacency[i, j] = True
        return np.unique(np.argmax(_closure(adjacency | adjacency.T), axis=1), return_inverse=True)[1]
    from scipy.sparse import csr_matrix
    from scipy.sparse.csgraph import connected_components

    adjacency = csr_matrix((np.ones(len(i)), (i, j)), shape=(n, n))
    return connected_components(adjacency, directed=False)[1]


def softmax_policy(log_pi_ref: np.ndarray, delta: np.ndarray) -> np.ndarray:
    """`pi ∝ pi_ref exp(delta)`, through logsumexp (actions with `pi_ref = 0` get exactly 0)."""
    return softmax(log_pi_ref + delta)


def log_of(p: np.ndarray) -> np.ndarray:
    """`log p` with `log 0 = -inf` and no warning."""
    with np.errstate(divide="ignore"):
        return np.log(p)


STEP_TOL = 1e-12  # Newton stops once its step is this small relative to the variables (`damped_newton`)
MAX_NEWTON = 500
MAX_CHANGE = 10.0  # largest change of a compared difference in one Newton step (`capped`)
F_ROUNDING = 1e-12  # relative changes of an objective below this are taken as its rounding


def capped(step: np.ndarray, i: np.ndarray, j: np.ndarray) -> np.ndarray:
    """`step` scaled so that no difference `x_i - x_j` along an edge changes by more than `MAX_CHANGE`.

    Far from the minimum, Newton on these exponential-tailed losses overshoots: where the curvature of an
    edge is tiny, its step is huge, and an iterate sent far out finds the curvature there vanishing too (a
    flat region the line search cannot leave). At most a factor `e^MAX_CHANGE` on any edge's odds per step.
    """
    largest = float(np.max(np.abs(step[i] - step[j]), initial=0.0))
    return step * min(1.0, MAX_CHANGE / largest) if largest > 0 else step


def damped_newton(
    x: np.ndarray,
    value: Callable[[np.ndarray], float],
    gradient: Callable[[np.ndarray], np.ndarray],
    newton_step: Callable[[np.ndarray, np.ndarray], np.ndarray],
    project: Callable[[np.ndarray], np.ndarray] = lambda x: x,
) -> np.ndarray:
    """Minimise a smooth convex `value` from `x` by Newton steps with a backtracking line search.

    `newton_step(x, g)` returns `-H^-1 g` on the subspace the minimiser is unique in (the gauge), and
    `project` maps a point back onto it. A step is accepted on Armijo's condition or, once the decrease of
    the objective is below its own rounding, on a smaller gradient (which still shrinks quadratically) —
    but never on a smaller gradient alone: far out on a logistic loss the gradient vanishes while the
    objective is huge.

    Stopping rule, in the variables themselves: stop once the Newton step is at most
    `STEP_TOL (1 + max|x|)` in every coordinate, after taking it. Near the minimiser the step is
    `x* - x + O(|x - x*|^2)`, so this bounds the error left, whatever the scale of the objective (counts
    scale the gradient and the Hessian alike and the step not at all) and its conditioning (a small gradient
    along a flat direction is a large step). An absolute test on the gradient has neither property: with
    counts spanning nine decades, a gradient of 1e-12 can still mean an error of 1e-3 in the offsets.
    Also stop when the line search cannot make progress at machine precision (the gradient is at its
    rounding level) or after `MAX_NEWTON` steps.
    """
    f, g = value(x), gradient(x)
    for _ in range(MAX_NEWTON):
        step = newton_step(x, g)
        if np.max(np.abs(step), initial=0.0) <= STEP_TOL * (1.0 + np.max(np.abs(x), initial=0.0)):
            return project(x + step)
        slope, g_norm = g @ step, np.linalg.norm(g)
        t = 1.0
        while True:
            candidate = project(x + t * step)
            f_new, g_new = value(candidate), gradient(candidate)
            level = f_new <= f + F_ROUNDING * (abs(f) + abs(f_new))  # no increase beyond F's own rounding
            if f_new <= f + 1e-4 * t * slope or (level and np.linalg.norm(g_new) < (1.0 - 1e-4 * t) * g_norm):
                break
            t *= 0.5
            if t < 1e-12:
                return x
        x, f, g = candidate, f_new, g_new
    return x
