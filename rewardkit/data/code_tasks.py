"""Bundled programming problems for the ``code`` environment: small functions and stdin/stdout programs.

Why: ``rewardkit eval --suite code``, the demos and smoke-training need code tasks with no download.
Each problem (``rewardkit.data.code_problems``) becomes a ``Task`` whose prompt asks for a solution
in a ```python block and whose ``info`` holds what the code env runs: ``test_code`` (asserts on a
function; it never calls ``sys.exit``) or ``io_tests`` (stdin -> expected stdout), plus a reference
solution in ``info["reference"]`` that passes them.

The parameterised families (a Caesar shift by k, a rotation by k, base B, ...) compute expected
values with a small host-side oracle written independently of the reference source, so "every
reference scores 1.0" checks two implementations against each other, not one against itself.

Splits are by a stable hash of the problem's *family*: a family's variants (the same problem with
another parameter) always land in the same split, so no near-copy of a test problem is trained on,
and adding problems never moves an existing one to the other split.
"""

from __future__ import annotations

import copy
import functools
import hashlib
import string
import textwrap
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from rewardkit.data.code_problems import CodeProblem, fixed_problems
from rewardkit.data.tables import Row, package_table, parse_table
from rewardkit.types import Task

__all__ = ["SPLITS", "CodeProblem", "all_problems", "code_tasks", "split_of", "to_task"]

SPLITS = ("train", "test")
TEST_FRACTION = 0.25
FUNCTION_PROMPT = (
    "Write a Python function `{signature}` that {description}\n\n"
    "Examples:\n{examples}\n\n"
    "Reply with the complete function (and any imports or helpers it needs) in one ```python fenced code block."
)
PROGRAM_PROMPT = (
    "Write a Python program that {description}\n\n"
    "Example input:\n{stdin}\n\nExample output:\n{stdout}\n\n"
    "Reply with the complete program in one ```python fenced code block."
)
_EXAMPLES_SHOWN = 2
_SPLIT_SALT = "code:"
"""Hashed with each family name. Chosen once (the split came out near 3:1); changing it reshuffles the splits."""


def split_of(family: str) -> str:
    """The split a family belongs to: a stable hash, independent of every other problem."""
    digest = hashlib.blake2b((_SPLIT_SALT + family).encode(), digest_size=8).digest()
    bucket = int.from_bytes(digest, "big") % 1000
    return "test" if bucket < TEST_FRACTION * 1000 else "train"


