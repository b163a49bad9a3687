"""Input validation: OpenAI-style content parts, as chat APIs and TRL hand them over."""

from __future__ import annotations

import pytest

from rewardkit import load_env
from rewardkit.inputs import InvalidInput, normalize_completion, normalize_sample

LIMIT = 1_000_000


def _parts(*texts: str) -> list[dict]:
    return [{"type": "text", "text": t} for t in texts]


def test_text_parts_are_joined_into_one_string():
    messages = normalize_completion(
        [{"role": "assistant", "content": _parts("<think>a</think>", "4")}], LIMIT
    )
    assert messages == ({"role": "assistant", "content": "<think>a</think>\n4"},)


def test_text_parts_in_a_prompt_are_joined_too():
    sample = normalize_sample(
        {"completion": "4", "prompt": [{"role": "user", "content": _parts("What is", "2+2?")}]}, LIMIT
    )
    assert sample.prompt == ({"role": "user", "content": "What is\n2+2?"},)


def test_responses_api_text_part_types_are_text():
    content = [{"type": "input_text", "text": "q"}, {"type": "output_text", "text": "a"}]
    (message,) = normalize_completion([{"role": "assistant", "content": content}], LIMIT)
    assert message["content"] == "q\na"


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (
            [{"type": "text", "text": "see"}, {"type": "image_url", "image_url": {"url": "http://x"}}],
            "message 0 content part 1 has type 'image_url'; only text parts",
        ),
        ([{"type": "text", "text": 4}], "message 0 content part 0 has text of type int"),
        (["plain string"], "message 0 content part 0 is a str, not a dict"),
        ([{"text": "no type"}], "content part 0 has type None"),
        ({"type": "text", "text": "a dict"}, "content is a dict"),
    ],
)
def test_non_text_parts_are_invalid_input_with_a_reason(content, reason):
    with pytest.raises(InvalidInput, match=reason.replace("(", r"\(")):
        normalize_completion([{"role": "assistant", "content": content}], LIMIT)


def test_parts_count_against_the_length_limit():
    with pytest.raises(InvalidInput, match="over the limit"):
        normalize_completion([{"role": "assistant", "content": _parts("x" * 6, "y" * 6)}], 10)


def test_an_environment_scores_content_parts():
    with load_env("format", executor="inline") as env:
        good = env.score([{"role": "assistant", "content": _parts("<think>a</think>", "<answer>4</answer>")}])
        image = env.score([{"role": "assistant", "content": [{"type": "image_url", "image_url": {}}]}])
    assert (good.status, good.reward) == ("ok", 1.0)
    assert image.status == "invalid_input" and "image_url" in image.info["reason"]
