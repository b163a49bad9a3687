"""The ``format`` environment: required tags, strict (1/0) or partial credit per rule."""

from __future__ import annotations

import pytest

from rewardkit import check_env, load_env
from rewardkit.verifiers.format import check_tags

GOOD = "<think>two plus two</think>\n<answer>4</answer>"


@pytest.fixture(scope="module")
def strict():
    with load_env("format") as env:
        yield env


@pytest.fixture(scope="module")
def partial():
    with load_env("format", strict=False) as env:
        yield env


@pytest.mark.parametrize(
    ("text", "strict_reward", "partial_reward"),
    [
        (GOOD, 1.0, 1.0),
        # 5 rules: think:once, think:nonempty, answer:once, answer:nonempty, order
        ("<think>x</think>", 0.0, 2 / 5),
        ("<think>  </think><answer>4</answer>", 0.0, 4 / 5),
        ("<answer>4</answer><think>x</think>", 0.0, 4 / 5),
        ("<think>x</think><answer>4</answer><answer>5</answer>", 0.0, 2 / 5),
        ("<think>x<answer>4</answer></think>", 0.0, 4 / 5),  # overlapping blocks break the order rule
        ("</think>x<think><answer>4</answer>", 0.0, 2 / 5),  # closing before opening is not a block
        ("no tags at all", 0.0, 0.0),
        ("", 0.0, 0.0),
    ],
)
def test_strict_versus_partial(strict, partial, text, strict_reward, partial_reward):
    assert strict.score(text).reward == strict_reward
    score = partial.score(text)
    assert score.reward == pytest.approx(partial_reward)
    assert score.metrics["rules_satisfied"] == pytest.approx(partial_reward)
    assert score.metrics["format_ok"] == strict_reward


def test_rules_are_reported_by_name(partial):
    rules = partial.score("<think>x</think>").info["rules"]
    assert rules == {
        "think:once": True,
        "think:nonempty": True,
        "answer:once": False,
        "answer:nonempty": False,
        "order": False,
    }


def test_text_outside_the_tags(strict):
    outside = "Sure! " + GOOD + " Hope this helps."
    assert strict.score(outside).reward == 1.0  # allowed by default
    with load_env("format", allow_text_outside=False) as tight:
        assert tight.score(outside).reward == 0.0
        assert tight.score("\n " + GOOD + "\n").reward == 1.0  # whitespace is not text
        assert tight.score(outside).info["rules"]["no_text_outside"] is False


def test_custom_tags():
    with load_env("format", tags=["plan", "code", "final"], strict=False) as env:
        assert env.score("<plan>p</plan><code>c</code><final>f</final>").reward == 1.0
        assert env.score(GOOD).reward == 0.0
        assert check_env(env)["gold_examples"] >= 1


def test_tags_with_regex_characters_are_literal():
    result = check_tags("<a.b>x</a.b>", ["a.b"])
    assert result.all_ok
    assert not check_tags("<aXb>x</aXb>", ["a.b"]).all_ok


def test_chat_completion_uses_the_last_assistant_message(strict):
    messages = [
        {"role": "user", "content": "<think>user text does not count</think><answer>1</answer>"},
        {"role": "assistant", "content": "draft"},
        {"role": "assistant", "content": GOOD},
    ]
    assert strict.score(messages).reward == 1.0
    assert strict.score(messages[:2]).reward == 0.0


def test_bad_input_is_invalid_not_an_exception(strict):
    for bad in (None, b"<think>x</think>", 3, [{"content": "no role"}], "\ud800"):
        score = strict.score(bad)
        assert (score.reward, score.status) == (0.0, "invalid_input")
        assert score.info["reason"]


@pytest.mark.parametrize("strict_mode", [True, False])
def test_format_passes_check_env(strict_mode):
    with load_env("format", strict=strict_mode) as env:
        assert check_env(env)["gold_examples"] == 2


def test_format_in_worker_processes_matches_inline():
    texts = [GOOD, "<think>x</think>", "nothing"]
    with load_env("format", strict=False, executor="process", workers=2) as proc:
        with load_env("format", strict=False) as inline:
            assert proc.score_batch([{"completion": t} for t in texts]) == inline.score_batch(
                [{"completion": t} for t in texts]
            )
