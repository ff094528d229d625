"""Nash-MD (Munos et al., arXiv 2312.00886 Eq. 9): mirror descent against the mixture `mix_{eta tau}(pi_t)`,
`log pi_{t+1} = (1 - eta tau) log pi_t + eta tau log pi_ref + eta P pi_mu + const`. Without `--mixture` the
mixture of step `t` is `eta_t tau` (`eta = --lr`, capped at 1). A constant step stops at the biased point
`T_tau(pi*_{tau/(1 - eta tau)})`; a decreasing one (`--lr-schedule`) tends to `pi*_tau` as `eta -> 0`."""

from __future__ import annotations

from psipo_cli.methods.online.family import POLICY_GRADIENT, OnlineFamily, OnlineRule
from psipo_cli.methods.spec import Method

NASH_MD = Method(
    "nash-md", "Nash-MD: mirror descent against the mixture mix_{lr tau}(pi) (arXiv 2312.00886)",
    OnlineFamily(OnlineRule(POLICY_GRADIENT, step_mixture=True)), options=("mixture",),
    settings=("lr", "lr_schedule", "lr_final"),
)
