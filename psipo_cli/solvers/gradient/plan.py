"""The lanes of a call: every spec × tau × seed × context asks its method's family for its lanes.

`LanePlan` is what a family's `gradient_lanes` sees: the current run's inputs, `pair_lane` and `kl_lane`
to add lanes of the engine's own blocks, `block_lane` for a block the family defines, and `steps`.
Identical lanes (same spec, tau, data, stream and target) are created once: e.g. the seeds of a
deterministic run on data that are not sampled, or RLHF's reward model, which does not depend on tau.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from psipo_cli.config.settings import GradientSettings
from psipo_cli.errors import InputError
from psipo_cli.methods import get_method
from psipo_cli.methods.linalg import log_of
from psipo_cli.methods.spec import PairFn
from psipo_cli.methods.streams import Comparisons, comparisons
from psipo_cli.problem import Problem, realise
from psipo_cli.solvers.exact import setting_values
from psipo_cli.solvers.gradient.blocks import KLLane, PairLane
from psipo_cli.solvers.inputs import DATASET, MethodInputs, method_inputs
from psipo_cli.solvers.runs import MethodSpec, check_options

REWARD, PAIR, KL = "reward", "pair", "kl"  # the lane pools: phase 1 (reward models), phase 2 (pairwise, KL)


@dataclass(frozen=True)
class Lane:
    """A lane's pool and index in it."""

    pool: str
    index: int


@dataclass(eq=False)
class Run:
    """One (spec, tau, seed, context): its policy lane and what its family's report needs (`extra`)."""

    spec: MethodSpec
    tau: float
    seed: int
    context: int
    lane: Lane
    inputs: MethodInputs
    extra: Any


@dataclass(eq=False)
class LanePlan:
    """The lane pools of a call, filled run by run (`at`, then the family's `gradient_lanes`)."""

    steps: int
    pools: dict[str, list[Any]] = field(default_factory=lambda: {REWARD: [], PAIR: [], KL: []})
    #: The block builder of each pool a family defines (`block_lane`), in first-use order.
    builders: dict[str, Callable[..., Any]] = field(default_factory=dict)
    runs: list[Run] = field(default_factory=list)
    _index: dict[tuple, int] = field(default_factory=dict)
    _comparisons: dict[tuple[int | None, int], Comparisons] = field(default_factory=dict)

    def at(self, spec: int, data_key: int | None, context: int, name: str, stream: Any, inputs: MethodInputs) -> None:
        """The run the next lanes belong to: spec index, dataset (`None`: shared), context, minibatch stream
        (`(k, c)`, None for the full batch) and the method's inputs."""
        self._where = (spec, data_key, context, name, stream)
        self.inputs = inputs
        self.log_pi_ref = log_of(np.asarray(inputs.pi_ref, float))

    def pair_lane(self, pair_grad: PairFn, tau: float, l2: float, limit: int, phase: int) -> Lane:
        """A pairwise lane on the run's comparisons: phase 1 (a reward model, before every policy) or 2."""
        spec, data_key, context, _, stream = self._where
        pool = REWARD if phase == 1 else PAIR
        lane = PairLane(pair_grad, tau, l2, self.comparisons(), stream, limit, self.log_pi_ref)
        return self._add(pool, (spec, tau, l2, limit, data_key, context, stream), lane)

    def kl_lane(self, tau: float, target: np.ndarray | Lane) -> Lane:
        """A KL lane ascending `E_pi r - tau KL` with `r = target` (an array, or a reward lane's fit)."""
        spec, data_key, context, _, _ = self._where
        if isinstance(target, Lane):
            return self._add(KL, (spec, tau, target), KLLane(tau, None, self.log_pi_ref, target.index))
        return self._add(KL, (spec, tau, data_key, context), KLLane(tau, target, self.log_pi_ref))

    def comparisons(self, W: np.ndarray | None = None, empty: str = "context has no comparisons") -> Comparisons:
        """Comparisons for a family's own block: by default the current run's, made once per dataset and
        context (every method on comparisons sees the same `W` of a context, `solvers.inputs`, so their lanes
        share one minibatch stream); or those of counts `W` the family derives (an `InputError` naming the
        context and saying `empty` when there are none)."""
        _, data_key, context, name, _ = self._where
        if W is not None:
            return comparisons(np.asarray(W, float), name, empty)
        if (data_key, context) not in self._comparisons:
            self._comparisons[data_key, context] = comparisons(np.asarray(self.inputs.W, float), name)
        return self._comparisons[data_key, context]

    @property
    def stream(self) -> tuple[int, int] | None:
        """The current run's minibatch stream `(seed k, context c)`; None for the full batch."""
        return self._where[4]

    def block_lane(self, pool: str, builder: Callable[..., Any], key: tuple, lane: Any) -> Lane:
        """A phase-2 lane of a block the family defines (e.g. a game method whose target moves with the
        policy).

        `builder(lanes, start, n, settings)` makes the block (`blocks.Block`) of all the lanes of `pool`, rows
        `[start, start + len(lanes))`; each lane has a `log_pi_ref` (n,) attribute (the rows' reference, for
        the curves). Lanes with equal `key` within a run's spec, dataset, context and stream are created once.
        """
        spec, data_key, context, _, stream = self._where
        self.pools.setdefault(pool, [])
        self.builders.setdefault(pool, builder)
        return self._add(pool, (spec, data_key, context, stream, *key), lane)

    def _add(self, pool: str, key: tuple, lane: Any) -> Lane:
        """The lane's handle; an identical lane (same key) is computed once."""
        if (pool, *key) not in self._index:
            self._index[(pool, *key)] = len(self.pools[pool])
            self.pools[pool].append(lane)
        return Lane(pool, self._index[(pool, *key)])


