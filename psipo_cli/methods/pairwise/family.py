"""The driver of the `f(tau h)` family (DPO, IPO, ...): one exact solver and one gradient plan for all.

A method of this family declares a `PairLoss` (its loss of `tau h`, the margin form the exact solver uses
and its kind of exact answer); nothing here depends on which method it is.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import numpy as np

from psipo_cli.methods.linalg import (
    comparison_graph,
    log_of,
    mean_pair_grad,
    mean_pair_loss,
    segment_mean,
    softmax_policy,
    unseen_actions,
)
from psipo_cli.methods.pairwise._limit import TIE_TOL, separated_limit
from psipo_cli.methods.pairwise.flow import flow_note
from psipo_cli.methods.pairwise.solver import implied_reward, mean_loss_at, tempered
from psipo_cli.methods.solution import UNBOUNDED, Solution
from psipo_cli.methods.spec import Exact, ImpliedReward, Method, PairLoss


def solve_pair_loss(loss: PairLoss, W: Any, pi_ref: Any, taus: Sequence[float]) -> list[Solution]:
    """Exact minimiser of `mean_{(w,l)} pair_loss(delta_w - delta_l, tau)` for each tau.

    `z*` is computed once and `delta = z* / tau`: by `loss.minimisers` where the loss has one (with its own
    status: a point of a `set`, the best `local` minimum, or `unbounded`), else by `loss.implied_reward` (a
    closed form), else by the generic damped Newton solve (`optimal`). A `SEPARATED_LIMIT` loss (or one that
    `diverges_when_separated`) on data with a separating comparison has no minimiser: every tau then gets
    the ridge path's limit (status `diverged`).
    """
    log_pi_ref = log_of(pi_ref)
    unseen = unseen_actions(W, pi_ref)
    if loss.exact is Exact.SEPARATED_LIMIT or loss.diverges_when_separated:
        graph = comparison_graph(W)
        if not graph.has_minimiser:
            limit = separated_limit(W, log_pi_ref, graph, loss)
            solutions = [limit.solution(log_pi_ref, tau, unseen) for tau in taus]
            if loss.exact is not Exact.LOCAL:
                return solutions
            # Not convex: gradient descent from pi_ref may stop at a finite local minimum instead (DiscoPOP).
            note = flow_note(W, loss, graph.separating)
            return [replace(s, detail="; ".join(filter(None, (s.detail, note)))) for s in solutions]
    closed = loss.closed_form(W) if loss.closed_form is not None else lambda tau: ""
    if loss.minimisers is not None:
        answer = loss.minimisers(W)
        if answer.status == UNBOUNDED:
            return [unbounded_solution(answer, log_pi_ref, unseen) for _ in taus]
        solutions = tempered(
            answer.z, log_pi_ref, taus, mean_loss_at(W, loss), unseen, closed, answer.status, answer.detail
        )
        return [replace(solution, named=answer.named) for solution in solutions]
    z = loss.implied_reward(W) if loss.implied_reward is not None else implied_reward(W, loss)
    return tempered(z, log_pi_ref, taus, mean_loss_at(W, loss), unseen, closed)


def unbounded_solution(answer: ImpliedReward, log_pi_ref: np.ndarray, unseen: tuple[int, ...]) -> Solution:
    """The `unbounded` Solution, the same for every tau: the infimum is -inf and no offsets or reward are
    finite. The offsets of gradient flow grow like `t answer.z`, so its policy puts all the mass on the
    actions of largest `answer.z` in supp pi_ref: the limit itself when that is one action; between tied
    actions the split is set by lower-order terms, and the policy shown is pi_ref restricted to them (a
    documented representative, which the detail names)."""
    support = np.isfinite(log_pi_ref)
    top = support & (answer.z >= answer.z[support].max() - TIE_TOL * (1.0 + np.abs(answer.z).max()))
    detail = answer.detail
    if top.sum() > 1:
        detail += (
            f"; {int(top.sum())} actions tie for the fastest growth: their split is not resolved here, the policy "
            "shown is pi_ref restricted to them"
        )
    return Solution(
        policy=softmax_policy(np.where(top, log_pi_ref, -np.inf), np.zeros(len(top))), status=UNBOUNDED,
        loss=-np.inf, detail=detail, unseen=unseen, named=answer.named,
    )


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
        """Every context at once (`flat.pair_loss_flat`); the loss is the mean pair loss at `delta = z / tau`.
        None (one context at a time) for what the flat solver does not cover: a loss with its own search
        (`minimisers`: sets, local minima, unbounded losses) or that diverges without logistic tails, and a
        reference-free method (its reference is not the data's `pi_ref`)."""
        from psipo_cli.methods.flat import pair_loss_flat

        loss, pairs = method.loss_at(options), flat.pairs
        assert loss is not None
        flat_kinds = (Exact.ATTAINED, Exact.SEPARATED_LIMIT)
        if method.reference_free or loss.minimisers is not None or loss.diverges_when_separated or (
            loss.exact not in flat_kinds
        ):
            return None

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
