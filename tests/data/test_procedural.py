"""The procedural generator: seeded, disjoint splits, every level, answers the math verifier accepts."""

from __future__ import annotations

import re
from fractions import Fraction

import pytest

from rewardkit.data.procedural import LEVELS, ProceduralConfig, generate_tasks, levels_of, split_of
from rewardkit.verifiers.math import verify_math


def test_same_seed_same_tasks_other_seed_other_tasks():
    a = generate_tasks("train", 50, ProceduralConfig(seed=3))
    assert a == generate_tasks("train", 50, ProceduralConfig(seed=3))
    assert a != generate_tasks("train", 50, ProceduralConfig(seed=4))
    assert generate_tasks("train", 20, ProceduralConfig(seed=3)) == a[:20]  # a prefix, whatever n


def test_splits_are_disjoint_and_distinct():
    config = ProceduralConfig(levels=LEVELS)
    train, test = generate_tasks("train", 600, config), generate_tasks("test", 150, config)
    train_q = [t.info["question"] for t in train]
    test_q = [t.info["question"] for t in test]
    assert len(set(train_q)) == 600 and len(set(test_q)) == 150
    assert not set(train_q) & set(test_q)
    assert all(split_of(q) == "train" for q in train_q) and all(split_of(q) == "test" for q in test_q)


@pytest.mark.parametrize("level", LEVELS)
def test_each_level_alone(level):
    tasks = generate_tasks("train", 30, ProceduralConfig(levels=(level,)))
    assert levels_of(tasks) == {level: 30}
    assert all("<answer>" in t.prompt and "<think>" in t.prompt for t in tasks)


def test_answers_are_right():
    """Recompute the level 1-3 answers independently from the question text."""
    for task in generate_tasks("train", 200, ProceduralConfig(levels=(1, 2, 3))):
        q = task.info["question"]
        if m := re.fullmatch(r"Solve for x: (-?\d+)x ([+-]) (\d+) = (-?\d+)\.", q):
            a, sign, b, c = int(m[1]), m[2], int(m[3]), int(m[4])
            expected = Fraction(c - (b if sign == "+" else -b), a)
        elif m := re.fullmatch(r"Compute (\d+)/(\d+) \+ (\d+)/(\d+) as a fraction in lowest terms\.", q):
            expected = Fraction(int(m[1]), int(m[2])) + Fraction(int(m[3]), int(m[4]))
        else:
            expr = re.sub(r"^(What is|Compute) ", "", q).rstrip("?.").replace("^", "**")
            expected = Fraction(
                eval(expr, {"__builtins__": {}})
            ).limit_denominator()  # digits and operators only
        assert verify_math(
            f"<answer>{expected.numerator}/{expected.denominator}</answer>", task.answer
        ).correct, q


def test_level4_answers_check_out():
    for task in generate_tasks("test", 40, ProceduralConfig(levels=(4,))):
        q, answer = task.info["question"], task.answer
        if task.info["kind"] == "quadratic":
            roots = [int(r) for r in answer.split(", ")]
            m = re.search(r"x\^2 ([+-]) (\d+)x ([+-]) (\d+) = 0", q)
            b = int(m[2]) * (1 if m[1] == "+" else -1)
            c = int(m[4]) * (1 if m[3] == "+" else -1)
            assert all(r * r + b * r + c == 0 for r in roots), q
            assert verify_math(f"<answer>{roots[1]}, {roots[0]}</answer>", answer).correct  # any order
        else:
            assert re.fullmatch(r"\(-?\d+, -?\d+\)", answer)
            assert verify_math(f"<answer>{answer}</answer>", answer).correct


@pytest.mark.parametrize(
    "kwargs",
    [{"levels": ()}, {"levels": (0,)}, {"levels": (5,)}, {"prompt_template": "no field"}],
)
def test_bad_config(kwargs):
    with pytest.raises(ValueError):
        ProceduralConfig(**kwargs)


def test_bad_arguments():
    with pytest.raises(ValueError, match="split"):
        generate_tasks("validation", 1)
    with pytest.raises(ValueError, match="n must"):
        generate_tasks("train", -1)
