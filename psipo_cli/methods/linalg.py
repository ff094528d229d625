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


@dataclass(frozen=True, eq=False)
class Pairs:
    """Recorded comparisons as flat arrays, over nodes grouped into independent segments.

    A segment is one context of a dataset (its own actions; no comparison joins two segments): a loss that
    is a sum over segments is minimised segment by segment, so one call over all segments gives every
    context's answer. A win-count matrix `W` is one segment (`Pairs.of`). Memory is O(nodes + comparisons).

    Attributes
    ----------
    winner, loser : int (K,)
        Node indices of each distinct comparison (both in the same segment).
    count : float (K,)
        How many times `winner` beat `loser` (positive).
    n : int
        Number of nodes.
    node_segment : int (n,)
        The segment of each node (segments numbered `0 .. n_segments - 1`).
    n_segments : int
    """

    winner: np.ndarray
    loser: np.ndarray
    count: np.ndarray
    n: int
    node_segment: np.ndarray
    n_segments: int

    @classmethod
    def of(cls, W: np.ndarray) -> Pairs:
        """The comparisons of one win-count matrix, one segment."""
        w, l_, c = pairs_of(W)
        return cls(w, l_, c, W.shape[0], np.zeros(W.shape[0], dtype=np.int64), 1)

    @property
    def segment(self) -> np.ndarray:
        """The segment of each comparison."""
        return self.node_segment[self.winner]

    @property
    def totals(self) -> np.ndarray:
        """The total count of each segment (0 for a segment without comparisons). One segment: `np.sum`, as
        `mean_pair_loss` and `mean_pair_grad` sum, so that losses written either way agree to the last bit."""
        if self.n_segments == 1:
            return np.array([np.sum(self.count)], dtype=float)
        return np.bincount(self.segment, weights=self.count, minlength=self.n_segments).astype(float)

    def subset(self, keep: np.ndarray) -> Pairs:
        """The comparisons where `keep` (a mask over comparisons) holds, on the same nodes and segments."""
        return Pairs(self.winner[keep], self.loser[keep], self.count[keep], self.n, self.node_segment,
                     self.n_segments)


def segment_mean(pairs: Pairs, per_pair: np.ndarray) -> np.ndarray:
    """`sum count * per_pair / sum count` over the comparisons of each segment (0 for one without any)."""
    totals = pairs.totals
    sums = np.bincount(pairs.segment, weights=pairs.count * per_pair, minlength=pairs.n_segments).astype(float)
    return np.divide(sums, totals, out=np.zeros_like(sums), where=totals > 0)


def as_pairs(W: np.ndarray | Pairs) -> Pairs:
    """`W` as `Pairs` (a win-count matrix is one segment)."""
    return W if isinstance(W, Pairs) else Pairs.of(np.asarray(W))


def dense_wins(pairs: Pairs) -> np.ndarray:
    """The win-count matrix `W[w, l] = sum of count over the comparisons (w, l)` of `pairs` (n x n: for the
    small problems of a non-convex loss's own search, which take a matrix)."""
    W = np.zeros((pairs.n, pairs.n))
    np.add.at(W, (pairs.winner, pairs.loser), pairs.count)
    return W


def segment_peak(values: np.ndarray, labels: np.ndarray, n_segments: int) -> np.ndarray:
    """`max |values|` over the entries of each segment (0 for an empty one)."""
    out = np.zeros(n_segments)
    np.maximum.at(out, labels, np.abs(values))
    return out


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


