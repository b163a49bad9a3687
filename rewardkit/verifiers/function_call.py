"""Function-call checks: do the calls a model made match the expected calls? Data in, a verdict out.

Expected calls are written as in public function-calling benchmarks (BFCL's "possible answer"): a list
of calls, each ``{function_name: {argument: [acceptable values, ...]}}``. The empty string ``""`` in an
argument's list is not a value: it marks the argument as one that may be omitted. Optionally each
function has a schema, in OpenAI's form ``{"name", "parameters": {"type": "object", "properties",
"required"}}`` or wrapped as ``{"type": "function", "function": {...}}``; it is used for type checks.

The rules, for one made call against one expected call (each broken rule is a named defect):

1. ``wrong_function``: the names differ (exact comparison). The arguments are then not checked.
2. ``missing_arg``: a required argument is absent. Required means listed in the schema's
   ``required``, or having an acceptable list without ``""``.
3. ``unknown_arg``: an argument that the expected call does not list (the expected call lists every
   argument the grader allows, optional ones with ``""``).
4. ``wrong_type``: the value does not have the schema's declared type (``integer``: an int;
   ``number``: an int or a float; ``string``; ``boolean``; ``array``: a list or tuple; ``object``: a
   mapping; ``null``; BFCL's ``int``, ``float``, ``str``, ``bool``, ``list``, ``tuple``, ``dict``,
   ``any`` are read the same way; a list of types means any of them; array ``items`` and object
   ``properties`` are checked recursively). A bool is never an int or a number. Without a schema for
   the argument, a value whose kind (boolean, number, string, array, object, null) is the kind of none
   of the acceptable values is ``wrong_type`` too.
5. ``wrong_value``: otherwise, the value equals none of the acceptable values, where equality is
   :func:`value_matches`: numbers by ``==`` (so ``3`` equals ``3.0``; a bool equals only a bool), strings
   after :func:`normalize_string`, lists and tuples alike, element by element with equal lengths, and
   a dict acceptable value as a spec: each key maps to its own list of acceptable values (``""`` for
   a key that may be left out), the given dict has no other key, recursively.

Several calls (parallel calls) are matched as a multiset, in any order: made and expected calls are
paired by an optimal assignment (:func:`assign`, the Hungarian method) that first maximises the number
of exactly matching pairs and then prefers pairs with the same function name, so a defect is reported
against the call it most likely meant. Made calls left unpaired are ``extra_call``; expected calls left
unpaired are ``missing_call``.

Rewards (:meth:`FunctionCallVerdict.reward`): ``all_or_nothing`` is 1.0 iff every expected call is
matched exactly and there is no extra call. ``partial`` is ``(exact matches - extra calls) / expected
calls`` clipped to [0, 1]: an extra call costs what a matched call earns. With no expected call (the
model should not call anything) both modes give 1.0 iff no call was made.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

Mode = Literal["all_or_nothing", "partial"]
MODES: tuple[str, ...] = ("all_or_nothing", "partial")
OMIT = ""
"""In an acceptable-values list: the argument (or nested key) may be left out."""
DEFECTS: tuple[str, ...] = ("wrong_function", "missing_arg", "unknown_arg", "wrong_type", "wrong_value")
IGNORED_PUNCTUATION = frozenset(",.;:!?'\"-_/")
"""Characters :func:`normalize_string` drops, with every whitespace character."""

_TYPE_CHECKS = {
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "number": lambda v: isinstance(v, int | float) and not isinstance(v, bool),
    "string": lambda v: isinstance(v, str),
    "boolean": lambda v: isinstance(v, bool),
    "array": lambda v: isinstance(v, list | tuple),
    "object": lambda v: isinstance(v, Mapping),
    "null": lambda v: v is None,
    "any": lambda v: True,
}
_TYPE_ALIASES = {"int": "integer", "float": "number", "str": "string", "bool": "boolean"}
_TYPE_ALIASES |= {"list": "array", "tuple": "array", "dict": "object"}


@dataclass(frozen=True)
class ExpectedCall:
    """One expected call: the function's name and each argument's acceptable values (``OMIT`` kept)."""

    name: str
    arguments: dict[str, tuple[Any, ...]]


@dataclass(frozen=True)
class CallCheck:
    """One made call paired with one expected call, and what is wrong with it (empty: an exact match)."""

    expected: int
    """Index of the expected call."""
    made: int
    """Index of the made call."""
    defects: tuple[tuple[str, str], ...]
    """``(defect, argument)`` pairs; the argument is the made call's name for ``wrong_function``."""


