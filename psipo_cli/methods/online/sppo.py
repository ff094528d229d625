"""SPPO (Wu et al., arXiv 2405.00675): multiplicative weights `pi_{t+1} ∝ pi_t exp(eta P(y ≻ pi_t))`, no
reference term and no tau (`eta = --lr`; TRL's `sppo_hard` is its hard-label loss with `beta = 1 / eta`).
Its rest points are the policies with `P pi` constant on their support; on a cycle the last iterate does not
converge, only the average of the iterates does, to the maximal lottery (status `average`)."""

from __future__ import annotations

from psipo_cli.methods.online.family import POLICY_GRADIENT, OnlineFamily, OnlineRule
from psipo_cli.methods.spec import Method

SPPO = Method(
    "sppo", "SPPO: multiplicative weights on P(y > pi) (arXiv 2405.00675); its average tends to the maximal lottery",
    OnlineFamily(OnlineRule(POLICY_GRADIENT, regularised=False)), trl="sppo_hard",
)
