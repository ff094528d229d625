"""The sweep directory on disk.

Unlike a `psipo run` directory (written in a temporary directory and renamed when complete), a sweep
directory is **created up front**: it is where partial progress lives, so that an interrupted sweep
(Ctrl-C, SIGKILL, a Slurm time limit, a crash) loses at most the chunks that were being computed. What
is atomic is each *file*: every file is written to a temporary name in the same directory, flushed and
`os.replace`d into place, so a reader (or `--resume`) sees either the whole file or none of it.

Layout of ``<out>/<UTC YYYYmmdd-HHMMSS>-sweep-<name>[-shard-<i>of<N>]/``:

- ``config.toml``: a copy of the grid file as given (for people; the identity is in ``grid.json``);
- ``grid.json``: the resolved grid (methods, tau values, problems with the SHA-256 of their content, ``n``,
  settings), its ``digest`` (what `--resume` and `merge` compare), the shard, the chunk plan
  (``chunks``: id, problem, n, method labels and tau values of each), and the result columns;
- ``chunks/<id>.csv``: the rows of one finished chunk (with the header), written as it completes;
- ``results.csv``: the header and every chunk's rows in chunk order — written at the end, byte-identical
  whatever ``--jobs``, the executor, the shards or the interruptions were;
- ``figures/*.png``: metric vs tau per method (and vs ``n`` when ``n`` is swept);
- ``manifest.json``: versions, platform, git commit, one entry per invocation (argv, executor, jobs,
  start, end, chunks computed, outcome) and ``status`` (``running``, ``interrupted``, ``failed``,
  ``complete``) as its last key. A directory whose process was killed says ``running``.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import uuid
from pathlib import Path
from typing import Any

from psipo_cli.errors import InputError, OutputError
from psipo_cli.sweep.compute import ChunkOutput
from psipo_cli.sweep.grid import SweepGrid
from psipo_cli.sweep.plan import Chunk, Shard

GRID_FILE = "grid.json"
MANIFEST_FILE = "manifest.json"
RESULTS_FILE = "results.csv"
CONFIG_COPY = "config.toml"
CHUNK_DIR = "chunks"
MAX_SUFFIX = 1000


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def write_atomic(path: Path, text: str) -> None:
    """Write `text` to `path` through a temporary sibling and `os.replace` (all or nothing)."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}")
    try:
        with open(tmp, "w", encoding="utf-8", newline="\n") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


