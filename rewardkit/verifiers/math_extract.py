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
_ANSWER_OPEN_RE = re.compile(re.escape(_ANSWER_OPEN), re.IGNORECASE)
_ANSWER_CLOSE_RE = re.compile(re.escape(_ANSWER_CLOSE), re.IGNORECASE)
_THINK_OPEN_RE = re.compile(r"<\s*think\s*>", re.IGNORECASE)
_THINK_CLOSE_RE = re.compile(r"<\s*/\s*think\s*>", re.IGNORECASE)
_HIDDEN_BLOCKS = (
    (re.compile(r"<!--"), re.compile(r"-->")),
    (re.compile(r"\\iffalse(?![a-zA-Z])"), re.compile(r"\\fi(?![a-zA-Z])")),
)
"""Text that is never shown: HTML comments and ``\\iffalse ... \\fi`` (an unclosed one runs to the end)."""
_PHANTOM_RE = re.compile(r"\\[hv]?phantom\s*\{")
_COMMENT_RE = re.compile(r"(?<![\d\\])(?<!\d )%[^\n]*")
"""A LaTeX comment: ``%`` to the end of the line, unless it follows a digit (``50%``, ``50 %``) or ``\\``
(``\\%``)."""
_ANSWER_MARK_RE = re.compile(r"\\(?:boxed|fbox)|<answer>", re.IGNORECASE)
_BRACE_RE = re.compile(r"[{}]")
_SENTENCE_END_RE = re.compile(r"(?<=[.!?])\s+(?=\S)")
_STATEMENT_RE = re.compile(r"(?i)\banswer\b\**\s*(?:is\b|:)[\s*:]*(?:\$|\\\(|\\\[|[-+]?\.?\d)")
"""An answer statement with a value: "the final answer is $8,460$", "Answer: 12"."""
_SPLIT_INLINE_MATH_RE = re.compile(
    r"(?<![\\$])\$(?!\$)[ \t]*\n[^$\n]{0,200}\n[ \t]*(?<!\\)\$|\\\([ \t]*\n[^\n]{0,200}?\n[ \t]*\\\)"
)
"""Inline math whose value sits on its own line between the delimiters: ``$\\n 9 \\n$`` is not math."""
_VALUE = r"(?>-?(?:\d{1,3}(?:,\d{3})+(?!\d)|\d+)(?:\.\d+)?(?:/\d+)?)"  # atomic: no backtracking into a number
_WORD_JOIN = r"(?:,?\s*\(?\s*\b(?:or|and)\b|\\text\{\s*(?:or|and)\s*\}|\\lor|\\vee)"
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


def _answer_tag_spans(text: str) -> list[tuple[int, int]]:
    """(start, end) of the contents of each ``<answer>...</answer>`` (any case); an unclosed tag runs to
    the next tag or the end. A closing tag with no tag open since the last one closes an outer tag of
    nested ones (``<answer><answer>42</answer>7</answer>``): the text since that last close is one too.

    Linear: the closing tags are found once, not searched for again from every opening tag.
    """
    opens = [m.end() for m in _ANSWER_OPEN_RE.finditer(text)]
    closes = [m.start() for m in _ANSWER_CLOSE_RE.finditer(text)]
    out = []
    for i, start in enumerate(opens):
        next_open = opens[i + 1] - len(_ANSWER_OPEN) if i + 1 < len(opens) else len(text)
        j = bisect.bisect_left(closes, start)
        end = closes[j] if j < len(closes) and closes[j] < next_open else next_open
        out.append((start, end))
    if opens:
        for prev, close in zip(closes, closes[1:]):
            k = bisect.bisect_left(opens, prev)
            if prev >= opens[0] and (k == len(opens) or opens[k] > close):  # no tag opened in between
                out.append((prev + len(_ANSWER_CLOSE), close))
        out.sort()
    return out


def _answer_tag_contents(text: str) -> list[str]:
    """Contents of each ``<answer>...</answer>`` (see ``_answer_tag_spans``), in order."""
    return [text[a:b] for a, b in _answer_tag_spans(text)]


def _cut_blocks(text: str, start_re: re.Pattern[str], end_re: re.Pattern[str]) -> str:
    """``text`` without the blocks from ``start_re`` to the next ``end_re`` (an unclosed one: to the end)."""
    out, pos = [], 0
    while (m := start_re.search(text, pos)) is not None:
        out.append(text[pos : m.start()])
        end = end_re.search(text, m.end())
        pos = len(text) if end is None else end.end()
    out.append(text[pos:])
    return "".join(out)


