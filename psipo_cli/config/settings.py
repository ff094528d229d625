"""Every setting of psipo, declared once: name, type, default, range or choices, help, and where it applies.

`SETTINGS` is the one table. Everything else is derived from it:

- `GradientSettings` (the gradient engine's frozen settings) has one field per `GRADIENT` setting, with its
  default, validated by the declarations at construction;
- the method options (`rm_l2`, `rm_steps`, `psi`, `eps`) are validated by `check_option` from the same
  declarations; which methods take one is the registry's `Method.options`, not repeated here;
- the flags of `psipo run` and `psipo compare` and their help texts (`psipo_cli.cli.options`), the keys of
  experiment files (`psipo_cli.solvers.experiment`), the keys and axes of sweep grids (`psipo_cli.sweep.grid`), the
  keywords of `psipo_cli.solve` (`psipo_cli.api`), and the option table `docs/options.md`
  (`options_markdown`).

Adding a setting is one line in `SETTINGS` (plus its use in the solver).
"""

from __future__ import annotations

from dataclasses import dataclass, field, make_dataclass
from typing import Any

from psipo_cli.config import choices, validate
from psipo_cli.config.validate import FRACTION, MAX_STEPS, NON_NEGATIVE, POSITIVE, PROBABILITY_FRACTION, Interval
from psipo_cli.errors import InputError

#: Where a setting applies. `GRADIENT`: a field of `GradientSettings`. `METHOD`: a method option (a key of a
#: method table, `Method.options`). `RUN`: chosen per run (`solver`, `objective`). A setting can be both a
#: gradient setting and a method option (`rm_steps`, `eps`: the setting is the default of the option).
#: `DATA`: how a preference dataset given as the problem is read (`--data-format`, `--skip-bad-rows`; flags
#: of `run`, `compare` and `problem show|validate`, and experiment-file keys).
GRADIENT = "gradient"
METHOD = "method"
RUN = "run"
DATA = "data"


