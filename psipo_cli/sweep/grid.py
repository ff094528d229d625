"""The sweep grid: a TOML file read, validated and resolved into a `SweepGrid`.

A grid file uses the `run` flags' names (`experiments/sweep-example.toml`)::

    name = "bt-sizes"                      # directory suffix (default: the file's stem)
    methods = ["rlhf", "dpo", { method = "ipo", label = "ipo" }]   # names or tables, as in experiments
    tau = { min = 0.05, max = 5, num = 20, log = true }            # or a list of numbers
    seeds = 10                             # runs (and, for sampled problems, datasets) per cell
    problems = ["paper-d1", "problems/*.toml", "bt-finite"]         # presets, files, globs (relative)
    n = [10, 100, 1000]                    # dataset sizes of sampled problems (optional)
    solver = "gradient"                    # exact | gradient | both (default both, as `psipo run`)
    steps = 2000                           # and lr, batch_size, optimizer, seed, rm_steps, eps, objective,
                                           # lr_schedule, lr_final, average, average_start, ema_decay
    rm_l2 = 0.1                            # method options (rm_l2, psi) apply to the methods that take them
    lr = [0.01, 0.1]                       # a list sweeps a setting or method option (a results.csv column)
    chunk_cells = 64                       # cells per chunk (default: about 1024 runs per chunk)

`n` overrides `sample.n` of every sampled context of every sampled problem. A problem whose data are not
sampled (fixed pairs, or no data) has no dataset size to sweep: it is solved once, with an empty `n`
column, whatever `n` lists — so one grid can mix fixed datasets and sampled ones. `n` given while no
problem samples its data is an error (it would be silently meaningless).

Every check happens here, before any work starts or any directory exists, and fails with one
`InputError` naming the key and the value (and the file).

Two grids are *the same sweep* (for `--resume` and `merge`) when their `identity()` agrees: the same
methods and options, tau values, seeds, problems (by name and by content — editing a problem file makes a
different sweep), dataset sizes, solver settings (a swept one as its list) and chunking. Comments,
formatting, `name` and `description` do not count.
"""

from __future__ import annotations

import glob
import hashlib
import itertools
import json
import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from psipo_cli.config import choices
from psipo_cli.config.settings import GRADIENT, METHOD, RUN, GradientSettings, having, setting
from psipo_cli.errors import InputError

FORMAT_VERSION = 1
SOLVERS = choices.SOLVERS
OBJECTIVES = choices.OBJECTIVES
#: Top-level keys passed to `GradientSettings` (with `seeds`), recorded in the identity with their default
#: when the grid does not give them (the settings older than schedules and averaging).
SETTING_DEFAULTS: dict[str, Any] = {
    s.name: s.default for s in having(GRADIENT, flag=True) if s.identity
}
#: Settings added later: recorded only when the grid gives them, so that the identity of a grid that does
#: not use them is unchanged.
OPTIONAL_SETTINGS = tuple(s.name for s in having(GRADIENT, flag=True) if not s.identity and s.name != "seeds")
#: Top-level keys that are method options: applied to every method that accepts them (unless its own
#: table sets them), as `psipo_cli.solve(..., rm_l2=...)` does.
METHOD_OPTION_KEYS = tuple(s.name for s in having(METHOD) if GRADIENT not in s.roles)
#: Keys whose value may be a list: an axis of the sweep (every solver setting and method option).
AXIS_KEYS = (*SETTING_DEFAULTS, *OPTIONAL_SETTINGS, *METHOD_OPTION_KEYS)
GRID_KEYS = {
    "name", "description", "methods", "tau", "seeds", "problems", "n", "chunk_cells", *(s.name for s in having(RUN)),
    *AXIS_KEYS,
}
DEFAULT_SEEDS = 10
#: Auto chunk size: about this many runs (cells × seeds) per chunk — large enough for the vectorised
#: engine to amortise its per-step overhead, small enough that a grid splits over a few workers and an
#: interrupted sweep loses little.
RUNS_PER_CHUNK = 1024
GLOB_CHARS = set("*?[")


