"""The math verifier's rules for multi-valued answers, hedges, decimal commas, rounding and inequalities.

Each rule's end-to-end cases are rows of test_math_table.py; these tests pin the pieces they rest on.
"""

from __future__ import annotations

import concurrent.futures
import time

import pytest
import sympy

from rewardkit.verifiers import math_equal
from rewardkit.verifiers.math import extract_answer, normalize_gold, parse_answer, verify_math
from rewardkit.verifiers.math_extract import listed_values
from rewardkit.verifiers.math_parse import decimal_places


# ---- extraction ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("sentence", "values"),
    [
        ("So maybe 12 and 15.", ("12", "15")),
        ("Both 40 and 45 work.", ("40", "45")),
        ("It could be 7, 8 or 9.", ("7", "8", "9")),
        ("x is 7 \\text{ or } 8", ("7", "8")),
        ("The answer is 7, 8.", ("7", "8")),  # after an answer statement commas are enough
        ("In 2019, 45 people came.", ()),  # elsewhere a list needs a joining word
        ("The total is 1,234 or 1,240.", ("1234", "1240")),
        ("The answer is 1,234.", ()),
        ("We get 12 apples.", ()),
    ],
)
def test_listed_values(sentence, values):
    assert listed_values(sentence) == values


def test_an_answer_statement_after_the_last_box_supersedes_the_boxes():
    text = "The deposit earns $\\boxed{260}$ in interest. Final Answer: The final answer is $8,460$. I hope it is correct."
    found = extract_answer(text)
    assert found.source == "text" and "8,460" in found.answer and "260" not in found.answer
    # a statement without a value, or a box after the statement, leaves the box in charge
    assert extract_answer("\\boxed{5}. So the answer is right.").answer == "5"
    assert extract_answer("The answer is $\\boxed{5}$.").answer == "5"


def test_inline_math_split_over_lines_is_removed_from_free_text():
    assert not verify_math("Answer $ \n 9 \n $", "9").has_answer
    assert verify_math("Answer $9$", "9").correct
    assert verify_math("Answer:\n$$\n9\n$$", "9").correct  # display math may span lines
    assert verify_math("She paid $5 for it.\nThe answer is 5.", "5").correct  # a currency sign is no math


def test_plain_text_lists_are_hedges_only_when_the_answer_is_in_them():
    assert "hedging" in verify_math("So maybe 12 and 15.", "15").reason
    assert verify_math("Adding 12 and 15 gives 27.", "27").correct
    assert verify_math("So the two numbers are 12 and 15.", "12, 15").correct


# ---- the gold answer ----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("gold", "normalized"),
    [
        ("\\boxed{1}, \\boxed{2}", "1, 2"),
        ("\\(\\boxed{1}\\) and \\(\\boxed{-2}\\).", "1, -2"),
        ("\\boxed{1}\\boxed{2}", "1, 2"),
        ("\\boxed{1} cup and \\boxed{2} plates", "1, 2"),
        ("\\boxed{1} no no no \\boxed{2}", "2"),  # words between boxes that join nothing: the last box
        ("$1$ and $2$ and $3$", "1, 2, 3"),
        ("So $x = 3$. Final Answer: The final answer is $28\\%$. I hope it is correct.", "28\\%"),
        ("\\boxed{42}", "42"),
    ],
)
def test_gold_written_as_several_boxes_pieces_or_a_solution(gold, normalized):
    assert normalize_gold(gold) == normalized


# ---- decimal comma ------------------------------------------------------------------------------------
def test_a_comma_no_thousands_separator_can_be_gives_two_readings():
    readings = parse_answer("1,22").exprs
    assert isinstance(readings[0], sympy.FiniteSet) and readings[1] == sympy.Rational(122, 100)
    assert parse_answer("0,111").exprs[-1] == sympy.Rational(111, 1000)
    assert parse_answer("1234,567").exprs[-1] == sympy.Rational(1234567, 1000)
    assert parse_answer("1,234").exprs == (1234,)  # a thousands separator
    assert len(parse_answer("1, 22").exprs) == 1  # spaced: a list only


# ---- rounding -----------------------------------------------------------------------------------------
def test_decimal_places_keeps_the_written_precision():
    assert decimal_places("(0.6, 2.6667]") == {sympy.Rational(3, 5): 1, sympy.Rational(26667, 10000): 4}
    assert decimal_places("-0.50 + x") == {sympy.Rational(1, 2): 2}
    assert decimal_places("12") == {}


