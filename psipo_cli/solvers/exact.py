"""Exact solver dispatch: every method, tau, dataset and context, solved independently."""

from __future__ import annotations

from psipo_cli.config.settings import GradientSettings
from psipo_cli.methods import Method, get_method
from psipo_cli.methods.solution import describe
from psipo_cli.problem import Problem, realise
from psipo_cli.solvers.inputs import POPULATION, method_inputs
from psipo_cli.solvers.runs import EXACT, MethodSpec, RunResult, check_options


def solve_exact(
    problem: Problem, specs: list[MethodSpec], taus: list[float], objective: str, datasets: int = 1,
    settings: GradientSettings | None = None,
) -> list[RunResult]:
    """Exact solutions for each spec × tau × dataset × context.

    A problem whose data are sampled is solved on `datasets` draws (dataset `k` is the one gradient seed `k`
    trains on); any other problem has one dataset, so one run per method, tau and context. Each run's detail
    names the actions it is about (`describe`) and carries the implied reward (`Solution.reward`).

    A method whose exact answer depends on gradient settings (`Method.settings`: Nash-MD's step) reads them
    from `settings` (default `GradientSettings()`), as the gradient engine does.
    """
    for spec in specs:
        check_options(spec)
    count = datasets if (problem.is_sampled and objective == "dataset") else 1
    results = []
    for k in range(count):
        realised = realise(problem, k)
        for spec in specs:
            method = get_method(spec.method)
            options = method.option_values(dict(spec.options))  # each family reads those it needs
            options.update(setting_values(method, settings))
            for c, ctx in enumerate(realised.contexts):
                inputs = method_inputs(ctx, method, objective, problem.actions)
                solutions = method.family.solve_exact(method, inputs, taus, options)
                twin = method.twin if objective == POPULATION else ""
                for tau, sol in zip(taus, solutions, strict=True):
                    detail = describe(sol, problem.actions, twin)
                    results.append(
                        RunResult(
                            spec.label, spec.method, tau, EXACT, k, c, sol.policy, sol.status, sol.loss, detail,
                            reward=sol.reward,
                        )
                    )
    return results



def setting_values(method: Method, settings: GradientSettings | None) -> dict[str, object]:
    """The gradient settings `method.settings` names, from `settings` (default `GradientSettings()`)."""
    if not method.settings:
        return {}
    settings = settings if settings is not None else GradientSettings()
    return {name: getattr(settings, name) for name in method.settings}
