"""Reading tool calls from model text (Hermes/Qwen tags) and OpenAI messages; never raising."""

from __future__ import annotations

import json

import pytest

from rewardkit.tools import parse_tool_calls


def test_hermes_blocks_in_order_with_surrounding_text():
    text = (
        'Let me check.\n<tool_call>{"name": "a", "arguments": {"x": 1}}</tool_call>\n'
        '<tool_call>\n{"name": "b", "arguments": {}}\n</tool_call> done'
    )
    calls = parse_tool_calls(text)
    assert [(c.name, c.arguments, c.ok) for c in calls] == [("a", {"x": 1}, True), ("b", {}, True)]
    assert [c.id for c in calls] == ["call_0", "call_1"]


def test_unclosed_final_block_is_read_to_the_end():
    [c] = parse_tool_calls('<tool_call>{"name": "a", "arguments": {"q": "x"}}')
    assert c.ok and c.arguments == {"q": "x"}


def test_fenced_json_parameters_key_and_string_arguments_are_accepted():
    fenced = '<tool_call>```json\n{"name": "a", "parameters": {"x": 2}}\n```</tool_call>'
    assert parse_tool_calls(fenced)[0].arguments == {"x": 2}
    as_string = '<tool_call>{"name": "a", "arguments": "{\\"x\\": 3}"}</tool_call>'
    assert parse_tool_calls(as_string)[0].arguments == {"x": 3}


@pytest.mark.parametrize(
    "body, message",
    [
        ('{"name": "a", "arguments": {"x": }', "not valid JSON"),
        ("", "is empty"),
        ('["a"]', "not a JSON object"),
        ('{"arguments": {}}', "no tool name"),
        ('{"name": "a", "arguments": [1]}', "must be a JSON object"),
        ('{"name": "a", "arguments": "{oops"}', "not valid JSON"),
        ('{"name": "a"} trailing', "text after its JSON"),
    ],
)
def test_malformed_calls_become_errors_not_exceptions(body, message):
    [c] = parse_tool_calls(f"<tool_call>{body}</tool_call>")
    assert not c.ok and message in c.error


def test_no_call_gives_empty_list():
    assert parse_tool_calls("just an answer <answer>3</answer>") == []
    assert parse_tool_calls({"role": "assistant", "content": None}) == []


def test_openai_tool_calls_then_text_calls():
    message = {
        "role": "assistant",
        "content": '<tool_call>{"name": "c", "arguments": {}}</tool_call>',
        "tool_calls": [
            {"id": "x1", "type": "function", "function": {"name": "a", "arguments": json.dumps({"k": 1})}},
            {"id": "x2", "type": "function", "function": {"name": "b", "arguments": {"k": 2}}},
            {"id": "x3", "type": "function"},
            "garbage",
        ],
    }
    calls = parse_tool_calls(message)
    assert [(c.name, c.arguments, c.id) for c in calls[:2]] == [("a", {"k": 1}, "x1"), ("b", {"k": 2}, "x2")]
    assert not calls[2].ok and "no 'function'" in calls[2].error
    assert not calls[3].ok
    assert calls[4].name == "c" and calls[4].id == "call_4"
    assert not parse_tool_calls({"role": "assistant", "tool_calls": "nope"})[0].ok
