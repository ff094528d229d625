"""The result of an exact solver for one context, and the sentence that explains it."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from psipo_cli.schema import AVERAGE as AVERAGE
from psipo_cli.schema import DIVERGED as DIVERGED  # the exact statuses are named in `psipo_cli.schema`
from psipo_cli.schema import LIMIT as LIMIT
from psipo_cli.schema import LOCAL as LOCAL
from psipo_cli.schema import OPTIMAL as OPTIMAL
from psipo_cli.schema import SET as SET
from psipo_cli.schema import UNBOUNDED as UNBOUNDED

NAMES_SHOWN = 8  # names (and components) listed in a detail before "... (+k more)"


@dataclass(frozen=True)
class Solution:
    """An exact solution for one context.

    Attributes
    ----------
    policy : array (n,)
        The optimal (or limit) policy.
    status : str
        One of `psipo_cli.schema.EXACT_STATUSES` (`optimal`, `diverged`, `limit`, `unbounded`, `set`, `local`,
        `average`).
    loss : float
        The method's own objective at the solution, or its infimum when `status` is not `optimal`.
    offsets : array (n,) or None
        `delta = log(pi / pi_ref)` in the canonical gauge when the optimum is attained.
    detail : str
        A sentence on how the limit was resolved, when it had to be.
    reward : array (n,) or None
        The implied reward the policy tempers, `pi ∝ pi_ref exp(reward / tau)` in the canonical gauge
        (RLHF's fitted reward, `tau * delta` for DPO and IPO, `g(y)` for PsiPO); None where it is not finite.
    unseen : tuple of int
        Actions with `pi_ref > 0` that appear in no comparison: the loss does not see them, so it does not
        determine their offsets, which stay at 0 (their pi_ref offset; the canonical gauge).
    components : tuple of tuples of int
        Under `diverged`: the strongly connected components of the comparison graph (winner -> loser) over
        the compared actions.
    losing : tuple of int
        Under `diverged`: indices into `components` of those that lose to another component (they get
        probability 0 for every tau).
    closed_form : str
        The closed form the solution satisfies, when its preconditions were checked on this input.
    """

    policy: np.ndarray
    status: str
    loss: float
    offsets: np.ndarray | None = None
    detail: str = ""
    reward: np.ndarray | None = None
    unseen: tuple[int, ...] = ()
    components: tuple[tuple[int, ...], ...] = ()
    losing: tuple[int, ...] = ()
    closed_form: str = ""


def describe(solution: Solution, actions: Sequence[str], twin: str = "") -> str:
    """The status detail of `solution`, with actions named: the components of a diverged problem, the
    solver's own note, the actions the loss does not see, and the closed form.

    `twin` (population objective only) names the ΨPO that equals this method when
    `supp mu = supp pi_ref` (e.g. `psipo --psi identity` for IPO, paper Theorem 2): off `supp mu` the two
    differ, and the detail says so.
    """
    parts = []
    if solution.components:
        listed = _listing(["{" + _names(c, actions) + "}" for c in solution.components])
        losing = _listing(["{" + _names(solution.components[k], actions) + "}" for k in solution.losing])
        verb = "loses to another component, so it gets" if len(solution.losing) == 1 else (
            "lose to another component, so they get"
        )
        parts.append(
            f"no minimiser: the comparison graph (winner -> loser) has strongly connected components {listed}; "
            f"{losing} {verb} probability 0 for every tau"
        )
    if solution.detail:
        parts.append(solution.detail)
    if solution.unseen:
        where = "outside supp mu" if twin else "in no comparison"
        them, their, offsets, stay = ("it", "its", "offset", "stays") if len(solution.unseen) == 1 else (
            "them", "their", "offsets", "stay"
        )
        note = (
            f"{_names(solution.unseen, actions)} {where}: the objective does not see {them} and does not determine "
            f"{their} {offsets}, which {stay} at {their} pi_ref offset (the canonical gauge, as gradient training "
            "from pi_ref)"
        )
        if twin:
            note += f"; {twin} differs there (the equivalence assumes supp mu = supp pi_ref)"
        parts.append(note)
    if solution.closed_form:
        parts.append(solution.closed_form)
    return "; ".join(parts)


def _names(indices: Sequence[int], actions: Sequence[str]) -> str:
    return _listing([actions[i] for i in indices])


def _listing(items: Sequence[str]) -> str:
    shown = ", ".join(items[:NAMES_SHOWN])
    return shown if len(items) <= NAMES_SHOWN else f"{shown}, ... (+{len(items) - NAMES_SHOWN} more)"
