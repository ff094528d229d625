"""The `psipo` command (DESIGN §5): thin — parse, call, print.

stdout carries data only; progress and "wrote ..." go to stderr. Exit codes: 0 ok, 1 runtime failure,
2 bad usage or bad input (one line naming the key and the value), 130 interrupted. Heavy libraries
(numpy, scipy, pandas, matplotlib) are imported inside the commands that use them.
"""

from __future__ import annotations

import os
import sys
from typing import Any

import typer

from psipo_cli.errors import InputError

# Recent typer releases ship their own copy of click: take the exception classes from the one typer uses.
_click_errors = sys.modules[typer.BadParameter.__module__]


class PsipoApp(typer.Typer):
    """A Typer app whose every failure is one line on stderr with the documented exit code."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return super().__call__(*args, standalone_mode=False, **kwargs)
        except InputError as exc:
            fail(exc.line(), 2)
        except _click_errors.NoArgsIsHelpError as exc:
            print(exc.ctx.get_help() if exc.ctx else str(exc), file=sys.stderr)
            sys.exit(2)
        except _click_errors.UsageError as exc:
            fail(_usage_line(exc), 2)
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

            kind = "error" if isinstance(exc, OutputError) else f"internal error ({type(exc).__name__})"
            fail(f"{kind}: {exc}  (set PSIPO_DEBUG=1 for a traceback)", 1)


def _usage_line(exc: Any) -> str:
    message = exc.format_message().replace("\n", " ")
    command = exc.ctx.command_path if exc.ctx else "psipo"
    return f"{command}: {message}"


def fail(line: str, code: int) -> None:
    print(f"psipo: {line}" if not line.startswith("psipo") else line, file=sys.stderr)
    sys.exit(code)


app = PsipoApp(
    name="psipo",
    help="What RLHF, DPO, IPO and PsiPO converge to on tabular preference problems — exactly and by "
    "gradient descent (Azar et al., arXiv 2310.12036).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)

from psipo_cli.cli import commands, sweep_commands  # noqa: E402  (register the commands on `app`)

__all__ = ["app", "commands", "sweep_commands"]
