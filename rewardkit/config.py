"""Dataclass configs, written once: the dataclass and the docstrings under its fields are the source.

A config is a (frozen) dataclass whose every field carries an attribute docstring, the string literal on
the line after it::

    @dataclass(frozen=True)
    class RunConfig:
        backend: Literal["hf", "vllm"] = "hf"
        \"\"\"Generation back end.\"\"\"

From that one definition this module derives what used to be written by hand next to it:

- ``build(RunConfig, mapping, where="run config")`` reads YAML/JSON data: unknown keys are refused with a
  did-you-mean, values are checked against the annotations (``Literal`` choices, int/float/bool/str,
  ``X | None``), lists become tuples, nested dataclasses are built from mappings;
- every bad value is reported the same way, key first: ``run config: backend: got 'vlm', expected one of
  'hf', 'vllm' (did you mean 'vllm'?)`` (``bad_value``); ``check_ranges`` states numeric ranges in
  ``__post_init__`` (``{"lr": "> 0", "top_p": "(0, 1]"}``) with the same message;
- ``describe(RunConfig)`` is the text of a ``--help-config``: every field, its type, default and docstring;
- ``add_arguments(group, RunConfig)`` makes argparse flags with the docstrings as help, and
  ``values_from_args(namespace, RunConfig)`` reads back the flags that were given.

Standard library and PyYAML, nothing of rewardkit: every layer may use it.
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import difflib
import functools
import inspect
import re
import textwrap
import types
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Literal, Union, get_args, get_origin, get_type_hints

import yaml

__all__ = [
    "ConfigError",
    "add_arguments",
    "bad_value",
    "build",
    "check_choices",
    "check_ranges",
    "describe",
    "field_docs",
    "in_range",
    "indent_doc",
    "load_yaml",
    "parse_overrides",
    "suggest",
    "values_from_args",
]


class ConfigError(ValueError):
    """A config key or value the dataclass does not accept; the message names the key and what is allowed.

    An error about one value (made by :func:`bad_value`) also carries ``key`` and ``detail`` (the text
    after ``KEY: ``), so a caller that knows better where the value came from can re-address it with
    :meth:`at` (``algo.clip_eps_low`` in the train config rather than ``clip_eps_low`` in AlgorithmConfig).
    """

    def __init__(self, message: str, *, key: str | None = None, detail: str | None = None) -> None:
        super().__init__(message)
        self.key = key
        self.detail = detail

    def at(self, where: str, prefix: str = "") -> ConfigError:
        """This error as seen from ``where``, its key under ``prefix``; an error about no one key as it is."""
        if self.key is None or self.detail is None:
            return self
        key = prefix + self.key
        return ConfigError(f"{where}: {key}: {self.detail}", key=key, detail=self.detail)


def bad_value(where: str, key: str, value: Any, expected: str, hint: str = "") -> ConfigError:
    """The one message for a value that ``key`` does not take: ``WHERE: KEY: got VALUE, expected EXPECTED``.

    ``hint`` follows as written (``suggest(...)``'s did-you-mean, or ``"; use ..."``).
    """
    detail = f"got {value!r}, expected {expected}{hint}"
    return ConfigError(f"{where}: {key}: {detail}", key=key, detail=detail)


# ---- docstrings -----------------------------------------------------------------------------------------
def field_docs(cls: type) -> dict[str, str]:
    """``{field name: attribute docstring}`` of a class and its bases (a subclass's docstring wins).

    The docstring of a field is the string literal statement right after its annotated assignment; it
    is read from the class source with ``ast`` (cached per class) and cleaned with ``inspect.cleandoc``.
    Fields without one are absent; a class without source (built at run time) gives ``{}``.
    """
    docs: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if klass is not object:
            docs.update(_own_field_docs(klass))
    return docs


@functools.cache
def _own_field_docs(cls: type) -> dict[str, str]:
    try:
        source = inspect.getsource(cls)
    except (OSError, TypeError):
        return {}
    # A nested class's source is indented; "if 1:" lets it parse even where a multi-line string's
    # continuation lines are less indented than the class (textwrap.dedent would not help there).
    tree = ast.parse("if 1:\n" + source if source[:1].isspace() else source)
    node = next((n for n in ast.walk(tree) if isinstance(n, ast.ClassDef) and n.name == cls.__name__), None)
    docs: dict[str, str] = {}
    body = node.body if node is not None else []
    for stmt, after in zip(body, body[1:]):
        if (
            isinstance(stmt, ast.AnnAssign)
            and isinstance(stmt.target, ast.Name)
            and isinstance(after, ast.Expr)
            and isinstance(after.value, ast.Constant)
            and isinstance(after.value.value, str)
        ):
            docs[stmt.target.id] = inspect.cleandoc(after.value.value)
    return docs


# ---- building from data ---------------------------------------------------------------------------------
def suggest(word: object, options: Iterable[str], prefix: str = "") -> str:
    """`` (did you mean 'x'?)`` for the closest of ``options`` (difflib), or ``""``; ``prefix`` goes before
    the suggestion, not into the comparison (``algo.`` shared by every key would make all look close)."""
    close = difflib.get_close_matches(str(word), [str(o) for o in options], n=1, cutoff=0.6)
    return f" (did you mean {prefix + close[0]!r}?)" if close else ""


def build(cls: type, data: Mapping[str, Any], *, where: str, prefix: str = "") -> Any:
    """``cls(**data)`` for a dataclass ``cls``, with every key and value checked against its fields.

    ``where`` names the config in messages ("train config", "math environment"). Unknown and missing
    keys raise :class:`ConfigError` naming each key, the allowed keys and a did-you-mean. Values must
    match the field's annotation: one of a ``Literal``'s values; an int, float (an int is accepted; read
    YAML with ``load_yaml`` so that ``1e-5`` is a float, not YAML 1.1's string), bool or str; None only
    for ``X | None``. For ``tuple[...]`` fields lists become tuples (a single value
    for ``tuple[X, ...]`` becomes a one-element tuple) and each element is checked; ``dict``/``Mapping``
    fields need a mapping, whose contents pass through; dataclass fields are built from a mapping,
    recursively; ``Any`` and other annotations pass through. ``cls.__post_init__`` may check more; a
    :class:`ConfigError` it raises about one key is re-addressed to ``where`` and ``prefix``.
    ``prefix`` (``"algo."``) is put before every key named in messages: the fields of ``cls`` are the
    keys of a mapping nested under that name.
    """
    return _build(cls, data, where, prefix)


def _build(cls: type, data: Any, where: str, prefix: str) -> Any:
    if not isinstance(data, Mapping):
        expected = f"a mapping of {cls.__name__} fields"
        if prefix:
            raise bad_value(where, prefix[:-1], data, expected)
        raise ConfigError(f"{where}: got {data!r}, expected {expected}")
    known = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = [key for key in data if key not in known]
    if unknown:
        bad = ", ".join(f"{prefix + str(key)!r}{suggest(key, known, prefix)}" for key in unknown)
        raise ConfigError(
            f"{where}: unknown key{'s' if len(unknown) > 1 else ''} {bad}; "
            f"allowed keys{' of ' + prefix[:-1] if prefix else ''}: {', '.join(known)}"
        )
    missing = [name for name, f in known.items() if name not in data and _required(f)]
    if missing:
        raise ConfigError(f"{where}: missing required key(s) {', '.join(prefix + m for m in missing)}")
    hints = _hints(cls)
    values = {key: _convert(value, hints[key], prefix + key, where) for key, value in data.items()}
    try:
        return cls(**values)
    except ConfigError as exc:  # a __post_init__ check: name the key as this caller sees it
        raise exc.at(where, prefix) from None


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    """The resolved annotation of each field; one that cannot be resolved (a name imported only under
    TYPE_CHECKING) is ``Any``, so it passes through unchecked."""
    try:
        return get_type_hints(cls)
    except (NameError, TypeError):
        pass
    namespace = vars(inspect.getmodule(cls) or object)
    hints: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        try:
            hints[f.name] = eval(f.type, dict(namespace)) if isinstance(f.type, str) else f.type  # noqa: S307
        except Exception:
            hints[f.name] = Any
    return hints


class _YamlLoader(yaml.SafeLoader):
    """PyYAML's safe loader, except that ``1e-5`` is a float (YAML 1.2) and not the string YAML 1.1 makes of it."""


_YamlLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float", re.compile(r"^[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+$"), list("-+0123456789.")
)


def load_yaml(text: str) -> Any:
    """Parse config YAML (files, ``--set`` values): safe, with ``lr: 1e-5`` read as the float it means."""
    return yaml.load(text, Loader=_YamlLoader)  # noqa: S506 - a SafeLoader subclass


def parse_overrides(pairs: Sequence[str]) -> dict[str, Any]:
    """``["a=1", "b.c=x"]`` -> ``{"a": 1, "b": {"c": "x"}}``: ``--set`` values, parsed as YAML scalars."""
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ConfigError(f"expected KEY=VALUE, got {pair!r}")
        node = out
        *parents, leaf = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = load_yaml(value) if value else ""
    return out


def _convert(value: Any, tp: Any, key: str, where: str) -> Any:
    """``value`` checked against (and converted to) the annotation ``tp``; ConfigError naming ``key``."""
    origin = get_origin(tp)
    if tp is Any:
        return value
    if origin in (Union, types.UnionType):
        return _convert_union(value, tp, key, where)
    if origin is Literal:
        if any(value == choice and type(value) is type(choice) for choice in get_args(tp)):
            return value
        raise bad_value(where, key, value, _expected(tp), suggest(value, map(str, get_args(tp))))
    if tp is tuple or origin is tuple:
        return _convert_tuple(value, tp, key, where)
    if tp in (dict, Mapping) or origin in (dict, Mapping):
        if isinstance(value, Mapping):
            return value
    elif isinstance(tp, type) and dataclasses.is_dataclass(tp):
        return value if isinstance(value, tp) else _build(tp, value, where, key + ".")
    elif tp in (int, float, bool, str):
        if _scalar_ok(value, tp):
            return float(value) if tp is float else value
    else:
        return value  # an annotation this module does not check (list[...], a Protocol, ...)
    raise bad_value(where, key, value, _expected(tp))


def _scalar_ok(value: Any, tp: type) -> bool:
    if tp is float:
        numeric = isinstance(value, (int, float)) and not isinstance(value, bool)
        return numeric
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, tp)


def _convert_union(value: Any, tp: Any, key: str, where: str) -> Any:
    options = [a for a in get_args(tp) if a is not type(None)]
    if value is None and len(options) < len(get_args(tp)):
        return None
    if (
        len(options) == 1
        and options[0] not in (int, float, bool, str)
        and get_origin(options[0]) is not Literal
    ):
        return _convert(value, options[0], key, where)  # a tuple's or nested config's own message is best
    for option in options:
        try:
            return _convert(value, option, key, where)
        except ConfigError:
            pass
    choices = [str(c) for o in options if get_origin(o) is Literal for c in get_args(o)]
    raise bad_value(where, key, value, _expected(tp), suggest(value, choices))


def _convert_tuple(value: Any, tp: Any, key: str, where: str) -> tuple[Any, ...]:
    args = get_args(tp)
    variadic = len(args) == 2 and args[1] is Ellipsis
    if not isinstance(value, (list, tuple)):
        if not variadic or isinstance(value, Mapping):
            raise bad_value(where, key, value, _expected(tp))
        value = [value]
    if not args:
        return tuple(value)
    if not variadic and len(value) != len(args):
        raise bad_value(where, key, value, _expected(tp))
    kinds = [args[0]] * len(value) if variadic else list(args)
    return tuple(_convert(v, t, f"{key}[{i}]", where) for i, (v, t) in enumerate(zip(value, kinds)))


def check_choices(obj: Any, *, where: str) -> None:
    """Raise ConfigError where a ``Literal`` field of the dataclass instance ``obj`` holds another value.

    For ``__post_init__``: a config constructed directly (not through :func:`build`) still gets its
    choices checked, with the same message.
    """
    hints = _hints(type(obj))
    for f in dataclasses.fields(obj):
        if _has_literal(hints[f.name]):
            _convert(getattr(obj, f.name), hints[f.name], f.name, where)


def _has_literal(tp: Any) -> bool:
    return get_origin(tp) is Literal or any(_has_literal(a) for a in get_args(tp) if a is not Ellipsis)


_ARTICLES = {int: "an int", float: "a float", bool: "a bool (true or false)", str: "a string"}


def _expected(tp: Any) -> str:
    """What a value of ``tp`` is, for messages: ``one of 'hf', 'vllm'``, ``an int or None``."""
    args = get_args(tp)
    if get_origin(tp) is Literal:
        return "one of " + ", ".join(repr(a) for a in args)
    if get_origin(tp) in (Union, types.UnionType):
        return " or ".join(_expected(a) for a in args)
    if tp is tuple or get_origin(tp) is tuple:
        if args and not (len(args) == 2 and args[1] is Ellipsis):
            return f"a list of {len(args)} items ({_type_text(tp)})"
        return f"a list ({_type_text(tp)})"
    if tp in (dict, Mapping) or get_origin(tp) in (dict, Mapping):
        return "a mapping"
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        return f"a mapping of {tp.__name__} fields"
    return _ARTICLES.get(tp, _type_text(tp))


# ---- ranges ---------------------------------------------------------------------------------------------
_RULE = re.compile(r"^(?:(>=|>|<=|<) *(\S+)|([\[(]) *([^,]+?) *, *([^,]+?) *([\])]))$")
_COMPARE: dict[str, Callable[[Any, float], bool]] = {
    ">=": lambda x, b: x >= b,
    ">": lambda x, b: x > b,
    "<=": lambda x, b: x <= b,
    "<": lambda x, b: x < b,
}


def in_range(value: Any, rule: str) -> bool:
    """Whether the number ``value`` satisfies ``rule``: ``">= 1"``, ``"> 0"``, or an interval ``"(0, 1]"``
    (``inf`` is a bound too). A value that is no number never does."""
    match = _RULE.match(rule)
    if match is None:
        raise ValueError(f"not a range rule: {rule!r} (write '>= 1', '> 0' or '[0, 1)')")
    op, bound, left, low, high, right = match.groups()
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    if op is not None:
        return _COMPARE[op](value, float(bound))
    return _COMPARE[">=" if left == "[" else ">"](value, float(low)) and _COMPARE[
        "<=" if right == "]" else "<"
    ](value, float(high))


def check_ranges(obj: Any, rules: Mapping[str, str], *, where: str) -> None:
    """For ``__post_init__``: raise :func:`bad_value` for the first field of ``obj`` outside its rule.

    ``rules`` maps field names to :func:`in_range` rules, ``{"lr": "> 0", "top_p": "(0, 1]"}``; a field
    holding None passes (``X | None``: None is checked by the annotation, not here).
    """
    for key, rule in rules.items():
        value = getattr(obj, key)
        if value is not None and not in_range(value, rule):
            raise bad_value(where, key, value, rule if rule[0] in "<>" else f"a value in {rule}")


def _type_text(tp: Any) -> str:
    """An annotation as a reader writes it: ``int | None``, ``'hf' | 'vllm'``, ``tuple[str, ...]``."""
    origin = get_origin(tp)
    if tp is type(None):
        return "None"
    if tp is Any:
        return "Any"
    if origin is Literal:
        return " | ".join(repr(a) for a in get_args(tp))
    if origin in (Union, types.UnionType):
        return " | ".join(_type_text(a) for a in get_args(tp))
    if origin is not None:
        args = ", ".join("..." if a is Ellipsis else _type_text(a) for a in get_args(tp))
        name = getattr(origin, "__name__", str(origin))
        return f"{name}[{args}]" if args else name
    if isinstance(tp, type):
        return tp.__name__
    return str(tp).replace("typing.", "")


# ---- --help-config --------------------------------------------------------------------------------------
def _required(f: dataclasses.Field[Any]) -> bool:
    return f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING  # type: ignore[misc]


def _default(f: dataclasses.Field[Any]) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
        return f.default_factory()  # type: ignore[misc]
    return dataclasses.MISSING


def describe(
    cls: type,
    *,
    prefix: str = "",
    width: int = 110,
    only: Iterable[str] | None = None,
    docs: Mapping[str, str] | None = None,
) -> str:
    """Every field of the dataclass ``cls``: ``name: type = default`` and its whole docstring below it.

    ``prefix`` is put before each name (``algo.`` for the fields of a nested mapping). Docstrings are
    indented by four spaces; their line breaks are kept, and a line longer than ``width`` is wrapped.
    ``only`` lists the fields to show (default: all, in field order) and ``docs`` replaces the field
    docstrings, for a class that is not ours (peft's LoraConfig keeps its help in field metadata).
    """
    docs, hints = (field_docs(cls) if docs is None else docs), _hints(cls)
    shown = set(only) if only is not None else None
    blocks = []
    for f in dataclasses.fields(cls):
        if shown is not None and f.name not in shown:
            continue
        default = _default(f)
        head = f"{prefix}{f.name}: {_type_text(hints[f.name])}"
        if default is dataclasses.MISSING:
            head += " (required)"
        elif dataclasses.is_dataclass(default) and len(f"{head} = {default!r}") > width:
            head += f" = each {prefix}{f.name}.* key's default"  # a nested config too long for one line
        else:
            head += f" = {default!r}"
        doc = docs.get(f.name, "")
        blocks.append(head + ("\n" + indent_doc(doc, width) if doc else ""))
    return "\n".join(blocks)


def indent_doc(doc: str, width: int = 110, indent: str = "    ") -> str:
    """``doc`` indented for a ``--help-config`` listing: line breaks kept, lines past ``width`` wrapped."""
    lines = []
    for line in doc.splitlines() or [""]:
        lead = indent + line[: len(line) - len(line.lstrip())]
        wrapped = textwrap.wrap(
            line.strip(), width, initial_indent=lead, subsequent_indent=lead, break_long_words=False
        )
        lines += wrapped or [""]
    return "\n".join(lines)


# ---- argparse -------------------------------------------------------------------------------------------
def add_arguments(
    group: Any,
    cls: type,
    *,
    only: Sequence[str] | None = None,
    skip: Sequence[str] = (),
    flag_names: Mapping[str, str | Sequence[str]] | None = None,
) -> list[str]:
    """Add one flag per field of the dataclass ``cls`` to ``group`` (a parser or an argument group).

    A field ``max_batch_size`` becomes ``--max-batch-size`` (``flag_names`` maps a field to other
    spellings), with ``dest`` the field name and its docstring and default as help. ``Literal`` fields
    get ``choices``; bools ``--x/--no-x``; ``tuple[int, ...]`` a comma-separated list (``1,2,4``);
    ``X | None`` the flag of ``X``. The default is ``argparse.SUPPRESS``, so a flag that is not given
    leaves no attribute and :func:`values_from_args` returns only those given. Fields in ``only``
    (default: all, in field order) and not in ``skip``; a field with no flag form (a dict) raises
    TypeError unless skipped. Returns the field names added.
    """
    fields = {f.name: f for f in dataclasses.fields(cls)}
    names = list(only) if only is not None else list(fields)
    flag_names = dict(flag_names or {})
    strays = sorted({*names, *skip, *flag_names} - set(fields))
    if strays:
        raise ValueError(f"{cls.__name__} has no field(s) {strays}")
    docs, hints = field_docs(cls), _hints(cls)
    added = []
    for name in names:
        if name in skip:
            continue
        given = flag_names.get(name, "--" + name.replace("_", "-"))
        flags = [given] if isinstance(given, str) else list(given)
        kind = _argparse_kind(hints[name], f"{cls.__name__}.{name}")
        if "type" in kind and "choices" not in kind:  # NAME from the flag, not the field: --max-new-tokens N
            kind.setdefault("metavar", flags[-1].lstrip("-").replace("-", "_").upper())
        help_text = _help(docs.get(name, ""), _default(fields[name]))
        group.add_argument(
            *flags,
            dest=name,
            default=argparse.SUPPRESS,
            help=help_text,
            **kind,
        )
        added.append(name)
    return added


def _argparse_kind(tp: Any, what: str) -> dict[str, Any]:
    if get_origin(tp) in (Union, types.UnionType):
        options = [a for a in get_args(tp) if a is not type(None)]
        if len(options) == 1:
            tp = options[0]
    if tp is bool:
        return {"action": argparse.BooleanOptionalAction}
    if get_origin(tp) is Literal:
        choices = get_args(tp)
        return {"choices": choices, "type": type(choices[0])}
    if tp in (int, float, str):
        return {"type": tp}
    args = get_args(tp)
    if get_origin(tp) is tuple and args and all(a in (int, float, str, Ellipsis) for a in args):
        element = args[0]
        return {"type": _comma_list(element), "metavar": f"{element.__name__.upper()},..."}
    raise TypeError(f"{what}: {_type_text(tp)} has no command-line form; pass skip=[...] to leave it out")


def _comma_list(element: type) -> Callable[[str], tuple[Any, ...]]:
    def parse(text: str) -> tuple[Any, ...]:
        try:
            return tuple(element(part.strip()) for part in text.split(",") if part.strip())
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"expected comma-separated {element.__name__} values, e.g. 1,2,4; got {text!r}"
            ) from None

    parse.__name__ = f"comma-separated {element.__name__} list"
    return parse


def _help(doc: str, default: Any) -> str:
    text = " ".join(doc.replace("``", "").split())
    if default is not dataclasses.MISSING and default is not None:
        shown = ",".join(map(str, default)) if isinstance(default, tuple) else default
        text += f" (default: {shown})"
    return text.replace("%", "%%")  # argparse %-formats help strings


def values_from_args(namespace: argparse.Namespace, cls: type) -> dict[str, Any]:
    """``{field: value}`` for each field of ``cls`` that is set on ``namespace``: with the flags of
    :func:`add_arguments` (default SUPPRESS), the flags given on the command line."""
    return {f.name: getattr(namespace, f.name) for f in dataclasses.fields(cls) if hasattr(namespace, f.name)}
