"""Shared test set-up: this directory is on `sys.path` (pytest's rootdir conftest), so test modules in
sub-packages import `support` and `reference` alike."""
