"""The driver of the `f(tau h)` family (DPO, IPO, ...): one exact solver and one gradient plan for all.

A method of this family declares a `PairLoss` (its loss of `tau h`, the margin form the exact solver uses
and its kind of exact answer); nothing here depends on which method it is.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from psipo_cli.methods.linalg import (
    comparison_graph,
    log_of,
    mean_pair_grad,
    mean_pair_loss,
    segment_mean,
    unseen_actions,
)
from psipo_cli.methods.pairwise._limit import separated_limit
from psipo_cli.methods.pairwise.solver import implied_reward, mean_loss_at, tempered
from psipo_cli.methods.solution import Solution
from psipo_cli.methods.spec import Exact, Method, PairLoss


def solve_pair_loss(loss: PairLoss, W: Any, pi_ref: Any, taus: Sequence[float]) -> list[Solution]:
    """Exact minimiser of `mean_{(w,l)} pair_loss(delta_w - delta_l, tau)` for each tau.

    `z*` (`loss.implied_reward` when the method has a closed form, else the generic damped Newton solve) is
    computed once; `delta = z* / tau`. A `SEPARATED_LIMIT` loss on data with a separating comparison has no
    minimiser: every tau then gets the ridge path's limit (status `diverged`).
    """
    log_pi_ref = log_of(pi_ref)
    unseen = unseen_actions(W, pi_ref)
    if loss.exact is Exact.SEPARATED_LIMIT:
        graph = comparison_graph(W)
        if not graph.has_minimiser:
            limit = separated_limit(W, log_pi_ref, graph, loss)
            return [limit.solution(log_pi_ref, tau, unseen) for tau in taus]
    z = loss.implied_reward(W) if loss.implied_reward is not None else implied_reward(W, loss)
    closed = loss.closed_form(W) if loss.closed_form is not None else lambda tau: ""
    return tempered(z, log_pi_ref, taus, mean_loss_at(W, loss), unseen, closed)


class PairwiseFamily:
    """Losses of `tau h` on the comparisons of `W` (paper Eqs. 4 and 17)."""

    name = "pairwise"
    on_comparisons = True
    reward_stage = False
    exact = None

    def solve_exact(
        self, method: Method, inputs: Any, taus: Sequence[float], options: dict[str, Any]
    ) -> list[Solution]:
        loss = method.loss_at(options)
        assert loss is not None
        return solve_pair_loss(loss, inputs.W, inputs.pi_ref, taus)

    def solve_dataset(self, method: Method, flat: Any, taus: Sequence[float], options: dict[str, Any]) -> Any:
        """Every context at once (`flat.pair_loss_flat`); the loss is the mean pair loss at `delta = z / tau`."""
        from psipo_cli.methods.flat import pair_loss_flat

        loss, pairs = method.loss, flat.pairs
        assert loss is not None

        def value(z: np.ndarray, tau: float) -> np.ndarray:
            return segment_mean(pairs, loss.pair_loss((z[pairs.winner] - z[pairs.loser]) / tau, tau))

        return pair_loss_flat(loss, flat, taus, value)

    def gradient_lanes(self, method: Method, plan: Any, tau: float, options: dict[str, Any]) -> Any:
        """One pairwise lane: the loss's `pair_grad` at `tau` (and the options), no ridge, `steps` steps
        (phase 2)."""
        loss = method.loss_at(options)
        assert loss is not None
        return plan.pair_lane(loss.pair_grad, tau, 0.0, plan.steps, phase=2), loss

    def gradient_report(self, method: Method, run: Any, report: Any) -> float:
        """The mean pair loss on `W` at the reported offsets; one stage, deterministic at full batch."""
        W, tau, loss = np.asarray(run.inputs.W, float), run.tau, run.extra
        report.stage("offsets", lambda x: mean_pair_grad(x, W, loss.pair_grad, tau), run.lane, tau)
        return mean_pair_loss(report.point(run.lane), W, loss.pair_loss, tau)


PAIRWISE = PairwiseFamily()
