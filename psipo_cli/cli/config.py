"""Run configuration: defaults, then an experiment file, then command-line flags (later wins).

An experiment file (`experiments/*.toml`) uses the flags' names (`tau`, `solver`, `steps`, `lr`,
`batch_size`, `optimizer`, `seeds`, `seed`, `rm_steps`, `eps`, `lr_schedule`, `lr_final`, `average`,
`average_start`, `ema_decay`, `objective`, `name`), plus `problem` (a
preset name, a path relative to the experiment file, or an inline table) and `methods` (names, or tables
`{method, label, rm_l2, rm_steps, psi}`). The resolved configuration is what `config.json` records.

Experiment files are data: a method table's `psi` may name a built-in Psi only. The one way to make psipo
run user code is an explicit `--psi module:function` on the command line (DESIGN §2.1, README).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from psipo_cli.config.settings import GradientSettings
from psipo_cli.errors import InputError
from psipo_cli.solvers.entries import entry_spec, method_entry

DEFAULT_TAUS = [0.1, 0.5, 1.0, 2.0]
SOLVER_KEYS = (
    "steps", "lr", "batch_size", "optimizer", "seeds", "seed", "rm_steps", "eps",
    "lr_schedule", "lr_final", "average", "average_start", "ema_decay",
)
EXPERIMENT_KEYS = {"name", "description", "problem", "methods", "tau", "solver", "objective", *SOLVER_KEYS}


@dataclass
class RunConfig:
    """Everything a `run` or `compare` needs, resolved (JSON-safe: recorded in `config.json`)."""

    command: str
    name: str
    problem: str | dict[str, Any]
    methods: list[dict[str, Any]]
    tau: list[float] = field(default_factory=lambda: list(DEFAULT_TAUS))
    solver: str = "both"
    objective: str = "auto"
    # Gradient settings: the engine's own defaults (the paper's §5.4 values).
    steps: int = GradientSettings.steps
    lr: float = GradientSettings.lr
    batch_size: int = GradientSettings.batch_size
    optimizer: str = GradientSettings.optimizer
    seeds: int = GradientSettings.seeds
    seed: int = GradientSettings.seed
    rm_steps: int | None = GradientSettings.rm_steps
    eps: float = GradientSettings.eps
    lr_schedule: str = GradientSettings.lr_schedule
    lr_final: float = GradientSettings.lr_final
    average: str = GradientSettings.average
    average_start: float = GradientSettings.average_start
    ema_decay: float = GradientSettings.ema_decay
    description: str = ""
    base_dir: str = "."
    config_file: dict[str, str] | None = None  # the experiment file read: {path, sha256}

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


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
        k = sorted(unknown)[0]
        raise InputError(k, data[k], f"unknown key in {path.name} (keys: {', '.join(sorted(EXPERIMENT_KEYS))})")
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
    from psipo_cli.problem import PRESETS

    return name in PRESETS


def tau_values(raw: Any, key: str = "--tau") -> list[float]:
    """A tau list: numbers, or `{min, max, num, log = true}` for a grid."""
    if isinstance(raw, dict):
        try:
            lo, hi, num = float(raw["min"]), float(raw["max"]), int(raw["num"])
        except (KeyError, TypeError, ValueError):
            raise InputError(key, raw, "a grid is {min, max, num, log = true}") from None
        if num < 1 or lo <= 0 or hi < lo:
            raise InputError(key, raw, "needs 0 < min <= max and num >= 1")
        if num == 1:
            return [lo]
        if raw.get("log", True):
            return [lo * (hi / lo) ** (i / (num - 1)) for i in range(num)]
        return [lo + (hi - lo) * i / (num - 1) for i in range(num)]
    values = raw if isinstance(raw, list) else [raw]
    if not values:
        raise InputError(key, raw, "give at least one value")
    out = []
    for v in values:
        if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v) or v <= 0:
            raise InputError(key, v, "tau must be a positive finite number")
        out.append(float(v))
    return out


def resolve(command: str, experiment: dict[str, Any], flags: dict[str, Any]) -> RunConfig:
    """Defaults < experiment file < flags (flags left at None do not override)."""
    merged: dict[str, Any] = {k: v for k, v in experiment.items() if k in {f.name for f in fields(RunConfig)}}
    merged.update({k: v for k, v in flags.items() if v is not None})
    merged.setdefault("problem", "paper-d1")
    if "methods" not in merged:
        raise InputError("methods", None, "no method given")
    problem = merged["problem"]
    merged.setdefault("name", problem if isinstance(problem, str) and _is_preset(problem) else Path(str(problem)).stem)
    return RunConfig(command=command, **merged)


def specs_of(config: RunConfig) -> list:
    """`MethodSpec`s of the configured methods."""
    return [entry_spec(entry) for entry in config.methods]


def gradient_settings(config: RunConfig) -> GradientSettings:
    """`GradientSettings` of the configuration (validated there, flag names in the errors)."""
    return GradientSettings(**{k: getattr(config, k) for k in SOLVER_KEYS})
