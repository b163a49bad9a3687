"""The ``efficiency`` environment's exploit probes and the holes they found (docs/hacking.md, ``efficiency``)."""

from __future__ import annotations

import json

import pytest

from rewardkit import Score, check_env, load_env
from rewardkit.envs.probes import run_probes
from rewardkit.tools.parse import parse_tool_calls

L = 100
QUESTION = {"role": "user", "content": "What is the capital of France?"}
CALL = json.dumps({"name": "search", "arguments": {"query": "capital of France"}})
BLANKS = [
    "",
    " \n\t ",
    "\u200b\u200c\u200d\ufeff",
    "\u3164\u2800",
    "<answer></answer>",
    "<think></think><answer> </answer>",
    "&nbsp;&#8203;",
    "<!-- -->",
    "```\n```",
    "\u2026",
]


@pytest.mark.parametrize("blank", BLANKS)
def test_an_empty_answer_gets_the_worst_of_every_term(blank):
    with load_env("efficiency", max_length=L) as linear:
        score = linear.score(blank)
        assert (score.reward, score.metrics["empty"]) == (0.0, 1.0)
        assert linear.score("Paris").reward == pytest.approx(1 - 5 / L)  # the honest short answer
        assert linear.score("Paris").reward >= linear.pass_threshold
    with load_env("efficiency", max_length=L, length_penalty="soft_overlong") as soft:
        assert soft.score(blank).reward == -1.0
        assert soft.score("Paris").reward == 0.0
    with load_env("efficiency", length_penalty="none", max_ops=2) as ops:
        assert ops.score(blank).reward == 0.0
        assert ops.score("Paris").reward == 1.0


def test_an_episode_ending_without_an_answer_is_empty():
    with load_env("efficiency", max_length=L) as env:
        assert env.score([QUESTION, {"role": "assistant", "content": ""}]).reward == 0.0
        call = {"id": "a", "type": "function", "function": {"name": "search", "arguments": "{}"}}
        assert env.score([QUESTION, {"role": "assistant", "content": "", "tool_calls": [call]}]).reward == 0.0
        assert env.score([QUESTION, {"role": "assistant", "content": "Paris"}]).reward == pytest.approx(0.95)


def test_length_counts_every_assistant_turn():
    with load_env("efficiency", max_length=L) as env:
        turns = [QUESTION]
        for _ in range(11):  # 11 turns of 10 characters: each short, together over the budget
            turns += [{"role": "assistant", "content": "a" * 10}, {"role": "user", "content": "go on"}]
        turns.append({"role": "assistant", "content": "Paris"})
        assert env.score(turns).metrics["length"] == 115 and env.score(turns).reward == 0.0


def test_length_counts_tool_call_arguments():
    essay = "The capital of France is Paris. " * 5  # 160 characters, over the budget
    call = {"id": "a", "type": "function", "function": {"name": "final_answer", "arguments": essay}}
    moved = [
        QUESTION,
        {"role": "assistant", "content": "", "tool_calls": [call]},
        {"role": "tool", "content": "noted"},
        {"role": "assistant", "content": "Paris"},
    ]
    as_dict = [
        moved[0],
        {**moved[1], "tool_calls": [{**call, "function": {"name": "f", "arguments": {"t": essay}}}]},
    ]
    with load_env("efficiency", max_length=L) as env:
        score = env.score(moved)
        assert score.metrics["length"] == len("final_answer") + len(essay) + len("Paris")
        assert score.reward == 0.0  # was 0.95: only "Paris" was counted
        assert env.score(as_dict + moved[2:]).reward == 0.0
        written_out = [
            QUESTION,
            {"role": "assistant", "content": essay},
            {"role": "assistant", "content": "Paris"},
        ]
        assert env.score(written_out).reward == 0.0  # the same as writing it in the text
        short = {**call, "function": {"name": "f", "arguments": "{}"}}
        small = [QUESTION, {"role": "assistant", "content": "", "tool_calls": [short]}, moved[3]]
        assert env.score(small).metrics["length"] == len("f{}Paris")


