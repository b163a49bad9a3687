"""Running tool calls: argument checks, a per-call wall-clock limit, and results as text for the model.

Each call runs in its own daemon thread and the caller waits at most ``timeout_s`` for it. Python
cannot kill a thread, so a function that never returns keeps its thread (daemon: it never blocks
interpreter exit) while the episode moves on with a timeout message. Tools that run untrusted code
must therefore not run it in-process: ``rewardkit.tools.builtin.python_tool`` sends it to the sandbox,
whose own limit kills the program. Every failure (unknown tool, bad arguments, an exception, a
timeout, even a tool whose schema was broken after it was built) becomes the text of the tool result,
with a status saying which: ``ToolExecutor.run`` never raises.

Argument policies (``ToolExecutor(argument_policy=...)``, or a Tool's own ``argument_policy``):

* ``strict`` (the default): the arguments must fit the tool's JSON schema as written, checked with
  ``jsonschema`` (Draft 2020-12) at every depth: types, array items, object properties, ``enum``,
  ``required``, bounds. Two rules go past JSON schema, because the function gets the decoded Python
  values: a name the schema does not list is refused unless ``additionalProperties`` allows it, and an
  ``integer`` is a JSON integer (``3``; ``3.0`` is refused, as ``true`` is).
* ``coerce``: first convert the obvious forms where the schema declares another type, then check as
  ``strict``. Exactly these conversions, applied at any depth (array items, object properties, members
  of a type list or ``anyOf``/``oneOf``) and only when the value's own type is not already allowed:

  ============  ====================================================================================
  declared      converted from
  ============  ====================================================================================
  ``integer``   a string holding an integer literal (``"3"``, ``" -12 "``); a float with no fraction (``3.0``)
  ``number``    a string holding a decimal literal (``"2.5"``, ``"1e-3"``, ``"3"``; no ``nan``/``inf``):
                an int when it has no ``.`` or exponent, else a float
  ``boolean``   the strings ``"true"`` / ``"false"``, any case, surrounding spaces ignored
  ``string``    an int or float (not a bool): ``str(value)`` (``12`` -> ``"12"``, ``2.5`` -> ``"2.5"``)
  ``array``     a string holding a JSON array (``"[1, 2]"``)
  ``object``    a string holding a JSON object (``'{"k": 1}'``)
  ============  ====================================================================================

  Nothing else changes (no bool from ``1``, no ``null`` from ``"None"``); what stays wrong fails the check.
* ``pass_through``: no check at all; the function is called with the arguments as the model wrote
  them, as a reference executor that just calls the function would. A wrong argument name then
  fails inside the call (status ``error``), and a wrong type runs if the function tolerates it.
"""

from __future__ import annotations

import json
import math
import re
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from jsonschema import Draft202012Validator, validators
from jsonschema.exceptions import ValidationError

from rewardkit.sandbox.base import SandboxError
from rewardkit.tools.parse import ToolCall
from rewardkit.tools.schema import ARGUMENT_POLICIES, Tool, as_tool

RESULT_STATUSES = (
    "ok",
    "invalid_arguments",
    "unknown_tool",
    "error",
    "timeout",
    "parse_error",
    "infra_error",
)
"""``invalid_arguments``: the call's arguments do not fit the tool's schema (nothing ran).
``unknown_tool``: no tool has the called name. ``error``: the function raised (or the tool itself is
broken). ``infra_error``: the tool's own machinery failed (``SandboxError``), not the model's call:
such an episode should be dropped rather than scored 0."""

_ArgumentValidator = validators.extend(
    Draft202012Validator,
    type_checker=Draft202012Validator.TYPE_CHECKER.redefine(
        "integer", lambda _checker, value: isinstance(value, int) and not isinstance(value, bool)
    ),
)
"""Draft 2020-12, except that ``3.0`` is not an integer: the function would receive a float."""
_INTEGER_RE = re.compile(r"[+-]?\d+")
_NUMBER_RE = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")
_UNCHANGED = object()
MAX_REPORTED_PROBLEMS = 3


