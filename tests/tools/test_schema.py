"""Tool schemas derived from typed functions and their docstrings (OpenAI function-calling format)."""

from __future__ import annotations

from typing import Literal

import pytest

from rewardkit.tools import Tool, as_tool, tool, tool_schema
from rewardkit.tools.schema import parse_docstring


def convert(amount: float, unit: Literal["km", "mi"], digits: int = 2, note: str | None = None) -> str:
    """Convert a distance between kilometres and miles.

    Longer explanation that is not part of the description.

    Args:
        amount: the distance to convert; any
            non-negative number.
        unit (str): the unit ``amount`` is in.
        digits: decimal places of the result.
        note: free text, ignored.

    Returns:
        The converted distance as text.
    """
    return f"{amount}{unit}{digits}{note}"


def test_schema_has_openai_shape_types_descriptions_and_required():
    schema = tool_schema(convert)
    assert schema["type"] == "function"
    fn = schema["function"]
    assert fn["name"] == "convert"
    assert fn["description"] == "Convert a distance between kilometres and miles."
    params = fn["parameters"]
    assert params["type"] == "object" and params["required"] == ["amount", "unit"]
    props = params["properties"]
    assert props["amount"] == {
        "type": "number",
        "description": "the distance to convert; any non-negative number.",
    }
    assert props["unit"] == {
        "enum": ["km", "mi"],
        "type": "string",
        "description": "the unit ``amount`` is in.",
    }
    assert props["digits"]["type"] == "integer"
    assert props["note"]["anyOf"] == [{"type": "string"}, {"type": "null"}]


def test_containers_and_bool():
    def f(xs: list[int], flags: dict[str, bool], on: bool, pair: tuple[str, ...]) -> None:
        """Do f."""

    props = tool_schema(f)["function"]["parameters"]["properties"]
    assert props["xs"] == {"type": "array", "items": {"type": "integer"}}
    assert props["flags"] == {"type": "object"}
    assert props["on"] == {"type": "boolean"}
    assert props["pair"] == {"type": "array", "items": {"type": "string"}}


@pytest.mark.parametrize(
    "source, message",
    [
        ("def f(x: int):\n    pass", "needs a docstring"),
        ("def f(x):\n    'Doc.'", "needs a type annotation"),
        ("def f(*xs: int):\n    'Doc.'", r"\*args"),
        ("def f(x: set[int]):\n    'Doc.'", "cannot describe type"),
    ],
)
def test_undescribable_functions_fail_clearly(source, message):
    namespace: dict = {}
    exec(source, namespace)
    with pytest.raises((TypeError, ValueError), match=message):
        tool_schema(namespace["f"])


def test_tool_decorator_and_as_tool():
    @tool(name="km_to_mi", timeout_s=1.5)
    def k(x: float) -> float:
        """Kilometres to miles."""
        return x / 1.609

    assert isinstance(k, Tool) and k.name == "km_to_mi" and k.timeout_s == 1.5
    assert as_tool(k) is k
    assert as_tool(convert).schema == tool_schema(convert)
    with pytest.raises(TypeError):
        as_tool(42)
    with pytest.raises(ValueError, match="tool name"):
        tool_schema(convert, name="bad name!")


def test_docstring_description_is_first_paragraph_only():
    description, args = parse_docstring(
        "Line one\ncontinues.\n\nBody.\n\nArgs:\n    a: x\n        y\n    b: z\n"
    )
    assert description == "Line one continues."
    assert args == {"a": "x y", "b": "z"}
