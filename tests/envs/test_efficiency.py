"""The ``efficiency`` environment: linear length budget, DAPO soft overlong penalty, operation counts."""

from __future__ import annotations

import pytest

from rewardkit import check_env, load_env
from rewardkit.verifiers.efficiency import linear_budget, soft_overlong_penalty

L, B = 100, 20  # max length and overlong buffer used throughout


def test_linear_budget_formula():
    assert [linear_budget(n, 10) for n in (0, 1, 5, 10, 11, 1000)] == [1.0, 0.9, 0.5, 0.0, 0.0, 0.0]
    with pytest.raises(ValueError):
        linear_budget(1, 0)


@pytest.mark.parametrize(
    ("n", "expected"),
    [
        (0, 0.0),
        (L - B, 0.0),  # last length without penalty
        (L - B + 1, -1 / B),  # first penalised length
        (L - B // 2, -0.5),
        (L, -1.0),  # the formula reaches -1 exactly at L
        (L + 1, -1.0),  # beyond L: flat -1
        (10 * L, -1.0),
    ],
)
def test_soft_overlong_penalty_at_the_boundaries(n, expected):
    assert soft_overlong_penalty(n, L, B) == pytest.approx(expected)


def test_soft_overlong_penalty_is_monotone_and_continuous_at_the_threshold():
    values = [soft_overlong_penalty(n, L, B) for n in range(L + 5)]
    assert all(a >= b for a, b in zip(values, values[1:]))
    assert values[L - B] - values[L - B + 1] == pytest.approx(1 / B)


@pytest.mark.parametrize(("buffer", "max_len"), [(0, 10), (11, 10), (-1, 10)])
def test_soft_overlong_penalty_rejects_bad_buffers(buffer, max_len):
    with pytest.raises(ValueError):
        soft_overlong_penalty(1, max_len, buffer)


@pytest.fixture(scope="module")
def soft():
    with load_env("efficiency", max_length=L, length_penalty="soft_overlong", overlong_buffer=B) as env:
        yield env


@pytest.mark.parametrize("n", [L - B, L - B + 1, L, L + 1])
def test_soft_overlong_env_counts_characters(soft, n):
    score = soft.score("a" * n)
    assert score.reward == pytest.approx(soft_overlong_penalty(n, L, B))
    assert score.metrics["length"] == n and score.metrics["length_term"] == score.reward


def test_soft_overlong_default_buffer_is_a_quarter():
    with load_env("efficiency", max_length=40, length_penalty="soft_overlong") as env:
        assert env.config.buffer == 10
        assert env.score("a" * 31).reward == pytest.approx(-0.1)


# n = 0 is the empty answer: no answer, no reward (tests/envs/test_efficiency_probes.py)
@pytest.mark.parametrize(("n", "expected"), [(0, 0.0), (1, 0.99), (25, 0.75), (L, 0.0), (L + 1, 0.0)])
def test_linear_length_env(n, expected):
    with load_env("efficiency", max_length=L) as env:
        assert env.score("b" * n).reward == pytest.approx(expected)


def test_messages_count_only_assistant_text():
    with load_env("efficiency", max_length=L) as env:
        messages = [
            {"role": "user", "content": "u" * 50},
            {"role": "assistant", "content": "a" * 10},
            {"role": "tool", "content": "t" * 50},
            {"role": "assistant", "content": "a" * 15},
        ]
        assert env.score(messages).metrics["length"] == 25


def test_token_length_with_a_tokenizer_made_on_the_spot(tokenizer_json):
    tokenizers = pytest.importorskip("tokenizers")
    text = "The quick brown fox jumps over the lazy dog. " * 3
    n_tokens = len(tokenizers.Tokenizer.from_file(tokenizer_json).encode(text, add_special_tokens=False).ids)
    assert 0 < n_tokens < len(text) // 2  # a trained BPE merges: tokens differ from characters
    with load_env("efficiency", max_length=L, tokenizer=tokenizer_json, workers=1) as env:
        assert env.scoring.executor == "process"  # tokenizer work is real work: isolated and timed
        score = env.score(text)
        assert score.metrics["length"] == n_tokens
        assert score.reward == pytest.approx(1 - n_tokens / L)
    folder = tokenizer_json.rsplit("/", 1)[0]
    with load_env("efficiency", max_length=L, tokenizer=folder, executor="inline") as env:
        assert env.score(text).metrics["length"] == n_tokens  # a folder holding tokenizer.json works too


def test_tool_calls_are_operations():
    with load_env("efficiency", length_penalty="none", max_ops=4) as env:
        messages = [
            {"role": "assistant", "content": "", "tool_calls": [{"id": "1"}, {"id": "2"}]},
            {"role": "tool", "content": "<tool_call>not the policy's</tool_call>"},
            {"role": "assistant", "content": "<tool_call>{}</tool_call> done"},
        ]
        score = env.score(messages)
        assert score.metrics["ops"] == 3 and score.reward == pytest.approx(0.25)
        assert env.score("<tool_call>a</tool_call><tool_call>b</tool_call>").metrics["ops"] == 2
        assert env.score("x").reward == 1.0
        # the tool parser reads an open block to the end: one (malformed) call, and no answer at all
        unclosed = env.score("<tool_call>" * 9)
        assert unclosed.metrics["ops"] == 1 and unclosed.reward == 0.0


def test_op_pattern_counts_matches():
    with load_env("efficiency", length_penalty="none", max_ops=2, op_pattern=r"\bwait\b") as env:
        assert [env.score(t).reward for t in ("ok", "wait", "wait, wait", "wait wait wait")] == [
            1.0,
            0.5,
            0.0,
            0.0,
        ]


def test_length_and_ops_terms_add_up():
    with load_env("efficiency", max_length=10, max_ops=2, op_pattern="!") as env:
        score = env.score("abcde!")
        assert score.metrics["length_term"] == pytest.approx(0.4)
        assert score.metrics["ops_term"] == pytest.approx(0.5)
        assert score.reward == pytest.approx(0.9)
        assert env.pass_threshold == 1.5  # a pass: at most half the length budget, no operation


@pytest.mark.parametrize(
    "config",
    [
        {"length_penalty": "none"},
        {"max_ops": 0},
        {"length_penalty": "soft_overlong", "max_length": 10, "overlong_buffer": 11},
        {"max_length": -5},
        {"max_ops": 2, "op_pattern": "(unclosed"},
    ],
)
def test_bad_configuration(config):
    with pytest.raises(ValueError):
        load_env("efficiency", **config)


@pytest.mark.parametrize(
    "config",
    [
        {},
        {"length_penalty": "soft_overlong", "max_length": L, "overlong_buffer": B},
        {"length_penalty": "none", "max_ops": 3},
        {"max_length": 50, "max_ops": 2, "op_pattern": "!"},
    ],
)
def test_efficiency_passes_check_env(config):
    with load_env("efficiency", **config) as env:
        assert check_env(env)["gold_examples"] >= 1


def test_efficiency_with_tokenizer_passes_check_env(tokenizer_json):
    with load_env("efficiency", max_length=L, tokenizer=tokenizer_json, workers=1) as env:
        assert check_env(env)["gold_examples"] >= 1
