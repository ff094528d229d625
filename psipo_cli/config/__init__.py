"""Configuration below the command line and the sweep: the declarations of every setting
(`settings`), the shared checks (`validate`), the closed sets of names (`choices`) and tau lists (`taus`).

`settings`, `validate`, `choices` and `taus` import nothing heavy (no numpy, no solvers), so that `psipo`
starts fast and every layer can use them; `experiment` reads method tables through the registry
(`psipo_cli.solvers.entries`). Nothing here imports the command line.
"""
