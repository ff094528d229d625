"""A call run in a forked child process while this process does other work, where that is safe and pays.

A psipo command is a chain of single-threaded steps (the gradient engine, imports, the exact solver, the
figures), and a machine usually has a second CPU. `Forked` starts `fn(*args, **kwargs)` in a child made by
``os.fork`` — it inherits this process's memory, so nothing is pickled on the way in — and `result()`
returns what it returned (or raises what it raised), sent back through a pipe. The child runs the same
code on the same inputs as a call in this process would, so its numbers are the same bits.

`fork_pays()` says whether to fork at all: ``os.fork`` exists, the process may run on two or more CPUs,
and it has no other thread (a fork copies only the calling thread, and could leave the child holding a
lock another thread held). Anything that goes wrong in the child that is not the call's own exception (the
child killed, a result that cannot be pickled) makes `result()` run the call here instead, so a failure
surfaces with its own message.
"""

from __future__ import annotations

import os
import pickle
import sys
from collections.abc import Callable
from typing import Any

_PROGRESS, _VALUE, _RAISED, _FAILED = "progress", "value", "raised", "failed"


def usable_cpus() -> int:
    """CPUs this process may run on (its affinity mask where the OS has one, else `os.cpu_count`)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def fork_pays() -> bool:
    """True where a forked child can run next to this process: `os.fork` exists, two or more usable CPUs,
    and no other thread in this process."""
    import threading

    return hasattr(os, "fork") and usable_cpus() >= 2 and threading.active_count() == 1


class Forked:
    """`fn(*args, progress=..., **kwargs)` running in a forked child (module docstring).

    `fn` receives a `progress(done, total)` callback that sends the counts to this process, where
    `result(progress)` passes them on while it waits. Call `result()` once, or `close()` (which ends the
    child) when the value is no longer wanted, e.g. on an error in this process.
    """

    def __init__(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
        self.call = (fn, args, kwargs)
        read_end, write_end = os.pipe()
        sys.stdout.flush()  # buffered output would otherwise be written twice, once by each process
        sys.stderr.flush()
        self.pid = os.fork()
        if self.pid == 0:  # the child: run, send the outcome, leave without the parent's exit handlers
            _own_group(0)
            os.close(read_end)
            code = 1
            try:
                with os.fdopen(write_end, "wb") as pipe:
                    _run_child(pipe, fn, args, kwargs)
                code = 0
            finally:
                os._exit(code)
        _own_group(self.pid)  # set from both sides: whichever runs first, the group exists before `close`
        os.close(write_end)
        self.pipe = os.fdopen(read_end, "rb")

    def result(
        self, progress: Callable[[int, int], None] | None = None, retry: Callable[[], Any] | None = None
    ) -> Any:
        """Wait for the child: its return value, or its exception raised here (`progress` gets its counts).

        When the child ends without either, the call runs here instead: `retry()` if given, else the call
        itself (with `progress`)."""
        outcome: tuple[Any, ...] = (_FAILED,)
        try:
            while True:
                try:
                    message = pickle.load(self.pipe)
                except (EOFError, pickle.UnpicklingError):
                    break  # the child died without an outcome
                if message[0] != _PROGRESS:
                    outcome = message
                    break
                if progress is not None:
                    progress(*message[1:])
        finally:
            self.close()
        if outcome[0] == _VALUE:
            return outcome[1]
        if outcome[0] == _RAISED:
            raise outcome[1]
        if retry is not None:
            return retry()
        fn, args, kwargs = self.call
        return fn(*args, progress=progress, **kwargs)

    def close(self) -> None:
        """End the child and every process it started (if they still run) and reap the child; idempotent.

        The child leads its own process group, so that what it forked goes too: the figures painter draws
        some figures in a grandchild (`draw_in_parallel`), which would otherwise go on writing into a run
        directory this process is discarding (and recreate it). A SIGINT sent to this process alone, not to
        its terminal's process group, reaches only it."""
        if self.pid is None:
            return
        self.pipe.close()
        try:
            os.killpg(self.pid, 9)  # SIGKILL; a child that finished is a zombie, and kill is a no-op on it
        except (ProcessLookupError, PermissionError):
            try:
                os.kill(self.pid, 9)
            except ProcessLookupError:
                pass
        os.waitpid(self.pid, 0)
        self.pid = None


def _own_group(pid: int) -> None:
    """Make `pid` (0: this process) the leader of a process group of its own, where the OS allows it."""
    try:
        os.setpgid(pid, 0)
    except OSError:  # the child has already exited, or set it itself
        pass


def _run_child(pipe: Any, fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    """In the child: run the call and send its outcome (a value, or the exception it raised)."""

    def progress(done: int, total: int) -> None:
        pickle.dump((_PROGRESS, done, total), pipe)
        pipe.flush()

    try:
        outcome: tuple[Any, ...] = (_VALUE, fn(*args, progress=progress, **kwargs))
    except BaseException as exc:  # the call's own error (or a SIGINT sent to the child): raised in the parent
        outcome = (_RAISED, exc)
    try:
        data = pickle.dumps(outcome, protocol=pickle.HIGHEST_PROTOCOL)
    except Exception:
        data = pickle.dumps((_FAILED,))  # the parent runs the call itself
    pipe.write(data)