@dataclass(frozen=True)
class FunctionCallVerdict:
    """The pairing of made and expected calls, and the counts that the reward and metrics come from."""

    checks: tuple[CallCheck, ...]
    n_expected: int
    n_made: int

    @property
    def calls_correct(self) -> int:
        return sum(not c.defects for c in self.checks)

    @property
    def extra_call(self) -> int:
        return self.n_made - len(self.checks)

    @property
    def missing_call(self) -> int:
        return self.n_expected - len(self.checks)

    @property
    def all_ok(self) -> bool:
        return self.calls_correct == self.n_expected and self.extra_call == 0

    def reward(self, mode: Mode) -> float:
        """``all_or_nothing``: 1.0 iff ``all_ok``; ``partial``: see the module docstring."""
        if mode == "all_or_nothing" or self.n_expected == 0:
            return float(self.all_ok)
        if mode == "partial":
            return min(1.0, max(0.0, (self.calls_correct - self.extra_call) / self.n_expected))
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")

    def metrics(self) -> dict[str, float]:
        """Counts of each defect, of extra and missing calls, ``calls_correct``, and ``correct`` (1/0)."""
        counts = dict.fromkeys(DEFECTS, 0.0)
        for check in self.checks:
            for defect, _ in check.defects:
                counts[defect] += 1.0
        return {
            **counts,
            "extra_call": float(self.extra_call),
            "missing_call": float(self.missing_call),
            "calls_expected": float(self.n_expected),
            "calls_made": float(self.n_made),
            "calls_correct": float(self.calls_correct),
            "correct": float(self.all_ok),
        }


# ---- reading the expected calls and schemas -----------------------------------------------------------
def parse_expected(expected: Any) -> tuple[ExpectedCall, ...]:
    """Read ``[{name: {arg: [acceptable, ...]}}, ...]``; raise ValueError naming what is malformed."""
    if isinstance(expected, str | bytes | Mapping) or not isinstance(expected, Sequence):
        raise ValueError(
            f"expected calls must be a list of {{name: {{arg: [values]}}}}, got {expected!r:.200}"
        )
    calls = []
    for i, call in enumerate(expected):
        if not isinstance(call, Mapping) or len(call) != 1:
            raise ValueError(f"expected call {i} must be a mapping with one function name, got {call!r:.200}")
        ((name, arguments),) = call.items()
        if not isinstance(name, str) or not name or not isinstance(arguments, Mapping):
            raise ValueError(
                f"expected call {i} must map a function name to its arguments, got {call!r:.200}"
            )
        calls.append(ExpectedCall(name, _acceptable_lists(arguments, f"expected call {i} ({name})")))
    return tuple(calls)


def _acceptable_lists(spec: Mapping[str, Any], where: str) -> dict[str, tuple[Any, ...]]:
    """Each key's list of acceptable values as a tuple, nested dict specs checked all the way down."""
    out = {}
    for key, options in spec.items():
        if not isinstance(options, list | tuple):
            raise ValueError(
                f"{where}: {key!r} must map to a list of acceptable values, got {options!r:.200}"
            )
        for option in options:
            _check_value_spec(option, f"{where}: {key}")
        out[str(key)] = tuple(options)
    return out


def _check_value_spec(value: Any, where: str) -> None:
    if isinstance(value, Mapping):
        _acceptable_lists(value, where)
    elif isinstance(value, list | tuple):
        for item in value:
            _check_value_spec(item, where)


