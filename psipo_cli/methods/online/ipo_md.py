"""IPO-MD (Calandriello et al., arXiv 2403.08635 §4): online IPO with pairs drawn from the geometric mixture
`mix_b(pi) ∝ pi^(1-b) pi_ref^b` (`--mixture` b, default 0.125). Stationary point `T_tau(pi*_{tau/(1-b)})`, whose
mixture is exactly `pi*_{tau/(1-b)}`."""

from __future__ import annotations

from psipo_cli.methods.online.family import IPO_LOSS, OnlineFamily, OnlineRule
from psipo_cli.methods.spec import Method

IPO_MD = Method(
    "ipo-md", "IPO-MD: online IPO on pairs from the mixture pi^(1-b) pi_ref^b (arXiv 2403.08635)",
    OnlineFamily(OnlineRule(IPO_LOSS)), options=("mixture",), defaults=(("mixture", 0.125),),
)
