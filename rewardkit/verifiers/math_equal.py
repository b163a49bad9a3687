"""Equivalence of parsed math answers: numbers (relative tolerance, rounding), structures, relations, sets.

Part of the math verifier (``rewardkit.verifiers.math`` states the rules; docs/math.md has examples).
What no rule here decides is left to math-verify's ``verify`` (symbolic comparison), with its
signal-based timeout disabled: the worker pool bounds time.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, NamedTuple

import sympy
from latex2sympy2_extended.logic import And as LatexAnd
from latex2sympy2_extended.sets import FiniteSet as LatexFiniteSet
from math_verify import verify as mv_verify

from rewardkit.verifiers.math_parse import ParsedAnswer

DEFAULT_REL_TOL = 1e-6
MAX_EXACT_DIGITS = 50_000
"""Values whose exact form could need more digits than this are compared structurally, never evaluated."""
IRRATIONAL_REL_TOL = 1e-30
"""Two exact values, one irrational, are equal when they agree this closely at 40-digit precision."""
MIN_ROUNDED_DIGITS = 2
"""A decimal matches an exact value it rounds only when it has at least this many significant digits
(``0.33`` for 1/3, not ``0.3``; ``0.00`` for 1/3^{50} has none)."""


@dataclass(frozen=True)
class Tolerance:
    """How closely numbers must agree: ``rel_tol`` applies when ``inexact`` (a decimal was written on
    either side); ``places`` maps each written decimal's absolute value to its decimal places."""

    rel_tol: float = DEFAULT_REL_TOL
    inexact: bool = False
    places: dict[Any, int] = field(default_factory=dict)


EXACT = Tolerance()


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


# ---- numbers ----------------------------------------------------------------------------------------
_MULTI_TYPES = (sympy.Set, sympy.Tuple, sympy.MatrixBase)


class _Num(NamedTuple):
    """One reading of a number: ``value`` is exact (a Rational) when ``rational``, else 40 digits;
    ``decimal`` says a decimal was written in it; ``places`` is set when it is one decimal literal
    (times a power of ten) and gives the decimal places it was written with."""

    value: Any
    rational: bool
    decimal: bool
    places: int | None


def _pct_base(expr: Any) -> Any | None:
    """``x`` when expr is math-verify's percent form ``x * UnevaluatedExpr(1/100)``, else None."""
    if isinstance(expr, sympy.Mul) and len(expr.args) == 2:
        if expr.args[1] == sympy.UnevaluatedExpr(sympy.Rational(1, 100)):
            return expr.args[0]
    return None


def _written_places(expr: Any, tol: Tolerance) -> int | None:
    """Decimal places of a lone decimal (``0.33``, ``-2.5``, ``2.9 \\times 10^{-10}``) as written, else None."""
    shift = 0
    if isinstance(expr, sympy.Mul) and len(expr.args) == 2:
        pows = [a for a in expr.args if isinstance(a, sympy.Pow) and a.base == 10 and a.exp.is_Integer]
        floats = [a for a in expr.args if isinstance(a, sympy.Float)]
        if len(pows) != 1 or len(floats) != 1:
            return None
        expr, shift = floats[0], int(pows[0].exp)
    if isinstance(expr, sympy.Float):
        expr = sympy.Rational(str(expr))
    elif not isinstance(expr, sympy.Rational) or not tol.places:
        return None  # the fast path reads decimals as exact Rationals: their written value finds them
    places = tol.places.get(abs(expr))
    return None if places is None else places - shift


def _numeric_values(expr: Any, tol: Tolerance) -> list[_Num] | None:
    """The readings of a number (two for a percentage: x/100 and x), or None if expr is not a number.

    Decimals become the exact fractions they denote (0.333333 -> 333333/10^6), so the tolerance test
    below is exact arithmetic for everything but irrationals.
    """
    if isinstance(expr, _MULTI_TYPES) or not isinstance(expr, sympy.Expr) or expr.free_symbols:
        return None
    if digits_bound(expr) > MAX_EXACT_DIGITS:
        return None
    base = _pct_base(expr)
    forms = [(expr, 0)] if base is None else [(base / 100, 2), (base, 0)]
    out = []
    for form, pct_shift in forms:
        places = _written_places(base if base is not None else form, tol)
        floats = form.atoms(sympy.Float)
        if floats:
            form = form.xreplace({f: sympy.Rational(str(f)) for f in floats})
        exact = form.doit()
        written = None if places is None else places + pct_shift
        decimal = bool(floats) or written is not None
        if exact.is_Rational:
            out.append(_Num(exact, True, decimal, written))
            continue
        value = sympy.N(exact, 40)
        if not value.is_number or value.has(sympy.zoo, sympy.oo, -sympy.oo, sympy.nan):
            return None
        out.append(_Num(value, False, decimal, written))
    return out


