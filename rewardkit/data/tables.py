"""Reading the task tables shipped as JSONL package data (``rewardkit/data/*.jsonl``), and their values.

One JSON object per line; blank lines are skipped (they still count for line numbers). A malformed line
raises a ``TableError`` naming the file, the line number and the field (``cases[2].expected``), so a
typo in a table fails loudly at load time, not as a puzzling task.

Values (function arguments, expected return values, parameters) are plain JSON where JSON holds the
Python value exactly, and a *tagged object* where it does not:

==========================  ============================================================
Python value                JSON
==========================  ============================================================
``None``, bool, int, str    ``null``, ``true``/``false``, number without ``.``, string
finite float                number with a ``.`` or an exponent (``1.0``, ``2.5e-07``)
list                        array
dict with str keys          object (unless it is one ``$``-key, see ``$dict``)
tuple                       ``{"$tuple": [item, ...]}``
set / frozenset             ``{"$set": [item, ...]}`` / ``{"$frozenset": [item, ...]}``
dict of any other keys      ``{"$dict": [[key, value], ...]}`` (insertion order kept)
inf, -inf, nan              ``{"$float": "inf"}``, ``{"$float": "-inf"}``, ``{"$float": "nan"}``
bytes                       ``{"$bytes": "<base64>"}``
==========================  ============================================================

An object with exactly one key starting with ``$`` is always a tag (an unknown tag is an error); a dict
that would look like one is written with ``$dict``. JSON's non-standard ``NaN``/``Infinity`` literals
are rejected. ``encode_value`` writes this form and ``decode_value(encode_value(v))`` rebuilds ``v``
with the same types throughout; the tables hold only what ``encode_value`` writes.
"""

from __future__ import annotations

import base64
import binascii
import importlib.resources
import json
import math
from collections.abc import Iterator
from typing import Any

__all__ = ["Row", "TableError", "decode_value", "encode_value", "package_table", "parse_table"]

_SCALARS = (type(None), bool, int, str)
_NON_FINITE = {"inf": math.inf, "-inf": -math.inf, "nan": math.nan}


class TableError(ValueError):
    """A malformed line of a JSONL table: which file, which line, which field, and what is wrong."""

    def __init__(self, file: str, line: int, field: str, message: str) -> None:
        self.file, self.line, self.field = file, line, field
        where = f"field {field!r}: " if field else ""
        super().__init__(f"{file}, line {line}: {where}{message}")


class _ValueError(Exception):
    """A bad encoded value below a row's field: ``path`` is the part of the field name below it."""

    def __init__(self, path: str, message: str) -> None:
        super().__init__(message)
        self.path, self.message = path, message


# ---- values ---------------------------------------------------------------------------------------
def encode_value(value: Any) -> Any:
    """``value`` as the JSON-ready form described in the module docstring (TypeError for other types)."""
    if type(value) in _SCALARS:
        return value
    if type(value) is float:
        if math.isfinite(value):
            return value
        return {"$float": "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")}
    if type(value) is list:
        return [encode_value(x) for x in value]
    if type(value) is tuple:
        return {"$tuple": [encode_value(x) for x in value]}
    if type(value) in (set, frozenset):
        return {f"${type(value).__name__}": [encode_value(x) for x in value]}
    if type(value) is bytes:
        return {"$bytes": base64.b64encode(value).decode("ascii")}
    if type(value) is dict:
        plain = all(type(k) is str for k in value) and not (len(value) == 1 and next(iter(value))[:1] == "$")
        if plain:
            return {k: encode_value(v) for k, v in value.items()}
        return {"$dict": [[encode_value(k), encode_value(v)] for k, v in value.items()]}
    raise TypeError(f"no table encoding for {type(value).__name__}: {value!r}")


def decode_value(data: Any) -> Any:
    """The Python value that ``data`` (parsed JSON, encoded form) stands for; ValueError if malformed."""
    try:
        return _decode(data, "")
    except _ValueError as e:
        raise ValueError(f"at {e.path or 'top level'}: {e.message}") from None