def parse_functions(functions: Any) -> dict[str, Mapping[str, Any]]:
    """``{name: parameters schema}`` from OpenAI function schemas (plain or ``{"type": "function", ...}``
    wrapped); None gives ``{}``. Raises ValueError for a schema without a name."""
    if functions is None:
        return {}
    if isinstance(functions, str | bytes | Mapping) or not isinstance(functions, Sequence):
        raise ValueError(f"functions must be a list of function schemas, got {functions!r:.200}")
    out: dict[str, Mapping[str, Any]] = {}
    for i, schema in enumerate(functions):
        if isinstance(schema, Mapping) and isinstance(schema.get("function"), Mapping):
            schema = schema["function"]
        if not isinstance(schema, Mapping) or not isinstance(schema.get("name"), str):
            raise ValueError(f"function schema {i} has no name: {schema!r:.200}")
        parameters = schema.get("parameters") or {}
        if not isinstance(parameters, Mapping):
            raise ValueError(f"function schema {schema['name']!r}: parameters must be an object schema")
        out[schema["name"]] = parameters
    return out


# ---- one call against one expected call ---------------------------------------------------------------
def normalize_string(text: str) -> str:
    """Case-folded, with all whitespace and the characters ``, . ; : ! ? ' " - _ /`` removed."""
    return "".join(ch for ch in text.casefold() if not ch.isspace() and ch not in IGNORED_PUNCTUATION)


def value_matches(value: Any, acceptable: Any) -> bool:
    """Whether a made value equals one acceptable value (rule 5 of the module docstring)."""
    if isinstance(acceptable, Mapping):
        if not isinstance(value, Mapping) or any(key not in acceptable for key in value):
            return False
        return all(
            any(value_matches(value[key], o) for o in options if not _is_omit(o))
            if key in value
            else any(_is_omit(o) for o in options)
            for key, options in acceptable.items()
        )
    if isinstance(acceptable, list | tuple):
        return (
            isinstance(value, list | tuple)
            and len(value) == len(acceptable)
            and all(value_matches(v, a) for v, a in zip(value, acceptable))
        )
    if isinstance(acceptable, bool) or isinstance(value, bool):
        return type(value) is type(acceptable) and value == acceptable
    if isinstance(acceptable, int | float):
        return isinstance(value, int | float) and value == acceptable
    if isinstance(acceptable, str):
        return isinstance(value, str) and normalize_string(value) == normalize_string(acceptable)
    return value == acceptable


def type_matches(value: Any, schema: Mapping[str, Any]) -> bool:
    """Whether ``value`` has the type ``schema`` declares (rule 4); an unknown or absent type passes."""
    declared = schema.get("type")
    names = [declared] if isinstance(declared, str) else list(declared) if isinstance(declared, list) else []
    checks = [_TYPE_CHECKS.get(_TYPE_ALIASES.get(n, n)) for n in names if isinstance(n, str)]
    if checks and None not in checks and not any(check(value) for check in checks):
        return False
    items, properties = schema.get("items"), schema.get("properties")
    if isinstance(value, list | tuple) and isinstance(items, Mapping):
        return all(type_matches(v, items) for v in value)
    if isinstance(value, Mapping) and isinstance(properties, Mapping):
        return all(
            type_matches(v, properties[k]) for k, v in value.items() if isinstance(properties.get(k), Mapping)
        )
    return True


def check_call(
    name: str, arguments: Mapping[str, Any], expected: ExpectedCall, parameters: Mapping[str, Any] | None
) -> tuple[tuple[str, str], ...]:
    """The defects of one made call against one expected call (rules 1-5); empty when it matches."""
    if name != expected.name:
        return (("wrong_function", name),)
    properties = (parameters or {}).get("properties") or {}
    required = set((parameters or {}).get("required") or ())
    defects = []
    for arg, options in expected.arguments.items():
        if arg not in arguments:
            if arg in required or not any(_is_omit(o) for o in options):
                defects.append(("missing_arg", arg))
            continue
        value, values = arguments[arg], [o for o in options if not _is_omit(o)]
        arg_schema = properties.get(arg) if isinstance(properties, Mapping) else None
        if isinstance(arg_schema, Mapping) and not type_matches(value, arg_schema):
            defects.append(("wrong_type", arg))
        elif not any(value_matches(value, o) for o in values):
            kinds = {_kind(o) for o in values}
            defects.append(("wrong_type" if kinds and _kind(value) not in kinds else "wrong_value", arg))
    defects += [("unknown_arg", str(arg)) for arg in arguments if arg not in expected.arguments]
    return tuple(defects)


