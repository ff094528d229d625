"""The Python API: `psipo_cli.solve` takes every gradient setting by name or as `settings=`,
method options and experiment-file method dicts, rejects unknown keywords with a suggestion, and is the real
function (signature, docstring) while `import psipo_cli` stays light."""

from __future__ import annotations

import dataclasses
import doctest
import inspect
import subprocess
import sys
from typing import Any

import numpy as np
import pytest
from scipy.optimize import minimize

import psipo_cli
from psipo_cli.config.settings import GradientSettings
from psipo_cli.errors import InputError
from psipo_cli.methods import METHODS
from psipo_cli.solvers import gradient
from psipo_cli.solvers.runs import method_spec

METHOD_OPTIONS = {o for m in METHODS.values() for o in m.options}
# Non-default, valid values of the fields this test knows; fields added later are covered by
# `test_every_settings_field_is_a_keyword` (their defaults) without a change here.
NON_DEFAULT = {
    "steps": 7, "lr": 0.05, "batch_size": 0, "optimizer": "sgd", "seeds": 3, "seed": 4, "b1": 0.5, "b2": 0.9,
    "adam_eps": 1e-6, "records": 5, "ztol": 4.0, "xtol": 1e-3, "gtol": 1e-5,
}


@pytest.fixture
def captured(monkeypatch: pytest.MonkeyPatch) -> list[GradientSettings]:
    """The settings each gradient run of `solve` receives (the real engine still runs)."""
    seen: list[GradientSettings] = []
    real = gradient.run_gradient

    def spy(problem: Any, specs: Any, taus: Any, settings: GradientSettings, *args: Any, **kwargs: Any) -> Any:
        seen.append(settings)
        return real(problem, specs, taus, settings, *args, **kwargs)

    monkeypatch.setattr(gradient, "run_gradient", spy)
    return seen


def test_issue_example_runs_10_steps_and_2_seeds() -> None:
    frames = psipo_cli.solve("paper-d1", ["ipo"], [1.0], solver="gradient", steps=10, seeds=2)
    assert int(frames.curves.step.max()) == 10
    assert frames.metrics.seeds.tolist() == [2]
    assert sorted(r.seed for r in frames.runs) == [0, 1]


@pytest.mark.parametrize(("name", "value"), sorted(NON_DEFAULT.items()))
def test_each_setting_by_keyword_reaches_the_engine(captured: list[GradientSettings], name: str, value: Any) -> None:
    psipo_cli.solve("paper-d1", "ipo", 1.0, solver="gradient", **{"steps": 3, "seeds": 1, name: value})
    (settings,) = captured
    assert getattr(settings, name) == value
    # ... and every other field keeps its default.
    defaults = GradientSettings()
    for field in dataclasses.fields(GradientSettings):
        if field.name not in (name, "steps", "seeds"):
            assert getattr(settings, field.name) == getattr(defaults, field.name), field.name


def test_every_settings_field_is_a_keyword(captured: list[GradientSettings]) -> None:
    # Derived from the dataclass, not from a list: a field added to GradientSettings is a keyword of solve.
    # (`rm_steps` and `eps` are method options as keywords, tested below.)
    defaults = GradientSettings()
    for field in dataclasses.fields(GradientSettings):
        if field.name in METHOD_OPTIONS:
            continue
        kw = {"steps": 2, "seeds": 1, field.name: getattr(defaults, field.name)}
        psipo_cli.solve("paper-d1", "ipo", 1.0, solver="gradient", **kw)
    assert len(captured) == len([f for f in dataclasses.fields(GradientSettings) if f.name not in METHOD_OPTIONS])


def test_keywords_override_fields_of_settings(captured: list[GradientSettings]) -> None:
    base = GradientSettings(steps=5, lr=0.1, seeds=1, optimizer="sgd")
    frames = psipo_cli.solve("paper-d1", "ipo", 1.0, solver="gradient", settings=base, steps=7, seeds=2)
    assert captured == [GradientSettings(steps=7, lr=0.1, seeds=2, optimizer="sgd")]
    assert int(frames.curves.step.max()) == 7 and frames.metrics.seeds.tolist() == [2]
    # `settings` alone is used as given.
    psipo_cli.solve("paper-d1", "ipo", 1.0, solver="gradient", settings=base)
    assert captured[-1] == base


def test_exact_solve_uses_seeds_as_dataset_count() -> None:
    # bt-finite samples its data: the exact solver solves one dataset per seed.
    frames = psipo_cli.solve("bt-finite", "ipo", 1.0, seeds=3)
    assert frames.metrics.seeds.tolist() == [3]


@pytest.mark.parametrize(
    ("kwargs", "key", "hint"),
    [
        ({"stepz": 10}, "stepz", "did you mean steps?"),
        ({"batchsize": 0}, "batchsize", "did you mean batch_size?"),
        ({"rm_l3": 0.1}, "rm_l3", "did you mean rm_l2?"),
        ({"flux": 1}, "flux", "unknown keyword"),
    ],
)
def test_unknown_keyword_is_an_input_error(kwargs: dict[str, Any], key: str, hint: str) -> None:
    with pytest.raises(InputError) as info:
        psipo_cli.solve("paper-d1", "ipo", 1.0, solver="gradient", **kwargs)
    assert info.value.key == key and hint in info.value.reason


def test_invalid_setting_is_named_by_its_keyword() -> None:
    with pytest.raises(InputError) as info:
        psipo_cli.solve("paper-d1", "ipo", 1.0, solver="gradient", lr=-1.0)
    assert (info.value.key, info.value.value) == ("lr", -1.0)
    with pytest.raises(InputError, match="GradientSettings"):
        psipo_cli.solve("paper-d1", "ipo", 1.0, solver="gradient", settings={"steps": 10})