@pytest.mark.parametrize(
    ("completion", "calls"),
    [
        (f"<tool_call>{CALL}", 1),  # the sampler stopped on </tool_call>: the parser still reads it
        (f"<tool_call>{CALL}</tool_call>\n<tool_call>{CALL}", 2),
        (
            [
                QUESTION,
                {"role": "assistant", "content": f"<tool_call>{CALL}"},
                {"role": "assistant", "content": "x"},
            ],
            1,
        ),
    ],
)
def test_an_unclosed_final_call_is_an_operation(completion, calls):
    executed = (
        len(parse_tool_calls(completion))
        if isinstance(completion, str)
        else sum(len(parse_tool_calls(m)) for m in completion if m["role"] == "assistant")
    )
    assert executed == calls  # what a tool environment runs...
    with load_env("efficiency", length_penalty="none", max_ops=4) as env:
        score = env.score(completion)
        assert score.metrics["ops"] == calls  # ... is what is counted
        assert score.reward == pytest.approx(1 - calls / 4)
        closed = f"<tool_call>{CALL}</tool_call> Paris"
        assert env.score(closed).metrics["ops"] == 1 and env.score("Paris").reward == 1.0


def test_forms_the_parser_does_not_execute_are_no_operation():
    with load_env("efficiency", length_penalty="none", max_ops=4) as env:
        for text in (f"<TOOL_CALL>{CALL}</TOOL_CALL>", f"<tool_call >{CALL}</tool_call >"):
            assert parse_tool_calls(text) == [] and env.score(text).metrics["ops"] == 0


def test_op_pattern_sees_through_zero_width_and_fullwidth_letters():
    with load_env("efficiency", length_penalty="none", max_ops=2, op_pattern=r"\bwait\b") as env:
        assert env.score("w\u200bait, let me check").metrics["ops"] == 1
        assert env.score("\uff57\uff41\uff49\uff54, let me check").metrics["ops"] == 1  # fullwidth "wait"
        assert env.score("let me check").metrics["ops"] == 0


@pytest.mark.parametrize(
    "config",
    [
        {},
        {"length_penalty": "soft_overlong", "max_length": 64},
        {"length_penalty": "none", "max_ops": 3},
        {"max_length": 50, "max_ops": 2},
        {"max_length": 50, "max_ops": 2, "op_pattern": "!"},
    ],
)
def test_check_env_runs_the_probes(config):
    with load_env("efficiency", **config) as env:
        assert check_env(env)["probes"] >= 10
        families = {p.family for p in env.exploit_probes()}
        assert "empty-answer" in families
        assert ("hidden-length" in families) == (env.config.length_penalty != "none")
        assert ("split-turns" in families) == (env.config.length_penalty != "none")
        assert ("hidden-ops" in families) == (
            config.get("max_ops") is not None and "op_pattern" not in config
        )
        assert all(r.within_bound for r in run_probes(env))


def test_check_env_with_a_tokenizer(tokenizer_json):
    with load_env("efficiency", max_length=L, tokenizer=tokenizer_json, workers=1) as env:
        assert check_env(env)["probes"] >= 10


def test_exploit_signals():
    with load_env("efficiency") as env:
        clean = env.exploit_signals(["Paris", [QUESTION, {"role": "assistant", "content": "Paris"}]])
        assert clean and all(rate == 0.0 for rate in clean.values())
        signals = env.exploit_signals(
            ["", "Paris\u200b\u200b\u200b", f"<tool_call>{CALL}", "<answer></answer>"]
        )
        assert signals["blank-answer"] == 0.5  # "" and "<answer></answer>"
        assert signals["invisible-padding"] == 0.25
        assert signals["unclosed-tool-call"] == 0.25
        assert signals["empty-answer-tags"] == 0.25


def test_suspicious():
    with load_env("efficiency") as env:
        passed = Score.ok(1.0)  # the old verdict on an empty answer
        for blank in ("", "\u200b", "<answer></answer>", "\u3164"):
            assert "empty" in env.suspicious({"completion": blank}, passed)
        assert "empty" in env.suspicious(
            {"completion": [QUESTION, {"role": "assistant", "content": " "}]}, passed
        )
        for honest in ("Paris", "42", "+", [QUESTION, {"role": "assistant", "content": "Paris"}]):
            assert env.suspicious({"completion": honest}, env.score(honest)) is None
