"""Methods layer: the registry of methods, each declared once in its own module inside its family.

Families (one driver each, implementing `spec.Family`):

- `pairwise`: losses of `tau h` on the comparisons (DPO, IPO, cDPO, rDPO, hinge, GPO, EXO, DiscoPOP, SimPO),
  one generic exact solver; `pairwise-link` (χPO, f-DPO): DPO's loss on a transformed score;
- `reward_model`: a reward model fitted on the comparisons, then the KL-regularised policy (RLHF);
- `population`: ΨPO on the preferences (paper Eq. 6), with the Psi registry (`PSI_BUILTIN`);
- `single-action`: losses of single actions' offsets (NCA, BCO, SPPO-hard, APO, KTO), solved on the simplex;
- `reference-free`: losses of the log-probabilities plus an NLL (CPO, ORPO);
- `game`: the Nash equilibrium of the KL-regularised preference game on the preferences (`nash`);
- `online`: self-play methods chasing the regularised preference game's equilibrium (Nash-MD, online IPO,
  IPO-MD, SPPO, INPO, EGPO), each with its `OnlineRule`.

Adding a method to a family means one module declaring its `Method` and one entry in `METHODS`.
"""

from __future__ import annotations

from typing import Any

from psipo_cli.methods.nash.nash import NASH
from psipo_cli.methods.online.egpo import EGPO
from psipo_cli.methods.online.inpo import INPO
from psipo_cli.methods.online.ipo_md import IPO_MD
from psipo_cli.methods.online.nash_md import NASH_MD
from psipo_cli.methods.online.nash_md_pg import NASH_MD_PG
from psipo_cli.methods.online.online_ipo import ONLINE_IPO
from psipo_cli.methods.online.sppo import SPPO
from psipo_cli.methods.pairwise.cdpo import CDPO
from psipo_cli.methods.pairwise.chipo import CHIPO
from psipo_cli.methods.pairwise.discopop import DISCOPOP
from psipo_cli.methods.pairwise.dpo import DPO
from psipo_cli.methods.pairwise.exo import EXO
from psipo_cli.methods.pairwise.fdpo import FDPO
from psipo_cli.methods.pairwise.gpo import GPO
from psipo_cli.methods.pairwise.hinge import HINGE
from psipo_cli.methods.pairwise.ipo import IPO
from psipo_cli.methods.pairwise.rdpo import RDPO
from psipo_cli.methods.pairwise.simpo import SIMPO
from psipo_cli.methods.population.psi import BUILTIN as PSI_BUILTIN
from psipo_cli.methods.population.psipo import PSIPO
from psipo_cli.methods.reference_free.cpo import CPO
from psipo_cli.methods.reference_free.orpo import ORPO
from psipo_cli.methods.reward_model.rlhf import RLHF
from psipo_cli.methods.single_action.apo import APO_DOWN, APO_ZERO
from psipo_cli.methods.single_action.bco import BCO
from psipo_cli.methods.single_action.kto import KTO
from psipo_cli.methods.single_action.nca import NCA
from psipo_cli.methods.single_action.sppo_hard import SPPO_HARD
from psipo_cli.methods.solution import AVERAGE, DIVERGED, LIMIT, OPTIMAL, Solution
from psipo_cli.methods.spec import Exact, Family, Method, PairLoss

__all__ = [
    "AVERAGE", "DIVERGED", "LIMIT", "METHODS", "OPTIMAL", "PSI_BUILTIN", "Exact", "Family", "Method", "PairLoss",
    "Solution", "exact_kinds", "get_method", "method_table", "methods_markdown", "methods_text",
]

METHODS: dict[str, Method] = {
    method.name: method
    for method in (
        RLHF, DPO, IPO, PSIPO, CDPO, RDPO, HINGE, GPO, EXO, DISCOPOP, SIMPO, CHIPO, FDPO, NCA, BCO, SPPO_HARD,
        APO_ZERO, APO_DOWN, KTO, CPO, ORPO, NASH, ONLINE_IPO, IPO_MD, NASH_MD, NASH_MD_PG, SPPO, INPO, EGPO,
    )
}


#: How the docs name each kind of exact answer.
EXACT_TEXT = {
    Exact.ATTAINED: "always attained (`optimal`)",
    Exact.SEPARATED_LIMIT: "attained iff no comparison separates two strongly connected components; otherwise "
    "the limit of the ridge path (`diverged`)",
    Exact.EPS_LIMIT: "attained where `Psi(P)` is finite; otherwise the `eps -> 0` limit of the clipped problem "
    "(`limit`)",
    Exact.AVERAGE: "the limit of the average of the iterates, the maximal lottery (`average`)",
    Exact.SIMPLEX: "optimality conditions on the simplex: `optimal` where a Lagrange multiplier (or monotonicity) "
    "certifies the global optimum (actions at probability exactly 0 included); `set` where the loss ignores some "
    "masses; `local` (best of a multi-start search) otherwise",
    Exact.FIXED_POINT: "a fixed point of the reference point `z0 = max(0, KL)` (held fixed in the gradient), each "
    "solved on the simplex as above; `set` when there are several",
    Exact.CONVEX: "convex in the logits; attained on the simplex, never-winning actions at probability 0 "
    "(`optimal`)",
    Exact.NO_OPTIMUM: "no exact optimum as an offline tabular objective (`undefined`)",
    Exact.INFLOW: "attained iff every subset of actions has positive inflow of the de-noised counts; otherwise "
    "the loss goes to -inf (`unbounded`)",
    Exact.SET: "always attained, the minimisers can form a polyhedron (`set`: the point gradient flow from "
    "pi_ref reaches)",
    Exact.LOCAL: "not convex: the best of a documented multi-start search (`local`)",
}


