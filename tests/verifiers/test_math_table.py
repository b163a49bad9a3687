"""The equivalence table: >= 100 (gold, completion) cases the math verifier must decide correctly.

Rows are written by hand from the forms graders meet in practice (MATH, GSM8K, model outputs). Each
row states the expected verdict, so a row fails if the verifier becomes more lenient *or* stricter.
Helpers: ``A(x)`` puts x in an <answer> tag, ``B(x)`` in a \\boxed{}, ``T(x)`` ends plain text with it.
"""

from __future__ import annotations

import pytest

from rewardkit.verifiers.math import verify_math


def A(x: str) -> str:
    return f"<think>working...</think>\n<answer>{x}</answer>"


def B(x: str) -> str:
    return f"Some reasoning with $y = 3$ on the way.\n\nSo the result is $\\boxed{{{x}}}$."


def T(x: str) -> str:
    return f"We compute step by step. The final answer is {x}"


LONG = "31415926535897932384626433832795028841971693993751" * 100  # 5,000 digits, over int()'s limit

EQUIVALENT = [
    # integers and their dressings
    ("42", A("42")),
    ("42", B("42")),
    ("42", T("42")),
    ("42", T("$42$.")),
    ("42", A("42.0")),
    ("42", A("x = 42")),
    ("42", A("$42$")),
    ("42", A("\\$42")),
    ("42", A("42 apples")),
    ("42", A("42 \\text{ cm}")),
    ("42", A("\\boxed{42}")),
    ("-7", A("-7")),
    ("0", A("-0")),
    ("$42$", A("42")),
    ("\\boxed{42}", A("42")),
    (42, A("42")),
    (2.5, A("\\frac{5}{2}")),
    ("5", A("\\$5.00")),
    ("3", A("\\text{3 hours}")),
    ("90", A("90°")),
    ("-3", A("−3")),
    ("\\sqrt{2}", A("√2")),
    ("\\sqrt{2}", A("sqrt(2)")),
    ("\\pi", A("π")),
    ("x^2", A("x**2")),
    ("5xy", A("5 xy")),
    # thousands separators
    ("1234.5", A("1,234.5")),
    ("1234", A("1,234")),
    ("1234", A("1{,}234")),
    ("1234", A("1\\,234")),
    ("1234", A("1 234")),
    ("12345678", A("12,345,678")),
    ("1,000", A("1000")),
    ("1000000", B("1{,}000{,}000")),
    # fractions and decimals
    ("\\frac{1}{2}", A("0.5")),
    ("\\frac{1}{2}", A("1/2")),
    ("\\frac{1}{2}", A("\\dfrac{1}{2}")),
    ("\\frac{1}{2}", A("\\tfrac12")),
    ("\\frac{1}{2}", A("\\frac12")),
    ("\\frac{1}{2}", A("2/4")),
    ("0.5", B("\\frac{1}{2}")),
    ("-\\frac{3}{4}", A("-0.75")),
    ("-\\frac{3}{4}", A("\\frac{-3}{4}")),
    ("\\frac{1}{3}", A("0.333333")),
    ("\\frac{2}{3}", A("0.6666667")),
    ("\\pi", A("3.14159265")),
    ("1000000", A("1000000.5")),  # within the 1e-6 relative tolerance: documented
    ("1.5", A("\\frac{3}{2}")),
    ("0.1", A(".1")),
    # percentages
    ("50\\%", A("0.5")),
    ("50\\%", A("50")),
    ("50\\%", A("50\\%")),
    ("50\\%", A("50%")),
    ("0.125", A("12.5\\%")),
    ("25", A("25\\%")),
    # roots, pi, bare LaTeX without $ delimiters
    ("\\sqrt{8}", A("2\\sqrt{2}")),
    ("2\\sqrt{2}", A("\\sqrt{8}")),
    ("\\frac{\\pi}{3}", A("\\pi/3")),
    ("\\frac{\\pi}{3}", B("\\frac{\\pi}{3}")),
    ("2\\pi", A("2 \\pi")),
    ("2\\pi", A("2pi")),
    ("\\frac{\\sqrt{2}}{2}", A("\\frac{1}{\\sqrt{2}}")),
    ("\\sqrt{2}/2", A("\\frac{\\sqrt2}{2}")),
    ("\\sqrt[3]{27}", A("3")),
    ("\\frac{5}{6}", A("\\frac{1}{2} + \\frac{1}{3}")),
    ("\\infty", A("\\infty")),
    ("30", A("30^\\circ")),
    ("1 + 2i", A("2i + 1")),
    ("2^{10}", A("1024")),
    ("\\log_2 8", A("3")),
    # scientific notation
    ("0.00001", A("1e-5")),
    ("1500", A("1.5 \\times 10^{3}")),
    ("10^{-20}", A("1e-20")),
    # sets
    ("\\{1, 2\\}", A("\\{2, 1\\}")),
    ("\\{1, 2\\}", A("1, 2")),
    ("-2, 3", A("3, -2")),
    ("2, -2", A("\\pm 2")),
    ("\\pm 2", A("-2, 2")),
    ("-8, 3", A("x = -8, 3")),
    ("\\{\\frac{1}{2}, 3\\}", A("\\{3, 0.5\\}")),
    ("7, 8", A("7 or 8")),
    # intervals
    ("[1, 2)", A("[1,2)")),
    ("(-\\infty, 2]", A("(-\\infty,2]")),
    ("[1, 2)", A("\\left[1, 2\\right)")),
    ("(0, 1)", A("(0,1)")),
    ("[0.5, 2]", A("[\\frac{1}{2}, 2]")),
    # tuples and points
    ("(1, 2, 3)", A("(1,2,3)")),
    ("(3, -1)", A("\\left(3, -1\\right)")),
    ("(\\frac{1}{2}, 3)", A("(0.5, 3)")),
    ("(9, -5)", B("(9, -5)")),
    # matrices
    ("\\begin{pmatrix}1 & 2\\\\3 & 4\\end{pmatrix}", A("\\begin{bmatrix}1 & 2\\\\3 & 4\\end{bmatrix}")),
    ("\\begin{pmatrix}\\frac{1}{2} \\\\ 1\\end{pmatrix}", A("\\begin{pmatrix}0.5 \\\\ 1\\end{pmatrix}")),
    # equations and expressions
    ("y = 2x + 1", A("y = 1 + 2x")),
    ("x = 3", A("3")),
    ("3", A("x = 3")),
    ("x^2 + 2x + 1", A("(x+1)^2")),
    ("2(x+1)", A("2x + 2")),
    ("\\frac{x}{2}", A("0.5x")),
    # text answers
    ("\\text{Monday}", A("\\text{Monday}")),
    ("B", A("B")),
    # very long integers (past Python's 4,300-digit int(str) limit)
    (LONG, A(LONG)),
    ("10^{5000}", A("1" + "0" * 5000)),
    # extraction precedence: the last <answer> wins over boxes elsewhere; boxes inside tags unwrap
    ("5", "<think>maybe \\boxed{4}</think><answer>5</answer>"),
    ("5", "\\boxed{5} and in the end <answer>\\boxed{5}</answer>"),
    ("5", "<answer>5</answer>"),
    ("9^{9^{9^{9}}}", B("9^{9^{9^{9}}}")),  # identical huge values compare structurally
]

