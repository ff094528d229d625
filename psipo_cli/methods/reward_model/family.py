"""The driver of the reward-model family: a reward fitted on `W` by a pairwise loss (with a ridge), then
`pi ∝ pi_ref exp(r / tau)` for every tau (paper Eqs. 2-3)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from psipo_cli.methods.kl import kl_gradient
from psipo_cli.methods.linalg import comparison_graph, log_of, unseen_actions
from psipo_cli.methods.pairwise.family import solve_pair_loss
from psipo_cli.methods.pairwise.solver import (
    implied_reward,
    margin_gradient,
    margin_objective,
    segment_objective,
    tempered,
)
from psipo_cli.methods.solution import Solution
from psipo_cli.methods.spec import Exact, Method

REWARD_TAU = 1.0  # the reward model is the method's pairwise loss at tau = 1 (Bradley–Terry for RLHF)


class RewardModelFamily:
    """Reward model (the method's `loss` at tau = 1, ridge `rm_l2`), then the KL-regularised policy."""

    name = "reward-model"
    on_comparisons = True
    reward_stage = True
    exact = None

    def solve_exact(
        self, method: Method, inputs: Any, taus: Sequence[float], options: dict[str, Any]
    ) -> list[Solution]:
        """Exact two-stage solution for each tau; the reward model is fitted once.

        `loss` is the reward model's objective (its infimum when it has no minimiser); `reward` its fit.
        Without a ridge this is the method's pairwise loss at `tau = 1` tempered by tau — DPO's exact
        answer, divergence included. With a ridge the reward of an action in no comparison is 0 by the
        ridge term, not left undetermined.
        """
        assert method.loss is not None
        W, pi_ref, rm_l2 = inputs.W, inputs.pi_ref, float(options.get("rm_l2") or 0.0)
        separable = method.loss.exact is Exact.SEPARATED_LIMIT and not comparison_graph(W).has_minimiser
        if rm_l2 == 0.0 and separable:  # no minimiser: the ridge path's limit, as the pairwise loss itself
            return solve_pair_loss(method.loss, W, pi_ref, taus)
        reward = implied_reward(W, method.loss, l2=rm_l2)
        value = margin_objective(reward, W, method.loss, l2=rm_l2)
        closed = method.loss.closed_form(W) if rm_l2 == 0.0 and method.loss.closed_form else lambda tau: ""
        unseen = unseen_actions(W, pi_ref) if rm_l2 == 0.0 else ()
        return tempered(reward, log_of(pi_ref), taus, lambda delta, tau: value, unseen, closed)

    def solve_dataset(self, method: Method, flat: Any, taus: Sequence[float], options: dict[str, Any]) -> Any:
        """Every context at once (`flat.pair_loss_flat`): without a ridge the pairwise loss at tau = 1 tempered
        by tau (divergence included), with one the ridge fit of every context in one damped Newton solve; the
        loss is the reward model's objective on each context."""
        from psipo_cli.methods.flat import pair_loss_flat

        loss, pairs, rm_l2 = method.loss_at(options), flat.pairs, float(options.get("rm_l2") or 0.0)
        assert loss is not None
        reward = implied_reward(pairs, loss, l2=rm_l2) if rm_l2 > 0 else None
        return pair_loss_flat(loss, flat, taus, lambda z, tau: segment_objective(z, pairs, loss, rm_l2), reward)

    def gradient_lanes(self, method: Method, plan: Any, tau: float, options: dict[str, Any]) -> Any:
        """A reward lane (phase 1: `loss` at tau = 1, ridge `rm_l2`, `rm_steps` steps; shared by every tau)
        and a KL lane (phase 2) ascending `J` with that lane's reward."""
        reward = plan.pair_lane(method.pair_grad, REWARD_TAU, options["rm_l2"], options["rm_steps"], phase=1)
        return plan.kl_lane(tau, reward), (reward, options["rm_l2"])

    def gradient_report(self, method: Method, run: Any, report: Any) -> float:
        """Both stages' status rules (the run's `grad_norm` is the reward model's, the first stage); the loss is
        the reward model's objective at its reported point."""
        assert method.loss is not None
        (reward_lane, l2), W = run.extra, np.asarray(run.inputs.W, float)
        pi_ref = np.asarray(run.inputs.pi_ref, float)
        loss = method.loss
        report.stage("reward model", lambda x: margin_gradient(x, W, loss, l2), reward_lane, REWARD_TAU)
        r = report.point(reward_lane)
        # The policy stage is deterministic whatever the batch size: rule 2 applies.
        report.stage("policy stage", lambda x: kl_gradient(x, r, pi_ref, run.tau), run.lane, run.tau, reward=r)
        return margin_objective(r, W, loss, l2=l2)


REWARD_MODEL = RewardModelFamily()
