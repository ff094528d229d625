"""Exact solutions on a whole preference dataset (`solvers.dataset.solve_dataset`).

Each prompt of a dataset is its own problem over its own completions: its answers must equal those of the
same prompt written as a TOML problem (read by the TOML loader, which shares no code with the dataset's
arrays) and solved by the per-context exact dispatch. The rest is derived by hand (comments) or from
theorems: a directed cycle leaves no separating comparison (the Bradley–Terry MLE exists); a single
comparison always separates (DPO diverges) while IPO's quadratic always attains its minimum; two actions
give the closed forms of the pairwise MLE and of IPO's normal equation.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from psipo_cli.errors import InputError
from psipo_cli.problem import load_problem
from psipo_cli.problem.datasets.data import PreferenceData, SourceRecord
from psipo_cli.solvers.dataset import solve_dataset
from psipo_cli.solvers.exact import solve_exact
from psipo_cli.solvers.runs import method_spec

TAUS = [0.1, 0.5, 1.0, 2.0]
SPECS = [
    method_spec("dpo"),
    method_spec("ipo"),
    method_spec("rlhf"),
    method_spec("rlhf", "rlhf-ridge", rm_l2=0.1),
]


def dataset(prompts: list[dict[str, Any]]) -> PreferenceData:
    """A `PreferenceData` from prompts `{actions: [names], pi_ref: [...]?, pairs: [(winner, loser, count)]}`
    (local indices), each prompt with its own actions."""
    sizes = [len(p["actions"]) for p in prompts]
    offsets = np.concatenate([[0], np.cumsum(sizes)])
    rows = [(c, offsets[c] + w, offsets[c] + l_, k) for c, p in enumerate(prompts) for w, l_, k in p["pairs"]]
    log_ref = np.concatenate(
        [np.log(np.asarray(p.get("pi_ref", np.full(len(p["actions"]), 1.0 / len(p["actions"])))))
         for p in prompts]
    )
    return PreferenceData(
        context=[r[0] for r in rows],
        winner=[r[1] for r in rows],
        loser=[r[2] for r in rows],
        count=[float(r[3]) for r in rows],
        offsets=offsets,
        log_pi_ref=log_ref,
        context_ids=tuple(f"x{c}" for c in range(len(prompts))),
        context_texts=tuple(f"prompt {c}" for c in range(len(prompts))),
        action_ids=tuple(a for p in prompts for a in p["actions"]),
        action_texts=tuple(a for p in prompts for a in p["actions"]),
        ties=np.zeros(len(prompts)),
        source=SourceRecord(path="memory", sha256="0" * 64, format="test", rows_read=len(rows)),
    )


def toml_problem(tmp_path: Path, c: int, prompt: dict[str, Any]) -> Any:
    """The prompt written as a TOML problem file and read back by the TOML loader."""
    actions = prompt["actions"]
    lines = [f'name = "prompt-{c}"', "actions = [" + ", ".join(f'"{a}"' for a in actions) + "]"]
    if "pi_ref" in prompt:
        lines.append("pi_ref = [" + ", ".join(repr(float(p)) for p in prompt["pi_ref"]) + "]")
    pairs = ", ".join(f'{{ winner = "{actions[w]}", loser = "{actions[l_]}", count = {k} }}'
                      for w, l_, k in prompt["pairs"])
    lines.append(f"pairs = [{pairs}]")
    path = tmp_path / f"prompt-{c}.toml"
    path.write_text("\n".join(lines) + "\n")
    return load_problem(path)


def random_prompts(rng: np.random.Generator, m: int, complete: bool = False) -> list[dict[str, Any]]:
    """`m` prompts of 2-5 completions each, random comparisons with counts 1-3 (every pair compared at least
    one way when `complete`), random pi_ref on half of them."""
    prompts = []
    for c in range(m):
        n = int(rng.integers(2, 6))
        pairs = []
        for i in range(n):
            for j in range(i + 1, n):
                ways = [(i, j), (j, i)]
                chosen = [w for w in ways if rng.random() < 0.5]
                if not chosen and (complete or rng.random() < 0.4):
                    chosen = [ways[int(rng.integers(2))]]
                pairs += [(w, l_, int(rng.integers(1, 4))) for w, l_ in chosen]
        if not pairs:
            pairs = [(0, 1, 1)]
        prompt: dict[str, Any] = {"actions": [f"c{c}a{k}" for k in range(n)], "pairs": pairs}
        if c % 2:
            p = rng.uniform(0.2, 1.0, n)
            prompt["pi_ref"] = p / p.sum()
        prompts.append(prompt)
    return prompts


@pytest.mark.parametrize("complete", [False, True])
def test_every_prompt_equals_its_toml_problem(tmp_path: Path, complete: bool) -> None:
    rng = np.random.default_rng(11 + complete)
    prompts = random_prompts(rng, 12, complete)
    data = dataset(prompts)
    specs = [*SPECS, method_spec("psipo"), method_spec("psipo", "psipo-id", psi="identity")] if complete else SPECS
    solved = solve_dataset(data, specs, TAUS)
    statuses = set()
    for c, prompt in enumerate(prompts):
        span = slice(data.offsets[c], data.offsets[c + 1])
        runs = solve_exact(toml_problem(tmp_path, c, prompt), specs, TAUS, "dataset")
        by_key = {(r.label, r.tau): r for r in runs}
        for sol in solved:
            for t, tau in enumerate(TAUS):
                run = by_key[sol.label, tau]
                np.testing.assert_allclose(sol.policy[t, span], run.policy, rtol=0, atol=1e-12)
                assert sol.status[t, c] == run.status
                np.testing.assert_allclose(sol.loss[t, c], run.loss, rtol=1e-12, atol=1e-14)
                if run.reward is None:
                    assert np.isnan(sol.reward[span]).all()
                else:
                    np.testing.assert_allclose(sol.reward[span], run.reward, rtol=0, atol=1e-10)
                # KL from its definition, on the TOML problem's own pi_ref.
                ref = np.asarray(prompt.get("pi_ref", np.full(len(prompt["actions"]), 1 / len(prompt["actions"]))))
                mass = run.policy > 0
                expected_kl = float(np.sum(run.policy[mass] * np.log(run.policy[mass] / ref[mass])))
                np.testing.assert_allclose(sol.kl[t, c], expected_kl, rtol=1e-10, atol=1e-13)
                statuses.add(run.status)
    assert {"optimal", "diverged"} <= statuses or complete  # the random data exercise both routes


def test_prompts_each_holding_a_directed_cycle_have_no_diverged_prompt() -> None:
    # a > b > c > a: every action reaches every other along winner -> loser edges, so the graph is one strongly
    # connected component and no comparison separates two components: the Bradley–Terry MLE exists (all
    # three offsets equal by symmetry with equal counts), DPO's optimum is attained on every prompt.
    cycle = {"actions": ["a", "b", "c"], "pairs": [(0, 1, 1), (1, 2, 1), (2, 0, 1)]}
    longer = {"actions": ["a", "b", "c", "d"], "pairs": [(0, 1, 2), (1, 2, 1), (2, 3, 1), (3, 0, 3), (0, 2, 1)]}
    data = dataset([cycle, longer, cycle])
    for sol in solve_dataset(data, SPECS, TAUS):
        assert (sol.status == "optimal").all(), sol.label
        assert (sol.policy > 0).all()
        assert np.isfinite(sol.reward).all()
    # Equal counts around a 3-cycle: the MLE has all rewards equal, so pi = pi_ref (uniform) and KL = 0.
    dpo = solve_dataset(data, [method_spec("dpo")], TAUS)[0]
    np.testing.assert_allclose(dpo.policy[:, :3], 1 / 3, atol=1e-12)
    np.testing.assert_allclose(dpo.kl[:, 0], 0.0, atol=1e-12)


def test_single_comparisons_diverge_for_dpo_and_never_for_ipo() -> None:
    # Each prompt holds one comparison w > l (with some counts): two singleton components, one separating
    # comparison, so the logistic loss has no minimiser (DPO and RLHF without a ridge: `diverged`, pi(l) = 0
    # for every tau). IPO: (h - 1/(2 tau))^2 is minimised at h = delta_w - delta_l = 1/(2 tau), attained.
    prompts = [{"actions": ["w", "l"], "pairs": [(0, 1, k)]} for k in (1, 2, 5)]
    prompts.append({"actions": ["l", "m", "w"], "pairs": [(2, 0, 1)]})  # m is never compared
    data = dataset(prompts)
    dpo, ipo, rlhf, ridge = solve_dataset(data, SPECS, TAUS)
    assert (dpo.status == "diverged").all() and (rlhf.status == "diverged").all()
    assert (ipo.status == "optimal").all() and (ridge.status == "optimal").all()
    # DPO's limit: all mass on the winner among compared actions; m (unseen) keeps its offset 0 but the
    # winner's offset grows without bound, so m gets 0 too.
    np.testing.assert_allclose(dpo.policy[:, [0, 2, 4, 8]], 1.0, atol=1e-15)
    np.testing.assert_allclose(dpo.policy[:, [1, 3, 5, 6, 7]], 0.0, atol=1e-15)
    assert np.isnan(dpo.reward).all()
    # IPO, 2 actions, uniform pi_ref: delta_w - delta_l = 1/(2 tau), so pi(w) = sigmoid(1/(2 tau)).
    for t, tau in enumerate(TAUS):
        np.testing.assert_allclose(ipo.policy[t, 0], 1 / (1 + math.exp(-0.5 / tau)), rtol=1e-12)


def test_two_action_prompt_matches_the_closed_forms() -> None:
    # W[a,b] = 3, W[b,a] = 1. Bradley–Terry MLE: sigma(r_a - r_b) = 3/4, i.e. r_a - r_b = log(W[a,b]/W[b,a])
    # = log 3, so DPO's pi(a)/pi(b) = (pi_ref(a)/pi_ref(b)) 3^(1/tau). IPO's normal equation
    # 3 (h - 1/(2 tau)) + 1 (h + 1/(2 tau)) = 0 gives h = (3 - 1) / (2 tau (3 + 1)) = 1/(4 tau).
    # RLHF with ridge l2 on the mean loss: r_b = -r_a, d/dr_a [(3 softplus(-2 r_a) + softplus(2 r_a))/4
    # + l2 r_a^2] = 0, solved below by bisection on the derivative written out.
    ref = np.array([0.3, 0.7])
    data = dataset([{"actions": ["a", "b"], "pi_ref": ref, "pairs": [(0, 1, 3), (1, 0, 1)]}])
    dpo, ipo, rlhf, ridge = solve_dataset(data, SPECS, TAUS)
    sig = lambda x: 1 / (1 + math.exp(-x))  # noqa: E731

    def dridge(r: float, l2: float = 0.1) -> float:
        return (-3 * 2 * sig(-2 * r) + 2 * sig(2 * r)) / 4 + 2 * l2 * r

    lo, hi = 0.0, 5.0
    for _ in range(200):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if dridge(mid) < 0 else (lo, mid)
    r_ridge = 2 * lo  # r_a - r_b
    for t, tau in enumerate(TAUS):
        for sol, gap in ((dpo, math.log(3) / tau), (rlhf, math.log(3) / tau), (ipo, 1 / (4 * tau)),
                         (ridge, r_ridge / tau)):
            odds = ref[0] / ref[1] * math.exp(gap)
            np.testing.assert_allclose(sol.policy[t, 0] / sol.policy[t, 1], odds, rtol=1e-10)
    np.testing.assert_allclose(dpo.reward[0] - dpo.reward[1], math.log(3), rtol=1e-12)


def test_prompts_without_comparisons_keep_pi_ref() -> None:
    # A prompt with one completion, and one whose only comparisons were ties (no comparison recorded): the
    # loss sees none of their actions, so the canonical gauge leaves pi = pi_ref, loss 0, KL 0.
    data = dataset([
        {"actions": ["a", "b"], "pairs": [(0, 1, 1)]},
        {"actions": ["only"], "pairs": []},
        {"actions": ["x", "y"], "pi_ref": [0.25, 0.75], "pairs": []},
    ])
    for sol in solve_dataset(data, SPECS, TAUS):
        np.testing.assert_allclose(sol.policy[:, 2:], [[1.0, 0.25, 0.75]] * len(TAUS), atol=1e-15)
        assert (sol.status[:, 1:] == "optimal").all()
        np.testing.assert_allclose(sol.loss[:, 1:], 0.0)
        np.testing.assert_allclose(sol.kl[:, 1:], 0.0, atol=1e-15)


def test_psipo_on_a_prompt_with_an_uncompared_pair_names_the_prompt() -> None:
    data = dataset([
        {"actions": ["a", "b"], "pairs": [(0, 1, 1)]},
        {"actions": ["a", "b", "c"], "pairs": [(0, 1, 1), (1, 2, 1)]},  # a and c never compared
    ])
    with pytest.raises(InputError, match=r"x1") as err:
        solve_dataset(data, [method_spec("psipo")], TAUS)
    assert "every pair of compared actions observed" in err.value.reason
