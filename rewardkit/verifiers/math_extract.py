"""Which part of a completion is its final answer: ``<answer>`` tags, ``\\boxed{}``, or free text.

Part of the math verifier (``rewardkit.verifiers.math`` states the rules; docs/math.md has examples).
Everything here is linear-time text work: it also runs in the caller's process (``MathEnv.cache_key``),
outside the worker timeout.
"""

from __future__ import annotations

import bisect
import re
from dataclasses import dataclass

FALLBACK_TAIL_CHARS = 4_000
"""Without <answer> or \\boxed, math-verify's extraction looks at this many trailing characters only."""


@dataclass(frozen=True)
class Extraction:
    """What a completion offers as its final answer.

    ``answer`` is the final answer text (None when nothing was found); ``source`` says where it came
    from (``answer_tag``, ``boxed``, ``text`` or ``none``); ``candidates`` are all the distinct answers
    offered in the answer region, the final one last: for tags and boxes every one of them, for free
    text the values listed in its final sentence ("7 or 8", "12 and 15"). More than one means the model
    may be hedging, or naming each value of a multi-valued answer.
    """

    answer: str | None
    source: str
    candidates: tuple[str, ...] = ()


_ANSWER_OPEN = "<answer>"
_ANSWER_CLOSE = "</answer>"
_BOX_RE = re.compile(r"\\(?:boxed|fbox)(?:\s*(\{)|\s+([^\s${}]+))")
_ANSWER_OPEN_RE = re.compile(re.escape(_ANSWER_OPEN))
_ANSWER_CLOSE_RE = re.compile(re.escape(_ANSWER_CLOSE))
_BRACE_RE = re.compile(r"[{}]")
_SENTENCE_END_RE = re.compile(r"(?<=[.!?])\s+(?=\S)")
_STATEMENT_RE = re.compile(r"(?i)\banswer\b\**\s*(?:is\b|:)[\s*:]*(?:\$|\\\(|\\\[|[-+]?\.?\d)")
"""An answer statement with a value: "the final answer is $8,460$", "Answer: 12"."""
_SPLIT_INLINE_MATH_RE = re.compile(
    r"(?<![\\$])\$(?!\$)[ \t]*\n[^$\n]{0,200}\n[ \t]*(?<!\\)\$|\\\([ \t]*\n[^\n]{0,200}?\n[ \t]*\\\)"
)
"""Inline math whose value sits on its own line between the delimiters: ``$\\n 9 \\n$`` is not math."""
_VALUE = r"(?>-?(?:\d{1,3}(?:,\d{3})+(?!\d)|\d+)(?:\.\d+)?(?:/\d+)?)"  # atomic: no backtracking into a number
_WORD_JOIN = r"(?:,?\s*\b(?:or|and)\b|\\text\{\s*(?:or|and)\s*\}|\\lor|\\vee)"
_LIST_RE = re.compile(rf"(?<![\w.,/]){_VALUE}(?:\s*(?:{_WORD_JOIN}|,)\s*{_VALUE})+(?![\w/]|[.,]\d)")
_WORD_JOIN_RE = re.compile(_WORD_JOIN)
_STATED_LIST_RE = re.compile(
    rf"(?i)\banswers?\b\**\s*(?:is|are|:)[\s*:]*\$?\s*({_VALUE}(?:\s*,\s*{_VALUE})+)(?![\w/]|[.,]\d)"
)
"""A list right after an answer statement needs no joining word: "The answer is 7, 8"."""
_LIST_VALUE_RE = re.compile(rf"(?<![\d,]){_VALUE}")


def boxed_spans(text: str) -> list[tuple[str, int, int]]:
    """(content, start, end) of every ``\\boxed{...}`` (balanced braces) or ``\\boxed x``. Linear time."""
    out: list[tuple[str, int, int]] = []
    pos = 0
    while (m := _BOX_RE.search(text, pos)) is not None:
        if m.group(1) is None:  # "\boxed 5": one token
            out.append((m.group(2), m.start(), m.end()))
            pos = m.end()
            continue
        depth, pos = 1, len(text)  # an unclosed box swallows the rest: nothing after it can close
        for brace in _BRACE_RE.finditer(text, m.end()):
            depth += 1 if brace.group() == "{" else -1
            if depth == 0:
                out.append((text[m.end() : brace.start()], m.start(), brace.end()))
                pos = brace.end()
                break
    return out


