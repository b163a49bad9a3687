"""Tools for agentic episodes: schemas from typed functions, call parsing, time-limited execution.

    from rewardkit.tools import tool, ToolExecutor, parse_tool_calls

    def add(a: int, b: int) -> int:
        '''Add two integers.

        Args:
            a: the first term.
            b: the second term.
        '''
        return a + b

    executor = ToolExecutor([add], timeout_s=2.0)
    for call in parse_tool_calls('<tool_call>{"name": "add", "arguments": {"a": 1, "b": 2}}</tool_call>'):
        print(executor.run(call).content)  # 3

A schema written elsewhere (OpenAI form, or the bare ``{"name", "description", "parameters"}``) becomes
a tool with ``Tool.from_schema(schema, fn)``, or as a ``(schema, fn)`` pair in the executor's tool list.
``ToolExecutor(argument_policy=...)`` is ``strict``, ``coerce`` or ``pass_through`` (see
rewardkit.tools.execute).

The ``tool_use`` environment (rewardkit.envs.tool_use) puts these together; docs/tool_use.md shows
how to build a new tool environment.
"""

from rewardkit.tools.execute import (
    RESULT_STATUSES,
    ToolExecutor,
    ToolResult,
    call_with_timeout,
    check_arguments,
    coerce_arguments,
)
from rewardkit.tools.parse import ToolCall, parse_text_calls, parse_tool_calls
from rewardkit.tools.schema import (
    ARGUMENT_POLICIES,
    TYPE_ALIASES,
    Tool,
    as_tool,
    check_tool_schema,
    tool,
    tool_schema,
)

__all__ = [
    "ARGUMENT_POLICIES",
    "RESULT_STATUSES",
    "TYPE_ALIASES",
    "Tool",
    "ToolCall",
    "ToolExecutor",
    "ToolResult",
    "as_tool",
    "call_with_timeout",
    "check_arguments",
    "check_tool_schema",
    "coerce_arguments",
    "parse_text_calls",
    "parse_tool_calls",
    "tool",
    "tool_schema",
]