def _rounds_to(dec: _Num, other: _Num) -> bool:
    """Whether decimal ``dec`` is ``other``'s exact value rounded at the places ``dec`` is written with.

    Needs at least MIN_ROUNDED_DIGITS significant digits, so small magnitudes are not equal by accident.
    """
    if dec.places is None or other.decimal or not dec.rational:
        return False
    digits = abs(dec.value) * sympy.Integer(10) ** dec.places
    if not digits.is_Integer or len(str(int(digits))) < MIN_ROUNDED_DIGITS or digits == 0:
        return False
    half_unit = sympy.Rational(1, 2) / sympy.Integer(10) ** dec.places
    diff = abs(other.value - dec.value) if other.rational else abs(sympy.N(other.value - dec.value, 40))
    return bool(diff <= half_unit)


def _close(a: _Num, b: _Num, tol: Tolerance) -> bool:
    """``|a - b| <= tol * max(|a|, |b|)``: tol is ``rel_tol`` when a decimal was written, else exact; or a
    decimal that is the other (exact) number rounded at its written places.

    Exact means equal rationals, or irrationals equal to 30 significant digits (``\\pi`` is not 355/113).
    """
    if a.rational and b.rational:
        if not tol.inexact:
            return bool(a.value == b.value)
        rel = sympy.Rational(repr(tol.rel_tol))
        if abs(a.value - b.value) <= rel * max(abs(a.value), abs(b.value)):
            return True
    else:
        rel_tol = tol.rel_tol * (1 + 1e-12) if tol.inexact else IRRATIONAL_REL_TOL
        diff = abs(sympy.N(a.value - b.value, 40))
        if diff <= rel_tol * max(abs(sympy.N(a.value, 40)), abs(sympy.N(b.value, 40))):
            return True
    return _rounds_to(a, b) or _rounds_to(b, a)


def _numbers_equal(gold: Any, pred: Any, tol: Tolerance) -> bool | None:
    """True/False when both sides are plain numbers, None when the rule does not apply."""
    gv, pv = _numeric_values(gold, tol), _numeric_values(pred, tol)
    if gv is None or pv is None:
        return None
    return any(_close(g, p, tol) for g in gv for p in pv)


# ---- structures -------------------------------------------------------------------------------------
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


def _pairwise(golds: list[Any], preds: list[Any], ordered: bool, tol: Tolerance) -> bool:
    if len(golds) != len(preds):
        return False
    if ordered:
        return all(exprs_equal(g, p, tol) for g, p in zip(golds, preds))
    remaining = list(preds)
    for g in golds:  # greedy matching: fine while elements are pairwise distinct beyond the tolerance
        hit = next((i for i, p in enumerate(remaining) if exprs_equal(g, p, tol)), None)
        if hit is None:
            return False
        remaining.pop(hit)
    return True


def written_order(expr: Any) -> list[Any]:
    """Elements as written: the parser's sets remember it, so a tuple gold can be compared in order."""
    return list(getattr(expr, "_unsorted_args", None) or expr.args)


def _structured_equal(gold: Any, pred: Any, tol: Tolerance) -> bool | None:
    """Element-wise comparison (so the tolerances reach inside) of sets, tuples, matrices, intervals."""
    if isinstance(gold, _MULTI_TYPES) != isinstance(pred, _MULTI_TYPES):
        scalar = pred if isinstance(gold, _MULTI_TYPES) else gold
        if isinstance(scalar, sympy.Expr) and not isinstance(scalar, sympy.MatrixExpr):
            return False  # an interval or set is never one number (relations and A + B of matrices go on)
    if isinstance(gold, sympy.FiniteSet) and isinstance(pred, sympy.FiniteSet):
        return _pairwise(list(gold.args), list(pred.args), False, tol)
    if isinstance(gold, sympy.Tuple | sympy.FiniteSet) and isinstance(pred, sympy.Tuple | sympy.FiniteSet):
        return _pairwise(written_order(gold), written_order(pred), True, tol)
    if isinstance(gold, sympy.MatrixBase) and isinstance(pred, sympy.MatrixBase):
        return gold.shape == pred.shape and _pairwise(list(gold), list(pred), True, tol)
    if isinstance(gold, sympy.Interval) and isinstance(pred, sympy.Interval):
        same_ends = gold.left_open == pred.left_open and gold.right_open == pred.right_open
        return same_ends and _pairwise([gold.start, gold.end], [pred.start, pred.end], True, tol)
    return None


