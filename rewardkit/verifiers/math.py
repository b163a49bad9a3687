"""Math answer checking: extract the final answer, parse it, and decide equivalence with the gold answer.

Built on math-verify (parsing LaTeX into sympy, and its comparison of sets, intervals, matrices,
equations and symbolic expressions) with stricter rules where math-verify is wrong for training:

* **Hedging**: a prediction that offers several different values for a single-valued gold answer
  (``7 or 8``, ``\\pm 2``, two boxes that disagree) scores 0, even if one of them is right.
* **Relative tolerance**: numbers compare with ``|a - b| <= rel_tol * max(|a|, |b|)`` when either side
  was written with a decimal; exact values (integers, fractions, exact irrationals) must be equal.
  math-verify's absolute tolerance makes ``1/3^{50}`` equal ``1/3^{49}``.
* **Long integers**: integer literals of any length compare digit by digit, past Python's
  4,300-digit ``int(str)`` limit.
* **Bare LaTeX**: answers are parsed as math whether or not they have ``$`` delimiters
  (``\\sqrt{8}``, ``\\frac{\\pi}{3}``, ``2\\pi``).
* **Bounded work**: huge values (``2^{10^9}``, ``(10^6)!``) are compared structurally, never
  evaluated; deeply nested or very long answers are compared as text. The hard wall-clock bound is the
  worker pool's job (math-verify's own ``signal.alarm`` timeouts are disabled: they break in threads).

Everything here is a pure function of its inputs (no torch, no global state but caches).
See docs/math.md for the rules with examples.
"""

from __future__ import annotations

import bisect
import decimal
import logging
import math
import numbers
import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import sympy
from latex2sympy2_extended.sets import FiniteSet as LatexFiniteSet
from math_verify import parse as mv_parse
from math_verify import verify as mv_verify
from math_verify.parser import ExprExtractionConfig, LatexExtractionConfig

# math-verify logs a warning when its signal-based timeout is disabled; the worker pool bounds time instead.
logging.getLogger("math_verify").setLevel(logging.ERROR)

DEFAULT_REL_TOL = 1e-6
MAX_ANSWER_CHARS = 1_000
"""Answers longer than this (integer literals excepted) are compared as text, not parsed: the LaTeX parser
takes about a second per thousand characters of junk, and real final answers are far shorter."""
MAX_NESTING = 60
"""Brace/parenthesis depth past which an answer is compared as text (the LaTeX parser recurses)."""
MAX_EXACT_DIGITS = 50_000
"""Values whose exact form could need more digits than this are compared structurally, never evaluated."""
FALLBACK_TAIL_CHARS = 4_000
"""Without <answer> or \\boxed, math-verify's extraction looks at this many trailing characters only."""
IRRATIONAL_REL_TOL = 1e-30
"""Two exact values, one irrational, are equal when they agree this closely at 40-digit precision."""
MAX_CANDIDATES = 8
"""More distinct candidate answers than this is hedging by itself."""

_LATEX_TARGETS = (LatexExtractionConfig(), ExprExtractionConfig())
_EXPR_TARGETS = (ExprExtractionConfig(),)


# ---- extraction -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Extraction:
    """What a completion offers as its final answer.

    ``answer`` is the final answer text (None when nothing was found); ``source`` says where it came
    from (``answer_tag``, ``boxed``, ``text`` or ``none``); ``candidates`` are all the distinct answers
    offered in the answer region, the final one last (more than one means the model may be hedging).
    """

    answer: str | None
    source: str
    candidates: tuple[str, ...] = ()


_ANSWER_OPEN = "<answer>"
_ANSWER_CLOSE = "</answer>"
_BOX_RE = re.compile(r"\\(?:boxed|fbox)(?:\s*(\{)|\s+([^\s${}]+))")
_ANSWER_OPEN_RE = re.compile(re.escape(_ANSWER_OPEN))
_ANSWER_CLOSE_RE = re.compile(re.escape(_ANSWER_CLOSE))
_DISJUNCTION_RE = re.compile(
    r"(?<![\w.])(-?\d+(?:\.\d+)?(?:/\d+)?)\s*(?:,?\s*\bor\b|\\text\{\s*or\s*\}|\\lor|\\vee)\s*"
    r"(-?\d+(?:\.\d+)?(?:/\d+)?)(?!\.?\d)(?!\w)"
)


