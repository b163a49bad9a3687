"""The math verifier's rules one by one: extraction, normalisation, strictness, size guard, fast path."""

from __future__ import annotations

import concurrent.futures
import math
import threading
import time
from decimal import Decimal
from fractions import Fraction

import pytest
import sympy
from math_verify import parse as mv_parse

from rewardkit.verifiers import math as vm
from rewardkit.verifiers import math_parse
from rewardkit.verifiers.math import (
    answers_equal,
    boxed_contents,
    digits_bound,
    extract_answer,
    normalize_answer_text,
    normalize_gold,
    parse_answer,
    verify_math,
)


# ---- extraction ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "answer", "source"),
    [
        ("<answer>5</answer>", "5", "answer_tag"),
        ("<answer>3</answer> then <answer> 5 </answer>", "5", "answer_tag"),
        ("\\boxed{1} <answer>5</answer>", "5", "answer_tag"),
        ("<answer>the value is \\boxed{5}</answer>", "5", "answer_tag"),
        ("<answer>5", "5", "answer_tag"),  # unclosed final tag runs to the end
        ("\\boxed{\\frac{1}{2}} and \\boxed{\\frac{3}{4}}", "\\frac{3}{4}", "boxed"),
        ("\\boxed{a^{2}+\\{b\\}}", "a^{2}+\\{b\\}", "boxed"),
        ("so \\boxed 7 wins", "7", "boxed"),
        ("\\fbox{9}", "9", "boxed"),
        ("<think>\\boxed{1}</think> The answer is 2", "The answer is 2", "text"),
        ("<think><answer>1</answer></think>\\boxed{2}", "2", "boxed"),
    ],
)
def test_extraction_precedence(text, answer, source):
    found = extract_answer(text)
    assert (found.answer, found.source) == (answer, source)


def test_extraction_finds_nothing():
    assert extract_answer("").source == "none"
    assert extract_answer("<answer>  </answer>").answer is None
    assert extract_answer("</think>   ").answer is None


def test_candidates_keep_final_answer_last_and_distinct():
    found = extract_answer("\\boxed{7} \\boxed{8} \\boxed{7}")
    assert found.candidates == ("8", "7") and found.answer == "7"
    assert extract_answer("The answer is 7 or 8.").candidates == ("7", "8")


def test_boxed_contents_is_linear_on_megabytes():
    text = "\\boxed{" * 200_000 + "x"  # never closed
    start = time.perf_counter()
    assert boxed_contents(text) == []
    assert boxed_contents("\\boxed{" + "{" * 500_000 + "}" * 500_000 + "}") == ["{" * 500_000 + "}" * 500_000]
    assert time.perf_counter() - start < 5


# ---- normalisation ------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("raw", "normalized"),
    [
        ("$\\frac{1}{2}$", "\\frac{1}{2}"),
        ("$$x$$", "x"),
        ("\\(3\\)", "3"),
        ("\\[ 3 \\]", "3"),
        ("\\boxed{4}", "4"),
        ("1,234,567", "1234567"),
        ("1\\,234", "1234"),
        ("2.5e-3", "2.5\\times 10^{-3}"),
        ("pi/2", "\\pi/2"),
        ("10 cm", "10"),
        ("3 hours.", "3"),
        ("\\left(1, 2\\right)", "(1, 2)"),
        ("x**2", "x^2"),
    ],
)
def test_normalize_answer_text(raw, normalized):
    assert normalize_answer_text(raw) == normalized


def test_normalize_gold_accepts_numbers_and_rejects_missing():
    assert normalize_gold(7) == "7"
    assert normalize_gold(7.0) == "7"
    assert normalize_gold("$7$") == "7"
    for bad in (None, True, "", "$ $"):
        with pytest.raises(ValueError, match="gold answer"):
            normalize_gold(bad)


