"""The code env's bundled tasks: references pass in the real local sandbox, wrong answers fail, splits
are disjoint and stable, and ``rewardkit eval --suite code`` runs end to end on them."""

from __future__ import annotations

import hashlib
import importlib.resources
import json
import math
import os
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import pytest

from rewardkit import load_env
from rewardkit.data.code_problems import fixed_problems, parse_problems
from rewardkit.data.code_tasks import ORACLES, SPLITS, all_problems, code_tasks, parse_families, split_of
from rewardkit.data.tables import TableError, decode_value, encode_value
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


# ---- the JSONL tables and their value encoding ---------------------------------------------------------
# sha256 of json.dumps([t.to_dict() for t in code_tasks(split)], sort_keys=True), recorded when the tables
# moved from Python literals to rewardkit/data/*.jsonl (the tasks were identical before and after). A change
# to any id, prompt, test, reference, order or split changes it: update it only for an intended change.
TASK_DIGESTS = {
    "train": (40, "785aa9fbf1475302a5b1a574dca16c98aa0fcb5c276ad15f2e8e44d137db61bd"),
    "test": (13, "665b6dd8d57ae840080245a6b0db0cd0d9a76a8755c5d93024f768681cb8cee8"),
}


def test_tasks_match_the_recorded_digest() -> None:
    for split, (count, digest) in TASK_DIGESTS.items():
        tasks = [t.to_dict() for t in code_tasks(split)]
        got = hashlib.sha256(json.dumps(tasks, sort_keys=True).encode()).hexdigest()
        assert (len(tasks), got) == (count, digest), f"the {split} tasks changed"


def typed(value):
    """``value`` with every type spelt out: [1] and (1,), 1 and 1.0 and True all differ."""
    if isinstance(value, list | tuple | set | frozenset):
        items = (
            sorted(map(repr, map(typed, value))) if isinstance(value, set | frozenset) else map(typed, value)
        )
        return (type(value).__name__, tuple(items))
    if isinstance(value, dict):
        return ("dict", tuple((typed(k), typed(v)) for k, v in value.items()))
    return (type(value).__name__, "nan" if value != value else repr(value))


TRICKY = [
    None,
    True,
    0,
    -(2**70),
    1.0,
    -0.0,
    2.5e-7,
    math.inf,
    -math.inf,
    math.nan,
    "",
    'ü \n "$tuple"',
    [],
    (),
    (1,),
    [(1, 2), [3]],
    {1, 2},
    frozenset({"a"}),
    {},
    {"a": [1, (2,)]},
    {1: "x", (2, 3): None},
    {"$tuple": [1]},
    {"$a": 1, "$b": 2},
    b"\x00\xffbytes",
    [{True: 1.5}],
]


@pytest.mark.parametrize("value", TRICKY, ids=repr)
def test_values_round_trip_with_their_types(value) -> None:
    encoded = json.loads(json.dumps(encode_value(value), allow_nan=False))
    assert typed(decode_value(encoded)) == typed(value)


def test_encoding_rejects_what_it_cannot_hold() -> None:
    with pytest.raises(TypeError, match="no table encoding for complex"):
        encode_value([1j])
    with pytest.raises(ValueError, match=r"at \[1\]: unknown tag '\$list'"):
        decode_value([1, {"$list": []}])
    with pytest.raises(ValueError, match=r"at \.\$set: unhashable type"):
        decode_value({"$set": [[1]]})


def raw_lines(name: str) -> list[dict]:
    text = importlib.resources.files("rewardkit.data").joinpath(name).read_text(encoding="utf-8")
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def test_tables_hold_what_the_encoder_writes() -> None:
    """Each line is exactly its loaded problem re-encoded: no stray field, no value the loader reshaped."""
    rows = raw_lines("code_problems.jsonl")
    problems = fixed_problems()
    assert len(rows) == len(problems) and [r["id"] for r in rows] == [p.id for p in problems]
    for row, p in zip(rows, problems):
        again = {k: getattr(p, k) for k in ("id", "family", "signature", "description", "reference")}
        if p.cases:
            again["cases"] = [
                {"args": encode_value(list(a)), "expected": encode_value(e)} for a, e in p.cases
            ]
        else:
            again["io_tests"] = [{"stdin": i, "stdout": o} for i, o in p.io_tests]
        assert row == again, p.id
    families = raw_lines("code_families.jsonl")
    assert {f["oracle"] for f in families} <= ORACLES.keys()
    assert len(all_problems()) == len(problems) + sum(len(f["params"]) for f in families)


