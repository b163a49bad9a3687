"""Running calls: argument checks, per-call time limits, errors returned as text."""

from __future__ import annotations

import threading
import time

import pytest

from rewardkit.tools import ToolCall, ToolExecutor, tool


def add(a: int, b: int = 0) -> int:
    """Add two integers.

    Args:
        a: first term.
        b: second term.
    """
    return a + b


def boom(x: str) -> str:
    """Always fails.

    Args:
        x: anything.
    """
    raise RuntimeError(f"bad {x}")


def test_ok_call_and_result_message():
    r = ToolExecutor([add]).run(ToolCall("add", {"a": 2, "b": 3}, "id7"))
    assert r.ok and r.content == "5"
    assert r.message() == {"role": "tool", "name": "add", "tool_call_id": "id7", "content": "5"}


@pytest.mark.parametrize(
    "call, text",
    [
        (ToolCall("nope", {}), "unknown tool 'nope'. Available tools: add, boom"),
        (ToolCall("add", {"b": 1}), "missing required argument(s) ['a']"),
        (ToolCall("add", {"a": 1, "c": 2}), "unknown argument(s) ['c']"),
        (ToolCall("add", {"a": "1"}), "argument 'a' must be integer"),
        (ToolCall("add", {"a": True}), "argument 'a' must be integer"),
        (ToolCall("boom", {"x": "y"}), "boom failed: RuntimeError: bad y"),
        (ToolCall("", error="tool call 1 is not valid JSON"), "not valid JSON"),
    ],
)
def test_failures_become_tool_results(call, text):
    r = ToolExecutor([add, boom]).run(call)
    assert not r.ok and r.content.startswith("Error:") and text in r.content


def test_timeout_returns_promptly_and_the_next_call_still_runs():
    release = threading.Event()

    def hang(x: int) -> int:
        """Blocks.

        Args:
            x: ignored.
        """
        release.wait()
        return x

    ex = ToolExecutor([hang, add], timeout_s=0.2)
    start = time.monotonic()
    r = ex.run(ToolCall("hang", {"x": 1}))
    assert time.monotonic() - start < 1.0
    assert r.status == "timeout" and "did not finish within 0.2 s" in r.content
    assert ex.run(ToolCall("add", {"a": 1})).content == "1"
    release.set()


RELEASE = threading.Event()


def hang_until_released(x: int) -> int:
    """Blocks until the test releases it (module level, so an executor holding it can be pickled).

    Args:
        x: returned.
    """
    RELEASE.wait()
    return x


def test_stuck_calls_are_bounded_and_the_executor_still_pickles():
    import cloudpickle

    RELEASE.clear()
    ex = ToolExecutor([hang_until_released], timeout_s=0.05, max_stuck_calls=2)
    call = ToolCall("hang_until_released", {"x": 1})
    assert [ex.run(call).status for _ in range(3)] == ["timeout", "timeout", "infra_error"]
    assert ex.stuck_calls() == 2
    assert cloudpickle.loads(cloudpickle.dumps(ex)).stuck_calls() == 0
    RELEASE.set()
    time.sleep(0.1)
    assert ex.stuck_calls() == 0 and ex.run(call).status == "ok"


def test_per_tool_timeout_wins_and_deadline_caps_it():
    @tool(timeout_s=0.1)
    def nap(s: float) -> str:
        """Sleep.

        Args:
            s: seconds.
        """
        time.sleep(s)
        return "woke"

    ex = ToolExecutor([nap], timeout_s=10.0)
    assert ex.run(ToolCall("nap", {"s": 1.0})).status == "timeout"
    ex2 = ToolExecutor([tool(nap.fn)], timeout_s=10.0)
    start = time.monotonic()
    assert ex2.run(ToolCall("nap", {"s": 1.0}), deadline=time.monotonic() + 0.1).status == "timeout"
    assert time.monotonic() - start < 0.8
    assert ex2.run(ToolCall("nap", {"s": 0.0}), deadline=time.monotonic() - 1).status == "timeout"


def test_long_and_structured_outputs_are_formatted_and_cut():
    def big(n: int) -> object:
        """Big output.

        Args:
            n: size.
        """
        return {"xs": list(range(n))} if n < 100 else "x" * n

    ex = ToolExecutor([big], max_output_chars=50)
    assert ex.run(ToolCall("big", {"n": 3})).content == '{"xs": [0, 1, 2]}'
    cut = ex.run(ToolCall("big", {"n": 1000})).content
    assert cut.startswith("x" * 50) and "950 more characters cut" in cut


def test_executor_config_errors():
    with pytest.raises(ValueError, match="two tools"):
        ToolExecutor([add, add])
    with pytest.raises(ValueError, match="timeout_s"):
        ToolExecutor([add], timeout_s=0)
