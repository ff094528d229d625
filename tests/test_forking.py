"""Work done in a forked child (`psipo_cli.forking`): the gradient engine next to the exact solve and the
imports (`api.solve`), the figures next to the solve (`figures.Painter`). A child computes what this
process would: the same values, the same errors, the same files; a child that dies is replaced by the
call here."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import psipo_cli
from psipo_cli import api, forking
from psipo_cli.errors import InputError

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="no os.fork on this platform")


def _pid_and_counts(n: int, progress=None) -> tuple[int, int]:
    """A stand-in call: reports progress `n` times, returns (its process id, n)."""
    for i in range(n):
        progress(i + 1, n)
    return os.getpid(), n


def _bad_input(progress=None) -> None:
    raise InputError("--lr", 5.0, "the iterates overflowed: use a smaller learning rate")


def _dies_in_child(parent: int, progress=None) -> int:
    if os.getpid() != parent:
        os._exit(3)  # a child killed before it could answer
    return os.getpid()


def test_forked_call_returns_the_childs_value_and_relays_progress() -> None:
    seen: list[tuple[int, int]] = []
    pid, n = forking.Forked(_pid_and_counts, 3).result(lambda done, total: seen.append((done, total)))
    assert pid != os.getpid() and n == 3
    assert seen == [(1, 3), (2, 3), (3, 3)]


def test_forked_call_raises_the_childs_error_here() -> None:
    with pytest.raises(InputError) as exc:
        forking.Forked(_bad_input).result()
    assert exc.value.line() == "--lr = 5.0: the iterates overflowed: use a smaller learning rate"


def _interrupted(progress=None) -> None:
    raise KeyboardInterrupt  # a SIGINT sent to the child (Ctrl-C reaches this process, which ends the child)


def test_an_interrupted_child_interrupts_this_process_rather_than_running_again_here() -> None:
    with pytest.raises(KeyboardInterrupt):
        forking.Forked(_interrupted).result(retry=lambda: pytest.fail("ran again after Ctrl-C"))


def _forks_a_sleeper(pipe_end: int, progress=None) -> None:
    """In the child: fork a grandchild that reports its pid and sleeps (as the painter's `draw_in_parallel`
    child draws), then wait."""
    import time

    if os.fork() == 0:
        os.write(pipe_end, str(os.getpid()).encode() + b"\n")
        time.sleep(60)
        os._exit(0)
    time.sleep(60)


def _gone(pid: int) -> bool:
    """`pid` no longer runs: no such process, or a zombie waiting for init."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc")
def test_closing_a_child_ends_what_it_forked_too() -> None:
    # A SIGINT sent to psipo alone (kill -INT, a test harness) ended the painter child but not the grandchild
    # drawing part of the figures, which then recreated the discarded temporary run directory.
    import time

    read_end, write_end = os.pipe()
    child = forking.Forked(_forks_a_sleeper, write_end)
    os.close(write_end)
    with os.fdopen(read_end) as pipe:
        grandchild = int(pipe.readline())
    assert not _gone(grandchild)
    child.close()
    deadline = time.monotonic() + 30  # SIGKILL is delivered at once; this only bounds a failure
    while not _gone(grandchild) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _gone(grandchild)


def test_a_child_that_dies_is_replaced_by_the_call_here() -> None:
    assert forking.Forked(_dies_in_child, os.getpid()).result() == os.getpid()


def _frames(solver: str) -> api.Frames:
    return psipo_cli.solve("paper-d1", ["dpo", "ipo"], [0.5, 2.0], solver=solver, steps=3000, seeds=3)


def test_solve_runs_the_engine_in_a_child_with_the_same_bits(monkeypatch: pytest.MonkeyPatch) -> None:
    # The in-process engine is the reference: the forked one must give every frame bit for bit.
    monkeypatch.setattr(forking, "fork_pays", lambda: False)
    serial = _frames("both")
    started: list[int] = []
    real = forking.Forked.__init__

    def spy(self, *args, **kwargs) -> None:
        started.append(1)
        real(self, *args, **kwargs)

    monkeypatch.setattr(forking, "fork_pays", lambda: True)
    monkeypatch.setattr(api, "FORK_SECONDS", 0.0)
    monkeypatch.setattr(forking.Forked, "__init__", spy)
    forked = _frames("both")
    assert started == [1]
    for name in ("policy", "metrics", "curves", "summary", "per_seed"):
        pd.testing.assert_frame_equal(getattr(forked, name), getattr(serial, name), check_exact=True)
    for a, b in zip(forked.runs, serial.runs, strict=True):
        np.testing.assert_array_equal(a.policy, b.policy)


def test_solve_raises_the_engines_error_from_the_child(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(forking, "fork_pays", lambda: True)
    monkeypatch.setattr(api, "FORK_SECONDS", 0.0)
    with pytest.raises(InputError, match="overflowed"):
        psipo_cli.solve("paper-d1", "ipo", 1e-3, solver="both", steps=2000, seeds=2, lr=1e6, optimizer="sgd")


def _compare(out: Path, *env: str) -> Path:
    """`psipo compare` of two methods into `out`; returns the run directory. `env`: extra NAME=value."""
    code = ("import sys; from psipo_cli import forking; " + "; ".join(env) + "; from psipo_cli.cli import app; "
            "app(args=sys.argv[1:])")
    args = ["compare", "--methods", "dpo,ipo", "--tau", "0.5,2", "--steps", "300", "--seeds", "2", "--out",
            str(out), "--name", "x", "-q", "-f", "path"]
    done = subprocess.run([sys.executable, "-c", code, *args], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return Path(done.stdout.strip())


def test_figures_painted_by_the_child_are_the_bytes_drawn_here(tmp_path: Path) -> None:
    # Without fork (the reference) vs the painter child, vs a painter child that dies before drawing.
    here = _compare(tmp_path / "here", "forking.fork_pays = lambda: False")
    child = _compare(tmp_path / "child", "forking.fork_pays = lambda: True")
    dies = _compare(tmp_path / "dies", "forking.fork_pays = lambda: True", "import os",
                    "from psipo_cli.outputs import figures",
                    "figures._paint_when_told = lambda *a, **k: os._exit(3)")
    for run in (child, dies):
        names = sorted(p.name for p in (run / "figures").iterdir())
        assert names == ["curves.png", "frontier.png", "gap.png", "policy_vs_tau.png"]
        for name in names:
            assert (run / "figures" / name).read_bytes() == (here / "figures" / name).read_bytes(), (run, name)
        for csv in sorted(here.glob("*.csv")):
            assert (run / csv.name).read_bytes() == csv.read_bytes(), (run, csv.name)
        assert "figures/curves.png" in (run / "report.md").read_text()
