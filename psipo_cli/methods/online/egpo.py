"""EGPO (extragradient preference optimisation): the half step `pi_{t+1/2} ∝ pi_t^(1 - eta tau) pi_ref^(eta
tau) exp(eta P pi_t)`, then the full step from `pi_t` with `P pi_{t+1/2}` (extragradient in KL geometry). Fixed
point `pi*_tau`, reached at a linear rate for a small enough step, where plain self-play may cycle."""

from __future__ import annotations

from psipo_cli.methods.online.family import IPO_LOSS, OnlineFamily, OnlineRule
from psipo_cli.methods.spec import Method

EGPO = Method(
    "egpo", "EGPO: extragradient self-play in KL geometry; reaches the regularised equilibrium",
    OnlineFamily(OnlineRule(IPO_LOSS, extragradient=True)),
)
