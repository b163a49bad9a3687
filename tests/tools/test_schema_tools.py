"""Tools from hand-written schemas (``Tool.from_schema``, ``as_tool((schema, fn))``), checked when built."""

from __future__ import annotations

import pytest

from rewardkit.tools import Tool, ToolCall, ToolExecutor, as_tool, tool_schema


def get_weather(city, unit="celsius", days=1):
    return f"{city}:{unit}:{days}"


OPENAI = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather in a city.",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string", "description": "the city"},
                "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
                "days": {"type": "integer"},
            },
            "required": ["city"],
        },
    },
}

# The Berkeley function-calling style: bare form, Python type names.
BARE = {
    "name": "get_weather",
    "description": "Weather in a city.",
    "parameters": {
        "type": "dict",
        "properties": {
            "city": {"type": "str"},
            "unit": {"type": "string"},
            "days": {"type": "int"},
            "scale": {"type": "float"},
            "flags": {"type": "list", "items": {"type": "bool"}},
            "point": {"type": "tuple", "items": {"type": "float"}},
            "extra": {"type": "any"},
            "opts": {"type": "dict", "properties": {"deep": {"type": "float"}}},
        },
        "required": ["city"],
    },
}


def test_from_schema_accepts_the_openai_form_and_runs():
    t = Tool.from_schema(OPENAI, get_weather, timeout_s=2.0)
    assert t.name == "get_weather" and t.timeout_s == 2.0 and t.schema == OPENAI
    assert t.schema is not OPENAI  # a copy: later edits to the caller's dict cannot change the tool
    r = ToolExecutor([t]).run(ToolCall("get_weather", {"city": "Oslo", "days": 3}))
    assert r.ok and r.content == "Oslo:celsius:3"


def test_from_schema_accepts_the_bare_form_and_maps_python_type_names():
    t = Tool.from_schema(BARE, get_weather)
    assert t.schema["type"] == "function"
    params = t.parameters
    assert params["type"] == "object"
    props = params["properties"]
    assert props["city"] == {"type": "string"} and props["days"] == {"type": "integer"}
    assert props["scale"] == {"type": "number"}
    assert props["flags"] == {"type": "array", "items": {"type": "boolean"}}
    assert props["point"] == {"type": "array", "items": {"type": "number"}}
    assert props["extra"] == {}  # "any": no constraint
    assert props["opts"]["type"] == "object" and props["opts"]["properties"]["deep"] == {"type": "number"}
    assert BARE["parameters"]["type"] == "dict"  # the caller's schema is left as it was


def test_type_lists_are_mapped_member_by_member():
    schema = {"name": "f", "parameters": {"type": "object", "properties": {"x": {"type": ["int", "null"]}}}}
    t = Tool.from_schema(schema, get_weather)
    assert t.parameters["properties"]["x"] == {"type": ["integer", "null"]}


@pytest.mark.parametrize(
    "schema, message",
    [
        ({"name": "bad name!", "parameters": {"type": "object"}}, "tool name 'bad name!'"),
        ({"name": "f", "parameters": {"type": "array"}}, "'f'.*parameters must be an object schema"),
        ({"name": "f", "parameters": ["x"]}, "'f'.*parameters must be an object schema"),
        (
            {"name": "f", "parameters": {"type": "object", "properties": {"x": {"type": "HashMap"}}}},
            r"function 'f' parameter 'x'.*unknown type 'HashMap'",
        ),
        (
            {
                "name": "f",
                "parameters": {
                    "type": "object",
                    "properties": {"xs": {"type": "array", "items": {"type": "Point"}}},
                },
            },
            r"function 'f' parameter 'xs\[\]'.*unknown type 'Point'",
        ),
        (
            {"name": "f", "parameters": {"type": "object", "properties": {"x": {"type": 3}}}},
            r"function 'f' parameter 'x'.*unknown type 3",
        ),
        (
            {"name": "f", "parameters": {"type": "object", "properties": {"x": {"minimum": "low"}}}},
            "'f'.*not a valid JSON schema",
        ),
        (
            {"name": "f", "parameters": {"type": "object", "properties": {}, "required": ["y"]}},
            r"'f'.*requires \['y'\], which are not among its properties",
        ),
        ({"description": "no name"}, "needs a name"),
        ({"type": "function", "function": "f"}, "function"),
    ],
)
def test_bad_schemas_are_refused_at_construction(schema, message):
    with pytest.raises(ValueError, match=message):
        Tool.from_schema(schema, get_weather)


def test_from_schema_needs_a_callable():
    with pytest.raises(TypeError, match="callable"):
        Tool.from_schema(OPENAI, "get_weather")


def test_plain_tool_constructor_checks_its_schema_too():
    with pytest.raises(ValueError, match="tool name"):
        Tool("bad name!", get_weather, OPENAI)
    with pytest.raises(ValueError, match="'other' but its schema says 'get_weather'"):
        Tool("other", get_weather, OPENAI)
    dict_typed = {**BARE, "parameters": {"type": "object", "properties": {"x": {"type": "dict"}}}}
    with pytest.raises(ValueError, match="Tool.from_schema"):  # aliases are mapped only by from_schema
        Tool("get_weather", get_weather, {"type": "function", "function": dict_typed})
    with pytest.raises(ValueError, match="argument_policy"):
        Tool("get_weather", get_weather, OPENAI, argument_policy="lenient")


def test_as_tool_takes_a_schema_and_function_pair():
    t = as_tool((BARE, get_weather))
    assert isinstance(t, Tool) and t.name == "get_weather" and t.parameters["type"] == "object"
    assert ToolExecutor([(OPENAI, get_weather)]).run(ToolCall("get_weather", {"city": "Rome"})).ok
    with pytest.raises(TypeError, match=r"\(schema, fn\)"):
        as_tool(OPENAI)  # a schema alone has nothing to run
    with pytest.raises(TypeError, match=r"\(schema, fn\)"):
        as_tool((OPENAI, get_weather, 1))


def test_derived_schemas_round_trip_through_from_schema():
    def add(a: int, b: list[float] | None = None) -> int:
        """Add.

        Args:
            a: first.
            b: rest.
        """
        return a

    assert Tool.from_schema(tool_schema(add), add).schema == tool_schema(add)