@dataclass(frozen=True)
class ToolResult:
    """What one call produced. ``content`` is what the model sees; ``status`` (one of
    ``RESULT_STATUSES``) and ``truncated_chars`` (characters cut from ``content``) are for metrics."""

    call: ToolCall
    content: str
    status: str = "ok"
    wall_s: float = 0.0
    truncated_chars: int = 0

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def message(self) -> dict[str, Any]:
        """The ``tool`` chat message carrying this result back to the model."""
        return {"role": "tool", "name": self.call.name, "tool_call_id": self.call.id, "content": self.content}


class ToolExecutor:
    """Runs calls against a fixed set of tools.

    Args:
        tools: Tool objects, typed functions (turned into tools by ``tool``) or ``(schema, fn)`` pairs
            (``Tool.from_schema``); see ``as_tool``.
        timeout_s: default per-call limit (a Tool's own ``timeout_s`` wins when set).
        max_output_chars: a longer result keeps its first ``max_output_chars`` characters followed by
            ``"... [truncated: N more characters cut]"``, so one chatty tool cannot flood the context.
            None: no limit.
        max_stuck_calls: timed-out calls whose threads are still running; past it new calls are refused
            (status ``infra_error``) instead of piling up threads behind a tool that hangs.
        argument_policy: ``strict``, ``coerce`` or ``pass_through`` (the module docstring defines them);
            a Tool's own ``argument_policy`` wins when set.
    """

    def __init__(
        self,
        tools: Iterable[Any],
        *,
        timeout_s: float = 5.0,
        max_output_chars: int | None = 2000,
        max_stuck_calls: int = 16,
        argument_policy: str = "strict",
    ) -> None:
        if not timeout_s > 0:
            raise ValueError(f"timeout_s must be > 0, got {timeout_s!r}")
        if max_output_chars is not None and max_output_chars < 16:
            raise ValueError(f"max_output_chars must be >= 16 or None, got {max_output_chars!r}")
        if argument_policy not in ARGUMENT_POLICIES:
            raise ValueError(f"argument_policy must be one of {ARGUMENT_POLICIES}, got {argument_policy!r}")
        self.tools: dict[str, Tool] = {}
        for obj in tools:
            t = as_tool(obj)
            if t.name in self.tools:
                raise ValueError(f"two tools are named {t.name!r}")
            self.tools[t.name] = t
        self.timeout_s = float(timeout_s)
        self.max_output_chars = max_output_chars
        self.max_stuck_calls = max_stuck_calls
        self.argument_policy = argument_policy
        self._stuck: list[threading.Thread] = []
        self._lock = threading.Lock()  # episodes may run their calls from several threads at once
        self._validators = {name: _ArgumentValidator(t.parameters) for name, t in self.tools.items()}

    def __getstate__(self) -> dict[str, Any]:
        # threads and locks belong to this process only; validators are rebuilt from the schemas
        state = {**self.__dict__, "_stuck": []}
        del state["_lock"], state["_validators"]
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()
        self._validators = {name: _ArgumentValidator(t.parameters) for name, t in self.tools.items()}

    def stuck_calls(self) -> int:
        """Timed-out calls whose threads have not finished yet."""
        with self._lock:
            self._stuck = [t for t in self._stuck if t.is_alive()]
            return len(self._stuck)

    def schemas(self) -> list[dict[str, Any]]:
        return [t.schema for t in self.tools.values()]

    def run(self, call: ToolCall, *, deadline: float | None = None) -> ToolResult:
        """Run one call; never raises. ``deadline`` (a ``time.monotonic()`` value) can shorten the limit."""
        try:
            return self._run(call, deadline)
        except Exception as exc:  # noqa: BLE001 - a last resort: a call the checks did not foresee
            return self._result(
                call, f"Error: the call could not be run: {type(exc).__name__}: {exc}", "error"
            )

    def _run(self, call: ToolCall, deadline: float | None) -> ToolResult:
        if call.error is not None:
            return self._result(call, f"Error: {call.error}", "parse_error")
        found = self.tools.get(call.name)
        if found is None:
            known = ", ".join(sorted(self.tools)) or "none"
            return self._result(
                call, f"Error: unknown tool {call.name!r}. Available tools: {known}.", "unknown_tool"
            )
        arguments = call.arguments
        policy = found.argument_policy or self.argument_policy
        if policy != "pass_through":
            if policy == "coerce":
                arguments = coerce_arguments(found.parameters, arguments)
            try:
                problem = check_arguments(found, arguments, validator=self._validators[found.name])
            except Exception as exc:  # noqa: BLE001 - the schema was edited into something unusable
                text = f"Error: the schema of {found.name} cannot be checked ({type(exc).__name__}: {exc})."
                return self._result(call, text, "error")
            if problem:
                return self._result(call, f"Error: {problem}", "invalid_arguments")
        if (stuck := self.stuck_calls()) >= self.max_stuck_calls:
            message = f"Error: {stuck} earlier tool calls are still running; not starting another."
            return self._result(call, message, "infra_error")
        limit = found.timeout_s or self.timeout_s
        if deadline is not None:
            limit = min(limit, max(0.0, deadline - time.monotonic()))
        start = time.monotonic()
        status, value = call_with_timeout(found.fn, arguments, limit)
        wall = time.monotonic() - start
        if status == "timeout":
            if value is not None:
                with self._lock:
                    self._stuck.append(value)
            return self._result(
                call, f"Error: {call.name} did not finish within {limit:.3g} s.", "timeout", wall
            )
        if status in ("error", "infra_error"):
            return self._result(call, f"Error: {call.name} failed: {value}", status, wall)
        return self._result(call, _as_text(value), "ok", wall)

    def _result(self, call: ToolCall, text: str, status: str, wall: float = 0.0) -> ToolResult:
        """The result, its text cut to ``max_output_chars`` (error texts too: an exception can be long)."""
        limit = self.max_output_chars
        if limit is None or len(text) <= limit:
            return ToolResult(call, text, status, wall)
        cut = len(text) - limit
        return ToolResult(
            call, f"{text[:limit]}... [truncated: {cut} more characters cut]", status, wall, cut
        )