NOT_EQUIVALENT = [
    # hedging: several different values for a single-valued gold
    ("7", A("7 or 8")),
    ("7", A("7, 8")),
    ("7", A("7 \\text{ or } 8")),
    ("2", A("\\pm 2")),
    ("8", "First \\boxed{7}. Actually \\boxed{8}"),
    ("8", "<answer>7</answer> <answer>8</answer>"),
    ("7", T("7 or 8.")),
    ("7", "The answer is 7 or 8."),
    ("7", A("x = 7 \\text{ or } x = 8")),
    # small magnitudes: relative, not absolute, tolerance
    ("1/3^{49}", A("1/3^{50}")),
    ("\\frac{1}{3^{49}}", B("\\frac{1}{3^{50}}")),
    ("10^{-20}", A("10^{-21}")),
    ("1e-10", A("2e-10")),
    ("0", A("0.000001")),
    ("0.000001", A("0")),
    # plain wrong values and near misses
    ("\\frac{1}{3}", A("0.3333")),
    ("\\pi", A("3.14")),
    ("\\pi", A("\\frac{355}{113}")),  # exact vs exact: no tolerance
    ("\\sqrt{2}", A("\\frac{99}{70}")),
    ("(-\\infty, 2]", A("2")),
    ("100", A("100.001")),
    ("42", A("24")),
    ("1234", A("1.234")),
    ("50\\%", A("5")),
    ("\\sqrt{8}", A("3")),
    ("\\frac{1}{2}", A("2")),
    ("\\frac{1}{2}", A("-\\frac{1}{2}")),
    ("\\frac{\\pi}{3}", A("\\frac{\\pi}{4}")),
    ("2\\pi", A("2")),
    ("12345678901234567890", A("12345678901234567891")),
    (LONG, A(LONG[:-1] + "0")),
    ("2^{10^9}", A("2^{10^9} + 1")),
    ("(10^6)!", A("(10^6)! + 1")),
    ("5", A("5 xy")),  # a product of variables, not a unit
    # structure must match
    ("(1, 2]", A("[1, 2)")),
    ("(1, 2, 3)", A("(3, 2, 1)")),
    ("\\{1, 2\\}", A("\\{1, 2, 3\\}")),
    ("\\{1, 5\\}", A("5")),
    ("(-\\infty, 2]", A("(-\\infty, 2)")),
    ("\\begin{pmatrix}1 & 2\\\\3 & 4\\end{pmatrix}", A("\\begin{pmatrix}1 & 3\\\\2 & 4\\end{pmatrix}")),
    ("2x + 1", A("2x - 1")),
    ("y = 2x + 1", A("y = 2x")),
    ("x = 3", A("y = 3")),
    # no usable answer
    ("5", "I am not sure."),
    ("5", "<answer></answer>"),
    ("5", ""),
    ("5", A("five-ish")),
]


@pytest.mark.parametrize(("gold", "completion"), EQUIVALENT)
def test_equivalent(gold, completion):
    verdict = verify_math(completion, gold)
    assert verdict.correct, f"{completion!r} should match gold {gold!r}: {verdict}"
    assert verdict.has_answer


@pytest.mark.parametrize(("gold", "completion"), NOT_EQUIVALENT)
def test_not_equivalent(gold, completion):
    verdict = verify_math(completion, gold)
    assert not verdict.correct, f"{completion!r} must not match gold {gold!r}: {verdict}"


def test_table_size():
    assert len(EQUIVALENT) + len(NOT_EQUIVALENT) >= 100
