"""Built-in tools: the bounded calculator, keyword search, and the sandboxed Python runner."""

from __future__ import annotations

import pickle
import time

import pytest

from rewardkit.tools import ToolCall, ToolExecutor
from rewardkit.tools.builtin import KeywordSearch, calculator, python_tool, search_tool


@pytest.mark.parametrize(
    "expression, value",
    [
        ("123456789 * 987654321 + 42", str(123456789 * 987654321 + 42)),
        ("(2 + 3) ** 40", str(5**40)),
        ("1,234,567 * 2", "2469134"),
        ("10 / 4", "2.5"),
        ("12 / 4", "3"),
        ("-7 // 2", "-4"),
        ("2^10", "1024"),
    ],
)
def test_calculator_is_exact(expression, value):
    assert calculator(expression) == value


@pytest.mark.parametrize(
    "expression, message",
    [
        ("9 ** 9 ** 9", "too large"),
        ("2.0 ** 100000", "exponent is too large"),
        ("__import__('os').system('true')", "unsupported element"),
        ("1 +", "not an arithmetic expression"),
        ("1" * 2000, "longer than"),
    ],
)
def test_calculator_refuses_unbounded_or_non_arithmetic_input_fast(expression, message):
    start = time.monotonic()
    with pytest.raises(ValueError, match=message):
        calculator(expression)
    assert time.monotonic() - start < 0.5


def test_search_ranks_title_matches_first_and_pickles():
    docs = [
        ("Velmora", "A city founded in 1642 by Ada Morvane."),
        ("Ada Morvane", "Born in 1601; founded Velmora."),
    ]
    s = KeywordSearch(docs, top_k=1)
    assert s("Velmora").startswith("Velmora:")
    assert s("ada morvane").startswith("Ada Morvane:")
    assert s("zzz") == "No results."
    assert s("???").startswith("No results")
    t = pickle.loads(pickle.dumps(search_tool(docs)))
    assert ToolExecutor([t]).run(ToolCall("search", {"query": "Velmora 1642"})).ok


def test_python_tool_runs_in_the_sandbox_and_its_timeout_kills_the_program():
    tool = python_tool(timeout_s=1.0)
    ex = ToolExecutor([tool])
    try:
        result = ex.run(ToolCall("python", {"code": "print(2 ** 100)"}))
    except Exception as exc:  # pragma: no cover - depends on the host
        pytest.skip(f"local sandbox unavailable here: {exc}")
    if "SandboxError" in result.content:
        pytest.skip(f"local sandbox unavailable here: {result.content}")
    assert result.ok and result.content.strip() == str(2**100)
    start = time.monotonic()
    hung = ex.run(ToolCall("python", {"code": "while True: pass"}))
    assert time.monotonic() - start < 5.0
    assert hung.ok and "ran past its 1 s limit" in hung.content  # the tool reported it; the model reads it
    failed = ex.run(ToolCall("python", {"code": "raise SystemExit(3)"}))
    assert "exit code 3" in failed.content
    assert pickle.loads(pickle.dumps(tool)).fn.timeout_s == 1.0
