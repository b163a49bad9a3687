"""The hand-written programming problems behind ``rewardkit.data.code_tasks``, read from package data.

The problems are the lines of ``rewardkit/data/code_problems.jsonl``, functions first, then stdin/stdout
programs. Their expected values are written out, not computed from the reference solution, so "every
reference passes its tests" checks the reference against the problem statement. The parameterised
families live in ``code_families.jsonl`` (see ``code_tasks``). Nothing is read at import time.

One line is one problem::

    {"id": "gcd", "family": "gcd", "signature": "gcd(a, b)", "description": "returns ...",
     "reference": "def gcd(a, b):\n    ...\n",
     "cases": [{"args": [12, 18], "expected": 6}, ...]}

``reference`` is the solution's source as a program (no indentation to strip). A function problem has
``cases``: ``args`` is the list of positional arguments (the call's tuple) and ``expected`` the return
value, both in the value encoding of ``rewardkit.data.tables`` (plain JSON, or a tagged object such as
``{"$tuple": [...]}`` for what JSON cannot hold). A program has an empty ``signature`` and ``io_tests``
instead: ``[{"stdin": "2 3\n", "stdout": "5\n"}, ...]``.
"""

from __future__ import annotations

import copy
import functools
import textwrap
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from rewardkit.data.tables import Row, package_table, parse_table

Case = tuple[tuple[Any, ...], Any]
"""A function call's positional arguments and the value it must return."""


@dataclass(frozen=True)
class CodeProblem:
    """One bundled problem: either a function with cases, or a program with stdin/stdout pairs."""

    id: str
    """Unique name; the Task id is ``code/<id>``."""
    family: str
    """Split key: variants of one problem share it (and so share a split)."""
    signature: str
    """``name(arg, ...)`` of the function to write; empty for a stdin/stdout program."""
    description: str
    """What to write, completing the prompt's sentence."""
    reference: str
    """A solution that passes every test."""
    cases: tuple[Case, ...] = ()
    """Function problems: calls and their expected return values (the first few are shown as examples)."""
    io_tests: tuple[tuple[str, str], ...] = ()
    """Program problems: (stdin, expected stdout) pairs (the first is shown as an example)."""

    @property
    def entry_point(self) -> str:
        return self.signature.split("(", 1)[0]


def fixed_problems() -> list[CodeProblem]:
    """The hand-written problems, in file order (fresh objects on every call: cases hold mutable values)."""
    return copy.deepcopy(list(_load_problems()))


def source(code: str) -> str:
    """A reference written indented inside a call, as a program (dedented, no leading blank line)."""
    return textwrap.dedent(code).lstrip("\n")


PROBLEMS_FILE = "code_problems.jsonl"
_PROBLEM_FIELDS = {"id", "family", "signature", "description", "reference"}


@functools.cache
def _load_problems() -> tuple[CodeProblem, ...]:
    return tuple(_parse_rows(package_table(PROBLEMS_FILE)))


def parse_problems(text: str, file: str = PROBLEMS_FILE) -> list[CodeProblem]:
    """The problems in the JSONL ``text``, validated as the package file is (``TableError`` if malformed)."""
    return _parse_rows(parse_table(text, file))


def _parse_rows(rows: Iterable[Row]) -> list[CodeProblem]:
    problems, lines = [], {}
    for row in rows:
        problem = parse_problem(row)
        if problem.id in lines:
            raise row.error("id", f"duplicate id {problem.id!r} (first on line {lines[problem.id]})")
        lines[problem.id] = row.line
        problems.append(problem)
    return problems


def parse_problem(row: Row) -> CodeProblem:
    """One line of the problems table; every error names the file, the line and the field."""
    if "cases" in row.data and "io_tests" in row.data:
        raise row.error("io_tests", "a problem has cases (a function) or io_tests (a program), not both")
    if "cases" not in row.data and "io_tests" not in row.data:
        raise row.error("cases", "missing: a function problem needs cases, a program io_tests")
    kind = "cases" if "cases" in row.data else "io_tests"
    row.check_fields(_PROBLEM_FIELDS | {kind})
    signature = row.text("signature", empty=kind == "io_tests")
    if kind == "cases" and not signature.split("(", 1)[0].isidentifier():
        raise row.error("signature", f"must be name(args...), got {signature!r}")
    if kind == "io_tests" and signature:
        raise row.error("signature", "must be empty for a stdin/stdout program (io_tests)")
    fields = {name: row.text(name) for name in ("id", "family", "description", "reference")}
    if kind == "cases":
        cases = tuple(_case(row, f"cases[{i}]", case) for i, case in enumerate(row.items("cases")))
        return CodeProblem(signature=signature, cases=cases, **fields)
    io_tests = tuple(_io_test(row, f"io_tests[{i}]", test) for i, test in enumerate(row.items("io_tests")))
    return CodeProblem(signature=signature, io_tests=io_tests, **fields)


def _case(row: Row, field: str, case: Any) -> Case:
    if not isinstance(case, dict) or case.keys() != {"args", "expected"}:
        raise row.error(field, f'must be an object {{"args": [...], "expected": ...}}, got {case!r}')
    if not isinstance(case["args"], list):
        raise row.error(f"{field}.args", f"must be a list of arguments, got {case['args']!r}")
    args = tuple(row.value(f"{field}.args[{i}]", arg) for i, arg in enumerate(case["args"]))
    return args, row.value(f"{field}.expected", case["expected"])


def _io_test(row: Row, field: str, test: Any) -> tuple[str, str]:
    if not isinstance(test, dict) or test.keys() != {"stdin", "stdout"}:
        raise row.error(field, f'must be an object {{"stdin": "...", "stdout": "..."}}, got {test!r}')
    for key in ("stdin", "stdout"):
        if not isinstance(test[key], str):
            raise row.error(f"{field}.{key}", f"must be a string, got {test[key]!r}")
    return test["stdin"], test["stdout"]