def _as_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    try:
        return json.dumps(value, ensure_ascii=False, default=str)
    except (TypeError, ValueError):
        return repr(value)


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


def check_arguments(t: Tool, arguments: Any, *, validator: Any = None) -> str:
    """A message naming what is wrong with the arguments (at most ``MAX_REPORTED_PROBLEMS`` problems),
    or "" when they fit the tool's schema. ``validator``: a prebuilt ``_ArgumentValidator`` of
    ``t.parameters`` (the executor keeps one per tool); built here when None."""
    if not isinstance(arguments, Mapping):
        return f"{t.name} takes its arguments as a JSON object, got {_show(arguments)}."
    params = t.parameters
    properties = params.get("properties", {})
    if params.get("additionalProperties") in (None, False) and "patternProperties" not in params:
        unknown = sorted(set(arguments) - set(properties))
        if unknown:
            return f"{t.name} got unknown argument(s) {unknown}; it takes {sorted(properties)}."
    missing = [p for p in params.get("required", []) if p not in arguments]
    if missing:
        return f"{t.name} is missing required argument(s) {missing}."
    validator = validator if validator is not None else _ArgumentValidator(params)
    errors = sorted(validator.iter_errors(dict(arguments)), key=lambda e: [str(p) for p in e.absolute_path])
    return " ".join(_problem(t.name, e) for e in errors[:MAX_REPORTED_PROBLEMS])


def _problem(tool_name: str, error: ValidationError) -> str:
    path = _path(error.absolute_path)
    where = f"{tool_name} argument {path!r}" if path else f"{tool_name} arguments"
    if error.validator == "required":
        instance = error.instance if isinstance(error.instance, Mapping) else {}
        missing = [k for k in error.validator_value if k not in instance]
        return f"{where} is missing required key(s) {missing}."
    deeper = [e for e in error.context or () if len(e.absolute_path) > len(error.absolute_path)]
    if (
        error.validator in ("anyOf", "oneOf") and deeper
    ):  # the value has a branch's type: say what is wrong inside
        return _problem(tool_name, min(deeper, key=lambda e: [str(p) for p in e.absolute_path]))
    if error.validator in ("type", "enum", "anyOf", "oneOf"):
        return f"{where} must be {_describe(error.schema)}, got {_show(error.instance)}."
    return f"{where}: {error.message}."


