"""Shared test set-up: this directory is on `sys.path` (pytest's rootdir conftest), so test modules in
sub-packages import `support` and `reference` alike.

The property-based tests draw the same examples on every machine and every run (hypothesis' `derandomize`),
so that a suite that passed here passes in CI: a failure is a property of the code, not of the day's seed.
`PSIPO_HYPOTHESIS=random pytest ...` hunts with fresh random examples instead (with `PSIPO_FUZZ_SCALE=20`
for twenty times as many; see the fuzzers' modules). A hunt reports the first failing example as drawn,
without shrinking it: with solves of up to seconds per example, shrinking can take hours.

A test still running after `PSIPO_TEST_TIMEOUT` seconds (600; an hour for `-m slow` tests) fails with its
traceback, so that a hang cannot stall the suite.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator

import pytest
from hypothesis import Phase, settings

settings.register_profile("psipo", derandomize=True, database=None, print_blob=True)
settings.register_profile("random", derandomize=False, database=None, print_blob=True,
                          phases=[Phase.explicit, Phase.generate])
settings.load_profile("random" if os.environ.get("PSIPO_HYPOTHESIS") == "random" else "psipo")

TEST_TIMEOUT = float(os.environ.get("PSIPO_TEST_TIMEOUT", "600"))
SLOW_TIMEOUT = 3600.0


class TestTimeout(BaseException):
    """Raised in a test past its time limit. Not an `Exception`: hypothesis would take one for a failing
    example and go on shrinking (re-running examples that may each take as long), whereas this one ends
    the test at once and pytest reports it as failed."""

    __test__ = False  # not a test class, whatever its name


@pytest.fixture(autouse=True)
def _time_limit(request: pytest.FixtureRequest) -> Iterator[None]:
    if not hasattr(signal, "setitimer"):  # no interval timers here (Windows): no limit
        yield
        return
    limit = SLOW_TIMEOUT if request.node.get_closest_marker("slow") else TEST_TIMEOUT

    def expire(signum: int, frame: object) -> None:
        raise TestTimeout(f"{request.node.nodeid} still running after {limit:g} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, limit)  # a forked child does not inherit the timer
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
