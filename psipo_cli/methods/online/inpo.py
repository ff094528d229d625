"""INPO / self-play online mirror descent (Zhang et al., arXiv 2407.00617): `log pi_{t+1} = (1 - eta tau) log
pi_t + eta tau log pi_ref + eta P pi_t + const`, the opponent the current policy itself. Fixed point exactly
`pi*_tau`; with a constant step it converges only locally (for a small enough `eta tau`)."""

from __future__ import annotations

from psipo_cli.methods.online.family import POLICY_GRADIENT, OnlineFamily, OnlineRule
from psipo_cli.methods.spec import Method

INPO = Method(
    "inpo", "INPO: self-play mirror descent against the current policy (arXiv 2407.00617)",
    OnlineFamily(OnlineRule(POLICY_GRADIENT)),
)