# ---- relations and sets -----------------------------------------------------------------------------
def _inequality_symbol(expr: Any) -> sympy.Symbol | None:
    """The one variable of an inequality or chain of them (``-2 \\le x \\le 7``), else None."""
    parts = expr.args if isinstance(expr, LatexAnd | sympy.And) else (expr,)
    if not parts or not all(isinstance(p, sympy.core.relational._Inequality) for p in parts):
        return None
    symbols = expr.free_symbols
    if len(symbols) != 1 or expr.atoms(sympy.core.function.AppliedUndef):
        return None
    return next(iter(symbols))


def _as_set(relation: Any, other: Any) -> Any | None:
    """The solution set of an inequality in one variable, when the other side is a set (or ``x \\in S``)
    in the same variable; None when the rule does not apply."""
    var = _inequality_symbol(relation)
    if var is None:
        return None
    if isinstance(other, sympy.Eq) and isinstance(other.rhs, sympy.Set):
        if not isinstance(other.lhs, sympy.Symbol) or other.lhs.name.lower() != var.name.lower():
            return None
    elif not isinstance(other, sympy.Set):
        return None
    return _solution_set(relation)


_BOUNDS = {  # relation type -> (lower bound?, open?), for "x OP c"
    sympy.StrictGreaterThan: (True, True),
    sympy.GreaterThan: (True, False),
    sympy.StrictLessThan: (False, True),
    sympy.LessThan: (False, False),
}
_FLIPPED = {
    sympy.StrictGreaterThan: sympy.StrictLessThan,
    sympy.GreaterThan: sympy.LessThan,
    sympy.StrictLessThan: sympy.StrictGreaterThan,
    sympy.LessThan: sympy.GreaterThan,
}


def _bound_interval(relation: Any) -> Any | None:
    """``x \\le 7`` or ``-2 \\le x`` as an interval without sympy's solver; None for anything else."""
    kind, lhs, rhs = type(relation), relation.lhs, relation.rhs
    if isinstance(rhs, sympy.Symbol) and lhs.is_number:
        kind, lhs, rhs = _FLIPPED.get(kind), rhs, lhs
    if kind not in _BOUNDS or not isinstance(lhs, sympy.Symbol) or not rhs.is_number:
        return None
    lower, is_open = _BOUNDS[kind]
    if lower:
        return sympy.Interval(rhs, sympy.oo, is_open, True)
    return sympy.Interval(-sympy.oo, rhs, True, is_open)


@lru_cache(maxsize=1024)
def _solution_set(relation: Any) -> Any | None:
    """The relation's solution set: bounds directly, else ``as_set()`` once per relation (sympy's
    inequality solver costs tens of milliseconds)."""
    parts = relation.args if isinstance(relation, sympy.And) else (relation,)
    bounds = [_bound_interval(p) for p in parts]
    if all(b is not None for b in bounds):
        return sympy.Intersection(*bounds)
    try:
        solved = relation.as_set()
    except Exception:  # sympy cannot solve it: leave the pair to math-verify
        return None
    return solved if isinstance(solved, sympy.Interval | sympy.Union | sympy.FiniteSet) else None


def _relations_as_sets(gold: Any, pred: Any) -> tuple[Any, Any]:
    """``-2 \\le x \\le 7`` against ``[-2, 7]`` or ``x \\in [-2, 7]``: compare solution sets (either side)."""
    if (solved := _as_set(pred, gold)) is not None:
        return (gold.rhs if isinstance(gold, sympy.Eq) else gold), solved
    if (solved := _as_set(gold, pred)) is not None:
        return solved, (pred.rhs if isinstance(pred, sympy.Eq) else pred)
    return gold, pred


