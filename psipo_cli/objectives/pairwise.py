"""Shared machinery of pairwise losses on a win-count matrix `W` (DESIGN §2.2–2.4, NOTES).

A pairwise loss `L(delta) = mean_{(w, l) ~ W} f(delta_w - delta_l)` depends on the offsets only through
differences, so its gradient `f'(h) (e_w - e_l)` sums to zero on every connected component of the
comparison graph: this is where the canonical gauge (zero sum per component, zero on absent actions) comes
from.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from psipo_cli.numerics import softmax

PairFn = Callable[[np.ndarray, float], np.ndarray]


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


def laplacian(W: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Comparison-graph Laplacian `sum W (e_w - e_l)(e_w - e_l)^T` and `b = sum W (e_w - e_l)`."""
    S = W + W.T
    lap = np.diag(S.sum(axis=1)) - S
    b = W.sum(axis=1) - W.sum(axis=0)
    return lap, b


@dataclass(frozen=True)
class ComparisonGraph:
    """Components of the directed graph winner -> loser (NOTES, 'The limit when DPO has no minimiser').

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


def softmax_policy(log_pi_ref: np.ndarray, delta: np.ndarray) -> np.ndarray:
    """`pi ∝ pi_ref exp(delta)`, through logsumexp (actions with `pi_ref = 0` get exactly 0)."""
    return softmax(log_pi_ref + delta)


def log_of(p: np.ndarray) -> np.ndarray:
    """`log p` with `log 0 = -inf` and no warning."""
    with np.errstate(divide="ignore"):
        return np.log(p)
