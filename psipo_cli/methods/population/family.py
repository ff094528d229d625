"""The driver of the population family: ΨPO's exact optimum per tau, and one KL lane per run."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from psipo_cli.methods.solution import Solution
from psipo_cli.methods.spec import Exact, Method

DEFAULT_PSI = "logit"


class PopulationFamily:
    """Methods that see preferences `(P, mu)` and ascend `J = E_pi g - tau KL(pi || pi_ref)` (paper Eq. 6)."""

    name = "population"
    on_comparisons = False
    reward_stage = False
    exact = Exact.EPS_LIMIT

    def solve_exact(
        self, method: Method, inputs: Any, taus: Sequence[float], options: dict[str, Any]
    ) -> list[Solution]:
        """`psipo.solve` for each tau (`psi` defaults to `logit`)."""
        from psipo_cli.methods.population import psipo

        psi = options.get("psi") or DEFAULT_PSI
        return [psipo.solve(inputs.pi_ref, inputs.mu, inputs.P, tau, psi=psi) for tau in taus]

    def solve_dataset(self, method: Method, flat: Any, taus: Sequence[float], options: dict[str, Any]) -> Any:
        """`psipo.solve_flat`: every context of a dataset at once, on its empirical preferences."""
        from psipo_cli.methods.population import psipo

        return psipo.solve_flat(flat, taus, psi=options.get("psi") or DEFAULT_PSI)

    def gradient_lanes(self, method: Method, plan: Any, tau: float, options: dict[str, Any]) -> Any:
        """One KL lane ascending `J` with the clipped target `g` (`psipo.clipped_target`)."""
        from psipo_cli.methods.population import psipo

        P, mu, pi_ref = (np.asarray(a, float) for a in (plan.inputs.P, plan.inputs.mu, plan.inputs.pi_ref))
        g, note = psipo.clipped_target(P, mu, pi_ref, options["psi"], options["eps"])
        return plan.kl_lane(tau, g), (g, note)

    def gradient_report(self, method: Method, run: Any, report: Any) -> float:
        """`-J` at the reported policy; the clipping note first in the detail."""
        from psipo_cli.methods.population import psipo

        g, note = run.extra
        pi_ref = np.asarray(run.inputs.pi_ref, float)
        report.note(note)
        report.stage("offsets", lambda x: psipo.population_gradient(x, g, pi_ref, run.tau), run.lane, run.tau,
                     reward=g)
        return psipo.population_loss(report.policy, g, pi_ref, run.tau)


POPULATION = PopulationFamily()
