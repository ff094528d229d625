"""Shared test set-up: this directory is on `sys.path` (pytest's rootdir conftest), so test modules in
sub-packages import `support` and `reference` alike.

The property-based tests draw the same examples on every machine and every run (hypothesis' `derandomize`),
so that a suite that passed here passes in CI: a failure is a property of the code, not of the day's seed.
`PSIPO_HYPOTHESIS=random pytest ...` hunts with fresh random examples instead (with `PSIPO_FUZZ_SCALE=20`
for twenty times as many; see the fuzzers' modules). A hunt reports the first failing example as drawn,
without shrinking it: with solves of up to seconds per example, shrinking can take hours.
"""

from __future__ import annotations

import os

from hypothesis import Phase, settings

settings.register_profile("psipo", derandomize=True, database=None, print_blob=True)
settings.register_profile("random", derandomize=False, database=None, print_blob=True,
                          phases=[Phase.explicit, Phase.generate])
settings.load_profile("random" if os.environ.get("PSIPO_HYPOTHESIS") == "random" else "psipo")