_BRACE_RE = re.compile(r"[{}]")
_SENTENCE_END_RE = re.compile(r"(?<=[.!?])\s+(?=\S)")


def boxed_contents(text: str) -> list[str]:
    """Contents of every ``\\boxed{...}`` (balanced braces) or ``\\boxed x`` in text, in order. Linear time."""
    out: list[str] = []
    pos = 0
    while (m := _BOX_RE.search(text, pos)) is not None:
        if m.group(1) is None:  # "\boxed 5": one token
            out.append(m.group(2))
            pos = m.end()
            continue
        depth, pos = 1, len(text)  # an unclosed box swallows the rest: nothing after it can close
        for brace in _BRACE_RE.finditer(text, m.end()):
            depth += 1 if brace.group() == "{" else -1
            if depth == 0:
                out.append(text[m.end() : brace.start()])
                pos = brace.end()
                break
    return out


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


def _unique(items: list[str]) -> tuple[str, ...]:
    """Distinct non-empty stripped items, keeping the last occurrence's position (final answer last)."""
    seen: dict[str, None] = {}
    for item in items:
        item = item.strip()
        if item:
            seen.pop(item, None)
            seen[item] = None
    return tuple(seen)


def extract_answer(text: str) -> Extraction:
    """Find the final answer: last ``<answer>`` > last ``\\boxed{}`` > math-verify's extraction.

    Only the text after the last ``</think>`` is searched when there is one. Inside an answer tag, a
    ``\\boxed{}`` is unwrapped. Without tag or box the answer is left to math-verify (``source="text"``,
    the ``answer`` is the trailing text it will search) plus a check for "A or B" disjunctions.
    """
    region = text.rsplit("</think>", 1)[-1]
    tags = _answer_tag_contents(region)
    if tags:
        parts = []
        for tag in tags:
            parts.extend(boxed_contents(tag) or [tag])
        cands = _unique(parts)
        return Extraction(cands[-1], "answer_tag", cands) if cands else Extraction(None, "none")
    boxes = _unique(boxed_contents(region))
    if boxes:
        return Extraction(boxes[-1], "boxed", boxes)
    tail = region[-FALLBACK_TAIL_CHARS:].strip()
    if not tail:
        return Extraction(None, "none")
    last_sentence = _SENTENCE_END_RE.split(tail)[-1][-500:]  # "is it 7 or 8? ... it is 8." is no hedge
    hedges = _DISJUNCTION_RE.findall(last_sentence)
    cands = _unique([v for pair in hedges for v in pair]) if hedges else ()
    return Extraction(tail, "text", cands)


# ---- parsing ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ParsedAnswer:
    """An answer ready for comparison.

    ``text`` is the normalised string; ``exprs`` the sympy objects it parsed to (empty: unparseable,
    compared as text); ``integer`` the value of a plain integer literal (any length), else None;
    ``inexact`` is True when the text writes a decimal number.
    """

    text: str
    exprs: tuple[Any, ...] = ()
    integer: int | None = None
    inexact: bool = False


