"""Procedurally generated tool tasks: nothing to download, and answers no model can know by heart.

* ``calculator``: exact arithmetic on 6- to 12-digit integers (products, sums of products, powers).
  A small model cannot do it in its head; one ``calculator`` (or ``python``) call solves it.
* ``lookup``: questions about fictional cities and people in a small generated knowledge base. Single
  questions need one ``search``; "when was the founder of X born" needs two (city, then founder).

Both are pure functions of (split, seed): the same call gives the same tasks in every process. Splits
do not overlap: a calculator expression belongs to the test split iff a hash of its text says so
(one in ten), and lookup splits ask about disjoint sets of cities.
"""

from __future__ import annotations

import hashlib
import itertools
import random
from dataclasses import dataclass

SPLITS = ("train", "test")


@dataclass(frozen=True)
class ToolProblem:
    """A question, its gold answer, and the calls that solve it (used to build gold examples)."""

    question: str
    answer: str
    gold_calls: tuple[tuple[str, dict], ...]
    match: str = "math"
    """How the final answer is compared: ``math`` (the math verifier) or ``exact`` (normalised text)."""
    id: str = ""


def _check_split(split: str) -> None:
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")


# ---- calculator -------------------------------------------------------------------------------------
def _operand(rng: random.Random, lo: int = 6, hi: int = 9) -> int:
    digits = rng.randint(lo, hi)
    return rng.randint(10 ** (digits - 1), 10**digits - 1)


def _expression(rng: random.Random) -> str:
    a, b, c, d = (_operand(rng) for _ in range(4))
    form = rng.randrange(5)
    if form == 0:
        return f"{a} * {b}"
    if form == 1:
        return f"{a} * {b} + {c}"
    if form == 2:
        return f"{a} * {b} - {c} * {d}"
    if form == 3:
        return f"({a} + {b}) * ({c} - {d})"
    return f"{rng.randint(101, 9999)} ** {rng.randint(5, 12)}"


def _in_test_split(expression: str) -> bool:
    """A stable one-in-ten assignment to the test split: splits are disjoint by construction."""
    return hashlib.sha256(expression.encode()).digest()[0] % 10 == 0


def calculator_problems(split: str, n: int, seed: int = 0) -> list[ToolProblem]:
    """``n`` distinct arithmetic problems for ``split``; the answer is the exact integer value."""
    from rewardkit.tools.builtin import calculator

    _check_split(split)
    problems: list[ToolProblem] = []
    seen: set[str] = set()
    for i in itertools.count():
        if len(problems) == n:
            break
        expr = _expression(random.Random(f"calculator/{seed}/{i}"))
        if expr in seen or _in_test_split(expr) != (split == "test"):
            continue
        seen.add(expr)
        problems.append(
            ToolProblem(
                question=f"What is {expr}? Give the exact integer.",
                answer=calculator(expr),
                gold_calls=(("calculator", {"expression": expr}),),
                id=f"calculator-{seed}-{i}",
            )
        )
    return problems


# ---- lookup -----------------------------------------------------------------------------------------
_SYLLABLES = (
    "vel",
    "mor",
    "qua",
    "rith",
    "ost",
    "ra",
    "zan",
    "dor",
    "ely",
    "kin",
    "tha",
    "bru",
    "nev",
    "sol",
)
_FIRST = ("Ada", "Bram", "Cyra", "Dov", "Esme", "Falk", "Gwen", "Hale", "Ines", "Jory", "Kesh", "Lior")
_RIVERS = ("Ostra", "Neme", "Calder", "Viss", "Orrin", "Talma")


@dataclass(frozen=True)
class City:
    name: str
    founded: int
    founder: str
    founder_born: int
    population: int
    river: str


def _name(rng: random.Random, parts: int) -> str:
    return "".join(rng.choice(_SYLLABLES) for _ in range(parts)).capitalize()


def knowledge_base(seed: int = 0, n_cities: int = 60) -> list[City]:
    """The fictional world: cities with unique names, each founded by a unique person."""
    rng = random.Random(f"lookup-kb/{seed}")
    cities: list[City] = []
    names: set[str] = set()
    people: set[str] = set()
    while len(cities) < n_cities:
        name = _name(rng, rng.randint(2, 3))
        founder = f"{rng.choice(_FIRST)} {_name(rng, 2)}"
        if name in names or founder in people:
            continue
        names.add(name)
        people.add(founder)
        founded = rng.randint(1200, 1900)
        cities.append(
            City(
                name=name,
                founded=founded,
                founder=founder,
                founder_born=founded - rng.randint(25, 60),
                population=rng.randint(2_000, 2_000_000),
                river=rng.choice(_RIVERS),
            )
        )
    return cities


def documents(cities: list[City]) -> list[tuple[str, str]]:
    """One entry per city and one per founder: the two-hop question needs both."""
    docs = []
    for c in cities:
        docs.append(
            (
                c.name,
                f"{c.name} is a city on the river {c.river}, founded in {c.founded} by {c.founder}. "
                f"Population: {c.population}.",
            )
        )
        docs.append(
            (c.founder, f"{c.founder} was an explorer, born in {c.founder_born}, who founded {c.name}.")
        )
    return docs


def lookup_problems(split: str, seed: int = 0, n_cities: int = 60) -> list[ToolProblem]:
    """Four questions per city; every fifth city is in the test split, the others in train."""
    _check_split(split)
    problems = []
    for i, c in enumerate(knowledge_base(seed, n_cities)):
        if (i % 5 == 0) != (split == "test"):
            continue
        city_call = ("search", {"query": c.name})
        asks = (
            (f"In what year was the city of {c.name} founded?", str(c.founded), "math", (city_call,)),
            (f"Who founded the city of {c.name}?", c.founder, "exact", (city_call,)),
            (f"What is the population of {c.name}?", str(c.population), "math", (city_call,)),
            (
                f"In what year was the founder of {c.name} born?",
                str(c.founder_born),
                "math",
                (city_call, ("search", {"query": c.founder})),
            ),
        )
        for j, (question, answer, match, calls) in enumerate(asks):
            problems.append(ToolProblem(question, answer, calls, match, id=f"lookup-{seed}-{i}-{j}"))
    random.Random(f"lookup-order/{split}/{seed}").shuffle(problems)
    return problems
