"""Tools are plain typed Python functions; their JSON schema is derived, never written by hand.

The schema follows the OpenAI function-calling format::

    {"type": "function", "function": {"name": ..., "description": ..., "parameters": {JSON schema}}}

Parameter types come from the annotations, parameter descriptions from the docstring's ``Args:``
section (Google style), the tool description from the docstring's first paragraph. Deriving both from
the function keeps the schema the model sees and the code that runs in step: a renamed argument
cannot leave a stale description behind.

Schemas written elsewhere (a benchmark's function list, an API's tool definitions) come in through
``Tool.from_schema(schema, fn)`` or ``as_tool((schema, fn))``. Every ``Tool`` checks its schema when it
is built, so a tool that exists has a schema the executor can validate calls against.
"""

from __future__ import annotations

import copy
import inspect
import re
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError

NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_\-]{0,63}$")
_SECTION_RE = re.compile(r"^\s*(Args|Arguments|Parameters|Returns|Raises|Yields|Examples?|Notes?):\s*$")
_ARG_RE = re.compile(r"^\s*(\*{0,2}\w+)\s*(?:\([^)]*\))?\s*:\s*(.*)$")
_PRIMITIVES: dict[Any, str] = {str: "string", int: "integer", float: "number", bool: "boolean"}
JSON_TYPES = ("string", "number", "integer", "boolean", "array", "object", "null")
TYPE_ALIASES: dict[str, str | None] = {
    "dict": "object",
    "float": "number",
    "double": "number",
    "int": "integer",
    "str": "string",
    "bool": "boolean",
    "list": "array",
    "tuple": "array",
    "any": None,
}
"""Non-standard type names found in published function schemas (Python's, mostly), and the JSON-schema
type ``Tool.from_schema`` writes instead. None: no type constraint (the ``type`` key is dropped)."""
ARGUMENT_POLICIES = ("strict", "coerce", "pass_through")
"""How ``ToolExecutor`` treats a call's arguments; ``rewardkit.tools.execute`` documents each one."""
_SUBSCHEMA_KEYS = ("items", "additionalProperties", "not", "contains", "additionalItems")
_SUBSCHEMA_LIST_KEYS = ("anyOf", "oneOf", "allOf", "prefixItems")
_SUBSCHEMA_MAP_KEYS = ("properties", "patternProperties", "$defs", "definitions")


@dataclass(frozen=True)
class Tool:
    """A callable the model may invoke, with its schema and limits.

    Attributes:
        name: the name the model uses in its calls.
        fn: the Python function that runs the call (keyword arguments only).
        schema: the OpenAI function-calling schema shown to the model. Checked at construction
            (``check_tool_schema``): standard JSON-schema types only, ``parameters`` an object schema.
        timeout_s: per-call wall-clock limit; None means the executor's default.
        argument_policy: ``strict``, ``coerce`` or ``pass_through`` (see ``rewardkit.tools.execute``);
            None means the executor's default.
    """

    name: str
    fn: Callable[..., Any]
    schema: dict[str, Any] = field(compare=False)
    timeout_s: float | None = None
    argument_policy: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not NAME_RE.match(self.name):
            raise ValueError(f"tool name {self.name!r} must match {NAME_RE.pattern}")
        if not callable(self.fn):
            raise TypeError(f"tool {self.name!r}: fn must be callable, got {type(self.fn).__name__}")
        if self.argument_policy is not None and self.argument_policy not in ARGUMENT_POLICIES:
            raise ValueError(
                f"tool {self.name!r}: argument_policy must be one of {ARGUMENT_POLICIES} or None, "
                f"got {self.argument_policy!r}"
            )
        declared = check_tool_schema(self.schema)
        if declared != self.name:
            raise ValueError(f"tool is named {self.name!r} but its schema says {declared!r}")

    @classmethod
    def from_schema(
        cls,
        schema: Mapping[str, Any],
        fn: Callable[..., Any],
        *,
        timeout_s: float | None = None,
        argument_policy: str | None = None,
    ) -> Tool:
        """A tool from a written schema: ``{"type": "function", "function": {"name", "description",
        "parameters"}}`` (OpenAI) or the bare ``{"name", "description", "parameters"}``.

        The schema is copied, put in the OpenAI form, and its Python-style type names are replaced by
        JSON-schema ones (``TYPE_ALIASES``: ``dict`` -> ``object``, ``float`` -> ``number``, ``any`` ->
        no constraint, ...), at any depth. Raises ValueError naming the function, the parameter and the
        type for an unknown type name, and for a schema that is not valid JSON schema (Draft 2020-12).
        """
        if not callable(fn):
            raise TypeError(f"Tool.from_schema: fn must be callable, got {type(fn).__name__}")
        function = _function_part(schema)
        name = function["name"]
        parameters = function.get("parameters", {"type": "object", "properties": {}})
        if not isinstance(parameters, Mapping):
            raise ValueError(f"function {name!r}: parameters must be an object schema, got {parameters!r}")
        function["parameters"] = _map_types(parameters, f"function {name!r}", "", TYPE_ALIASES)
        openai = {"type": "function", "function": function}
        return cls(name, fn, openai, timeout_s, argument_policy)

    @property
    def parameters(self) -> dict[str, Any]:
        return self.schema["function"]["parameters"]