@dataclass(frozen=True)
class Setting:
    """The declaration of one setting.

    Attributes
    ----------
    name : str
        Its name in Python, experiment files and sweep grids (`batch_size`); the flag is `--batch-size`.
    type : {"int", "real", "choice", "text", "flag"}
        A `flag` is a switch (`--skip-bad-rows`): true when given, its default false.
    default : Any
        The default (`None`: "not set"; see `shown`).
    help : str
        One sentence for `--help` and `docs/options.md`, without the default.
    roles : tuple of str
        `GRADIENT`, `METHOD` and/or `RUN`.
    choices : tuple of str
        The allowed values of a `choice`.
    minimum, maximum : int
        Bounds of an `int` (`minimum` 1: positive; 0: non-negative).
    interval : Interval
        Range of a `real`.
    shown : str
        How `--help` shows the default when it is not the value itself (`= --steps`).
    flag : bool
        Whether `run`/`compare` have a flag (and experiment files a key) for it; the status rule's
        tolerances and Adam's constants are Python-only.
    placeholder : str
        The value's placeholder in `--help` when its type does not say it (`NAME|MODULE:FUNCTION`).
    identity : bool
        Sweep grids record it in their identity even when the grid does not give it (the settings older
        than schedules and averaging, so that the digest of an existing grid does not change).
    """

    name: str
    type: str
    default: Any
    help: str
    roles: tuple[str, ...] = (GRADIENT,)
    choices: tuple[str, ...] = ()
    minimum: int = 1
    maximum: int | None = None
    interval: Interval = POSITIVE
    shown: str = ""
    flag: bool = True
    identity: bool = False
    placeholder: str = ""

    @property
    def option(self) -> str:
        """The command-line flag, `--batch-size`; also the key of this setting's errors from the solvers."""
        return "--" + self.name.replace("_", "-")

    @property
    def python_type(self) -> type:
        return {"int": int, "real": float, "flag": bool}.get(self.type, str)

    def default_text(self) -> str:
        if self.type == "flag":
            return self.shown or ("on" if self.default else "off")
        return self.shown or ("none" if self.default is None else f"{self.default:g}" if isinstance(
            self.default, float) else str(self.default))

    def help_text(self, choices: bool = True) -> str:
        """The help line: choices (unless the placeholder shows them: `choices=False`), help, default."""
        head = " | ".join(self.choices) + (": " if self.help else "") if self.choices and choices else ""
        return f"{head}{self.help} [{self.default_text()}]." if self.help or head else f"[{self.default_text()}]."

    @property
    def metavar(self) -> str:
        """The value's placeholder in `--help`: the choices as Click shows them (`[exact|gradient|both]`),
        or what the value is (`INTEGER`, `FLOAT`, a declared `placeholder`), not a Python type."""
        if self.choices:
            return choices.metavar(self.choices)
        return self.placeholder or {"int": "INTEGER", "real": "FLOAT"}.get(self.type, "TEXT")

    def check(self, value: Any, key: str | None = None) -> Any:
        """`value` validated (None passes where the default is None); `InputError` keyed `key` (default: the
        flag) with the reason of `psipo_cli.config.validate`."""
        key = key or self.option
        if value is None and self.default is None:
            return None
        if self.type == "int":
            return validate.integer(key, value, self.minimum, self.maximum)
        if self.type == "real":
            return validate.real(key, value, self.interval)
        if self.type == "choice":
            return validate.choice(key, value, self.choices)
        if self.type == "flag":
            if not isinstance(value, bool):
                raise InputError(key, value, "must be true or false")
            return value
        if not isinstance(value, str) or not value:
            raise InputError(key, value, f"must be {self.help.rstrip('.').lower()}")
        return value

    def parse(self, text: str, key: str | None = None) -> Any:
        """The value a command-line word gives (`"18000"` -> 18000), validated by `check`: a word that is
        no number of the declared type is refused with the same reason as any other invalid value."""
        if self.type in ("int", "real"):
            try:
                number: Any = int(text) if self.type == "int" else float(text)
            except ValueError:
                number = text  # `check` refuses it, saying what the value must be
            return self.check(number, key)
        return self.check(text, key)

    def normalise(self, value: Any) -> Any:
        """A valid value as stored in a sweep grid: reals as floats (`lr = 1` and `lr = 1.0` are one
        setting, so that a grid's identity does not depend on how a number is spelled)."""
        return float(value) if self.type == "real" and validate.is_integer(value) else value


def _steps(name: str, default: int | None, help: str, **kw: Any) -> Setting:
    return Setting(name, "int", default, help, maximum=MAX_STEPS, **kw)


