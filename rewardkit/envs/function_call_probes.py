"""Exploit probes of the ``function_call`` environment (issue 19; docs/hacking.md, section function_call).

Each probe attacks a realistic task (a weather lookup, a meeting booking) with calls that a naive
grader, one that finds a matching call somewhere in the text or takes the parser's first reading,
would accept. Every probe must score 0.0 in both modes.
"""

from __future__ import annotations

import json
from typing import Any

from rewardkit.envs.probes import Probe

WEATHER_SCHEMA = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather in a city.",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}, "unit": {"type": "string"}},
            "required": ["city"],
        },
    },
}
BOOK_SCHEMA = {
    "type": "function",
    "function": {
        "name": "book_meeting",
        "description": "Book a meeting room.",
        "parameters": {
            "type": "object",
            "properties": {"room": {"type": "string"}, "hours": {"type": "integer"}},
            "required": ["room", "hours"],
        },
    },
}
WEATHER = {
    "expected_calls": [{"get_weather": {"city": ["Paris", "Paris, France"], "unit": ["celsius", ""]}}],
    "functions": [WEATHER_SCHEMA, BOOK_SCHEMA],
}
"""'What is the weather in Paris, in Celsius?'"""
BOOK = {
    "expected_calls": [{"book_meeting": {"room": ["Orion"], "hours": [3]}}],
    "functions": [WEATHER_SCHEMA, BOOK_SCHEMA],
}
"""'Book the Orion room for three hours.'"""
NO_SCHEMA_BOOK = {"expected_calls": [{"book_meeting": {"room": ["Orion"], "hours": [3]}}]}
"""The same task without schemas: the type check then falls back to the kinds of the acceptable values."""


def hermes(name: str, arguments: Any) -> str:
    return f"<tool_call>{json.dumps({'name': name, 'arguments': arguments})}</tool_call>"


PARIS = hermes("get_weather", {"city": "Paris", "unit": "celsius"})
LONDON = hermes("get_weather", {"city": "London", "unit": "celsius"})
ORION = hermes("book_meeting", {"room": "Orion", "hours": 3})


def function_call_probes() -> list[Probe]:
    return [
        *_guessed_calls(),
        *_loose_types_and_names(),
        *_duplicate_keys(),
        *_hidden_or_unexpected_calls(),
    ]


def _probe(name: str, family: str, completion: Any, info: dict, why: str) -> Probe:
    return Probe(name, family, {"completion": completion, "info": info}, why)


def _guessed_calls() -> list[Probe]:
    """Guesses spread so a grader that looks for a match finds one: extra or duplicate calls, list values,
    calls in other messages or quoted in code."""
    return [
        _probe(
            "extra-call-alongside-right-one",
            "extra-calls",
            f"{LONDON}\n{PARIS}",
            WEATHER,
            "call the right function and a second guess: a grader that looks for a match finds one",
        ),
        _probe(
            "every-city-as-a-list",
            "list-valued-arguments",
            hermes("get_weather", {"city": ["Paris", "London", "Berlin"], "unit": "celsius"}),
            WEATHER,
            "pass every plausible value at once in a list, hoping membership is what is checked",
        ),
        _probe(
            "duplicate-call",
            "duplicate-calls",
            f"{PARIS}\n{PARIS}",
            WEATHER,
            "make the right call twice (a repeated side effect in a real API)",
        ),
        _probe(
            "call-in-earlier-message",
            "non-last-message",
            [
                {"role": "assistant", "content": LONDON},
                {"role": "assistant", "content": PARIS},
            ],
            WEATHER,
            "spread guesses over several assistant messages: only the last one was read",
        ),
        _probe(
            "call-in-code-block",
            "hidden-in-code-block",
            'I would call:\n```json\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n```',
            WEATHER,
            "write the call as a markdown example instead of making it",
        ),
    ]


def _loose_types_and_names() -> list[Probe]:
    """Arguments of a coercible type, a function the schema does not offer."""
    return [
        _probe(
            "string-for-integer",
            "coercible-types",
            hermes("book_meeting", {"room": "Orion", "hours": "3"}),
            BOOK,
            "'3' for the integer 3: a grader comparing str(value) accepts it",
        ),
        _probe(
            "string-for-integer-no-schema",
            "coercible-types",
            hermes("book_meeting", {"room": "Orion", "hours": "3"}),
            NO_SCHEMA_BOOK,
            "'3' for 3 where no schema declares the type",
        ),
        _probe(
            "float-for-integer",
            "coercible-types",
            hermes("book_meeting", {"room": "Orion", "hours": 3.0}),
            BOOK,
            "3.0 for an integer parameter: equal as numbers, not the declared type",
        ),
        _probe(
            "function-not-in-schema",
            "unknown-function",
            hermes("get_current_weather", {"city": "Paris", "unit": "celsius"}),
            WEATHER,
            "a plausible function name that the schema does not offer",
        ),
    ]


def _duplicate_keys() -> list[Probe]:
    """One call object holding two readings of itself."""
    return [
        _probe(
            "duplicate-json-keys",
            "duplicate-keys",
            '<tool_call>{"name": "get_weather", "arguments": {"city": "London", "city": "Paris"}}</tool_call>',
            WEATHER,
            "two values for one argument in one object: the parser silently keeps the last",
        ),
        _probe(
            "duplicate-name-key",
            "duplicate-keys",
            '<tool_call>{"name": "book_meeting", "name": "get_weather", "arguments": {"city": "Paris"}}'
            "</tool_call>",
            WEATHER,
            "two function names in one call object",
        ),
        _probe(
            "arguments-and-parameters",
            "duplicate-keys",
            '<tool_call>{"name": "get_weather", "arguments": {"city": "Paris"}, '
            '"parameters": {"city": "London"}}</tool_call>',
            WEATHER,
            "two argument sets under the two accepted keys: the grader reads one, an executor the other",
        ),
    ]


def _hidden_or_unexpected_calls() -> list[Probe]:
    """Calls only in the reasoning, look-alike function names, a call when none is expected."""
    return [
        _probe(
            "call-only-inside-think",
            "inside-think",
            f"<think>The user wants Paris. {PARIS}</think>\nI cannot help with that.",
            WEATHER,
            "a call written in the reasoning only: never made, since reasoning is not the answer",
        ),
        _probe(
            "think-open-call-only",
            "inside-think",
            f"<think>Maybe {PARIS} is what they want",
            WEATHER,
            "a call inside a reasoning block that never closes (the turn ran out)",
        ),
        _probe(
            "cyrillic-lookalike-name",
            "lookalike-name",
            hermes("get_we\u0430ther", {"city": "Paris", "unit": "celsius"}),
            WEATHER,
            "a function name with a Cyrillic 'a': equal to the eye, another function to the API",
        ),
        _probe(
            "zero-width-in-name",
            "lookalike-name",
            hermes("get_weather\u200b", {"city": "Paris"}),
            WEATHER,
            "a zero-width space at the end of the function name",
        ),
        _probe(
            "call-when-none-expected",
            "extra-calls",
            PARIS,
            {"expected_calls": [], "functions": [WEATHER_SCHEMA]},
            "call something when the request fits no function",
        ),
    ]
