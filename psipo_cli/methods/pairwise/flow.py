"""Gradient flow from `pi_ref` on the implied reward of a loss of `tau h`: where gradient descent goes.

For a loss that is not convex (EXO, DiscoPOP, GPO's Savage), gradient training from `pi_ref` need not reach
the best minimiser: DiscoPOP's `f'(0) > 0` (arXiv 2406.08414, Eq. 5) sends it the wrong way, and on data
without a minimiser it can stop at a finite local minimum instead of diverging. `gradient_flow` integrates
`dz/dt = -grad F(z)`, `F(z) = sum W f(z_w - z_l) / sum W`, from `z = 0` (LSODA, until the gradient is below
`FLOW_GTOL`): gradient descent with a small step follows it, whatever tau (`z = tau delta`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from psipo_cli.methods.linalg import LaplacianSystem, pairs_of
from psipo_cli.methods.pairwise.solver import margin_gradient, margin_objective

if TYPE_CHECKING:
    from psipo_cli.methods.spec import PairLoss

FLOW_GTOL = 1e-10  # inf-norm of the gradient of the mean loss where the flow is taken to have stopped
FLOW_TIME = 1e9  # in units of the mean loss's gradient: a flow still moving by then is not stopping


def gradient_flow(W: np.ndarray, loss: PairLoss) -> np.ndarray | None:
    """Where `dz/dt = -grad F(z)` from `z = 0` stops (its gradient below `FLOW_GTOL`), in the canonical gauge;
    None if it has not stopped by `FLOW_TIME` (it runs off to infinity, as on separable data for a loss whose
    infimum is only approached there)."""
    from scipy.integrate import solve_ivp

    def stopped(t: float, z: np.ndarray) -> float:
        return float(np.max(np.abs(margin_gradient(z, W, loss)))) - FLOW_GTOL

    stopped.terminal = True  # type: ignore[attr-defined]
    start = np.zeros(W.shape[0])
    if stopped(0.0, start) <= 0:
        # Stopped at the start (balanced data): an event fires only where `stopped` changes sign, so LSODA
        # would crawl to FLOW_TIME along a gradient below FLOW_GTOL (millions of steps).
        end = start
    else:
        sol = solve_ivp(lambda t, z: -margin_gradient(z, W, loss), (0.0, FLOW_TIME), start, method="LSODA",
                        events=stopped, rtol=1e-10, atol=1e-12)
        if sol.status != 1:
            return None
        end = sol.y[:, -1]
    w, l_, c = pairs_of(W)
    active = np.zeros(W.shape[0], dtype=bool)
    active[w] = active[l_] = True
    return LaplacianSystem(w, l_, c, W.shape[0]).centre(end) * active


def flow_note(W: np.ndarray, loss: PairLoss, separating: np.ndarray) -> str:
    """On data without a minimiser (`separating`: bool mask of the comparisons that separate strongly
    connected components): where gradient flow from `pi_ref` stops instead, when it stops at a finite point,
    and on how many of those comparisons it ranks the loser above the winner."""
    flow = gradient_flow(W, loss)
    if flow is None:
        return ""
    w, l_ = np.nonzero(separating)
    wrong = int(np.sum(flow[w] < flow[l_]))
    return (
        f"gradient descent from pi_ref stops instead at a finite local minimum (mean loss "
        f"{margin_objective(flow, W, loss):.6g}) that ranks the loser above the winner on {wrong} of the {len(w)} "
        "separating comparisons"
    )
