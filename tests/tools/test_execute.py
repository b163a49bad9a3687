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


def plan(
    ids: list[int], mode: str = "fast", opts: dict | None = None, ratio: float = 1.0, on: bool = False
) -> str:
    """Echo its arguments (for the argument-policy tests).

    Args:
        ids: item ids.
        mode: how.
        opts: options.
        ratio: a fraction.
        on: a switch.
    """
    return repr((ids, mode, opts, ratio, on))


NESTED = {
    "name": "plan",
    "description": "Echo its arguments.",
    "parameters": {
        "type": "object",
        "properties": {
            "ids": {"type": "array", "items": {"type": "integer"}},
            "mode": {"type": "string", "enum": ["fast", "slow"]},
            "opts": {
                "type": "object",
                "properties": {"depth": {"type": "integer"}},
                "required": ["depth"],
            },
            "ratio": {"type": "number"},
            "on": {"type": "boolean"},
        },
        "required": ["ids"],
    },
}


@pytest.mark.parametrize(
    "arguments, text",
    [
        ({"ids": [1, "2"]}, "argument 'ids[1]' must be integer, got \"2\""),
        ({"ids": [1], "mode": "medium"}, "argument 'mode' must be one of ['fast', 'slow']"),
        ({"ids": [1], "opts": {}}, "argument 'opts' is missing required key(s) ['depth']"),
        ({"ids": [1], "opts": {"depth": 1.5}}, "argument 'opts.depth' must be integer, got 1.5"),
        ({"ids": [1], "ratio": True}, "argument 'ratio' must be number, got true"),
        ({"ids": 3}, "argument 'ids' must be array, got 3"),
    ],
)
def test_nested_values_are_validated(arguments, text):
    r = ToolExecutor([(NESTED, plan)]).run(ToolCall("plan", arguments))
    assert r.status == "invalid_arguments" and r.content.startswith("Error:") and text in r.content


def test_statuses_name_what_went_wrong():
    ex = ToolExecutor([add, boom])
    assert ex.run(ToolCall("nope", {})).status == "unknown_tool"
    assert ex.run(ToolCall("add", {"b": 1})).status == "invalid_arguments"
    assert ex.run(ToolCall("add", {"a": 1, "c": 2})).status == "invalid_arguments"
    assert ex.run(ToolCall("boom", {"x": "y"})).status == "error"
    assert ex.run(ToolCall("add", ["not", "a", "mapping"])).status == "invalid_arguments"  # type: ignore[arg-type]


def test_run_never_raises_even_on_a_broken_schema_or_a_strange_call():
    ex = ToolExecutor([add])
    ex.tools["add"].parameters["properties"]["a"]["type"] = "widget"  # edited after the checks ran
    broken = ex.run(ToolCall("add", {"a": 1}))
    assert broken.status == "error" and "schema of add" in broken.content
    odd = ToolExecutor([add]).run(ToolCall(["unhashable"], {}))  # type: ignore[arg-type]
    assert not odd.ok and odd.content.startswith("Error:")


def test_coerce_policy_converts_obvious_forms_before_checking():
    ex = ToolExecutor([(NESTED, plan)], argument_policy="coerce")
    r = ex.run(ToolCall("plan", {"ids": ["1", 2.0], "ratio": "2.5", "on": "true", "opts": '{"depth": "4"}'}))
    assert r.ok, r.content
    assert r.content == repr(([1, 2], "fast", {"depth": 4}, 2.5, True))
    assert ex.run(ToolCall("plan", {"ids": "[7]", "on": "FALSE", "ratio": "3"})).content == repr(
        ([7], "fast", None, 3, False)
    )
    # what is not an obvious form still fails, with the checked value in the message
    bad = ex.run(ToolCall("plan", {"ids": ["one"]}))
    assert bad.status == "invalid_arguments" and "argument 'ids[0]' must be integer" in bad.content
    assert ex.run(ToolCall("plan", {"ids": [1], "on": "yes"})).status == "invalid_arguments"
    assert ex.run(ToolCall("plan", {"ids": [True]})).status == "invalid_arguments"  # a bool is not a number


