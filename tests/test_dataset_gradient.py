"""Gradient runs on a dataset whose prompts have their own completions (`psipo_cli.dataset_gradient`).

Expected answers are the same prompts written as TOML problems and run through `psipo_cli.solve` (the TOML
loader and the dataset reader share no code; the engine is the one TOML problems use), so the chunking,
the stream seeding and the table layout are what is tested; or worked out by hand in the comments.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from psipo_cli.config.settings import GradientSettings
from psipo_cli.solvers.runs import method_spec

# Five prompts of two sizes (3, 2, 3, 3, 2 completions, texts differing across prompts), in the paired format.
# Per prompt: (completions, [(winner, loser, count)]) with indices into that prompt's completions.
PROMPTS = {
    "P0": (["a0", "b0", "c0"], [(0, 1, 2), (1, 0, 1), (1, 2, 1), (2, 0, 1)]),
    "P1": (["x1", "y1"], [(0, 1, 3), (1, 0, 1)]),
    "P2": (["a2", "b2", "c2"], [(0, 1, 1), (1, 2, 1), (2, 0, 1)]),
    "P3": (["a3", "b3", "c3"], [(0, 1, 1), (0, 2, 2), (2, 1, 1)]),
    "P4": (["x4", "y4"], [(0, 1, 1)]),
}
SPECS = [method_spec("dpo"), method_spec("ipo"), method_spec("rlhf")]
TAUS = [0.5, 1.0]


def write_dataset(path: Path, prompts: dict = PROMPTS) -> Path:
    rows = []
    # Every prompt's first row comes in prompt order, so the dataset's context order is P0, P1, ...
    for prompt, (texts, pairs) in prompts.items():
        for w, lo, count in pairs:
            rows += [{"prompt": prompt, "chosen": texts[w], "rejected": texts[lo]}] * count
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def toml_of(prompts: dict) -> str:
    """The prompts as one TOML problem: contexts in order over positional actions y0.. (all of one size)."""
    n = len(next(iter(prompts.values()))[0])
    lines = ["actions = [" + ", ".join(f'"y{j}"' for j in range(n)) + "]"]
    for prompt, (_, pairs) in prompts.items():
        lines.append(f'[[contexts]]\nname = "{prompt}"')
        lines.append("pairs = [" + ", ".join(f'{{ winner = "y{w}", loser = "y{lo}", count = {c} }}'
                                             for w, lo, c in pairs) + "]")
    return "\n".join(lines) + "\n"


def data_of(path: Path):
    from psipo_cli.problem import open_source

    return open_source(str(path)).data


def frames(data, settings: GradientSettings, max_contexts: int | None = None, progress=None):
    from psipo_cli.dataset_gradient import gradient_dataset_frames

    return gradient_dataset_frames(data, SPECS, TAUS, settings, progress=progress, max_contexts=max_contexts)


MINIBATCH = GradientSettings(steps=300, seeds=2, batch_size=2, records=5)


def test_results_do_not_depend_on_the_chunking(tmp_path: Path) -> None:
    data = data_of(write_dataset(tmp_path / "prefs.jsonl"))
    one, two, every = (frames(data, MINIBATCH, k) for k in (1, 2, None))
    for name in ("policy", "metrics", "summary"):
        text = getattr(one, name).to_csv(index=False)
        assert getattr(two, name).to_csv(index=False) == text, name
        assert getattr(every, name).to_csv(index=False) == text, name
    # The flat layout of the exact solver's tables: (method, tau, prompt, completion), every completion once.
    policy = one.policy
    assert len(policy) == len(SPECS) * len(TAUS) * 13 and set(policy.solver) == {"gradient"}
    assert list(policy.context[:13]) == [data.context_ids[c] for c in data.action_context]
    assert list(policy.action[:13]) == list(data.action_ids)
    assert np.allclose(policy.groupby(["method", "tau", "context"]).prob.sum(), 1.0)


def test_each_prompt_is_context_c_of_a_toml_problem_listing_the_prompts(tmp_path: Path) -> None:
    # Prompt c's stream is SeedSequence([seed, k, c]) with c its index in the dataset: the stream of context
    # c of a TOML problem listing the prompts in order. With prompts of one size that TOML problem exists.
    from psipo_cli import solve

    same_size = {k: v for k, v in PROMPTS.items() if len(v[0]) == 3}
    data = data_of(write_dataset(tmp_path / "prefs.jsonl", same_size))
    got = frames(data, MINIBATCH, max_contexts=1)
    (tmp_path / "p.toml").write_text(toml_of(same_size))
    want = solve(tmp_path / "p.toml", SPECS, TAUS, solver="gradient", settings=MINIBATCH)
    ids = dict(zip(same_size, data.context_ids, strict=True))
    # Both tables are in (method, tau, context, action) order with the completions in the same positions.
    assert list(want.policy.context.map(ids)) == list(got.policy.context)
    for column in ("prob", "prob_lo", "prob_hi"):
        assert got.policy[column].tolist() == want.policy[column].tolist(), column
    for column in ("status", "kl", "entropy", "loss", "grad_norm", "noise", "detail"):
        assert got.metrics[column].tolist() == want.metrics[column].tolist(), column


def test_with_the_full_batch_each_prompt_is_its_own_toml_problem(tmp_path: Path) -> None:
    # The full batch reads no stream: every prompt reproduces its own one-context TOML problem exactly.
    from psipo_cli import solve

    settings = GradientSettings(steps=200, seeds=1, batch_size=0, records=5)
    data = data_of(write_dataset(tmp_path / "prefs.jsonl"))
    got = frames(data, settings)
    for c, (prompt, spec) in enumerate(PROMPTS.items()):
        (tmp_path / f"{prompt}.toml").write_text(toml_of({prompt: spec}))
        want = solve(tmp_path / f"{prompt}.toml", SPECS, TAUS, solver="gradient", settings=settings)
        mine = got.policy[got.policy.context == data.context_ids[c]]
        assert mine.prob.tolist() == want.policy.prob.tolist(), prompt
        mine = got.metrics[got.metrics.context == data.context_ids[c]]
        assert mine.status.tolist() == want.metrics.status.tolist(), prompt
        assert mine.loss.tolist() == want.metrics.loss.tolist(), prompt


def test_chunks_are_sized_from_the_memory_estimate(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from psipo_cli import dataset_gradient
    from psipo_cli.solvers.gradient import estimate_resources, resources

    data = data_of(write_dataset(tmp_path / "prefs.jsonl"))
    chunks = dataset_gradient.Chunks(data)
    # The widest 3-completion prompt alone (P0: 4 distinct pairs) costs `one`; room for exactly two of them.
    one = estimate_resources(chunks.problem(np.array([0])), SPECS, TAUS, MINIBATCH, "dataset").memory
    monkeypatch.setattr(resources, "available_memory", lambda: 2.5 * one / dataset_gradient.MEMORY_SHARE)
    plan = chunks.plan(SPECS, TAUS, MINIBATCH, None)
    # Size 2 first: prompts 1 and 4 (smaller than P0: two fit); size 3: prompts 0, 2, 3 in chunks of at most
    # two (floor(2.5) = 2), split evenly: [0, 2], [3].
    assert [part.tolist() for part, _ in plan] == [[1, 4], [0, 2], [3]]
    assert all(estimate_resources(chunks.problem(part), SPECS, TAUS, MINIBATCH, "dataset").memory <= 2.5 * one
               for part, _ in plan)


def test_progress_reaches_its_total(tmp_path: Path) -> None:
    data = data_of(write_dataset(tmp_path / "prefs.jsonl"))
    calls: list[tuple[float, float]] = []
    frames(data, GradientSettings(steps=1100, seeds=1, batch_size=2, records=5), 1,
           lambda done, total: calls.append((done, total)))
    done = [d for d, _ in calls]
    assert done == sorted(done) and len({t for _, t in calls}) == 1
    assert done[-1] == pytest.approx(calls[-1][1], rel=1e-12)
    assert len(calls) >= 5 * 3  # each chunk reports every STREAM_CHUNK steps (512): 1100 steps, 3 calls


def test_prompt_without_comparisons_keeps_pi_ref(tmp_path: Path) -> None:
    # Scored completions: S ranks a > b > c (3 comparisons); T scores p and q equally (a tie, no comparison),
    # so T's gradient has nothing to fit and keeps pi_ref = (1/2, 1/2): KL 0, entropy log 2.
    path = tmp_path / "scored.jsonl"
    path.write_text(json.dumps({"prompt": "S", "completions": ["a", "b", "c"], "scores": [3, 2, 1]}) + "\n"
                    + json.dumps({"prompt": "T", "completions": ["p", "q"], "scores": [1, 1]}) + "\n")
    data = data_of(path)
    got = frames(data, GradientSettings(steps=100, seeds=2, batch_size=2, records=5))
    t = data.context_ids[1]
    assert got.policy[got.policy.context == t].prob.tolist() == [0.5, 0.5] * 6
    rows = got.metrics[got.metrics.context == t]
    assert set(rows.status) == {"converged"} and rows.kl.tolist() == [0.0] * 6
    assert rows.entropy.tolist() == pytest.approx([np.log(2)] * 6, rel=1e-15)


def psipo(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "psipo_cli", *args], capture_output=True, text=True, timeout=600)


def test_cli_both_lines_up_exact_and_gradient(tmp_path: Path) -> None:
    path = write_dataset(tmp_path / "prefs.jsonl")
    done = psipo("compare", "--problem", str(path), "--solver", "both", "--tau", "1", "--methods", "dpo,ipo",
                 "--steps", "2000", "--seeds", "2", "--batch-size", "0", "--no-save", "--format", "json")
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""  # no progress bar when stderr is not a terminal
    doc = json.loads(done.stdout)
    prob = {(r["solver"], r["method"], r["context"], r["action"]): r["prob"] for r in doc["policy"]}
    keys = {k[1:] for k in prob}
    assert len(keys) == 2 * 13 and all(("exact", *k) in prob and ("gradient", *k) in prob for k in keys)
    # IPO's optimum is attained on every prompt (a strictly convex loss, paper Eq. 17): 2000 full-batch Adam
    # steps at lr 0.01 reach it, so the gradient policy is close to the exact one on every completion.
    for k in keys:
        if k[0] == "ipo":
            assert prob[("gradient", *k)] == pytest.approx(prob[("exact", *k)], abs=2e-3), k
    summary = {(r["solver"], r["method"]) for r in doc["summary"]}
    assert summary == {("exact", "dpo"), ("exact", "ipo"), ("gradient", "dpo"), ("gradient", "ipo")}


def method_names() -> list[str]:
    from psipo_cli.methods import METHODS

    return list(METHODS)


@pytest.mark.parametrize("name", method_names())
def test_every_gradient_method_runs_prompt_by_prompt_as_on_toml(tmp_path: Path, name: str) -> None:
    # Every family's lanes (its own blocks too) read the prompt's stream, whatever chunk the prompt is in.
    from psipo_cli import solve

    same_size = {k: v for k, v in PROMPTS.items() if len(v[0]) == 3}
    settings = GradientSettings(steps=60, seeds=2, batch_size=2, records=3)
    data = data_of(write_dataset(tmp_path / "prefs.jsonl", same_size))
    from psipo_cli.dataset_gradient import gradient_dataset_frames

    got = gradient_dataset_frames(data, [method_spec(name)], [0.5], settings, max_contexts=1)
    (tmp_path / "p.toml").write_text(toml_of(same_size))
    want = solve(tmp_path / "p.toml", name, 0.5, solver="gradient", settings=settings)
    assert got.policy.prob.tolist() == want.policy.prob.tolist()
    assert got.metrics.status.tolist() == want.metrics.status.tolist()


def test_both_fills_tv_to_exact_as_on_toml(tmp_path: Path) -> None:
    # `tv_to_exact` is the seed mean of TV(pi_k, pi_exact) (metrics.run_metrics); the TOML problem's `both`
    # run computes it from its own exact solver (the per-context one), so equal up to the two exact solvers'
    # agreement (1e-9, tests/test_dataset_runs.py).
    from psipo_cli import solve
    from psipo_cli.dataset_gradient import gradient_dataset_frames
    from psipo_cli.solvers.dataset import solve_dataset

    same_size = {k: v for k, v in PROMPTS.items() if len(v[0]) == 3}
    data = data_of(write_dataset(tmp_path / "prefs.jsonl", same_size))
    exact = solve_dataset(data, SPECS, TAUS)
    got = gradient_dataset_frames(data, SPECS, TAUS, MINIBATCH, max_contexts=2, exact=exact)
    (tmp_path / "p.toml").write_text(toml_of(same_size))
    want = solve(tmp_path / "p.toml", SPECS, TAUS, solver="both", settings=MINIBATCH).metrics
    want = want[want.solver == "gradient"]
    assert got.metrics.tv_to_exact.tolist() == pytest.approx(want.tv_to_exact.tolist(), rel=1e-7, abs=1e-9)
    assert got.metrics.tv_to_exact.min() > 0  # a gradient run of 300 steps is not exactly at the optimum


def test_cli_both_terminal_summary_report_and_manifest(tmp_path: Path) -> None:
    path = write_dataset(tmp_path / "prefs.jsonl")
    done = psipo("compare", "--problem", str(path), "--solver", "both", "--tau", "1", "--methods", "dpo,ipo",
                 "--steps", "100", "--seeds", "2", "--out", str(tmp_path / "runs"))
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[1].split()[:4] == ["method", "tau", "solver", "status"]
    assert [line.split()[2] for line in lines[2:]] == ["exact", "exact", "gradient", "gradient"]
    (run,) = (tmp_path / "runs").iterdir()
    report = (run / "report.md").read_text()
    assert "- **Solver**: both, every prompt" in report and "- **Gradient settings**: " in report
    assert "- dpo, tau = 1, exact: statuses over prompts" in report
    assert json.loads((run / "manifest.json").read_text())["seeds"] == 2