class SweepDirectory:
    """A sweep directory: create it (`create`), or open an existing one (`open`) to resume or merge."""

    def __init__(self, path: Path, meta: dict[str, Any]) -> None:
        self.path = path
        self.meta = meta  # the content of grid.json
        self.manifest: dict[str, Any] = {}
        manifest = path / MANIFEST_FILE
        if manifest.is_file():
            try:
                self.manifest = json.loads(manifest.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                self.manifest = {}

    # -- creating and opening -------------------------------------------------------------------------
    @classmethod
    def create(cls, root: Path, meta: dict[str, Any], config_text: str | None) -> SweepDirectory:
        """Make a new, uniquely named sweep directory under `root` (created if missing) and write its
        ``grid.json`` (`meta`, from `grid_record`) and ``config.toml``."""
        from psipo_cli.outputs.rundir import check_root, run_dir_name

        check_root(root, create=True)
        try:
            root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise OutputError(f"cannot create output directory {root}: {exc.strerror or exc}") from exc
        name, shard = meta["grid"]["name"], meta.get("shard")
        if shard is not None:
            name = f"{name}-shard-{shard['index']}of{shard['count']}"
        base = run_dir_name("sweep", name, dt.datetime.now(dt.UTC))
        for k in range(1, MAX_SUFFIX + 1):
            path = root / (base if k == 1 else f"{base}-{k}")
            try:
                path.mkdir()  # atomic: two sweeps started in the same second get different directories
                break
            except FileExistsError:
                continue
            except OSError as exc:
                raise OutputError(f"cannot write to output directory {root}: {exc.strerror or exc}") from exc
        else:
            raise OutputError(f"more than {MAX_SUFFIX} sweep directories named {base} in {root}")
        (path / CHUNK_DIR).mkdir()
        directory = cls(path, meta)
        if config_text is not None:
            write_atomic(path / CONFIG_COPY, config_text)
        from psipo_cli.outputs.rundir import dump_json

        write_atomic(path / GRID_FILE, dump_json(meta))
        return directory

    @classmethod
    def open(cls, path: Path, key: str = "--resume") -> SweepDirectory:
        """An existing sweep directory (`InputError` naming `key` if `path` is not one)."""
        grid_file = path / GRID_FILE
        if not path.exists():
            raise InputError(key, str(path), "no such directory")
        if not path.is_dir():
            raise InputError(key, str(path), "not a directory")
        if not grid_file.is_file():
            raise InputError(key, str(path), f"not a sweep directory (no {GRID_FILE})")
        try:
            meta = json.loads(grid_file.read_text(encoding="utf-8"))
            missing = [k for k in ("digest", "chunks", "grid") if k not in meta]
            if missing:
                raise KeyError(missing[0])
        except (OSError, ValueError, KeyError) as exc:
            raise InputError(key, str(path), f"unreadable {GRID_FILE} ({exc})") from None
        from psipo_cli.sweep.grid import SweepGrid

        if meta.get("columns") != SweepGrid.from_json(meta["grid"]).columns():
            # Before problem_file, a problem file's results had its path in `problem`: rows of the two
            # layouts cannot share one results.csv.
            raise InputError(key, str(path), "written by a psipo version with other result columns (e.g. "
                             "before results.csv had problem_file); start a new sweep of the grid instead")
        return cls(path, meta)  # read only: `merge` must leave its inputs untouched (they may be read-only)

    # -- what it holds --------------------------------------------------------------------------------
    @property
    def digest(self) -> str:
        return str(self.meta["digest"])

    @property
    def shard(self) -> Shard | None:
        s = self.meta.get("shard")
        return None if s is None else Shard(int(s["index"]), int(s["count"]))

    @property
    def chunk_ids(self) -> list[str]:
        """The ids of this directory's chunks (its shard's, or all), in order."""
        return [c["id"] for c in self.meta["chunks"] if c.get("mine", True)]

    @property
    def header(self) -> str:
        """The header line of its chunk files and ``results.csv`` (the grid's columns)."""
        return ",".join(self.meta["columns"]) + "\n"

    def chunk_path(self, chunk_id: str) -> Path:
        return self.path / CHUNK_DIR / f"{chunk_id}.csv"

    def done_ids(self) -> set[str]:
        """Ids of the chunks whose file exists (files are atomic: existing means complete)."""
        planned = {c["id"] for c in self.meta["chunks"]}
        return {p.stem for p in (self.path / CHUNK_DIR).glob("*.csv") if p.stem in planned}

    def remove_stale(self) -> None:
        """Delete temporary files left by a process killed while writing (before resuming)."""
        for stale in self.path.glob(".*.tmp-*"):
            stale.unlink(missing_ok=True)
        for stale in (self.path / CHUNK_DIR).glob(".*.tmp-*"):
            stale.unlink(missing_ok=True)

    def chunk_text(self, chunk_id: str) -> str:
        text = self.chunk_path(chunk_id).read_text(encoding="utf-8")
        if not text.startswith(self.header):
            raise InputError("RUN_DIR", str(self.chunk_path(chunk_id)), "chunk file with unexpected columns")
        return text

    # -- writing --------------------------------------------------------------------------------------
    def write_chunk(self, output: ChunkOutput) -> None:
        self.chunk_path(output.chunk_id).parent.mkdir(exist_ok=True)
        write_atomic(self.chunk_path(output.chunk_id), output.text)

    def write_results(self, texts: list[str]) -> Path:
        """``results.csv``: one header, then the rows of each chunk text (given in chunk order)."""
        body = "".join(text[len(self.header):] for text in texts)
        path = self.path / RESULTS_FILE
        write_atomic(path, self.header + body)
        return path

    def begin(self, argv: list[str], executor: str, jobs: int) -> None:
        """Record the start of an invocation (the first writes the whole manifest)."""
        if not self.manifest:
            from psipo_cli.outputs.rundir import git_commit, library_versions

            commit, dirty = git_commit()
            self.manifest = {
                "command": "sweep",
                "name": self.meta["grid"]["name"],
                "digest": self.digest,
                "shard": self.meta.get("shard"),
                "chunks_total": len(self.chunk_ids),
                "cells_total": self.meta.get("cells"),  # of this directory's chunks
                "versions": library_versions(),
                "python": platform.python_version(),
                "platform": platform.platform(),
                "git_commit": commit,
                "git_dirty": dirty,
                "sessions": [],
            }
        self.manifest.setdefault("sessions", []).append(
            {"argv": argv, "cwd": os.getcwd(), "executor": executor, "jobs": jobs, "started": _now(),
             "finished": None, "chunks_computed": 0, "solver_seconds": 0.0, "outcome": "running"}
        )
        self.save_manifest("running")

    def end(self, outcome: str, computed: int, solver_seconds: float = 0.0) -> None:
        """Record the end of an invocation: `complete`, `interrupted` or `failed`, the chunks it computed
        and the seconds they took inside `api.solve` (summed over workers)."""
        session = self.manifest["sessions"][-1]
        session.update(finished=_now(), chunks_computed=computed, solver_seconds=round(solver_seconds, 4),
                       outcome=outcome)
        self.save_manifest(outcome)

    def save_manifest(self, status: str) -> None:
        from psipo_cli.outputs.rundir import dump_json

        self.manifest["chunks_done"] = len(self.done_ids() & set(self.chunk_ids))
        self.manifest.pop("status", None)
        self.manifest["status"] = status  # last key: a reader that sees it knows the file is whole
        write_atomic(self.path / MANIFEST_FILE, dump_json(self.manifest))


def grid_record(grid: SweepGrid, chunks: list[Chunk], shard: Shard | None) -> dict[str, Any]:
    """The content of ``grid.json``."""
    return {
        "digest": grid.digest(),
        "grid": grid.to_json(),
        "shard": None if shard is None else shard.to_json(),
        "cells": sum(c.cells for c in chunks if shard is None or shard.selects(c)),
        "columns": grid.columns(),
        "chunks": [{**c.describe(grid), "mine": shard is None or shard.selects(c)} for c in chunks],
    }


def json_document(path: Path) -> str:
    """``psipo sweep/merge --format json``: ``{"sweep_dir": str, "status": str, "results": [...]}``, the
    rows of the directory's ``results.csv`` as records (numbers as numbers, empty cells as null)."""
    import pandas as pd

    results = pd.read_csv(path / RESULTS_FILE, keep_default_na=False, na_values=[""])
    records = [{k: (None if pd.isna(v) else v) for k, v in row.items()} for row in results.to_dict("records")]
    status = json.loads((path / MANIFEST_FILE).read_text(encoding="utf-8")).get("status")
    document = {"sweep_dir": str(path), "status": status, "results": records}
    return json.dumps(document, indent=2, ensure_ascii=False, allow_nan=False, default=_scalar) + "\n"


def _scalar(value: Any) -> Any:
    """numpy scalars (pandas' cells) as Python numbers, for `json.dumps`."""
    return value.item()