def exact_kinds(method: Method) -> list[tuple[str, Exact]]:
    """The method's kinds of exact answer: `[("", kind)]`, or one `(choice, kind)` per value of a choice option
    that changes it (GPO's `--gpo-f`)."""
    from psipo_cli.config.settings import setting

    for name in method.options:
        declared = setting(name)
        if declared.type == "choice" and method.loss_of is not None:
            kinds = [(c, method.exact_at({name: c})) for c in declared.choices]
            if len({k for _, k in kinds}) > 1:
                return kinds
    return [("", method.exact)]


def method_table() -> list[dict[str, Any]]:
    """One record per registered method (registry order): name, family, loss, TRL name, options with their
    defaults (and choices), kinds of exact answer and summary; what `psipo methods` prints."""
    from psipo_cli.config.settings import setting

    records = []
    for m in METHODS.values():
        defaults = m.option_values({})
        options = [
            {"name": o, "flag": setting(o).option, "default": defaults[o], "choices": list(setting(o).choices)}
            for o in m.options
        ]
        kinds = [{"when": f"{_choice_option(m)} {c}" if c else "", "kind": k.value, "text": EXACT_TEXT[k]}
                 for c, k in exact_kinds(m)]
        records.append({
            "method": m.name, "family": m.family.name, "loss": m.formula, "trl": m.trl, "options": options,
            "exact": kinds, "summary": m.summary,
        })
    return records


def _choice_option(method: Method) -> str:
    from psipo_cli.config.settings import setting

    return next(setting(o).option for o in method.options if setting(o).type == "choice")


def _exact_cell(kinds: list[dict[str, Any]]) -> str:
    if len(kinds) == 1:
        return str(kinds[0]["text"])
    return "; ".join(f"`{k['when']}`: `{k['kind']}`" for k in kinds)


def _option_cell(options: list[dict[str, Any]]) -> str:
    cells = []
    for o in options:
        shown = "|".join(o["choices"]) if o["choices"] else ""
        default = "" if o["default"] is None else f" (default {o['default']:g})" if isinstance(
            o["default"], float) else f" (default {o['default']})"
        cells.append(f"`{o['flag']}`" + (f" {shown}" if shown else "") + default)
    return ", ".join(cells) or "—"


def methods_text(table: list[dict[str, Any]]) -> str:
    """`psipo methods`: one block per record of `method_table` (name and summary, then loss, TRL name,
    options and exact answer, indented)."""
    lines = []
    for r in table:
        lines.append(f"{r['method']}  ({r['family']}) {r['summary']}")
        lines.append(f"    loss     {r['loss']}")
        lines.append(f"    TRL      {r['trl'] or '-'}")
        lines.append(f"    options  {_option_cell(r['options']).replace('`', '')}")
        for k in r["exact"]:
            when = f"{k['when']}: " if k["when"] else ""
            lines.append(f"    exact    {when}{k['kind']}: {k['text'].replace('`', '')}")
        lines.append("")
    return "\n".join(lines)


def methods_markdown() -> str:
    """`docs/methods.md`: every registered method with its family, loss, TRL name, kind of exact answer,
    options and summary, in registry order (`method_table`). Regenerate with
    ``python -c "import psipo_cli.methods as m; print(m.methods_markdown(), end='')" > docs/methods.md``."""
    rows = [
        "| method | family | loss (`h = delta_w - delta_l`) | TRL `loss_type` | exact answer | options | summary |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in method_table():
        trl = f"`{r['trl']}`" if r["trl"] else "—"
        cells = [f"`{r['method']}`", r["family"], f"`{r['loss']}`", trl, _exact_cell(r["exact"]),
                 _option_cell(r["options"]), r["summary"]]
        rows.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")  # a | inside a cell is escaped
    kinds = "\n".join(f"- `{k.value}`: {text}." for k, text in EXACT_TEXT.items())
    head = (
        "# Methods\n\n"
        "Generated from the registry (`psipo_cli.methods.METHODS`); a test checks that this file is up to date.\n"
        "`psipo methods` prints the same table (`--format json` as records). tau is TRL's `beta`. RLHF's reward\n"
        "model has DPO's kind of exact answer without a ridge; with `rm_l2 > 0` it is always attained.\n\n"
    )
    return head + "\n".join(rows) + "\n\nKinds of exact answer:\n\n" + kinds + "\n"


def get_method(name: str) -> Method:
    """The registered method called `name` (`InputError` naming the methods otherwise)."""
    from psipo_cli.errors import InputError

    if name not in METHODS:
        raise InputError("method", name, f"unknown method (methods: {', '.join(METHODS)})")
    return METHODS[name]
