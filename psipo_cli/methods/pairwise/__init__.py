"""Losses of `tau h` on the comparisons (paper Eqs. 4 and 17): one file per method, one driver (`family`)."""
