"""Nash-MD-PG (Munos et al., arXiv 2312.00886 §7; TRL's Nash-MD trainer, `mixture_coef` 0.5): the policy
gradient of `P(pi ≻ pi') - tau KL(pi || pi_ref)` with `pi' = mix_b(pi)` held fixed. Stationary point
`T_tau(pi*_{tau/(1-b)})`: only `b = 0` targets `pi*_tau` (TRL's default targets `T_tau(pi*_{2 tau})`)."""

from __future__ import annotations

from psipo_cli.methods.online.family import POLICY_GRADIENT, OnlineFamily, OnlineRule
from psipo_cli.methods.spec import Method

NASH_MD_PG = Method(
    "nash-md-pg", "Nash-MD-PG: policy gradient against the mixture pi^(1-b) pi_ref^b (TRL's Nash-MD trainer)",
    OnlineFamily(OnlineRule(POLICY_GRADIENT)), options=("mixture",), defaults=(("mixture", 0.5),),
)
