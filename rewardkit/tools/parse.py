"""Reading tool calls out of what the model wrote, in the common formats.

* Hermes / Qwen text: ``<tool_call>{"name": "f", "arguments": {"x": 1}}</tool_call>``, any number per
  message. A final ``<tool_call>`` left open (the sampler stopped on the closing tag, or the turn hit
  its token limit) is read to the end of the text.
* OpenAI messages: ``{"role": "assistant", "tool_calls": [{"id", "type": "function",
  "function": {"name", "arguments": "<JSON string>"}}]}``.

Model output is untrusted and often malformed. Parsing never raises: a call that cannot be read
becomes a ``ToolCall`` with ``error`` set, and that text goes back to the model as the tool result so
the episode can go on (the environment bounds how many such errors it tolerates). A call is read one
way only: JSON with a repeated key (``{"city": "London", "city": "Paris"}``, two ``name`` keys) and a
call object with both ``arguments`` and ``parameters`` are malformed, not read by whichever value a
parser happens to keep (docs/hacking.md).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

OPEN_TAG = "<tool_call>"
CLOSE_TAG = "</tool_call>"
_BLOCK_RE = re.compile(re.escape(OPEN_TAG) + r"(.*?)(?:" + re.escape(CLOSE_TAG) + r"|$)", re.S)
_FENCE_RE = re.compile(r"^```(?:json)?\s*(.*?)\s*```$", re.S)
FORMAT_HINT = f'Write {OPEN_TAG}{{"name": "<tool>", "arguments": {{...}}}}{CLOSE_TAG}.'


@dataclass(frozen=True)
class ToolCall:
    """One call the model asked for. ``error`` is set (and ``name`` may be empty) when it could not be read."""

    name: str
    arguments: dict[str, Any] = field(default_factory=dict)
    id: str = ""
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


class DuplicateKeyError(ValueError):
    """A JSON object names the same key twice: which value was meant is ambiguous."""


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """``json`` object hook: refuse a repeated key instead of keeping its last value."""
    obj: dict[str, Any] = {}
    for key, value in pairs:
        if key in obj:
            raise DuplicateKeyError(f"the key {key!r} appears twice in one JSON object")
        obj[key] = value
    return obj


_DECODER = json.JSONDecoder(object_pairs_hook=_unique_keys)


def loads_strict(text: str) -> Any:
    """``json.loads`` that raises ``DuplicateKeyError`` (a ValueError) on a repeated key."""
    return _DECODER.decode(text)


def parse_tool_calls(message: Mapping[str, Any] | str) -> list[ToolCall]:
    """All tool calls in an assistant message (or its text), in order. Never raises."""
    if isinstance(message, str):
        return parse_text_calls(message)
    calls: list[ToolCall] = []
    structured = message.get("tool_calls") or []
    if not isinstance(structured, list):
        return [ToolCall("", error="tool_calls must be a list of calls")]
    for i, raw in enumerate(structured):
        calls.append(_openai_call(raw, i))
    content = message.get("content")
    if isinstance(content, str):
        calls += parse_text_calls(content, first_index=len(calls))
    return calls


def parse_text_calls(text: str, *, first_index: int = 0) -> list[ToolCall]:
    """The ``<tool_call>`` blocks of a text, each decoded as JSON."""
    calls = []
    for i, match in enumerate(_BLOCK_RE.finditer(text)):
        calls.append(_decode_block(match.group(1), first_index + i))
    return calls


def has_tool_call(text: str) -> bool:
    return OPEN_TAG in text


def _decode_block(body: str, index: int) -> ToolCall:
    call_id = f"call_{index}"
    body = body.strip()
    if fenced := _FENCE_RE.match(body):
        body = fenced.group(1)
    if not body:
        return ToolCall("", id=call_id, error=f"tool call {index + 1} is empty. {FORMAT_HINT}")
    try:
        obj, end = _DECODER.raw_decode(body)
    except DuplicateKeyError as exc:
        return ToolCall("", id=call_id, error=f"tool call {index + 1} is ambiguous: {exc}. {FORMAT_HINT}")
    except json.JSONDecodeError as exc:
        return ToolCall(
            "", id=call_id, error=f"tool call {index + 1} is not valid JSON ({exc}). {FORMAT_HINT}"
        )
    if body[end:].strip():
        return ToolCall(
            "", id=call_id, error=f"tool call {index + 1} has text after its JSON object. {FORMAT_HINT}"
        )
    if not isinstance(obj, dict):
        return ToolCall("", id=call_id, error=f"tool call {index + 1} is not a JSON object. {FORMAT_HINT}")
    if "arguments" in obj and "parameters" in obj:
        return ToolCall(
            "",
            id=call_id,
            error=f"tool call {index + 1} has both 'arguments' and 'parameters'. {FORMAT_HINT}",
        )
    arguments = obj.get("arguments", obj.get("parameters", {}))
    return _checked(obj.get("name"), arguments, call_id, index)


def _openai_call(raw: Any, index: int) -> ToolCall:
    if not isinstance(raw, Mapping):
        return ToolCall("", error=f"tool call {index + 1} is not an object")
    call_id = str(raw.get("id") or f"call_{index}")
    function = raw.get("function")
    if not isinstance(function, Mapping):
        return ToolCall("", id=call_id, error=f"tool call {index + 1} has no 'function' object")
    return _checked(function.get("name"), function.get("arguments", {}), call_id, index)


def _checked(name: Any, arguments: Any, call_id: str, index: int) -> ToolCall:
    """Validate the name and decode the arguments (an object, or a JSON string holding one)."""
    if not isinstance(name, str) or not name:
        return ToolCall("", id=call_id, error=f"tool call {index + 1} has no tool name. {FORMAT_HINT}")
    if isinstance(arguments, str):
        try:
            arguments = loads_strict(arguments) if arguments.strip() else {}
        except DuplicateKeyError as exc:
            return ToolCall(name, id=call_id, error=f"arguments of {name!r} are ambiguous: {exc}")
        except json.JSONDecodeError as exc:
            return ToolCall(name, id=call_id, error=f"arguments of {name!r} are not valid JSON ({exc})")
    if arguments is None:
        arguments = {}
    if not isinstance(arguments, dict):
        return ToolCall(name, id=call_id, error=f"arguments of {name!r} must be a JSON object")
    return ToolCall(name, arguments, call_id)
