"""Methods layer: the registry of methods, each declared once in its own module inside its family.

Families (one driver each, implementing `spec.Family`):

- `pairwise`: losses of `tau h` on the comparisons (DPO, IPO), one generic exact solver;
- `reward_model`: a reward model fitted on the comparisons, then the KL-regularised policy (RLHF);
- `population`: ΨPO on the preferences (paper Eq. 6), with the Psi registry (`PSI_BUILTIN`).

Adding a method to a family means one module declaring its `Method` and one entry in `METHODS`.
"""

from __future__ import annotations

from psipo_cli.methods.pairwise.chipo import CHIPO
from psipo_cli.methods.pairwise.discopop import DISCOPOP
from psipo_cli.methods.pairwise.dpo import DPO
from psipo_cli.methods.pairwise.exo import EXO
from psipo_cli.methods.pairwise.fdpo import FDPO
from psipo_cli.methods.pairwise.ipo import IPO
from psipo_cli.methods.pairwise.simpo import SIMPO
from psipo_cli.methods.population.psi import BUILTIN as PSI_BUILTIN
from psipo_cli.methods.population.psipo import PSIPO
from psipo_cli.methods.reward_model.rlhf import RLHF
from psipo_cli.methods.solution import DIVERGED, LIMIT, OPTIMAL, Solution
from psipo_cli.methods.spec import Exact, Family, Method, PairLoss

__all__ = [
    "DIVERGED", "LIMIT", "METHODS", "OPTIMAL", "PSI_BUILTIN", "Exact", "Family", "Method", "PairLoss", "Solution",
    "get_method", "methods_markdown",
]

METHODS: dict[str, Method] = {
    method.name: method for method in (RLHF, DPO, IPO, PSIPO, EXO, DISCOPOP, SIMPO, CHIPO, FDPO)
}


#: How the docs name each kind of exact answer.
EXACT_TEXT = {
    Exact.ATTAINED: "always attained (`optimal`)",
    Exact.SEPARATED_LIMIT: "attained iff no comparison separates two strongly connected components; otherwise "
    "the limit of the ridge path (`diverged`)",
    Exact.EPS_LIMIT: "attained where `Psi(P)` is finite; otherwise the `eps -> 0` limit of the clipped problem "
    "(`limit`)",
}


def exact_text(method: Method) -> str:
    """How the docs name a method's kind of exact answer; a loss that is not convex adds its search."""
    loss = method.loss_at({})
    text = EXACT_TEXT[method.exact]
    if loss is not None and not loss.convex:
        text += "; not convex: where attained, the best point of a multi-start search (`local`)"
    return text


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
        rows.append(f"| `{m.name}` | {m.family.name} | {trl} | {exact_text(m)} | {options} | {m.summary} |")
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