_DELIMS = (("$$", "$$"), ("$", "$"), ("\\(", "\\)"), ("\\[", "\\]"))
_THOUSANDS_RE = re.compile(r"(?<=\d)(?:\\,|\\!|\\;|\\:|\\ |\{,\}|~|\u2009|\u202f| )(?=\d{3}(?!\d))")
_LEFT_RIGHT_RE = re.compile(r"\\(?:left|right)\s*([()\[\]]|\\[{}])")
_COMMA_INT_RE = re.compile(r"[-+]?\d{1,3}(?:,\d{3})+(?:\.\d+)?")
_SCI_RE = re.compile(r"(?<![\w.])(\d+(?:\.\d+)?)[eE]([-+]?\d+)(?![\w.])")
_BARE_PI_RE = re.compile(r"(?<![\\a-zA-Z])pi(?![a-zA-Z])")
_INT_RE = re.compile(r"[-+]?\d+")
_DECIMAL_RE = re.compile(r"(?<![\d.])(?:\d+\.\d+|\.\d+)(?!\d)")
_MATH_WORDS = r"sqrt|pi|ln|log|sin|cos|tan|cot|sec|csc|exp|arcsin|arccos|arctan|or|and|frac|infty|inf"
_SHORT_UNITS = r"cm|mm|km|kg|mg|ml|mL|ft|in|yd|mi|lb|oz|hr|h|s|m|g|L|l"
_UNIT_TAIL_RE = re.compile(
    r"^(?P<num>[-+]?(?:\d+(?:\.\d+)?|\.\d+)(?:\\?%)?)\s*"
    rf"(?P<unit>(?:\\(?:text|mathrm|mbox)\{{[^{{}}]*\}}|(?!(?:{_MATH_WORDS})\b)[a-zA-Z]{{3,}}\.?|(?:{_SHORT_UNITS})\b)"
    r"(?:\s*\^\s*\{?[23]\}?)?(?:\s*(?:/|\\,|\s)\s*[a-zA-Z]{1,10}\.?)*)\s*$"
)
"""A number followed by unit words: "5 apples", "10 \text{ cm}^2", "3 km/h". Words of one or two letters
count only when they are common unit symbols, so "5 xy" stays an expression."""
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
    boxes = boxed_contents(text) if "\\boxed" in text or "\\fbox" in text else []
    return boxes[-1].strip() if boxes else text


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
    if (m := _UNIT_TAIL_RE.match(text)) is not None:
        text = m.group("num")
    return text


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


_SIMPLE_RE = re.compile(
    r"(?:(?P<var>[a-zA-Z])\s*=\s*)?(?P<neg>-)?\s*(?:"
    r"\\[dt]?frac\{(?P<fn>\d+)\}\{(?P<fd>\d+)\}|\\[dt]?frac(?P<sn>\d)(?P<sd>\d)"
    r"|(?P<sl>\d+)\s*/\s*(?P<sr>\d+)|(?P<dec>\d*\.\d+|\d+)|(?P<inf>\\infty)"
    r")"
)


_SIMPLE_CHARS_RE = re.compile(r"[-\d\s.,/=a-zA-Z{}()\[\]\\]*")


_VAR_PREFIX_RE = re.compile(r"([a-zA-Z])\s*=\s*")


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
        value = sympy.Eq(sympy.Symbol(g["var"], real=True), value, evaluate=False)
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
            found = (sympy.Eq(sympy.Symbol(var.group(1), real=True), found[0], evaluate=False), found[1])
    if found is None:
        return None
    return ParsedAnswer(norm, (found[0],), inexact=found[1])


def parse_answer(text: Any) -> ParsedAnswer:
    """Parse one answer string (gold or extracted prediction), with or without ``$`` delimiters."""
    norm = normalize_answer_text(text)
    if _INT_RE.fullmatch(norm):
        value = _int_from_digits(norm)
        return ParsedAnswer(norm, (sympy.Integer(value),), integer=value)
    if (simple := _parse_simple(norm)) is not None:
        return simple
    inexact = bool(_DECIMAL_RE.search(norm))
    if not norm or len(norm) > MAX_ANSWER_CHARS or _nesting_depth(norm) > MAX_NESTING:
        return ParsedAnswer(norm, inexact=inexact)
    found = mv_parse("\\boxed{" + norm + "}", list(_LATEX_TARGETS), parsing_timeout=None)
    exprs = tuple(e for e in found if not isinstance(e, str))
    if not exprs:
        exprs = tuple(
            e for e in mv_parse(norm, list(_EXPR_TARGETS), parsing_timeout=None) if not isinstance(e, str)
        )
    return ParsedAnswer(norm, exprs, inexact=inexact)


def parse_text_fallback(text: str) -> ParsedAnswer:
    """math-verify's own extraction over free text (no tag, no box): its first parsed result wins."""
    found = mv_parse(text, list(_LATEX_TARGETS), parsing_timeout=None)
    exprs = tuple(e for e in found if not isinstance(e, str))
    shown = next((e for e in found if isinstance(e, str)), "")
    if not exprs:
        return ParsedAnswer(shown)
    return ParsedAnswer(shown, exprs[:1], inexact=bool(_DECIMAL_RE.search(shown)))