def test_normalize_gold_accepts_numeric_scalars_from_datasets():
    np = pytest.importorskip("numpy")
    assert normalize_gold(np.int64(3)) == "3" and normalize_gold(np.float64(2.0)) == "2"
    assert normalize_gold(Fraction(1, 2)) == "1/2" and normalize_gold(Decimal("0.5")) == "0.5"


@pytest.mark.parametrize("bad", [{"a": 1}, ["4"], ("1", "2"), {4}, b"4", 1 + 2j, object()])
def test_normalize_gold_names_the_type_it_cannot_take(bad):
    with pytest.raises(ValueError, match=f"gold answer is a {type(bad).__name__}, not a string or a number"):
        normalize_gold(bad)


# ---- strictness rules ---------------------------------------------------------------------------------
def test_hedging_is_zero_only_for_single_valued_gold():
    assert not verify_math("<answer>7 or 8</answer>", "7").correct
    assert "hedging" in verify_math("<answer>7 or 8</answer>", "7").reason
    assert "hedging" in verify_math("\\boxed{7} \\boxed{8}", "8").reason
    assert verify_math("<answer>7 or 8</answer>", "7, 8").correct  # a two-valued gold
    assert verify_math("\\boxed{0.5} then \\boxed{\\frac{1}{2}}", "1/2").correct  # same value twice


def test_plain_text_hedge_is_read_from_the_last_sentence_only():
    assert verify_math("Is it 7 or 8? Checking again, it is 8.", "8").correct
    assert not verify_math("Checking again, it is 7 or 8.", "8").correct


def test_too_many_candidates_is_hedging():
    text = " ".join(f"\\boxed{{{i}}}" for i in range(20)) + " \\boxed{3}"
    verdict = verify_math(text, "3")
    assert not verdict.correct and "hedging" in verdict.reason


@pytest.mark.parametrize("exponent", [5, 20, 49, 300])
def test_relative_tolerance_separates_tiny_magnitudes(exponent):
    gold = f"\\frac{{1}}{{3^{{{exponent}}}}}"
    assert verify_math(f"\\boxed{{\\frac{{1}}{{3^{{{exponent}}}}}}}", gold).correct
    assert not verify_math(f"\\boxed{{\\frac{{1}}{{3^{{{exponent + 1}}}}}}}", gold).correct


def test_relative_tolerance_is_configurable_and_inclusive():
    assert verify_math("<answer>0.333333</answer>", "1/3").correct  # exactly at 1e-6 relative
    # 0.3333331 is no rounding of 1/3 (0.3333333), so only the relative tolerance can accept it
    assert verify_math("<answer>0.3333331</answer>", "1/3").correct
    assert not verify_math("<answer>0.3333331</answer>", "1/3", rel_tol=1e-7).correct
    assert verify_math("<answer>0.33</answer>", "1/3", rel_tol=0.02).correct


def test_exact_values_compare_exactly():
    # no decimal written: 10^12 + 1 vs 10^12 differ by 1e-12 relative, and must still differ
    assert not verify_math("<answer>1000000000001</answer>", "10^{12}").correct
    assert not verify_math("<answer>\\frac{1000001}{1000000}</answer>", "1").correct


def test_long_integers_past_the_int_str_limit():
    digits = "7" * 10_000
    assert verify_math(f"<answer>{digits}</answer>", digits).correct
    assert not verify_math(f"<answer>{digits}8</answer>", digits).correct
    assert verify_math(f"<answer>{'1' + '0' * 6000}</answer>", "10^{6000}").correct
    assert parse_answer(digits).integer == 7 * (10**10_000 - 1) // 9


def test_bare_latex_parses_without_delimiters():
    for text, value in (
        ("\\sqrt{8}", 2 * math.sqrt(2)),
        ("\\frac{\\pi}{3}", math.pi / 3),
        ("2\\pi", 2 * math.pi),
    ):
        parsed = parse_answer(text)
        assert parsed.exprs, text
        assert float(sympy.N(parsed.exprs[0])) == pytest.approx(value)


