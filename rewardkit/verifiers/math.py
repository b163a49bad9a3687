"""Math answer checking: extract the final answer, parse it, and decide equivalence with the gold answer.

Built on math-verify (parsing LaTeX into sympy, and its comparison of sets, intervals, matrices,
equations and symbolic expressions), agreeing with it wherever it is right and stricter where it is
wrong for training. The rules, each in docs/math.md with examples and its reason:

* **Hedging**: several different values for a single-valued gold (``7 or 8``, ``12 and 15``,
  ``\\pm 2``, two boxes that disagree) score 0, even if one of them is right.
* **Multi-valued answers**: a gold that is a set, a list of solutions or several unknowns is matched
  by all of its values, in one answer or one per box/tag (``\\boxed{1}, \\boxed{2}``), and the other
  way round; a value outside the gold is a hedge.
* **Numbers**: relative tolerance ``|a - b| <= rel_tol * max(|a|, |b|)`` when a decimal is written;
  a decimal also matches an exact value it rounds at its written places, with at least 2 significant
  digits (``0.33`` for 1/3, not ``0.3``); exact values must be equal. math-verify's absolute rounding
  makes ``1/3^{50}`` equal ``1/3^{49}``.
* **Decimal comma**: ``1,22`` is 1.22 against a number (a comma that cannot separate thousands).
* **Inequalities and intervals**: ``-2 \\le x \\le 7`` is ``x \\in [-2, 7]``, in both directions.
* **Extraction**: last ``<answer>`` > last ``\\boxed{}`` > math-verify's free-text extraction, only
  after ``</think>`` (never inside unfinished thinking) and only in what renders (no comments,
  ``\\iffalse``, ``\\phantom``); an answer statement after the last box supersedes it; inline math
  split over lines is not an answer.
* **No value**: a relation without a left side (``\\geq 42``), a negation (``\\not 42``), a false
  equation (``7 = 42``, ``3 = 4 = 42``) or a number beside ``\\text{}`` holding another number or a
  negation is not the number the parser would read (docs/hacking.md).
* **Long integers** past Python's 4,300-digit ``int(str)`` limit; **bare LaTeX** without ``$``.
* **Bounded work**: huge values (``2^{10^9}``, ``(10^6)!``) are compared structurally, never
  evaluated; deeply nested or very long answers are compared as text. The hard wall-clock bound is the
  worker pool's job (math-verify's own ``signal.alarm`` timeouts are disabled: they break in threads).

Everything here is a pure function of its inputs (no torch, no global state but caches). The work is
split by step: ``math_extract`` (which text is the answer), ``math_parse`` (text to sympy),
``math_equal`` (equivalence); this module decides a completion against a gold answer.
"""

from __future__ import annotations

import decimal
import logging
import numbers
import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import sympy

from rewardkit.verifiers.math_equal import (
    DEFAULT_REL_TOL,
    MAX_EXACT_DIGITS,
    answers_equal,
    digits_bound,
    exprs_equal,
    is_single_valued,
    tolerance,
    union_of,
    values_of,
    within,
)
from rewardkit.verifiers.math_extract import (
    FALLBACK_TAIL_CHARS,
    Extraction,
    boxed_contents,
    boxed_spans,
    extract_answer,
    has_answer_statement,
    unique,
)
from rewardkit.verifiers.math_parse import (
    MAX_ANSWER_CHARS,
    MAX_NESTING,
    ParsedAnswer,
    normalize_answer_text,
    parse_answer,
    parse_text_fallback,
    text_answer,
)

__all__ = [
    "DEFAULT_REL_TOL",
    "MAX_ANSWER_CHARS",
    "MAX_CANDIDATES",
    "MAX_EXACT_DIGITS",
    "MAX_NESTING",
    "Extraction",
    "MathVerdict",
    "ParsedAnswer",
    "answers_equal",
    "boxed_contents",
    "check",
    "digits_bound",
    "exprs_equal",
    "extract_answer",
    "normalize_answer_text",
    "normalize_gold",
    "parse_answer",
    "parse_gold",
    "parse_prediction",
    "parse_text_fallback",
    "verify_math",
]