SETTINGS: tuple[Setting, ...] = (
    _steps("steps", 18000, "Optimiser steps (of the policy stage, for RLHF)", identity=True),
    Setting("lr", "real", 0.01, "Learning rate (Adam and SGD; the step eta of --optimizer md)", identity=True),
    Setting("batch_size", "int", 9, "Comparisons per minibatch, drawn with replacement with probability "
            "W[w, l] / sum W (online methods: pairs from the current policy or its mixture, labelled by P); "
            "0 = full batch (the exact expected gradient)", minimum=0, identity=True),
    Setting("optimizer", "choice", "adam", "", choices=choices.OPTIMIZERS, identity=True),
    Setting("seeds", "int", 10, "Gradient runs per method and tau (and datasets, when the problem samples "
            "them)"),
    Setting("seed", "int", 0, "Root seed of the minibatch streams SeedSequence([seed, k, c])", minimum=0,
            identity=True),
    Setting("b1", "real", 0.9, "Adam's first-moment decay rate", interval=FRACTION, flag=False),
    Setting("b2", "real", 0.999, "Adam's second-moment decay rate", interval=FRACTION, flag=False),
    Setting("adam_eps", "real", 1e-8, "Adam's eps, added to sqrt(v_hat)", flag=False),
    _steps("rm_steps", None, "rlhf: reward-model steps (early stopping)", roles=(GRADIENT, METHOD),
           shown="= --steps", identity=True),
    Setting("eps", "real", 1e-6, "psipo gradient: clip P to [eps, 1-eps] where Psi(P) is infinite",
            roles=(GRADIENT, METHOD), interval=Interval(0.0, 0.5), identity=True),
    Setting("records", "int", 60, "Points of the log-spaced step grid of the curves", flag=False),
    Setting("ztol", "real", 9.0, "Status rule 1: a window mean that moved by more than ztol jitters is "
            "still moving", flag=False),
    Setting("xtol", "real", 1e-4, "Status rule 1: moves below xtol in reward units never count",
            flag=False),
    Setting("gtol", "real", 1e-6, "Status rule 2: largest inf-norm of the exact gradient of a "
            "deterministic stage", flag=False),
    Setting("lr_schedule", "choice", "constant", "", choices=choices.SCHEDULES),
    Setting("lr_final", "real", 0.01, "Decaying schedules: final lr / --lr", interval=PROBABILITY_FRACTION),
    Setting("average", "choice", "none", "report the averaged iterate", choices=choices.AVERAGES),
    Setting("average_start", "real", 0.5, "Average the steps after this fraction of the run",
            interval=FRACTION),
    Setting("ema_decay", "real", 0.999, "ema: weight decay per step", interval=FRACTION),
    Setting("rm_l2", "real", 0.0, "rlhf: ridge on the reward model", roles=(METHOD,), interval=NON_NEGATIVE),
    Setting("mixture", "real", None, "online methods: the opponent is the geometric mixture pi^(1-b) pi_ref^b "
            "with this b (nash-md: lr * tau; nash-md-pg: 0.5; ipo-md: 0.125)", roles=(METHOD,),
            interval=Interval(0.0, 1.0, lo_open=False, hi_open=False), shown="per method"),
    Setting("kto_desirable_weight", "real", 1.0, "kto: weight lambda_D of the desirable (winning) examples",
            roles=(METHOD,)),
    Setting("kto_undesirable_weight", "real", 1.0, "kto: weight lambda_U of the undesirable (losing) examples",
            roles=(METHOD,)),
    Setting("cpo_alpha", "real", 1.0, "cpo: weight of the winner's negative log-likelihood", roles=(METHOD,),
            interval=NON_NEGATIVE),
    Setting("orpo_lambda", "real", 0.1, "orpo: weight lambda of the odds-ratio term (TRL's ORPO beta)",
            roles=(METHOD,), interval=NON_NEGATIVE),
    Setting("psi", "text", "logit", "A name (identity, logit, log) or module:function", roles=(METHOD,),
            placeholder="NAME|MODULE:FUNCTION"),
    Setting("label_smoothing", "real", 0.1, "cdpo, rdpo, exo: the label-flip rate eps of cDPO, rDPO and EXO "
            "(TRL's label_smoothing; exo: 1e-3 by default, > 0)", roles=(METHOD,),
            interval=Interval(0.0, 0.5, lo_open=False)),
    Setting("gpo_f", "choice", "logistic", "gpo: the function f of the loss f(tau h)", roles=(METHOD,),
            choices=choices.GPO_FUNCTIONS),
    Setting("discopop_tau", "real", 0.05, "discopop: temperature of the log-ratio modulation (TRL's "
            "discopop_tau)", roles=(METHOD,)),
    Setting("gamma", "real", 0.5, "simpo: target reward margin (SimPO's simpo_gamma)", roles=(METHOD,),
            interval=NON_NEGATIVE),
    Setting("r_max", "real", None, "chipo: clip of the potential difference to [-2 r_max, 2 r_max]",
            roles=(METHOD,), shown="no clip"),
    Setting("f_divergence", "choice", "forward-kl", "fdpo: TRL's f_divergence_type score", roles=(METHOD,),
            choices=choices.F_DIVERGENCES),
    Setting("f_alpha", "real", 0.5, "fdpo --f-divergence alpha: TRL's f_alpha_divergence_coef", roles=(METHOD,)),
    Setting("solver", "choice", "both", "", roles=(RUN,), choices=choices.SOLVERS),
    Setting("objective", "choice", "auto", "", roles=(RUN,), choices=choices.OBJECTIVES,
            shown="auto: data if the problem has any"),
    Setting("data_format", "choice", "auto", "Layout of a preference dataset given as the problem (auto: "
            "from its columns, or the problem file's dataset.format)", roles=(DATA,), choices=choices.DATA_FORMATS),
    Setting("skip_bad_rows", "flag", False, "Drop a dataset's malformed rows (counted in the report and "
            "config.json) instead of stopping at the first", roles=(DATA,)),
)
BY_NAME: dict[str, Setting] = {s.name: s for s in SETTINGS}


