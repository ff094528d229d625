"""Hardening: interrupted runs, failing disks, safe loading, provenance of input files, determinism.

- Ctrl-C (SIGINT) and SIGTERM during `run` and `compare` — while solving and while the run directory is
  being written — exit 130 / 143 with one line on stderr and leave no run directory and no `.tmp-*`.
- A full disk or an unwritable `--out` gives exit 1, one line, nothing half-written.
- Problem and experiment files are data: an experiment file cannot make psipo import a module; only an
  explicit `--psi module:function` on the command line runs user code.
- `pairs_csv` is read relative to the TOML file that names it, and every file read is recorded (absolute
  path and sha256) in config.json and in the manifest's `inputs`.
- The same command twice gives byte-identical CSVs, config.json, report and JSON stdout (timestamps only in
  manifest.json and the directory name).
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from psipo_cli.errors import InputError, OutputError

FAST = ["--steps", "60", "--seeds", "2"]


def psipo(*args: str, cwd: Path | None = None, env: dict | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "psipo_cli", *args], capture_output=True, text=True,
                          timeout=300, cwd=cwd, env=env)


def tree(root: Path) -> list[str]:
    """Everything under `root`, hidden entries included (a `.tmp-*` directory must not survive)."""
    return sorted(str(p.relative_to(root)) for p in root.rglob("*")) if root.exists() else []


# ============================================================================================ interrupts
# The CLI, with the figure stage made slow: the run directory is then open (a `.tmp-*` with config.json,
# the CSVs and the figures in it) when the signal arrives.
SLOW_WRITER = textwrap.dedent(
    """
    import os, pathlib, sys, time
    import psipo_cli.outputs.figures as figures
    render = figures.render_frames
    def slow(*args, **kwargs):
        paths = render(*args, **kwargs)
        pathlib.Path(os.environ["PSIPO_TEST_MARKER"]).write_text("figures written")
        time.sleep(60)
        return paths
    figures.render_frames = slow
    from psipo_cli.cli import app
    sys.argv[0] = "psipo"
    app()
    """
)


def start(args: list[str], marker: Path | None = None) -> subprocess.Popen[str]:
    """psipo in a subprocess; with `marker`, the slow-writer variant, which creates `marker` once the
    figures are in the temporary directory."""
    prefix = ["-c", SLOW_WRITER] if marker else ["-m", "psipo_cli"]
    env = {**os.environ, "PSIPO_TEST_MARKER": str(marker)} if marker else None
    return subprocess.Popen([sys.executable, *prefix, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env)


def wait_for(marker: Path, out: Path, proc: subprocess.Popen[str], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()
        if marker.exists():
            (tmp,) = out.glob(".tmp-*")  # the run directory is open, with its files in it
            assert (tmp / "policy.csv").is_file() and any((tmp / "figures").iterdir())
            return
        time.sleep(0.05)
    raise AssertionError("the run directory never opened")


SIGNALS = [(signal.SIGINT, 130, "interrupted"), (signal.SIGTERM, 143, "terminated")]


@pytest.mark.parametrize(("sig", "code", "word"), SIGNALS)
@pytest.mark.parametrize("command", [["run", "dpo"], ["compare"]])
def test_signal_while_writing_leaves_nothing(tmp_path: Path, command: list[str], sig: int, code: int,
                                            word: str) -> None:
    out, marker = tmp_path / "out", tmp_path / "marker"
    proc = start([*command, "--tau", "1", *FAST, "--out", str(out), "--format", "json"], marker=marker)
    wait_for(marker, out, proc)
    proc.send_signal(sig)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == code, stderr
    assert stdout == ""
    assert stderr == f"psipo: {word}\n"
    assert tree(out) == []  # the root stays (it was created), empty: no run, no .tmp-*


@pytest.mark.parametrize(("sig", "code", "word"), SIGNALS)
def test_signal_while_solving_compare(tmp_path: Path, sig: int, code: int, word: str) -> None:
    proc = start(["compare", "--solver", "gradient", "--steps", "100000000", "--out", str(tmp_path / "out")])
    time.sleep(1.5)
    proc.send_signal(sig)
    stdout, stderr = proc.communicate(timeout=60)
    assert (proc.returncode, stdout, stderr) == (code, "", f"psipo: {word}\n")
    assert tree(tmp_path) == []


def test_interrupt_at_any_moment_is_all_or_nothing(tmp_path: Path) -> None:
    """SIGINT at several moments of a short run: either the run completed (one complete directory) or it
    did not (nothing); never a partial directory or a `.tmp-*`.

    The exit status is 130 (psipo caught it), 0 (the run ended first), or -2 / killed by SIGINT: the signal
    arrived before Python installed its handler at start-up, or after it restored the default one at
    shut-down (then the run is complete: "wrote" was said).
    """
    outcomes = set()
    for i, delay in enumerate([0.3, 0.8, 1.2, 1.6, 2.2]):
        out = tmp_path / str(i)
        proc = start(["run", "ipo", "--tau", "1", *FAST, "--out", str(out), "--format", "path"])
        time.sleep(delay)
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=60)
        outcomes.add(proc.returncode)
        left = [p for p in out.iterdir()] if out.exists() else []
        assert proc.returncode in (0, 130, -signal.SIGINT), stderr
        if proc.returncode == 130:
            assert stderr.endswith("psipo: interrupted\n") and left == [] and stdout == "", stderr
        if left:
            (run_dir,) = left
            assert stderr.startswith("wrote ")
            manifest = json.loads((run_dir / "manifest.json").read_text(encoding="utf-8"))
            assert manifest["status"] == "complete"
    assert outcomes & {130, 0}


# ============================================================================================ disks
@pytest.fixture
def cli(monkeypatch: pytest.MonkeyPatch) -> Iterator[object]:
    """The CLI in-process (to monkeypatch the file system); the SIGTERM handler it installs is undone."""
    from psipo_cli.cli import app

    previous = signal.getsignal(signal.SIGTERM)
    monkeypatch.setattr(sys, "argv", ["psipo"])

    def call(*args: str) -> int:
        try:
            app(list(args))
        except SystemExit as exc:
            return int(exc.code or 0)
        return 0

    yield call
    signal.signal(signal.SIGTERM, previous)


def no_space(*args: object, **kwargs: object) -> None:
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


@pytest.mark.parametrize("where", ["csv", "figure", "manifest"])
def test_full_disk_is_a_clear_error_and_leaves_nothing(
    tmp_path: Path, cli, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, where: str
) -> None:
    from psipo_cli.outputs import figures, rundir

    if where == "csv":
        monkeypatch.setattr(rundir.RunDirectory, "write_csv", no_space)
    elif where == "figure":
        monkeypatch.setattr(figures, "save_figure", no_space)
    else:
        original = rundir.RunDirectory._write_manifest

        def full_at_the_end(self: rundir.RunDirectory, status: str) -> None:
            if status == "complete":
                no_space()
            original(self, status)

        monkeypatch.setattr(rundir.RunDirectory, "_write_manifest", full_at_the_end)
    code = cli("run", "ipo", "--tau", "1", "--solver", "exact", "--out", str(tmp_path), "--format", "json")
    captured = capsys.readouterr()
    assert code == 1
    assert captured.out == ""
    lines = captured.err.splitlines()
    assert len(lines) == 1, captured.err
    assert lines[0].startswith("psipo: error: cannot write the run directory in ")
    assert "No space left on device" in lines[0] and "nothing was saved" in lines[0]
    assert tree(tmp_path) == []


def test_output_error_class_for_write_failures(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from psipo_cli.outputs.rundir import RunDirectory

    monkeypatch.setattr(RunDirectory, "write_text", no_space)
    with pytest.raises(OutputError, match="No space left"), RunDirectory(tmp_path, "run", "x", {}):
        pass
    assert tree(tmp_path) == []


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root ignores permissions")
def test_read_only_out_directory(tmp_path: Path) -> None:
    out = tmp_path / "ro"
    out.mkdir()
    out.chmod(0o500)
    try:
        result = psipo("run", "dpo", "--solver", "exact", "--out", str(out))
    finally:
        out.chmod(0o700)
    assert result.returncode == 1 and len(result.stderr.splitlines()) == 1
    assert "not writable" in result.stderr and tree(out) == []


def test_out_below_a_regular_file(tmp_path: Path) -> None:
    # Works as root too (where chmod does not stop writes): a path below a file cannot be created.
    (tmp_path / "file").write_text("x", encoding="utf-8")
    result = psipo("compare", "--solver", "exact", "--out", str(tmp_path / "file" / "sub"))
    assert result.returncode == 1 and result.stdout == ""
    (line,) = result.stderr.splitlines()
    assert line.startswith("psipo: error: cannot create output directory") and "Not a directory" in line
    assert tree(tmp_path) == ["file"]


# ============================================================================================ safe loading
EVIL_MODULE = "import pathlib\npathlib.Path('IMPORTED').write_text('x')\ndef psi(q):\n    return q\n"


def test_experiment_file_cannot_import_code(tmp_path: Path) -> None:
    (tmp_path / "evil_psi.py").write_text(EVIL_MODULE, encoding="utf-8")
    config = tmp_path / "exp.toml"
    config.write_text('methods = [{method = "psipo", psi = "evil_psi:psi"}]\nsolver = "exact"\n', encoding="utf-8")
    result = psipo("compare", str(config), "--out", "out", cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    (line,) = result.stderr.splitlines()
    assert "methods[0].psi = 'evil_psi:psi'" in line and "built-in" in line and "--psi" in line
    assert not (tmp_path / "IMPORTED").exists()
    assert not (tmp_path / "out").exists()
    # `os:system` is just as refused (nothing is even imported).
    config.write_text('methods = [{method = "psipo", psi = "os:system"}]\n', encoding="utf-8")
    assert psipo("compare", str(config), cwd=tmp_path).returncode == 2


def test_explicit_psi_flag_is_the_one_way_to_run_user_code(tmp_path: Path) -> None:
    (tmp_path / "evil_psi.py").write_text(EVIL_MODULE, encoding="utf-8")
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    result = psipo("run", "psipo", "--psi", "evil_psi:psi", "--solver", "exact", "--no-save", "-f", "json",
                   cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "IMPORTED").exists()  # the user asked for it, explicitly


def test_builtin_psi_in_an_experiment_file_is_fine(tmp_path: Path) -> None:
    from psipo_cli.solvers.experiment import load_experiment

    config = tmp_path / "exp.toml"
    config.write_text('methods = [{method = "psipo", psi = "identity"}, "dpo"]\n', encoding="utf-8")
    assert load_experiment(config)["methods"][0]["psi"] == "identity"
    config.write_text('methods = [{method = "psipo", psi = "sys:exit"}]\n', encoding="utf-8")
    with pytest.raises(InputError, match="built-in"):
        load_experiment(config)


def test_problem_file_has_no_code_keys(tmp_path: Path) -> None:
    path = tmp_path / "p.toml"
    path.write_text('actions = ["a", "b"]\norder = ["a", "b"]\npsi = "os:system"\n', encoding="utf-8")
    result = psipo("problem", "validate", str(path))
    assert result.returncode == 2 and "psi = 'os:system': unknown key" in result.stderr


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_pairs_csv_is_relative_to_the_toml_file_and_recorded(tmp_path: Path) -> None:
    problems = tmp_path / "problems"
    problems.mkdir()
    csv_path = problems / "pairs.csv"
    csv_path.write_text("winner,loser,count\na,b,3\nb,c,1\n", encoding="utf-8")
    toml = problems / "p.toml"
    toml.write_text('actions = ["a", "b", "c"]\npairs_csv = "pairs.csv"\n', encoding="utf-8")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    result = psipo("run", "ipo", "--problem", "../problems/p.toml", "--solver", "exact", "--out", "out",
                   "--no-plots", "-f", "path", cwd=elsewhere)
    assert result.returncode == 0, result.stderr
    run_dir = elsewhere / result.stdout.strip()
    expected = [{"path": str(toml.resolve()), "sha256": sha256(toml)},
                {"path": str(csv_path.resolve()), "sha256": sha256(csv_path)}]
    config = json.loads((run_dir / "config.json").read_text(encoding="utf-8"))
    assert config["problem_resolved"]["files"] == expected
    manifest = json.loads((run_dir / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["inputs"] == expected
    assert config["problem_resolved"]["contexts"][0]["wins"][0][1] == 3.0


def test_inline_problem_pairs_csv_is_relative_to_the_experiment_file(tmp_path: Path) -> None:
    exp_dir = tmp_path / "exp"
    exp_dir.mkdir()
    (exp_dir / "pairs.csv").write_text("winner,loser\na,b\n", encoding="utf-8")
    config = exp_dir / "e.toml"
    config.write_text(
        'methods = ["ipo"]\ntau = [1.0]\nsolver = "exact"\n[problem]\nname = "inline"\nactions = ["a", "b"]\n'
        'pairs_csv = "pairs.csv"\n', encoding="utf-8")
    result = psipo("compare", str(config), "--out", str(tmp_path / "out"), "--no-plots", "-f", "path", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    manifest = json.loads((Path(result.stdout.strip()) / "manifest.json").read_text(encoding="utf-8"))
    assert [f["path"] for f in manifest["inputs"]] == [str(config.resolve()), str((exp_dir / "pairs.csv").resolve())]
    assert manifest["inputs"][0]["sha256"] == sha256(config)


# ============================================================================================ determinism
RUN_FILES = ("policy.csv", "metrics.csv", "curves.csv", "tau_grid.csv", "config.json", "report.md")


@pytest.mark.parametrize(
    "args",
    [
        ["run", "dpo", "--solver", "exact", "--tau", "0.1", "--tau", "1"],
        ["run", "ipo", "--problem", "bt-finite", "--solver", "both", *FAST],
        ["run", "rlhf", "--problem", "bt-finite", "--solver", "gradient", "--rm-l2", "0.1", *FAST],
        ["compare", "--problem", "bt-finite", "--solver", "both", "--tau", "0.5", *FAST],
        ["compare", "--problem", "cycle", "--methods", "dpo,psipo", "--solver", "both", *FAST],
    ],
    ids=["run-exact", "run-both-sampled", "run-gradient-rlhf", "compare-sampled", "compare-cycle"],
)
def test_same_command_twice_gives_identical_bytes(tmp_path: Path, args: list[str]) -> None:
    saved, printed = [], []
    out = tmp_path / "out"
    for _ in range(2):
        result = psipo(*args, "--out", str(out), "--format", "json")
        assert result.returncode == 0, result.stderr
        doc = json.loads(result.stdout)
        saved.append(Path(doc.pop("run_dir")))
        printed.append(json.dumps(doc))
        unsaved = psipo(*args, "--no-save", "--format", "json")
        assert unsaved.returncode == 0, unsaved.stderr
        printed.append(unsaved.stdout)
    assert printed[0] == printed[2] and printed[1] == printed[3]
    assert json.loads(printed[1]) == {"run_dir": None, **json.loads(printed[0])}  # saving changes no number
    a, b = saved
    for name in RUN_FILES:
        assert (a / name).read_bytes() == (b / name).read_bytes(), name
    # Figures: same bytes on the same matplotlib (no timestamp or version stamp in the PNGs).
    figures_a = sorted(p.name for p in (a / "figures").iterdir())
    assert figures_a == sorted(p.name for p in (b / "figures").iterdir())
    for name in figures_a:
        assert (a / "figures" / name).read_bytes() == (b / "figures" / name).read_bytes(), name
    # The manifests differ in their timestamps only.
    ma, mb = (json.loads((d / "manifest.json").read_text(encoding="utf-8")) for d in saved)
    assert {k for k in ma if ma[k] != mb[k]} <= {"started", "finished"}
