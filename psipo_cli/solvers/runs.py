"""What to run and what a run returns: shared by the exact solver, the gradient engine and the metrics."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from psipo_cli.config.settings import check_option
from psipo_cli.errors import InputError
from psipo_cli.methods import get_method
from psipo_cli.schema import EXACT, GRADIENT

__all__ = ["EXACT", "GRADIENT", "MethodSpec", "RunResult", "check_options", "group_runs", "method_spec"]



@dataclass(frozen=True)
class MethodSpec:
    """A method with its options, under a display label (`rlhf` twice with two `rm_l2` needs two labels)."""

    method: str
    label: str = ""
    options: tuple[tuple[str, Any], ...] = ()

    def __post_init__(self) -> None:
        m = get_method(self.method)
        for key, _ in self.options:
            if key not in m.options:
                raise InputError(key, dict(self.options)[key], f"not an option of {self.method}")
        if not self.label:
            object.__setattr__(self, "label", self.method)

    def option(self, key: str, default: Any = None) -> Any:
        return dict(self.options).get(key, default)


def check_options(spec: MethodSpec) -> None:
    """The values of a spec's options, validated from their declarations (`psipo_cli.config.settings`; the
    exact solvers take them as given: a negative `rm_l2` would make the reward model non-convex and flip its
    answer). Keys are named as flags, as the gradient engine's."""
    for key, value in spec.options:
        if value is not None:
            check_option(key, value)


def method_spec(method: str, label: str = "", **options: Any) -> MethodSpec:
    """A `MethodSpec` from keyword options, dropping those left at `None`."""
    return MethodSpec(method, label, tuple(sorted((k, v) for k, v in options.items() if v is not None)))


@dataclass(frozen=True, eq=False)
class RunResult:
    """One run: a method (label), a tau, a solver, a seed (dataset or minibatch stream) and a context.

    `curve` (gradient only) holds the policy at each recorded step, shape `(len(steps), n)`.
    `reward` is the implied reward of the answer (`Solution.reward`; None where it is not finite or not
    computed). `noise` (gradient only) is the measured size of the iterate's fluctuation at the end of
    the run, in probability units (NaN where not measured).
    """

    label: str
    method: str
    tau: float
    solver: str
    seed: int
    context: int
    policy: np.ndarray
    status: str
    loss: float
    detail: str = ""
    grad_norm: float = float("nan")
    curve: np.ndarray | None = field(default=None, repr=False)
    reward: np.ndarray | None = field(default=None, repr=False)
    noise: float = float("nan")


def group_runs(runs: list[RunResult]) -> dict[tuple[str, float, str, int], list[RunResult]]:
    """Runs grouped by (label, tau, solver, context), in first-seen order; each group holds its seeds."""
    groups: dict[tuple[str, float, str, int], list[RunResult]] = {}
    for run in runs:
        groups.setdefault((run.label, run.tau, run.solver, run.context), []).append(run)
    return groups