def tool(
    fn: Callable[..., Any] | None = None,
    *,
    name: str | None = None,
    timeout_s: float | None = None,
    argument_policy: str | None = None,
) -> Any:
    """Make a ``Tool`` from a typed function; usable as ``tool(fn)`` or as a decorator ``@tool(...)``."""

    def wrap(f: Callable[..., Any]) -> Tool:
        schema = tool_schema(f, name=name)
        return Tool(schema["function"]["name"], f, schema, timeout_s, argument_policy)

    return wrap(fn) if fn is not None else wrap


def as_tool(obj: Tool | Callable[..., Any] | tuple[Mapping[str, Any], Callable[..., Any]]) -> Tool:
    """A ``Tool`` from any of the three things a tool list may hold:

    * a ``Tool``: returned as is;
    * a typed function: ``tool(fn)``, its schema derived from annotations and docstring;
    * a ``(schema, fn)`` tuple: ``Tool.from_schema(schema, fn)``, for a schema written elsewhere.
    """
    if isinstance(obj, Tool):
        return obj
    if isinstance(obj, tuple):
        if len(obj) != 2 or not isinstance(obj[0], Mapping):
            raise TypeError(f"a schema tool is a (schema, fn) pair, got a tuple of {len(obj)}")
        return Tool.from_schema(obj[0], obj[1])
    if callable(obj):
        return tool(obj)
    raise TypeError(
        f"a tool must be a Tool, a typed function or a (schema, fn) pair, got {type(obj).__name__}"
        + (": a schema alone has nothing to run" if isinstance(obj, Mapping) else "")
    )


def check_tool_schema(schema: Mapping[str, Any]) -> str:
    """The tool's name, once ``schema`` is known to be a usable OpenAI function schema; else ValueError.

    Usable: the name matches ``NAME_RE``; ``parameters`` is an object schema whose ``required`` names
    are among its properties; every ``type`` (at any depth) is a JSON-schema type or a list of them;
    and the whole is valid JSON schema (Draft 2020-12 meta-schema).
    """
    if not isinstance(schema, Mapping) or schema.get("type") != "function":
        raise ValueError('a tool schema must look like {"type": "function", "function": {...}}')
    function = schema.get("function")
    if not isinstance(function, Mapping):
        raise ValueError(f"a tool schema's 'function' must be an object, got {function!r}")
    name = function.get("name")
    if not isinstance(name, str) or not NAME_RE.match(name):
        raise ValueError(f"tool name {name!r} must match {NAME_RE.pattern}")
    where = f"function {name!r}"
    parameters = function.get("parameters")
    if not isinstance(parameters, Mapping) or parameters.get("type") != "object":
        got = parameters.get("type") if isinstance(parameters, Mapping) else parameters
        raise ValueError(f"{where}: parameters must be an object schema (type 'object'), got {got!r}")
    _map_types(parameters, where, "", {})  # raises on any non-standard type
    properties = parameters.get("properties", {})
    required = parameters.get("required", [])
    if isinstance(properties, Mapping) and isinstance(required, list):
        absent = [r for r in required if r not in properties]
        if absent and not _open(parameters):
            raise ValueError(f"{where} requires {absent}, which are not among its properties")
    try:
        Draft202012Validator.check_schema(parameters)
    except SchemaError as exc:
        at = "/".join(str(p) for p in exc.path) or "parameters"
        raise ValueError(f"{where}: parameters are not a valid JSON schema at {at}: {exc.message}") from None
    return name


