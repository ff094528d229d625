"""Atomic run directories (docs/outputs.md).

A run directory is ``<root>/<UTC YYYYmmdd-HHMMSS>-<command>[-<name>]/`` and holds

- ``config.json``: everything resolved (CLI + file + defaults), as the caller gives it; sorted keys;
- ``policy.csv``, ``metrics.csv``, ``curves.csv`` and any extra frame: ``summary.csv`` (the
  context-weighted aggregate), ``rewards.csv`` (implied rewards of the exact answers), ``runs.csv`` (every
  seed's final result), ``logit_gap.csv`` (DPO against ΨPO-logit where preferences are not Bradley–Terry),
  ``social_choice.csv`` (each objective's ranking on non-transitive preferences), ``tau_grid.csv``;
- ``figures/*.png`` and ``report.md`` (written by the caller through `RunDirectory.work`);
- ``manifest.json``: versions, python, platform, git commit, argv, seeds, the input files read (path and
  sha256), start and end times, and ``"status": "complete"`` as its last key. It is the last file written.

Everything is written into a hidden sibling ``<root>/.tmp-<uuid>/`` and renamed into place only when the
``with`` block ends without an exception; on any exception (``KeyboardInterrupt`` and the CLI's SIGTERM
exception included) the temporary directory is deleted and the exception propagates. So a directory named
like a run is always complete, and a crashed run leaves nothing behind. Renaming within one file system is
atomic on POSIX and Windows. A failed write (full disk, quota, I/O error) becomes an `OutputError` naming
the root and the reason: the user's environment, not a bug.

File formats (chosen so that the same results give the same bytes):

- CSV: UTF-8, ``\\n`` line ends, a header, no index, a fixed column order (`formatting.FRAME_COLUMNS`,
  extra columns after), floats in shortest round-trip form (``repr``: ``0.1``, ``1e-17``), missing values
  as empty fields. ``curves.csv`` is **always** written, header-only when there was no gradient run, so
  that every run directory has the same files and a reader never meets an empty file.
- JSON: UTF-8, 2-space indent, trailing newline, no NaN (non-finite values become ``null``).
- Timestamps appear only in ``manifest.json`` (and in the directory name).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import errno
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

from psipo_cli.errors import OutputError
from psipo_cli.outputs.formatting import FRAME_COLUMNS, csv_chunks, csv_text, json_safe

if TYPE_CHECKING:
    import pandas as pd

DEFAULT_ROOT = Path("outputs")
TMP_PREFIX = ".tmp-"
TIME_FORMAT = "%Y%m%d-%H%M%S"
MAX_SUFFIX = 1000


def slug(text: str) -> str:
    """`text` made safe as one path component: runs of anything but letters, digits, `.`, `_`, `-` → `-`.

    A problem given as a file path (``problems/my file.toml``) thus names a directory ``problems-my-file``.
    """
    text = re.sub(r"\.toml$", "", str(text).strip(), flags=re.IGNORECASE)
    text = re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-.")
    return text[:80]


def run_dir_name(command: str, name: str, started: dt.datetime) -> str:
    """``<UTC YYYYmmdd-HHMMSS>-<command>[-<name>]`` (the name part is left out when empty)."""
    parts = [started.astimezone(dt.UTC).strftime(TIME_FORMAT), slug(command) or "run"]
    if slug(name):
        parts.append(slug(name))
    return "-".join(parts)


def dump_json(obj: Any, sort_keys: bool = False) -> str:
    """JSON text as the run directory stores it (indent 2, UTF-8 kept, no NaN, trailing newline)."""
    text = json.dumps(json_safe(obj), indent=2, sort_keys=sort_keys, ensure_ascii=False, allow_nan=False)
    return text + "\n"


def git_commit(cwd: str | Path | None = None) -> tuple[str | None, bool | None]:
    """The commit checked out in `cwd` (default: the current directory) and whether the tree is dirty.

    Any failure (no git, not a repository, timeout) gives ``(None, None)``: provenance is best effort and
    must never fail a run.
    """
    def git(*args: str) -> str:
        done = subprocess.run(
            ["git", *args], cwd=cwd, capture_output=True, text=True, timeout=5, check=True
        )
        return done.stdout.strip()

    try:
        commit = git("rev-parse", "HEAD")
    except (OSError, subprocess.SubprocessError):
        return None, None
    try:
        dirty: bool | None = bool(git("status", "--porcelain", "--untracked-files=no"))
    except (OSError, subprocess.SubprocessError):
        dirty = None
    return commit or None, dirty


def library_versions() -> dict[str, str | None]:
    """Versions of psipo and the numerical libraries that shape the results (None if not installed)."""
    from importlib import metadata

    import psipo_cli

    versions: dict[str, str | None] = {"psipo": psipo_cli.__version__}
    for dist in ("numpy", "scipy", "pandas", "matplotlib"):
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            versions[dist] = None
    return versions


def run_tables(frames: Any) -> dict[str, pd.DataFrame]:
    """The tables of a `psipo_cli.api.Frames` beyond policy, metrics and curves, by the stem of their file
    (``runs.csv`` holds `Frames.per_seed`)."""
    return {
        "summary": frames.summary, "rewards": frames.rewards, "runs": frames.per_seed, "logit_gap": frames.logit_gap,
        "gap_curves": frames.gap_curves,
        "social_choice": frames.social_choice,
    }


def check_root(root: str | Path, create: bool = False) -> None:
    """Raise `OutputError` unless run directories can be written under `root`; leave nothing on disk.

    `root` must be a writable directory; with `create`, a missing `root` passes if its nearest existing
    ancestor is a writable directory (everything below it can then be made). "Writable" is tested by
    making and removing a hidden ``.tmp-<uuid>`` directory there — the first thing a run directory does —
    and not by permission bits alone, which the super-user ignores and which say nothing about file systems
    that refuse new entries (``/proc``, read-only mounts). The CLI calls this before any computation (so
    that an unusable ``--out`` fails in milliseconds, not after the run), and `RunDirectory` and the sweep
    store call it again when they open their directory.
    """
    root = Path(root)
    target = root
    if create:
        # `Path("outputs").parent` is `Path(".")`, whose parent is itself: the loop ends at an existing dir.
        while not target.exists() and target.parent != target:
            target = target.parent
    elif not root.exists():
        raise OutputError(f"output directory {root} does not exist (create it, or choose another)")

    def failure(problem: str, code: int) -> OutputError:
        # `root` itself, in words; or the error `mkdir -p root` would meet, naming the ancestor it meets it at.
        if target == root:
            return OutputError(f"output directory {root} {problem}")
        return OutputError(f"cannot create output directory {root}: {os.strerror(code)} ({target})")

    if not target.is_dir():
        raise failure("is not a directory", errno.ENOTDIR)
    if not os.access(target, os.W_OK | os.X_OK):
        raise failure("is not writable", errno.EACCES)
    probe = target / f"{TMP_PREFIX}{uuid.uuid4().hex}"
    try:
        probe.mkdir()
    except OSError as exc:
        raise failure(f"is not writable ({exc.strerror or exc})", exc.errno or errno.EACCES) from exc
    with contextlib.suppress(OSError):
        probe.rmdir()


def _utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _iso(t: dt.datetime) -> str:
    return t.astimezone(dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


class RunDirectory:
    """A run directory written atomically; use it as a context manager.

    Parameters
    ----------
    root : str or Path
        Where run directories go (``outputs/`` by default; the CLI's ``--out``). It must exist and be
        writable unless `create_root` is set.
    command : str
        The psipo command (``run``, ``compare``): part of the directory name.
    name : str
        A name for the run (``--name``, or the problem name): part of the directory name; may be empty.
    config : Mapping
        Everything resolved, written as ``config.json`` (keys sorted, made JSON-safe).
    argv : sequence of str, optional
        The command line, recorded in the manifest (default: ``sys.argv``).
    seeds : Any, optional
        The seeds used (root seed, seed count, or a list), recorded in the manifest.
    create_root : bool
        Create `root` (and its parents) if missing, instead of raising `OutputError`.
    clock : callable, optional
        Returns the current time (tests pass a fixed clock to provoke name collisions).
    inputs : list of dict, optional
        The files the run read (``{path, sha256}``: problem file, ``pairs_csv``, experiment file),
        recorded in the manifest as ``inputs``.

    Examples
    --------
    >>> with RunDirectory("outputs", "compare", "paper-d1", config) as rd:   # doctest: +SKIP
    ...     rd.write_frames(frames.policy, frames.metrics, frames.curves, tau_grid=grid)
    ...     rd.write_text("report.md", text)
    >>> rd.path                                                                # doctest: +SKIP
    PosixPath('outputs/20260101-120000-compare-paper-d1')

    `path` is where the run is now: inside the block the temporary directory every file goes into (also
    `work`), after a successful exit the final directory (also `final_path`, None until then). The final
    name is resolved at exit (a ``-2``, ``-3``, ... suffix when a directory of that name exists by then).
    """

    def __init__(
        self,
        root: str | Path = DEFAULT_ROOT,
        command: str = "run",
        name: str = "",
        config: Mapping[str, Any] | None = None,
        argv: Sequence[str] | None = None,
        seeds: Any = None,
        create_root: bool = False,
        clock: Any = None,
        inputs: Sequence[Mapping[str, Any]] | None = None,
    ) -> None:
        self.root = Path(root)
        self.command = command
        self.name = name
        self.config = dict(config or {})
        self.argv = list(sys.argv if argv is None else argv)
        self.seeds = seeds
        self.create_root = create_root
        self.inputs = [dict(f) for f in inputs or []]
        self._clock = clock or _utc_now
        self.started: dt.datetime | None = None
        self.finished: dt.datetime | None = None
        self._work: Path | None = None
        self.final_path: Path | None = None
        self.files: list[Path] = []  # every file of the finished run (set on a successful exit)
        self._git: tuple[str | None, bool | None] | None = None

    # -- life cycle ---------------------------------------------------------------------------------
    def __enter__(self) -> RunDirectory:
        self._check_root()
        self.started = self._clock()
        # `_work` is set before the directory exists, so that an interrupt between the two still cleans up.
        self._work = self.root / f"{TMP_PREFIX}{uuid.uuid4().hex}"
        try:
            self._work.mkdir()
        except OSError as exc:
            self._work = None
            raise OutputError(f"cannot write to output directory {self.root}: {exc.strerror or exc}") from exc
        try:
            self.write_json("config.json", self.config, sort_keys=True)
            # A provisional manifest: a temporary directory left by a killed process (SIGKILL cannot be
            # cleaned up) then says what it was. It is rewritten, complete, just before the rename.
            self._write_manifest(status="running")
        except OSError as exc:
            self._discard()
            raise self._write_error(exc) from exc
        except BaseException:
            self._discard()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool:
        if exc_type is not None:
            self._discard()
            if isinstance(exc, OSError) and not isinstance(exc, OutputError):
                raise self._write_error(exc) from exc  # a full disk while writing frames or figures
            return False  # let the exception (KeyboardInterrupt included) propagate
        try:
            self.finished = self._clock()
            self._write_manifest(status="complete")
            self.final_path = self._rename()
        except OSError as exc:
            self._discard()
            raise self._write_error(exc) from exc
        except BaseException:
            self._discard()
            raise
        # Everything the run holds, including what the caller wrote directly under `work` (figures).
        self.files = sorted(p for p in self.final_path.rglob("*") if p.is_file())
        self._work = None
        return False

    @property
    def path(self) -> Path | None:
        """Where the run is now: the temporary directory inside the block, the final one after it (None
        before the block and after a failure)."""
        return self._work if self._work is not None else self.final_path

    @property
    def work(self) -> Path:
        """The temporary directory files go into (only inside the ``with`` block)."""
        if self._work is None:
            raise OutputError("the run directory is not open: write inside its `with` block")
        return self._work

    @property
    def figures_dir(self) -> Path:
        """``<work>/figures``, created on first use."""
        path = self.work / "figures"
        path.mkdir(exist_ok=True)
        return path

    # -- writing ------------------------------------------------------------------------------------
    def write_text(self, relpath: str | Path, text: str) -> Path:
        """Write `text` (UTF-8, ``\\n`` line ends whatever the platform) to ``work/relpath``."""
        target = self.work / relpath
        target.parent.mkdir(parents=True, exist_ok=True)
        with open(target, "w", encoding="utf-8", newline="\n") as handle:
            handle.write(text)
        return target

    def write_json(self, relpath: str | Path, obj: Any, sort_keys: bool = False) -> Path:
        """Write `obj` as JSON (see `dump_json`)."""
        return self.write_text(relpath, dump_json(obj, sort_keys=sort_keys))

    def write_csv(
        self, stem: str, frame: pd.DataFrame, columns: Sequence[str] | None = None, compress: bool = False
    ) -> Path:
        """Write `frame` as ``<stem>.csv``; the column order is `columns`, else the known layout of `stem`.
        With `compress`, as ``<stem>.csv.gz`` (gzip level 1, with no name and time 0 in its header, so that
        the same frame gives the same bytes)."""
        if columns is None:
            columns = FRAME_COLUMNS.get(stem)
        if not compress:
            return self.write_text(f"{stem}.csv", csv_text(frame, columns))
        import gzip

        target = self.work / f"{stem}.csv.gz"
        # Written piece by piece: the text of a large table is never held whole. Level 1: several times
        # faster than the default 9 on these tables, for files about a quarter larger.
        with open(target, "wb") as raw, gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0,
                                                      compresslevel=1) as handle:
            for piece in csv_chunks(frame, columns):
                handle.write(piece.encode("utf-8"))
        return target

    def write_frames(
        self,
        policy: Any,
        metrics: pd.DataFrame | None = None,
        curves: pd.DataFrame | None = None,
        **extra: pd.DataFrame | None,
    ) -> list[Path]:
        """Write ``policy.csv``, ``metrics.csv``, ``curves.csv`` (header-only if `curves` is None or
        empty) and one ``<key>.csv`` per keyword frame (e.g. ``tau_grid=...``; None is skipped).

        `policy` may also be a `psipo_cli.api.Frames`, whose frames are then all written: also
        ``summary.csv``, ``rewards.csv``, ``runs.csv`` (its `per_seed`), ``logit_gap.csv`` and
        ``social_choice.csv``.
        """
        import pandas as pd

        if hasattr(policy, "policy"):
            frames = policy
            policy, metrics, curves = frames.policy, frames.metrics, frames.curves
            extra = {**run_tables(frames), **extra}
        if metrics is None:
            raise TypeError("write_frames needs the metrics frame (or a Frames object)")
        if curves is None:
            curves = pd.DataFrame(columns=FRAME_COLUMNS["curves"])
        paths = [self.write_csv("policy", policy), self.write_csv("metrics", metrics)]
        paths.append(self.write_csv("curves", curves))
        for stem, frame in extra.items():
            if frame is not None:
                paths.append(self.write_csv(stem, frame))
        return paths

    # -- internals ----------------------------------------------------------------------------------
    def _check_root(self) -> None:
        check_root(self.root, create=self.create_root)
        if not self.root.exists():
            try:
                self.root.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise OutputError(f"cannot create output directory {self.root}: {exc.strerror or exc}") from exc

    def _write_manifest(self, status: str) -> None:
        assert self.started is not None
        if self._git is None:
            self._git = git_commit()
        commit, dirty = self._git
        manifest: dict[str, Any] = {
            "command": self.command,
            "name": self.name,
            "versions": library_versions(),
            "python": platform.python_version(),
            "implementation": platform.python_implementation(),
            "platform": platform.platform(),
            "git_commit": commit,
            "git_dirty": dirty,
            "cwd": os.getcwd(),
            "argv": self.argv,
            "seeds": self.seeds,
            "inputs": self.inputs,
            "started": _iso(self.started),
            "finished": _iso(self.finished) if self.finished is not None else None,
            "status": status,  # last key: a reader that sees it knows the file is whole
        }
        self.write_json("manifest.json", manifest)

    def _rename(self) -> Path:
        """Move the finished temporary directory to its final name, with a ``-2``, ``-3`` ... suffix when
        the name is taken.

        `os.rename` refuses to replace a non-empty directory, so two processes racing for one name cannot
        overwrite each other's results (an *empty* directory of the same name would be replaced; the
        `lexists` check avoids even that outside a race).
        """
        assert self.started is not None
        base = run_dir_name(self.command, self.name, self.started)
        for k in range(1, MAX_SUFFIX + 1):
            target = self.root / (base if k == 1 else f"{base}-{k}")
            if os.path.lexists(target):
                continue
            try:
                os.rename(self.work, target)
            except OSError as exc:
                if exc.errno in (errno.EEXIST, errno.ENOTEMPTY):
                    continue
                raise OutputError(f"cannot move the run into {target}: {exc.strerror or exc}") from exc
            return target
        raise OutputError(f"more than {MAX_SUFFIX} run directories named {base} in {self.root}")

    def _write_error(self, exc: OSError) -> OutputError:
        return OutputError(
            f"cannot write the run directory in {self.root}: {exc.strerror or exc}; nothing was saved"
        )

    def _discard(self) -> None:
        work, self._work = self._work, None
        if work is not None:
            try:
                shutil.rmtree(work, ignore_errors=True)
            except KeyboardInterrupt:  # a second Ctrl-C while cleaning up: finish the clean-up first
                shutil.rmtree(work, ignore_errors=True)
                raise
