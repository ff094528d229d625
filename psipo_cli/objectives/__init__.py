"""Objectives layer: the Psi registry and each method's loss, gradient and exact solver (DESIGN §2, §8).

Adding a method means one module (loss, gradient, exact solver) and one entry in `METHODS`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from psipo_cli.objectives import dpo, ipo, psipo, rlhf
from psipo_cli.objectives.pairwise import PairFn
from psipo_cli.objectives.psi import BUILTIN as PSI_BUILTIN
from psipo_cli.objectives.solution import DIVERGED, LIMIT, OPTIMAL, Solution

__all__ = ["DIVERGED", "LIMIT", "METHODS", "OPTIMAL", "PSI_BUILTIN", "Method", "Solution", "get_method"]


@dataclass(frozen=True)
class Method:
    """A registry entry.

    Attributes
    ----------
    name : str
    summary : str
        One line for `--help` and reports.
    needs : str
        `"wins"`: the exact solver takes `(W, pi_ref, tau, **options)` — recorded counts on data, expected
        counts `mu(w) mu(l) P[w, l]` on the population. `"preferences"`: it takes
        `(pi_ref, mu, P, tau, **options)` — the model on the population, `(P_hat, mu_hat)` on data.
    solve : callable
        The exact solver, returning a `Solution`.
    gradient : str
        How the gradient engine optimises it: `"pairwise"` (a per-comparison loss `pair_loss` on the
        offsets), `"reward_then_policy"` (reward model by `pair_loss` on rewards, then the KL-regularised
        policy stage), or `"policy"` (gradient ascent on the population objective).
    pair_loss, pair_grad : callable or None
        Per-comparison loss `f(h, tau)` and its derivative in `h`.
    solve_taus : callable or None
        The exact solver for a list of tau values at once (same arguments, `taus` in place of `tau`),
        sharing the tau-independent work; without it the dispatch calls `solve` per tau.
    twin : str
        `needs = "wins"` only: the population ΨPO this method equals on the expected counts when
        `supp mu = supp pi_ref` (how to run it, and the result that says so); "" if none.
    options : tuple of str
        Method options accepted on the CLI.
    """

    name: str
    summary: str
    needs: str
    solve: Callable[..., Solution]
    gradient: str
    pair_loss: PairFn | None = None
    pair_grad: PairFn | None = None
    options: tuple[str, ...] = ()
    solve_taus: Callable[..., list[Solution]] | None = None
    twin: str = ""


BRADLEY_TERRY_TWIN = "`psipo --psi logit` (paper Prop. 1, under Bradley–Terry preferences)"

METHODS: dict[str, Method] = {
    "rlhf": Method(
        "rlhf",
        "Bradley-Terry reward model (ridge rm_l2), then KL-regularised policy (paper Eqs. 2-3)",
        "wins",
        rlhf.solve,
        "reward_then_policy",
        rlhf.reward_pair_loss,
        rlhf.reward_pair_grad,
        ("rm_l2", "rm_steps"),
        rlhf.solve_taus,
        BRADLEY_TERRY_TWIN,
    ),
    "dpo": Method("dpo", "Direct preference optimisation (paper Eq. 4)", "wins", dpo.solve, "pairwise",
                  dpo.pair_loss, dpo.pair_grad, solve_taus=dpo.solve_taus, twin=BRADLEY_TERRY_TWIN),
    "ipo": Method("ipo", "Identity preference optimisation (paper Eq. 17)", "wins", ipo.solve, "pairwise",
                  ipo.pair_loss, ipo.pair_grad, solve_taus=ipo.solve_taus,
                  twin="`psipo --psi identity` (paper Theorem 2)"),
    "psipo": Method("psipo", "General PsiPO objective (paper Eq. 6) with --psi", "preferences", psipo.solve,
                    "policy", options=("psi", "eps")),
}


def get_method(name: str) -> Method:
    from psipo_cli.errors import InputError

    if name not in METHODS:
        raise InputError("method", name, f"unknown method (methods: {', '.join(METHODS)})")
    return METHODS[name]
