"""The driver of the game family: methods that see preferences `(P, mu)` and target the Nash equilibrium of
the KL-regularised preference game (Munos et al., arXiv 2312.00886)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from psipo_cli.methods.online.family import IPO_LOSS, OnlineFamily, OnlineRule
from psipo_cli.methods.solution import Solution
from psipo_cli.methods.spec import Exact, Method

#: The gradient route to the equilibrium: EGPO's extragradient self-play, whose fixed point is `pi*_tau` and
#: which converges where plain self-play cycles.
EXTRAGRADIENT = OnlineFamily(OnlineRule(IPO_LOSS, extragradient=True))
ROUTE_NOTE = "gradient route: EGPO's extragradient self-play in KL geometry (its fixed point is pi*_tau)"


class GameFamily:
    """Methods whose answer is an equilibrium of the regularised game on `P` (the model on the population,
    `P_hat` on data: every pair of compared actions observed, as ΨPO requires)."""

    name = "game"
    on_comparisons = False
    reward_stage = False
    exact = Exact.ATTAINED
    mirror_descent = True  # `--optimizer md` applies the extragradient update itself

    def solve_exact(
        self, method: Method, inputs: Any, taus: Sequence[float], options: dict[str, Any]
    ) -> list[Solution]:
        """`nash.solve` for each tau."""
        from psipo_cli.methods.nash import nash

        return [nash.solve(inputs.P, inputs.pi_ref, tau) for tau in taus]

    def gradient_lanes(self, method: Method, plan: Any, tau: float, options: dict[str, Any]) -> Any:
        """The extragradient lanes (`EXTRAGRADIENT`, EGPO's block)."""
        return EXTRAGRADIENT.gradient_lanes(method, plan, tau, options)

    def gradient_report(self, method: Method, run: Any, report: Any) -> float:
        """EGPO's report (the residual of the fixed point `pi*_tau`), the route named first in the detail."""
        report.note(ROUTE_NOTE)
        return EXTRAGRADIENT.gradient_report(method, run, report)


GAME = GameFamily()
