"""The registry (`psipo_cli.methods`): names, families, TRL names and the lookup's error."""

from __future__ import annotations

import pytest

from psipo_cli.errors import InputError
from psipo_cli.methods import METHODS, PSI_BUILTIN, Exact, get_method


def test_registry_order_and_families() -> None:
    # The order of `METHODS` is the order of help texts and tables (unchanged by the move to families).
    online = ["online-ipo", "ipo-md", "nash-md", "nash-md-pg", "sppo", "inpo", "egpo"]
    assert list(METHODS) == ["rlhf", "dpo", "ipo", "psipo", "nash", *online]
    assert {name: m.family.name for name, m in METHODS.items()} == {
        "rlhf": "reward-model", "dpo": "pairwise", "ipo": "pairwise", "psipo": "population", "nash": "game",
        **dict.fromkeys(online, "online"),
    }
    assert get_method("rlhf").options == ("rm_l2", "rm_steps")
    assert get_method("psipo").options == ("psi", "eps")
    assert {name: get_method(name).option_values({}).get("mixture") for name in ("ipo-md", "nash-md", "nash-md-pg")} \
        == {"ipo-md": 0.125, "nash-md": None, "nash-md-pg": 0.5}  # Nash-MD: None is lr * tau
    assert set(PSI_BUILTIN) == {"identity", "logit", "log"}


def test_trl_names_and_kinds_of_exact_answer() -> None:
    # TRL's DPOTrainer: loss_type="sigmoid" is DPO's -log sigmoid(beta h), "ipo" IPO's squared loss.
    trl = {name: m.trl for name, m in METHODS.items() if m.trl}
    assert trl == {"dpo": "sigmoid", "ipo": "ipo", "sppo": "sppo_hard"}
    # DPO and RLHF's reward model (logistic tails) diverge on separable data; IPO's quadratic never does.
    assert get_method("dpo").loss.exact is Exact.SEPARATED_LIMIT
    assert get_method("rlhf").loss.exact is Exact.SEPARATED_LIMIT
    assert get_method("ipo").loss.exact is Exact.ATTAINED
    assert get_method("psipo").loss is None
    # The online methods' answers: stationary points (attained), but SPPO's, the limit of averaged iterates.
    assert {name for name, m in METHODS.items() if m.exact is Exact.AVERAGE} == {"sppo"}


def test_unknown_method_names_the_registered_ones() -> None:
    with pytest.raises(InputError) as info:
        get_method("kto")
    assert info.value.key == "method" and "rlhf, dpo, ipo, psipo" in info.value.reason