def code_tasks(split: str = "train") -> list[Task]:
    """The bundled problems of ``split`` as Tasks, in a fixed order (fresh objects on every call)."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; bundled code task splits: {list(SPLITS)}")
    return [to_task(p) for p in all_problems() if split_of(p.family) == split]


def all_problems() -> list[CodeProblem]:
    """Every bundled problem, both splits: the hand-written ones, then the parameterised variants."""
    variants = [family.variant(p) for family in _families() for p in family.params]
    return [*fixed_problems(), *copy.deepcopy(variants)]


def to_task(problem: CodeProblem) -> Task:
    """The Task the code env scores: ``test_code`` for a function, ``io_tests`` for a program."""
    info: dict[str, Any] = {"family": problem.family, "reference": problem.reference}
    if problem.cases:
        info.update(entry_point=problem.entry_point, test_code=_test_code(problem))
        examples = "\n".join(
            f">>> {_call(problem.entry_point, args)}\n{expected!r}"
            for args, expected in problem.cases[:_EXAMPLES_SHOWN]
        )
        prompt = FUNCTION_PROMPT.format(
            signature=problem.signature, description=problem.description, examples=examples
        )
    else:
        info["io_tests"] = [{"stdin": i, "stdout": o} for i, o in problem.io_tests]
        stdin, stdout = problem.io_tests[0]
        prompt = PROGRAM_PROMPT.format(
            description=problem.description, stdin=_indent(stdin), stdout=_indent(stdout)
        )
    return Task(prompt=prompt, answer=None, info=info, id=f"code/{problem.id}")


def _call(name: str, args: tuple[Any, ...]) -> str:
    return f"{name}({', '.join(map(repr, args))})"


def _test_code(problem: CodeProblem) -> str:
    """One assert per case; the message names the call, so a failing run says which case broke."""
    lines = []
    for args, expected in problem.cases:
        call = _call(problem.entry_point, args)
        lines.append(f"assert {call} == {expected!r}, {f'{call} should return {expected!r}'!r}")
    return "\n".join(lines) + "\n"


def _indent(text: str) -> str:
    return textwrap.indent(text.rstrip("\n"), "    ")


# ---- parameterised families (expected values from a host-side oracle) -------------------------------
FAMILIES_FILE = "code_families.jsonl"
"""One family per line: ``family``, ``signature``, ``description`` and ``reference`` (templates over
``{p}``), ``oracle`` (a key of ``ORACLES``), ``inputs`` (a list of argument lists) and ``params`` (one
variant per value), values in the encoding of ``rewardkit.data.tables``."""
_FAMILY_FIELDS = {"family", "signature", "description", "reference", "oracle", "inputs", "params"}


@dataclass(frozen=True)
class _Family:
    """A problem with a parameter ``p``: ``description`` and ``reference`` are templates over ``{p}``,
    and ``oracle(p, *args)`` gives the expected value of each call in ``inputs``, one variant per ``params``."""

    family: str
    signature: str
    description: str
    reference: str
    oracle: Callable[..., Any]
    inputs: tuple[tuple[Any, ...], ...]
    params: tuple[Any, ...]

    def variant(self, p: Any) -> CodeProblem:
        cases = tuple((args, self.oracle(p, *args)) for args in self.inputs)
        reference = self.reference.replace("{p}", repr(p))
        return CodeProblem(
            f"{self.family}_{p}", self.family, self.signature, self.description.format(p=p), reference, cases
        )


def _base_digits(n: int, base: int) -> list[int]:
    digits = []
    while True:
        n, d = divmod(n, base)
        digits.append(d)
        if n == 0:
            return digits[::-1]


def _digit_sum(base: int, n: int) -> int:
    return sum(_base_digits(n, base))


def _to_base(base: int, n: int) -> str:
    return format(n, {2: "b", 8: "o", 16: "x"}[base])


def _caesar(k: int, text: str) -> str:
    lower, upper = string.ascii_lowercase, string.ascii_uppercase
    table = str.maketrans(lower + upper, lower[k:] + lower[:k] + upper[k:] + upper[:k])
    return text.translate(table)


def _rotated(k: int, items: list[Any]) -> list[Any]:
    d = deque(items)
    d.rotate(-k)
    return list(d)


def _chunked(size: int, items: list[Any]) -> list[list[Any]]:
    out: list[list[Any]] = []
    for x in items:
        if not out or len(out[-1]) == size:
            out.append([])
        out[-1].append(x)
    return out


def _count_multiples(m: int, lo: int, hi: int) -> int:
    return sum(1 for x in range(lo, hi + 1) if x % m == 0)


ORACLES: dict[str, Callable[..., Any]] = {
    "digit_sum": _digit_sum,
    "to_base": _to_base,
    "caesar": _caesar,
    "rotate_left": _rotated,
    "chunks": _chunked,
    "count_multiples": _count_multiples,
}
"""The host-side oracles a family's ``oracle`` field may name: ``oracle(p, *args)`` is the expected value."""


@functools.cache
def _families() -> tuple[_Family, ...]:
    return tuple(_parse_family(row) for row in package_table(FAMILIES_FILE))


def parse_families(text: str, file: str = FAMILIES_FILE) -> list[_Family]:
    """The families in the JSONL ``text``, validated as the package file is (``TableError`` if malformed)."""
    return [_parse_family(row) for row in parse_table(text, file)]


def _parse_family(row: Row) -> _Family:
    row.check_fields(_FAMILY_FIELDS)
    name, signature, oracle = row.text("family"), row.text("signature"), row.text("oracle")
    if oracle not in ORACLES:
        raise row.error("oracle", f"unknown oracle {oracle!r} (known: {sorted(ORACLES)})")
    inputs = []
    for i, args in enumerate(row.items("inputs")):
        if not isinstance(args, list):
            raise row.error(f"inputs[{i}]", f"must be a list of arguments, got {args!r}")
        inputs.append(tuple(row.value(f"inputs[{i}][{j}]", arg) for j, arg in enumerate(args)))
    params = tuple(row.value(f"params[{i}]", p) for i, p in enumerate(row.items("params")))
    description, reference = row.text("description"), row.text("reference")
    for field, template in (("description", description), ("reference", reference)):
        if "{p}" not in template:
            raise row.error(field, "must use the parameter {p}")
    return _Family(name, signature, description, reference, ORACLES[oracle], tuple(inputs), params)
