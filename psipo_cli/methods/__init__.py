"""Methods layer: the registry of methods, each declared once in its own module inside its family.

Families (one driver each, implementing `spec.Family`):

- `pairwise`: losses of `tau h` on the comparisons (DPO, IPO), one generic exact solver;
- `reward_model`: a reward model fitted on the comparisons, then the KL-regularised policy (RLHF);
- `population`: ΨPO on the preferences (paper Eq. 6), with the Psi registry (`PSI_BUILTIN`).

Adding a method to a family means one module declaring its `Method` and one entry in `METHODS`.
"""

from __future__ import annotations

from psipo_cli.methods.pairwise.dpo import DPO
from psipo_cli.methods.pairwise.ipo import IPO
from psipo_cli.methods.population.psi import BUILTIN as PSI_BUILTIN
from psipo_cli.methods.population.psipo import PSIPO
from psipo_cli.methods.reward_model.rlhf import RLHF
from psipo_cli.methods.solution import DIVERGED, LIMIT, OPTIMAL, Solution
from psipo_cli.methods.spec import Exact, Family, Method, PairLoss

__all__ = [
    "DIVERGED", "LIMIT", "METHODS", "OPTIMAL", "PSI_BUILTIN", "Exact", "Family", "Method", "PairLoss", "Solution",
    "get_method",
]

METHODS: dict[str, Method] = {method.name: method for method in (RLHF, DPO, IPO, PSIPO)}


def get_method(name: str) -> Method:
    """The registered method called `name` (`InputError` naming the methods otherwise)."""
    from psipo_cli.errors import InputError

    if name not in METHODS:
        raise InputError("method", name, f"unknown method (methods: {', '.join(METHODS)})")
    return METHODS[name]
