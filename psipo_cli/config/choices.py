"""The closed sets of names psipo accepts, each listed once (flags, experiment files, grids, the API)."""

from __future__ import annotations

#: `--solver`: the exact solver, the gradient engine, or both.
SOLVERS = ("exact", "gradient", "both")
#: `--objective`: the dataset objective, the population one, or the first the problem supports.
OBJECTIVES = ("auto", "dataset", "population")
#: `--optimizer`: `md` is the online methods' own mirror-descent update (`psipo_cli.methods.online`).
OPTIMIZERS = ("adam", "sgd", "md")
#: `--lr-schedule` (`psipo_cli.solvers.schedules`).
SCHEDULES = ("constant", "inverse-time", "cosine", "exponential")
#: `--average`: report the last iterate, or a (Polyak or exponential) average of the iterates.
AVERAGES = ("none", "polyak", "ema")
#: `--gpo-f`: the convex (and Savage's non-convex) functions of GPO (arXiv 2402.05749, Table 1).
GPO_FUNCTIONS = ("logistic", "exponential", "squared", "truncated-quadratic", "savage", "hinge")
#: `--f-divergence` (fdpo): TRL's `f_divergence_type` scores other than the reverse KL (which is DPO).
F_DIVERGENCES = ("forward-kl", "js", "alpha")
#: `--format`.
FORMATS = ("table", "csv", "json", "path")
#: `--table` (with `--format csv`): attributes of `psipo_cli.api.Frames`.
TABLES = ("policy", "metrics", "summary", "curves")
#: `--data-format`: how a preference dataset given as the problem is read (`psipo_cli.problem.datasets`):
#: told from its columns, or forced to one layout.
DATA_FORMATS = ("auto", "paired", "scored", "battles")
#: `psipo sweep --executor`: local processes, or a Dask cluster (`psipo_cli.sweep.executors`).
EXECUTORS = ("local", "dask")
#: `psipo sweep --format` and `psipo merge --format`: what stdout gets (the directory, or a JSON summary).
SWEEP_FORMATS = ("path", "json")


def metavar(values: tuple[str, ...]) -> str:
    """A closed set as `--help` shows it, as Click does for its choices: `[exact|gradient|both]`."""
    return "[" + "|".join(values) + "]"
