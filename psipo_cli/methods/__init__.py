"""Methods layer: the registry of methods, each declared once in its own module inside its family.

Families (one driver each, implementing `spec.Family`):

- `pairwise`: losses of `tau h` on the comparisons (DPO, IPO), one generic exact solver;
- `reward_model`: a reward model fitted on the comparisons, then the KL-regularised policy (RLHF);
- `population`: ΨPO on the preferences (paper Eq. 6), with the Psi registry (`PSI_BUILTIN`);
- `game`: the Nash equilibrium of the KL-regularised preference game on the preferences (`nash`).
- `online`: self-play methods chasing the regularised preference game's equilibrium (Nash-MD, online IPO,
  IPO-MD, SPPO, INPO, EGPO), each with its `OnlineRule`.

Adding a method to a family means one module declaring its `Method` and one entry in `METHODS`.
"""

from __future__ import annotations

from psipo_cli.methods.nash.nash import NASH
from psipo_cli.methods.online.egpo import EGPO
from psipo_cli.methods.online.inpo import INPO
from psipo_cli.methods.online.ipo_md import IPO_MD
from psipo_cli.methods.online.nash_md import NASH_MD
from psipo_cli.methods.online.nash_md_pg import NASH_MD_PG
from psipo_cli.methods.online.online_ipo import ONLINE_IPO
from psipo_cli.methods.online.sppo import SPPO
from psipo_cli.methods.pairwise.dpo import DPO
from psipo_cli.methods.pairwise.ipo import IPO
from psipo_cli.methods.population.psi import BUILTIN as PSI_BUILTIN
from psipo_cli.methods.population.psipo import PSIPO
from psipo_cli.methods.reward_model.rlhf import RLHF
from psipo_cli.methods.solution import AVERAGE, DIVERGED, LIMIT, OPTIMAL, Solution
from psipo_cli.methods.spec import Exact, Family, Method, PairLoss

__all__ = [
    "AVERAGE", "DIVERGED", "LIMIT", "METHODS", "OPTIMAL", "PSI_BUILTIN", "Exact", "Family", "Method", "PairLoss",
    "Solution", "get_method", "methods_markdown",
]

METHODS: dict[str, Method] = {
    method.name: method
    for method in (RLHF, DPO, IPO, PSIPO, NASH, ONLINE_IPO, IPO_MD, NASH_MD, NASH_MD_PG, SPPO, INPO, EGPO)
}


#: How the docs name each kind of exact answer.
EXACT_TEXT = {
    Exact.ATTAINED: "always attained (`optimal`)",
    Exact.SEPARATED_LIMIT: "attained iff no comparison separates two strongly connected components; otherwise "
    "the limit of the ridge path (`diverged`)",
    Exact.EPS_LIMIT: "attained where `Psi(P)` is finite; otherwise the `eps -> 0` limit of the clipped problem "
    "(`limit`)",
    Exact.AVERAGE: "the limit of the average of the iterates, the maximal lottery (`average`)",
}


def methods_markdown() -> str:
    """`docs/methods.md`: every registered method with its family, TRL name, kind of exact answer, options and
    summary, in registry order. Regenerate with
    ``python -c "import psipo_cli.methods as m; print(m.methods_markdown(), end='')" > docs/methods.md``."""
    rows = [
        "| method | family | TRL `loss_type` | exact answer | options | summary |",
        "|---|---|---|---|---|---|",
    ]
    for m in METHODS.values():
        options = ", ".join(f"`{o}`" for o in m.options) or "—"
        trl = f"`{m.trl}`" if m.trl else "—"
        rows.append(f"| `{m.name}` | {m.family.name} | {trl} | {EXACT_TEXT[m.exact]} | {options} | {m.summary} |")
    head = (
        "# Methods\n\n"
        "Generated from the registry (`psipo_cli.methods.METHODS`); a test checks that this file is up to date.\n"
        "RLHF's reward model has DPO's kind of exact answer without a ridge; with `rm_l2 > 0` it is always\n"
        "attained.\n\n"
    )
    return head + "\n".join(rows) + "\n"


def get_method(name: str) -> Method:
    """The registered method called `name` (`InputError` naming the methods otherwise)."""
    from psipo_cli.errors import InputError

    if name not in METHODS:
        raise InputError("method", name, f"unknown method (methods: {', '.join(METHODS)})")
    return METHODS[name]
