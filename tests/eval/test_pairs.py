"""``rewardkit pairs``: preference pairs ranked by the verifier from an eval run's samples.

The rules on hand-made records (best vs worst, every pair, ties, margins, statuses that are never ranked,
every prompt without a pair counted with its reason), then end to end: ``rewardkit eval`` samples 4
completions per prompt from a tiny Llama and scores them with ``efficiency``; ``rewardkit pairs`` turns
that run into a dataset whose every row is checked against the run's own scores."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from rewardkit.eval.pairs import PairConfig, build_pairs, pairs_from_eval
from rewardkit.eval.reject import RejectConfig, select


def rec(task: int, sample: int, reward: float, status: str = "ok") -> dict:
    return {
        "env": "e",
        "task_index": task,
        "task_id": f"t{task}",
        "sample_index": sample,
        "prompt": f"p{task}",
        "answer": None,
        "completion": f"c{task}.{sample}",
        "reward": reward,
        "status": status,
    }


RECORDS = [
    *(rec(0, i, r) for i, r in enumerate([0.2, 1.0, 0.0, 1.0])),  # best 1.0 (first of the two), worst 0.0
    *(rec(1, i, 1.0) for i in range(4)),  # all equal
    *(rec(2, i, r) for i, r in enumerate([0.5, 0.6, 0.55, 0.5])),  # gap 0.1 only
    rec(3, 0, 1.0),
    rec(3, 1, 0.0, "timeout"),  # a timeout is not a rejected answer: one ranked sample left
    rec(3, 2, 0.0, "error"),
]


def test_best_against_worst_with_the_reasons_for_every_prompt_without_a_pair():
    rows, summary = build_pairs(RECORDS, PairConfig(min_margin=0.2))
    assert [(r["chosen"], r["rejected"], r["margin"]) for r in rows] == [("c0.1", "c0.2", 1.0)]
    assert summary["skipped_prompts"] == {"all_equal": 1, "small_margin": 1, "too_few_ranked": 1}
    assert summary["unranked_samples"] == {"error": 1, "timeout": 1}
    assert summary["prompts"] == 4 and summary["prompts_with_pairs"] == 1 and summary["pairs"] == 1
    # with no threshold, the small gap gives a pair too
    rows, summary = build_pairs(RECORDS, PairConfig())
    assert [(r["chosen"], r["rejected"]) for r in rows] == [("c0.1", "c0.2"), ("c2.1", "c2.0")]


def test_every_pair_above_the_margin():
    rows, _ = build_pairs(RECORDS[:4], PairConfig(min_margin=0.5, pairs="all"))  # rewards 0.2, 1.0, 0.0, 1.0
    assert sorted((r["chosen"], r["rejected"]) for r in rows) == [
        ("c0.1", "c0.0"),
        ("c0.1", "c0.2"),
        ("c0.3", "c0.0"),
        ("c0.3", "c0.2"),
    ]  # 0.2 vs 0.0 is not above the margin
    assert all(r["margin"] > 0.5 and r["score_chosen"] - r["score_rejected"] == r["margin"] for r in rows)


def test_bad_settings_and_inputs_are_clear_errors(tmp_path):
    with pytest.raises(ValueError, match="pairs: got 'some'"):
        PairConfig(pairs="some")
    with pytest.raises(ValueError, match="min_margin: got -1"):
        PairConfig(min_margin=-1)
    with pytest.raises(FileNotFoundError, match="is not a rewardkit eval run"):
        pairs_from_eval(tmp_path, tmp_path / "pairs.jsonl", PairConfig())


@pytest.fixture(scope="module")
def eval_run(tmp_path_factory):
    """``rewardkit eval``: 4 samples of each of 6 prompts from a tiny Llama, scored by ``efficiency``."""
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    from rewardkit.models.tiny import TinyConfig, build_tiny

    tmp_path = tmp_path_factory.mktemp("eval_run")
    prompts = [f"Say {i}:" for i in range(6)]
    build_tiny(
        [f"{p} {i} {i * 7}" for i, p in enumerate(prompts)] * 20, TinyConfig(seed=0), save_to=tmp_path / "m"
    )
    data = tmp_path / "prompts.jsonl"
    data.write_text("".join(json.dumps({"prompt": p, "answer": ""}) + "\n" for p in prompts))
    run = tmp_path / "samples"
    evaluated = subprocess.run(
        [*CLI, "eval", "--model", str(tmp_path / "m"), "--envs", "efficiency", "--data", str(data)]
        + ["--n", "4", "--temperature", "1.0", "--max-new-tokens", "12", "--output-dir", str(run), "-q"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert evaluated.returncode == 0, evaluated.stderr[-3000:]
    return run


CLI = [sys.executable, "-m", "rewardkit"]


def test_pairs_from_a_real_eval_run(eval_run, tmp_path):
    run = eval_run
    cli = CLI
    made = subprocess.run(
        [*cli, "pairs", str(run), "--output", str(tmp_path / "pairs.jsonl")],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert made.returncode == 0, made.stderr[-3000:]
    assert "pairs from" in made.stdout and "prompts without a pair" in made.stdout
    rows = [json.loads(line) for line in (tmp_path / "pairs.jsonl").read_text().splitlines()]
    summary = json.loads((tmp_path / "pairs_summary.json").read_text())
    samples = [json.loads(line) for line in (run / "rollouts.jsonl").read_text().splitlines()]
    assert summary["samples"] == len(samples) == 24 and summary["pairs"] == len(rows) > 0
    assert summary["prompts_with_pairs"] + sum(summary["skipped_prompts"].values()) == summary["prompts"] == 6
    for row in rows:  # each row is its prompt's best against its worst, with their own scores
        group = [s for s in samples if s["prompt"] == row["prompt"] and s["status"] == "ok"]
        rewards = {s["completion"]: s["reward"] for s in group}
        assert row["score_chosen"] == max(rewards.values()) == rewards[row["chosen"]]
        assert row["score_rejected"] == min(rewards.values()) == rewards[row["rejected"]]
        assert row["margin"] > 0 and row["env"] == "efficiency"


# ---- rejection sampling ----------------------------------------------------------------------------------


def test_reject_keeps_what_passes_once_highest_first():
    records = [
        *(rec(0, i, r) for i, r in enumerate([1.0, 0.5, 1.0, 0.9])),
        rec(1, 0, 0.2),
        rec(1, 1, 1.0, "error"),  # an error's reward is never trusted
    ]
    records[2]["completion"] = records[0]["completion"]  # an exact duplicate
    rows, summary = select(records, RejectConfig(threshold=0.9), {})
    assert [(r["completion"], r["reward"]) for r in rows] == [("c0.0", 1.0), ("c0.3", 0.9)]
    assert (summary["kept"], summary["duplicates"], summary["below_threshold"]) == (2, 1, 2)
    assert summary["unranked_samples"] == {"error": 1} and summary["kept_per_prompt"] == {"0": 1, "2": 1}
    rows, summary = select(records, RejectConfig(threshold=0.9, max_per_prompt=1), {})
    assert [r["completion"] for r in rows] == ["c0.0"] and summary["beyond_max_per_prompt"] == 1
    rows, _ = select(records, RejectConfig(), {"e": 0.5})  # the environment's pass threshold
    assert [r["completion"] for r in rows] == ["c0.0", "c0.3", "c0.1"]
    with pytest.raises(ValueError, match="max_per_prompt: got 0"):
        RejectConfig(max_per_prompt=0)


def test_reject_from_a_real_eval_run(eval_run, tmp_path):
    samples = [json.loads(line) for line in (eval_run / "rollouts.jsonl").read_text().splitlines()]
    bar = sorted(s["reward"] for s in samples)[len(samples) // 2]  # about half pass
    made = subprocess.run(
        [*CLI, "reject", str(eval_run), "--output", str(tmp_path / "sft.jsonl"), "--threshold", str(bar)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert made.returncode == 0, made.stderr[-3000:]
    rows = [json.loads(line) for line in (tmp_path / "sft.jsonl").read_text().splitlines()]
    summary = json.loads((tmp_path / "reject_summary.json").read_text())
    passing = {(s["prompt"], s["completion"]) for s in samples if s["status"] == "ok" and s["reward"] >= bar}
    assert {(r["prompt"], r["completion"]) for r in rows} == passing and len(rows) == len(passing) > 0
    assert summary["kept"] + summary["below_threshold"] + summary["duplicates"] == len(samples)