# ---- size guard -------------------------------------------------------------------------------------
_FACTORIAL_LIKE = (
    "factorial",
    "factorial2",
    "gamma",
    "binomial",
    "subfactorial",
    "RisingFactorial",
    "FallingFactorial",
)


def digits_bound(expr: Any, depth: int = 0) -> float:
    """A cheap upper bound on the decimal digits exact evaluation of ``expr`` could produce.

    Why: sympy evaluates ``2^{10^9}`` or ``(10^6)!`` exactly when asked (seconds to hours, gigabytes);
    this walk of the unevaluated tree lets us refuse before asking.
    """
    if depth > 100:
        return math.inf
    if isinstance(expr, sympy.Integer):
        return max(1.0, int(expr).bit_length() * 0.30103)
    if isinstance(expr, sympy.Rational):
        return digits_bound(sympy.Integer(expr.p)) + digits_bound(sympy.Integer(expr.q))
    if isinstance(expr, sympy.MatrixBase):
        return max((digits_bound(e, depth + 1) for e in expr), default=1.0)
    args = getattr(expr, "args", ())
    if not args:
        return 1.0
    if isinstance(expr, sympy.Pow):
        base, exp = digits_bound(args[0], depth + 1), digits_bound(args[1], depth + 1)
        if exp > 7:
            return math.inf
        e_val = abs(int(args[1].p)) if isinstance(args[1], sympy.Rational) else 10**exp
        return base * max(e_val, 1)
    if type(expr).__name__ in _FACTORIAL_LIKE:
        n_digits = max(digits_bound(a, depth + 1) for a in args)
        return math.inf if n_digits > 7 else 10**n_digits * n_digits
    sizes = [digits_bound(a, depth + 1) for a in args if isinstance(a, sympy.Basic | sympy.MatrixBase)]
    if isinstance(expr, sympy.Mul):
        return sum(sizes) or 1.0
    return max(sizes, default=1.0) + 1


# ---- equivalence ------------------------------------------------------------------------------------
_MULTI_TYPES = (sympy.Set, sympy.Tuple, sympy.MatrixBase)


def _pct_base(expr: Any) -> Any | None:
    """``x`` when expr is math-verify's percent form ``x * UnevaluatedExpr(1/100)``, else None."""
    if isinstance(expr, sympy.Mul) and len(expr.args) == 2:
        if expr.args[1] == sympy.UnevaluatedExpr(sympy.Rational(1, 100)):
            return expr.args[0]
    return None


def _is_assignment(expr: Any) -> bool:
    return isinstance(expr, sympy.Eq) and isinstance(expr.lhs, sympy.Symbol)


def _unwrap(gold: Any, pred: Any) -> tuple[Any, Any]:
    """Follow the gold's form: ``x = 3`` vs ``3`` compares 3 with 3; a singleton set is its element."""
    if _is_assignment(gold) and not isinstance(pred, sympy.Eq):
        gold = gold.rhs
    elif _is_assignment(pred) and not isinstance(gold, sympy.Eq):
        pred = pred.rhs
    elif _is_assignment(gold) and _is_assignment(pred) and gold.lhs.name == pred.lhs.name:
        gold, pred = gold.rhs, pred.rhs
    if isinstance(pred, sympy.FiniteSet) and len(pred) == 1 and not isinstance(gold, sympy.Set):
        pred = next(iter(pred))
    if isinstance(gold, sympy.FiniteSet) and len(gold) == 1 and not isinstance(pred, sympy.Set):
        gold = next(iter(gold))
    return gold, pred


def _numeric_values(expr: Any) -> list[tuple[Any, bool]] | None:
    """[(value, exact)] for a number (two values for a percentage: x/100 and x), or None if not a number.

    Decimals become the exact fractions they denote (0.333333 -> 333333/10^6), so the tolerance test
    below is exact arithmetic for everything but irrationals.
    """
    if isinstance(expr, _MULTI_TYPES) or not isinstance(expr, sympy.Expr) or expr.free_symbols:
        return None
    if digits_bound(expr) > MAX_EXACT_DIGITS:
        return None
    floats = expr.atoms(sympy.Float)
    if floats:
        expr = expr.xreplace({f: sympy.Rational(str(f)) for f in floats})
    forms = [expr]
    if (base := _pct_base(expr)) is not None:
        forms = [base / 100, base]
    out = []
    for form in forms:
        exact = form.doit()
        if exact.is_Rational:
            out.append((exact, True))
            continue
        value = sympy.N(exact, 40)
        if not value.is_number or value.has(sympy.zoo, sympy.oo, -sympy.oo, sympy.nan):
            return None
        out.append((value, False))
    return out


