"""Run configuration: defaults, then an experiment file, then command-line flags (later wins).

An experiment file (`experiments/*.toml`) uses the flags' names: every setting of
`psipo_cli.config.settings.SETTINGS` that has a flag (`solver`, `objective`, `steps`, `lr`, `batch_size`,
`optimizer`, `seeds`, `seed`, `rm_steps`, `eps`, `lr_schedule`, ...; `docs/options.md`) but the
method-only options, plus `tau`, `name`, `description`, `problem` (a preset name, a path relative to the
experiment file, or an inline table) and `methods` (names, or tables `{method, label, rm_l2, rm_steps,
psi}`). The resolved configuration, `RunConfig`, is what `config.json` records.

Experiment files are data: a method table's `psi` may name a built-in Psi only. The one way to make psipo
run user code is an explicit `--psi module:function` on the command line (README).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from psipo_cli.config.settings import DATA, GRADIENT, METHOD, RUN, GradientSettings, having
from psipo_cli.config.taus import DEFAULT_TAUS, tau_values
from psipo_cli.errors import InputError, did_you_mean
from psipo_cli.solvers.entries import entry_spec, method_entry

#: The gradient settings a run directory records (the flag-bearing fields of `GradientSettings`).
SOLVER_KEYS: tuple[str, ...] = tuple(s.name for s in having(GRADIENT, flag=True))
#: The per-run choices (`solver`, `objective`).
RUN_KEYS: tuple[str, ...] = tuple(s.name for s in having(RUN))
#: How a preference dataset given as the problem is read (`data_format`, `skip_bad_rows`).
DATA_KEYS: tuple[str, ...] = tuple(s.name for s in having(DATA))
#: Method-only options: keys of method tables, not of the experiment file itself.
METHOD_ONLY: frozenset[str] = frozenset(s.name for s in having(METHOD) if GRADIENT not in s.roles)
EXPERIMENT_KEYS = {"name", "description", "problem", "methods", "tau", *RUN_KEYS, *DATA_KEYS, *SOLVER_KEYS}


@dataclass(frozen=True)
class RunConfig:
    """Everything a `run` or `compare` needs, resolved and validated; `to_json` is `config.json`."""

    command: str
    name: str
    problem: str | dict[str, Any]
    methods: list[dict[str, Any]]
    tau: list[float] = field(default_factory=lambda: list(DEFAULT_TAUS))
    solver: str = "both"
    objective: str = "auto"
    data_format: str = "auto"
    skip_bad_rows: bool = False
    settings: GradientSettings = field(default_factory=GradientSettings)
    description: str = ""
    base_dir: str = "."
    config_file: dict[str, str] | None = None  # the experiment file read: {path, sha256}

    def to_json(self) -> dict[str, Any]:
        """The resolved configuration, JSON-safe, the gradient settings as flat keys (`SOLVER_KEYS`)."""
        return {
            "command": self.command,
            "name": self.name,
            "problem": self.problem,
            "methods": [dict(m) for m in self.methods],
            "tau": list(self.tau),
            "solver": self.solver,
            "objective": self.objective,
            "data_format": self.data_format,
            "skip_bad_rows": self.skip_bad_rows,
            **{k: getattr(self.settings, k) for k in SOLVER_KEYS},
            "description": self.description,
            "base_dir": self.base_dir,
            "config_file": None if self.config_file is None else dict(self.config_file),
        }


def load_experiment(path: str | Path) -> dict[str, Any]:
    """The keys of an experiment file, validated for names and types (values are checked later)."""
    from psipo_cli.problem.loading import parse_toml, read_text

    path = Path(path)
    if not path.is_file():
        raise InputError("config", str(path), "no such file")
    text, (absolute, digest) = read_text(path, "config")
    data = parse_toml(text, "config", path)
    unknown = set(data) - EXPERIMENT_KEYS
    if unknown:
        _other_kind(path, data)
        k = sorted(unknown)[0]
        raise InputError(k, data[k], f"unknown key in {path.name}{did_you_mean(k, EXPERIMENT_KEYS)} "
                                     f"(keys: {', '.join(sorted(EXPERIMENT_KEYS))})")
    if "methods" in data:
        if not isinstance(data["methods"], list) or not data["methods"]:
            raise InputError("methods", data["methods"], "must be a non-empty list")
        data["methods"] = [method_entry(m) for m in data["methods"]]
        for i, entry in enumerate(data["methods"]):
            _builtin_psi(f"methods[{i}].psi", entry.get("psi"), path)
    if "tau" in data:
        data["tau"] = tau_values(data["tau"], "tau")
    if isinstance(data.get("problem"), str) and not _is_preset(data["problem"]):
        data["problem"] = str((path.parent / data["problem"]).resolve())
    data["base_dir"] = str(path.parent.resolve())
    data["config_file"] = {"path": absolute, "sha256": digest}
    data.setdefault("name", path.stem)
    return data


def _other_kind(path: Path, data: dict[str, Any]) -> None:
    """Refuse, by name, the two other TOML files psipo reads when given where an experiment file belongs:
    a problem file (its `actions`, `contexts`, ...) and a sweep grid (its `problems` axis)."""
    from psipo_cli.problem.loading import CONTEXT_KEYS, TOP_KEYS

    if "problems" in data:
        raise InputError("config", str(path), f"this is a sweep grid: use psipo sweep {path}")
    if set(data) & ((TOP_KEYS | CONTEXT_KEYS) - EXPERIMENT_KEYS):
        raise InputError("config", str(path), f"this is a problem file: use --problem {path}")


def _builtin_psi(key: str, psi: Any, path: Path) -> None:
    """A config file names built-in Psi functions only: importing `module:function` runs code, and only an
    explicit `--psi` on the command line may do that (a config file is data, maybe someone else's)."""
    from psipo_cli.methods import PSI_BUILTIN

    if psi is not None and (not isinstance(psi, str) or psi not in PSI_BUILTIN):
        raise InputError(
            key, psi, f"an experiment file may name only a built-in Psi ({', '.join(PSI_BUILTIN)}); "
            f"give module:function with `psipo run psipo --psi` instead (psipo runs no code from {path.name})",
        )


def _is_preset(name: str) -> bool:
    from psipo_cli.problem import preset_name

    return preset_name(name) is not None


def resolve(command: str, experiment: dict[str, Any], flags: dict[str, Any]) -> RunConfig:
    """Defaults < experiment file < flags (flags left at None do not override), validated: the run
    choices and `GradientSettings` from their declarations."""
    keys = {"name", "description", "problem", "methods", "tau", "base_dir", "config_file", *RUN_KEYS, *DATA_KEYS,
            *SOLVER_KEYS}
    merged: dict[str, Any] = {k: v for k, v in experiment.items() if k in keys}
    merged.update({k: v for k, v in flags.items() if v is not None})
    merged.setdefault("problem", "paper-d1")
    if "methods" not in merged:
        raise InputError("methods", None, "no method given")
    if isinstance(merged["problem"], str) and _is_preset(merged["problem"]):
        from psipo_cli.problem import preset_name

        merged["problem"] = preset_name(merged["problem"])  # an alias (D1) runs and is recorded as its preset
    problem = merged["problem"]
    merged.setdefault("name", problem if isinstance(problem, str) and _is_preset(problem) else Path(str(problem)).stem)
    for s in (*having(RUN), *having(DATA)):
        merged[s.name] = s.check(merged.get(s.name, s.default), s.name)
    settings = GradientSettings(**{k: merged.pop(k) for k in SOLVER_KEYS if k in merged})
    return RunConfig(command=command, settings=settings, **merged)


def specs_of(config: RunConfig) -> list:
    """`MethodSpec`s of the configured methods."""
    return [entry_spec(entry) for entry in config.methods]