@dataclass(frozen=True)
class ProblemEntry:
    """One problem of the grid.

    Attributes
    ----------
    key : str
        Its name in `results.csv`: the preset name, the file path relative to the grid file, or the
        `name` of an inline table.
    spec : str or dict
        What `get_problem` takes: a preset name, an absolute path, or an inline table.
    sampled : bool
        Whether some context samples its data (`sample = {n, seed}`): only then does `n` apply.
    digest : str
        SHA-256 of the resolved problem (actions, models, data): part of the sweep's identity.
    """

    key: str
    spec: str | dict[str, Any]
    sampled: bool
    digest: str

    @property
    def file(self) -> str | None:
        """The problem file as the grid lists it (`key`), or None for a preset or an inline table."""
        from psipo_cli.problem import preset_name

        return self.key if isinstance(self.spec, str) and preset_name(self.spec) is None else None


@dataclass(frozen=True)
class SweepGrid:
    """A validated, resolved grid (JSON-safe through `to_json`; `from_json` reads it back)."""

    name: str
    description: str
    config: str
    methods: tuple[dict[str, Any], ...]
    tau: tuple[float, ...]
    seeds: int
    problems: tuple[ProblemEntry, ...]
    n: tuple[int, ...]
    solver: str
    objective: str
    settings: dict[str, Any]
    chunk_cells: int
    loaded: tuple[Any, ...] = field(default=(), compare=False, repr=False)  # the `Problem`s, when loaded

    def identity(self) -> dict[str, Any]:
        """What makes two grids the same sweep (see the module docstring)."""
        return {
            "format": FORMAT_VERSION,
            "methods": [dict(m) for m in self.methods],
            "tau": list(self.tau),
            "seeds": self.seeds,
            "problems": [{"key": p.key, "digest": p.digest} for p in self.problems],
            "n": list(self.n),
            "solver": self.solver,
            "objective": self.objective,
            "settings": dict(self.settings),
            "chunk_cells": self.chunk_cells,
        }

    def digest(self) -> str:
        """SHA-256 of `identity()` as canonical JSON (floats in round-trip form)."""
        return hashlib.sha256(canonical_json(self.identity()).encode("utf-8")).hexdigest()

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "description": self.description,
            "config": self.config,
            **self.identity(),
            "problems": [
                {"key": p.key, "spec": p.spec, "sampled": p.sampled, "digest": p.digest} for p in self.problems
            ],
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> SweepGrid:
        return cls(
            name=data["name"],
            description=data.get("description", ""),
            config=data.get("config", ""),
            methods=tuple(data["methods"]),
            tau=tuple(float(t) for t in data["tau"]),
            seeds=int(data["seeds"]),
            problems=tuple(
                ProblemEntry(p["key"], p["spec"], bool(p["sampled"]), p["digest"]) for p in data["problems"]
            ),
            n=tuple(int(v) for v in data["n"]),
            solver=data["solver"],
            objective=data["objective"],
            settings=dict(data["settings"]),
            chunk_cells=int(data["chunk_cells"]),
        )

    def columns(self) -> list[str]:
        """The columns of `results.csv` (`psipo_cli.sweep.compute.result_columns`)."""
        from psipo_cli.sweep.compute import result_columns

        return result_columns(self.axes(), files=self.reads_files())

    def reads_files(self) -> bool:
        """Whether some problem comes from a file (then `results.csv` has a `problem_file` column)."""
        return any(p.file is not None for p in self.problems)

    def axes(self) -> tuple[str, ...]:
        """The swept settings — the keys given a list — in declaration order (`results.csv` columns)."""
        return tuple(k for k in AXIS_KEYS if isinstance(self.settings.get(k), list))

    def variants(self) -> list[dict[str, Any]]:
        """Every combination of the swept gradient settings, in grid order (`[{}]` when none is swept).
        Cells of different variants go through different engine calls; cells of one variant share one."""
        keys = [k for k in self.axes() if k not in METHOD_OPTION_KEYS]
        return [dict(zip(keys, values, strict=True)) for values in itertools.product(*(self.settings[k] for k in keys))]

    def gradient_settings(self, variant: dict[str, Any] | None = None) -> GradientSettings:
        """`GradientSettings` of the grid (its `seeds` included) with one variant's swept values."""
        fixed = {k: v for k, v in self.settings.items() if k not in METHOD_OPTION_KEYS and not isinstance(v, list)}
        return GradientSettings(seeds=self.seeds, **fixed, **(variant or {}))

    def lanes(self) -> list[SweptMethod]:
        """The grid's methods with the swept method options expanded, in grid order: a method that takes a
        swept option (and does not set it in its own table) becomes one method per value. They are lanes of
        one engine call, like the methods themselves."""
        from psipo_cli.methods import get_method
        from psipo_cli.solvers.entries import entry_spec

        swept = [k for k in self.axes() if k in METHOD_OPTION_KEYS]
        out = []
        for entry in self.methods:
            accepted = get_method(str(entry["method"])).options
            keys = [k for k in swept if k in accepted and k not in entry]
            for values in itertools.product(*(self.settings[k] for k in keys)):
                chosen = dict(zip(keys, values, strict=True))
                internal = str(entry["label"]) + "".join(f"[{k}={v!r}]" for k, v in chosen.items())
                spec = entry_spec({**entry, **chosen, "label": internal})
                shown = tuple((k, chosen.get(k, entry.get(k))) for k in swept)
                out.append(SweptMethod(spec, str(entry["label"]), shown))
        return out

    def specs(self) -> list[Any]:
        """The `MethodSpec`s of the grid's methods (swept options expanded), in grid order."""
        return [lane.spec for lane in self.lanes()]


