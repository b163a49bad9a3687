"""A seeded generator of arithmetic and simple algebra problems with exactly known answers.

Why: the demo, the tests and smoke-training need math tasks with no download. The generator is
deterministic in ``seed``; the train and test splits are disjoint by construction (a problem belongs
to the split chosen by a stable hash of its text), so no test question can leak into training.

Difficulty levels:

1. one operation on small integers (``17 + 25``, ``8 * 7``);
2. two operations with precedence and parentheses, exact division, sums of fractions;
3. linear equations in one unknown (``3x + 4 = 19``), powers and squares;
4. quadratics with integer roots (answer: both roots) and 2x2 linear systems (answer: an ordered pair).
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from fractions import Fraction

from rewardkit.types import Task

LEVELS = (1, 2, 3, 4)
SPLITS = ("train", "test")
TEST_FRACTION = 0.2
PROMPT_TEMPLATE = (
    "Solve the following math problem. Think step by step inside <think>...</think>, then write only "
    "the final answer inside <answer>...</answer>.\n\nProblem: {question}"
)


@dataclass(frozen=True)
class ProceduralConfig:
    """What ``generate_tasks`` produces."""

    seed: int = 0
    """Seed of the problem stream; the same seed gives the same tasks in the same order."""
    levels: tuple[int, ...] = (1, 2, 3)
    """Difficulty levels to draw from (see the module docstring), uniformly."""
    prompt_template: str = PROMPT_TEMPLATE
    """Prompt text with a ``{question}`` field; asks for the <think>/<answer> format by default."""

    def __post_init__(self) -> None:
        if not self.levels or any(level not in LEVELS for level in self.levels):
            raise ValueError(f"levels must be a non-empty subset of {LEVELS}, got {self.levels!r}")
        if "{question}" not in self.prompt_template:
            raise ValueError("prompt_template must contain a {question} field")


def _frac_latex(value: Fraction) -> str:
    if value.denominator == 1:
        return str(value.numerator)
    sign = "-" if value < 0 else ""
    return f"{sign}\\frac{{{abs(value.numerator)}}}{{{value.denominator}}}"


def _signed(n: int, var: str = "") -> str:
    """``+ 3x`` / ``- 3x`` for the middle of an expression."""
    return f"+ {n}{var}" if n >= 0 else f"- {-n}{var}"


def _level1(rng: random.Random) -> tuple[str, str, str]:
    a, b = rng.randint(2, 99), rng.randint(2, 99)
    op = rng.choice("+-*")
    value = {"+": a + b, "-": a - b, "*": a * b}[op]
    return f"What is {a} {op} {b}?", str(value), "arithmetic"


def _level2(rng: random.Random) -> tuple[str, str, str]:
    kind = rng.choice(("precedence", "division", "fractions"))
    if kind == "precedence":
        a, b, c = rng.randint(2, 30), rng.randint(2, 30), rng.randint(2, 12)
        if rng.random() < 0.5:
            return f"Compute ({a} + {b}) * {c}.", str((a + b) * c), kind
        return f"Compute {a} + {b} * {c}.", str(a + b * c), kind
    if kind == "division":
        b, q = rng.randint(2, 19), rng.randint(2, 40)
        c = rng.randint(1, 50)
        return f"Compute {b * q} / {b} - {c}.", str(q - c), kind
    x = Fraction(rng.randint(1, 9), rng.randint(2, 9))
    y = Fraction(rng.randint(1, 9), rng.randint(2, 9))
    question = f"Compute {x.numerator}/{x.denominator} + {y.numerator}/{y.denominator} as a fraction in lowest terms."
    return question, _frac_latex(x + y), kind


def _level3(rng: random.Random) -> tuple[str, str, str]:
    kind = rng.choice(("linear", "powers"))
    if kind == "linear":
        a = rng.choice([n for n in range(-9, 10) if n not in (0, 1)])
        x, b = rng.randint(-20, 20), rng.randint(-30, 30)
        return f"Solve for x: {a}x {_signed(b)} = {a * x + b}.", str(x), kind
    a, b = rng.randint(2, 15), rng.randint(2, 15)
    e = rng.randint(2, 4)
    return f"Compute {a}^{e} - {b}^2.", str(a**e - b**2), kind


def _level4(rng: random.Random) -> tuple[str, str, str]:
    if rng.random() < 0.5:
        r1, r2 = rng.sample(range(-12, 13), 2)
        s, p = -(r1 + r2), r1 * r2
        question = f"Find all real solutions of x^2 {_signed(s, 'x')} {_signed(p)} = 0. List them separated by commas."
        lo, hi = sorted((r1, r2))
        return question, f"{lo}, {hi}", "quadratic"
    x, y = rng.randint(-10, 10), rng.randint(-10, 10)
    a, b = rng.randint(1, 6), rng.randint(1, 6)
    question = f"Solve the system x + y = {x + y} and {a}x - {b}y = {a * x - b * y}. Give the answer as an ordered pair (x, y)."
    return question, f"({x}, {y})", "system"


_GENERATORS: dict[int, Callable[[random.Random], tuple[str, str, str]]] = {
    1: _level1,
    2: _level2,
    3: _level3,
    4: _level4,
}


def split_of(question: str) -> str:
    """The split a question belongs to: a stable hash, so splits never overlap, whatever the sizes asked."""
    bucket = int.from_bytes(hashlib.blake2b(question.encode(), digest_size=8).digest(), "big") % 1000
    return "test" if bucket < TEST_FRACTION * 1000 else "train"


def generate_tasks(split: str = "train", n: int = 1000, config: ProceduralConfig | None = None) -> list[Task]:
    """``n`` distinct tasks of ``split``; ``Task.answer`` is a LaTeX string, ``info`` has level and kind."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    config = config or ProceduralConfig()
    rng = random.Random(f"rewardkit-procedural-{config.seed}")
    tasks: list[Task] = []
    seen: set[str] = set()
    attempts = 0
    while len(tasks) < n:
        attempts += 1
        if attempts > 200 * n + 10_000:
            raise ValueError(f"could not generate {n} distinct {split} tasks at levels {config.levels}")
        level = rng.choice(config.levels)
        question, answer, kind = _GENERATORS[level](rng)
        if question in seen or split_of(question) != split:
            continue
        seen.add(question)
        prompt = config.prompt_template.format(question=question)
        info = {"level": level, "kind": kind, "question": question}
        tasks.append(
            Task(prompt=prompt, answer=answer, info=info, id=f"procedural-{config.seed}-{split}-{len(tasks)}")
        )
    return tasks


def levels_of(tasks: Sequence[Task]) -> dict[int, int]:
    """How many tasks of each level: for logs and tests."""
    counts: dict[int, int] = {}
    for task in tasks:
        counts[task.info["level"]] = counts.get(task.info["level"], 0) + 1
    return counts
