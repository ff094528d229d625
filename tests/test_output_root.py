"""An unusable output root fails before any work: `run`, `compare` and `sweep` check that
`--out` can be created and written before they solve anything — exit 1 and one line, as when the run cannot
be written (README, exit codes) — and the check itself leaves nothing on disk."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from psipo_cli.cli import app
from psipo_cli.errors import OutputError

GRID = 'methods = ["ipo"]\nproblems = ["paper-d1"]\ntau = [1.0]\nseeds = 1\nsolver = "exact"\n'


def _cli(args: list[str]) -> int:
    try:
        app(args=args)
    except SystemExit as exc:
        return int(exc.code or 0)
    return 0


def _tree(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


@pytest.fixture
def solver_calls(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Every call of `psipo_cli.api.solve` (what run, compare, the sweep's grid check and its chunks call),
    refused: a test that reaches the solver has already lost."""
    calls: list[Any] = []

    def refuse(*args: Any, **kwargs: Any) -> Any:
        calls.append(args)
        raise AssertionError("the solver ran before the output root was checked")

    monkeypatch.setattr("psipo_cli.api.solve", refuse)
    return calls


def _commands(out: str, tmp_path: Path) -> list[list[str]]:
    grid = tmp_path / "grid.toml"
    grid.write_text(GRID, encoding="utf-8")
    return [
        ["run", "ipo", "--steps", "150000", "--out", out],
        ["compare", "--steps", "150000", "--out", out],
        ["sweep", str(grid), "--out", out],
    ]


def _unusable_roots(tmp_path: Path) -> list[tuple[str, str]]:
    afile = tmp_path / "afile"
    afile.write_text("", encoding="utf-8")
    roots = [
        (str(afile), f"output directory {afile} is not a directory"),
        (str(afile / "sub"), f"cannot create output directory {afile / 'sub'}: Not a directory ({afile})"),
    ]
    if Path("/proc/self").is_dir():  # Linux: /proc refuses new entries, even to the super-user
        roots.append(("/proc/nope", "cannot create output directory /proc/nope: No such file or directory (/proc)"))
    return roots


def test_unusable_out_fails_before_the_solver_runs(tmp_path: Path, solver_calls: list[Any],
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    roots = _unusable_roots(tmp_path)
    before = _tree(tmp_path)
    for out, message in roots:
        for args in _commands(out, tmp_path):
            code = _cli(args)
            err = capsys.readouterr().err
            assert code == 1, (args, err)
            assert len(err.strip().splitlines()) == 1, err
            assert err.startswith("psipo: error: ") and message in err, err
    assert solver_calls == []
    assert _tree(tmp_path) == sorted([*before, "grid.toml"])  # nothing created, not even the root


def test_read_only_root_fails_before_the_solver_runs(tmp_path: Path, solver_calls: list[Any],
                                                     monkeypatch: pytest.MonkeyPatch,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    # Root ignores permission bits: simulate a failed access check, as for any user without write access.
    commands = _commands(str(tmp_path / "ro"), tmp_path)
    (tmp_path / "ro").mkdir()
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda path, mode, **kw: real_access(path, mode, **kw) and not mode & os.W_OK)
    for args in commands:
        code = _cli(args)
        err = capsys.readouterr().err
        assert code == 1, err
        assert f"output directory {tmp_path / 'ro'} is not writable" in err
    assert solver_calls == []
    assert _tree(tmp_path / "ro") == []


def test_no_save_does_not_check_the_root(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # --no-save writes nothing, so --out does not matter.
    afile = tmp_path / "afile"
    afile.write_text("", encoding="utf-8")
    code = _cli(["run", "ipo", "--solver", "exact", "--tau", "1", "--no-save", "--format", "csv", "--out", str(afile)])
    assert code == 0 and "ipo,1.0,exact" in capsys.readouterr().out


def test_check_root_accepts_creatable_roots_and_leaves_nothing(tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    from psipo_cli.outputs.rundir import check_root

    check_root(tmp_path)
    check_root(tmp_path / "new" / "deeper", create=True)
    assert _tree(tmp_path) == []  # the probe is removed; the missing root is not created by the check
    with pytest.raises(OutputError, match="does not exist"):
        check_root(tmp_path / "new")
    monkeypatch.chdir(tmp_path)
    check_root(Path("outputs"), create=True)  # a relative root, whose parent is "."
    assert _tree(tmp_path) == []
