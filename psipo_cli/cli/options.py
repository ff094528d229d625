"""The options `run` and `compare` share: the settings' flags, generated from their declarations
(`psipo_cli.config.settings.SETTINGS`), and the output options, written here once.

Typer reads a command's parameters from its signature; `with_settings` gives a command one keyword
parameter per declared setting (type, flag and help with its default from the declaration) and hands the
command the flags the user gave, validated, as one `dict` keyed by setting name.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import typer

from psipo_cli.config.choices import FORMATS, TABLES, metavar
from psipo_cli.config.settings import Setting
from psipo_cli.config.validate import choice

Tau = Annotated[
    list[str] | None,
    typer.Option("--tau", help="KL coefficient; several as 0.1,1 or by repeating the flag (default 0.1,0.5,1,2).",
                 show_default=False, metavar="TAU[,TAU...]"),
]
Beta = Annotated[list[str] | None, typer.Option("--beta", help="Alias of --tau (DPO's beta is tau).",
                                                metavar="BETA[,BETA...]")]
ProblemOpt = Annotated[str | None, typer.Option("--problem", "-p", help="Preset name or TOML file [paper-d1].",
                                                metavar="PRESET|FILE")]
Out = Annotated[Path, typer.Option(help="Root of the run directories.", metavar="DIR")]
Name = Annotated[str | None, typer.Option(help="Run name (directory suffix) [problem name].", metavar="NAME")]
NoSave = Annotated[bool, typer.Option("--no-save", help="Write no run directory.")]
NoPlots = Annotated[bool, typer.Option("--no-plots", help="Write no figures.")]
Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="No progress or messages on stderr.")]
Format = Annotated[str, typer.Option("--format", "-f", help="What stdout gets.", metavar=metavar(FORMATS))]
NoHeader = Annotated[bool, typer.Option("--no-header", help="csv: omit the header (to concatenate calls).")]
TableOpt = Annotated[str, typer.Option("--table", help="csv: which table to print.", metavar=metavar(TABLES))]
LogProb = Annotated[bool, typer.Option("--log-prob", help="Figures: log probability axis (small pi readable).")]


def comma_list(words: list[str] | None) -> list[str]:
    """The items of a flag that repeats or takes a comma list: `--tau 0.1,1 --tau 2` -> `["0.1", "1", "2"]`
    (blank items, as in `0.1,`, are dropped)."""
    return [item.strip() for word in words or () for item in word.split(",") if item.strip()]


def numbers(words: list[str] | None) -> list[Any]:
    """The numbers of a comma list; a word that is no number stays a word, for the caller's check to name."""

    def number(word: str) -> Any:
        try:
            return float(word)
        except ValueError:
            return word

    return [number(item) for item in comma_list(words)]


@dataclass(frozen=True)
class Output:
    """Where and how `run` and `compare` write and print (everything that is not a setting)."""

    out: Path
    save: bool
    plots: bool
    quiet: bool
    fmt: str
    header: bool
    table: str
    log_prob: bool

    def __post_init__(self) -> None:
        choice("--format", self.fmt, FORMATS)


def output(out: Path, no_save: bool, no_plots: bool, quiet: bool, fmt: str, no_header: bool, table: str,
           log_prob: bool) -> Output:
    """The `Output` of the shared output flags."""
    return Output(out, not no_save, not no_plots, quiet, fmt, not no_header, table, log_prob)


def parameter(s: Setting) -> inspect.Parameter:
    """The Typer parameter of a setting: `--flag VALUE`, optional (None: not given), help with its default.

    Typer hands the word as given (`str`): `Setting.parse` converts and checks it, so that `--steps abc`
    fails as `--steps = 'abc': must be a positive integer`, like every other bad value. A `flag` setting is
    a switch taking no value (`--skip-bad-rows`), None when not given."""
    if s.type == "flag":
        switch = typer.Option(s.option, help=s.help_text(), show_default=False)
        return inspect.Parameter(s.name, inspect.Parameter.KEYWORD_ONLY, default=None,
                                 annotation=Annotated[bool | None, switch])
    option = typer.Option(s.option, help=s.help_text(choices=False), show_default=False, metavar=s.metavar)
    annotation = Annotated[str | None, option]
    return inspect.Parameter(s.name, inspect.Parameter.KEYWORD_ONLY, default=None, annotation=annotation)


def with_settings(settings: Sequence[Setting]) -> Callable[[Callable[..., None]], Callable[..., None]]:
    """Decorate a command taking `given: dict[str, Any]` with one option per setting in `settings`.

    The command's own parameters stay as written (evaluated from its annotations) and come first; the
    settings' follow, keyword-only; `given` is not a flag. The command
    receives the settings the user gave (not None), each validated by its declaration (key: the flag).
    """

    def decorate(command: Callable[..., None]) -> Callable[..., None]:
        own = inspect.signature(command, eval_str=True)
        kept = [p for name, p in own.parameters.items() if name != "given"]
        names = [s.name for s in settings]

        @functools.wraps(command)
        def wrapper(**kwargs: Any) -> None:
            given = {s.name: s.check(value) if isinstance(value := kwargs.pop(s.name), bool) else s.parse(value)
                     for s in settings if kwargs.get(s.name) is not None}
            for name in names:
                kwargs.pop(name, None)
            command(**kwargs, given=given)

        positional = [p for p in kept if p.kind is not inspect.Parameter.KEYWORD_ONLY]
        keyword = [p.replace(kind=inspect.Parameter.KEYWORD_ONLY) for p in kept if p not in positional]
        wrapper.__signature__ = own.replace(  # type: ignore[attr-defined]
            parameters=[*positional, *[parameter(s) for s in settings], *keyword]
        )
        return wrapper

    return decorate
