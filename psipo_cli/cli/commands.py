"""The commands of `psipo`: run, compare, problem, plot."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from psipo_cli.cli import app
from psipo_cli.errors import InputError

FORMATS = ("table", "csv", "json", "path")

Tau = Annotated[
    list[float] | None,
    typer.Option("--tau", help="KL coefficient; repeat for several (default 0.1 0.5 1 2).", show_default=False),
]
Beta = Annotated[list[float] | None, typer.Option("--beta", help="Alias of --tau (DPO's beta is tau).")]
ProblemOpt = Annotated[str | None, typer.Option("--problem", "-p", help="Preset name or TOML file [paper-d1].")]
Solver = Annotated[str | None, typer.Option(help="exact | gradient | both [both].")]
Objective = Annotated[
    str | None, typer.Option(help="auto | dataset | population [auto: data if the problem has any].")
]
Seeds = Annotated[int | None, typer.Option(help="Gradient runs per method and tau [10].")]
Steps = Annotated[int | None, typer.Option(help="Optimiser steps [18000].")]
Lr = Annotated[float | None, typer.Option(help="Learning rate [0.01].")]
BatchSize = Annotated[int | None, typer.Option("--batch-size", help="Minibatch size, 0 = full batch [9].")]
Optimizer = Annotated[str | None, typer.Option(help="adam | sgd [adam].")]
Seed = Annotated[int | None, typer.Option(help="Root seed [0].")]
RmL2 = Annotated[float | None, typer.Option("--rm-l2", help="rlhf: ridge on the reward model [0].")]
RmSteps = Annotated[int | None, typer.Option("--rm-steps", help="rlhf: reward-model steps [= --steps].")]
Psi = Annotated[str | None, typer.Option(help="psipo: identity | logit | log | module:function [logit].")]
Eps = Annotated[float | None, typer.Option(help="psipo gradient: clip P to [eps, 1-eps] [1e-6].")]
LrSchedule = Annotated[
    str | None, typer.Option("--lr-schedule", help="constant | inverse-time | cosine | exponential [constant].")
]
LrFinal = Annotated[float | None, typer.Option("--lr-final", help="Decaying schedules: final lr / --lr [0.01].")]
Average = Annotated[str | None, typer.Option(help="none | polyak | ema: report the averaged iterate [none].")]
AverageStart = Annotated[
    float | None, typer.Option("--average-start", help="Average the steps after this fraction of the run [0.5].")
]
EmaDecay = Annotated[float | None, typer.Option("--ema-decay", help="ema: weight decay per step [0.999].")]
Out = Annotated[Path, typer.Option(help="Root of the run directories.")]
Name = Annotated[str | None, typer.Option(help="Run name (directory suffix) [problem name].")]
NoSave = Annotated[bool, typer.Option("--no-save", help="Write no run directory.")]
NoPlots = Annotated[bool, typer.Option("--no-plots", help="Write no figures.")]
Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="No progress or messages on stderr.")]
Format = Annotated[str, typer.Option("--format", "-f", help="table | csv | json | path.")]
NoHeader = Annotated[bool, typer.Option("--no-header", help="csv: omit the header (to concatenate calls).")]
TableOpt = Annotated[
    str, typer.Option("--table", help="csv: which table to print: policy | metrics | summary | curves.")
]
LogProb = Annotated[bool, typer.Option("--log-prob", help="Figures: log probability axis (small pi readable).")]


def _check_choice(key: str, value: str | None, choices: tuple[str, ...]) -> None:
    if value is not None and value not in choices:
        raise InputError(key, value, f"must be one of {', '.join(choices)}")


@app.command()
def run(
    method: Annotated[str, typer.Argument(help="rlhf | dpo | ipo | psipo")],
    tau: Tau = None,
    beta: Beta = None,
    problem: ProblemOpt = None,
    solver: Solver = None,
    objective: Objective = None,
    rm_l2: RmL2 = None,
    rm_steps: RmSteps = None,
    psi: Psi = None,
    eps: Eps = None,
    seeds: Seeds = None,
    steps: Steps = None,
    lr: Lr = None,
    batch_size: BatchSize = None,
    optimizer: Optimizer = None,
    seed: Seed = None,
    lr_schedule: LrSchedule = None,
    lr_final: LrFinal = None,
    average: Average = None,
    average_start: AverageStart = None,
    ema_decay: EmaDecay = None,
    out: Out = Path("outputs"),
    name: Name = None,
    no_save: NoSave = False,
    no_plots: NoPlots = False,
    quiet: Quiet = False,
    fmt: Format = "table",
    no_header: NoHeader = False,
    table: TableOpt = "policy",
    log_prob: LogProb = False,
) -> None:
    """Solve one method on one problem: exact and/or by gradient descent."""
    from psipo_cli.cli.config import method_entry

    options = {"rm_l2": rm_l2, "rm_steps": rm_steps, "psi": psi, "eps": eps}
    entry = method_entry(method, "method")
    from psipo_cli.methods import get_method

    accepted = get_method(method).options
    for key, value in options.items():
        if value is not None and key not in accepted:
            raise InputError(f"--{key.replace('_', '-')}", value, f"not an option of {method}")
        if value is not None:
            entry[key] = value
    _execute("run", {}, {"methods": [entry]}, {k: v for k, v in locals().items() if k in COMMON})


@app.command()
def compare(
    config: Annotated[Path | None, typer.Argument(help="Experiment file (experiments/*.toml).")] = None,
    methods: Annotated[str | None, typer.Option(help="Comma-separated methods [rlhf,dpo,ipo].")] = None,
    tau: Tau = None,
    beta: Beta = None,
    problem: ProblemOpt = None,
    solver: Solver = None,
    objective: Objective = None,
    seeds: Seeds = None,
    steps: Steps = None,
    lr: Lr = None,
    batch_size: BatchSize = None,
    optimizer: Optimizer = None,
    seed: Seed = None,
    rm_steps: RmSteps = None,
    eps: Eps = None,
    lr_schedule: LrSchedule = None,
    lr_final: LrFinal = None,
    average: Average = None,
    average_start: AverageStart = None,
    ema_decay: EmaDecay = None,
    out: Out = Path("outputs"),
    name: Name = None,
    no_save: NoSave = False,
    no_plots: NoPlots = False,
    quiet: Quiet = False,
    fmt: Format = "table",
    no_header: NoHeader = False,
    table: TableOpt = "policy",
    log_prob: LogProb = False,
) -> None:
    """Compare methods (default rlhf, dpo, ipo) on one problem over a tau grid; flags override CONFIG."""
    from psipo_cli.cli.config import load_experiment, method_entry

    experiment = load_experiment(config) if config is not None else {}
    flags: dict[str, Any] = {"rm_steps": rm_steps, "eps": eps}
    if methods is not None:
        flags["methods"] = [method_entry(m.strip(), "--methods") for m in methods.split(",") if m.strip()]
        if not flags["methods"]:
            raise InputError("--methods", methods, "give at least one method")
    elif "methods" not in experiment:
        flags["methods"] = [{"method": m} for m in ("rlhf", "dpo", "ipo")]
    _execute("compare", experiment, flags, {k: v for k, v in locals().items() if k in COMMON})


# The gradient engine's schedule and averaging settings (GradientSettings fields of the same names).
SCHEDULE_KEYS = ("lr_schedule", "lr_final", "average", "average_start", "ema_decay")
# The options `run` and `compare` share, handed on by name.
COMMON = (
    "tau", "beta", "problem", "solver", "objective", "seeds", "steps", "lr", "batch_size", "optimizer", "seed",
    "out", "name", "no_save", "no_plots", "quiet", "fmt", "no_header", "table", "log_prob", *SCHEDULE_KEYS,
)


def _execute(command: str, experiment: dict[str, Any], flags: dict[str, Any], cli: dict[str, Any]) -> None:
    from psipo_cli.cli.config import resolve, tau_values
    from psipo_cli.cli.pipeline import execute

    _check_choice("--format", cli["fmt"], FORMATS)
    _check_choice("--solver", cli["solver"], ("exact", "gradient", "both"))
    _check_choice("--objective", cli["objective"], ("auto", "dataset", "population"))
    _check_choice("--optimizer", cli["optimizer"], ("adam", "sgd"))
    taus = (cli["tau"] or []) + (cli["beta"] or [])
    if taus:
        flags["tau"] = tau_values(taus)
    keys = ("problem", "solver", "objective", "seeds", "steps", "lr", "batch_size", "optimizer", "seed", "name")
    for key in (*keys, *SCHEDULE_KEYS):
        flags[key] = cli[key]
    config = resolve(command, experiment, flags)
    execute(
        config,
        out=cli["out"],
        save=not cli["no_save"],
        plots=not cli["no_plots"],
        quiet=cli["quiet"],
        fmt=cli["fmt"],
        header=not cli["no_header"],
        table=cli["table"],
        log_prob=cli["log_prob"],
    )


problem_app = typer.Typer(help="List, show and validate problems.", no_args_is_help=True)
app.add_typer(problem_app, name="problem")


@problem_app.command("list")
def problem_list() -> None:
    """The built-in problems."""
    from psipo_cli.problem import PRESETS

    for name, table in PRESETS.items():
        print(f"{name}\t{table['description']}")


@problem_app.command("show")
def problem_show(spec: Annotated[str, typer.Argument(help="Preset name or TOML file.")]) -> None:
    """Print a problem: actions, policies, preference model and win counts per context."""
    from psipo_cli.cli.pipeline import describe_problem
    from psipo_cli.problem import get_problem, realise

    print(describe_problem(realise(get_problem(spec), 0)))


@problem_app.command("validate")
def problem_validate(path: Annotated[Path, typer.Argument(help="Problem TOML file.")]) -> None:
    """Check a problem file: exit 0 and one line if valid, exit 2 and the first error otherwise."""
    from psipo_cli.problem import load_problem

    problem = load_problem(path)
    print(f"{path}: valid ({problem.n_actions} actions, {len(problem.contexts)} context(s))", file=sys.stderr)


@app.command()
def plot(
    run_dir: Annotated[Path, typer.Argument(help="A run directory (run, compare) or a sweep directory.")],
    log_prob: LogProb = False,
) -> None:
    """Re-render every figure of a run or sweep directory from its saved CSVs alone."""
    from psipo_cli.outputs.figures import render_figures

    if (run_dir / "results.csv").is_file() and not (run_dir / "policy.csv").is_file():
        from psipo_cli.sweep.figures import render_figures as render_sweep

        if log_prob:
            raise InputError("--log-prob", True, "sweep figures have no probability axis")
        paths = render_sweep(run_dir / "results.csv", run_dir / "figures")
    elif (run_dir / "policy.csv").is_file():
        paths = render_figures(run_dir, log_prob=log_prob)
    else:
        raise InputError("RUN_DIR", str(run_dir), "not a run directory (no policy.csv) nor a sweep directory "
                         "(no results.csv)")
    for path in paths:
        print(f"wrote {path}", file=sys.stderr)


@app.command()
def version() -> None:
    """Print the psipo version."""
    from psipo_cli import __version__

    print(__version__)
