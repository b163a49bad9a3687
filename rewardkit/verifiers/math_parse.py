"""Math answers from text to sympy: normalisation of written forms, a parser-free fast path, math-verify's parser.

Part of the math verifier (``rewardkit.verifiers.math`` states the rules; docs/math.md has examples).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import sympy
from latex2sympy2_extended.sets import FiniteSet as LatexFiniteSet
from math_verify import parse as mv_parse
from math_verify.parser import ExprExtractionConfig, LatexExtractionConfig

from rewardkit.verifiers.math_extract import boxed_spans

MAX_ANSWER_CHARS = 1_000
"""Answers longer than this (integer literals excepted) are compared as text, not parsed: the LaTeX parser
takes about a second per thousand characters of junk, and real final answers are far shorter."""
MAX_NESTING = 60
"""Brace/parenthesis depth past which an answer is compared as text (the LaTeX parser recurses)."""

_LATEX_TARGETS = (LatexExtractionConfig(), ExprExtractionConfig())
_EXPR_TARGETS = (ExprExtractionConfig(),)


@dataclass(frozen=True)
class ParsedAnswer:
    """An answer ready for comparison.

    ``text`` is the normalised string; ``exprs`` the sympy objects it parsed to, the main reading first
    (empty: unparseable, compared as text); ``integer`` the value of a plain integer literal (any length),
    else None; ``inexact`` is True when the text writes a decimal number; ``places`` maps the absolute
    value of each decimal literal written to its number of decimal places (``0.33`` -> 2), which the
    rounding rule needs and sympy's floats do not keep.
    """

    text: str
    exprs: tuple[Any, ...] = ()
    integer: int | None = None
    inexact: bool = False
    places: dict[Any, int] = field(default_factory=dict, compare=False)


# ---- normalisation ----------------------------------------------------------------------------------
_DELIMS = (("$$", "$$"), ("$", "$"), ("\\(", "\\)"), ("\\[", "\\]"))
_THOUSANDS_RE = re.compile(r"(?<=\d)(?:\\,|\\!|\\;|\\:|\\ |\{,\}|~|\u2009|\u202f| )(?=\d{3}(?!\d))")
_LEFT_RIGHT_RE = re.compile(r"\\(?:left|right)\s*([()\[\]]|\\[{}])")
_COMMA_INT_RE = re.compile(r"[-+]?[1-9]\d{0,2}(?:,\d{3})+(?:\.\d+)?")
_DECIMAL_COMMA_RE = re.compile(r"(?P<int>-?\d+),(?P<frac>\d+)")
_SCI_RE = re.compile(r"(?<![\w.])(\d+(?:\.\d+)?)[eE]([-+]?\d+)(?![\w.])")
_BARE_PI_RE = re.compile(r"(?<![\\a-zA-Z])pi(?![a-zA-Z])")
_INT_RE = re.compile(r"[-+]?\d+")
_DECIMAL_RE = re.compile(r"(?<![\d.])(?:\d+\.(\d+)|\.(\d+))(?!\d)")
_MATH_WORDS = r"sqrt|pi|ln|log|sin|cos|tan|cot|sec|csc|exp|arcsin|arccos|arctan|or|and|frac|infty|inf"
_SHORT_UNITS = r"cm|mm|km|kg|mg|ml|mL|ft|in|yd|mi|lb|oz|hr|h|s|m|g|L|l"
_UNIT_TAIL_RE = re.compile(
    r"^(?P<num>[-+]?(?:\d+(?:\.\d+)?|\.\d+)(?:\\?%)?)\s*"
    rf"(?P<unit>(?:\\(?:text|mathrm|mbox)\{{[^{{}}]*\}}|(?!(?:{_MATH_WORDS})\b)[a-zA-Z]{{3,}}\.?|(?:{_SHORT_UNITS})\b)"
    r"(?:\s*\^\s*\{?[23]\}?)?(?:\s*(?:/|\\,|\s)\s*[a-zA-Z]{1,10}\.?)*)\s*$"
)
"""A number followed by unit words: "5 apples", "10 \text{ cm}^2", "3 km/h". Words of one or two letters
count only when they are common unit symbols, so "5 xy" stays an expression."""
_DIGIT_RE = re.compile(r"\d")
_UNIT_WORDS_RE = re.compile(r"(?i)\b(?:not|no|never|nor|wrong|incorrect|false|or|and|but|maybe|perhaps)\b")
"""Words that make a "unit" a retraction or a second answer (``42 \\text{ or maybe 7}``)."""
_CONNECTIVE_RE = re.compile(r"\\(?:(lor|vee)|(land|wedge))(?![a-zA-Z])")
"""Logical or/and, which the LaTeX parser drops with everything before them: read as the words."""
_NO_VALUE_RE = re.compile(
    r"^(?:\\(?:neq?|not|neg|lnot|geq?|leq?|gt|lt|geqslant|leqslant|ngeq|nleq|nless|ngtr)(?![a-zA-Z])|[<>])"
    r"|\\(?:not|neg|lnot)(?![a-zA-Z])"
)
"""A relation with no left side (``\\geq 42``, ``\\neq 42``) or a negation (``\\not``, ``\\neg``) is no value:
the parser drops the operator and reads the bare number."""
_TEXT_GROUP_RE = re.compile(r"\\(?:text|textbf|textit|textrm|mbox|mathrm|operatorname)\s*\{([^{}]*)\}")
_NEGATION_RE = re.compile(r"(?i)\b(?:not|no|never|nor|wrong|incorrect|false)\b")
_TOP_NEWLINE_RE = re.compile(r"\\\\(?:\[[^\]]*\])?")
_TEXT_NUMBER_RE = re.compile(r"^\\(?:text|textbf|mathrm|mbox)\{\s*([-+]?[\d.,]+[^{}]*)\}$")
_ROOT_SIGN_RE = re.compile(r"√\s*(\{[^{}]*\}|\([^()]*\)|\d+(?:\.\d+)?|[a-zA-Z])")


def _strip_delimiters(text: str) -> str:
    text = text.strip()
    changed = True
    while changed:
        changed = False
        for left, right in _DELIMS:
            if len(text) > len(left) + len(right) and text.startswith(left) and text.endswith(right):
                text = text[len(left) : -len(right)].strip()
                changed = True
    spans = boxed_spans(text) if "\\boxed" in text or "\\fbox" in text else []
    if not spans:
        return text
    pos, outside, flat = 0, [], []
    for content, start, end in spans:
        outside.append(text[pos:start])
        flat += [text[pos:start], content]
        pos = end
    outside.append(text[pos:])
    if not _DIGIT_RE.search("".join(outside)):
        return spans[-1][0].strip()  # "so \\boxed{x}": the box is the answer
    return "".join([*flat, text[pos:]]).strip()  # "7 \\boxed{42}": the box is one part of the answer


def normalize_answer_text(text: str) -> str:
    """Rewrite forms the LaTeX parser gets wrong: delimiters, thousands separators, 1e-5, bare pi, units."""
    text = _strip_delimiters(str(text)).rstrip(".").strip()
    if len(text) > MAX_ANSWER_CHARS:  # compared as text (or as a long integer): keep regex work linear
        return text
    text = _TEXT_NUMBER_RE.sub(r"\1", text)
    text = _LEFT_RIGHT_RE.sub(r"\1", _THOUSANDS_RE.sub("", text))
    if _COMMA_INT_RE.fullmatch(text):
        text = text.replace(",", "")
    text = _SCI_RE.sub(r"\1\\times 10^{\2}", text)
    text = _BARE_PI_RE.sub(r"\\pi", text.replace("**", "^").replace("×", "\\times "))
    text = _ROOT_SIGN_RE.sub(lambda m: "\\sqrt{" + m.group(1).strip("{}()") + "}", text)
    if "\\" in text:
        text = _CONNECTIVE_RE.sub(lambda m: " \\text{ or } " if m.group(1) else " \\text{ and } ", text)
        if "\\begin" not in text:  # a line break outside an environment separates values: "7 \\\\ 42"
            text = _TOP_NEWLINE_RE.sub(", ", text)
    if (m := _UNIT_TAIL_RE.match(text)) is not None and not _is_retraction(m.group("unit")):
        text = m.group("num")
    return text


def _retracting_text(norm: str) -> bool:
    """A number beside ``\\text{...}`` that holds another number or a negation (``42 \\text{ or maybe 7}``,
    ``42 \\text{ (not)}``): the parser drops the text and would read the bare number."""
    if "text" not in norm and "mbox" not in norm and "mathrm" not in norm and "operatorname" not in norm:
        return False
    groups = _TEXT_GROUP_RE.findall(norm)
    if not groups or not _DIGIT_RE.search(_TEXT_GROUP_RE.sub(" ", norm)):
        return False
    return any(_DIGIT_RE.search(g) or _NEGATION_RE.search(g) for g in groups)


def _is_retraction(unit: str) -> bool:
    """Whether a unit tail holds a number or a word of negation or choice: then it is no unit."""
    return bool(_DIGIT_RE.search(unit.replace("^2", "").replace("^3", "")) or _UNIT_WORDS_RE.search(unit))


def decimal_places(text: str) -> dict[Any, int]:
    """{|value|: decimal places} of every decimal literal in text (``0.33`` -> {33/100: 2})."""
    out: dict[Any, int] = {}
    for m in _DECIMAL_RE.finditer(text):
        digits = m.group(1) or m.group(2)
        value = sympy.Rational(m.group().lstrip("+-"))
        out[value] = max(out.get(value, 0), len(digits))  # the same value written twice: the stricter
    return out


def _nesting_depth(text: str) -> int:
    depth = best = 0
    for ch in text:
        if ch in "{([":
            depth += 1
            best = max(best, depth)
        elif ch in "})]":
            depth -= 1
    return best


def _int_from_digits(digits: str) -> int:
    """int(digits) for any length: chunked, because int(str) refuses more than 4,300 digits by default."""
    sign = -1 if digits.startswith("-") else 1
    digits = digits.lstrip("+-")
    value = 0
    for i in range(0, len(digits), 4000):
        chunk = digits[i : i + 4000]
        value = value * 10 ** len(chunk) + int(chunk)
    return sign * value


# ---- fast path: numbers, fractions and short lists without the LaTeX parser --------------------------
_SIMPLE_RE = re.compile(
    r"(?:(?P<var>[a-zA-Z])\s*=\s*)?(?P<neg>-)?\s*(?:"
    r"\\[dt]?frac\{(?P<fn>\d+)\}\{(?P<fd>\d+)\}|\\[dt]?frac(?P<sn>\d)(?P<sd>\d)"
    r"|(?P<sl>\d+)\s*/\s*(?P<sr>\d+)|(?P<dec>\d*\.\d+|\d+)|(?P<inf>\\infty)"
    r")"
)
_SIMPLE_CHARS_RE = re.compile(r"[-\d\s.,/=a-zA-Z{}()\[\]\\]*")
_VAR_PREFIX_RE = re.compile(r"([a-zA-Z])\s*=\s*")


def _symbol(name: str) -> sympy.Symbol:
    """A variable as math-verify's parser makes it (real, and lower-cased: it reads ``D = 5`` as d = 5)."""
    return sympy.Symbol(name.lower(), real=True)