@dataclass(frozen=True, eq=False)
class ComparisonGraph:
    """Components of the directed graph winner -> loser.

    Attributes
    ----------
    pairs : Pairs
        The comparisons (edges) the graph was built from.
    active : bool array (n,)
        Actions that appear in at least one comparison.
    weak : int array (n,)
        Weakly connected component of each action (absent actions are singletons).
    strong : int array (n,)
        Strongly connected component of each action.
    crossing : bool array (K,)
        Comparisons of `pairs` whose winner and loser lie in different strongly connected components.
    """

    pairs: Pairs
    active: np.ndarray
    weak: np.ndarray
    strong: np.ndarray
    crossing: np.ndarray

    @property
    def separating(self) -> np.ndarray:
        """bool (n, n): `W[w, l] > 0` with `w` and `l` in different strongly connected components."""
        out = np.zeros((self.pairs.n, self.pairs.n), dtype=bool)
        out[self.pairs.winner[self.crossing], self.pairs.loser[self.crossing]] = True
        return out

    @property
    def has_minimiser(self) -> bool:
        """The unregularised Bradley–Terry MLE exists iff no comparison separates two SCCs."""
        return not self.crossing.any()


DENSE_GRAPH_UP_TO = 64  # actions; up to here a boolean transitive closure beats scipy's sparse graph tools


def comparison_graph(W: np.ndarray | Pairs) -> ComparisonGraph:
    """Weak and strong components of the comparison graph of `W` (a win-count matrix or `Pairs`).

    Labels are only compared for equality. Small graphs use the transitive closure (a few `n x n` boolean
    products: microseconds, and no scipy.sparse import for the CLI); large ones scipy's `csgraph`, in
    O(nodes + edges).
    """
    pairs = as_pairs(W)
    n, w, l_ = pairs.n, pairs.winner, pairs.loser
    if n <= DENSE_GRAPH_UP_TO:
        edges = np.zeros((n, n), dtype=bool)
        edges[w, l_] = True
        reach = _closure(edges)
        strong = np.argmax(reach & reach.T, axis=1)  # smallest member of each SCC
        weak = np.argmax(_closure(edges | edges.T), axis=1)
    else:
        weak, strong = edge_components(w, l_, n), strong_components(w, l_, n)
    active = (np.bincount(w, minlength=n) + np.bincount(l_, minlength=n)) > 0
    return ComparisonGraph(pairs=pairs, active=active, weak=weak, strong=strong, crossing=strong[w] != strong[l_])


