"""Online IPO (Calandriello et al., arXiv 2403.08635 §4): IPO's loss on pairs drawn from the current policy
(stop-gradient), labelled by `P`. Stationary point: the regularised equilibrium `pi*_tau`."""

from __future__ import annotations

from psipo_cli.methods.online.family import IPO_LOSS, OnlineFamily, OnlineRule
from psipo_cli.methods.spec import Method

ONLINE_IPO = Method(
    "online-ipo", "Online IPO: IPO on self-play pairs (arXiv 2403.08635); reaches the regularised equilibrium",
    OnlineFamily(OnlineRule(IPO_LOSS)),
)