def _simple_value(text: str) -> tuple[Any, bool] | None:
    """(value, is_decimal) for an integer, decimal, fraction or infinity, optionally as ``x = ...``; else None."""
    m = _SIMPLE_RE.fullmatch(text)
    if m is None:
        return None
    g = m.groupdict()
    if g["inf"] is not None:
        value = sympy.oo
    elif g["dec"] is not None:
        value = sympy.Rational(g["dec"])
    else:
        num, den = (g["fn"], g["fd"]) if g["fn"] else (g["sn"], g["sd"]) if g["sn"] else (g["sl"], g["sr"])
        if int(den) == 0:
            return None
        value = sympy.Rational(int(num), int(den))
    value = -value if g["neg"] else value
    if g["var"]:
        value = sympy.Eq(_symbol(g["var"]), value, evaluate=False)
    return value, g["dec"] is not None and "." in g["dec"]


def _simple_list(norm: str) -> tuple[Any, bool] | None:
    """``a, b``, ``\\{a, b\\}``, ``(a, b)``, ``[a, b)`` of simple numbers, typed as math-verify types them:
    a brace or bare list is a set; brackets around two increasing values an interval; else a tuple."""
    if norm.startswith("\\{") and norm.endswith("\\}"):
        kind, body = "set", norm[2:-2]
    elif len(norm) > 2 and norm[0] in "([" and norm[-1] in ")]":
        kind, body = "bracket", norm[1:-1]
    else:
        kind, body = "set", norm
    parts = body.split(",")
    if len(parts) < 2:
        return None
    values = [_simple_value(p.strip()) for p in parts]
    if any(v is None or isinstance(v[0], sympy.Eq) for v in values):
        return None
    items = [v[0] for v in values]
    inexact = any(v[1] for v in values)
    if kind == "set":
        return LatexFiniteSet(*items), inexact
    if len(items) == 2 and items[0] < items[1]:
        return sympy.Interval(items[0], items[1], norm[0] == "(", norm[-1] == ")"), inexact
    return sympy.Tuple(*items), inexact


