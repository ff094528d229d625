"""f-DPO (Wang et al. 2023, arXiv 2309.16240; TRL `DPOConfig(f_divergence_type=...)` with `loss_type="sigmoid"`):
DPO's logistic loss on the scores `tau (psi(delta_w) - psi(delta_l))` of an f-divergence.

`--f-divergence forward-kl` (`psi = -e^-delta`), `alpha` (`psi = -e^(-alpha delta) / alpha`, `--f-alpha` =
TRL's `f_alpha_divergence_coef`), `js` (`psi = log sigmoid(delta)`); TRL's default `reverse_kl` is DPO itself
(`psipo run dpo`). Exact answer: the Bradley–Terry MLE mapped through `psi^-1` (`linked`).
"""

from __future__ import annotations

from functools import cache

from psipo_cli.methods.pairwise.linked import JS, LINKED, LinkedLoss, alpha_link
from psipo_cli.methods.spec import Method


@cache
def loss_of(f_divergence: str, f_alpha: float) -> LinkedLoss:
    """f-DPO's loss for the divergence `f_divergence` (`f_alpha` is read only for `alpha`)."""
    if f_divergence == "js":
        return LinkedLoss(JS)
    return LinkedLoss(alpha_link(1.0 if f_divergence == "forward-kl" else float(f_alpha)))


FDPO = Method(
    "fdpo", "f-DPO: DPO's logistic loss on f-divergence scores psi(log pi / pi_ref) (arXiv 2309.16240)", LINKED,
    options=("f_divergence", "f_alpha"), trl="sigmoid + f_divergence_type", loss_of=loss_of,
    formula="-log sigma(tau (psi(delta_w) - psi(delta_l))), psi = -e^-delta | log sigma(delta) | -e^(-a delta) / a",
)
