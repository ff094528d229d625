"""Error types shared by every layer.

`InputError` is bad input from the user (a problem file, a config file, a CLI value): the CLI reports it as
one line naming the key and the value and exits with code 2. `OutputError` is a run that could not be
written (exit code 1).

Both cross process boundaries intact: a sweep chunk that fails in a pool worker or on a Dask worker is
pickled there and raised again in the driver, which must then print the same line (and exit with the same
code) as when the chunk runs in-process. Pickle rebuilds an exception as ``type(exc)(*exc.args)``, and
`InputError`'s constructor takes its fields, not the message: `InputError.__reduce__` hands pickle the
fields instead (and the instance `__dict__`, so attributes set later, e.g. notes, survive too).
"""

from __future__ import annotations

import difflib
from typing import Any


def did_you_mean(word: str, choices: Any) -> str:
    """`" (did you mean X?)"` for the closest of `choices` to `word` (difflib), else `""`."""
    close = difflib.get_close_matches(str(word), [str(c) for c in choices], n=1)
    return f" (did you mean {close[0]}?)" if close else ""


def _short(value: Any, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


class InputError(ValueError):
    """Bad input: which key, which value, and why.

    Parameters
    ----------
    key : str
        Dotted name of the offending key (``"pi_ref"``, ``"contexts[1].rewards"``, ``"--tau"``).
    value : Any
        The value the user gave (shortened when printed).
    reason : str
        What is wrong with it, in a few words.
    where : str, optional
        The file (or other source) the key came from.
    """

    def __init__(self, key: str, value: Any, reason: str, where: str = "") -> None:
        self.key = key
        self.value = value
        self.reason = reason
        self.where = where
        super().__init__(self.line())

    def __reduce__(self) -> tuple[type[InputError], tuple[str, Any, str, str], dict[str, Any]]:
        """Pickle support: rebuild from the fields (``InputError(*self.args)`` would miss `reason`)."""
        return type(self), (self.key, self.value, self.reason, self.where), dict(self.__dict__)

    def line(self) -> str:
        prefix = f"{self.where}: " if self.where else ""
        return f"{prefix}{self.key} = {_short(self.value)}: {self.reason}"

    def located(self, where: str) -> InputError:
        """The same error, attributed to the file ``where`` (unless it already names one)."""
        return self if self.where else InputError(self.key, self.value, self.reason, where)


class OutputError(RuntimeError):
    """The results could not be written: the output root is missing, not a directory, or not writable.

    Raised by `psipo_cli.outputs` before anything is written (or after cleaning up what was), with a message
    that names the path and the reason in one line. Its one constructor argument is the message, so the
    default pickling (``type(exc)(*exc.args)`` plus the instance `__dict__`) round-trips it.
    """
