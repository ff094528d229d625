"""The driver of the game family: methods that see preferences `(P, mu)` and target the Nash equilibrium of
the KL-regularised preference game (Munos et al., arXiv 2312.00886)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from psipo_cli.errors import InputError
from psipo_cli.methods.solution import Solution
from psipo_cli.methods.spec import Exact, Method


class GameFamily:
    """Methods whose answer is an equilibrium of the regularised game on `P` (the model on the population,
    `P_hat` on data: every pair of compared actions observed, as ΨPO requires)."""

    name = "game"
    on_comparisons = False
    reward_stage = False
    exact = Exact.ATTAINED

    def solve_exact(
        self, method: Method, inputs: Any, taus: Sequence[float], options: dict[str, Any]
    ) -> list[Solution]:
        """`nash.solve` for each tau."""
        from psipo_cli.methods.nash import nash

        return [nash.solve(inputs.P, inputs.pi_ref, tau) for tau in taus]

    def gradient_lanes(self, method: Method, plan: Any, tau: float, options: dict[str, Any]) -> Any:
        """No gradient route yet: the extragradient block (EGPO's tabular update) is what it will run."""
        raise InputError(
            "--solver", "gradient", f"{method.name} has an exact answer only for now: use --solver exact"
        )

    def gradient_report(self, method: Method, run: Any, report: Any) -> float:  # pragma: no cover - no lanes
        raise AssertionError(f"{method.name} has no gradient lanes")


GAME = GameFamily()