@pytest.mark.parametrize(
    ("gold", "pred", "equal"),
    [
        ("1/3", "0.33", True),
        ("1/3", "0.3333", True),
        ("1/3", "0.3", False),  # one significant digit
        ("2/3", "0.67", True),
        ("2/3", "0.66", False),  # truncated
        ("1/3^{20}", "2.9 \\times 10^{-10}", True),
        ("1/3^{20}", "3 \\times 10^{-10}", False),  # no decimal written: exact
        ("1/3^{20}", "0.0000000003", False),  # one significant digit
        ("1/3^{49}", "0.00", False),
        ("\\pi", "3.14", True),
        ("\\pi", "3.141", False),  # 3.142 at three places
        ("0.33", "1/3", True),  # the decimal may be the gold
        ("0.33", "0.333", False),  # two decimals are not rounded to each other
        ("1/3", "33.3\\%", True),
    ],
)
def test_a_decimal_matches_the_exact_value_it_rounds(gold, pred, equal):
    assert verify_math(f"<answer>{pred}</answer>", gold).correct is equal


def test_rounding_needs_the_minimum_significant_digits():
    assert math_equal.MIN_ROUNDED_DIGITS == 2


# ---- inequalities -------------------------------------------------------------------------------------
RELATIONS = [
    "-2 \\le x \\le 7",
    "-2 < x \\le 7",
    "x \\le 2",
    "x > 3",
    "3 < x",
    "7 \\ge x \\ge -2",
    "0 < y < 1",
    "x \\geq -1.5",
]


@pytest.mark.parametrize("text", RELATIONS)
def test_the_direct_solution_set_equals_sympys(text):
    """The solver-free path for bounds must build what sympy's as_set builds (slow vs fast)."""
    relation = parse_answer(text).exprs[0]
    fast = math_equal._solution_set(relation)
    assert fast == relation.as_set(), text


def test_an_inequality_the_direct_path_cannot_read_goes_to_sympy():
    relation = parse_answer("x^2 < 4").exprs[0]
    assert math_equal._solution_set(relation) == sympy.Interval.open(-2, 2)
    assert math_equal._bound_interval(relation) is None


# ---- multi-valued answers -----------------------------------------------------------------------------
def test_several_boxes_match_a_set_only_with_exactly_its_values():
    assert verify_math("\\boxed{1}, \\boxed{2}, \\boxed{3}", "\\{1,2,3\\}").correct
    assert not verify_math("\\boxed{1}, \\boxed{2}", "\\{1,2,3\\}").correct
    assert not verify_math("\\boxed{1}, \\boxed{2}, \\boxed{3}, \\boxed{4}", "\\{1,2,3\\}").correct
    assert verify_math(
        "\\boxed{0.5} and \\boxed{\\frac12} and \\boxed{2}", "\\{\\frac12, 2\\}"
    ).correct  # one value twice


def test_a_tuple_gold_answered_box_by_box_keeps_its_order():
    assert verify_math("$x = \\boxed{3}$ and $y = \\boxed{-1}$", "(3, -1)").correct
    assert not verify_math("$x = \\boxed{-1}$ and $y = \\boxed{3}$", "(3, -1)").correct


def test_a_stray_value_beside_the_full_set_is_a_hedge():
    verdict = verify_math("First $\\boxed{5}$, then $\\boxed{\\{1, 2\\}}$", "\\{1, 2\\}")
    assert not verdict.correct and verdict.reason.startswith("hedging")


def test_many_boxes_for_a_set_are_bounded():
    text = " ".join(f"\\boxed{{{i}}}" for i in range(40))
    start = time.perf_counter()
    verdict = verify_math(text, "\\{1, 2\\}")
    assert not verdict.correct and "hedging" in verdict.reason
    assert time.perf_counter() - start < 5


def test_the_new_rules_work_from_threads():
    cases = [
        ("\\boxed{1}, \\boxed{2}, \\boxed{3}", "\\{1,2,3\\}", True),
        ("So maybe 12 and 15.", "15", False),
        ("<answer>0.33</answer>", "1/3", True),
        ("<answer>-2 \\le x \\le 7</answer>", "[-2, 7]", True),
        ("<answer>1,22</answer>", "1.22", True),
    ] * 4
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda c: verify_math(c[0], c[1]).correct, cases))
    assert results == [c[2] for c in cases]