def boxed_contents(text: str) -> list[str]:
    """Contents of every ``\\boxed{...}`` (balanced braces) or ``\\boxed x`` in text, in order. Linear time."""
    return [content for content, _, _ in boxed_spans(text)]


def _answer_tag_contents(text: str) -> list[str]:
    """Contents of each ``<answer>...</answer>``; an unclosed tag runs to the next tag or the end.

    Linear: the closing tags are found once, not searched for again from every opening tag.
    """
    opens = [m.end() for m in _ANSWER_OPEN_RE.finditer(text)]
    closes = [m.start() for m in _ANSWER_CLOSE_RE.finditer(text)]
    out = []
    for i, start in enumerate(opens):
        next_open = opens[i + 1] - len(_ANSWER_OPEN) if i + 1 < len(opens) else len(text)
        j = bisect.bisect_left(closes, start)
        end = closes[j] if j < len(closes) and closes[j] < next_open else next_open
        out.append(text[start:end])
    return out


def unique(items: list[str]) -> tuple[str, ...]:
    """Distinct non-empty stripped items, keeping the last occurrence's position (final answer last)."""
    seen: dict[str, None] = {}
    for item in items:
        item = item.strip()
        if item:
            seen.pop(item, None)
            seen[item] = None
    return tuple(seen)


def listed_values(sentence: str) -> tuple[str, ...]:
    """Numbers a sentence lists with "or"/"and" (commas between them too): "7, 8 or 9" -> (7, 8, 9).

    A list needs a joining word, so "In 2019, 45 people came" lists nothing, unless it follows an
    answer statement ("The answer is 7, 8.").
    """
    lists = [(m.start(), m.group()) for m in _LIST_RE.finditer(sentence) if _WORD_JOIN_RE.search(m.group())]
    lists += [(m.start(1), m.group(1)) for m in _STATED_LIST_RE.finditer(sentence)]
    values = [v.replace(",", "") for _, found in sorted(lists) for v in _LIST_VALUE_RE.findall(found)]
    return tuple(dict.fromkeys(values))  # in the order written


def has_answer_statement(text: str) -> bool:
    """Whether text states its answer in words with a value ("the final answer is $7$", "Answer: 7")."""
    return _STATEMENT_RE.search(text) is not None


def _window(region: str) -> str:
    """The text math-verify's extraction gets: the last FALLBACK_TAIL_CHARS characters, or, when the last
    answer statement is earlier ("The final answer is 42." and then a long check), the text from it."""
    tail = region[-FALLBACK_TAIL_CHARS:]
    if len(region) <= FALLBACK_TAIL_CHARS or has_answer_statement(tail):
        return tail
    starts = [m.start() for m in _STATEMENT_RE.finditer(region)]  # linear: one pass, the last one wins
    return region[starts[-1] : starts[-1] + FALLBACK_TAIL_CHARS] if starts else tail


def _free_text(region: str) -> Extraction:
    """The answer left to math-verify's extraction, plus the values listed in the final sentence."""
    tail = _SPLIT_INLINE_MATH_RE.sub(" ", _window(region)).strip()
    if not tail:
        return Extraction(None, "none")
    last_sentence = _SENTENCE_END_RE.split(tail)[-1][-500:]  # "is it 7 or 8? ... it is 8." is no hedge
    return Extraction(tail, "text", listed_values(last_sentence))


def extract_answer(text: str) -> Extraction:
    """Find the final answer: last ``<answer>`` > last ``\\boxed{}`` > math-verify's extraction.

    Only the text after the last ``</think>`` is searched when there is one. Inside an answer tag, a
    ``\\boxed{}`` is unwrapped. An answer statement with a value after the last box ("... The final
    answer is $8,460$.") supersedes the boxes. Without tag or box the answer is left to math-verify
    (``source="text"``, the ``answer`` is the trailing text it will search), minus inline math split
    over lines, plus the values the final sentence lists.
    """
    region = text.rsplit("</think>", 1)[-1]
    tags = _answer_tag_contents(region)
    if tags:
        parts = []
        for tag in tags:
            parts.extend(boxed_contents(tag) or [tag])
        cands = unique(parts)
        return Extraction(cands[-1], "answer_tag", cands) if cands else Extraction(None, "none")
    found = boxed_spans(region)
    boxes = unique([content for content, _, _ in found])
    if boxes:
        after = region[found[-1][2] :][-FALLBACK_TAIL_CHARS:]
        if has_answer_statement(after):
            return _free_text(after)
        return Extraction(boxes[-1], "boxed", boxes)
    return _free_text(region)
