"""The command line follows Typer/Click users' habits: `--version`, completion, help that shows choices and
values, one error line `psipo: <key> = <value>: <reason>`, comma lists, pointed messages for natural
mistakes (subprocesses, as a shell user runs psipo)."""

from __future__ import annotations

import csv
import io
import subprocess
import sys
from pathlib import Path

import pytest

from psipo_cli import __version__


def psipo(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "psipo_cli", *args], capture_output=True, text=True, cwd=cwd, timeout=300
    )


def one_error_line(result: subprocess.CompletedProcess[str]) -> str:
    """The failure's single stderr line (exit 2, nothing on stdout, no traceback, no debug hint)."""
    assert result.returncode == 2, (result.returncode, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert result.stdout == ""
    assert "PSIPO_DEBUG" not in lines[0] and "Traceback" not in lines[0]
    assert lines[0].startswith("psipo: ")
    return lines[0]


# -- 1. --version and shell completion --------------------------------------------------------------------


def test_version_flag_prints_the_version_as_the_version_command_does() -> None:
    flag, command = psipo("--version"), psipo("version")
    assert flag.returncode == 0 and command.returncode == 0
    assert flag.stdout.strip() == command.stdout.strip() == __version__


def test_shell_completion_is_offered_and_shows_a_script() -> None:
    helped = psipo("--help")
    assert "--install-completion" in helped.stdout and "--show-completion" in helped.stdout
    shown = psipo("--show-completion", "bash")
    assert shown.returncode == 0 and "complete" in shown.stdout  # bash's `complete` builtin registers it


def test_top_level_help_shows_each_commands_whole_first_sentence() -> None:
    from psipo_cli.cli import app as root

    commands = psipo("--help").stdout.partition("Commands:")[2]
    out = " ".join(commands.split())  # rewrapped: compare words, not line breaks
    assert "..." not in out
    for group in root.registered_groups:
        if group.name is not None:  # a command group (`problem`): its own help lists its commands
            continue
        for info in group.typer_instance.registered_commands:
            sentence = " ".join(info.callback.__doc__.split("\n\n")[0].split()).partition(". ")[0]
            assert sentence in out, sentence


# -- 2. --help shows choices as choices and placeholders that read as values -------------------------------


def options_section(*command: str) -> str:
    result = psipo(*command, "--help")
    assert result.returncode == 0, result.stderr
    return result.stdout.partition("Options:")[2]


@pytest.mark.parametrize("command", [("run",), ("compare",), ("sweep",), ("merge",), ("plot",)])
def test_help_placeholders_are_values_not_python_types(command: tuple[str, ...]) -> None:
    text = options_section(*command)
    for python_type in ("<str>", "<int>", "<float>", "<path>", "<list[float]>", "<bool>"):
        assert python_type not in text, (command, python_type)


def test_help_shows_each_closed_set_as_click_choices() -> None:
    from psipo_cli.config import choices

    run_help = " ".join(options_section("run").split())
    for flag, values in (("--solver", choices.SOLVERS), ("--objective", choices.OBJECTIVES),
                         ("--optimizer", choices.OPTIMIZERS), ("--lr-schedule", choices.SCHEDULES),
                         ("--average", choices.AVERAGES), ("--format", choices.FORMATS),
                         ("--table", choices.TABLES)):
        assert f"{flag} [{'|'.join(values)}]" in run_help, flag
    sweep_help = " ".join(options_section("sweep").split())
    assert f"--executor [{'|'.join(choices.EXECUTORS)}]" in sweep_help


# -- 3. one error style: `psipo: <key> = <value>: <reason>`, from Click's usage errors too ----------------


@pytest.mark.parametrize(("args", "line"), [
    # A setting's word that is no number: the declaration's reason, as for any other invalid value.
    (["run", "dpo", "--steps", "abc"], "psipo: --steps = 'abc': must be a positive integer"),
    (["run", "dpo", "--lr", "fast"], "psipo: --lr = 'fast': must be a positive finite number"),
    (["run", "dpo", "--solver", "fast"], "psipo: --solver = 'fast': must be one of exact, gradient, both"),
    # Click's own errors, reworded: an unknown option, a missing argument, an extra argument.
    (["run", "dpo", "--stepz", "5"], "psipo: option = '--stepz': not an option of psipo run (did you mean --steps"),
    (["run"], "psipo: method = None: required"),
    (["run", "dpo", "ipo"], "psipo: argument = 'ipo': unexpected extra argument of psipo run"),
    (["sweep", "grid.toml", "--jobs", "many"], "psipo: --jobs = 'many': "),
    (["run", "dpo", "--tau"], "psipo: --tau = None: "),
])
def test_every_bad_input_is_one_key_value_reason_line(args: list[str], line: str) -> None:
    assert one_error_line(psipo(*args)).startswith(line)


def test_output_errors_name_the_path_without_the_debug_hint(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory", encoding="utf-8")
    result = psipo("run", "dpo", "--solver", "exact", "--tau", "1", "--out", str(blocker), "-q")
    assert result.returncode == 1
    assert result.stderr.startswith("psipo: error: ") and str(blocker) in result.stderr
    assert "PSIPO_DEBUG" not in result.stderr


# -- 4. comma lists wherever a flag repeats ------------------------------------------------------------------


def summary_rows(*args: str) -> list[tuple[str, float]]:
    result = psipo(*args, "--solver", "exact", "--no-save", "-q", "--format", "csv", "--table", "summary")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    header = lines[0].split(",")
    m, t = header.index("method"), header.index("tau")
    return [(cells[m], float(cells[t])) for cells in (line.split(",") for line in lines[1:])]


def test_tau_and_beta_take_comma_lists_like_methods() -> None:
    # The same tau grid three ways: a comma list, repeated flags, and the alias mixed in.
    listed = summary_rows("run", "dpo", "--tau", "0.5,1,2")
    repeated = summary_rows("run", "dpo", "--tau", "0.5", "--tau", "1", "--tau", "2")
    mixed = summary_rows("run", "dpo", "--beta", "0.5,1", "--tau", "2")
    assert sorted(listed) == sorted(repeated) == sorted(mixed) == [("dpo", 0.5), ("dpo", 1.0), ("dpo", 2.0)]
    methods = summary_rows("compare", "--methods", "dpo", "--methods", "ipo,rlhf", "--tau", "1")
    assert sorted(methods) == [("dpo", 1.0), ("ipo", 1.0), ("rlhf", 1.0)]


def test_a_bad_item_of_a_comma_list_is_named() -> None:
    assert one_error_line(psipo("run", "dpo", "--tau", "0.5,abc")) == (
        "psipo: --tau = 'abc': tau must be a positive finite number")
    assert one_error_line(psipo("run", "dpo", "--beta", "1,0")) == (
        "psipo: --beta = 0.0: tau must be a positive finite number")


# -- 5. pointed messages for natural mistakes; the paper's names as preset aliases -------------------------


def test_a_problem_file_or_a_sweep_grid_given_to_compare_says_which_command_takes_it(tmp_path: Path) -> None:
    problem = tmp_path / "two.toml"
    problem.write_text('actions = ["a", "b"]\npi_ref = [0.5, 0.5]\nrewards = [1, 0]\n', encoding="utf-8")
    assert one_error_line(psipo("compare", str(problem))) == (
        f"psipo: config = '{problem}': this is a problem file: use --problem {problem}")
    grid = tmp_path / "grid.toml"
    grid.write_text('problems = ["paper-d1"]\nmethods = ["dpo"]\n', encoding="utf-8")
    assert one_error_line(psipo("compare", str(grid))) == (
        f"psipo: config = '{grid}': this is a sweep grid: use psipo sweep {grid}")


def test_a_space_separated_method_list_is_answered_with_the_comma_list(tmp_path: Path) -> None:
    line = one_error_line(psipo("compare", "--methods", "dpo", "ipo", cwd=tmp_path))
    assert line.endswith("give several methods as --methods dpo,ipo")
    line = one_error_line(psipo("compare", "--methods", "dpo", "ipo", "rlhf", cwd=tmp_path))
    assert "psipo compare --methods dpo,ipo,rlhf" in line
    line = one_error_line(psipo("run", "dpo", "ipo", cwd=tmp_path))
    assert line.startswith("psipo: argument = 'ipo': ") and "psipo compare --methods dpo,ipo" in line
    assert not any(tmp_path.iterdir())  # nothing written


def test_an_unknown_preset_lists_the_presets_with_a_did_you_mean(tmp_path: Path) -> None:
    from psipo_cli.problem import PRESETS

    line = one_error_line(psipo("run", "dpo", "--problem", "paper-d2", cwd=tmp_path))
    assert line.startswith("psipo: --problem = 'paper-d2': not a preset nor a file (did you mean paper-d")
    assert all(name in line for name in PRESETS)
    assert one_error_line(psipo("run", "dpo", "--problem", "missing.toml", cwd=tmp_path)) == (
        "psipo: --problem = 'missing.toml': no such file")  # a file name stays a file name


def test_unknown_keys_in_problem_and_experiment_files_get_a_did_you_mean(tmp_path: Path) -> None:
    problem = tmp_path / "p.toml"
    problem.write_text('actions = ["a", "b"]\npi_reff = [0.5, 0.5]\nrewards = [1, 0]\n', encoding="utf-8")
    assert one_error_line(psipo("problem", "validate", str(problem))).endswith(
        "pi_reff = [0.5, 0.5]: unknown key (did you mean pi_ref?)")
    contexts = tmp_path / "c.toml"
    contexts.write_text('actions = ["a", "b"]\n[[contexts]]\nname = "x"\npi_ref = [0.5, 0.5]\nrewardz = [1, 0]\n',
                        encoding="utf-8")
    assert "contexts[0].rewardz = [1, 0]: unknown key (did you mean rewards?)" in one_error_line(
        psipo("problem", "validate", str(contexts)))
    experiment = tmp_path / "e.toml"
    experiment.write_text('methods = ["dpo"]\nstpes = 10\n', encoding="utf-8")
    assert "stpes = 10: unknown key in e.toml (did you mean steps?)" in one_error_line(
        psipo("compare", str(experiment)))


@pytest.mark.parametrize(("alias", "preset"), [("D1", "paper-d1"), ("D2", "cycle"), ("D3", "paper-d3")])
def test_the_papers_dataset_names_are_preset_aliases(alias: str, preset: str) -> None:
    # The paper (arXiv 2310.12036 §5.4) calls its datasets D1, D2 (the cycle) and D3: the alias is the
    # preset itself, so both print the same table, and `problem show` shows the preset's own name.
    by_alias = psipo("run", "ipo", "--problem", alias, "--solver", "exact", "--tau", "1", "--no-save", "-q",
                     "--format", "csv")
    by_name = psipo("run", "ipo", "--problem", preset, "--solver", "exact", "--tau", "1", "--no-save", "-q",
                    "--format", "csv")
    assert by_alias.returncode == 0, by_alias.stderr
    assert by_alias.stdout == by_name.stdout
    shown = psipo("problem", "show", alias.lower())
    assert shown.returncode == 0 and shown.stdout.startswith(f"{preset}: ")
    assert alias in psipo("problem", "list").stdout


def test_a_sweep_grid_names_the_papers_datasets_by_alias_too(tmp_path: Path) -> None:
    from psipo_cli.sweep.grid import resolve_grid

    by_alias = resolve_grid({"problems": ["D1"], "methods": ["dpo"]}, tmp_path)
    by_name = resolve_grid({"problems": ["paper-d1"], "methods": ["dpo"]}, tmp_path)
    assert by_alias == by_name


# -- 6. compare takes the method options, applied to the compared methods that take them -------------------


def exact_summary(*args: str) -> dict[str, dict[str, str]]:
    result = psipo(*args, "--solver", "exact", "--tau", "1", "--no-save", "-q", "--format", "csv", "--table",
                   "summary")
    assert result.returncode == 0, result.stderr
    return {row["method"]: row for row in csv.DictReader(io.StringIO(result.stdout))}


def test_compare_applies_a_method_option_to_the_methods_that_take_it() -> None:
    import psipo_cli

    # Expected: the library called with the option in rlhf's method table only (dpo takes no rm_l2).
    frames = psipo_cli.solve("paper-d1", [{"method": "rlhf", "rm_l2": 0.5}, "dpo"], 1.0, solver="exact")
    expected = {m: float(kl) for m, kl in zip(frames.metrics.method, frames.metrics.kl, strict=True)}
    got = exact_summary("compare", "--methods", "rlhf,dpo", "--rm-l2", "0.5")
    assert {m: float(row["kl"]) for m, row in got.items()} == pytest.approx(expected, rel=1e-12)
    # The ridge changes rlhf's answer (on D1 the unregularised reward model diverges: KL -> log 3).
    plain = exact_summary("compare", "--methods", "rlhf,dpo")
    assert float(plain["rlhf"]["kl"]) != pytest.approx(float(got["rlhf"]["kl"]))
    frames = psipo_cli.solve("paper-d1", [{"method": "psipo", "psi": "identity"}, "ipo"], 1.0, solver="exact")
    expected = {m: float(kl) for m, kl in zip(frames.metrics.method, frames.metrics.kl, strict=True)}
    got = exact_summary("compare", "--methods", "psipo,ipo", "--psi", "identity")
    assert {m: float(row["kl"]) for m, row in got.items()} == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize(("option", "value"), [("--rm-l2", "0.5"), ("--psi", "identity"), ("--rm-steps", "10"),
                                               ("--eps", "0.01")])
def test_compare_refuses_a_method_option_that_no_compared_method_takes(option: str, value: str) -> None:
    from psipo_cli.methods import METHODS

    name = option.removeprefix("--").replace("-", "_")
    others = [m for m, method in METHODS.items() if name not in method.options]
    line = one_error_line(psipo("compare", "--methods", ",".join(others), option, value))
    assert line.startswith(f"psipo: {option} = ") and line.endswith(f"not an option of {', '.join(others)}")


# -- 7. sweep and merge: --format path|json, a local Dask cluster, a missing --resume directory -----------

GRID = 'problems = ["paper-d1"]\nmethods = ["ipo", "dpo"]\ntau = [1.0]\nsolver = "exact"\n'


def test_sweep_and_merge_print_json_with_the_results(tmp_path: Path) -> None:
    import json

    (tmp_path / "g.toml").write_text(GRID, encoding="utf-8")
    result = psipo("sweep", "g.toml", "-q", "--no-plots", "--format", "json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    assert doc["status"] == "complete" and (tmp_path / doc["sweep_dir"] / "results.csv").is_file()
    ipo = {r["action"]: r["prob"] for r in doc["results"] if r["method"] == "ipo"}
    # IPO's exact optimum on D1 (a > b > c, each pair once, uniform pi_ref): log-ratio offsets (1, 0, -1)/(3 tau)
    # (docs/maths.md), so pi = softmax((1, 0, -1) / 3) at tau = 1.
    import math

    weights = [math.exp(x / 3) for x in (1, 0, -1)]
    assert [ipo[a] for a in "abc"] == pytest.approx([w / sum(weights) for w in weights], rel=1e-12)
    assert all(r["n"] is None for r in doc["results"])  # an empty cell is null, not NaN
    merged = psipo("merge", doc["sweep_dir"], "-q", "--no-plots", "--format", "json", cwd=tmp_path)
    assert merged.returncode == 0, merged.stderr
    assert json.loads(merged.stdout)["results"] == doc["results"]
    path = psipo("merge", doc["sweep_dir"], "-q", "--no-plots", cwd=tmp_path)  # default: the directory
    assert path.returncode == 0 and (tmp_path / path.stdout.strip() / "results.csv").is_file()
    assert one_error_line(psipo("sweep", "g.toml", "--format", "csv", cwd=tmp_path)) == (
        "psipo: --format = 'csv': must be one of path, json")


def test_dask_without_a_scheduler_runs_on_a_local_cluster_with_the_same_results(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("distributed")
    monkeypatch.delenv("DASK_SCHEDULER_ADDRESS", raising=False)
    (tmp_path / "g.toml").write_text(GRID, encoding="utf-8")
    local = psipo("sweep", "g.toml", "-q", "--no-plots", cwd=tmp_path)
    dask = psipo("sweep", "g.toml", "-q", "--no-plots", "--executor", "dask", "--jobs", "2", "--out", "d",
                 cwd=tmp_path)
    assert local.returncode == 0 and dask.returncode == 0, dask.stderr
    manifest = (tmp_path / dask.stdout.strip() / "manifest.json").read_text(encoding="utf-8")
    assert '"dask"' in manifest
    assert (tmp_path / dask.stdout.strip() / "results.csv").read_bytes() == (
        tmp_path / local.stdout.strip() / "results.csv").read_bytes()


def test_resume_of_a_missing_directory_says_so(tmp_path: Path) -> None:
    (tmp_path / "g.toml").write_text(GRID, encoding="utf-8")
    assert one_error_line(psipo("sweep", "g.toml", "--resume", "gone", cwd=tmp_path)) == (
        "psipo: --resume = 'gone': no such directory")
    assert not (tmp_path / "outputs").exists()


# -- 8. smaller: --psi finds modules in the current directory; the sweep's problem column -----------------

PSI_MODULE = "import numpy as np\n\n\ndef psi(q):\n    return np.asarray(q, dtype=float)\n"


def console_script(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """psipo as the `psipo` console script runs it: `-P` keeps the current directory off `sys.path` (which
    `python -m` and `python -c` would put there; the script does not)."""
    code = f"import sys; sys.argv = {['psipo', *args]!r}; from psipo_cli.cli import app; app()"
    return subprocess.run([sys.executable, "-P", "-c", code], capture_output=True, text=True, cwd=cwd, timeout=300)


def test_psi_module_in_the_current_directory_is_found(tmp_path: Path) -> None:
    import math

    (tmp_path / "mypsi.py").write_text(PSI_MODULE, encoding="utf-8")
    result = console_script("run", "psipo", "--psi", "mypsi:psi", "--solver", "exact", "--tau", "1", "--no-save",
                            "-q", "--format", "csv", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    # Psi = identity is IPO (paper §5.1): on D1 at tau = 1, pi = softmax((1, 0, -1) / 3) (docs/maths.md).
    weights = [math.exp(x / 3) for x in (1, 0, -1)]
    assert [float(r["prob"]) for r in rows] == pytest.approx([w / sum(weights) for w in weights], rel=1e-12)


def test_an_unimportable_psi_module_says_how_to_make_it_importable(tmp_path: Path) -> None:
    result = console_script("run", "psipo", "--psi", "nowhere:psi", "--solver", "exact", cwd=tmp_path)
    line = one_error_line(result)
    assert line.startswith("psipo: --psi = 'nowhere:psi': cannot load (No module named 'nowhere')")
    assert "nowhere.py" in line and "current directory" in line and "PYTHONPATH" in line


PROBLEM_FILE = 'name = "rpsls"\nactions = ["a", "b"]\npi_ref = [0.5, 0.5]\nrewards = [1, 0]\n'


def test_sweep_results_name_the_problem_and_keep_its_file_apart(tmp_path: Path) -> None:
    (tmp_path / "problems").mkdir()
    (tmp_path / "problems" / "rpsls.toml").write_text(PROBLEM_FILE, encoding="utf-8")
    (tmp_path / "g.toml").write_text('problems = ["D1", "problems/rpsls.toml"]\nmethods = ["ipo"]\ntau = [1.0]\n'
                                     'solver = "exact"\n', encoding="utf-8")
    result = psipo("sweep", "g.toml", "-q", "--no-plots", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    rows = list(csv.DictReader(io.StringIO((tmp_path / result.stdout.strip() / "results.csv").read_text())))
    assert list(rows[0])[:3] == ["problem", "problem_file", "n"]
    # The file's `name`, not its path; the path (as the grid lists it) in its own column, empty for a preset.
    assert {(r["problem"], r["problem_file"]) for r in rows} == {("paper-d1", ""), ("rpsls", "problems/rpsls.toml")}


def test_a_grid_of_presets_keeps_its_columns_and_old_file_sweeps_are_refused_clearly(tmp_path: Path) -> None:
    import json

    (tmp_path / "g.toml").write_text(GRID, encoding="utf-8")
    presets = psipo("sweep", "g.toml", "-q", "--no-plots", cwd=tmp_path).stdout.strip()
    header = (tmp_path / presets / "results.csv").read_text().splitlines()[0]
    assert header.startswith("problem,n,method,tau,solver,")  # as before problem_file: old sweeps resume
    assert psipo("sweep", "g.toml", "-q", "--no-plots", "--resume", presets, cwd=tmp_path).returncode == 0
    # A sweep of a problem file written before problem_file existed: its grid.json lists the old columns.
    (tmp_path / "rpsls.toml").write_text(PROBLEM_FILE, encoding="utf-8")
    (tmp_path / "f.toml").write_text('problems = ["rpsls.toml"]\nmethods = ["ipo"]\ntau = [1.0]\nsolver = "exact"\n',
                                     encoding="utf-8")
    old = tmp_path / psipo("sweep", "f.toml", "-q", "--no-plots", cwd=tmp_path).stdout.strip()
    record = json.loads((old / "grid.json").read_text())
    record["columns"] = [c for c in record["columns"] if c != "problem_file"]
    (old / "grid.json").write_text(json.dumps(record))
    line = one_error_line(psipo("sweep", "f.toml", "--resume", str(old), cwd=tmp_path))
    assert line.startswith("psipo: --resume = ") and ": written by a psipo version with other result columns" in line
    assert "start a new sweep" in line