def is_single_valued(expr: Any) -> bool:
    """A gold answer naming one value (not a set, tuple, interval, matrix or list of assignments)."""
    if isinstance(expr, sympy.Eq):
        expr = expr.rhs
    if isinstance(expr, sympy.FiniteSet):
        return len(expr) <= 1
    return not isinstance(expr, _MULTI_TYPES)


def _false_equation(expr: Any, tol: Tolerance) -> bool:
    """Whether an equation or a chain of them (``7 = 42``, ``3 = 4 = 42``, ``x = 7 = 42``) equates two
    different numbers: math-verify reads its last side, so a false chain ending on the gold would pass."""
    parts = expr.args if isinstance(expr, LatexAnd | sympy.And) else (expr,)
    for part in parts:
        if isinstance(part, sympy.Eq) and not part.free_symbols:
            same = _numbers_equal(part.lhs, part.rhs, tol)
            if same is False:
                return True
    return False


def exprs_equal(gold: Any, pred: Any, tol: Tolerance = EXACT) -> bool:
    """Whether two parsed answers are equivalent (gold first: the comparison follows the gold's form)."""
    if isinstance(pred, sympy.Eq | LatexAnd | sympy.And) and _false_equation(pred, tol):
        return False
    gold, pred = _unwrap(*_relations_as_sets(gold, pred))
    if gold == pred:
        return True
    if is_single_valued(gold) and isinstance(pred, sympy.FiniteSet) and len(pred) > 1:
        return False  # "7 or 8", "\pm 2" against one value: hedging
    if max(digits_bound(gold), digits_bound(pred)) > MAX_EXACT_DIGITS:
        return False  # structurally different and too big to evaluate: never simplify 2^{10^9}
    for rule in (_numbers_equal, _structured_equal):
        verdict = rule(gold, pred, tol)
        if verdict is not None:
            return verdict
    return bool(mv_verify(gold, pred, timeout_seconds=None))


def tolerance(rel_tol: float, *answers: ParsedAnswer) -> Tolerance:
    """The tolerance for comparing these answers: inexact if any writes a decimal; their decimals' places."""
    places: dict[Any, int] = {}
    for answer in answers:
        for value, n in answer.places.items():
            places[value] = max(places.get(value, 0), n)
    return Tolerance(rel_tol, any(a.inexact for a in answers), places)


def answers_equal(gold: ParsedAnswer, pred: ParsedAnswer, *, rel_tol: float = DEFAULT_REL_TOL) -> bool:
    """Equivalence of two parsed answers; unparsed answers fall back to exact text equality."""
    if gold.integer is not None and pred.integer is not None:
        return gold.integer == pred.integer
    if not gold.exprs or not pred.exprs:
        return bool(gold.text) and gold.text == pred.text
    tol = tolerance(rel_tol, gold, pred)
    return any(exprs_equal(g, p, tol) for g in gold.exprs for p in pred.exprs)


# ---- several answers at once ------------------------------------------------------------------------
def values_of(expr: Any) -> list[Any]:
    """The values an answer names: a set's elements (as written), an assignment's value, else the answer."""
    if isinstance(expr, sympy.FiniteSet):
        return written_order(expr)
    if isinstance(expr, sympy.Eq) and isinstance(expr.rhs, sympy.FiniteSet):
        return written_order(expr.rhs)
    return [expr]


def union_of(answers: list[ParsedAnswer], tol: Tolerance) -> Any | None:
    """One set of every value the answers name, each once, in the order written (None if one is unparsed)."""
    values: list[Any] = []
    for answer in answers:
        if not answer.exprs:
            return None
        for value in values_of(answer.exprs[0]):
            if not any(exprs_equal(value, seen, tol) for seen in values):
                values.append(value)
    return LatexFiniteSet(*values)


def within(gold: Any, pred: ParsedAnswer, tol: Tolerance) -> bool:
    """Whether every value ``pred`` names is one of the (multi-valued) gold's values, or the whole gold."""
    if not pred.exprs:
        return False
    members = list(gold.args) if isinstance(gold, sympy.Tuple) else values_of(gold)
    return all(any(exprs_equal(m, v, tol) for m in [*members, gold]) for v in values_of(pred.exprs[0]))
