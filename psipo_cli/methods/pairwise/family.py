"""The driver of the `f(tau h)` family (DPO, IPO, ...): one exact solver and one gradient plan for all.

A method of this family declares a `PairLoss` (its loss of `tau h`, the margin form the exact solver uses
and its kind of exact answer); nothing here depends on which method it is.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import numpy as np

from psipo_cli.methods.linalg import comparison_graph, log_of, mean_pair_grad, mean_pair_loss, unseen_actions
from psipo_cli.methods.pairwise._limit import separated_limit
from psipo_cli.methods.pairwise._local import flow_note, local_solutions
from psipo_cli.methods.pairwise.solver import implied_reward, mean_loss_at, tempered
from psipo_cli.methods.solution import Solution
from psipo_cli.methods.spec import Exact, Method, PairLoss


def solve_pair_loss(loss: PairLoss, W: Any, pi_ref: Any, taus: Sequence[float]) -> list[Solution]:
    """Exact minimiser of `mean_{(w,l)} pair_loss(delta_w - delta_l, tau)` for each tau.

    `z*` (`loss.implied_reward` when the method has a closed form, else the generic damped Newton solve) is
    computed once; `delta = z* / tau`. A `SEPARATED_LIMIT` loss on data with a separating comparison has no
    minimiser: every tau then gets the ridge path's limit (status `diverged`). A loss that is not convex
    (`loss.convex`) gets the multi-start search of `_local` (status `local`).
    """
    log_pi_ref = log_of(pi_ref)
    unseen = unseen_actions(W, pi_ref)
    if loss.exact is Exact.SEPARATED_LIMIT:
        graph = comparison_graph(W)
        if not graph.has_minimiser:
            limit = separated_limit(W, log_pi_ref, graph, loss)
            solutions = [limit.solution(log_pi_ref, tau, unseen) for tau in taus]
            if loss.convex:
                return solutions
            note = flow_note(W, loss, graph.separating)
            return [replace(s, detail="; ".join(filter(None, (s.detail, note)))) for s in solutions]
    if not loss.convex:
        return local_solutions(W, loss, log_pi_ref, taus, unseen)
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