def _close(a: tuple[Any, bool], b: tuple[Any, bool], rel_tol: float, inexact: bool) -> bool:
    """``|a - b| <= tol * max(|a|, |b|)``: tol is ``rel_tol`` when a decimal was written, else exact.

    Exact means equal rationals, or irrationals equal to 30 significant digits (``\\pi`` is not 355/113).
    """
    (va, exact_a), (vb, exact_b) = a, b
    if exact_a and exact_b:
        if not inexact:
            return bool(va == vb)
        return bool(abs(va - vb) <= sympy.Rational(repr(rel_tol)) * max(abs(va), abs(vb)))
    tol = rel_tol * (1 + 1e-12) if inexact else IRRATIONAL_REL_TOL
    diff = abs(sympy.N(va - vb, 40))
    scale = max(abs(sympy.N(va, 40)), abs(sympy.N(vb, 40)))
    return bool(diff <= tol * scale)


def _numbers_equal(gold: Any, pred: Any, rel_tol: float, inexact: bool) -> bool | None:
    """True/False when both sides are plain numbers (relative tolerance), None when the rule does not apply."""
    gv, pv = _numeric_values(gold), _numeric_values(pred)
    if gv is None or pv is None:
        return None
    return any(_close(g, p, rel_tol, inexact) for g in gv for p in pv)


def _pairwise(golds: list[Any], preds: list[Any], ordered: bool, rel_tol: float, inexact: bool) -> bool:
    if len(golds) != len(preds):
        return False
    if ordered:
        return all(exprs_equal(g, p, rel_tol=rel_tol, inexact=inexact) for g, p in zip(golds, preds))
    remaining = list(preds)
    for g in golds:  # greedy matching: fine while elements are pairwise distinct beyond the tolerance
        hit = next(
            (i for i, p in enumerate(remaining) if exprs_equal(g, p, rel_tol=rel_tol, inexact=inexact)), None
        )
        if hit is None:
            return False
        remaining.pop(hit)
    return True


def _written_order(expr: Any) -> list[Any]:
    """Elements as written: the parser's sets remember it, so a tuple gold can be compared in order."""
    return list(getattr(expr, "_unsorted_args", None) or expr.args)


def _structured_equal(gold: Any, pred: Any, rel_tol: float, inexact: bool) -> bool | None:
    """Element-wise comparison (so the relative tolerance reaches inside) of sets, tuples, matrices, intervals."""
    if isinstance(gold, _MULTI_TYPES) != isinstance(pred, _MULTI_TYPES):
        scalar = pred if isinstance(gold, _MULTI_TYPES) else gold
        if isinstance(scalar, sympy.Expr):  # an interval or set is never one number (relations go on)
            return False
    if isinstance(gold, sympy.FiniteSet) and isinstance(pred, sympy.FiniteSet):
        return _pairwise(list(gold.args), list(pred.args), False, rel_tol, inexact)
    if isinstance(gold, sympy.Tuple | sympy.FiniteSet) and isinstance(pred, sympy.Tuple | sympy.FiniteSet):
        return _pairwise(_written_order(gold), _written_order(pred), True, rel_tol, inexact)
    if isinstance(gold, sympy.MatrixBase) and isinstance(pred, sympy.MatrixBase):
        return gold.shape == pred.shape and _pairwise(list(gold), list(pred), True, rel_tol, inexact)
    if isinstance(gold, sympy.Interval) and isinstance(pred, sympy.Interval):
        same_ends = gold.left_open == pred.left_open and gold.right_open == pred.right_open
        return same_ends and _pairwise([gold.start, gold.end], [pred.start, pred.end], True, rel_tol, inexact)
    return None


