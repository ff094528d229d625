"""The driver of the `online` family: self-play methods that chase the equilibrium of the regularised preference
game (Nash-MD, online IPO / IPO-MD, SPPO, INPO, EGPO), each described by an `OnlineRule`.

They see preferences `(P, mu)` (the population `P`, or `P_hat` from data where every pair of the support was
observed, as ΨPO). Their exact answer is the stationary point of the method's expected update at the given
settings (`updates.stationary_point`), which is the equilibrium `pi*_tau` only when the opponent is the policy
itself (`b = 0`); SPPO's is the limit of its averaged iterates. The gradient engine runs them in their own
block (`block.OnlineBlock`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from psipo_cli.methods.linalg import softmax_policy
from psipo_cli.methods.online import updates
from psipo_cli.methods.solution import Solution
from psipo_cli.methods.spec import Exact, Method
from psipo_cli.schema import AVERAGE, OPTIMAL

#: How a method turns the score into a gradient for `--optimizer adam|sgd` (`updates` module docstring).
IPO_LOSS, POLICY_GRADIENT = "ipo", "pg"


@dataclass(frozen=True)
class OnlineRule:
    """What distinguishes one online method.

    Attributes
    ----------
    loss : {"ipo", "pg"}
        `ipo`: IPO's square loss on pairs drawn from the mixture (expected logit gradient `(4/tau) m (g -
        m·g)`); `pg`: the policy gradient of `P(pi ≻ m) - tau KL(pi || pi_ref)` (`pi (g - pi·g)`).
    regularised : bool
        False for SPPO: no reference, no tau (score `-P pi`).
    extragradient : bool
        EGPO: each step evaluates the score at the half step `X - eta g(X)` (extragradient in KL geometry).
    step_mixture : bool
        Nash-MD: without `--mixture` the mixture of step `t` is `eta_t tau` (the theory's update), capped at 1.
    """

    loss: str
    regularised: bool = True
    extragradient: bool = False
    step_mixture: bool = False


class OnlineFamily:
    """The driver of one online method (its `rule`); every instance is the family `online`."""

    name = "online"
    on_comparisons = False
    reward_stage = False
    mirror_descent = True

    def __init__(self, rule: OnlineRule) -> None:
        self.rule = rule
        self.exact = Exact.ATTAINED if rule.regularised else Exact.AVERAGE

    def mixture(self, options: dict[str, Any], tau: float) -> float:
        """The mixture `b` of the exact answer: `--mixture` when given; Nash-MD without it `lr * tau` (capped at
        1) under a constant step and 0 (the `eta -> 0` limit) under a decreasing one."""
        if not self.rule.step_mixture or options.get("mixture") is not None:
            return float(options.get("mixture") or 0.0)
        if options.get("lr_schedule", "constant") != "constant" and options.get("lr_final", 1.0) < 1.0:
            return 0.0
        return min(1.0, float(options["lr"]) * tau)

    def solve_exact(
        self, method: Method, inputs: Any, taus: Sequence[float], options: dict[str, Any]
    ) -> list[Solution]:
        """The stationary point of the method's expected update for each tau (module docstring)."""
        P, pi_ref = np.asarray(inputs.P, float), np.asarray(inputs.pi_ref, float)
        if not self.rule.regularised:
            return [sppo_limit(P, pi_ref)] * len(taus)
        out = []
        for tau in taus:
            b = self.mixture(options, tau)
            pi = updates.stationary_point(P, pi_ref, tau, b)
            gap = updates.residual(P, pi_ref, tau, b, pi)
            detail = "; ".join(filter(None, [stationary_text(b, tau, gap), self.step_note(options, tau)]))
            out.append(Solution(policy=pi, status=OPTIMAL, loss=gap, detail=detail))
        return out

    def step_note(self, options: dict[str, Any], tau: float) -> str:
        """Nash-MD without `--mixture`: how the step sets the mixture (`mixture`)."""
        if not self.rule.step_mixture or options.get("mixture") is not None:
            return ""
        lr = float(options["lr"])
        if self.mixture(options, tau) == 0.0:
            final = lr * float(options["lr_final"])
            return (f"a decreasing step (--lr-schedule {options['lr_schedule']}): the eta -> 0 limit; a run that "
                    f"ends at eta = lr * lr_final = {final:g} stops near T_tau(pi*_t), t = tau / (1 - eta tau)")
        if lr * tau > 1.0:
            return f"the mixture lr * tau = {lr * tau:g} is capped at 1 (the update needs eta tau <= 1)"
        return f"the mixture is the step's lr * tau = {lr * tau:g} (constant step)"

    def gradient_lanes(self, method: Method, plan: Any, tau: float, options: dict[str, Any]) -> Any:
        """One lane of the family's block (`block.OnlineBlock`): the run's `P`, `tau` and mixture."""
        from psipo_cli.methods.online.block import OnlineLane, build_block

        P = np.asarray(plan.inputs.P, float)
        mixture = options.get("mixture")
        lane = OnlineLane(self.rule, P, tau if self.rule.regularised else 0.0, mixture, plan.log_pi_ref,
                          plan.stream)
        key = (method.name, tau, mixture)
        return plan.block_lane("online", build_block, key, lane), (lane, tau)

    def gradient_report(self, method: Method, run: Any, report: Any) -> float:
        """One stage, the expected update's gradient at the reported offsets (zero exactly at the stationary
        point); the loss is its residual (`updates.residual`; SPPO: `updates.replicator_residual`)."""
        from psipo_cli.methods.online.block import final_mixture

        lane, tau = run.extra
        pi_ref = np.asarray(run.inputs.pi_ref, float)
        b = final_mixture(lane, report.settings)
        log_pi_ref = lane.log_pi_ref[None]
        support = np.isfinite(log_pi_ref)
        P = lane.P[None]
        scale = tau if self.rule.regularised else 1.0

        def gradient(x: np.ndarray) -> np.ndarray:
            X = x[None]
            pi = softmax_policy(log_pi_ref, X)
            m = updates.mixture(log_pi_ref, X, np.array([[b]]))
            g = updates.score(X, P, m, np.array([[lane.tau]]), support)
            return updates.centred(pi, g)[0]

        if not self.rule.regularised:
            report.note(sppo_note(lane.P, pi_ref))
        report.stage("offsets", gradient, run.lane, scale)
        if not self.rule.regularised:
            return updates.replicator_residual(lane.P, pi_ref, report.policy)
        return updates.residual(lane.P, pi_ref, tau, b, report.policy)


def stationary_text(b: float, tau: float, gap: float) -> str:
    """The rule an exact answer follows, with its certificate."""
    if b == 0.0:
        return f"the regularised Nash equilibrium pi*_tau (stationary point of the update; gap {gap:.2g})"
    if b >= 1.0:
        return f"mixture b = 1 (the opponent is pi_ref): the stationary point is T_tau(pi_ref) (residual {gap:.2g})"
    return (f"mixture b = {b:g}: the stationary point is T_tau(pi*_t) with t = tau / (1 - b) = {tau / (1 - b):g}, "
            f"not pi*_tau (residual {gap:.2g})")


def sppo_limit(P: np.ndarray, pi_ref: np.ndarray) -> Solution:
    """SPPO's answer: the limit of the average of its iterates from `pi_ref`, the maximal lottery of `P` on
    `supp pi_ref` (multiplicative weights in a symmetric zero-sum game; Freund & Schapire 1999); tau plays
    no role. With a Condorcet winner the last iterate converges to it too; otherwise it does not."""
    from psipo_cli.methods.nash.lottery import maximal_lottery

    support = pi_ref > 0
    pi = np.zeros_like(pi_ref)
    pi[support] = maximal_lottery(P[np.ix_(support, support)], pi_ref[support])
    note = sppo_note(P, pi_ref)
    detail = f"SPPO (no reference, no tau): the average of the iterates converges to the maximal lottery; {note}"
    return Solution(policy=pi, status=AVERAGE, loss=updates.replicator_residual(P, pi_ref, pi), detail=detail)


def sppo_note(P: np.ndarray, pi_ref: np.ndarray) -> str:
    """Whether SPPO's last iterate converges: with a Condorcet winner on `supp pi_ref`, to it; otherwise not."""
    from psipo_cli.methods.nash.lottery import condorcet_winner

    support = pi_ref > 0
    if condorcet_winner(P[np.ix_(support, support)]) is not None:
        return "a Condorcet winner exists: the last iterate converges to it as well"
    return ("no Condorcet winner: the last iterate does not converge (it cycles towards the boundary), only the "
            "average of the iterates does")
