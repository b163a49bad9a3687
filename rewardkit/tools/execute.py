"""Running tool calls: argument checks, a per-call wall-clock limit, and results as text for the model.

Each call runs in its own daemon thread and the caller waits at most ``timeout_s`` for it. Python
cannot kill a thread, so a function that never returns keeps its thread (daemon: it never blocks
interpreter exit) while the episode moves on with a timeout message. Tools that run untrusted code
must therefore not run it in-process: ``rewardkit.tools.builtin.python_tool`` sends it to the sandbox,
whose own limit kills the program. Every failure (unknown tool, bad arguments, an exception, a
timeout) becomes the text of the tool result, so the model can read it and try again.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from rewardkit.sandbox.base import SandboxError
from rewardkit.tools.parse import ToolCall
from rewardkit.tools.schema import Tool, as_tool

RESULT_STATUSES = ("ok", "error", "timeout", "parse_error", "infra_error")
"""``infra_error``: the tool's own machinery failed (``SandboxError``), not the model's call: such an
episode should be dropped rather than scored 0."""


@dataclass(frozen=True)
class ToolResult:
    """What one call produced. ``content`` is what the model sees; ``status`` is for metrics."""

    call: ToolCall
    content: str
    status: str = "ok"
    wall_s: float = 0.0

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def message(self) -> dict[str, Any]:
        """The ``tool`` chat message carrying this result back to the model."""
        return {"role": "tool", "name": self.call.name, "tool_call_id": self.call.id, "content": self.content}


class ToolExecutor:
    """Runs calls against a fixed set of tools.

    Args:
        tools: Tool objects or typed functions (turned into tools by ``tool``).
        timeout_s: default per-call limit (a Tool's own ``timeout_s`` wins when set).
        max_output_chars: longer results are cut, so one chatty tool cannot flood the context.
        max_stuck_calls: timed-out calls whose threads are still running; past it new calls are refused
            (status ``infra_error``) instead of piling up threads behind a tool that hangs.
    """

    def __init__(
        self,
        tools: Iterable[Any],
        *,
        timeout_s: float = 5.0,
        max_output_chars: int = 2000,
        max_stuck_calls: int = 16,
    ) -> None:
        if not timeout_s > 0:
            raise ValueError(f"timeout_s must be > 0, got {timeout_s!r}")
        if max_output_chars < 16:
            raise ValueError(f"max_output_chars must be >= 16, got {max_output_chars!r}")
        self.tools: dict[str, Tool] = {}
        for obj in tools:
            t = as_tool(obj)
            if t.name in self.tools:
                raise ValueError(f"two tools are named {t.name!r}")
            self.tools[t.name] = t
        self.timeout_s = float(timeout_s)
        self.max_output_chars = max_output_chars
        self.max_stuck_calls = max_stuck_calls
        self._stuck: list[threading.Thread] = []
        self._lock = threading.Lock()  # episodes may run their calls from several threads at once

    def __getstate__(self) -> dict[str, Any]:
        state = {**self.__dict__, "_stuck": []}  # threads and locks belong to this process only
        del state["_lock"]
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()

    def stuck_calls(self) -> int:
        """Timed-out calls whose threads have not finished yet."""
        with self._lock:
            self._stuck = [t for t in self._stuck if t.is_alive()]
            return len(self._stuck)

    def schemas(self) -> list[dict[str, Any]]:
        return [t.schema for t in self.tools.values()]

    def run(self, call: ToolCall, *, deadline: float | None = None) -> ToolResult:
        """Run one call; never raises. ``deadline`` (a ``time.monotonic()`` value) can shorten the limit."""
        if call.error is not None:
            return ToolResult(call, f"Error: {call.error}", "parse_error")
        found = self.tools.get(call.name)
        if found is None:
            known = ", ".join(sorted(self.tools)) or "none"
            return ToolResult(call, f"Error: unknown tool {call.name!r}. Available tools: {known}.", "error")
        problem = check_arguments(found, call.arguments)
        if problem:
            return ToolResult(call, f"Error: {problem}", "error")
        if (stuck := self.stuck_calls()) >= self.max_stuck_calls:
            message = f"Error: {stuck} earlier tool calls are still running; not starting another."
            return ToolResult(call, message, "infra_error")
        limit = found.timeout_s or self.timeout_s
        if deadline is not None:
            limit = min(limit, max(0.0, deadline - time.monotonic()))
        start = time.monotonic()
        status, value = call_with_timeout(found.fn, call.arguments, limit)
        wall = time.monotonic() - start
        if status == "timeout":
            if value is not None:
                with self._lock:
                    self._stuck.append(value)
            return ToolResult(
                call, f"Error: {call.name} did not finish within {limit:.3g} s.", "timeout", wall
            )
        if status in ("error", "infra_error"):
            return ToolResult(call, f"Error: {call.name} failed: {value}", status, wall)
        return ToolResult(call, self._format(value), "ok", wall)

    def _format(self, value: Any) -> str:
        if isinstance(value, str):
            text = value
        else:
            try:
                text = json.dumps(value, ensure_ascii=False, default=str)
            except (TypeError, ValueError):
                text = repr(value)
        if len(text) > self.max_output_chars:
            cut = len(text) - self.max_output_chars
            text = f"{text[: self.max_output_chars]}... [{cut} more characters cut]"
        return text


def call_with_timeout(fn: Any, arguments: Mapping[str, Any], timeout_s: float) -> tuple[str, Any]:
    """``("ok", value)``, ``("error", "Type: message")``, ``("infra_error", "Type: message")`` (the
    tool raised a ``SandboxError``, of any subclass: its machinery failed, not the call) or
    ``("timeout", thread)``, where ``thread`` is the still-running daemon thread (None when the limit
    was already spent and nothing started)."""
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = fn(**arguments)
        except BaseException as exc:  # noqa: BLE001 - the model's call, the model's error message
            box["error"] = f"{type(exc).__name__}: {exc}"
            box["status"] = "infra_error" if isinstance(exc, SandboxError) else "error"

    if timeout_s <= 0:
        return "timeout", None
    thread = threading.Thread(target=target, name="rewardkit-tool", daemon=True)
    thread.start()
    thread.join(timeout_s)
    if thread.is_alive():
        return "timeout", thread
    if "error" in box:
        return box["status"], box["error"]
    return "ok", box.get("value")


_JSON_CHECKS: dict[str, tuple[type, ...]] = {
    "string": (str,),
    "integer": (int,),
    "number": (int, float),
    "boolean": (bool,),
    "array": (list,),
    "object": (dict,),
}


def check_arguments(t: Tool, arguments: Mapping[str, Any]) -> str:
    """A message naming what is wrong with the arguments, or "" when they fit the schema."""
    params = t.parameters
    properties = params.get("properties", {})
    unknown = sorted(set(arguments) - set(properties))
    if unknown:
        return f"{t.name} got unknown argument(s) {unknown}; it takes {sorted(properties)}."
    missing = [p for p in params.get("required", []) if p not in arguments]
    if missing:
        return f"{t.name} is missing required argument(s) {missing}."
    for key, value in arguments.items():
        if not _fits(properties[key], value):
            return f"{t.name} argument {key!r} must be {_describe(properties[key])}, got {json.dumps(value)[:80]}."
    return ""


def _fits(schema: Mapping[str, Any], value: Any) -> bool:
    if "anyOf" in schema:
        return any(_fits(s, value) for s in schema["anyOf"])
    if "enum" in schema and value not in schema["enum"]:
        return False
    kind = schema.get("type")
    if kind is None:
        return True
    if kind == "null":
        return value is None
    if isinstance(value, bool) and kind in ("integer", "number"):
        return False  # JSON true is not a number, even though Python's bool is an int
    return isinstance(value, _JSON_CHECKS[kind])


def _describe(schema: Mapping[str, Any]) -> str:
    if "anyOf" in schema:
        return " or ".join(_describe(s) for s in schema["anyOf"])
    if "enum" in schema:
        return f"one of {schema['enum']}"
    return schema.get("type", "any value")
