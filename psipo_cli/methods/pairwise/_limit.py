"""The limit of a logistic-tailed pairwise loss when the data separate the actions (`Exact.SEPARATED_LIMIT`).

DPO (paper Eq. 4; Prop. 4: its minimiser is the Bradley–Terry MLE divided by tau) and RLHF's reward model
without a ridge (paper Eq. 2) have no minimiser when a comparison separates two strongly connected
components of the comparison graph. The policy is then the limit of the ridge path `l2 -> 0+` (the
README's "Exact solutions" section); `limit_expansion` is the split between tied components.

References: Rosset, Zhu & Hastie 2004, "Margin maximizing loss functions" (ridge path -> max margin);
Soudry, Hoffer, Nacson, Gunasekar & Srebro 2018, "The implicit bias of gradient descent on separable data",
JMLR 19 (gradient descent: `u log t + rho(t)`, `rho` set by the support vectors' multipliers, `log log t`
terms when some are 0); Ji & Telgarsky 2019, "The implicit bias of gradient descent on nonseparable data",
COLT (the non-separable part, here the comparisons inside a component, converges to its own minimiser).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from psipo_cli.methods.linalg import (
    ComparisonGraph,
    LaplacianPattern,
    Pairs,
    as_pairs,
    capped,
    damped_newton,
    dense_wins,
    edge_components,
    softmax_policy,
)
from psipo_cli.methods.pairwise.solver import implied_reward
from psipo_cli.methods.solution import DIVERGED, Solution
from psipo_cli.numerics import grouped_logsumexp

if TYPE_CHECKING:
    from psipo_cli.methods.spec import PairLoss

TIE_TOL = 1e-7  # max-margin values closer than this are the same level (the QP is solved to ~1e-12)


def scc_quotient(
    W: np.ndarray | Pairs, graph: ComparisonGraph, r_internal: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The condensation of the comparison graph: one node per strongly connected component.

    Parameters
    ----------
    W : (n, n) win counts, or their `Pairs` (one segment).
    graph : its `comparison_graph`.
    r_internal : (n,) within-component MLE `m`, or None (then every `m = 0`).

    Returns
    -------
    node : int (n,)
        Node of each action (absent actions are isolated nodes).
    size : float (M,)
        Number of actions in each node.
    edges : int (E, 2)
        Node pairs `(K, J)` joined by at least one separating comparison `w -> l`, `w in K`, `l in J`.
    log_strength : float (E,)
        `log a_KJ`, `a_KJ = sum_{w in K, l in J} W[w, l] exp(-(m_w - m_l)) / sum W`: once every offset inside a
        component is `m` plus a common shift, comparison `w -> l` contributes `W[w, l] sigma(-(r_w - r_l)) / sum W`
        `≈ a_KJ exp(-(shift_K - shift_J))` to the gradient of the mean loss. Kept as logarithms: with offsets
        `m` in the hundreds (rewards of that size), `a_KJ` itself under- or overflows a double.
    """
    pairs = as_pairs(W)
    _, node = np.unique(graph.strong, return_inverse=True)
    size = np.bincount(node).astype(float)
    m = np.zeros(pairs.n) if r_internal is None else r_internal
    crossing = graph.strong[pairs.winner] != graph.strong[pairs.loser]
    w, l_, c = pairs.winner[crossing], pairs.loser[crossing], pairs.count[crossing]
    pair = node[w] * len(size) + node[l_]
    keys, where = np.unique(pair, return_inverse=True)
    log_strength = grouped_logsumexp(np.log(c) - (m[w] - m[l_]), where, len(keys)) - np.log(pairs.count.sum())
    edges = np.column_stack([keys // len(size), keys % len(size)]).astype(int)
    return node, size, edges, log_strength


def max_margin_direction(W: np.ndarray | Pairs, graph: ComparisonGraph) -> np.ndarray:
    """Minimum-norm `u` with `u_w - u_l >= 1` on separating comparisons and `u` constant on each SCC.

    The direction in which the ridge path (`l2 -> 0+`) and plain gradient descent send the offsets
    (Rosset et al. 2004; Soudry et al. 2018). Absent actions get `u = 0`.
    """
    node, size, edges, _ = scc_quotient(W, graph)
    return _min_norm_margin(size, edges)[node]


def _node_values(node: np.ndarray, values: np.ndarray) -> np.ndarray:
    """The per-node values `v` (M,) of the condensation from their per-action copy `values = v[node]`."""
    out = np.zeros(node.max() + 1)
    out[node] = values
    return out


def _min_norm_margin(size: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """`argmin sum_K size_K v_K^2` subject to `v_K - v_J >= 1` on every edge `(K, J)` of a DAG.

    Solved through its dual: `v = D^-1 A^T beta` (`D = diag(size)`, `A` the incidence rows) with `beta >= 0`
    minimising `beta^T M beta / 2 - 1^T beta`, `M = A D^-1 A^T` (the KKT conditions of the QP, with the
    multipliers halved), by `_nonneg_quadratic`. `_polish_active_set` then solves the QP exactly on the
    active set, so that margins equal to 1 come out equal to 1 to rounding (the tie and tight-edge tests
    rely on it). Plain numpy: a DPO run on separable data needs no scipy.optimize (~0.2 s of start-up).
    """
    if len(edges) == 0:
        return np.zeros(len(size))
    A = _incidence(edges, len(size))
    beta = _nonneg_quadratic(A @ (A / size).T, np.ones(len(edges)))
    return _polish_active_set((A / size).T @ beta, A, size, beta)


def _nonneg_quadratic(M: np.ndarray, b: np.ndarray) -> np.ndarray:
    """`argmin_{x >= 0} x^T M x / 2 - b^T x` for a positive semi-definite `M` (Lawson & Hanson 1974, ch. 23).

    The active-set method of non-negative least squares, written on the normal equations (with `M = C^T C`,
    `b = C^T d` it is `argmin_{x >= 0} ||C x - d||`): each outer step frees the bound variable with the most
    negative gradient `M x - b`; the inner loop solves `M_PP x_P = b_P` on the free set `P` and steps back to
    the boundary when that leaves the feasible set. Dependent constraints make `M` singular; a ridge of
    `1e-13 max diag M` makes every `M_PP` invertible and moves the answer by ~1e-13 relative, far below
    what the callers resolve (they re-solve exactly on the active set they read off it).
    """
    k = len(b)
    ridge = 1e-13 * max(float(np.max(np.diag(M))), 1e-300)
    M = M + ridge * np.eye(k)
    if k > COMPILED_NNLS_FROM:
        return _compiled_nonneg_quadratic(M, b, ridge)
    x = np.zeros(k)
    free = np.zeros(k, dtype=bool)
    for _ in range(3 * k + 10):  # Lawson & Hanson's method terminates; the cap guards against cycling
        w = np.where(free, -np.inf, b - M @ x)
        if free.all() or np.max(w) <= 1e-12 * max(1.0, float(np.abs(b).max())):
            break
        free[int(np.argmax(w))] = True
        for _ in range(k + 1):
            z = np.zeros(k)
            P = np.flatnonzero(free)
            z[P] = np.linalg.solve(M[np.ix_(P, P)], b[P])
            if np.all(z[P] > 0):
                x = z
                break
            shrinking = free & (z <= 0)
            alpha = float(np.min(x[shrinking] / (x[shrinking] - z[shrinking])))
            x = x + alpha * (z - x)
            free &= x > 1e-15 * max(1.0, float(np.abs(x).max()))
            x[~free] = 0.0
    return x


# Constraints (separating edges of the condensation); above this many `_nonneg_quadratic` hands the problem to
# scipy's compiled Lawson–Hanson (`scipy.optimize.nnls`): the loop above solves one dense system per step,
# O(k^4) in all, minutes for the ~10^3 separating edges of one context with 10^5 actions.
COMPILED_NNLS_FROM = 100


def _compiled_nonneg_quadratic(M: np.ndarray, b: np.ndarray, ridge: float) -> np.ndarray:
    """`_nonneg_quadratic` as the least-squares problem it is: with the Cholesky factor `M = L L^T` (`M`
    carries the ridge, so it is positive definite), `C = L^T` and `d = L^-1 b` give
    `||C x - d||^2 = x^T M x - 2 b^T x + const`, so `argmin_{x >= 0} ||C x - d||` (`scipy.optimize.nnls`, the
    same method) is the answer.

    Cholesky costs `k^3 / 3` flops, a symmetric eigendecomposition (`M = Q diag(lam) Q^T`,
    `C = diag(sqrt(lam)) Q^T`, the fallback) about ten times more. Cholesky is backward stable: it factors
    `M + E` with `|E| ~ 1e-16 max diag M`, far below the ridge, so it only fails if `M` is not what the
    caller promises; the eigendecomposition route then clips the eigenvalues at the ridge."""
    from scipy.linalg import solve_triangular
    from scipy.optimize import nnls

    try:
        L = np.linalg.cholesky(M)
        C, d = L.T, solve_triangular(L, b, lower=True)
    except np.linalg.LinAlgError:
        lam, Q = np.linalg.eigh(M)
        root = np.sqrt(np.maximum(lam, ridge))
        C, d = root[:, None] * Q.T, (Q.T @ b) / root
    x, _ = nnls(C, d, maxiter=50 * len(b))
    return x


def _incidence(edges: np.ndarray, n_nodes: int) -> np.ndarray:
    """Rows `e_K - e_J`, one per edge `(K, J)`."""
    A = np.zeros((len(edges), n_nodes))
    A[np.arange(len(edges)), edges[:, 0]] = 1.0
    A[np.arange(len(edges)), edges[:, 1]] = -1.0
    return A


def _polish_active_set(v: np.ndarray, A: np.ndarray, size: np.ndarray, beta: np.ndarray) -> np.ndarray:
    """Solve the QP exactly on the active set found: `v = D^-1 A_s^T alpha`, `A_s v = 1`.

    `alpha` need not be unique (active constraints can be dependent), but `v` is; the KKT check asks for
    some `alpha >= 0` with `A_s^T alpha = D v`, not for the minimum-norm one. Two candidates need no solve:
    the minimum-norm `alpha` when it is `>= 0` (it fits exactly by construction), and `beta`, the multipliers
    `v = D^-1 A^T beta` of the first solve, on the active constraints (complementary slackness puts them
    there). Only when neither fits does non-negative least squares (`_nonneg_quadratic` on the normal
    equations, `O(k^3)`: most of the time on a large sparse graph) look for another.
    """
    active = (A @ v - 1.0) < 1e-6
    if not active.any():
        return v
    As = A[active]
    M = As @ (As / size).T
    alpha = np.linalg.lstsq(M, np.ones(As.shape[0]), rcond=None)[0]
    exact = (As / size).T @ alpha
    target = size * exact
    threshold = 1e-9 * max(1.0, np.abs(target).max())
    residual = 0.0 if np.all(alpha >= 0) else float(np.linalg.norm(As.T @ beta[active] - target))
    if residual >= threshold:
        residual = float(np.linalg.norm(As.T @ _nonneg_quadratic(As @ As.T, As @ target) - target))
    feasible = np.all(A @ exact >= 1.0 - 1e-10) and residual < threshold
    return exact if feasible else v


def _dual_support(A_tight: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Which tight edges carry a positive multiplier in *some* solution of `A^T alpha = b`, `alpha >= 0`.

    These are the edges whose flows grow like the margin term in the expansion below (`E+`). A tight edge
    with a zero multiplier in every solution (`E0`, degenerate) carries a flow that is negligible on that
    scale. Each LP maximises the total multiplier of the edges not yet known to be in `E+`; it finds at least
    one new such edge while any is left (multipliers are bounded: no non-negative circulation on a DAG).

    Returns the mask of `E+` and the mean of the LP solutions: a multiplier vector positive on all of `E+`
    (a convex combination of solutions is a solution), the starting point of `_exp_potential_minimiser`.
    """
    from scipy.optimize import linprog

    positive = np.zeros(A_tight.shape[0], dtype=bool)
    solutions = []
    threshold = 1e-9 * max(1.0, float(np.abs(b).max()))
    while not positive.all():
        res = linprog(-(~positive).astype(float), A_eq=A_tight.T, b_eq=b, bounds=(0, None), method="highs")
        if res.status != 0:  # cannot happen for an exact KKT point; keep every edge rather than guess
            return np.ones(A_tight.shape[0], dtype=bool), np.ones(A_tight.shape[0])
        solutions.append(np.maximum(res.x, 0.0))
        new = ~positive & (res.x > threshold)
        if not new.any():
            break
        positive |= new
    return positive, np.mean(solutions, axis=0) if solutions else np.ones(A_tight.shape[0])


def _exp_potential_minimiser(
    size: np.ndarray, b: np.ndarray, edges: np.ndarray, log_a: np.ndarray, alpha: np.ndarray
) -> np.ndarray:
    """`argmin_phi G(phi) = sum_e a_e exp(-(phi_K - phi_J)) + b . phi`, with `sum size phi = 0` per component
    (`a = exp(log_a)`, never formed: the strengths can span more decades than a double holds).

    The finite part of the offsets: at the minimiser the edge flows `a_e exp(-(phi_K - phi_J))`
    are the max-margin multipliers (`A^T flows = b = size u`). It exists when every edge carries a positive
    multiplier in some solution (`_dual_support`); then `G` is strictly convex across the edges and damped
    Newton converges quadratically. The component constants are the ones the ridge term picks
    (`limit_expansion`). Components are those of the edges; isolated nodes get 0.

    `alpha` (> 0, one per edge) is a feasible multiplier vector: Newton starts from the potential whose flows
    fit it best, `phi_K - phi_J ≈ log(a_e / alpha_e)` (exact when the multipliers are unique). From an
    arbitrary start the strengths `a`, which can span many decades, would make the first steps huge.
    """
    n_nodes = len(size)
    if len(edges) == 0:
        return np.zeros(n_nodes)
    i, j = edges.T
    pattern = LaplacianPattern(i, j, n_nodes)  # every Hessian has these edges; only the flows change
    structure = pattern.system(np.ones(len(edges)))  # its components and centring need only the pattern
    # b sums to zero on each component (the multipliers balance it); remove the rounding left over.
    b = size * structure.centre(b / size, size)
    A = _incidence(edges, n_nodes)

    def value(x: np.ndarray) -> float:
        with np.errstate(over="ignore"):  # an overflowing trial point is rejected by the line search
            return float(np.sum(np.exp(log_a - A @ x)) + b @ x)

    def gradient(x: np.ndarray) -> np.ndarray:
        with np.errstate(over="ignore", invalid="ignore"):
            return b - A.T @ np.exp(log_a - A @ x)

    def centre(x: np.ndarray) -> np.ndarray:
        return structure.centre(x, size)

    def newton_step(x: np.ndarray, g: np.ndarray) -> np.ndarray:
        # The Hessian is the Laplacian of the edges weighted by their flows.
        return capped(centre(pattern.system(np.exp(log_a - A @ x)).solve(-g)), i, j)

    start = centre(np.linalg.lstsq(A, log_a - np.log(alpha), rcond=None)[0])
    return damped_newton(start, value, gradient, newton_step, centre)


def limit_expansion(
    size: np.ndarray, edges: np.ndarray, log_strength: np.ndarray, first: np.ndarray | None = None
) -> tuple[list[np.ndarray], np.ndarray, np.ndarray]:
    """Asymptotic expansion of the ridge path on the condensation, level by level.

    With `x = log(1/l2)` and shifts `s_K` of the component offsets (`r_i = s_K + m_i`), the stationarity
    condition of the ridge problem, summed over each component, is (internal comparisons cancel)

        sum_{(K,J)} ± a_KJ exp(-(s_K - s_J)) = l2 size_K s_K      (+ terms smaller by a power of l2).

    Level 1: `s = T u + phi` with `T + log T = x` turns this into `A^T flows(phi) = size u + size phi / T`
    on the tight edges (margin exactly 1), i.e. `phi(eps) = argmin G(phi) + (eps / 2) sum size phi^2` with
    `eps = 1/T` and `G` as in `_exp_potential_minimiser`, `b = size u` (`u`: `_min_norm_margin`). So as
    `l2 -> 0`: `phi -> argmin G` on the edges with a positive multiplier (`E+`), each of their components
    centred (the ridge term). Degenerate tight edges (`E0`: multiplier 0 in every solution) leave the
    constants of those components free at this order; they are fixed by the same problem one level down:
    nodes = `E+` components, edges = `E0` edges with strengths `a exp(-(phi_K - phi_J))`, and `eps` in place
    of `l2`. So the component constants grow like `log(1/eps) u2 ≈ log log(1/l2) u2`, and so on. The `E0`
    edges between components form a DAG and each level merges at least two nodes, so this ends.

    Gradient flow satisfies the same level equations: `r = u log t + phi(t)` with
    `d phi / d log t = -grad G(phi)` (metric `size`), and `log log t` terms when a support vector's multiplier
    is forced to 0 (Soudry et al. 2018; Ji & Telgarsky 2019). So it has the same directions and, inside
    one final component, the same finite part.

    Parameters
    ----------
    size, edges, log_strength : the condensation, as returned by `scc_quotient`.
    first : (M,) the level-1 direction `_min_norm_margin(size, edges)` when the caller has it already (the
        QP is the costliest step on large graphs), else None.

    Returns
    -------
    directions : list of (M,) arrays
        `u` of level 1, 2, ...: the offsets grow like `x u1 + log(x) (u2 - u1) + ...`, so policies compare
        components lexicographically on `(u1, u2, ...)`.
    phi : (M,)
        The finite part: the sum over levels of each level's `argmin G`, read on the original nodes.
    final : int (M,)
        Component of each node at the last level. Between two final components the constant is set by the
        ridge term alone; gradient descent sets it through its early iterates instead.
    """
    group = np.arange(len(size))
    phi = np.zeros(len(size))
    directions: list[np.ndarray] = []
    for level in range(len(size)):
        u = first if level == 0 and first is not None else _min_norm_margin(size, edges)
        directions.append(u[group])
        if len(edges) == 0:
            return directions, phi, group
        tight = (u[edges[:, 0]] - u[edges[:, 1]]) < 1.0 + TIE_TOL
        plus, alpha = np.zeros(len(edges), dtype=bool), np.zeros(len(edges))
        plus[tight], alpha[tight] = _dual_support(_incidence(edges[tight], len(size)), size * u)
        level_phi = _exp_potential_minimiser(size, size * u, edges[plus], log_strength[plus], alpha[plus])
        phi += level_phi[group]
        comp = edge_components(edges[plus, 0], edges[plus, 1], len(size))
        degenerate = tight & ~plus
        if not degenerate.any():
            return directions, phi, comp[group]
        # One level down: the E+ components are the nodes, the degenerate edges the only edges left (edges
        # with margin > 1 carry flows smaller by a power of l2, negligible at every logarithmic order).
        i, j = edges[degenerate].T
        level_strength = log_strength[degenerate] - (level_phi[i] - level_phi[j])
        between = comp[i] != comp[j]  # always true in exact arithmetic (an E0 edge inside would be in E+)
        n_nodes = comp.max() + 1
        keys, where = np.unique(comp[i][between] * n_nodes + comp[j][between], return_inverse=True)
        log_strength = grouped_logsumexp(level_strength[between], where, len(keys))
        edges = np.column_stack([keys // n_nodes, keys % n_nodes]).astype(int)
        size = np.bincount(comp, weights=size)
        group = comp[group]
    return directions, phi, group


@dataclass(frozen=True)
class SeparatedLimit:
    """The `l2 -> 0+` limit of the ridge path's policies, for every tau at once.

    The limit policy is `pi ∝ pi_ref exp(offsets / tau)` on `winners` and 0 elsewhere: only the final
    softmax depends on tau.
    """

    winners: np.ndarray
    offsets: np.ndarray
    infimum: float
    note: str
    components: tuple[tuple[int, ...], ...]
    losing: tuple[int, ...]

    def policy(self, log_pi_ref: np.ndarray, tau: float) -> np.ndarray:
        policy = np.zeros(len(self.winners))
        policy[self.winners] = softmax_policy(log_pi_ref[self.winners], self.offsets[self.winners] / tau)
        return policy

    def solution(self, log_pi_ref: np.ndarray, tau: float, unseen: tuple[int, ...]) -> Solution:
        """The `diverged` Solution at `tau` (no finite offsets or reward: some diverge)."""
        return Solution(
            policy=self.policy(log_pi_ref, tau),
            status=DIVERGED,
            loss=self.infimum,
            detail=self.note,
            unseen=unseen,
            components=self.components,
            losing=self.losing,
        )


def separated_limit(
    W: np.ndarray | Pairs, log_pi_ref: np.ndarray, graph: ComparisonGraph, loss: PairLoss
) -> SeparatedLimit:
    """Limit policies (for every tau), infimum of the loss, and a note, when the logistic loss on `W` has no
    minimiser.

    Every minimising sequence followed here (ridge path `l2 -> 0+`, gradient descent) sends the rewards to
    `log(1/l2) u + lower-order terms`. The policy `pi ∝ pi_ref exp(r / tau)` therefore puts
    all its mass on `S = argmax u`, whatever `tau`; inside one component of `S` the finite part is the MLE of
    the comparisons within it, and between tied components it is `limit_expansion`'s.

    Parameters
    ----------
    W : (n, n) win counts, or their `Pairs` (one segment: memory O(comparisons)), with at least one
        separating comparison.
    log_pi_ref : (n,) `log pi_ref` (`-inf` off its support).
    graph : `comparison_graph(W)`.
    loss : a loss whose tails are exponential, `-f'(x) ~ C e^{-k x}` (DPO's and RLHF's reward model's,
        `k = 1`; GPO's exponential, `k = 1`, and Savage's, `k = 2`: `loss.tail_rate`); its minimiser inside
        each component (`loss.minimisers` for a non-convex loss) is the finite part.

    Returns
    -------
    SeparatedLimit
        The winning actions and their finite offsets (so that `.policy(log_pi_ref, tau)` is the limit of
        the ridge path's policy), the infimum of the mean logistic loss (separating comparisons contribute
        0, the others their within-component MLE loss), and what the status detail should say.
    """
    pairs = as_pairs(W)
    crossing = graph.strong[pairs.winner] != graph.strong[pairs.loser]
    internal = pairs.subset(~crossing)
    r_internal = np.zeros(pairs.n)
    if len(internal.count):  # a non-convex loss (Savage's) brings its own search for the minimiser inside the SCCs
        r_internal = (
            loss.minimisers(dense_wins(internal)).z if loss.minimisers is not None else implied_reward(internal, loss)
        )
    w, l_, c = internal.winner, internal.loser, internal.count
    infimum = float(np.sum(c * loss.margin(r_internal[w] - r_internal[l_])) / pairs.count.sum())

    u = max_margin_direction(pairs, graph)
    # The mass goes to the fastest-growing offsets among the actions pi_ref supports. Absent actions stay
    # at u = 0; an action with pi_ref = 0 may lead u (population counts from a wider mu) but gets nothing.
    support = np.isfinite(log_pi_ref)
    top = support & (u >= u[support].max() - TIE_TOL)
    if len(np.unique(graph.strong[top])) == 1:
        winners, offsets = top, r_internal
        losers = int(np.sum(graph.active & ~top))
        note = f"{losers} of the compared actions get probability 0"
    else:
        # The split between tied components is set by the tails -f'(x) ~ C e^{-k x}: in the units k z they are
        # the logistic tails `_tie_split` is written for.
        rate = loss.tail_rate
        winners, offsets, note = _tie_split(pairs, graph, rate * r_internal, top, u)
        offsets = offsets / rate
    components, losing = _component_listing(graph)
    return SeparatedLimit(winners, offsets, infimum, note, components, losing)


def _component_listing(graph: ComparisonGraph) -> tuple[tuple[tuple[int, ...], ...], tuple[int, ...]]:
    """The strongly connected components over the compared actions (each in action order, listed by their
    first action), and the indices of those that lose a separating comparison to another component."""
    labels = graph.strong[graph.active]
    members = np.flatnonzero(graph.active)
    _, first, rank = np.unique(labels, return_index=True, return_inverse=True)
    position = np.argsort(np.argsort(first))[rank]  # each member's component, numbered by first action
    grouped = members[np.lexsort((members, position))]
    cuts = np.flatnonzero(np.diff(np.sort(position))) + 1
    components = tuple(tuple(part.tolist()) for part in np.split(grouped, cuts))
    order = labels[np.sort(first)]
    beaten = np.unique(graph.strong[graph.pairs.loser[graph.crossing]])
    return components, tuple(int(k) for k in np.flatnonzero(np.isin(order, beaten)))


def _tie_split(
    W: np.ndarray | Pairs, graph: ComparisonGraph, r_internal: np.ndarray, top: np.ndarray, u: np.ndarray
) -> tuple[np.ndarray, np.ndarray, str]:
    """Exact limit policy when `top = argmax u` (on supp pi_ref) spans several components.

    `limit_expansion` gives the offsets `r = x u1 + log(x) (u2 - u1) + ... + phi + m + o(1)`, `x = log(1/l2)`.
    Inside `top` the `u1` terms are equal, so the mass goes to the components that are lexicographically
    largest on `(u2, u3, ...)`; among those `pi ∝ pi_ref exp((phi + m) / tau)`. If `u2` (or a later level)
    differs inside `top`, neither the ridge path nor gradient descent converges to a split: the losers' share
    decays roughly like `log(1/l2)^(-gap / tau)` (an iterated log for later levels); the limit gives them 0.
    Where all of `u2, u3, ...` tie, the path still converges only like `1/log(1/l2)` (level 1) or
    `1/log log(1/l2)` (deeper): no `l2` reachable in floating point gets close, hence this route.

    Parameters
    ----------
    W, graph : as in `separated_limit`.
    r_internal : (n,) MLE of the comparisons inside each strongly connected component (canonical gauge).
    top : bool (n,) actions of supp pi_ref at the maximum of `u`.
    u : (n,) `max_margin_direction(W, graph)`, the first level of the expansion.

    Returns
    -------
    winners : bool (n,) the actions of the winning components.
    offsets : (n,) their finite offsets `phi + m` (the policy is `∝ pi_ref exp(offsets / tau)` on winners).
    note : the status detail.
    """
    node, size, edges, log_strength = scc_quotient(W, graph, r_internal)
    directions, phi, final = limit_expansion(size, edges, log_strength, _node_values(node, u))
    candidates = np.unique(node[top])
    n_tied = len(candidates)
    broken_at = None
    for level, u in enumerate(directions[1:], start=2):
        keep = u[candidates] >= u[candidates].max() - TIE_TOL
        if not keep.all() and broken_at is None:
            broken_at = (level, float(u[candidates].max() - u[candidates][~keep].max()))
        candidates = candidates[keep]
    winners = top & np.isin(node, candidates)
    if broken_at is None:
        note = f"tie between {n_tied} components of the max-margin direction, split by the exact limit"
    else:
        level, gap = broken_at
        order = "log " * (level - 1) + "log(1/l2)"
        rate = "log(1/l2)" if level == 2 else "an iterated log of 1/l2"
        note = (
            f"tie between {n_tied} components of the max-margin direction, broken at order {order}: "
            f"all mass on {len(candidates)} of them (the others' share decays only like "
            f"({rate})^-({gap:.3g}/tau) along the ridge path and gradient descent)"
        )
    # Winners in different final components: the ridge term centres each final component. Gradient descent
    # from pi_ref keeps the sum on each weak component instead, so it agrees only where a winner's weak
    # component is one final component; otherwise the comparisons with spare margin joining its final
    # components move their sums by finite amounts early on, and the split depends on the whole run.
    weak = _weak_of(graph, node)
    if len(np.unique(final[candidates])) > 1 and any(
        len(np.unique(final[weak == k])) > 1 for k in np.unique(weak[candidates])
    ):
        note += "; gradient descent's split depends on its early iterates here (it need not approach this one)"
    return winners, phi[node] + r_internal, note


def _weak_of(graph: ComparisonGraph, node: np.ndarray) -> np.ndarray:
    """Weakly connected component of each node of the condensation."""
    out = np.zeros(node.max() + 1, dtype=int)
    out[node] = graph.weak
    return out
