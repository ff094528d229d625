"""The `psipo` command line: `app` (the root, `psipo_cli.cli.app`) composes one Typer app per command group
(`run`, `compare`, `problem`, `plot`, `sweep`); `pipeline` is what `run` and `compare` do once parsed."""

from __future__ import annotations

from psipo_cli.cli.app import Terminated, app, fail

__all__ = ["Terminated", "app", "fail"]
