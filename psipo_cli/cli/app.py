"""The `psipo` command: thin — parse, call, print. The root app composes each command group's own app.

stdout carries data only; progress and "wrote ..." go to stderr. Exit codes: 0 ok, 1 runtime failure,
2 bad usage or bad input (one line, `psipo: <key> = <value>: <reason>`, Click's own usage errors
reworded to it by `usage_error`), 130 interrupted (Ctrl-C, SIGINT), 143
terminated (SIGTERM: `kill`, a job scheduler, a CI timeout) — 128 + the signal number, as a shell reports
it. Every failure is one line on stderr, and an interrupted run leaves no run directory behind (the
SIGTERM handler turns the signal into an exception, so the same clean-up runs as for Ctrl-C). Heavy
libraries (numpy, scipy, pandas, matplotlib) are imported inside the commands that use them.
"""

from __future__ import annotations

import inspect
import os
import signal
import sys
from typing import Annotated, Any

import typer

from psipo_cli.cli import compare, diagnose, methods, plot, problem, run, sweep
from psipo_cli.errors import InputError

EXIT_INTERRUPTED = 130  # 128 + SIGINT
EXIT_TERMINATED = 143  # 128 + SIGTERM


class Terminated(BaseException):
    """Raised in the main thread when SIGTERM arrives. Not an `Exception`, so that no `except Exception`
    swallows it; `finally` blocks and context managers (the run directory's clean-up) still run."""

# Recent typer releases ship their own copy of click: take the exception classes from the one typer uses.
_click_errors = sys.modules[typer.BadParameter.__module__]


class PsipoApp(typer.Typer):
    """A Typer app whose every failure is one line on stderr with the documented exit code."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        _terminate_on_sigterm()
        try:
            result = super().__call__(*args, standalone_mode=False, **kwargs)
        except Terminated:
            fail("terminated", EXIT_TERMINATED)
        except InputError as exc:
            fail(exc.line(), 2)
        except _click_errors.NoArgsIsHelpError as exc:
            print(exc.ctx.get_help() if exc.ctx else str(exc), file=sys.stderr)
            sys.exit(2)
        except _click_errors.UsageError as exc:
            fail(usage_error(exc, list(kwargs.get("args") or sys.argv[1:])).line(), 2)
        except typer.Abort:
            fail("interrupted", 130)
        except typer.Exit as exc:
            sys.exit(exc.exit_code)
        except KeyboardInterrupt:
            fail("interrupted", 130)
        except BrokenPipeError:
            # `psipo ... | head`: the reader left; not an error of ours.
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            sys.exit(0)
        except Exception as exc:
            if os.environ.get("PSIPO_DEBUG"):
                raise
            from psipo_cli.errors import OutputError

            if isinstance(exc, OutputError):  # the user's file system, not a bug: no traceback to ask for
                fail(f"error: {exc}", 1)
            fail(f"internal error ({type(exc).__name__}): {exc}  (set PSIPO_DEBUG=1 for a traceback)", 1)
        # Without standalone mode, typer turns Ctrl-C into `Exit(130)` and *returns* the code: say so and
        # exit with it (returning it would make `python -m psipo_cli` exit 0 on Ctrl-C).
        if result == EXIT_INTERRUPTED:
            fail("interrupted", EXIT_INTERRUPTED)
        if isinstance(result, int) and not isinstance(result, bool) and result != 0:
            sys.exit(result)
        return result


def usage_error(exc: Any, argv: list[str]) -> InputError:
    """A Click usage error as the `InputError` every other bad input is: `<key> = <value>: <reason>`.

    Click's errors name the parameter but not always the value (a value that failed to convert is not
    kept): the value is then read back from `argv`, the command line Click parsed.
    """
    command = " ".join(["psipo", *(exc.ctx.command_path.split()[1:] if exc.ctx else [])])
    if command.startswith("psipo -m psipo_cli"):  # `python -m psipo_cli`: Click's path is "python -m psipo_cli"
        command = "psipo" + command.removeprefix("psipo -m psipo_cli")
    if isinstance(exc, _click_errors.NoSuchOption):
        hint = f" (did you mean {' or '.join(exc.possibilities)}?)" if exc.possibilities else ""
        return InputError("option", exc.option_name, f"not an option of {command}{hint}; see {command} --help")
    if isinstance(exc, _click_errors.MissingParameter) and exc.param is not None:
        return InputError(_key(exc.param), None, f"required; usage: {command} {_usage(exc)}")
    if isinstance(exc, _click_errors.BadParameter) and exc.param is not None:
        key = _key(exc.param)
        return InputError(key, _given(exc.param, argv), _reason(exc.message))
    if isinstance(exc, _click_errors.BadOptionUsage):
        return InputError(exc.option_name, None, _reason(exc.message))
    message = exc.format_message()
    extra = message.partition("unexpected extra argument(s) (")[2]
    if extra:
        value = extra.removesuffix(")")
        return InputError("argument", value, f"unexpected extra argument of {command}{_methods_hint(value, argv)}; "
                          f"see {command} --help")
    return InputError("command line", " ".join(argv), _reason(message))


def _methods_hint(extra: str, argv: list[str]) -> str:
    """When the stray words are method names (`run dpo ipo`, `compare --methods dpo ipo rlhf`): how to give
    several methods, as one comma list."""
    from psipo_cli.methods import METHODS

    words = extra.split()
    if not words or not all(w in METHODS for w in words):
        return ""
    given = [w for w in argv if w in METHODS and w not in words]
    return f" (several methods: psipo compare --methods {','.join([*given, *words])})"


def _key(param: Any) -> str:
    """The name errors know a parameter by: its flag (`--steps`), or an argument's name (`method`, `config`:
    the key the commands' own errors use)."""
    if getattr(param, "param_type_name", "") == "option" and param.opts:
        return max(param.opts, key=len)
    return param.name