# ---- bounded work -------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "latex", ["2^{10^9}", "9^{9^{9^{9}}}", "(10^6)!", "10^{10^{10}}", "\\binom{10^{9}}{10^{8}}"]
)
def test_huge_values_are_never_evaluated(latex):
    parsed = parse_answer(latex)
    assert parsed.exprs and digits_bound(parsed.exprs[0]) > vm.MAX_EXACT_DIGITS
    start = time.perf_counter()
    assert not answers_equal(parse_answer("5"), parsed)
    assert not answers_equal(parsed, parse_answer("5"))
    assert answers_equal(parsed, parse_answer(latex))
    assert time.perf_counter() - start < 2


def test_digits_bound_is_an_upper_bound():
    for text in ("2^{100}", "10^{5000}", "12!", "\\frac{3^{40}}{7}", "(2^{10})^{3}"):
        expr = parse_answer(text).exprs[0]
        exact = int(abs(sympy.floor(expr.doit())))
        assert digits_bound(expr) >= exact.bit_length() * math.log10(2) - 1, text


def test_deep_nesting_and_long_answers_fall_back_to_text():
    nested = "\\frac{1}{" * 500 + "2" + "}" * 500
    start = time.perf_counter()
    assert parse_answer(nested).exprs == ()
    assert verify_math(f"<answer>{nested}</answer>", nested).correct  # same text
    assert not verify_math(f"<answer>{nested}</answer>", "2").correct
    assert parse_answer("x+" * 20_000 + "1").exprs == ()
    assert time.perf_counter() - start < 5


# ---- fast path = parser path --------------------------------------------------------------------------
FAST_PATH_TEXTS = [
    "42", "-7", "3.5", "0.5", "-0.25", ".5", "\\frac{3}{4}", "-\\frac{3}{4}", "\\dfrac{1}{2}", "\\frac12",
    "3/4", "x = 5", "x = -\\frac{1}{2}", "y=2.5", "(9, -5)", "(1, 2)", "[1, 2]", "[2, 1]", "(1, 2]",
    "\\{1, 5\\}", "-8, 3", "1, 2, 3", "(1, 2, 3)", "[1, 2, 3]", "(0.5, 2)", "(\\frac{1}{2}, 3)", "\\{-2, 3\\}",
    "x = 1, 2", "x = (9, 2)", "y = (1, 2]", "x = \\{3, -1\\}", "(-\\infty, 2]", "[3, \\infty)", "\\infty",
]  # fmt: skip


@pytest.mark.parametrize("text", FAST_PATH_TEXTS)
def test_fast_path_agrees_with_the_latex_parser(text):
    """The parser-free path must build what math-verify builds (up to exact vs float decimals)."""
    fast = math_parse._parse_simple(text)
    assert fast is not None, f"{text!r} should take the fast path"
    slow = [e for e in mv_parse("\\boxed{" + text + "}", parsing_timeout=None) if not isinstance(e, str)][0]
    got = fast.exprs[0]
    assert type(got).__name__ == type(slow).__name__ or {type(got), type(slow)} <= {
        sympy.Float,
        sympy.Rational,
        sympy.core.numbers.Half,
    }
    assert vm.exprs_equal(slow, got) and vm.exprs_equal(got, slow)


def test_fast_path_declines_what_it_does_not_know():
    for text in ("\\sqrt{2}", "x + 1", "1/0", "(5)", "a, b", "2^{3}"):
        assert math_parse._parse_simple(text) is None, text


# ---- concurrency: no signal.alarm anywhere ------------------------------------------------------------
def test_works_from_threads():
    cases = [
        ("<answer>\\frac{\\pi}{3}</answer>", "\\pi/3", True),
        ("<answer>7 or 8</answer>", "7", False),
    ] * 8
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda c: verify_math(c[0], c[1]).correct, cases))
    assert results == [c[2] for c in cases]
    assert threading.current_thread() is threading.main_thread()
