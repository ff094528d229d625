"""`psipo methods`: every method with its loss, TRL equivalent, options and kind of exact answer."""

from __future__ import annotations

from typing import Annotated

import typer

from psipo_cli.config.choices import metavar

#: `psipo methods --format`: an aligned table (the rows of docs/methods.md) or JSON records.
METHOD_FORMATS = ("table", "json", "markdown")

app = typer.Typer()


@app.command()
def methods(
    fmt: Annotated[str, typer.Option("--format", "-f", help="table: one block per method; json: the records; "
                                     "markdown: docs/methods.md.", metavar=metavar(METHOD_FORMATS))] = "table",
) -> None:
    """List every method: its loss per comparison, TRL's `loss_type`, its options (with defaults), and the kind
    of exact answer it has (optimal, diverged, limit, unbounded, set, local), as in docs/methods.md."""
    import json

    from psipo_cli.config.validate import choice
    from psipo_cli.methods import method_table, methods_markdown, methods_text

    choice("--format", fmt, METHOD_FORMATS)
    if fmt == "json":
        print(json.dumps(method_table(), indent=2))
    elif fmt == "markdown":
        print(methods_markdown(), end="")
    else:
        print(methods_text(method_table()), end="")