def _decode(data: Any, path: str) -> Any:
    if type(data) in _SCALARS or type(data) is float:
        return data
    if type(data) is list:
        return [_decode(x, f"{path}[{i}]") for i, x in enumerate(data)]
    if type(data) is not dict:
        raise _ValueError(path, f"not a JSON value: {data!r}")
    if len(data) != 1 or not next(iter(data)).startswith("$"):
        return {k: _decode(v, f"{path}.{k}") for k, v in data.items()}
    ((tag, body),) = data.items()
    inner = f"{path}.{tag}"
    if tag == "$float":
        if body not in _NON_FINITE:
            raise _ValueError(inner, f"must be one of {sorted(_NON_FINITE)}, got {body!r}")
        return _NON_FINITE[body]
    if tag == "$bytes":
        try:
            if isinstance(body, str):
                return base64.b64decode(body, validate=True)
        except binascii.Error:
            pass
        raise _ValueError(inner, f"must be a base64 string, got {body!r}")
    if tag not in ("$tuple", "$set", "$frozenset", "$dict"):
        raise _ValueError(path, f"unknown tag {tag!r} (known: $tuple $set $frozenset $dict $float $bytes)")
    if type(body) is not list:
        raise _ValueError(inner, f"must be a list, got {type(body).__name__}")
    items = [_decode(x, f"{inner}[{i}]") for i, x in enumerate(body)]
    try:
        if tag == "$tuple":
            return tuple(items)
        if tag == "$dict":
            if not all(type(kv) is list and len(kv) == 2 for kv in items):
                raise _ValueError(inner, "must be a list of [key, value] pairs")
            return {k: v for k, v in items}
        return set(items) if tag == "$set" else frozenset(items)
    except TypeError as e:  # an unhashable key or set member
        raise _ValueError(inner, str(e)) from None


# ---- rows -----------------------------------------------------------------------------------------
class Row:
    """One parsed line of a table, with typed getters whose errors name the file, the line and the field."""

    def __init__(self, file: str, line: int, data: dict[str, Any]) -> None:
        self.file, self.line, self.data = file, line, data

    def error(self, field: str, message: str) -> TableError:
        return TableError(self.file, self.line, field, message)

    def check_fields(self, required: set[str], optional: frozenset[str] = frozenset()) -> None:
        """Every required field present, nothing unknown (a misspelt field is an error, not ignored)."""
        for name in sorted(required - self.data.keys()):
            raise self.error(name, "missing")
        for name in sorted(self.data.keys() - required - optional):
            raise self.error(name, f"unknown field (known: {sorted(required | optional)})")

    def text(self, field: str, *, empty: bool = False) -> str:
        value = self.data.get(field)
        if not isinstance(value, str):
            raise self.error(field, f"must be a string, got {type(value).__name__}")
        if not empty and not value.strip():
            raise self.error(field, "must not be empty")
        return value

    def items(self, field: str) -> list[Any]:
        """A non-empty JSON array, as is (not decoded)."""
        value = self.data.get(field)
        if not isinstance(value, list) or not value:
            raise self.error(field, f"must be a non-empty list, got {json.dumps(value)[:60]}")
        return value

    def value(self, field: str, data: Any) -> Any:
        """``data`` (found at ``field``, which may be a nested name) decoded as a Python value."""
        try:
            return _decode(data, "")
        except _ValueError as e:
            raise self.error(field + e.path, e.message) from None


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON (write {{'$float': ...}})")


def parse_table(text: str, file: str) -> Iterator[Row]:
    """The rows of the JSONL ``text`` (``file`` names it in errors); each must be a JSON object."""
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            data = json.loads(line, parse_constant=_reject_constant)
        except ValueError as e:
            raise TableError(file, number, "", f"not valid JSON: {e}") from None
        if not isinstance(data, dict):
            raise TableError(file, number, "", f"must be a JSON object, got {type(data).__name__}")
        yield Row(file, number, data)


def package_table(name: str) -> Iterator[Row]:
    """The rows of the package data file ``rewardkit/data/<name>``, in file order."""
    resource = importlib.resources.files("rewardkit.data").joinpath(name)
    return parse_table(resource.read_text(encoding="utf-8"), f"rewardkit/data/{name}")
