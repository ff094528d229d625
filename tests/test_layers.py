"""The package's layers point one way (README: configuration below the command line and the sweep), each
command group owns its Typer app and the root composes them, and `--format json` prints the shipped
`json_document`."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "psipo_cli"


def imported(path: Path) -> set[str]:
    """Every module `path` imports (top level or inside functions), absolute names."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


@pytest.mark.parametrize("layer", ["config", "sweep", "solvers", "outputs", "objectives", "problem"])
def test_no_layer_below_the_cli_imports_it(layer: str) -> None:
    for path in sorted((PACKAGE / layer).rglob("*.py")):
        assert not {n for n in imported(path) if n.startswith("psipo_cli.cli")}, path
    for path in (PACKAGE / "api.py", PACKAGE / "schema.py", PACKAGE / "metrics.py"):
        assert not {n for n in imported(path) if n.startswith("psipo_cli.cli")}, path


#: The layers, lowest first (README, "How it is built"): a module may import only its own layer and lower ones.
LAYERS = {
    "errors": 0, "numerics": 0, "schema": 0, "student_t": 0, "forking": 0,
    "config": 1, "problem": 1, "methods": 2, "solvers": 3, "metrics": 4, "diagnose": 4,
    "api": 5, "dataset_run": 5, "dataset_gradient": 5, "outputs": 6, "sweep": 7, "cli": 8, "__init__": 9, "__main__": 9,
}


def test_every_module_imports_only_its_layer_and_lower_ones() -> None:
    upward = []
    for path in sorted(PACKAGE.rglob("*.py")):
        own = LAYERS[path.relative_to(PACKAGE).parts[0].removesuffix(".py")]
        for name in imported(path):
            parts = name.split(".")
            if parts[0] == "psipo_cli" and len(parts) > 1 and LAYERS.get(parts[1], -1) > own:
                upward.append(f"{path.relative_to(PACKAGE)} -> {name}")
    assert upward == []


def test_schema_and_settings_import_nothing_heavy() -> None:
    code = ("import sys, psipo_cli.schema, psipo_cli.config.settings, psipo_cli.config.taus; "
            "print(','.join(m for m in ('numpy', 'pandas', 'scipy', 'psipo_cli.solvers') if m in sys.modules))")
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout == "\n"


def test_each_command_group_owns_its_app_and_the_root_composes_them() -> None:
    import typer

    from psipo_cli.cli import app, compare, diagnose, methods, plot, problem, run, sweep

    groups = (run, compare, methods, problem, plot, sweep, diagnose)
    for module in groups:
        assert isinstance(module.app, typer.Typer) and module.app is not app
        # A group does not reach back to the root (no registration on it by side effect).
        assert "psipo_cli.cli.app" not in imported(Path(module.__file__)), module.__name__
    composed = {info.typer_instance for info in app.registered_groups}
    assert composed == {m.app for m in groups}
    assert not app.registered_commands  # every command comes from a group


def test_format_json_prints_json_document() -> None:
    from psipo_cli import solve
    from psipo_cli.outputs.tables import json_document

    result = subprocess.run(
        [sys.executable, "-m", "psipo_cli", "run", "ipo", "--tau", "0.5", "--tau", "2", "--solver", "exact",
         "--no-save", "--format", "json"], capture_output=True, text=True, check=True,
    )
    assert result.stdout == json_document(solve("paper-d1", "ipo", [0.5, 2.0], solver="exact"))