# math-verify logs a warning when its signal-based timeout is disabled; the worker pool bounds time instead.
logging.getLogger("math_verify").setLevel(logging.ERROR)

MAX_CANDIDATES = 8
"""More distinct candidate answers than this (beyond a multi-valued gold's own values) is hedging by itself."""


@dataclass(frozen=True)
class MathVerdict:
    """The result of checking one completion: ``correct`` drives the reward; ``reason`` explains a 0."""

    correct: bool
    has_answer: bool
    extracted: str | None
    reason: str = ""


@lru_cache(maxsize=4096)
def parse_gold(gold: str) -> ParsedAnswer:
    """Parse a gold answer once per process: G completions of a prompt share it."""
    return parse_answer(gold)


@lru_cache(maxsize=16384)
def parse_prediction(text: str) -> ParsedAnswer:
    return parse_answer(text)


# ---- the gold answer --------------------------------------------------------------------------------
_MATH_PIECE_RE = re.compile(r"\$([^$]+)\$")
_PIECES_ONLY_RE = re.compile(r"\s*\$[^$]+\$(?:\s*(?:,\s*)?(?:\band\b|\bor\b|,)\s*\$[^$]+\$)+\s*\.?\s*")


_JOINER_RE = re.compile(r"\band\b|\bor\b|[,;]|\\quad")
_LETTER_RE = re.compile(r"[a-zA-Z]")


def _joined_boxes(raw: str) -> tuple[str, ...]:
    """The contents of several boxes joined as a list ("\\boxed{1}, \\boxed{2}", "\\boxed{1} cup and
    \\boxed{2} plates"): each gap holds a comma, "and", "or" or ``\\quad``, or no word at all. Else ()."""
    spans = boxed_spans(raw) if "\\boxed" in raw or "\\fbox" in raw else []
    gaps = [raw[a[2] : b[1]] for a, b in zip(spans, spans[1:])]
    if len(spans) < 2 or not all(_JOINER_RE.search(gap) or not _LETTER_RE.search(gap) for gap in gaps):
        return ()
    return unique([content for content, _, _ in spans])


@lru_cache(maxsize=4096)
def _gold_text(raw: str) -> str:
    """A gold answer written as several boxes or math pieces is the set of them (``\\boxed{1}, \\boxed{2}``,
    ``$1$ and $2$``); a worked solution without a box is its stated final answer; else the text itself."""
    boxes = _joined_boxes(raw)
    if len(boxes) > 1:
        return ", ".join(normalize_answer_text(b) for b in boxes)
    boxes = boxes or tuple(boxed_contents(raw) if "\\boxed" in raw or "\\fbox" in raw else ())
    if not boxes and len(raw) <= MAX_ANSWER_CHARS and _PIECES_ONLY_RE.fullmatch(raw):
        return ", ".join(normalize_answer_text(p) for p in _MATH_PIECE_RE.findall(raw))
    if not boxes and has_answer_statement(raw[-FALLBACK_TAIL_CHARS:]):
        found = text_answer(raw[-FALLBACK_TAIL_CHARS:])
        if found:
            return normalize_answer_text(found)
    return normalize_answer_text(raw)


def normalize_gold(gold: Any) -> str:
    """The gold answer as the string that is parsed and used in cache keys (numbers become text).

    One answer, as a str or a real number (numpy scalars, ``Fraction`` and ``Decimal`` included).
    Anything else raises ValueError naming its type: ``str()`` of a list, tuple or dict is Python's
    notation, not math, and would be scored as a wrong answer instead of reported.
    """
    if gold is None:
        raise ValueError("gold answer is missing (None); pass the answer as a string or a number")
    if isinstance(gold, bool) or not isinstance(gold, str | numbers.Real | decimal.Decimal):
        shown = repr(gold)
        raise ValueError(
            f"gold answer is a {type(gold).__name__}, not a string or a number: "
            f"{shown[:80] + '...' if len(shown) > 80 else shown}; write a tuple or set answer as text, "
            "e.g. '(1, 2)' or '\\{1, 2\\}'"
        )
    if isinstance(gold, float) and gold.is_integer():
        gold = int(gold)
    text = _gold_text(str(gold))
    if not text:
        raise ValueError(f"gold answer is empty: {gold!r}")
    return text