def _parse_simple(norm: str) -> ParsedAnswer | None:
    """Numbers, fractions and short lists of them without the LaTeX parser, else None.

    Why: these are most answers in GRPO batches, and the ANTLR parser costs milliseconds (tens for
    tuples) per string. The objects are what math-verify builds for the same text (exact rationals;
    decimals flagged inexact), which tests/verifiers check against the parser.
    """
    if len(norm) > 200 or not _SIMPLE_CHARS_RE.fullmatch(norm):
        return None
    found = _simple_value(norm)
    if found is None:
        var = _VAR_PREFIX_RE.match(norm)
        found = _simple_list(norm[var.end() :] if var else norm)
        if found is not None and var:  # "x = 1, 2": math-verify reads Eq(x, {1, 2})
            found = (sympy.Eq(_symbol(var.group(1)), found[0], evaluate=False), found[1])
    if found is None:
        return None
    return ParsedAnswer(norm, (found[0],), inexact=found[1], places=decimal_places(norm) if found[1] else {})


# ---- parsing ----------------------------------------------------------------------------------------
def _usable(found: list[Any]) -> tuple[Any, ...]:
    """The sympy results, without strings and without values that are no number (``12:00`` is 12/0 = zoo)."""
    return tuple(e for e in found if not isinstance(e, str) and not e.has(sympy.zoo, sympy.nan))


