"""The suite's own guard (tests/conftest.py): a test that runs past its limit fails with its traceback and
the run goes on — including a hypothesis test, which would otherwise take the interruption for a failing
example and keep shrinking (a fuzzer run did, for over twenty minutes)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).parent

HANGING = '''
from hypothesis import given, strategies as st

@given(st.integers())
def test_hangs(x):
    while True:
        pass

def test_after():
    assert True
'''


@pytest.mark.skipif(not hasattr(signal, "setitimer"), reason="no interval timers on this platform")
def test_a_hanging_hypothesis_test_fails_and_the_run_goes_on(tmp_path: Path) -> None:
    (tmp_path / "conftest.py").write_text((HERE / "conftest.py").read_text())
    (tmp_path / "test_hang.py").write_text(HANGING)
    env = {**os.environ, "PSIPO_TEST_TIMEOUT": "1"}
    # The subprocess's own timeout only keeps a broken guard from hanging this test too.
    out = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-o", "addopts=",
                          str(tmp_path)], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)
    assert out.returncode == 1, out.stdout
    assert "1 failed, 1 passed" in out.stdout, out.stdout
    assert "test_hang.py::test_hangs still running after 1 s" in out.stdout, out.stdout
