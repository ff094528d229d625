"""The generated docs stay in step with what they are generated from: `docs/methods.md` and the README's
method table with the registry. (`docs/options.md` and the README's defaults are checked in
tests/test_settings.py.)"""

from __future__ import annotations

from pathlib import Path

from psipo_cli.methods import METHODS, methods_markdown

ROOT = Path(__file__).resolve().parents[1]


def test_docs_methods_is_generated_from_the_registry() -> None:
    assert (ROOT / "docs" / "methods.md").read_text() == methods_markdown()


def test_readme_method_table_is_the_registrys() -> None:
    rows = [line for line in methods_markdown().splitlines() if line.startswith("|")]
    readme = (ROOT / "README.md").read_text()
    assert "\n".join(rows) in readme
    # every registered method has its row, once
    for name in METHODS:
        assert sum(line.startswith(f"| `{name}` |") for line in readme.splitlines()) == 1