def _path(parts: Iterable[Any]) -> str:
    """``["ids", 1]`` -> ``ids[1]``; ``["opts", "depth"]`` -> ``opts.depth``."""
    text = ""
    for part in parts:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def _show(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, default=repr)[:80]


def _describe(schema: Any) -> str:
    if not isinstance(schema, Mapping):
        return "any value"
    for key in ("anyOf", "oneOf"):
        if key in schema:
            return " or ".join(_describe(s) for s in schema[key])
    if "enum" in schema:
        return f"one of {schema['enum']}"
    kind = schema.get("type", "any value")
    return " or ".join(kind) if isinstance(kind, list) else str(kind)


def coerce_arguments(parameters: Mapping[str, Any], arguments: Any) -> Any:
    """``arguments`` with the obvious forms converted to the types ``parameters`` declares (the
    ``coerce`` policy of the module docstring). Never raises; what it cannot convert stays as it was."""
    try:
        return _coerce(parameters, arguments)
    except Exception:  # noqa: BLE001 - a strange schema: leave the value for the check to report
        return arguments


def _coerce(schema: Any, value: Any) -> Any:
    if not isinstance(schema, Mapping):
        return value
    for key in ("anyOf", "oneOf"):
        branches = [b for b in schema.get(key) or [] if isinstance(b, Mapping)]
        if branches:
            for branch in branches:  # a branch the value already fits: coerce inside it only
                if _fits_kind(value, branch):
                    return _coerce_inside(branch, value)
            for branch in branches:  # else the first branch that a conversion makes it fit
                converted = _coerce(branch, value)
                if converted is not value and _fits_kind(converted, branch):
                    return converted
            return value
    if not _fits_kind(value, schema):
        kinds = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
        for kind in kinds:
            converted = _convert(kind, value)
            if converted is not _UNCHANGED:
                value = converted
                break
    return _coerce_inside(schema, value)


def _coerce_inside(schema: Mapping[str, Any], value: Any) -> Any:
    """Coerce the items of an array and the properties of an object."""
    if isinstance(value, list) and isinstance(schema.get("items"), Mapping):
        return [_coerce(schema["items"], item) for item in value]
    if isinstance(value, dict) and isinstance(schema.get("properties"), Mapping):
        properties = schema["properties"]
        return {k: _coerce(properties[k], v) if k in properties else v for k, v in value.items()}
    return value


def _fits_kind(value: Any, schema: Mapping[str, Any]) -> bool:
    """Whether the value's JSON type is among the schema's declared ones (true when none is declared)."""
    if "type" not in schema:
        return True
    kinds = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
    if isinstance(value, bool):
        own = {"boolean"}
    elif isinstance(value, int):
        own = {"integer", "number"}
    elif isinstance(value, float):
        own = {"number"}
    else:
        own = {_KINDS.get(type(value), "")}
    return bool(own & set(kinds))


_KINDS: dict[type, str] = {type(None): "null", str: "string", list: "array", dict: "object"}


def _convert(kind: str, value: Any) -> Any:
    """``value`` converted to the JSON type ``kind`` by the table in the module docstring, or ``_UNCHANGED``."""
    try:
        return _convert_or_raise(kind, value)
    except ValueError:  # e.g. an integer literal past Python's 4300-digit conversion limit
        return _UNCHANGED


def _convert_or_raise(kind: str, value: Any) -> Any:
    number = isinstance(value, int | float) and not isinstance(value, bool)
    if kind == "integer":
        if isinstance(value, str) and _INTEGER_RE.fullmatch(value.strip()):
            return int(value.strip())
        if isinstance(value, float) and value.is_integer():
            return int(value)
    elif kind == "number" and isinstance(value, str) and _NUMBER_RE.fullmatch(text := value.strip()):
        as_int = _INTEGER_RE.fullmatch(text)
        result = int(text) if as_int else float(text)
        return result if as_int or math.isfinite(result) else _UNCHANGED
    elif kind == "boolean" and isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    elif kind == "string" and number:
        return str(value)
    elif kind in ("array", "object") and isinstance(value, str):
        try:
            decoded = json.loads(value)
        except ValueError:
            return _UNCHANGED
        if isinstance(decoded, list if kind == "array" else dict):
            return decoded
    return _UNCHANGED