def build_plan(
    problem: Problem, specs: list[MethodSpec], taus: list[float], settings: GradientSettings, objective: str,
    streams: Sequence[int] | None = None,
) -> LanePlan:
    """The lanes and runs of `run_gradient`, in (spec, tau, seed, context) order; context `c` reads the
    minibatch stream `(k, streams[c])` (default `(k, c)`)."""
    stream_of = list(range(len(problem.contexts))) if streams is None else [int(s) for s in streams]
    plan = LanePlan(settings.steps)
    realised: dict[int | None, Problem] = {}
    stochastic = settings.batch_size > 0
    for s, spec in enumerate(specs):
        method = get_method(spec.method)
        options = spec_options(spec, settings)
        for tau in taus:
            for k in range(settings.seeds):
                for c in range(len(problem.contexts)):
                    # Data: dataset k where the context samples its data (DATASET objective), else shared.
                    sampled = objective == DATASET and problem.contexts[c].sample is not None
                    data_key = k if sampled else None
                    if data_key not in realised:
                        realised[data_key] = realise(problem, k) if sampled else problem
                    ctx = realised[data_key].contexts[c]
                    inputs = method_inputs(ctx, method, objective, problem.actions)
                    plan.at(s, data_key, c, ctx.name, (k, stream_of[c]) if stochastic else None, inputs)
                    lane, extra = method.family.gradient_lanes(method, plan, tau, options)
                    plan.runs.append(Run(spec, tau, k, c, lane, inputs, extra))
    return plan


def spec_options(spec: MethodSpec, settings: GradientSettings) -> dict[str, Any]:
    """Every option of the spec's method (`Method.option_values`, checked by `check_options`, the exact
    solver's check), where an option that is also a gradient setting (`rm_steps`, `eps`) defaults to the
    setting's value; `rm_steps` left unset is `steps`."""
    check_options(spec)
    method = get_method(spec.method)
    if settings.optimizer == "md" and not getattr(method.family, "mirror_descent", False):
        raise InputError("--optimizer", "md", f"{spec.method} has no mirror-descent update (md is the update of "
                         "the online methods: online-ipo, ipo-md, nash-md, nash-md-pg, sppo, inpo, egpo)")
    given = {name: getattr(settings, name) for name in method.options if hasattr(settings, name)}
    given.update((k, v) for k, v in spec.options if v is not None)
    options = method.option_values(given)
    options.update(setting_values(method, settings))
    if "rm_steps" in options and options["rm_steps"] is None:
        options["rm_steps"] = settings.steps
    return options