@dataclass(frozen=True)
class SweptMethod:
    """A method of the grid with one value of each swept method option: its `spec` (a unique label), its
    name in `results.csv` (the grid's label) and the swept options' values (None: it does not take one)."""

    spec: Any
    label: str
    values: tuple[tuple[str, Any], ...] = ()


def canonical_json(obj: Any) -> str:
    """Sorted keys, no whitespace, no NaN: the same data always give the same text."""
    from psipo_cli.outputs.formatting import json_safe

    return json.dumps(json_safe(obj), sort_keys=True, separators=(",", ":"), allow_nan=False)


# --------------------------------------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------------------------------------


def load_grid(path: str | Path) -> SweepGrid:
    """Read, validate and resolve a grid file; every error is an `InputError` located in the file."""
    path = Path(path)
    if not path.is_file():
        raise InputError("CONFIG", str(path), "no such file")
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise InputError("CONFIG", str(path), f"not valid TOML ({exc})") from None
    try:
        return resolve_grid(data, path.parent.resolve(), str(path.resolve()), default_name=path.stem)
    except InputError as exc:
        raise exc.located(str(path)) from None


def resolve_grid(data: dict[str, Any], base_dir: Path, config: str = "", default_name: str = "sweep") -> SweepGrid:
    """Validate the parsed table of a grid file (paths relative to `base_dir`) and resolve it."""
    unknown = sorted(set(data) - GRID_KEYS)
    if unknown:
        k = unknown[0]
        hint = " (did you mean problems?)" if k == "problem" else ""
        raise InputError(k, data[k], f"unknown key{hint} (keys: {', '.join(sorted(GRID_KEYS))})")
    for required in ("methods", "problems"):
        if required not in data:
            raise InputError(required, None, "missing (a sweep needs methods and problems)")

    name = data.get("name", default_name)
    if not isinstance(name, str) or not name.strip():
        raise InputError("name", name, "must be a non-empty string")
    description = data.get("description", "")
    if not isinstance(description, str):
        raise InputError("description", description, "must be a string")

    solver = _choice(data, "solver", SOLVERS, "both")
    objective = _choice(data, "objective", OBJECTIVES, "auto")
    seeds = _positive_int(data, "seeds", DEFAULT_SEEDS)
    taus = _taus(data.get("tau", [0.1, 0.5, 1.0, 2.0]))
    settings = _settings(data, seeds)
    shared = {k: data[k] for k in METHOD_OPTION_KEYS if k in data}
    methods = _methods(data["methods"], {k: v for k, v in shared.items() if not isinstance(v, list)})
    settings.update(_method_axes(methods, {k: v for k, v in shared.items() if isinstance(v, list)}))
    problems, loaded = _problems(data["problems"], base_dir)
    n = _sizes(data.get("n"))
    if n and not any(p.sampled for p in problems):
        raise InputError("n", data["n"], "no problem in problems samples its data (sample = {n, seed})")
    chunk_cells = _positive_int(data, "chunk_cells", max(1, RUNS_PER_CHUNK // seeds))

    grid = SweepGrid(
        name=name.strip(),
        description=description,
        config=config,
        methods=tuple(methods),
        tau=tuple(taus),
        seeds=seeds,
        problems=tuple(problems),
        n=tuple(n),
        solver=solver,
        objective=objective,
        settings=settings,
        chunk_cells=chunk_cells,
        loaded=tuple(loaded),
    )
    _check_objectives(grid)
    return grid


def _choice(data: dict[str, Any], key: str, choices: tuple[str, ...], default: str) -> str:
    value = data.get(key, default)
    if value not in choices:
        raise InputError(key, value, f"must be one of {', '.join(choices)}")
    return str(value)


def _positive_int(data: dict[str, Any], key: str, default: int) -> int:
    value = data.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InputError(key, value, "must be a positive integer")
    return value


def _taus(raw: Any) -> list[float]:
    from psipo_cli.config.taus import tau_values

    if isinstance(raw, list) and not raw:
        raise InputError("tau", raw, "give at least one value")
    values = tau_values(raw, "tau")
    if len(set(values)) != len(values):
        dup = next(v for v in values if values.count(v) > 1)
        raise InputError("tau", raw, f"tau {dup!r} is listed twice")
    return values


def _sizes(raw: Any) -> list[int]:
    if raw is None:
        return []
    values = raw if isinstance(raw, list) else [raw]
    if not values:
        raise InputError("n", raw, "give at least one dataset size (or leave n out)")
    for v in values:
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise InputError("n", v, "dataset sizes must be positive integers")
    if len(set(values)) != len(values):
        dup = next(v for v in values if values.count(v) > 1)
        raise InputError("n", raw, f"n = {dup} is listed twice")
    return list(values)


def _axis(key: str, raw: Any) -> list[Any]:
    """A swept setting's values: a non-empty list without repeats, each valid (its declaration) and
    normalised (`lr = 1` is `lr = 1.0`)."""
    if not raw:
        raise InputError(key, raw, "give at least one value to sweep")
    values = [setting(key).normalise(v) for v in raw]
    for v in values:
        if values.count(v) > 1:
            raise InputError(key, raw, f"{key} = {v!r} is listed twice")
    return values


def _settings(data: dict[str, Any], seeds: int) -> dict[str, Any]:
    """The gradient settings (a list sweeps one), validated by `GradientSettings` itself for every
    combination (its flag names mapped back to the grid's keys)."""
    settings = {k: data.get(k, default) for k, default in SETTING_DEFAULTS.items()}
    settings.update({k: data[k] for k in OPTIONAL_SETTINGS if k in data})
    settings = {k: _axis(k, v) if isinstance(v, list) else setting(k).normalise(v) for k, v in settings.items()}
    swept = [k for k, v in settings.items() if isinstance(v, list)]
    fixed = {k: v for k, v in settings.items() if k not in swept}
    for values in itertools.product(*(settings[k] for k in swept)):
        try:
            GradientSettings(seeds=seeds, **fixed, **dict(zip(swept, values, strict=True)))
        except InputError as exc:
            key = exc.key.lstrip("-").replace("-", "_")
            raise InputError(key, exc.value, exc.reason) from None
        except TypeError as exc:  # a wrong type that the dataclass could not even compare
            raise InputError("settings", settings, str(exc)) from None
    return settings


def _method_axes(methods: list[dict[str, Any]], swept: dict[str, list[Any]]) -> dict[str, list[Any]]:
    """Swept method options (`rm_l2 = [0, 0.1]`): each value valid, and some method takes the option."""
    from psipo_cli.methods import get_method

    out = {}
    for key, raw in swept.items():
        if not any(key in get_method(str(m["method"])).options for m in methods):
            raise InputError(key, raw, "no method in methods takes this option")
        out[key] = _axis(key, raw)
        for value in out[key]:
            setting(key).check(value, key)
    return out


def _methods(raw: Any, shared: dict[str, Any]) -> list[dict[str, Any]]:
    from psipo_cli.methods import get_method
    from psipo_cli.solvers.entries import entry_spec, method_entry

    if not isinstance(raw, list) or not raw:
        raise InputError("methods", raw, "must be a non-empty list of names or tables {method = NAME, ...}")
    entries = []
    used = set()
    for item in raw:
        try:
            entry = method_entry(item, "methods")
        except InputError as exc:
            if exc.key == "method":  # get_method's key: say which grid key it came from
                raise InputError("methods", exc.value, exc.reason) from None
            raise
        accepted = get_method(str(entry["method"])).options
        for key, value in shared.items():
            if key in accepted:
                used.add(key)
                entry.setdefault(key, value)
        for key in set(entry) - {"method", "label"}:
            entry[key] = setting(key).normalise(entry[key])
        entry["label"] = str(entry.get("label") or entry["method"])
        entries.append(entry)
    unused = sorted(set(shared) - used)
    if unused:
        raise InputError(unused[0], shared[unused[0]], "no method in methods takes this option")
    labels = [e["label"] for e in entries]
    for label in labels:
        if labels.count(label) > 1:
            raise InputError("methods", label, "label used twice: give each method table its own label")
    # Building the specs checks option names once more (the same check `psipo run` makes).
    for e in entries:
        entry_spec(e)
    return entries


def _absolute_csv_paths(table: dict[str, Any], base_dir: Path) -> dict[str, Any]:
    """An inline problem table with its `pairs_csv` paths made absolute (relative to the grid file), so that
    workers in other directories, or on other machines, read the same files."""

    def fix(layer: dict[str, Any]) -> dict[str, Any]:
        path = layer.get("pairs_csv")
        if isinstance(path, str) and path and not os.path.isabs(path):
            return {**layer, "pairs_csv": str((base_dir / path).resolve())}
        return layer

    out = fix(table)
    if isinstance(out.get("contexts"), list):
        out = {**out, "contexts": [fix(c) if isinstance(c, dict) else c for c in out["contexts"]]}
    return out


def _problems(raw: Any, base_dir: Path) -> tuple[list[ProblemEntry], list[Any]]:
    from psipo_cli.problem import get_problem, preset_name
    from psipo_cli.problem.presets import presets_text

    items = raw if isinstance(raw, list) else [raw]
    if not items:
        raise InputError("problems", raw, "give at least one problem (preset, file or glob)")
    resolved: list[tuple[str, str | dict[str, Any]]] = []
    for item in items:
        if isinstance(item, dict):
            name = item.get("name")
            if not isinstance(name, str) or not name:
                raise InputError("problems", item, "an inline problem table needs a name")
            resolved.append((name, _absolute_csv_paths(item, base_dir)))
        elif not isinstance(item, str) or not item.strip():
            raise InputError("problems", item, "each problem is a preset name, a file, a glob or a table")
        elif preset_name(item) is not None:
            resolved.append((preset_name(item), preset_name(item)))  # an alias (D1) is its preset
        elif GLOB_CHARS & set(item):
            pattern = item if os.path.isabs(item) else str(base_dir / item)
            matches = sorted(m for m in glob.glob(pattern, recursive=True) if os.path.isfile(m))
            if not matches:
                raise InputError("problems", item, f"matches no file (relative to {base_dir})")
            resolved.extend((_file_key(m, base_dir), str(Path(m).resolve())) for m in matches)
        else:
            target = Path(item) if os.path.isabs(item) else base_dir / item
            if not target.is_file():
                raise InputError(
                    "problems", item, f"no such file (relative to {base_dir}) and not a preset ({presets_text()})"
                )
            resolved.append((_file_key(str(target), base_dir), str(target.resolve())))
    keys = [k for k, _ in resolved]
    for key in keys:
        if keys.count(key) > 1:
            raise InputError("problems", key, "listed twice (directly or through a glob)")
    entries, loaded = [], []
    for key, spec in resolved:
        try:
            problem = get_problem(spec)
        except InputError as exc:
            if exc.where:
                raise
            raise InputError(f"problems[{key}].{exc.key}", exc.value, exc.reason) from None
        entries.append(ProblemEntry(key, spec, problem.is_sampled, problem_digest(problem)))
        loaded.append(problem)
    return entries, loaded


def _file_key(path: str, base_dir: Path) -> str:
    """A file's name in the results: relative to the grid file when below it, else absolute."""
    absolute = Path(path).resolve()
    try:
        return absolute.relative_to(base_dir).as_posix()
    except ValueError:
        return absolute.as_posix()


def problem_digest(problem: Any) -> str:
    """SHA-256 of what a problem *is* (not where it was read from)."""
    from psipo_cli.problem import problem_table

    table = problem_table(problem)
    table.pop("source", None)
    return hashlib.sha256(canonical_json(table).encode("utf-8")).hexdigest()


def _check_objectives(grid: SweepGrid) -> None:
    """Every problem supports the requested objective (`resolve_objective`'s check, keyed for the grid)."""
    from psipo_cli.solvers.inputs import resolve_objective

    for entry, problem in zip(grid.problems, grid.loaded, strict=True):
        try:
            resolve_objective(problem, grid.objective)
        except InputError as exc:
            raise InputError("objective", grid.objective, f"{exc.reason} (problem {entry.key})") from None


def _few(steps: Any) -> Any:
    """A valid step count capped at 2 (for the probe run); anything invalid stays, to be reported."""
    return min(steps, 2) if isinstance(steps, int) and not isinstance(steps, bool) and steps >= 1 else steps


def with_n(problem: Any, n: int | None) -> Any:
    """`problem` with `sample.n = n` in every sampled context (`n = None`: unchanged)."""
    if n is None or not problem.is_sampled:
        return problem
    from dataclasses import replace

    from psipo_cli.problem import Sample

    contexts = tuple(
        replace(c, sample=Sample(n=n, seed=c.sample.seed)) if c.sample is not None else c for c in problem.contexts
    )
    return problem.with_contexts(contexts)


def check_solvable(grid: SweepGrid) -> None:
    """Check, before any work starts, that every cell of the grid can be solved; `InputError` naming the
    first cell that cannot (problem, dataset size, method, seed).

    Two passes per problem × dataset size, both cheap (no optimisation on the sweep's own settings):

    1. every dataset the sweep will use — dataset `k` for seed `k`, `k < seeds`, when the problem samples
       its data (README, sampled datasets) — is drawn, and every method's inputs are built from it
       (`method_inputs`: the counts, or for ΨPO on data the empirical preferences, which need every
       compared pair of `supp mu_hat` observed). A draw that leaves a pair unobserved fails here, naming
       the method and the seed, rather than in a worker halfway through the sweep;
    2. every method is solved once, at one tau and with a token gradient run (2 steps, 1 seed): errors
       that only the solvers see (an unknown `psi`, a negative `rm_l2`).

    Drawing costs about 0.1 s per million comparisons and seed.
    """
    from dataclasses import replace

    from psipo_cli import api
    from psipo_cli.methods import METHODS, get_method
    from psipo_cli.problem import realise
    from psipo_cli.solvers.inputs import DATASET, method_inputs, resolve_objective

    specs = grid.specs()
    probe = replace(grid.gradient_settings(), steps=2, seeds=1, rm_steps=None)
    few = [replace(s, options=tuple((k, _few(v) if k == "rm_steps" else v) for k, v in s.options)) for s in specs]
    options = {o for m in METHODS.values() for o in m.options}

    def located(exc: InputError, cell: str) -> InputError:
        key = exc.key
        if key.startswith("--"):  # a flag name from the solvers: say it as the grid spells it
            key = key[2:].replace("-", "_")
            key = f"methods.{key}" if key in options else key
        return InputError(key, exc.value, f"{exc.reason} ({cell})", exc.where)

    for entry, problem in zip(grid.problems, grid.loaded, strict=True):
        for n in (grid.n or [None]) if entry.sampled else [None]:
            concrete = with_n(problem, n)
            where = f"problem {entry.key}" + ("" if n is None else f", n = {n}")
            objective = resolve_objective(concrete, grid.objective)
            datasets = grid.seeds if concrete.is_sampled and objective == DATASET else 1
            for seed in range(datasets):
                realised = realise(concrete, seed)
                for spec in specs:
                    method = get_method(spec.method)
                    try:
                        for ctx in realised.contexts:
                            method_inputs(ctx, method, objective, concrete.actions)
                    except InputError as exc:
                        cell = f"{where}, method {spec.label}" + (f", seed {seed}" if datasets > 1 else "")
                        raise located(exc, cell) from None
            try:
                api.solve(concrete, few, [grid.tau[0]], solver=grid.solver, objective=objective, settings=probe)
            except InputError as exc:
                raise located(exc, where) from None
