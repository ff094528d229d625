"""The registry (`psipo_cli.methods`): names, families, TRL names and the lookup's error."""

from __future__ import annotations

import pytest

from psipo_cli.errors import InputError
from psipo_cli.methods import METHODS, PSI_BUILTIN, Exact, get_method


def test_registry_order_and_families() -> None:
    # The order of `METHODS` is the order of help texts and tables (unchanged by the move to families).
    assert list(METHODS)[:4] == ["rlhf", "dpo", "ipo", "psipo"]
    families = {name: m.family.name for name, m in METHODS.items()}
    assert {k: families[k] for k in ("rlhf", "dpo", "ipo", "psipo")} == {
        "rlhf": "reward-model", "dpo": "pairwise", "ipo": "pairwise", "psipo": "population",
    }
    single = ("nca", "bco", "sppo-hard", "apo-zero", "apo-down", "kto")
    assert all(families[k] == "single-action" for k in single)
    assert families["cpo"] == families["orpo"] == "reference-free"
    online = ("online-ipo", "ipo-md", "nash-md", "nash-md-pg", "sppo", "inpo", "egpo")
    assert all(families[k] == "online" for k in online) and families["nash"] == "game"
    # TRL's loss_type names (DPOTrainer) for the losses it ships; KTO, CPO and ORPO have their own trainers.
    assert {k: METHODS[k].trl for k in single} == {
        "nca": "nca_pair", "bco": "bco_pair", "sppo-hard": "sppo_hard", "apo-zero": "apo_zero",
        "apo-down": "apo_down", "kto": "",
    }
    assert get_method("kto").options == ("kto_desirable_weight", "kto_undesirable_weight")
    assert get_method("cpo").options == ("cpo_alpha",) and get_method("orpo").options == ("orpo_lambda",)
    assert get_method("rlhf").options == ("rm_l2", "rm_steps")
    assert get_method("psipo").options == ("psi", "eps")
    assert {name: get_method(name).option_values({}).get("mixture") for name in ("ipo-md", "nash-md", "nash-md-pg")} \
        == {"ipo-md": 0.125, "nash-md": None, "nash-md-pg": 0.5}  # Nash-MD: None is lr * tau
    assert set(PSI_BUILTIN) == {"identity", "logit", "log"}


def test_trl_names_and_kinds_of_exact_answer() -> None:
    # TRL's DPOTrainer: loss_type="sigmoid" is DPO's -log sigmoid(beta h), "ipo" IPO's squared loss.
    assert {name: METHODS[name].trl for name in ("rlhf", "dpo", "ipo", "psipo")} == {
        "rlhf": "", "dpo": "sigmoid", "ipo": "ipo", "psipo": ""
    }
    # DPO and RLHF's reward model (logistic tails) diverge on separable data; IPO's quadratic never does.
    assert get_method("dpo").loss.exact is Exact.SEPARATED_LIMIT
    assert get_method("rlhf").loss.exact is Exact.SEPARATED_LIMIT
    assert get_method("ipo").loss.exact is Exact.ATTAINED
    assert get_method("psipo").loss is None
    # The online methods' answers: stationary points (attained), but SPPO's, the limit of averaged iterates.
    assert {name for name, m in METHODS.items() if m.exact is Exact.AVERAGE} == {"sppo"}


def test_unknown_method_names_the_registered_ones() -> None:
    with pytest.raises(InputError) as info:
        get_method("no-such-method")
    assert info.value.key == "method" and "rlhf, dpo, ipo, psipo" in info.value.reason
