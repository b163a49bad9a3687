"""Tools are plain typed Python functions; their JSON schema is derived, never written by hand.

The schema follows the OpenAI function-calling format::

    {"type": "function", "function": {"name": ..., "description": ..., "parameters": {JSON schema}}}

Parameter types come from the annotations, parameter descriptions from the docstring's ``Args:``
section (Google style), the tool description from the docstring's first paragraph. Deriving both from
the function keeps the schema the model sees and the code that runs in step: a renamed argument
cannot leave a stale description behind.
"""

from __future__ import annotations

import inspect
import re
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_\-]{0,63}$")
_SECTION_RE = re.compile(r"^\s*(Args|Arguments|Parameters|Returns|Raises|Yields|Examples?|Notes?):\s*$")
_ARG_RE = re.compile(r"^\s*(\*{0,2}\w+)\s*(?:\([^)]*\))?\s*:\s*(.*)$")
_PRIMITIVES: dict[Any, str] = {str: "string", int: "integer", float: "number", bool: "boolean"}


@dataclass(frozen=True)
class Tool:
    """A callable the model may invoke, with its schema and limits.

    Attributes:
        name: the name the model uses in its calls.
        fn: the Python function that runs the call (keyword arguments only).
        schema: the OpenAI function-calling schema shown to the model.
        timeout_s: per-call wall-clock limit; None means the executor's default.
    """

    name: str
    fn: Callable[..., Any]
    schema: dict[str, Any] = field(compare=False)
    timeout_s: float | None = None

    @property
    def parameters(self) -> dict[str, Any]:
        return self.schema["function"]["parameters"]


def tool(
    fn: Callable[..., Any] | None = None, *, name: str | None = None, timeout_s: float | None = None
) -> Any:
    """Make a ``Tool`` from a typed function; usable as ``tool(fn)`` or as a decorator ``@tool(...)``."""

    def wrap(f: Callable[..., Any]) -> Tool:
        schema = tool_schema(f, name=name)
        return Tool(schema["function"]["name"], f, schema, timeout_s)

    return wrap(fn) if fn is not None else wrap


def as_tool(obj: Tool | Callable[..., Any]) -> Tool:
    """A ``Tool`` as is, or a plain function turned into one."""
    if isinstance(obj, Tool):
        return obj
    if callable(obj):
        return tool(obj)
    raise TypeError(f"a tool must be a Tool or a typed function, got {type(obj).__name__}")


def tool_schema(fn: Callable[..., Any], *, name: str | None = None) -> dict[str, Any]:
    """The OpenAI function-calling schema of ``fn``. Raises TypeError for parameters it cannot describe."""
    name = name or getattr(fn, "__name__", "")
    if not NAME_RE.match(name):
        raise ValueError(f"tool name {name!r} must match {NAME_RE.pattern}")
    doc = inspect.getdoc(fn) or ""
    description, arg_docs = parse_docstring(doc)
    if not description:
        raise ValueError(f"tool {name!r} needs a docstring: it is the description the model reads")
    hints = typing.get_type_hints(fn)
    properties: dict[str, Any] = {}
    required: list[str] = []
    for param in inspect.signature(fn).parameters.values():
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            raise TypeError(f"tool {name!r}: *args/**kwargs cannot be described to the model")
        if param.name not in hints:
            raise TypeError(f"tool {name!r}: parameter {param.name!r} needs a type annotation")
        prop = json_type(hints[param.name], where=f"tool {name!r} parameter {param.name!r}")
        if param.name in arg_docs:
            prop["description"] = arg_docs[param.name]
        properties[param.name] = prop
        if param.default is inspect.Parameter.empty:
            required.append(param.name)
    parameters = {"type": "object", "properties": properties, "required": required}
    return {
        "type": "function",
        "function": {"name": name, "description": description, "parameters": parameters},
    }


def json_type(annotation: Any, *, where: str = "parameter") -> dict[str, Any]:
    """JSON schema for a Python annotation: primitives, list/tuple/dict, Literal, Optional/unions."""
    if annotation in _PRIMITIVES:
        return {"type": _PRIMITIVES[annotation]}
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is typing.Literal:
        kinds = {_PRIMITIVES.get(type(a)) for a in args}
        schema: dict[str, Any] = {"enum": list(args)}
        if len(kinds) == 1 and None not in kinds:
            schema["type"] = kinds.pop()
        return schema
    if origin in (typing.Union, types.UnionType):
        members = [a for a in args if a is not type(None)]
        if len(members) == 1:  # Optional[X]: the model may pass null
            inner = json_type(members[0], where=where)
            return {"anyOf": [inner, {"type": "null"}]}
        return {"anyOf": [json_type(a, where=where) for a in args]}
    if annotation in (list, tuple) or origin in (list, tuple, typing.Sequence):
        schema = {"type": "array"}
        if args:  # list[X], tuple[X, ...]: items of the first type
            schema["items"] = json_type(args[0], where=where)
        return schema
    if annotation is dict or origin in (dict, Mapping):
        return {"type": "object"}
    if annotation is Any:
        return {}
    raise TypeError(f"{where}: cannot describe type {annotation!r} in JSON schema")


def parse_docstring(doc: str) -> tuple[str, dict[str, str]]:
    """Split a Google-style docstring into (description, {argument: description}).

    The description is the first paragraph. Under ``Args:``, a line at the first entry's indentation
    starts a new argument (``name: text`` or ``name (type): text``); deeper lines continue it.
    """
    description: list[str] = []
    args: dict[str, str] = {}
    section, current, entry_indent = "", "", -1
    for line in doc.splitlines():
        if header := _SECTION_RE.match(line):
            section, current, entry_indent = header.group(1), "", -1
            continue
        if not line.strip():
            if description and not section:
                section = "body"
            continue
        if not section:
            description.append(line.strip())
        elif section in ("Args", "Arguments", "Parameters"):
            indent = len(line) - len(line.lstrip())
            if entry_indent < 0:
                entry_indent = indent
            match = _ARG_RE.match(line)
            if match and indent <= entry_indent:
                current = match.group(1).lstrip("*")
                args[current] = match.group(2).strip()
            elif current:
                args[current] = f"{args[current]} {line.strip()}".strip()
    return " ".join(description), args
