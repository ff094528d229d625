"""The driver of the `single-action` family (NCA, BCO, SPPO-hard, APO, KTO): the exact minimiser on the simplex
(`simplex.solve_simplex`; for KTO a fixed point of its reference point `z0`) and one lane per run in the
gradient block of comparison losses (`psipo_cli.methods.single_action.block`).

On the population objective the counts keep their diagonal, `W[y, y] = mu(y)^2 / 2`: a comparison of an
action with itself has `h = 0`, which a loss of `h` does not see, but a loss of single actions does (the
action is then both the winner and the loser).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from psipo_cli.methods.actions import ComparisonLoss, action_weights, offsets_gradient, offsets_loss, terms_value
from psipo_cli.methods.kl import kl_divergence
from psipo_cli.methods.linalg import log_of
from psipo_cli.methods.single_action.simplex import Separable, SimplexAnswer, solve_simplex
from psipo_cli.methods.solution import Solution
from psipo_cli.methods.spec import Exact, Method
from psipo_cli.schema import LOCAL, OPTIMAL, SET, UNDEFINED

FIXED_POINT_GRID = 9  # reference points z0 scanned over [0, max -log pi_ref] before each root is refined


class ActionLanes:
    """The gradient side shared by the families of comparison losses: one lane per run in the `actions`
    block; the run's status from the exact gradient in the offsets (the normalisation's term included)."""

    name: str
    #: On the population the counts keep the diagonal (module docstring): every loss of this kind has terms of
    #: single actions (CPO's and ORPO's winner NLL too).
    self_comparisons = True
    #: Rule 1's unit: tau (offsets scale as 1/tau), 1 where the loss has no tau (ORPO).
    tau_scaled = True
    #: What `gradient_lanes` says when `counts` leaves no comparison.
    no_counts = "context has no comparisons"

    def loss_at(self, method: Method, options: dict[str, Any]) -> ComparisonLoss:
        raise NotImplementedError

    def counts(self, W: np.ndarray, pi_ref: np.ndarray) -> np.ndarray:
        """The counts the loss is taken over (all of `W` here)."""
        return np.asarray(W, float)

    def gradient_lanes(self, method: Method, plan: Any, tau: float, options: dict[str, Any]) -> Any:
        from psipo_cli.methods.single_action.block import ActionBlock, ActionLane

        loss = self.loss_at(method, options)
        W = self.counts(plan.inputs.W, np.asarray(plan.inputs.pi_ref, float))
        lane = ActionLane(loss, tau, plan.comparisons(W, self.no_counts), plan.stream, plan.log_pi_ref)
        return plan.block_lane("actions", ActionBlock, (tau,), lane), (loss, W)

    def gradient_report(self, method: Method, run: Any, report: Any) -> float:
        loss, W = run.extra
        log_pi_ref = log_of(np.asarray(run.inputs.pi_ref, float))
        scale = run.tau if self.tau_scaled else 1.0
        report.stage("offsets", lambda x: offsets_gradient(x, W, loss, run.tau, log_pi_ref), run.lane, scale)
        return offsets_loss(report.point(run.lane), W, loss, run.tau, log_pi_ref)


class SingleActionFamily(ActionLanes):
    """A loss of single actions' offsets; one instance per method (its loss and its kind of exact answer).

    `loss` is the method's `ComparisonLoss`, or a function of the method's options returning it (KTO's
    weights; cached, so that equal options give the same object).
    """

    name = "single-action"
    on_comparisons = True
    reward_stage = False

    def __init__(self, loss: ComparisonLoss | Callable[..., ComparisonLoss], exact: Exact) -> None:
        self._loss, self.exact = loss, exact

    def loss_at(self, method: Method, options: dict[str, Any]) -> ComparisonLoss:
        if isinstance(self._loss, ComparisonLoss):
            return self._loss
        return self._loss(**method.option_values(options))

    def solve_exact(
        self, method: Method, inputs: Any, taus: Sequence[float], options: dict[str, Any]
    ) -> list[Solution]:
        """Per tau: the certified minimiser on the simplex (`simplex.solve_simplex`), KTO's fixed point, or —
        APO-down — the statement that there is no exact answer."""
        loss = self.loss_at(method, options)
        W, pi_ref = np.asarray(inputs.W, float), np.asarray(inputs.pi_ref, float)
        if self.exact is Exact.NO_OPTIMUM:
            return [_undefined(pi_ref, offsets_loss(np.zeros(len(pi_ref)), W, loss, tau, log_of(pi_ref)))
                    for tau in taus]
        assert loss.terms is not None
        a, b = action_weights(W)
        support = pi_ref > 0
        solutions = []
        for tau in taus:
            separable = Separable(loss.terms, a[support], b[support], pi_ref[support], float(tau))
            if loss.uses_kl:
                answer, z0, note = _fixed_point(separable)
            else:
                answer, z0, note = solve_simplex(separable), 0.0, ""
            solutions.append(_solution(answer, support, pi_ref, W, loss, float(tau), z0, note))
        return solutions


def _literal(text: str) -> str:
    """`text` as a literal part of a `str.format` template (the detail's `{0}` groups are filled by `describe`)."""
    return text.replace("{", "{{").replace("}", "}}")


def _solution(
    answer: SimplexAnswer, support: np.ndarray, pi_ref: np.ndarray, W: np.ndarray, loss: ComparisonLoss,
    tau: float, z0: float, note: str,
) -> Solution:
    policy = np.zeros(len(pi_ref))
    policy[support] = answer.masses
    # The detail names actions through `Solution.named` ({0}, {1}: `describe` has the names, not this solver).
    parts, named = [_literal(answer.detail), _literal(note)], []
    a, b = action_weights(W)
    unseen = np.flatnonzero(support & (a + b == 0))
    if len(unseen):
        parts.append(
            f"{{{len(named)}}} in no comparison: the objective does not see them directly; they take the mass the "
            "other actions leave (the normalisation binds)"
        )
        named.append(tuple(int(i) for i in unseen))
    zero = np.flatnonzero(support & (policy == 0.0))
    offsets = None
    if len(zero):
        parts.append(
            f"{{{len(named)}}} at probability exactly 0: an optimum on the boundary of the simplex (in the "
            "softmax parametrisation a limit, delta -> -inf)"
        )
        named.append(tuple(int(i) for i in zero))
    else:
        offsets = np.zeros(len(pi_ref))
        offsets[support] = np.log(answer.masses) - np.log(pi_ref[support])
    with np.errstate(divide="ignore"):
        u = np.where(support, np.log(np.where(support, policy, 1.0)) - log_of(pi_ref), 0.0)
        u[support & (policy == 0)] = -np.inf
    assert loss.terms is not None
    value = terms_value(u, W, loss.terms, tau, z0, support.astype(float))
    detail = "; ".join(p for p in parts if p)
    if not named:
        detail = detail.format()  # no groups: the template is the text itself
    return Solution(policy=policy, status=answer.status, loss=value, offsets=offsets, detail=detail,
                    named=tuple(named))


def _fixed_point(separable: Separable) -> tuple[SimplexAnswer, float, str]:
    """KTO: the reference point `z0` with `z0 = max(0, KL(pi*(z0) || pi_ref))`, `pi*(z0)` the minimiser at a
    fixed `z0`. `KL(pi || pi_ref) <= max_y -log pi_ref(y)`, so `G(z0) = KL(pi*(z0)) - z0` is >= 0 at 0 and
    <= 0 there: its sign changes on a grid of `FIXED_POINT_GRID` points are refined by Brent's method."""
    from dataclasses import replace

    from scipy.optimize import brentq

    c = separable.pi_ref
    top = float(np.max(-np.log(c)))

    def solve(z0: float) -> tuple[float, SimplexAnswer]:
        answer = solve_simplex(replace(separable, z0=z0))
        return kl_divergence(answer.masses, c) - z0, answer

    grid = np.linspace(0.0, top, FIXED_POINT_GRID)
    gaps = [solve(z)[0] for z in grid]
    roots = [float(z) for z, g in zip(grid, gaps, strict=True) if g == 0.0]
    for k in range(len(grid) - 1):
        if gaps[k] * gaps[k + 1] < 0:
            roots.append(brentq(lambda z: solve(z)[0], grid[k], grid[k + 1], xtol=1e-14, rtol=1e-15))
    roots = sorted(set(roots))
    z0 = roots[0]
    answer = solve(z0)[1]
    note = f"a fixed point of KTO's reference point: z0 = max(0, KL(pi || pi_ref)) = {z0:.6g}, held fixed"
    if len(roots) > 1:
        listed = ", ".join(f"{r:.6g}" for r in roots)
        note += f"; the fixed points form a set, z0 in {{{listed}}}: the smallest is reported"
        answer = replace(answer, status=SET if answer.status == OPTIMAL else LOCAL)
    return answer, z0, note


def _undefined(pi_ref: np.ndarray, value: float) -> Solution:
    return Solution(
        policy=pi_ref.copy(), status=UNDEFINED, loss=value,
        detail=(
            "no exact answer: the loss's infimum is approached only as offsets go to -inf at rates it leaves "
            "free, along paths whose limit policies differ (they depend on tau and on the start); the policy "
            "shown is pi_ref, not an optimum, and the loss is its value there"
        ),
    )