def setting(name: str) -> Setting:
    """The declaration of `name` (KeyError for an undeclared name: a programming error)."""
    return BY_NAME[name]


def having(role: str, flag: bool | None = None) -> tuple[Setting, ...]:
    """The settings with `role`, in declaration order (with `flag`: only those with or without a flag)."""
    return tuple(s for s in SETTINGS if role in s.roles and (flag is None or s.flag == flag))


def check_option(key: str, value: Any) -> Any:
    """A method option's value, validated from its declaration (errors keyed by its flag, `--rm-l2`)."""
    return setting(key).check(value)


def _post_init(self: Any) -> None:
    for s in having(GRADIENT):
        s.check(getattr(self, s.name))


def _docstring() -> str:
    lines = [
        "Settings of the gradient engine; the defaults are the paper's §5.4 values (arXiv 2310.12036).",
        "",
        "Declared in `psipo_cli.config.settings.SETTINGS` (one line each) and validated at construction:",
        "an invalid value is an `InputError` keyed by the setting's flag (`--lr`).",
        "",
        "Attributes",
        "----------",
    ]
    for s in having(GRADIENT):
        kind = {"int": "int", "real": "float", "choice": "str", "text": "str"}[s.type]
        lines.append(f"{s.name} : {kind}{' or None' if s.default is None else ''}")
        lines.append(f"    {s.help_text()}")
    return "\n".join(lines) + "\n"


def _annotation(s: Setting) -> str:
    name = s.python_type.__name__
    return f"{name} | None" if s.default is None else name


GradientSettings = make_dataclass(
    "GradientSettings",
    [(s.name, _annotation(s), field(default=s.default)) for s in having(GRADIENT)],
    namespace={"__post_init__": _post_init, "__doc__": _docstring(), "__module__": __name__},
    frozen=True,
)


def options_markdown() -> str:
    """`docs/options.md`: the table of every flag `run` and `compare` share that a declaration gives."""
    rows = ["| flag | key | default | values | applies to | meaning |", "|---|---|---|---|---|---|"]
    for s in SETTINGS:
        if not s.flag:
            continue
        values = " \\| ".join(s.choices) if s.choices else _range_text(s)
        where = {(METHOD,): "method option", (RUN,): "run", (DATA,): "dataset reading"}.get(s.roles) or (
            "gradient setting" + (" / method option" if METHOD in s.roles else ""))
        meaning = s.help.replace("|", "\\|") or "—"
        rows.append(f"| `{s.option}` | `{s.name}` | `{s.default_text()}` | {values} | {where} | {meaning} |")
    head = (
        "# Options of `psipo run` and `psipo compare`\n\n"
        "Generated from `psipo_cli/config/settings.py` by `python -m psipo_cli.config.settings` "
        "(a test checks that it is up to date). Every key works as a flag, an experiment-file key, a sweep-grid "
        "key (a list sweeps it) and a keyword of `psipo_cli.solve`, but the dataset-reading ones, which are "
        "flags (of `problem show` and `problem validate` too) and experiment-file keys. Method options apply "
        "to the methods that take them.\n\n"
    )
    return head + "\n".join(rows) + "\n"


def _range_text(s: Setting) -> str:
    if s.type == "int":
        low = "integer >= " + str(s.minimum)
        return low + (", <= 2**53" if s.maximum == MAX_STEPS else "")
    if s.type == "real":
        return s.interval.reason().removeprefix("must be a ").removeprefix("must lie in ")
    return "switch" if s.type == "flag" else "text"


if __name__ == "__main__":
    import sys

    sys.stdout.write(options_markdown())

__all__ = ["DATA", "GRADIENT", "METHOD", "RUN", "SETTINGS", "GradientSettings", "Setting", "check_option", "having",
           "setting"]