def test_problems_are_fresh_objects() -> None:
    first = next(p for p in fixed_problems() if p.id == "running_sum")
    first.cases[0][0][0].append(99)
    again = next(p for p in fixed_problems() if p.id == "running_sum")
    assert again.cases[0] == (([1, 2, 3],), [1, 3, 6])


GOOD_PROBLEM = {
    "id": "f",
    "family": "f",
    "signature": "f(x)",
    "description": "d.",
    "reference": "def f(x): ...",
}
GOOD_CASES = [{"args": [1], "expected": 1}]
P = GOOD_PROBLEM
BAD_PROBLEMS = [  # (line 2 of the file, the field the error must name, words it must say)
    ("{not json", "", "not valid JSON"),
    ("[1, 2]", "", "must be a JSON object"),
    ('{"x": NaN}', "", "NaN is not JSON"),
    (P, "cases", "missing"),
    ({**P, "cases": GOOD_CASES, "io_test": []}, "io_test", "unknown field"),
    ({**P, "id": 3, "cases": GOOD_CASES}, "id", "must be a string"),
    ({**P, "id": "reused", "cases": GOOD_CASES}, "id", "duplicate id 'reused' (first on line 1)"),
    ({**P, "signature": "", "cases": GOOD_CASES}, "signature", "must not be empty"),
    ({**P, "cases": []}, "cases", "must be a non-empty list"),
    ({**P, "cases": [*GOOD_CASES, {"args": 1, "expected": 2}]}, "cases[1].args", "must be a list"),
    ({**P, "cases": [{"args": [1]}]}, "cases[0]", '"expected"'),
    ({**P, "cases": [{"args": [1, {"$set": [[]]}], "expected": 1}]}, "cases[0].args[1].$set", "unhashable"),
    (
        {**P, "cases": [{"args": [], "expected": {"a": {"$float": "+1"}}}]},
        "cases[0].expected.a.$float",
        "must be one of",
    ),
    ({**P, "cases": GOOD_CASES, "io_tests": []}, "io_tests", "not both"),
    ({**P, "io_tests": [{"stdin": "1\n", "stdout": "1\n"}]}, "signature", "must be empty"),
    (
        {**P, "signature": "", "io_tests": [{"stdin": 1, "stdout": ""}]},
        "io_tests[0].stdin",
        "must be a string",
    ),
]


@pytest.mark.parametrize(("line", "field", "words"), BAD_PROBLEMS, ids=lambda x: str(x)[:40])
def test_a_malformed_problem_names_file_line_and_field(line, field, words) -> None:
    first = json.dumps({**GOOD_PROBLEM, "id": "reused", "cases": GOOD_CASES})
    text = first + "\n" + (line if isinstance(line, str) else json.dumps(line)) + "\n"
    with pytest.raises(TableError) as caught:
        parse_problems(text, "bad.jsonl")
    assert (caught.value.file, caught.value.line, caught.value.field) == ("bad.jsonl", 2, field)
    assert str(caught.value).startswith("bad.jsonl, line 2: ") and words in str(caught.value)
    assert f"field {field!r}" in str(caught.value) if field else "field" not in str(caught.value)


GOOD_FAMILY = raw_lines("code_families.jsonl")[0]
BAD_FAMILIES = [
    ({**GOOD_FAMILY, "oracle": "digit_sum_v2"}, "oracle", "unknown oracle 'digit_sum_v2'"),
    ({**GOOD_FAMILY, "inputs": [[1], 2]}, "inputs[1]", "must be a list of arguments"),
    ({**GOOD_FAMILY, "params": [{"$oops": 1}]}, "params[0]", "unknown tag '$oops'"),
    ({**GOOD_FAMILY, "reference": "def digit_sum(n): return 0\n"}, "reference", "must use the parameter {p}"),
    ({k: v for k, v in GOOD_FAMILY.items() if k != "params"}, "params", "missing"),
]


@pytest.mark.parametrize(("line", "field", "words"), BAD_FAMILIES, ids=lambda x: str(x)[:40])
def test_a_malformed_family_names_file_line_and_field(line, field, words) -> None:
    assert len(parse_families(json.dumps(GOOD_FAMILY) + "\n")) == 1
    with pytest.raises(TableError) as caught:
        parse_families(f"{json.dumps(GOOD_FAMILY)}\n\n{json.dumps(line)}\n", "fam.jsonl")
    assert (caught.value.file, caught.value.line, caught.value.field) == ("fam.jsonl", 3, field)
    assert words in str(caught.value)


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
