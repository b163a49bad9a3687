"""Validation of what callers hand to ``score``: bad input becomes a status, never an exception.

Model outputs are untrusted: they can be None, bytes, a number, a megabyte of text, a string with
lone surrogates (broken unicode), or a message list with missing roles. A message's content may be
OpenAI-style text parts; they become one string, so verifiers only ever see ``str`` content. Each case is named in the
returned reason so the user can tell a malformed sample from a wrong answer.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from rewardkit.types import Sample

ROLES = frozenset({"system", "user", "assistant", "tool", "developer"})
MESSAGE_KEYS = ("role", "content", "name", "tool_calls", "tool_call_id")
TEXT_PARTS = frozenset({"text", "input_text", "output_text"})
"""Content-part types that hold text: chat completions' ``text``, the Responses API's two."""


class InvalidInput(ValueError):
    """Raised by the normalisers below; turned into a Score with status ``invalid_input``."""


def _check_text(text: str, what: str, max_chars: int) -> str:
    if len(text) > max_chars:
        raise InvalidInput(f"{what} has {len(text):,} characters, over the limit of {max_chars:,}")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InvalidInput(f"{what} is not valid unicode ({exc.reason} at position {exc.start})") from None
    return text


def _content_text(content: Any, i: int) -> str:
    """A message's content as text: a str, None (no text), or OpenAI-style content parts
    (``[{"type": "text", "text": ...}, ...]``), whose texts are joined with newlines as vLLM's chat
    front end does. A non-text part (an image, audio) cannot be scored: InvalidInput names it."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if (
        isinstance(content, Mapping)
        or not isinstance(content, Sequence)
        or isinstance(content, bytes | bytearray)
    ):
        raise InvalidInput(
            f"message {i} content is a {type(content).__name__}; expected a str or a list of text parts"
        )
    texts = []
    for j, part in enumerate(content):
        where = f"message {i} content part {j}"
        if not isinstance(part, Mapping):
            raise InvalidInput(
                f"{where} is a {type(part).__name__}, not a dict like {{'type': 'text', 'text': ...}}"
            )
        if part.get("type") not in TEXT_PARTS:
            raise InvalidInput(
                f"{where} has type {part.get('type')!r}; only text parts ({{'type': 'text', 'text': ...}}) "
                "can be scored: drop images and other media before scoring"
            )
        if not isinstance(part.get("text"), str):
            raise InvalidInput(f"{where} has text of type {type(part.get('text')).__name__}, not a str")
        texts.append(part["text"])
    return "\n".join(texts)


def normalize_completion(completion: Any, max_chars: int) -> str | tuple[dict[str, Any], ...]:
    """Return the completion as a str or a tuple of plain message dicts, or raise InvalidInput."""
    if isinstance(completion, str):
        return _check_text(completion, "completion", max_chars)
    if isinstance(completion, bytes | bytearray):
        raise InvalidInput("completion is bytes; decode it to str first")
    if completion is None:
        raise InvalidInput("completion is None")
    if isinstance(completion, Mapping):
        raise InvalidInput("completion is a single dict; pass a list of messages or a string")
    if not isinstance(completion, Sequence):
        raise InvalidInput(f"completion must be a str or a list of messages, got {type(completion).__name__}")
    if len(completion) == 0:
        raise InvalidInput("completion is an empty message list")
    messages = []
    total = 0
    for i, message in enumerate(completion):
        if not isinstance(message, Mapping):
            raise InvalidInput(f"message {i} is a {type(message).__name__}, not a dict with role and content")
        role = message.get("role")
        if not isinstance(role, str) or role not in ROLES:
            raise InvalidInput(f"message {i} has role {role!r}; expected one of {sorted(ROLES)}")
        content = _content_text(message.get("content"), i)
        total += len(content)
        _check_text(content, f"message {i} content", max_chars)
        clean = {k: message[k] for k in MESSAGE_KEYS if k in message}
        clean["content"] = content
        messages.append(clean)
    if total > max_chars:
        raise InvalidInput(f"messages hold {total:,} characters, over the limit of {max_chars:,}")
    return tuple(messages)


def normalize_sample(sample: Any, max_chars: int) -> Sample:
    """Check one ``score_batch`` sample: a ``Sample``, or a mapping with ``completion`` and optional
    ``answer``/``prompt``/``info``. Returns a ``Sample`` holding plain validated values."""
    if isinstance(sample, Sample):
        completion, answer, prompt, info = sample.completion, sample.answer, sample.prompt, sample.info
    elif isinstance(sample, Mapping):
        if "completion" not in sample:
            raise InvalidInput(f"sample has no 'completion' key (keys: {sorted(map(str, sample))})")
        completion, answer = sample["completion"], sample.get("answer")
        prompt, info = sample.get("prompt"), sample.get("info")
    else:
        raise InvalidInput(
            f"a sample must be a dict with a 'completion' key (or a rewardkit.Sample), got {type(sample).__name__}"
        )
    if info is None:
        info = {}
    if not isinstance(info, Mapping):
        raise InvalidInput(f"info must be a dict, got {type(info).__name__}")
    if prompt is not None and not isinstance(prompt, str):
        prompt = normalize_completion(prompt, max_chars)
    return Sample(normalize_completion(completion, max_chars), answer, prompt, dict(info))
