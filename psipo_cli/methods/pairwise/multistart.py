"""The exact answer of a non-convex loss of `tau h`: the best local minimiser of a documented multi-start search.

For a loss `f(tau h)` that is not convex (GPO's Savage function, arXiv 2402.05749; EXO, DiscoPOP) the
implied-reward objective `F(z) = sum W f(z_w - z_l) / sum W` can have several local minima, so no local
method certifies a global one. The search (`multistart`) is the same for every such loss:

- starts: where gradient flow from `z = 0` (the reference policy, where gradient training begins) stops
  (`flow.gradient_flow`; `z = 0` itself where it does not stop), then `MULTISTART_DRAWS` points with
  independent `N(0, MULTISTART_SCALE^2)` coordinates drawn from `numpy.random.default_rng(MULTISTART_SEED)`
  (fixed: the same data give the same answer, byte for byte);
- from each start, BFGS on `F` with its analytic gradient (scipy.optimize.minimize, `gtol` 1e-10), then
  Newton steps to rounding (`polish`), the end point put in the canonical gauge (zero sum on each
  connected component, zero on absent actions);
- the answer is the end point of lowest `F` (the earliest start among ties); the detail says how many
  distinct local minima were found, whether several share the best value (then the optimum is not unique),
  and where the run from `z = 0` ended when that is not the reported point.

Status `local`: the best point found, not a certified global minimum.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from psipo_cli.methods.linalg import LaplacianSystem, pairs_of
from psipo_cli.methods.pairwise.flow import gradient_flow
from psipo_cli.methods.pairwise.solver import margin_gradient, margin_objective
from psipo_cli.schema import LOCAL

if TYPE_CHECKING:
    from psipo_cli.methods.spec import ImpliedReward, PairLoss

MULTISTART_DRAWS = 24  # random starts after z = 0
MULTISTART_SCALE = 3.0  # standard deviation of their coordinates, in implied-reward units (logit scale)
MULTISTART_SEED = 0
SAME_POINT = 1e-6  # end points closer than this (inf-norm, relative to 1 + |z|) are one local minimum
SAME_VALUE = 1e-10  # values closer than this (relative to 1 + |F|) tie


@dataclass(frozen=True)
class MultiStart:
    """What the search found.

    Attributes
    ----------
    z : (n,) the best end point (canonical gauge).
    value : F at `z`.
    from_ref : (n,) where the run from `z = 0` ended.
    minima : number of distinct end points (local minima found).
    best : number of distinct end points sharing the best value.
    starts : number of starts.
    """

    z: np.ndarray
    value: float
    from_ref: np.ndarray
    minima: int
    best: int
    starts: int

    @property
    def ref_is_best(self) -> bool:
        """Whether the run from `z = 0` ended at the reported point."""
        return _same(self.from_ref, self.z)

    def note(self) -> str:
        """The status detail: the search, what it found, and where descent from pi_ref ended."""
        text = (
            f"the loss is not convex: the best of {self.starts} local searches (BFGS from where gradient flow "
            "from z = 0 stops, and "
            f"{self.starts - 1} seeded Gaussian starts, sd {MULTISTART_SCALE:g}), {self.minima} distinct local "
            f"minim{'um' if self.minima == 1 else 'a'} found"
        )
        if self.best > 1:
            text += f"; {self.best} of them share the best value, so the optimum is not unique (reported: the first)"
        if not self.ref_is_best:
            text += "; gradient descent from pi_ref (z = 0) ends at a different local minimum, with a higher loss"
        return text

    def answer(self) -> ImpliedReward:
        """The `local` exact answer."""
        from psipo_cli.methods.spec import ImpliedReward

        return ImpliedReward(self.z, LOCAL, self.note(), self.value)


def _same(a: np.ndarray, b: np.ndarray) -> bool:
    return bool(np.max(np.abs(a - b), initial=0.0) <= SAME_POINT * (1.0 + np.max(np.abs(a), initial=0.0)))


def polish(z: np.ndarray, W: np.ndarray, loss: PairLoss, steps: int = 50) -> np.ndarray:
    """Newton steps from a BFGS end point (which `gtol` leaves ~1e-9 from the minimiser): the minimum-norm
    solution of `H step = -g` (the gauge directions are flat), `H` the comparison graph's Laplacian weighted
    by `W f''` (dense: tabular problems are small). A step is kept only while it descends and does not raise
    `F` beyond rounding: away from a strict minimum (a flat direction of a clipped loss) it stops at once."""
    w, l_, c = pairs_of(W)
    f = margin_objective(z, W, loss)
    for _ in range(steps):
        k = c * loss.margin_curv(z[w] - z[l_]) / c.sum()
        H = np.zeros((len(z), len(z)))
        np.add.at(H, (w, w), k)
        np.add.at(H, (l_, l_), k)
        np.add.at(H, (w, l_), -k)
        np.add.at(H, (l_, w), -k)
        g = margin_gradient(z, W, loss)
        step = -np.linalg.lstsq(H, g, rcond=None)[0]
        if not np.all(np.isfinite(step)) or not g @ step < 0:
            break
        f_new = margin_objective(z + step, W, loss)
        if not f_new <= f + 4e-16 * max(1.0, abs(f)):
            break
        z, f = z + step, f_new
        if np.max(np.abs(step)) <= 1e-15 * (1.0 + np.max(np.abs(z))):
            break
    return z


def multistart(W: np.ndarray, loss: PairLoss, draws: int = MULTISTART_DRAWS) -> MultiStart:
    """The multi-start search of the module docstring on `F(z) = sum W f(z_w - z_l) / sum W`, `f = loss.margin`.

    Parameters
    ----------
    W : (n, n) win counts.
    loss : the pairwise loss (its `margin`, `margin_grad`).
    draws : random starts after `z = 0`.
    """
    from scipy.optimize import minimize

    n = W.shape[0]
    w, l_, c = pairs_of(W)
    gauge = LaplacianSystem(w, l_, c, n)
    active = np.zeros(n, dtype=bool)
    active[w] = active[l_] = True
    rng = np.random.default_rng(MULTISTART_SEED)
    flow = gradient_flow(W, loss)
    random_starts = [gauge.centre(rng.normal(0.0, MULTISTART_SCALE, n)) * active for _ in range(draws)]
    starts = [np.zeros(n) if flow is None else flow, *random_starts]
    ends, values = [], []
    for start in starts:
        res = minimize(
            margin_objective, start, args=(W, loss), jac=margin_gradient, method="BFGS",
            options={"gtol": 1e-10, "maxiter": 2000},
        )
        z = gauge.centre(polish(res.x, W, loss)) * active
        ends.append(z)
        values.append(margin_objective(z, W, loss))
    distinct: list[int] = []
    for k, z in enumerate(ends):
        if not any(_same(ends[j], z) for j in distinct):
            distinct.append(k)
    best_value = min(values)
    tie = SAME_VALUE * (1.0 + abs(best_value))
    best = [k for k in distinct if values[k] <= best_value + tie]
    return MultiStart(ends[best[0]], values[best[0]], ends[0], len(distinct), len(best), len(starts))