# ---- the verdict ------------------------------------------------------------------------------------
def _offered(extraction: Extraction, pred: ParsedAnswer, rel_tol: float) -> list[str]:
    """Every answer the completion offers, in order: its tags or boxes; for free text the values its
    final sentence lists, when the extracted answer is one of them ("so 27" after "12 and 15" is not)."""
    if extraction.source != "text":
        return list(extraction.candidates)
    listed = list(extraction.candidates)
    if any(answers_equal(parse_prediction(c), pred, rel_tol=rel_tol) for c in listed):
        return listed
    return []


def _check_single(gold: ParsedAnswer, pred: ParsedAnswer, others: list[str], rel_tol: float) -> str:
    """Why a completion fails a single-valued gold ("" when it does not): wrong, or hedging."""
    if not answers_equal(gold, pred, rel_tol=rel_tol):
        if any(isinstance(e, sympy.FiniteSet) and len(e) > 1 for e in pred.exprs):
            return "hedging: several values for a single-valued answer"
        return "not equivalent to the gold answer"
    if len(others) >= MAX_CANDIDATES:
        return f"hedging: {len(others) + 1} different candidate answers"
    for cand in others:
        if not answers_equal(gold, parse_prediction(cand), rel_tol=rel_tol):
            return f"hedging: also offers {cand[:80]!r}"
    return ""


def _check_multi(gold: ParsedAnswer, pred: ParsedAnswer, offered: list[str], rel_tol: float) -> str:
    """Why a completion fails a multi-valued gold ("" when it does not).

    It passes when its final answer is the gold and every other answer names only gold values (a partial
    box before the full set), or when all its answers together name exactly the gold's values
    (``\\boxed{1}, \\boxed{2}`` for ``\\{1, 2\\}``).
    """
    answers = [parse_prediction(c) for c in offered] or [pred]
    if len(answers) > MAX_CANDIDATES + len(values_of(gold.exprs[0])):
        return f"hedging: {len(answers)} different candidate answers"
    tol = tolerance(rel_tol, gold, *answers)
    if answers_equal(gold, pred, rel_tol=rel_tol):
        for other in (a for a in answers if a.text != pred.text):
            if not answers_equal(gold, other, rel_tol=rel_tol) and not any(
                within(g, other, tol) for g in gold.exprs
            ):
                return f"hedging: also offers {other.text[:80]!r}, not a value of the answer"
        return ""
    union = union_of(answers, tol) if len(answers) > 1 else None
    if union is not None and any(exprs_equal(g, union, tol) for g in gold.exprs):
        return ""
    return "not equivalent to the gold answer"


def check(extraction: Extraction, gold: str, *, rel_tol: float = DEFAULT_REL_TOL) -> MathVerdict:
    """Decide one extracted answer against a normalised gold string (see ``normalize_gold``)."""
    if extraction.answer is None:
        return MathVerdict(False, False, None, "no answer found")
    parsed_gold = parse_gold(gold)
    if extraction.source == "text":
        pred = parse_text_fallback(extraction.answer)
        shown = pred.text or None
        if not pred.exprs:  # what math-verify found does not parse (12:00): equal text still counts
            same = bool(shown) and answers_equal(parsed_gold, pred, rel_tol=rel_tol)
            return MathVerdict(same, same, shown, "" if same else "no parseable answer in the text")
    else:
        pred, shown = parse_prediction(extraction.answer), extraction.answer
    offered = _offered(extraction, pred, rel_tol)
    if not parsed_gold.exprs or is_single_valued(parsed_gold.exprs[0]):
        final = extraction.answer if extraction.source != "text" else None
        reason = _check_single(parsed_gold, pred, [c for c in offered if c != final], rel_tol)
    else:
        reason = _check_multi(parsed_gold, pred, offered, rel_tol)
    return MathVerdict(not reason, True, shown, reason)


def verify_math(text: str, gold: Any, *, rel_tol: float = DEFAULT_REL_TOL) -> MathVerdict:
    """Check a completion's text against a gold answer (given with or without ``$`` delimiters)."""
    return check(extract_answer(text), normalize_gold(gold), rel_tol=rel_tol)
