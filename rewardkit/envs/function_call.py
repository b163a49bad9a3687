"""The ``function_call`` environment: the completion's tool calls against the task's expected calls.

Task data lives in ``task.info`` (``task.answer`` is not read): ``info["expected_calls"]``, the
expected calls in the benchmark form ``[{name: {argument: [acceptable values, ...]}}]`` (``""`` in a
list: the argument may be left out; ``[]``: the model should call nothing), and optionally
``info["functions"]``, the OpenAI function schemas used for type checks. The matching rules are
``rewardkit.verifiers.function_call``'s.

The calls are read with ``rewardkit.tools.parse``: from a text completion, its Hermes
``<tool_call>{...}</tool_call>`` blocks; from a message list, every assistant message's OpenAI
``tool_calls`` and the ``<tool_call>`` blocks of its content (all the calls the model made, so guesses
spread over several messages are extra calls). Reasoning is not a call: text inside
``<think>...</think>``, before a lone ``</think>`` (the template opened the block) or after a
``<think>`` that never closes is skipped. JSON with a repeated key is a malformed call (see
``rewardkit.tools.parse``). docs/hacking.md lists the exploits this defeats. A call that cannot be read (bad JSON, no
name) makes the reward 0.0 with the status still ``ok`` (it is the model's mistake, a real 0), counted
in the ``parse_error`` metric and listed in ``info["parse_errors"]``. Broken task data (no
``expected_calls``, a malformed list) raises, so the sample gets status ``error``, not a silent 0.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from rewardkit.config import check_choices
from rewardkit.envs.base import Environment
from rewardkit.tools.parse import ToolCall, parse_text_calls, parse_tool_calls
from rewardkit.types import Completion, Score
from rewardkit.verifiers.function_call import check_calls, parse_expected, parse_functions

WHERE = "environment 'function_call'"
_THINK_RE = re.compile(r"<think>.*?(?:</think>|$)", re.S)
_CALL_SHAPE_RE = re.compile(r"""[{,]\s*["']name["']\s*:""")
"""The start of a JSON call object (``{"name": ...``), wherever the model wrote one."""


@dataclass(frozen=True)
class FunctionCallConfig:
    """Options of the ``function_call`` environment."""

    mode: Literal["all_or_nothing", "partial"] = "all_or_nothing"
    """``all_or_nothing``: 1.0 iff every expected call matches and there is no extra call; ``partial``:
    (exact matches - extra calls) / expected calls, clipped to [0, 1]."""

    def __post_init__(self) -> None:
        check_choices(self, where=WHERE)


class FunctionCallEnv(Environment):
    """Scores tool calls against expected calls (options: ``FunctionCallConfig``; data: ``task.info``)."""

    name = "function_call"
    Config = FunctionCallConfig
    correctness_metric = "correct"
    exploit_patterns = {
        "duplicate_json_key": r'"(\w+)"\s*:[^{}]*?"\1"\s*:',
        "call_inside_think": r"<think>(?:(?!</think>).)*<tool_call>",
        "arguments_and_parameters": r'"arguments"\s*:.*"parameters"\s*:|"parameters"\s*:.*"arguments"\s*:',
        "non_ascii_function_name": r'"name"\s*:\s*"[^"]*(?:[^\x00-\x7f]|\\u[0-9a-fA-F]{4})[^"]*"',
    }

    @classmethod
    def scoring_defaults(cls, config: FunctionCallConfig) -> Mapping[str, Any]:
        return {"executor": "inline"}  # a few dict comparisons: a process hop costs more

    def verify(self, completion: Completion, *, answer: Any, prompt: Any, info: Mapping[str, Any]) -> Score:
        if "expected_calls" not in info:
            raise ValueError(f"{WHERE} needs info['expected_calls'], the calls that solve the task")
        expected = parse_expected(info["expected_calls"])
        functions = parse_functions(info.get("functions"))  # optional: schemas only add type checks
        calls = completion_calls(completion)
        errors = [call.error for call in calls if not call.ok]
        verdict = check_calls([(c.name, c.arguments) for c in calls if c.ok], expected, functions)
        metrics = {**verdict.metrics(), "parse_error": float(len(errors))}
        reward = verdict.reward(self.config.mode)
        if errors:  # an unreadable call is a wrong answer whatever the readable ones say
            reward, metrics["correct"] = 0.0, 0.0
        details = [
            {
                "expected": expected[c.expected].name,
                "made": c.made,
                "defects": [f"{kind}:{arg}" for kind, arg in c.defects],
            }
            for c in verdict.checks
        ]
        return Score.ok(reward, metrics, calls=details, parse_errors=errors)

    def exploit_probes(self) -> list[Any]:
        from rewardkit.envs.function_call_probes import function_call_probes

        return function_call_probes()

    def suspicious(self, sample: Mapping[str, Any], score: Score) -> str | None:
        """A pass whose text holds more call-shaped JSON objects (``{"name": ...``), reasoning included,
        than the calls that were graded: the model wrote calls the grader did not read."""
        completion = sample.get("completion")
        if isinstance(completion, str):
            text = completion
        elif isinstance(completion, Sequence):
            text = "\n".join(
                str(m.get("content") or "")
                for m in completion
                if isinstance(m, Mapping) and m.get("role") == "assistant"
            )
        else:
            return None
        graded = int(score.metrics.get("calls_made", 0))
        written = max(len(_CALL_SHAPE_RE.findall(text)), text.count("<tool_call>"))
        structured = 0
        if not isinstance(completion, str):
            structured = sum(
                len(m.get("tool_calls") or [])
                for m in completion
                if isinstance(m, Mapping) and m.get("role") == "assistant"
            )
        if written + structured > graded:
            return f"{written + structured} calls written, {graded} graded"
        return None

    def gold_examples(self) -> list[dict[str, Any]]:
        weather = {
            "expected_calls": [
                {"get_weather": {"city": ["Paris", "Paris, France"], "unit": ["celsius", ""]}}
            ],
            "functions": [
                {
                    "type": "function",
                    "function": {
                        "name": "get_weather",
                        "parameters": {
                            "type": "object",
                            "properties": {"city": {"type": "string"}, "unit": {"type": "string"}},
                            "required": ["city"],
                        },
                    },
                }
            ],
        }
        parallel = {"expected_calls": [{"add": {"a": [1], "b": [2.0]}}, {"add": {"a": [3], "b": [4]}}]}
        openai_call = {
            "type": "function",
            "function": {"name": "get_weather", "arguments": '{"city": "paris"}'},
        }
        return [
            {
                "completion": '<tool_call>{"name": "get_weather", "arguments": {"city": "Paris"}}</tool_call>',
                "info": weather,
            },
            {
                "completion": [{"role": "assistant", "content": "", "tool_calls": [openai_call]}],
                "info": weather,
            },
            {
                "completion": '<tool_call>{"name": "add", "arguments": {"a": 3, "b": 4}}</tool_call>\n'
                '<tool_call>{"name": "add", "arguments": {"a": 1, "b": 2}}</tool_call>',
                "info": parallel,
            },
            {"completion": "No function fits this request.", "info": {"expected_calls": []}},
        ]


def completion_calls(completion: Completion) -> list[ToolCall]:
    """The calls of a text completion, or of every assistant message of a message list, in order;
    reasoning (``<think>``) left out."""
    if isinstance(completion, str):
        return parse_text_calls(strip_reasoning(completion))
    calls: list[ToolCall] = []
    for message in completion:
        if message.get("role") == "assistant":
            content = message.get("content")
            visible = {
                **message,
                "content": strip_reasoning(content) if isinstance(content, str) else content,
            }
            calls += parse_tool_calls(visible)
    return calls


def strip_reasoning(text: str) -> str:
    """``text`` without its reasoning: what precedes a lone ``</think>`` (the chat template opened the
    block), and every ``<think>...</think>`` block (one that never closes runs to the end)."""
    if "</think>" in text and "<think>" not in text.split("</think>", 1)[0]:
        text = text.split("</think>", 1)[1]
    return _THINK_RE.sub("", text)