def _given(param: Any, argv: list[str]) -> str | None:
    """The value `argv` gave the option `param` (`--jobs abc` or `--jobs=abc`; the last one wins)."""
    value = None
    for i, token in enumerate(argv):
        for flag in param.opts:
            if token == flag and i + 1 < len(argv):
                value = argv[i + 1]
            elif token.startswith(flag + "="):
                value = token[len(flag) + 1:]
    return value


def _reason(message: str) -> str:
    """Click's sentence as a reason: no "Invalid value for '--x':" preamble, lower-case, no final dot."""
    message = message.replace("\n", " ").strip()
    if message.startswith("Invalid value for"):
        message = message.partition(": ")[2] or message
    return (message[:1].lower() + message[1:]).rstrip(".")


def _usage(exc: Any) -> str:
    return " ".join(exc.ctx.command.collect_usage_pieces(exc.ctx)) if exc.ctx else ""


def fail(line: str, code: int) -> None:
    """Print `line` as ONE line on stderr (control characters from user input escaped) and exit `code`."""
    line = "".join(ch if ch.isprintable() or ch == " " else repr(ch)[1:-1] for ch in line)
    print(f"psipo: {line}" if not line.startswith("psipo") else line, file=sys.stderr)
    sys.exit(code)


def _terminate_on_sigterm() -> None:
    """SIGTERM raises `Terminated` in this process, so that run directories are cleaned up as on Ctrl-C.

    Processes forked from this one (pool workers) inherit the handler; there it restores the default
    action and re-sends the signal, so that a worker told to stop simply stops.
    """
    main = os.getpid()

    def handler(signum: int, frame: Any) -> None:
        if os.getpid() != main:
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)
            return
        signal.signal(signum, signal.SIG_IGN)  # a second SIGTERM must not interrupt the clean-up
        raise Terminated()

    try:
        signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread (an embedding application): leave signals alone
        pass


def _version(value: bool) -> None:
    """`psipo --version`: the version on stdout, as `psipo version` prints it."""
    if value:
        from psipo_cli import __version__

        print(__version__)
        raise typer.Exit()


app = PsipoApp(
    name="psipo",
    help="What RLHF, DPO, IPO and PsiPO converge to on tabular preference problems — exactly and by "
    "gradient descent (Azar et al., arXiv 2310.12036).",
    no_args_is_help=True,
    add_completion=True,  # Typer's --install-completion / --show-completion (imported only when used)
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)

# Each command group owns its Typer app; the root composes them (Typer's "one file per command" layout).
app.add_typer(run.app)
app.add_typer(compare.app)
app.add_typer(methods.app)
app.add_typer(problem.app, name="problem")
app.add_typer(plot.app)
app.add_typer(sweep.app)
app.add_typer(diagnose.app)


@app.callback()
def main(
    version: Annotated[bool, typer.Option("--version", help="Print the psipo version and exit.", is_eager=True,
                                          callback=_version)] = False,
) -> None:
    """What RLHF, DPO, IPO and PsiPO converge to on tabular preference problems — exactly and by gradient
    descent (Azar et al., arXiv 2310.12036)."""


def _whole_first_sentences(root: typer.Typer) -> None:
    """The top-level help lists each command with its docstring's whole first sentence (Click cuts it to
    the terminal width with "..."): give every command a `short_help` of that sentence, wrapped, not cut."""
    for group in root.registered_groups:
        sub = group.typer_instance
        if sub is None:
            continue
        for info in sub.registered_commands:
            doc = inspect.getdoc(info.callback) or ""
            if info.short_help is None and doc:
                info.short_help = first_sentence(doc)


def first_sentence(doc: str) -> str:
    """The first sentence of a docstring: up to the first ". " or the end of its first paragraph."""
    paragraph = " ".join(doc.split("\n\n")[0].split())
    head, dot, _ = paragraph.partition(". ")
    return head + "." if dot else paragraph


_whole_first_sentences(app)
