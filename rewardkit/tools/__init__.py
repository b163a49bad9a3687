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

The ``tool_use`` environment (rewardkit.envs.tool_use) puts these together; docs/tool_use.md shows
how to build a new tool environment.
"""

from rewardkit.tools.execute import ToolExecutor, ToolResult, call_with_timeout, check_arguments
from rewardkit.tools.parse import ToolCall, parse_text_calls, parse_tool_calls
from rewardkit.tools.schema import Tool, as_tool, tool, tool_schema

__all__ = [
    "Tool",
    "ToolCall",
    "ToolExecutor",
    "ToolResult",
    "as_tool",
    "call_with_timeout",
    "check_arguments",
    "parse_text_calls",
    "parse_tool_calls",
    "tool",
    "tool_schema",
]
