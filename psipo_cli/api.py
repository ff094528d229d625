"""The public Python API: `psipo_cli.solve(...)` returns tidy pandas frames (README, How it is built).

This is also what the CLI calls: it resolves the problem and the objective, runs the exact solver and the
gradient engine, computes the metrics and lays everything out as the tables of docs/outputs.md.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from psipo_cli.config import choices
from psipo_cli.config.settings import setting
from psipo_cli.errors import InputError
from psipo_cli.metrics import (
    MetricRow,
    context_summary,
    gauge_components,
    population_optima,
    summarise,
    t_interval,
    total_variation,
)
from psipo_cli.problem import Problem, get_problem
from psipo_cli.schema import (
    CURVE_COLUMNS,
    GAP_CURVE_COLUMNS,
    LOGIT_GAP_COLUMNS,
    METRIC_COLUMNS,
    POLICY_COLUMNS,
    REWARD_COLUMNS,
    RUN_COLUMNS,
    SOCIAL_CHOICE_COLUMNS,
    SUMMARY_COLUMNS,
    TAU_GRID_COLUMNS,
)
from psipo_cli.solvers.exact import solve_exact
from psipo_cli.solvers.inputs import POPULATION, resolve_objective
from psipo_cli.solvers.runs import EXACT, GRADIENT, MethodSpec, RunResult, group_runs, method_spec

if TYPE_CHECKING:
    import pandas as pd

    from psipo_cli.config.settings import GradientSettings
    from psipo_cli.forking import Forked

SOLVERS = choices.SOLVERS


def _empty(columns: list[str]) -> pd.DataFrame:
    import pandas as pd

    return pd.DataFrame(columns=columns)


@dataclass
class Frames:
    """Tidy results.

    Attributes
    ----------
    policy, metrics : one row per method × tau × solver × context (× action): seed means.
    curves : the gradient runs' learning curves (empty without a gradient run).
    objective : `dataset` or `population`.
    runs : the `RunResult` of every run (one per seed or dataset).
    summary : the context-weighted aggregate of `metrics` (`E_{x ~ rho}`, paper Eq. 6), one row per method
        × tau × solver: the columns of `metrics` but `context`.
    rewards : the implied reward of each exact answer, `pi ∝ pi_ref exp(reward / tau)` (RLHF's fitted
        reward, `tau * delta` for DPO and IPO, `g(y)` for ΨPO), seed mean; empty where it is infinite
        (a `diverged` answer). Exact rows only: a gradient run's policy fixes `tau log(pi / pi_ref)` only up
        to a constant, not in the exact answer's gauge (compute it from `per_seed` if you want it).
    per_seed : the final result of every run (seed or dataset): method, tau, solver, context, seed,
        action, prob, status, loss, grad_norm, noise, detail — for statistics of one's own.
    gap_curves : the duality gap of the regularised preference game (`nash_gap`) of each gradient run's
        policy at its recorded steps, seed mean with its 95% interval, where the context has a preference
        model (empty otherwise).
    logit_gap : where a context's preference model is not Bradley–Terry (`preferences`, or `order`, its
        deterministic limit), the total variation between the population optima of DPO and ΨPO-logit
        per tau and context: the paper's Prop. 1 (they coincide) needs Bradley–Terry. Empty otherwise, and
        when no DPO, RLHF or ΨPO-logit ran.
    social_choice : for every context whose preferences (the model, or `P_hat` from data where every pair
        was observed) are non-transitive — their majority relation has a cycle — the score and rank each
        objective gives each action of `supp pi_ref`: RLHF/DPO's Bradley–Terry reward fitted to
        `mu(w) mu(l) P[w, l]`, IPO's `P(y ≻ mu)`, and the maximal lottery (Nash's `tau -> 0` limit). Empty
        when every context is transitive.
    """

    policy: pd.DataFrame
    metrics: pd.DataFrame
    curves: pd.DataFrame
    objective: str
    runs: list[RunResult] = field(default_factory=list, repr=False)
    summary: pd.DataFrame = field(default_factory=lambda: _empty(SUMMARY_COLUMNS), repr=False)
    rewards: pd.DataFrame = field(default_factory=lambda: _empty(REWARD_COLUMNS), repr=False)
    per_seed: pd.DataFrame = field(default_factory=lambda: _empty(RUN_COLUMNS), repr=False)
    logit_gap: pd.DataFrame = field(default_factory=lambda: _empty(LOGIT_GAP_COLUMNS), repr=False)
    gap_curves: pd.DataFrame = field(default_factory=lambda: _empty(GAP_CURVE_COLUMNS), repr=False)
    social_choice: pd.DataFrame = field(default_factory=lambda: _empty(SOCIAL_CHOICE_COLUMNS), repr=False)


def check_taus(taus: Sequence[float]) -> list[float]:
    """Validated tau values: finite and positive (`psipo_cli.config.validate.real`)."""
    from psipo_cli.config.validate import real

    out = [real("tau", tau) for tau in taus]
    if not out:
        raise InputError("tau", list(taus), "give at least one value")
    return out


MethodArg = str | dict[str, Any] | MethodSpec


def solve(
    problem: str | Path | Problem,
    method: MethodArg | Sequence[MethodArg],
    tau: float | Sequence[float],
    solver: str = "exact",
    objective: str | None = None,
    settings: GradientSettings | None = None,
    progress: Callable[[int, int], None] | None = None,
    **options: Any,
) -> Frames:
    """Solve `problem` with one or more methods over one or more tau values, exactly and/or by gradient.

    The same computation as ``psipo run`` / ``psipo compare`` (which call this function), returned as tidy
    pandas frames instead of files.

    Parameters
    ----------
    problem : str, Path or Problem
        A preset name (``"paper-d1"``, ``psipo problem list``), a problem TOML file, or a `Problem`.
    method : str, dict, MethodSpec, or a list of them
        ``"rlhf"``, ``"dpo"``, ``"ipo"``, ``"psipo"``; a dict in the experiment-file form
        ``{"method": "rlhf", "label": "rlhf-ridge", "rm_l2": 0.1}`` (validated as in experiment files); or a
        `MethodSpec` (`method_spec("rlhf", "rlhf-ridge", rm_l2=0.1)`). Labels must be unique.
    tau : float or list of float
        KL coefficient(s), positive and finite. DPO's beta is the same number.
    solver : {"exact", "gradient", "both"}
        The exact solver, the vectorised gradient engine, or both.
    objective : {"dataset", "population"} or None
        None (or ``"auto"``): the dataset objective if the problem has data, else the population one.
    settings : GradientSettings, optional
        Gradient settings; default `GradientSettings()`, the paper's §5.4 values (Adam, lr 0.01, batch 9,
        18,000 steps, 10 seeds). ``seeds`` is also the number of datasets the exact solver solves when the
        problem samples its data; an exact-only solve given neither `settings` nor a setting keyword solves
        dataset 0 alone.
    progress : callable, optional
        Called as ``progress(done_steps, total_steps)`` during the gradient run.
    **options
        Keyword settings and method options:

        - every field of `GradientSettings` by name (``steps``, ``seeds``, ``lr``, ``batch_size``,
          ``optimizer``, ``seed``, ...; ``help(GradientSettings)`` lists them). Given together with
          `settings`, the keywords override those fields of `settings` (``dataclasses.replace``); alone,
          they override the defaults.
        - method options (``rm_l2``, ``rm_steps`` for RLHF; ``psi``, ``eps`` for ΨPO): applied to every
          given method that accepts the option and does not set it itself (in its dict or `MethodSpec`).
          ``rm_steps`` and ``eps`` are also `GradientSettings` fields; as keywords they are method options.

    Returns
    -------
    Frames
        ``policy`` (method, tau, solver, context, action, prob, prob_lo, prob_hi), ``metrics`` (status,
        KL, entropy, loss, win rates, ... per method, tau, solver and context) and ``curves`` (the gradient
        runs' policy per recorded step; empty without a gradient run). Gradient results are means over
        seeds with a 95% Student-t interval.

    Raises
    ------
    InputError
        Bad input, naming the key and the value: an unknown keyword (with the closest valid one), a method
        option that no given method accepts, an invalid setting, method, tau or problem.

    Examples
    --------
    IPO's exact optimum on the paper's D1 = {a > b, b > c, a > c} has offsets ``(1, 0, -1) / (3 tau)``:

    >>> import psipo_cli
    >>> frames = psipo_cli.solve("paper-d1", "ipo", 1.0)
    >>> frames.policy.action.tolist(), frames.policy.prob.round(4).tolist()
    (['a', 'b', 'c'], [0.4484, 0.3213, 0.2302])

    Gradient settings by keyword (here 10 Adam steps and 2 seeds), several methods and tau values:

    >>> frames = psipo_cli.solve("paper-d1", ["dpo", "ipo"], [0.5, 1.0], solver="gradient", steps=10, seeds=2)
    >>> int(frames.curves.step.max()), int(frames.metrics.seeds.iloc[0])
    (10, 2)

    Method options, and methods in the experiment-file form:

    >>> frames = psipo_cli.solve("paper-d1", ["rlhf", {"method": "rlhf", "label": "rlhf-ridge", "rm_l2": 0.1}],
    ...                          1.0)
    >>> list(frames.metrics.method)
    ['rlhf', 'rlhf-ridge']

    A typo is an error, with a suggestion:

    >>> psipo_cli.solve("paper-d1", "ipo", 1.0, stepz=10)
    Traceback (most recent call last):
    ...
    psipo_cli.errors.InputError: stepz = 10: unknown keyword of solve (did you mean steps?)
    """
    problem = get_problem(problem)
    setting("solver").check(solver, "solver")
    taus = check_taus([tau] if isinstance(tau, int | float) else list(tau))
    setting_keywords, method_options = split_options(options)
    specs = _specs(method, method_options)
    objective = resolve_objective(problem, objective)
    settings = gradient_settings(settings, setting_keywords, default=solver != EXACT)
    seeds = settings.seeds if settings is not None else 1
    runs: list[RunResult] = []
    steps: np.ndarray | None = None
    gradient = _start_gradient(problem, specs, taus, settings, objective, solver) if solver != EXACT else None
    try:
        if solver in (EXACT, "both"):
            runs += solve_exact(problem, specs, taus, objective, datasets=seeds, settings=settings)
        if solver in (GRADIENT, "both"):
            if gradient is not None:
                import pandas  # noqa: F401  (the frames below need it: imported while the child computes)

                steps, gradient_runs = gradient.result(progress)
            else:
                from psipo_cli.solvers.gradient import run_gradient

                assert settings is not None
                steps, gradient_runs = run_gradient(problem, specs, taus, settings, objective, progress=progress)
            runs += gradient_runs
    finally:
        if gradient is not None:
            gradient.close()
    optima = population_optima(problem, specs, taus, settings)
    components = gauge_components(problem, specs, objective, seeds) if solver in (EXACT, "both") else {}
    rows = summarise(problem, runs, optima, components)
    return Frames(
        policy=policy_frame(problem, runs),
        metrics=metrics_frame(problem, rows, objective),
        curves=_curves_frame(problem, runs, steps),
        objective=objective,
        runs=runs,
        summary=_summary_frame(problem, rows, objective),
        rewards=rewards_frame(problem, runs),
        per_seed=_per_seed_frame(problem, runs),
        logit_gap=_logit_gap_frame(problem, specs, taus),
        gap_curves=_gap_curves_frame(problem, runs, steps),
        social_choice=social_choice_frame(problem),
    )


#: Estimated engine seconds (`estimate_resources`) from which `solve` runs the engine in a forked child.
FORK_SECONDS = 0.25


def _start_gradient(
    problem: Problem, specs: list[MethodSpec], taus: list[float], settings: GradientSettings | None, objective: str,
    solver: str,
) -> Forked | None:
    """`run_gradient` started in a forked child (`psipo_cli.forking`), or None to run it in this process.

    Forked when this process has work to do meanwhile — the exact solve, or importing pandas for the
    frames (about 0.2 s) — the engine is estimated to take at least `FORK_SECONDS`, and a fork is usable
    (`fork_pays`). The child computes the same bits; only the wall time changes.
    """
    import sys

    from psipo_cli.forking import Forked, fork_pays
    from psipo_cli.solvers.gradient import estimate_resources, run_gradient

    assert settings is not None
    if solver == GRADIENT and "pandas" in sys.modules:  # nothing to do meanwhile
        return None
    if not fork_pays() or estimate_resources(problem, specs, taus, settings, objective).seconds < FORK_SECONDS:
        return None
    return Forked(run_gradient, problem, specs, taus, settings, objective)


def setting_names() -> tuple[str, ...]:
    """The keywords of `solve` that set `GradientSettings` fields: every field of the dataclass except the
    method options (``rm_steps``, ``eps``), which are per method."""
    from dataclasses import fields

    from psipo_cli.config.settings import GradientSettings
    from psipo_cli.solvers.entries import METHOD_OPTIONS

    return tuple(f.name for f in fields(GradientSettings) if f.name not in METHOD_OPTIONS)


def split_options(options: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """`solve`'s keywords split into `GradientSettings` fields and method options; any other keyword is an
    `InputError` naming it, with the closest valid keyword (difflib)."""
    from psipo_cli.errors import did_you_mean
    from psipo_cli.solvers.entries import METHOD_OPTIONS

    names = setting_names()
    for key, value in options.items():
        if key not in names and key not in METHOD_OPTIONS:
            known = [*names, *METHOD_OPTIONS, "settings", "objective", "solver", "progress"]
            raise InputError(key, value, f"unknown keyword of solve{did_you_mean(key, known)}")
    return ({k: v for k, v in options.items() if k in names}, {k: v for k, v in options.items() if k not in names})


def gradient_settings(
    settings: GradientSettings | None, overrides: dict[str, Any], default: bool = True
) -> GradientSettings | None:
    """`settings` (or `GradientSettings()`) with the fields in `overrides` replaced (`dataclasses.replace`,
    so `GradientSettings` validates them again; errors name the keyword, not the CLI flag). None when no
    settings are given, none are overridden and `default` is false (an exact-only solve)."""
    from dataclasses import replace

    from psipo_cli.config.settings import GradientSettings

    if settings is None and not overrides and not default:
        return None
    if settings is not None and not isinstance(settings, GradientSettings):
        raise InputError("settings", settings, "must be a GradientSettings (or give its fields as keywords)")
    try:
        return replace(settings if settings is not None else GradientSettings(), **overrides)
    except InputError as exc:
        key = exc.key.lstrip("-").replace("-", "_")
        raise InputError(key if key in overrides else exc.key, exc.value, exc.reason) from None


def _specs(method: MethodArg | Sequence[MethodArg], options: dict[str, Any]) -> list[MethodSpec]:
    """The `MethodSpec`s of `method`, each with the keyword `options` it accepts and does not set itself.

    Dicts are validated as experiment-file method tables (`method_entry`); an option that no given method
    accepts is an `InputError`.
    """
    from psipo_cli.methods import get_method
    from psipo_cli.solvers.entries import entry_spec, method_entry

    single = isinstance(method, str | dict | MethodSpec)
    items = [method] if single else list(method)
    if not items:
        raise InputError("method", [], "give at least one method")
    specs = []
    used: set[str] = set()
    for i, item in enumerate(items):
        key = "method" if single else f"method[{i}]"
        if isinstance(item, MethodSpec):
            entry: dict[str, Any] = {"method": item.method, "label": item.label, **dict(item.options)}
        else:
            entry = method_entry(item, key)
        accepted = get_method(str(entry["method"])).options
        for option, value in options.items():
            if option in accepted:
                used.add(option)
                entry.setdefault(option, value)
        specs.append(entry_spec(entry))
    unused = [k for k in options if k not in used]
    if unused:
        raise InputError(unused[0], options[unused[0]], "no given method takes this option")
    labels = [s.label for s in specs]
    if len(set(labels)) != len(labels):
        raise InputError("method", labels, "method labels must be unique")
    return specs


def policy_frame(problem: Problem, runs: list[RunResult]) -> pd.DataFrame:
    """`policy.csv`'s rows for `runs` (docs/outputs.md): per (method, tau, solver, context, action) the mean
    over seeds and its 95% Student-t interval (`t_interval`; one exact solve is its own interval)."""
    import pandas as pd

    records = []
    for (label, tau, solver, context), members in group_runs(runs).items():
        mean, lo, hi = t_interval(np.stack([r.policy for r in members]))
        if solver == EXACT and len(members) == 1:
            lo = hi = mean  # one deterministic solve: its "interval" is the point itself
        for y, action in enumerate(problem.actions):
            records.append(
                (label, tau, solver, problem.contexts[context].name, action, mean[y], lo[y], hi[y])
            )
    return pd.DataFrame.from_records(records, columns=POLICY_COLUMNS)


def metrics_frame(problem: Problem, rows: list[MetricRow], objective: str) -> pd.DataFrame:
    """`metrics.csv`'s rows (docs/outputs.md), one per `MetricRow` (`metrics.summarise`)."""
    import pandas as pd

    records = []
    for row in rows:
        records.append(
            {
                "method": row.label,
                "tau": row.tau,
                "solver": row.solver,
                "context": problem.contexts[row.context].name,
                "status": row.status,
                **row.values,
                "seeds": row.seeds,
                "objective": objective,
                "detail": row.detail,
            }
        )
    return pd.DataFrame.from_records(records, columns=METRIC_COLUMNS)


def _summary_frame(problem: Problem, rows: list[MetricRow], objective: str) -> pd.DataFrame:
    """`Frames.summary`: `metrics.context_summary` of the per-context rows."""
    import pandas as pd

    records = [
        {
            "method": row.label,
            "tau": row.tau,
            "solver": row.solver,
            "status": row.status,
            **row.values,
            "seeds": row.seeds,
            "objective": objective,
            "detail": row.detail,
        }
        for row in context_summary(problem, rows)
    ]
    return pd.DataFrame.from_records(records, columns=SUMMARY_COLUMNS)


def rewards_frame(problem: Problem, runs: list[RunResult]) -> pd.DataFrame:
    """`Frames.rewards`: per exact method, tau and context, the seed mean of `RunResult.reward` (all actions
    empty when a seed has none: the mean over the others would be a different quantity)."""
    import pandas as pd

    n = problem.n_actions
    keys, values = [], []
    for (label, tau, solver, context), members in group_runs(runs).items():
        if solver != EXACT:
            continue
        keys.append((label, tau, solver, problem.contexts[context].name))
        if any(r.reward is None for r in members):
            values.append(np.full(n, np.nan))
        else:
            with np.errstate(invalid="ignore"):  # inf - inf across seeds is NaN: left empty either way
                values.append(np.mean(np.stack([np.asarray(r.reward, dtype=float) for r in members]), axis=0))
    if not keys:
        return _empty(REWARD_COLUMNS)
    columns = {name: np.repeat(np.array([k[i] for k in keys], dtype=object), n) for i, name in enumerate(
        ("method", "tau", "solver", "context"))}
    columns["tau"] = columns["tau"].astype(float)
    columns["action"] = np.tile(np.array(problem.actions, dtype=object), len(keys))
    reward = np.concatenate(values)
    columns["reward"] = np.where(np.isfinite(reward), reward, np.nan)
    return pd.DataFrame(columns)[REWARD_COLUMNS]


def _per_seed_frame(problem: Problem, runs: list[RunResult]) -> pd.DataFrame:
    """`Frames.per_seed`: one row per run (seed or dataset) and action, the run's final policy and status."""
    import pandas as pd

    if not runs:
        return _empty(RUN_COLUMNS)
    n = problem.n_actions

    def each(values: list[Any], dtype: Any = object) -> np.ndarray:
        return np.repeat(np.array(values, dtype=dtype), n)

    frame = pd.DataFrame(
        {
            "method": each([r.label for r in runs]),
            "tau": each([r.tau for r in runs], float),
            "solver": each([r.solver for r in runs]),
            "context": each([problem.contexts[r.context].name for r in runs]),
            "seed": each([r.seed for r in runs], int),
            "action": np.tile(np.array(problem.actions, dtype=object), len(runs)),
            "prob": np.concatenate([r.policy for r in runs]),
            "status": each([r.status for r in runs]),
            "loss": each([r.loss if np.isfinite(r.loss) else np.nan for r in runs], float),
            "grad_norm": each([r.grad_norm for r in runs], float),
            "noise": each([r.noise for r in runs], float),
            "detail": each([r.detail for r in runs]),
        }
    )
    return frame[RUN_COLUMNS]


def _logit_gap_frame(problem: Problem, specs: list[MethodSpec], taus: list[float]) -> pd.DataFrame:
    """`Frames.logit_gap`: TV between the population optima of DPO (paper Eq. 5 on `W = mu mu^T P`) and of
    ΨPO with `Psi = logit` (Eq. 7), per tau, in every context whose preferences are not Bradley–Terry.

    Under Bradley–Terry the two coincide (the paper's Prop. 1); elsewhere they need not, and this says by
    how much. Computed only when DPO, RLHF or ΨPO-logit is among `specs`, and for contexts where `mu`
    puts mass on at least two actions (population DPO needs a comparison).
    """
    import pandas as pd

    relevant = any(
        s.method in ("dpo", "rlhf") or (s.method == "psipo" and (s.option("psi") or "logit") == "logit")
        for s in specs
    )
    picked = [
        c for c, ctx in enumerate(problem.contexts)
        if ctx.has_model and ctx.model != "rewards" and np.count_nonzero(ctx.mu) >= 2
    ]
    if not relevant or not picked:
        return _empty(LOGIT_GAP_COLUMNS)
    sub = problem.with_contexts(tuple(problem.contexts[c] for c in picked))
    pair = [method_spec("dpo"), method_spec("psipo", psi="logit")]
    solved = {(r.method, r.tau, r.context): r for r in solve_exact(sub, pair, list(taus), POPULATION)}
    records = []
    for tau in taus:
        for i, ctx in enumerate(sub.contexts):
            dpo, logit = solved[("dpo", tau, i)], solved[("psipo", tau, i)]
            records.append(
                (tau, ctx.name, ctx.model, dpo.status, logit.status, total_variation(dpo.policy, logit.policy))
            )
    return pd.DataFrame.from_records(records, columns=LOGIT_GAP_COLUMNS)


def social_choice_frame(problem: Problem) -> pd.DataFrame:
    """`Frames.social_choice`: the rankings of RLHF/DPO, IPO and Nash in every non-transitive context
    (`psipo_cli.methods.nash.social.social_choice`), on the context's preference model, else on `P_hat` from
    its recorded data when every pair of compared actions was observed (as ΨPO and `nash` require)."""
    import pandas as pd

    from psipo_cli.methods.nash.social import social_choice
    from psipo_cli.methods.population.psipo import empirical_preferences
    from psipo_cli.problem import realise

    parts = []
    realised = None
    for c, ctx in enumerate(problem.contexts):
        P, mu = ctx.preferences, ctx.mu
        if P is None:
            if problem.is_sampled:
                continue
            realised = realised or realise(problem, 0)
            try:
                P, mu = empirical_preferences(np.asarray(realised.contexts[c].wins))
            except InputError:
                continue
        found = social_choice(P, mu, ctx.pi_ref)
        if found is None:
            continue
        names = [problem.actions[i] for i in found.actions]
        cycle = "; ".join("{" + ", ".join(names[i] for i in group) + "}" for group in found.cycles)
        bt = found.bradley_terry if found.bradley_terry is not None else np.full(len(names), np.nan)
        frame = pd.DataFrame({
            "context": ctx.name, "action": names, "cycle": cycle,
            "condorcet": [int(i == found.condorcet) for i in range(len(names))], "bradley_terry": bt,
            "borda": found.borda,
            "lottery": found.lottery,
        })
        for score in ("bradley_terry", "borda", "lottery"):
            # Rank 1 is the best; equal scores (to 1e-12) share the better rank.
            frame[f"{score}_rank"] = frame[score].round(12).rank(ascending=False, method="min").astype("Int64")
        parts.append(frame[SOCIAL_CHOICE_COLUMNS])
    return pd.concat(parts, ignore_index=True) if parts else _empty(SOCIAL_CHOICE_COLUMNS)


def _curves_frame(problem: Problem, runs: list[RunResult], steps: np.ndarray | None) -> pd.DataFrame:
    import pandas as pd

    if steps is None:
        return pd.DataFrame(columns=CURVE_COLUMNS)
    parts = []
    for (label, tau, solver, context), members in group_runs(runs).items():
        if solver != GRADIENT:
            continue
        mean, lo, hi = t_interval(np.stack([r.curve for r in members]))  # (T, n) each
        T, n = mean.shape
        parts.append(
            pd.DataFrame(
                {
                    "step": np.repeat(steps, n),
                    "method": label,
                    "tau": tau,
                    "context": problem.contexts[context].name,
                    "action": np.tile(np.array(problem.actions, dtype=object), T),
                    "mean": mean.ravel(),
                    "lo": lo.ravel(),
                    "hi": hi.ravel(),
                }
            )
        )
    if not parts:
        return pd.DataFrame(columns=CURVE_COLUMNS)
    return pd.concat(parts, ignore_index=True)[CURVE_COLUMNS]


def _gap_curves_frame(problem: Problem, runs: list[RunResult], steps: np.ndarray | None) -> pd.DataFrame:
    """`Frames.gap_curves`: `duality_gap` of every recorded policy of every gradient run whose context has a
    preference model, then the seed mean and 95% interval per step."""
    import pandas as pd

    from psipo_cli.methods.game import duality_gap

    parts = []
    for (label, tau, solver, context), members in group_runs(runs).items():
        ctx = problem.contexts[context]
        if solver != GRADIENT or steps is None or ctx.preferences is None:
            continue
        gaps = np.array([[duality_gap(pi, ctx.preferences, ctx.pi_ref, tau) for pi in r.curve] for r in members])
        mean, lo, hi = t_interval(gaps)
        parts.append(pd.DataFrame({"step": steps, "method": label, "tau": tau, "context": ctx.name, "mean": mean,
                                   "lo": lo, "hi": hi}))
    if not parts:
        return _empty(GAP_CURVE_COLUMNS)
    return pd.concat(parts, ignore_index=True)[GAP_CURVE_COLUMNS]




def tau_grid(
    problem: Problem, specs: list[MethodSpec], taus: Sequence[float], objective: str | None, datasets: int = 1,
    points: int = 41, settings: GradientSettings | None = None,
) -> pd.DataFrame:
    """Exact policies, KL and win rate on a dense log grid around `taus` (for `policy_vs_tau.png` and
    `frontier.png`): `points` values from `min(taus) / 4` to `max(taus) * 4`, plus the `taus` themselves.
    `settings`: the run's gradient settings, which an exact answer may depend on (`Method.settings`)."""
    from dataclasses import replace

    from psipo_cli.config.settings import GradientSettings

    lo, hi = min(taus) / 4.0, max(taus) * 4.0
    grid = sorted(set(np.geomspace(lo, hi, points).tolist()) | set(taus))
    settings = replace(settings if settings is not None else GradientSettings(), seeds=datasets)
    frames = solve(problem, specs, grid, solver=EXACT, objective=objective, settings=settings)
    merged = frames.policy.merge(
        frames.metrics[["method", "tau", "context", "kl", "win_rate_ref", "status"]], on=["method", "tau", "context"]
    )
    return merged[TAU_GRID_COLUMNS].reset_index(drop=True)