def is_single_valued(expr: Any) -> bool:
    """A gold answer naming one value (not a set, tuple, interval, matrix or list of assignments)."""
    if _is_assignment(expr):
        expr = expr.rhs
    if isinstance(expr, sympy.FiniteSet):
        return len(expr) <= 1
    return not isinstance(expr, _MULTI_TYPES)


def exprs_equal(gold: Any, pred: Any, *, rel_tol: float = DEFAULT_REL_TOL, inexact: bool = False) -> bool:
    """Whether two parsed answers are equivalent (gold first: the comparison follows the gold's form)."""
    gold, pred = _unwrap(gold, pred)
    if gold == pred:
        return True
    if is_single_valued(gold) and isinstance(pred, sympy.FiniteSet) and len(pred) > 1:
        return False  # "7 or 8", "\pm 2" against one value: hedging
    if max(digits_bound(gold), digits_bound(pred)) > MAX_EXACT_DIGITS:
        return False  # structurally different and too big to evaluate: never simplify 2^{10^9}
    for rule in (_numbers_equal, _structured_equal):
        verdict = rule(gold, pred, rel_tol, inexact)
        if verdict is not None:
            return verdict
    return bool(mv_verify(gold, pred, timeout_seconds=None))


def answers_equal(gold: ParsedAnswer, pred: ParsedAnswer, *, rel_tol: float = DEFAULT_REL_TOL) -> bool:
    """Equivalence of two parsed answers; unparsed answers fall back to exact text equality."""
    if gold.integer is not None and pred.integer is not None:
        return gold.integer == pred.integer
    if not gold.exprs or not pred.exprs:
        return bool(gold.text) and gold.text == pred.text
    inexact = gold.inexact or pred.inexact
    return any(exprs_equal(g, p, rel_tol=rel_tol, inexact=inexact) for g in gold.exprs for p in pred.exprs)


# ---- the verdict ------------------------------------------------------------------------------------
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
    text = normalize_answer_text(str(gold))
    if not text:
        raise ValueError(f"gold answer is empty: {gold!r}")
    return text


def _other_candidate_mismatch(extraction: Extraction, gold: ParsedAnswer, rel_tol: float) -> str | None:
    """Why the extra answers a completion offers disqualify it (hedging), or None if they all agree."""
    others = [c for c in extraction.candidates if c != extraction.answer]
    if len(others) >= MAX_CANDIDATES:
        return f"hedging: {len(others) + 1} different candidate answers"
    for cand in others:
        if not answers_equal(gold, parse_prediction(cand), rel_tol=rel_tol):
            return f"hedging: also offers {cand[:80]!r}"
    return None


def check(extraction: Extraction, gold: str, *, rel_tol: float = DEFAULT_REL_TOL) -> MathVerdict:
    """Decide one extracted answer against a normalised gold string (see ``normalize_gold``)."""
    if extraction.answer is None:
        return MathVerdict(False, False, None, "no answer found")
    parsed_gold = parse_gold(gold)
    if extraction.source == "text":
        pred = parse_text_fallback(extraction.answer)
        shown = pred.text or None
        if not pred.exprs:
            return MathVerdict(False, False, shown, "no parseable answer in the text")
    else:
        pred, shown = parse_prediction(extraction.answer), extraction.answer
    single = not parsed_gold.exprs or is_single_valued(parsed_gold.exprs[0])
    if not answers_equal(parsed_gold, pred, rel_tol=rel_tol):
        if single and any(isinstance(e, sympy.FiniteSet) and len(e) > 1 for e in pred.exprs):
            return MathVerdict(False, True, shown, "hedging: several values for a single-valued answer")
        return MathVerdict(False, True, shown, "not equivalent to the gold answer")
    if single and (hedge := _other_candidate_mismatch(extraction, parsed_gold, rel_tol)) is not None:
        return MathVerdict(False, True, shown, hedge)
    return MathVerdict(True, True, shown)


def verify_math(text: str, gold: Any, *, rel_tol: float = DEFAULT_REL_TOL) -> MathVerdict:
    """Check a completion's text against a gold answer (given with or without ``$`` delimiters)."""
    return check(extract_answer(text), normalize_gold(gold), rel_tol=rel_tol)
