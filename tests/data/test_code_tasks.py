"""The code env's bundled tasks: references pass in the real local sandbox, wrong answers fail, splits
are disjoint and stable, and ``rewardkit eval --suite code`` runs end to end on them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import pytest

from rewardkit import load_env
from rewardkit.data.code_tasks import SPLITS, all_problems, code_tasks, split_of
from rewardkit.types import Task


@pytest.fixture(scope="module")
def env():
    environment = load_env("code", sandbox="local")
    yield environment
    environment.close()


def all_tasks() -> list[Task]:
    return [t for split in SPLITS for t in code_tasks(split)]


def fenced(code: str) -> str:
    return f"Here is my solution.\n\n```python\n{code}```\n"


def scores_of(env, completions_and_tasks: list[tuple[str, Task]]):
    return env.score_batch([{"completion": c, "info": t.info} for c, t in completions_and_tasks])


# ---- the tasks themselves (no sandbox) ---------------------------------------------------------------
def test_splits_are_disjoint_complete_and_sized() -> None:
    train, test = code_tasks("train"), code_tasks("test")
    assert len(test) >= 8 and len(train) >= 2 * len(test), (len(train), len(test))
    ids = [t.id for t in train + test]
    assert len(ids) == len(set(ids)) == len(all_problems())
    families = {s: {t.info["family"] for t in tasks} for s, tasks in (("train", train), ("test", test))}
    assert not families["train"] & families["test"], "a family's variants must share one split"
    assert any("io_tests" in t.info for t in test) and any("test_code" in t.info for t in test)


def test_splits_are_stable() -> None:
    assert [t.to_dict() for t in code_tasks("test")] == [t.to_dict() for t in code_tasks("test")]
    # Pinned: a change of hash, salt or fraction would move these and leak test problems into training.
    pinned = {"is_palindrome": "test", "transpose": "test", "caesar": "test", "sort_numbers": "test"}
    pinned |= {"gcd": "train", "two_sum": "train", "is_prime": "train", "nth_prime": "train"}
    assert {family: split_of(family) for family in pinned} == pinned


def test_unknown_split_is_an_error() -> None:
    with pytest.raises(ValueError, match="unknown split 'validation'"):
        code_tasks("validation")


def test_prompts_and_info_are_complete() -> None:
    for task in all_tasks():
        assert task.id.startswith("code/") and "```python" in task.prompt, task.id
        assert ("test_code" in task.info) != ("io_tests" in task.info), task.id
        assert task.info["reference"].strip(), task.id
        if "test_code" in task.info:
            assert f"`{task.info['entry_point']}(" in task.prompt, task.id
            assert "exit" not in task.info["test_code"], f"{task.id}: tests must not exit on success"
        else:
            assert task.info["io_tests"][0]["stdin"].strip().split("\n")[0] in task.prompt, task.id
        json.dumps(task.to_dict())  # rollouts.jsonl stores tasks


# ---- scored by the real code env in the local sandbox -------------------------------------------------
def test_every_reference_solution_scores_one(env) -> None:
    tasks = all_tasks()
    scores = scores_of(env, [(fenced(t.info["reference"]), t) for t in tasks])
    failed = {
        t.id: (s.reward, s.status, s.info.get("reason"), s.info.get("results")) for t, s in zip(tasks, scores)
    }
    failed = {k: v for k, v in failed.items() if v[:2] != (1.0, "ok")}
    assert not failed, failed


def test_empty_and_wrong_solutions_score_zero(env) -> None:
    tasks = all_tasks()
    wrong = [
        f"def {t.info['entry_point']}(*args, **kwargs):\n    return None\n"
        if "test_code" in t.info
        else "print('wrong')\n"
        for t in tasks
    ]
    samples = [("", t) for t in tasks] + [(fenced(w), t) for w, t in zip(wrong, tasks)]
    scores = scores_of(env, samples)
    passing = [(t.id, c[:40], s.reward, s.status) for (c, t), s in zip(samples, scores) if s.reward != 0.0]
    assert not passing, passing
    assert all(s.status == "ok" for s in scores)


def test_variants_of_a_family_are_told_apart(env) -> None:
    """Each variant's tests reject its siblings' references: the parameter really is tested."""
    by_family: dict[str, list[Task]] = defaultdict(list)
    for task in all_tasks():
        by_family[task.info["family"]].append(task)
    pairs = [(a, b) for group in by_family.values() for a in group for b in group if a is not b]
    assert len(pairs) >= 6
    scores = scores_of(env, [(fenced(a.info["reference"]), b) for a, b in pairs])
    passing = [(a.id, b.id) for (a, b), s in zip(pairs, scores) if s.reward == 1.0]
    assert not passing, f"a variant's reference passes another variant's tests: {passing}"


# ---- `rewardkit eval --suite code` ----------------------------------------------------------------------
def test_code_suite_runs_end_to_end(tmp_path: Path) -> None:
    pytest.importorskip("torch", reason="rewardkit eval needs torch ([train] extra)")
    pytest.importorskip("transformers", reason="rewardkit eval needs transformers ([train] extra)")
    from rewardkit.models.tiny import TinyConfig, build_tiny

    model = tmp_path / "model"
    corpus = [t.prompt + fenced(t.info["reference"]) for t in code_tasks("train")]
    config = TinyConfig(vocab_size=300, hidden_size=64, intermediate_size=128, num_layers=2, num_heads=2)
    build_tiny(corpus, config, save_to=model)

    out = tmp_path / "eval"
    cmd = [sys.executable, "-m", "rewardkit", "eval", "--model", str(model), "--suite", "code", "-q"]
    cmd += ["--num-tasks", "2", "--n", "1", "--k", "1", "--max-new-tokens", "16", "--output-dir", str(out)]
    done = subprocess.run(
        cmd, capture_output=True, text=True, env=dict(os.environ, TOKENIZERS_PARALLELISM="false"), timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["suite"]["name"] == "code"
    stats = summary["environments"]["code"]
    assert (stats["tasks"], stats["samples"]) == (2, 2)
    assert stats["status_counts"]["ok"] == 2, stats  # scored, not "error" for want of a dataset or sandbox
    rows = [json.loads(line) for line in (out / "rollouts.jsonl").read_text().splitlines()]
    assert sorted(r["task_id"] for r in rows) == sorted(t.id for t in code_tasks("test")[:2])