def _is_omit(option: Any) -> bool:
    return isinstance(option, str) and option == OMIT


def _kind(value: Any) -> str:
    """The JSON kind of a value: ``boolean`` before ``number`` (a bool is an int in Python)."""
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, list | tuple):
        return "array"
    if isinstance(value, Mapping):
        return "object"
    return "null" if value is None else type(value).__name__


# ---- many calls ------------------------------------------------------------------------------------
def check_calls(
    calls: Sequence[tuple[str, Mapping[str, Any]]],
    expected: Sequence[ExpectedCall] | Any,
    functions: Mapping[str, Mapping[str, Any]] | Any = None,
) -> FunctionCallVerdict:
    """Pair the made ``(name, arguments)`` calls with the expected calls and check each pair.

    ``expected`` is a ``parse_expected`` result or its raw list; ``functions`` a ``parse_functions``
    result or its raw list of schemas. Raises ValueError for malformed expected calls or schemas (task
    data), never for what the model made.
    """
    if not (isinstance(expected, tuple) and all(isinstance(e, ExpectedCall) for e in expected)):
        expected = parse_expected(expected)
    if not isinstance(functions, Mapping):
        functions = parse_functions(functions)
    for call in expected:
        schema = functions.get(call.name)
        unlisted = sorted(set((schema or {}).get("required") or ()) - set(call.arguments))
        if unlisted:
            raise ValueError(f"expected call {call.name!r} leaves out required argument(s) {unlisted}")
    defects = [
        [check_call(name, args, want, functions.get(want.name)) for name, args in calls] for want in expected
    ]  # defects[i][j]: made call j against expected call i
    # Exact matches dominate (a weight above any sum of tie-breaks), then same-name pairs are preferred.
    weight = 2 * min(len(expected), len(calls)) + 1
    cost = [
        [0 if not d else weight + (2 if d[0][0] == "wrong_function" else 1) for d in row] for row in defects
    ]
    checks = tuple(CallCheck(i, j, defects[i][j]) for i, j in enumerate(assign(cost)) if j >= 0)
    return FunctionCallVerdict(checks, len(expected), len(calls))


def assign(cost: Sequence[Sequence[float]]) -> list[int]:
    """A minimum-cost assignment of rows to columns: ``result[row]`` is its column, or -1 when there are
    more rows than columns and the row is left out. The Hungarian method with potentials, O(n^2 m)."""
    n = len(cost)
    m = len(cost[0]) if n else 0
    if n == 0 or m == 0:
        return [-1] * n
    if n > m:  # the method wants rows <= columns: solve the transpose
        by_column = assign([[cost[i][j] for i in range(n)] for j in range(m)])
        result = [-1] * n
        for j, i in enumerate(by_column):
            result[i] = j
        return result
    inf = float("inf")
    u, v = [0.0] * (n + 1), [0.0] * (m + 1)  # row and column potentials
    owner = [0] * (m + 1)  # owner[j]: the row (1-based) holding column j; column 0 is a sentinel
    for row in range(1, n + 1):
        owner[0], j0 = row, 0
        slack, previous, used = [inf] * (m + 1), [0] * (m + 1), [False] * (m + 1)
        while owner[j0] != 0:  # grow a tree of tight edges until it reaches a free column
            used[j0] = True
            i0, delta, j1 = owner[j0], inf, 0
            for j in range(1, m + 1):
                if not used[j]:
                    reduced = cost[i0 - 1][j - 1] - u[i0] - v[j]
                    if reduced < slack[j]:
                        slack[j], previous[j] = reduced, j0
                    if slack[j] < delta:
                        delta, j1 = slack[j], j
            for j in range(m + 1):
                if used[j]:
                    u[owner[j]] += delta
                    v[j] -= delta
                else:
                    slack[j] -= delta
            j0 = j1
        while j0:  # flip the augmenting path back to the root
            j1 = previous[j0]
            owner[j0] = owner[j1]
            j0 = j1
    result = [-1] * n
    for j in range(1, m + 1):
        if owner[j]:
            result[owner[j] - 1] = j - 1
    return result
