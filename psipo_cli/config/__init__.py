"""Configuration below the command line and the sweep: the declarations of every setting
(`settings`), the shared checks (`validate`), the closed sets of names (`choices`) and tau lists (`taus`).

Nothing here imports numpy, the solvers or the CLI: `psipo` starts fast and every layer can use it.
"""