def strong_components(winner: np.ndarray, loser: np.ndarray, n: int) -> np.ndarray:
    """Strongly connected components of the directed graph winner -> loser on `n` nodes (scipy's `csgraph`,
    O(nodes + edges)); labels are only compared for equality."""
    from scipy.sparse import csr_matrix
    from scipy.sparse.csgraph import connected_components

    adjacency = csr_matrix((np.ones(len(winner)), (winner, loser)), shape=(n, n))
    return connected_components(adjacency, directed=True, connection="strong")[1]


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
# Nodes in one connected component; from here `LaplacianSystem` solves by conjugate gradients: the sparse LU
# of a large random comparison graph fills in to a dense matrix (10^5 actions: 80 GB), CG needs O(edges).
ITERATIVE_FROM = 1000
CG_RTOL = 1e-10  # conjugate gradients stop once ||rhs - A x|| <= CG_RTOL ||rhs|| (or after CG_MAX_ITER steps)
CG_MAX_ITER = 2_000


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

    A component of `ITERATIVE_FROM` nodes or more (one context with many actions) is solved by conjugate
    gradients with a Jacobi preconditioner instead, in O(edges) memory, ungrounded: on a consistent singular
    system (`rhs` summing to 0 on each component) CG converges within the range of the Laplacian, whose
    conditioning on a well-mixed comparison graph does not grow with its size, where grounding one node
    would make the condition number grow like the component's size. Stopping rule: the relative residual
    `||rhs - A x|| <= CG_RTOL ||rhs||` (or `CG_MAX_ITER` steps); `centre` then fixes the gauge, as for the
    direct solve.

    `pattern` (passed by `LaplacianPattern.system`, with every weight positive) supplies the components and
    the sparse layout computed once for these edges.
    """

    def __init__(
        self, i: np.ndarray, j: np.ndarray, weight: np.ndarray, n: int, shift: float = 0.0, sparse: bool | None = None,
        pattern: LaplacianPattern | None = None,
    ) -> None:
        if pattern is None:
            keep = weight > 0
            i, j, weight = i[keep], j[keep], weight[keep]
            self.labels = edge_components(i, j, n)
        else:  # every weight positive (`LaplacianPattern.system`): nothing dropped, the pattern's components
            self.labels = pattern.labels
        degree = np.bincount(i, weights=weight, minlength=n) + np.bincount(j, weights=weight, minlength=n)
        unknown = np.ones(n, dtype=bool) if shift > 0 else degree > 0
        iterative = len(i) > 0 and int(np.bincount(self.labels).max()) >= ITERATIVE_FROM
        if shift == 0 and not iterative:
            order = np.lexsort((-degree, self.labels))  # within each component, the heaviest node first
            unknown[order[np.r_[True, self.labels[order][1:] != self.labels[order][:-1]]]] = False
        self.unknown = np.flatnonzero(unknown)
        m = len(self.unknown)
        inside = unknown[i] & unknown[j]
        off_diagonal = -weight[inside]
        values = np.concatenate([degree[self.unknown] + shift, off_diagonal, off_diagonal])

        def coordinates() -> tuple[np.ndarray, np.ndarray]:
            """Row and column of each entry of `values` (duplicates to be summed)."""
            position = np.full(n, -1)
            position[self.unknown] = np.arange(m)
            diagonal, row, col = np.arange(m), position[i[inside]], position[j[inside]]
            return np.concatenate([diagonal, row, col]), np.concatenate([diagonal, col, row])

        if iterative:
            if pattern is None:
                matrix = _csr(*_canonical_slots(*coordinates(), m), values, m)
            else:  # the same coordinates at every call with this pattern and shift: their CSR layout is kept
                matrix = _csr(*pattern.slots(shift > 0, coordinates, m), values, m)
            solve = _conjugate_gradients(matrix, degree[self.unknown] + shift)
            # Singular: the part of rhs off the range (its mean on each component, rounding from the caller)
            # has no solution, and CG would chase it to CG_MAX_ITER; it is removed first.
            self._solve = solve if shift > 0 else lambda rhs: solve(self._consistent(rhs))
        else:
            self._solve = _factorise(*coordinates(), values, m, n >= SPARSE_FROM if sparse is None else sparse)

    def _consistent(self, rhs: np.ndarray) -> np.ndarray:
        """`rhs` (on the unknown nodes) minus its mean on each component."""
        labels = self.labels[self.unknown]
        sizes = np.bincount(labels)  # 0 for the components of nodes without edges (not unknowns, never read)
        mean = np.divide(np.bincount(labels, weights=rhs), sizes, out=np.zeros(len(sizes)), where=sizes > 0)
        return rhs - mean[labels]

    def solve(self, rhs: np.ndarray) -> np.ndarray:
        """A solution (`shift = 0`: `rhs` summing to 0 on each component; the direct solve's is 0 on the grounded
        nodes)."""
        x = np.zeros(len(rhs))
        if len(self.unknown):
            x[self.unknown] = self._solve(rhs[self.unknown])
        return x

    def centre(self, x: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
        """The canonical gauge: `x` minus its (weighted) mean on each component; 0 on nodes without edges."""
        weights = np.ones(len(x)) if weights is None else weights
        mean = np.bincount(self.labels, weights=weights * x) / np.bincount(self.labels, weights=weights)
        return x - mean[self.labels]


class LaplacianPattern:
    """The edges `(i, j)` of a sequence of `LaplacianSystem`s that differ only in their weights: the Newton steps
    of one fit, whose Hessians are Laplacians of the same comparisons with new curvatures at every step.

    What depends on the edges alone is computed once: their connected components (while every weight is
    positive no edge is dropped, so they are those of the system) and, for conjugate gradients, the layout of
    the sparse matrix. `system(weight)` is then `LaplacianSystem(i, j, weight, n, shift)` — the same matrix and
    solution — without rebuilding them (at 10^6 comparisons, most of a Newton step's cost).
    """

    def __init__(self, i: np.ndarray, j: np.ndarray, n: int) -> None:
        self.i, self.j, self.n = i, j, n
        self.labels = edge_components(i, j, n)
        self._slots: dict[bool, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}

    def system(self, weight: np.ndarray, shift: float = 0.0, sparse: bool | None = None) -> LaplacianSystem:
        """`LaplacianSystem(i, j, weight, n, shift, sparse)`, reusing the pattern's structure when every weight is
        positive (otherwise some edges drop out and the system is built from scratch)."""
        pattern = self if bool(np.all(weight > 0)) else None
        return LaplacianSystem(self.i, self.j, weight, self.n, shift, sparse, pattern)

    def slots(
        self, shifted: bool, coordinates: Callable[[], tuple[np.ndarray, np.ndarray]], m: int
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """`_canonical_slots(*coordinates(), m)`, computed at the first call for this pattern with (`shifted`) or
        without a shift: with every edge kept, the coordinates depend only on the edges and on that."""
        if shifted not in self._slots:
            self._slots[shifted] = _canonical_slots(*coordinates(), m)
        return self._slots[shifted]


def _factorise(
    rows: np.ndarray, cols: np.ndarray, values: np.ndarray, m: int, sparse: bool
) -> Callable[[np.ndarray], np.ndarray]:
    """A solver for the `m x m` matrix given as coordinates (duplicates summed)."""
    if m == 0:
        return lambda rhs: rhs
    if not sparse:
        A = np.zeros((m, m))
        np.add.at(A, (rows, cols), values)
        return lambda rhs: _dense_solve(A, rhs)
    from scipy.sparse import csc_matrix
    from scipy.sparse.linalg import splu

    return splu(csc_matrix((values, (rows, cols)), shape=(m, m))).solve


def _dense_solve(A: np.ndarray, rhs: np.ndarray) -> np.ndarray:
    """`A^-1 rhs`; where `A` is singular in floating point (a Laplacian whose weights span hundreds of decades,
    as the curvatures of a fit with rewards in the hundreds do), the least-squares solution of least norm: a
    Newton step on the directions the curvatures still resolve, which the caller's line search vets."""
    try:
        return np.linalg.solve(A, rhs)
    except np.linalg.LinAlgError:
        return np.linalg.lstsq(A, rhs, rcond=None)[0]


def _canonical_slots(rows: np.ndarray, cols: np.ndarray, m: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The CSR layout of an `m x m` matrix given as coordinates (duplicates summed): `slot` (the stored entry of
    each coordinate), `indices` and `indptr` — rows in order, columns sorted within each row, as scipy's
    canonical format has them."""
    keys, slot = np.unique(rows.astype(np.int64) * m + cols, return_inverse=True)
    indptr = np.concatenate([[0], np.cumsum(np.bincount(keys // m, minlength=m))])
    return slot, keys % m, indptr


def _csr(slot: np.ndarray, indices: np.ndarray, indptr: np.ndarray, values: np.ndarray, m: int) -> object:
    """The `m x m` CSR matrix with `values[e]` added into stored entry `slot[e]` (`_canonical_slots`). Each
    entry sums the Laplacian's two off-diagonal terms of a compared pair at most (comparisons are distinct),
    and a sum of two floats does not depend on their order: the matrix is scipy's from the coordinates, to
    the bit."""
    from scipy.sparse import csr_matrix

    data = np.bincount(slot, weights=values, minlength=len(indices))
    return csr_matrix((data, indices, indptr), shape=(m, m))


def _conjugate_gradients(A: object, diagonal: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
    """A solver for the symmetric positive semi-definite sparse matrix `A`, by conjugate gradients
    preconditioned with its `diagonal` (stopping rule: `LaplacianSystem`)."""
    from scipy.sparse import diags
    from scipy.sparse.linalg import cg

    M = diags(1.0 / diagonal)

    def solve(rhs: np.ndarray) -> np.ndarray:
        return cg(A, rhs, rtol=CG_RTOL, atol=0.0, maxiter=CG_MAX_ITER, M=M)[0]

    return solve


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


def capped(step: np.ndarray, i: np.ndarray, j: np.ndarray, segments: Pairs | None = None) -> np.ndarray:
    """`step` scaled so that no difference `x_i - x_j` along an edge changes by more than `MAX_CHANGE`.

    Far from the minimum, Newton on these exponential-tailed losses overshoots: where the curvature of an
    edge is tiny, its step is huge, and an iterate sent far out finds the curvature there vanishing too (a
    flat region the line search cannot leave). At most a factor `e^MAX_CHANGE` on any edge's odds per step.
    With `segments` (the edges `i, j` are its comparisons), each segment's step is scaled on its own.
    """
    if segments is None:
        largest = float(np.max(np.abs(step[i] - step[j]), initial=0.0))
        return step * min(1.0, MAX_CHANGE / largest) if largest > 0 else step
    largest = segment_peak(step[i] - step[j], segments.segment, segments.n_segments)
    scale = np.where(largest > MAX_CHANGE, MAX_CHANGE / np.where(largest > 0, largest, 1.0), 1.0)
    return step * scale[segments.node_segment]


def damped_newton(
    x: np.ndarray,
    value: Callable[[np.ndarray], float | np.ndarray],
    gradient: Callable[[np.ndarray], np.ndarray],
    newton_step: Callable[[np.ndarray, np.ndarray], np.ndarray],
    project: Callable[[np.ndarray], np.ndarray] = lambda x: x,
    segments: np.ndarray | None = None,
    n_segments: int = 1,
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

    Separable objectives: with `segments` (the segment of each coordinate, `0 .. n_segments - 1`), `value`
    returns one value per segment and the objective is their sum, each segment's value depending on its own
    coordinates only (the contexts of a dataset). Every segment then runs the method above on its own — its
    own step length, line search and stopping rule, in one vectorised pass — so each gets exactly the
    answer a call on that segment alone would give (to rounding), however many segments there are.
    """
    seg = np.zeros(len(x), dtype=np.int64) if segments is None else segments
    S = n_segments

    def values(z: np.ndarray) -> np.ndarray:
        return np.atleast_1d(np.asarray(value(z), dtype=float))

    def per(v: np.ndarray) -> np.ndarray:
        return np.bincount(seg, weights=v, minlength=S)

    f, g = values(x), gradient(x)
    live = np.ones(S, dtype=bool)
    for _ in range(MAX_NEWTON):
        step = np.where(live[seg], newton_step(x, g), 0.0)
        done = live & (segment_peak(step, seg, S) <= STEP_TOL * (1.0 + segment_peak(x, seg, S)))
        if done.any():
            x = np.where(done[seg], project(x + step), x)
            live &= ~done
        if not live.any():
            return x
        slope, g_norm = per(g * step), np.sqrt(per(g * g))
        t, pending = np.ones(S), live.copy()
        while pending.any():
            candidate = project(x + np.where(pending, t, 0.0)[seg] * step)
            f_new, g_new = values(candidate), gradient(candidate)
            level = f_new <= f + F_ROUNDING * (np.abs(f) + np.abs(f_new))  # no increase beyond F's own rounding
            smaller = np.sqrt(per(g_new * g_new)) < (1.0 - 1e-4 * t) * g_norm
            accept = pending & ((f_new <= f + 1e-4 * t * slope) | (level & smaller))
            at = accept[seg]
            x, g = np.where(at, candidate, x), np.where(at, g_new, g)
            f = np.where(accept, f_new, f)
            pending &= ~accept
            t = np.where(pending, 0.5 * t, t)
            stuck = pending & (t < 1e-12)
            live &= ~stuck
            pending &= ~stuck
    return x