def test_method_option_that_no_method_takes_is_an_error() -> None:
    with pytest.raises(InputError) as info:
        psipo_cli.solve("paper-d1", ["dpo", "ipo"], 1.0, rm_l2=0.1)
    assert info.value.key == "rm_l2" and "no given method" in info.value.reason
    with pytest.raises(InputError) as info:
        psipo_cli.solve("paper-d1", "ipo", 1.0, solver="gradient", steps=2, seeds=1, eps=1e-3)
    assert info.value.key == "eps"


def _ridge_rlhf_policy(rm_l2: float, tau: float) -> np.ndarray:
    """RLHF on D1 = {a > b, b > c, a > c}, from the definitions: the reward model minimises the *mean*
    Bradley-Terry loss plus `(rm_l2 / 2) ||r||^2` (README, conventions), then `pi ∝ pi_ref exp(r / tau)` with
    pi_ref uniform (paper Eq. 3's maximiser)."""
    pairs = [(0, 1), (1, 2), (0, 2)]

    def loss(r: np.ndarray) -> float:
        return float(np.mean([np.logaddexp(0.0, -(r[win] - r[lose])) for win, lose in pairs]) + 0.5 * rm_l2 * r @ r)

    r = minimize(loss, np.zeros(3), method="BFGS", options={"gtol": 1e-12}).x
    e = np.exp((r - r.max()) / tau)
    return e / e.sum()


def _policies(frames: Any) -> dict[str, np.ndarray]:
    return {m: g.prob.to_numpy() for m, g in frames.policy.groupby("method", sort=False)}


def test_method_dicts_work_and_keyword_options_fill_in() -> None:
    methods = [
        {"method": "rlhf", "label": "own", "rm_l2": 0.1},  # its own rm_l2 wins over the keyword
        {"method": "rlhf", "label": "kw"},  # takes the keyword's
        "dpo",  # does not take rm_l2: unaffected
    ]
    frames = psipo_cli.solve("paper-d1", methods, 1.0, rm_l2=1.0)
    got = _policies(frames)
    assert list(got) == ["own", "kw", "dpo"]
    np.testing.assert_allclose(got["own"], _ridge_rlhf_policy(0.1, 1.0), atol=1e-7)
    np.testing.assert_allclose(got["kw"], _ridge_rlhf_policy(1.0, 1.0), atol=1e-7)
    # A MethodSpec that does not set the option takes it too.
    frames = psipo_cli.solve("paper-d1", method_spec("rlhf", "spec"), 0.5, rm_l2=1.0)
    np.testing.assert_allclose(_policies(frames)["spec"], _ridge_rlhf_policy(1.0, 0.5), atol=1e-7)


@pytest.mark.parametrize(
    ("method", "key", "reason"),
    [
        ({"method": "rlhf", "rm_l3": 0.1}, "method.rm_l3", "did you mean rm_l2?"),
        ({"method": "ipo", "rm_l2": 0.1}, "method.rm_l2", "not an option of ipo"),
        ({"label": "x"}, "method", "each method is a name or a table"),
        (["ipo", {"method": "sft"}], "method", "unknown method"),
        (["ipo", {"method": "dpo", "label": "ipo"}], "method", "labels must be unique"),
    ],
)
def test_bad_method_dicts_are_input_errors(method: Any, key: str, reason: str) -> None:
    with pytest.raises(InputError) as info:
        psipo_cli.solve("paper-d1", method, 1.0)
    assert info.value.key == key and reason in info.value.reason


def test_solve_is_the_real_function() -> None:
    from psipo_cli import api

    assert psipo_cli.solve is api.solve
    parameters = inspect.signature(psipo_cli.solve).parameters
    assert list(parameters)[:7] == ["problem", "method", "tau", "solver", "objective", "settings", "progress"]
    assert parameters["options"].kind is inspect.Parameter.VAR_KEYWORD
    assert parameters["solver"].default == "exact" and parameters["settings"].default is None
    doc = inspect.getdoc(psipo_cli.solve) or ""
    assert "Parameters" in doc and "Examples" in doc and "GradientSettings" in doc


def test_docstring_examples_hold() -> None:
    from psipo_cli import api

    finder = doctest.DocTestFinder()
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
    (test,) = finder.find(api.solve, "solve", globs={})
    assert len(test.examples) >= 6
    result = runner.run(test)
    assert result.failed == 0


def test_public_names_are_exported_lazily() -> None:
    eager = {"InputError", "OutputError", "__version__"}
    assert set(psipo_cli.__all__) == eager | set(psipo_cli._LAZY)
    assert set(psipo_cli.__all__) <= set(dir(psipo_cli))
    from psipo_cli import GradientSettings as Exported
    from psipo_cli import MethodSpec, get_problem

    assert Exported is GradientSettings and MethodSpec is method_spec("ipo").__class__
    assert get_problem("paper-d1").actions == ("a", "b", "c")
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        psipo_cli.nope  # noqa: B018
    # A fresh interpreter: `import psipo_cli` imports no heavy library; the names resolve on first use.
    code = (
        "import sys, psipo_cli; heavy = ('numpy', 'pandas', 'scipy', 'matplotlib'); "
        "print(','.join(m for m in heavy if m in sys.modules)); "
        "from psipo_cli import *; print(solve.__module__, GradientSettings.__module__, sorted(PRESETS)[0])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    first, second = out.splitlines()
    assert first == ""
    assert second == "psipo_cli.api psipo_cli.config.settings bt-finite"