def _cut_phantoms(text: str) -> str:
    """``text`` without ``\\phantom{...}`` groups (they typeset as blank space). Linear time."""
    out, pos = [], 0
    while (m := _PHANTOM_RE.search(text, pos)) is not None:
        out.append(text[pos : m.start()])
        depth, pos = 1, len(text)
        for brace in _BRACE_RE.finditer(text, m.end()):
            depth += 1 if brace.group() == "{" else -1
            if depth == 0:
                pos = brace.end()
                break
    out.append(text[pos:])
    return "".join(out)


def visible_text(text: str) -> str:
    """What a reader of the rendered completion sees: no HTML comments, ``\\iffalse`` blocks,
    ``\\phantom`` groups, or LaTeX comments that hold an answer (``% \\boxed{42}``)."""
    if "<!--" in text or "\\iffalse" in text:
        for start_re, end_re in _HIDDEN_BLOCKS:
            text = _cut_blocks(text, start_re, end_re)
    if "phantom" in text:
        text = _cut_phantoms(text)
    if "%" in text:
        text = _COMMENT_RE.sub(lambda m: "" if _ANSWER_MARK_RE.search(m.group()) else m.group(), text)
    return text


def after_thinking(text: str) -> str:
    """The text after the thinking: after the last ``</think>`` (any case, spaces allowed), up to a
    ``<think>`` opened again and never closed; a completion whose thinking never ends has none."""
    closes = list(_THINK_CLOSE_RE.finditer(text))
    region = text[closes[-1].end() :] if closes else text
    opened = _THINK_OPEN_RE.search(region)
    return region if opened is None else region[: opened.start()]


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

    Only the text after the thinking is searched (``after_thinking``), as a reader sees it
    (``visible_text``). Tags match in any case; a box outside the tags is a candidate too. Inside an
    answer tag, a ``\\boxed{}`` is unwrapped (values the tag lists beside it are candidates). An answer
    statement with a value after the last box ("... The final answer is $8,460$.") supersedes the boxes;
    only empty boxes are no answer. Without tag or box the answer is left to math-verify
    (``source="text"``, the ``answer`` is the trailing text it will search), minus inline math split
    over lines, plus the values the final sentence lists.
    """
    region = visible_text(after_thinking(text))
    spans = _answer_tag_spans(region)
    if spans:
        tagged = unique([part for a, b in spans for part in _tag_answers(region[a:b])])
        if not tagged:
            return Extraction(None, "none")
        cands = unique([*_boxes_outside(region, spans), *tagged])  # a box beside the tags is offered too
        return Extraction(tagged[-1], "answer_tag", (*[c for c in cands if c != tagged[-1]], tagged[-1]))
    found = boxed_spans(region)
    boxes = unique([content for content, _, _ in found])
    if found:
        after = region[found[-1][2] :][-FALLBACK_TAIL_CHARS:]
        if has_answer_statement(after):
            return _free_text(after)
        if not boxes:  # only empty boxes: an empty answer, as an empty tag is
            return Extraction(None, "none")
        return Extraction(boxes[-1], "boxed", boxes)
    return _free_text(region)


def _boxes_outside(region: str, spans: list[tuple[int, int]]) -> list[str]:
    """Contents of the boxes outside every answer tag."""
    if "\\boxed" not in region and "\\fbox" not in region:
        return []
    starts = [a for a, _ in spans]
    out = []
    for content, start, _ in boxed_spans(region):
        i = bisect.bisect_right(starts, start) - 1
        if i < 0 or start >= spans[i][1]:
            out.append(content)
    return out


def _tag_answers(tag: str) -> list[str]:
    """What one tag offers: its boxes (a box in a tag is unwrapped) or its text; with boxes, the values
    its text lists with "or"/"and" when a box's value is one of them (``7 or \\boxed{42}``)."""
    spans = boxed_spans(tag) if "\\boxed" in tag or "\\fbox" in tag else []
    boxes = [content for content, _, _ in spans]
    if not boxes:
        return [tag]
    pos, flat = 0, []
    for content, start, end in spans:
        flat += [tag[pos:start], " ", content, " "]
        pos = end
    listed = listed_values("".join([*flat, tag[pos:]]))
    if any(box.strip() in listed for box in boxes):
        return [*[v for v in listed if v not in {b.strip() for b in boxes}], *boxes]
    return boxes
