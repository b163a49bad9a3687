"""Procedural tool tasks: deterministic, disjoint splits, answers the tools really produce."""

from __future__ import annotations

import pytest

from rewardkit.tools import ToolCall, ToolExecutor
from rewardkit.tools.builtin import calculator_tool, search_tool
from rewardkit.tools.tasks import calculator_problems, documents, knowledge_base, lookup_problems


def test_calculator_problems_are_deterministic_distinct_and_solved_by_their_gold_call():
    train = calculator_problems("train", 300, seed=1)
    assert train == calculator_problems("train", 300, seed=1)
    assert len({p.question for p in train}) == 300
    test = calculator_problems("test", 100, seed=1)
    assert not {p.question for p in train} & {p.question for p in test}
    ex = ToolExecutor([calculator_tool()])
    for p in train[:20]:
        [(name, args)] = p.gold_calls
        assert ex.run(ToolCall(name, args)).content == p.answer
        assert len(p.answer.lstrip("-")) >= 10  # big enough that the tool is needed


def test_lookup_gold_calls_surface_the_answer():
    ex = ToolExecutor([search_tool(documents(knowledge_base(0)))])
    problems = lookup_problems("train") + lookup_problems("test")
    assert len(problems) == 240
    for p in problems:
        results = [ex.run(ToolCall(name, args)).content for name, args in p.gold_calls]
        assert p.answer in results[-1], p


def test_knowledge_base_names_are_unique():
    cities = knowledge_base(3)
    assert len({c.name for c in cities}) == len(cities) == 60
    assert len({c.founder for c in cities}) == 60


def test_unknown_split_is_an_error():
    with pytest.raises(ValueError, match="split"):
        calculator_problems("validation", 3)
