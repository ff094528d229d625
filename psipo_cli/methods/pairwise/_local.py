"""The exact answer of a pairwise loss of `tau h` that is not convex (EXO, DiscoPOP): a multi-start search.

The implied reward `z* = argmin_z F(z)`, `F(z) = sum W[w,l] f(z_w - z_l) / sum W`, still does not depend on
tau (a loss of `tau h`), but `F` may have several local minima, and a minimiser may be non-unique (on a cycle
EXO's optimum can break the data's symmetry: rotated copies have the same loss). No finite search certifies
a global minimum, so the answer is reported as `local`, with what the search did:

- starts: `z = 0` (`pi_ref`), the Bradley–Terry MLE when it exists, and `RANDOM_STARTS` normal points
  `N(0, s^2)`, `s = max(1, max |z|)` over the first two local minima (the minima live on that scale; much
  farther out a bounded loss such as EXO's is flat), drawn from `default_rng(SEED)`, so the search and its
  answer are reproducible;
- from each start: BFGS (scipy) on `F` with its analytic gradient, then Newton steps on the exact Hessian
  (the comparison graph's Laplacian weighted by `W f''`) until the step is at rounding level; end points
  that are not strict local minima (`is_strict_minimum`) are dropped;
- gradient flow from `pi_ref` (`dz/dt = -grad F`, `z(0) = 0`, integrated by LSODA until the gradient is
  below `FLOW_GTOL`; gradient descent with a small step follows it);
- the answer is the lowest local minimum; minima whose values agree to `VALUE_TOL` (relative) and differ as
  points by more than `POINT_TOL` are distinct optima: the detail then says the optimum is not unique, and
  the point reported is where gradient flow from `pi_ref` ends if it reaches the lowest value, else the
  first found (in start order). Where the flow ends at a worse local minimum, the detail says so
  (DiscoPOP's wrong-way minimum).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import numpy as np

from psipo_cli.methods.linalg import edge_components, pairs_of
from psipo_cli.methods.pairwise.solver import implied_reward, margin_gradient, margin_objective, mean_loss_at, tempered
from psipo_cli.methods.solution import LOCAL, Solution

if TYPE_CHECKING:
    from psipo_cli.methods.spec import PairLoss

SEED = 0
RANDOM_STARTS = 24
VALUE_TOL = 1e-9  # relative: two local minima with values this close are equally good
POINT_TOL = 1e-5  # two minima (canonical gauge) closer than this in every coordinate are the same point
FLOW_GTOL = 1e-10
FLOW_TIME = 1e9
NEWTON_STEPS = 100
MIN_GTOL = 1e-8  # a local minimum's gradient (inf-norm, mean loss) after Newton polishing
MIN_CURVATURE = 1e-8  # its smallest curvature off the gauge directions


@dataclass(frozen=True)
class LocalSearch:
    """The result of `local_search`.

    Attributes
    ----------
    z : (n,) the best local minimum found (canonical gauge: zero sum per connected component of the
        comparison graph, zero on absent actions).
    value : `F(z)`.
    starts : number of starts.
    minima : distinct local minima found.
    ties : distinct minima at the best value (1: the optimum found is unique among them).
    flow : (n,) where gradient flow from `z = 0` ends, or None when it does not reach a stationary point.
    flow_value : `F(flow)` (nan without one).
    """

    z: np.ndarray
    value: float
    starts: int
    minima: int
    ties: int
    flow: np.ndarray | None
    flow_value: float

    @property
    def flow_elsewhere(self) -> bool:
        """Gradient flow from `pi_ref` ends at a worse local minimum than the reported one."""
        return self.flow is not None and self.flow_value > self.value + VALUE_TOL * max(1.0, abs(self.value))

    def note(self) -> str:
        """The status detail of a `local` answer."""
        parts = [
            f"not convex: the best of {self.minima} distinct local minima found from {self.starts} starts "
            f"(pi_ref, the Bradley-Terry MLE where it exists, {RANDOM_STARTS} seeded random points; BFGS then "
            "Newton)"
        ]
        if self.ties > 1:
            parts.append(
                f"{self.ties} distinct minimisers reach the same loss: the optimum is not unique; reported: the one "
                "gradient descent from pi_ref reaches where it reaches that loss, else the first found"
            )
        if self.flow_elsewhere:
            parts.append(
                f"gradient descent from pi_ref ends at another local minimum (loss {self.flow_value:.6g} against "
                f"{self.value:.6g})"
            )
        return "; ".join(parts)


def gauge(z: np.ndarray, W: np.ndarray) -> np.ndarray:
    """`z` with zero sum on each connected component of the comparison graph, zero on absent actions."""
    w, l_, _ = pairs_of(W)
    n = len(z)
    comp = edge_components(w, l_, n)
    active = np.zeros(n, dtype=bool)
    active[w] = active[l_] = True
    sums = np.bincount(comp[active], weights=z[active], minlength=n)
    counts = np.bincount(comp[active], minlength=n)
    means = np.divide(sums, counts, out=np.zeros(n), where=counts > 0)
    return np.where(active, z - means[comp], 0.0)


def hessian(z: np.ndarray, W: np.ndarray, loss: PairLoss) -> np.ndarray:
    """`sum W f''(z_w - z_l) (e_w - e_l)(e_w - e_l)^T / sum W` (dense: the tabular problems are small)."""
    w, l_, c = pairs_of(W)
    k = c * loss.margin_curv(z[w] - z[l_]) / c.sum()
    H = np.zeros((len(z), len(z)))
    np.add.at(H, (w, w), k)
    np.add.at(H, (l_, l_), k)
    np.add.at(H, (w, l_), -k)
    np.add.at(H, (l_, w), -k)
    return H


def polish(z: np.ndarray, W: np.ndarray, loss: PairLoss) -> np.ndarray:
    """Newton steps from a point near a local minimum (minimum-norm steps: the gauge directions are flat),
    each kept only if it does not raise `F` beyond rounding; stops when the step is at rounding level."""
    f = margin_objective(z, W, loss)
    for _ in range(NEWTON_STEPS):
        g = margin_gradient(z, W, loss)
        step = -np.linalg.lstsq(hessian(z, W, loss), g, rcond=None)[0]
        if not np.all(np.isfinite(step)) or g @ step >= 0:  # not a descent direction: not near a minimum
            return z
        candidate = z + step
        f_new = margin_objective(candidate, W, loss)
        if not f_new <= f + 1e-15 * max(1.0, abs(f)):
            return z
        z, f = candidate, f_new
        if np.max(np.abs(step)) <= 1e-15 * (1.0 + np.max(np.abs(z))):
            break
    return z


def is_strict_minimum(z: np.ndarray, W: np.ndarray, loss: PairLoss) -> bool:
    """First- and second-order conditions: a small gradient and a Hessian positive definite off the gauge
    directions (one flat direction per connected component). Excludes the plateaus of a bounded loss, where
    BFGS stops with a vanishing gradient far from any minimum."""
    w, l_, _ = pairs_of(W)
    flat = len(np.unique(edge_components(w, l_, W.shape[0])))
    eig = np.linalg.eigvalsh(hessian(z, W, loss))
    curved = np.sort(eig)[flat:]
    g = float(np.max(np.abs(margin_gradient(z, W, loss))))
    return g <= MIN_GTOL and (len(curved) == 0 or float(curved[0]) > MIN_CURVATURE)


def _descend(start: np.ndarray, W: np.ndarray, loss: PairLoss) -> np.ndarray:
    from scipy.optimize import minimize

    res = minimize(
        lambda z: margin_objective(z, W, loss), start, jac=lambda z: margin_gradient(z, W, loss), method="BFGS",
        options={"gtol": 1e-12, "maxiter": 20_000},
    )
    return gauge(polish(res.x, W, loss), W)


def gradient_flow(W: np.ndarray, loss: PairLoss) -> np.ndarray | None:
    """Where `dz/dt = -grad F(z)` from `z = 0` stops (its gradient below `FLOW_GTOL`), polished by Newton;
    None if it has not stopped by `FLOW_TIME` (e.g. it runs off to infinity)."""
    from scipy.integrate import solve_ivp

    def small(t: float, z: np.ndarray) -> float:
        return float(np.max(np.abs(margin_gradient(z, W, loss)))) - FLOW_GTOL

    small.terminal = True  # type: ignore[attr-defined]
    sol = solve_ivp(
        lambda t, z: -margin_gradient(z, W, loss), (0.0, FLOW_TIME), np.zeros(W.shape[0]), method="LSODA",
        events=small, rtol=1e-10, atol=1e-12,
    )
    if sol.status != 1:
        return None
    return gauge(polish(sol.y[:, -1], W, loss), W)


def local_search(W: np.ndarray, loss: PairLoss, mle: np.ndarray | None = None) -> LocalSearch:
    """The multi-start search of the module docstring on `F(z) = mean W f(z_w - z_l)`; `mle` is the
    Bradley–Terry MLE (None where it does not exist)."""
    n = W.shape[0]
    found = [_descend(np.zeros(n), W, loss)]
    if mle is not None:
        found.append(_descend(mle, W, loss))
    scale = max(1.0, *(float(np.max(np.abs(z), initial=0.0)) for z in found))
    rng = np.random.default_rng(SEED)
    found += [_descend(scale * rng.standard_normal(n), W, loss) for _ in range(RANDOM_STARTS)]
    starts = len(found)
    strict = [z for z in found if is_strict_minimum(z, W, loss)]
    found = strict or found  # no strict minimum (a degenerate one): keep every end point
    values = np.array([margin_objective(z, W, loss) for z in found])
    distinct: list[int] = []
    for k in range(len(found)):
        if all(np.max(np.abs(found[k] - found[j]), initial=0.0) > POINT_TOL for j in distinct):
            distinct.append(k)
    best_value = float(values.min())
    level = best_value + VALUE_TOL * max(1.0, abs(best_value))
    best = [k for k in distinct if values[k] <= level]
    flow = gradient_flow(W, loss)
    flow_value = float("nan") if flow is None else margin_objective(flow, W, loss)
    z = flow if flow is not None and flow_value <= level else found[best[0]]
    return LocalSearch(
        z=z,
        value=float(margin_objective(z, W, loss)),
        starts=starts,
        minima=len(distinct),
        ties=len(best),
        flow=flow,
        flow_value=flow_value,
    )


def flow_note(W: np.ndarray, loss: PairLoss, winners_first: np.ndarray) -> str:
    """On data without a minimiser: where gradient flow from `pi_ref` stops instead, when it stops at a
    finite point (a local minimum of a loss that is not convex), and on how many of the comparisons that the
    limit sends apart (`winners_first`: bool mask of `W`'s separating comparisons) it ranks the loser
    higher."""
    flow = gradient_flow(W, loss)
    if flow is None or not is_strict_minimum(flow, W, loss):
        return ""
    w, l_ = np.nonzero(winners_first)
    wrong = int(np.sum(flow[w] < flow[l_]))
    value = margin_objective(flow, W, loss)
    return (
        f"gradient descent from pi_ref stops instead at a finite local minimum (loss {value:.6g})"
        f" that ranks the loser above the winner on {wrong} of the {len(w)} separating comparisons"
    )


def local_solutions(
    W: np.ndarray, loss: PairLoss, log_pi_ref: np.ndarray, taus: Sequence[float], unseen: tuple[int, ...]
) -> list[Solution]:
    """The `local` Solution for each tau: `z*` of `local_search` (started also from the Bradley–Terry MLE
    where it exists), `delta = z* / tau`."""
    from psipo_cli.methods.linalg import comparison_graph
    from psipo_cli.methods.pairwise.dpo import LOSS as LOGISTIC

    mle = implied_reward(W, LOGISTIC) if comparison_graph(W).has_minimiser else None
    search = local_search(W, loss, mle)
    solutions = tempered(search.z, log_pi_ref, taus, mean_loss_at(W, loss), unseen, lambda tau: "")
    return [replace(s, status=LOCAL, detail=search.note()) for s in solutions]
