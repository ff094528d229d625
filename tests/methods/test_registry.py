"""The registry (`psipo_cli.methods`): names, families, TRL names and the lookup's error."""

from __future__ import annotations

import pytest

from psipo_cli.errors import InputError
from psipo_cli.methods import METHODS, PSI_BUILTIN, Exact, get_method


def test_registry_order_and_families() -> None:
    # The order of `METHODS` is the order of help texts and tables (unchanged by the move to families).
    # (The loss zoo, issue 12, appends its methods after these four.)
    assert list(METHODS)[:4] == ["rlhf", "dpo", "ipo", "psipo"]
    assert {name: METHODS[name].family.name for name in list(METHODS)[:4]} == {
        "rlhf": "reward-model", "dpo": "pairwise", "ipo": "pairwise", "psipo": "population",
    }
    assert get_method("rlhf").options == ("rm_l2", "rm_steps")
    assert get_method("psipo").options == ("psi", "eps")
    assert set(PSI_BUILTIN) == {"identity", "logit", "log"}


def test_trl_names_and_kinds_of_exact_answer() -> None:
    # TRL's DPOTrainer: loss_type="sigmoid" is DPO's -log sigmoid(beta h), "ipo" IPO's squared loss.
    first = ("rlhf", "dpo", "ipo", "psipo")
    assert {name: METHODS[name].trl for name in first} == {"rlhf": "", "dpo": "sigmoid", "ipo": "ipo", "psipo": ""}
    # DPO and RLHF's reward model (logistic tails) diverge on separable data; IPO's quadratic never does.
    assert get_method("dpo").loss.exact is Exact.SEPARATED_LIMIT
    assert get_method("rlhf").loss.exact is Exact.SEPARATED_LIMIT
    assert get_method("ipo").loss.exact is Exact.ATTAINED
    assert get_method("psipo").loss is None


def test_unknown_method_names_the_registered_ones() -> None:
    with pytest.raises(InputError) as info:
        get_method("kto")
    assert info.value.key == "method" and "rlhf, dpo, ipo, psipo" in info.value.reason