def _open(parameters: Mapping[str, Any]) -> bool:
    """Whether calls may name arguments beyond the listed properties. Only when the schema says so:
    the executor refuses unlisted names when ``additionalProperties`` is absent (a plain function
    would fail on them anyway), although JSON schema itself would allow them."""
    extra = parameters.get("additionalProperties")
    return "patternProperties" in parameters or extra is True or isinstance(extra, Mapping)


def _function_part(schema: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of the ``function`` object of either schema form, with a checked name."""
    if not isinstance(schema, Mapping):
        raise TypeError(f"a tool schema must be a dict, got {type(schema).__name__}")
    if schema.get("type") == "function" and "function" in schema:
        function = schema["function"]
        if not isinstance(function, Mapping):
            raise ValueError(f"a tool schema's 'function' must be an object, got {function!r}")
    else:
        function = schema
    if "name" not in function:
        raise ValueError(
            'a tool schema needs a name: {"type": "function", "function": {"name", "description", '
            f'"parameters"}} or {{"name", "description", "parameters"}}; got keys {sorted(function)}'
        )
    name = function["name"]
    if not isinstance(name, str) or not NAME_RE.match(name):
        raise ValueError(f"tool name {name!r} must match {NAME_RE.pattern}")
    return copy.deepcopy(dict(function))


def _map_types(node: Any, where: str, path: str, aliases: Mapping[str, str | None]) -> Any:
    """A copy of the schema ``node`` with each ``type`` name replaced through ``aliases``, at any depth.

    A name that is neither a JSON-schema type nor an alias raises ValueError naming ``where`` and the
    parameter ``path`` (``xs[]`` is the items of ``xs``, ``opts.depth`` a property of ``opts``).
    """
    if not isinstance(node, Mapping):
        return node  # not a schema: left for the meta-schema check to report
    out = dict(node)
    if "type" in node:
        kinds = node["type"] if isinstance(node["type"], list) else [node["type"]]
        mapped: list[str] = []
        for kind in kinds:
            if isinstance(kind, str) and kind in JSON_TYPES:
                target: str | None = kind
            elif isinstance(kind, str) and kind in aliases:
                target = aliases[kind]
            else:
                raise ValueError(_unknown_type(where, path, kind))
            if target is None:  # "any" among the members: no constraint at all
                mapped = []
                break
            if target not in mapped:
                mapped.append(target)
        if not mapped:
            del out["type"]
        else:
            out["type"] = mapped if isinstance(node["type"], list) else mapped[0]
    for key in _SUBSCHEMA_KEYS:
        if key in node:
            out[key] = _map_types(node[key], where, f"{path}[]" if "items" in key else path, aliases)
    for key in _SUBSCHEMA_LIST_KEYS:
        if isinstance(node.get(key), list):
            out[key] = [_map_types(sub, where, path, aliases) for sub in node[key]]
    for key in _SUBSCHEMA_MAP_KEYS:
        if isinstance(node.get(key), Mapping):
            prefix = f"{path}." if path and key == "properties" else ""
            inner = {
                k: _map_types(v, where, f"{prefix}{k}" if key == "properties" else path, aliases)
                for k, v in node[key].items()
            }
            out[key] = inner
    return out


def _unknown_type(where: str, path: str, kind: Any) -> str:
    place = f"{where} parameter {path!r}" if path else f"{where} parameters"
    hint = ""
    if isinstance(kind, str) and kind in TYPE_ALIASES:
        hint = f"; Tool.from_schema maps it to {TYPE_ALIASES[kind] or 'no constraint'}"
    known = ", ".join(JSON_TYPES)
    return f"{place}: unknown type {kind!r} (JSON-schema types: {known}, or a list of them){hint}"


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