def _decimal_comma_reading(norm: str) -> tuple[Any, int] | None:
    """``1,22`` or ``0,111`` read as 1.22 or 0.111: a comma no thousands separator can be (not three digits
    after it, or a leading 0). None when the text is not one such number."""
    m = _DECIMAL_COMMA_RE.fullmatch(norm)
    if m is None:
        return None
    whole = m.group("int").lstrip("-")
    if len(m.group("frac")) == 3 and len(whole) <= 3 and not whole.startswith("0"):
        return None  # 1,234: a thousands separator (normalisation has already dropped it)
    return sympy.Rational(f"{m.group('int')}.{m.group('frac')}"), len(m.group("frac"))


def _with_decimal_comma(parsed: ParsedAnswer) -> ParsedAnswer:
    """Add the decimal-comma reading of ``1,22`` after its list reading {1, 22}: which one counts is decided
    against the other side (a set matches the list, a number the decimal)."""
    reading = _decimal_comma_reading(parsed.text)
    if reading is None:
        return parsed
    value, places = reading
    return ParsedAnswer(
        parsed.text, (*parsed.exprs, value), inexact=True, places={**parsed.places, abs(value): places}
    )


def parse_answer(text: Any) -> ParsedAnswer:
    """Parse one answer string (gold or extracted prediction), with or without ``$`` delimiters."""
    norm = normalize_answer_text(text)
    if _INT_RE.fullmatch(norm):
        value = _int_from_digits(norm)
        return ParsedAnswer(norm, (sympy.Integer(value),), integer=value)
    if (simple := _parse_simple(norm)) is not None:
        return _with_decimal_comma(simple)
    if _NO_VALUE_RE.search(norm[:MAX_ANSWER_CHARS]) or _retracting_text(norm[:MAX_ANSWER_CHARS]):
        return ParsedAnswer(norm)  # compared as text: only the same written answer matches
    places = decimal_places(norm) if len(norm) <= MAX_ANSWER_CHARS else {}
    inexact = bool(places) or bool(_DECIMAL_RE.search(norm[:MAX_ANSWER_CHARS]))
    if not norm or len(norm) > MAX_ANSWER_CHARS or _nesting_depth(norm) > MAX_NESTING:
        return ParsedAnswer(norm, inexact=inexact)
    exprs = _usable(mv_parse("\\boxed{" + norm + "}", list(_LATEX_TARGETS), parsing_timeout=None))
    if not exprs:
        exprs = _usable(mv_parse(norm, list(_EXPR_TARGETS), parsing_timeout=None))
    return ParsedAnswer(norm, exprs, inexact=inexact, places=places)


def parse_text_fallback(text: str) -> ParsedAnswer:
    """math-verify's own extraction over free text (no tag, no box): its first parsed result wins."""
    found = mv_parse(text, list(_LATEX_TARGETS), parsing_timeout=None)
    exprs = _usable(found)
    shown = next((e for e in found if isinstance(e, str)), "")
    if not exprs:
        return ParsedAnswer(shown)
    places = decimal_places(shown)
    return _with_decimal_comma(ParsedAnswer(shown, exprs[:1], inexact=bool(places), places=places))


def text_answer(text: str) -> str | None:
    """The answer string math-verify's free-text extraction finds in text (for prose gold answers), or None."""
    found = mv_parse(text, list(_LATEX_TARGETS), parsing_timeout=None)
    return next((e for e in found if isinstance(e, str)), None) if _usable(found) else None
