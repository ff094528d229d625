"""`psipo merge DIR...`: sweep directories of one grid (shards, or partial runs) combined into one.

The directories must record the same grid digest (the same sweep: `psipo_cli.sweep.grid`); together they
must hold every chunk of the plan. Chunks present in several directories must be byte-identical (they
are, when the directories come from the same grid: results do not depend on where a chunk ran). The
merged directory is a new, complete sweep directory under `--out`, whose ``results.csv`` is
byte-identical to that of one uninterrupted, unsharded run; the inputs are left untouched.
"""

from __future__ import annotations

import sys
from pathlib import Path

from psipo_cli.errors import InputError
from psipo_cli.sweep.grid import SweepGrid
from psipo_cli.sweep.runner import DEFAULT_OUT, finish, grid_difference, say
from psipo_cli.sweep.store import SweepDirectory, write_atomic


def merge_sweeps(dirs: list[Path], out: Path | None = None, quiet: bool = False, plots: bool = True,
                 argv: list[str] | None = None) -> Path:
    """Combine sweep directories of one grid (shards, or partial runs) into a new, complete one whose
    ``results.csv`` is byte-identical to a single full run's."""
    if not dirs:
        raise InputError("DIR", [], "give the sweep directories to merge")
    opened = [SweepDirectory.open(Path(d), key="DIR") for d in dirs]
    first = opened[0]
    for other in opened[1:]:
        if other.digest != first.digest:
            key = grid_difference(first.meta["grid"], SweepGrid.from_json(other.meta["grid"]))
            raise InputError("DIR", str(other.path), f"is a different sweep from {first.path} (differs in `{key}`)")
    plan = [c["id"] for c in first.meta["chunks"]]
    source: dict[str, SweepDirectory] = {}
    for directory in opened:
        for chunk_id in sorted(directory.done_ids()):
            if chunk_id not in source:
                source[chunk_id] = directory
            elif directory.chunk_text(chunk_id) != source[chunk_id].chunk_text(chunk_id):
                raise InputError("DIR", str(directory.path),
                                 f"chunk {chunk_id} differs from the one in {source[chunk_id].path}")
    missing = [c for c in plan if c not in source]
    if missing:
        shards = sorted({d.shard.label for d in opened if d.shard is not None})
        raise InputError("DIR", [str(d) for d in dirs],
                         f"{len(missing)} of {len(plan)} chunk(s) missing (first: {missing[0]}; shards given: "
                         f"{', '.join(shards) or 'none'}): merge every shard, or --resume the unfinished ones")
    meta = dict(first.meta)
    meta["shard"] = None
    meta["chunks"] = [{**c, "mine": True} for c in first.meta["chunks"]]
    meta["cells"] = sum(len(c["methods"]) * len(c["tau"]) for c in meta["chunks"])
    config_copy = first.path / "config.toml"
    config_text = config_copy.read_text(encoding="utf-8") if config_copy.is_file() else None
    merged = SweepDirectory.create(Path(out) if out is not None else DEFAULT_OUT, meta, config_text)
    merged.begin(list(sys.argv if argv is None else argv), "merge", 1)
    try:
        merged.chunk_path(plan[0]).parent.mkdir(exist_ok=True)
        for chunk_id in plan:
            write_atomic(merged.chunk_path(chunk_id), source[chunk_id].chunk_text(chunk_id))
        finish(merged, plan, quiet, plots)
    except KeyboardInterrupt:
        merged.end("interrupted", 0)
        raise
    except BaseException:
        merged.end("failed", 0)
        raise
    merged.end("complete", 0)
    sources = f"{len(opened)} director{'y' if len(opened) == 1 else 'ies'}"
    say(quiet, f"wrote {merged.path} ({meta['cells']} cells from {sources})")
    return merged.path