def test_coerce_turns_numbers_into_strings_where_a_string_is_declared():
    def echo(s: str, maybe: int | None = None) -> str:
        """Echo.

        Args:
            s: text.
            maybe: an optional number.
        """
        return f"{s!r} {maybe!r}"

    ex = ToolExecutor([echo], argument_policy="coerce")
    assert ex.run(ToolCall("echo", {"s": 12})).content == "'12' None"
    assert ex.run(ToolCall("echo", {"s": 2.5, "maybe": "3"})).content == "'2.5' 3"
    assert ex.run(ToolCall("echo", {"s": "x", "maybe": None})).content == "'x' None"
    assert ToolExecutor([echo]).run(ToolCall("echo", {"s": 12})).status == "invalid_arguments"  # strict


def test_pass_through_calls_the_function_as_is():
    def lookup(ticket: int) -> str:
        """Look a ticket up.

        Args:
            ticket: the ticket number.
        """
        return f"found {ticket}"

    ex = ToolExecutor([lookup], argument_policy="pass_through")
    assert ex.run(ToolCall("lookup", {"ticket": "ticket_001"})).content == "found ticket_001"
    wrong_name = ex.run(ToolCall("lookup", {"id": 1}))
    assert wrong_name.status == "error" and "TypeError" in wrong_name.content
    assert (
        ToolExecutor([lookup]).run(ToolCall("lookup", {"ticket": "ticket_001"})).status == "invalid_arguments"
    )


def test_a_tools_own_policy_wins_over_the_executors():
    def lookup(ticket: int) -> str:
        """Look a ticket up.

        Args:
            ticket: the ticket number.
        """
        return f"found {ticket!r}"

    lenient = tool(lookup, argument_policy="coerce")
    ex = ToolExecutor([lenient], argument_policy="strict")
    assert ex.run(ToolCall("lookup", {"ticket": "7"})).content == "found 7"
    with pytest.raises(ValueError, match="argument_policy"):
        ToolExecutor([add], argument_policy="loose")


def test_truncation_limit_is_configurable_and_marked():
    def big(n: int) -> str:
        """Big output.

        Args:
            n: size.
        """
        return "y" * n

    call = ToolCall("big", {"n": 5000})
    default = ToolExecutor([big]).run(call)
    assert default.content == "y" * 2000 + "... [truncated: 3000 more characters cut]"
    assert default.truncated_chars == 3000 and default.ok
    unlimited = ToolExecutor([big], max_output_chars=None).run(call)
    assert unlimited.content == "y" * 5000 and unlimited.truncated_chars == 0
    small = ToolExecutor([big], max_output_chars=100).run(ToolCall("big", {"n": 100}))
    assert small.content == "y" * 100 and small.truncated_chars == 0  # exactly at the limit: not cut
    with pytest.raises(ValueError, match="max_output_chars"):
        ToolExecutor([big], max_output_chars=0)


def test_executor_with_schema_tools_and_policy_pickles():
    import pickle

    import cloudpickle

    ex = ToolExecutor([(NESTED, plan)], argument_policy="coerce", max_output_chars=None)
    for back in (cloudpickle.loads(cloudpickle.dumps(ex)), pickle.loads(pickle.dumps(ex))):
        assert back.argument_policy == "coerce" and back.max_output_chars is None
        assert back.run(ToolCall("plan", {"ids": ["1"]})).ok
        assert back.run(ToolCall("plan", {"ids": ["x"]})).status == "invalid_arguments"


def test_optional_containers_report_the_inner_problem_and_coercion_never_raises():
    def f(a: int, b: list[int] | None = None) -> str:
        """F.

        Args:
            a: a.
            b: b.
        """
        return repr((a, b))

    strict = ToolExecutor([f]).run(ToolCall("f", {"a": "x", "b": ["y", 2]}))
    assert "argument 'a' must be integer" in strict.content
    assert "argument 'b[0]' must be integer, got \"y\"" in strict.content  # not just "array or null"
    coerce = ToolExecutor([f], argument_policy="coerce")
    huge = coerce.run(ToolCall("f", {"a": "4" * 5000, "b": ["1"]}))  # past int()'s digit limit
    assert huge.status == "invalid_arguments" and "argument 'a' must be integer" in huge.content
    assert "'b" not in huge.content  # b was still converted
    assert coerce.run(ToolCall("f", {"a": 1, "b": '["2"]'})).content == repr((1, [2]))
