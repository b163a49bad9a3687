"""Differential test: rewardkit's math verifier against raw math-verify on >= 500 (gold, completion) pairs.

The corpus is hand-written rows (``data/math_differential.jsonl``: GSM8K- and MATH-style worked solutions,
model-style outputs with and without boxes or tags, multi-valued answers, hedges) plus rows generated
here from seeded families (equivalent and non-equivalent written forms). Each row states the right
verdict. Two promises are checked:

* rewardkit gives the right verdict on every row;
* wherever math-verify (``verify(parse(gold), parse(completion))``, timeouts off) gives another verdict,
  the row names a rule of docs/math.md ("Where rewardkit and math-verify disagree") that explains it,
  and the explanation is checked: math-verify agrees once that rule's effect is applied to its input
  (the tag's content for ``answer-tag``, its precision argument for ``rounding``, ...), or the
  verdict's reason shows the rule (``hedging``).

The disagreement table is printed (``pytest -rA`` or ``-s`` shows it).
"""

from __future__ import annotations

import json
import random
import re
from collections import Counter
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import pytest
from math_verify import parse as mv_parse
from math_verify import verify as mv_verify
from math_verify.parser import ExprExtractionConfig, LatexExtractionConfig

from rewardkit.verifiers.math import extract_answer, normalize_answer_text, normalize_gold, verify_math

DATA = Path(__file__).parent / "data" / "math_differential.jsonl"
DOCS = Path(__file__).resolve().parents[2] / "docs" / "math.md"
MIN_PAIRS = 500


# ---- the procedural families ------------------------------------------------------------------------
REASONING = (
    "We set up the problem carefully. Let the unknown quantity be $t$; the conditions give two relations, "
    "and combining them step by step leaves a single value to compute."
)
STYLES = {
    "boxed": lambda a: f"{REASONING}\n\nTherefore, the final answer is $\\boxed{{{a}}}$.",
    "bold": lambda a: f"{REASONING}\n\n**Final Answer**\n\\boxed{{{a}}}",
    "statement": lambda a: f"{REASONING}\n\nThe answer is ${a}$.",
    "tag": lambda a: f"<think>{REASONING}</think>\n<answer>{a}</answer>",
}
"""How an answer sits in a completion. Tags are what rewardkit's prompts ask for; math-verify reads none."""


def _styled(
    rows: list[dict], rng: random.Random, family: str, gold: str, answer: str, ok: bool, rule: str = ""
):
    style = rng.choice(("boxed", "boxed", "bold", "statement", "tag"))
    rules = "+".join(r for r in (rule, "answer-tag" if style == "tag" else "") if r)
    rows.append(
        {"source": f"procedural/{family}", "gold": gold, "completion": STYLES[style](answer), "expected": ok}
        | ({"rule": rules} if rules else {})
    )


def _integers(rows, rng):
    for _ in range(30):
        n = rng.choice((rng.randint(2, 99), rng.randint(100, 999), rng.randint(1000, 99999)))
        good = [str(n), f"x = {n}", f"{n}.0", f"{n:,}", f"{n} \\text{{ apples}}"]
        bad = [str(n + rng.choice((-1, 1))), str(10 * n), str(-n)]
        _styled(rows, rng, "integers", str(n), rng.choice(good), True)
        _styled(rows, rng, "integers", str(n), rng.choice(bad), False)


def _rounded(value: Fraction, places: int) -> str:
    return f"{float(value):.{places}f}"


def _fractions(rows, rng):
    for _ in range(30):
        q = rng.randint(3, 12)
        p = rng.choice([k for k in range(1, 3 * q) if Fraction(k, q).denominator == q])
        value, gold = Fraction(p, q), f"\\frac{{{p}}}{{{q}}}"
        k = rng.randint(2, 4)
        good = [f"\\dfrac{{{p}}}{{{q}}}", f"{p}/{q}", f"\\frac{{{k * p}}}{{{k * q}}}"]
        _styled(rows, rng, "fractions", gold, rng.choice(good), True)
        _styled(rows, rng, "fractions", gold, f"\\frac{{{p + 1}}}{{{q}}}", False)
        places = rng.randint(2, 4)
        rounded = _rounded(value, places)
        if Fraction(rounded) != value:  # a rounded, not exact, decimal: accepted at its written precision
            _styled(rows, rng, "fractions", gold, rounded, True, "rounding")
            truncated = f"{int(value * 10**places) / 10**places:.{places}f}"
            if truncated != rounded:
                _styled(rows, rng, "fractions", gold, truncated, False)
        if value < 1 and Fraction(_rounded(value, 1)) != value:
            _styled(rows, rng, "fractions", gold, _rounded(value, 1), False)  # one significant digit


def _roots_and_pi(rows, rng):
    for _ in range(15):
        a, b = rng.randint(2, 6), rng.choice((2, 3, 5, 6, 7))
        gold = f"{a}\\sqrt{{{b}}}"
        _styled(rows, rng, "roots", gold, f"\\sqrt{{{a * a * b}}}", True)
        _styled(rows, rng, "roots", gold, f"{a}\\sqrt{{{b + 1}}}", False)
        k, m = rng.randint(1, 5), rng.choice((2, 3, 4, 6))
        gold = f"\\frac{{{k}\\pi}}{{{m}}}"
        _styled(rows, rng, "pi", gold, f"\\frac{{{k}}}{{{m}}}\\pi", True)
        _styled(rows, rng, "pi", gold, f"\\frac{{{k}\\pi}}{{{m + 1}}}", False)


def _percent_and_commas(rows, rng):
    for _ in range(10):
        p = rng.randint(1, 99)
        _styled(rows, rng, "percent", f"{p}\\%", f"{p}\\%", True)
        _styled(rows, rng, "percent", f"{p}\\%", f"{p + 1}\\%", False)
        whole, cents = rng.randint(1, 99), rng.randint(10, 99)
        if cents % 10:
            gold = f"{whole}.{cents}"
            _styled(rows, rng, "decimal-comma", gold, f"{whole},{cents}", True, "decimal-comma")
            _styled(rows, rng, "decimal-comma", gold, f"{whole},{cents + 1 if cents < 99 else 10}", False)


def _sets(rows, rng):
    for _ in range(20):
        a, b = rng.sample(range(-9, 10), 2)
        gold = rng.choice((f"\\{{{a}, {b}\\}}", f"{a}, {b}", f"x = {a} \\text{{ or }} x = {b}"))
        _styled(rows, rng, "sets", gold, f"\\{{{b}, {a}\\}}", True)
        _styled(rows, rng, "sets", gold, f"{b}, {a + 10}", False)
        _styled(rows, rng, "sets", gold, str(a), False)
        rows.append(
            {
                "source": "procedural/sets",
                "gold": gold,
                "completion": f"{REASONING} So $x = \\boxed{{{b}}}$ or $x = \\boxed{{{a}}}$.",
                "expected": True,
                "rule": "multi-valued",
            }
        )
        c = rng.choice([v for v in range(-9, 10) if v not in (a, b)])
        rows.append(
            {
                "source": "procedural/sets",
                "gold": str(a),
                "completion": f"{REASONING} So $x = \\boxed{{{c}}}$ or $x = \\boxed{{{a}}}$.",
                "expected": False,
                "rule": "hedging",
            }
        )


def _intervals_and_tuples(rows, rng):
    for _ in range(15):
        lo, hi = sorted(rng.sample(range(-9, 10), 2))
        left, right = rng.choice("[("), rng.choice("])")
        gold = f"{left}{lo}, {hi}{right}"
        _styled(rows, rng, "intervals", gold, f"\\left{left}{lo}, {hi}\\right{right}", True)
        flipped = "(" if left == "[" else "["
        _styled(rows, rng, "intervals", gold, f"{flipped}{lo}, {hi}{right}", False)
        rel_lo, rel_hi = ("\\le" if left == "[" else "<"), ("\\le" if right == "]" else "<")
        _styled(rows, rng, "intervals", gold, f"{lo} {rel_lo} x {rel_hi} {hi}", True, "inequality-interval")
        _styled(rows, rng, "intervals", gold, f"{lo} {rel_lo} x {rel_hi} {hi + 1}", False)
        x, y = hi, lo  # decreasing: a point, not an interval
        _styled(rows, rng, "tuples", f"({x}, {y})", f"\\left({x}, {y}\\right)", True)
        _styled(rows, rng, "tuples", f"({x}, {y})", f"({y}, {x})", False)


def _matrices_and_expressions(rows, rng):
    for _ in range(10):
        a, b, c, d = (rng.randint(-5, 9) for _ in range(4))
        gold = f"\\begin{{pmatrix}}{a} & {b} \\\\ {c} & {d}\\end{{pmatrix}}"
        _styled(
            rows, rng, "matrices", gold, f"\\begin{{bmatrix}}{a} & {b} \\\\ {c} & {d}\\end{{bmatrix}}", True
        )
        _styled(
            rows,
            rng,
            "matrices",
            gold,
            f"\\begin{{pmatrix}}{a} & {b} \\\\ {c} & {d + 1}\\end{{pmatrix}}",
            False,
        )
        r, s = rng.randint(1, 6), rng.randint(1, 6)
        gold = f"x^2 + {r + s}x + {r * s}"
        _styled(rows, rng, "polynomials", gold, f"(x + {r})(x + {s})", True)
        _styled(rows, rng, "polynomials", gold, f"(x - {r})(x + {s})", False)
        m, k = rng.randint(2, 9), rng.randint(1, 9)
        _styled(rows, rng, "lines", f"y = {m}x + {k}", f"y = {k} + {m}x", True)
        _styled(rows, rng, "lines", f"y = {m}x + {k}", f"y = {m}x - {k}", False)


def _magnitudes_and_hedges(rows, rng):
    for _ in range(10):
        e = rng.randint(15, 60)
        gold = f"\\frac{{1}}{{3^{{{e}}}}}"
        _styled(rows, rng, "magnitudes", gold, f"\\frac{{1}}{{3^{{{e + 1}}}}}", False, "relative-tolerance")
        _styled(rows, rng, "magnitudes", f"10^{{-{e}}}", "0.0", False, "relative-tolerance")
        n, m = rng.sample(range(2, 60), 2)
        for hedge in (f"{n} or {m}", f"{m} \\text{{ or }} {n}", f"{m}, {n}"):
            _styled(rows, rng, "hedges", str(n), hedge, False, "hedging")
        rows.append(
            {
                "source": "procedural/hedges",
                "gold": str(n),
                "completion": f"{REASONING} So maybe {m} and {n}.",
                "expected": False,
                "rule": "hedging",
            }
        )
        rows.append(
            {
                "source": "procedural/hedges",
                "gold": str(n + m),
                "completion": f"{REASONING} Adding {n} and {m} gives {n + m}.",
                "expected": True,
            }
        )


def procedural_rows(seed: int = 14) -> list[dict]:
    """Equivalent and non-equivalent written forms of seeded answers, in every completion style."""
    rng = random.Random(seed)
    rows: list[dict] = []
    for family in (
        _integers,
        _fractions,
        _roots_and_pi,
        _percent_and_commas,
        _sets,
        _intervals_and_tuples,
        _matrices_and_expressions,
        _magnitudes_and_hedges,
    ):
        family(rows, rng)
    return rows


def corpus() -> list[dict]:
    hand = [json.loads(line) for line in DATA.read_text().splitlines() if line.strip()]
    return hand + procedural_rows()


# ---- running both sides -----------------------------------------------------------------------------
DEFAULT_TARGETS = (LatexExtractionConfig(), ExprExtractionConfig())


def _mv_gold(gold: str) -> str:
    """The gold as math-verify users pass it: as written when it has delimiters or a box, else boxed."""
    return gold if any(t in gold for t in ("$", "\\boxed", "\\(", "\\[")) else f"\\boxed{{{gold}}}"


def mv_says(gold: str, completion: str, targets=DEFAULT_TARGETS, **options) -> bool:
    g = mv_parse(_mv_gold(gold), list(targets), parsing_timeout=None)
    p = mv_parse(completion, list(targets), parsing_timeout=None)
    return bool(mv_verify(g, p, timeout_seconds=None, **options))


@dataclass
class Outcome:
    row: dict
    ours: bool
    reason: str
    mv: bool


def _places(text: str) -> int:
    return max((len(m) for m in re.findall(r"\d\.(\d+)", text)), default=6)


def _apply(rule: str, gold: str, completion: str, options: dict) -> tuple[str, str]:
    """Undo what ``rule`` does differently, on math-verify's side of the comparison."""
    found = extract_answer(completion)
    if rule == "answer-tag" or rule == "multi-valued":
        completion = "$" + ", ".join(found.candidates or (found.answer or "",)) + "$"
        gold = "$" + normalize_gold(gold) + "$"
    elif rule == "after-think":
        completion = completion.rsplit("</think>", 1)[-1]
    elif rule == "rounding":
        options["float_rounding"] = _places(found.answer or completion)
    elif rule == "relative-tolerance":
        options.update(float_rounding=60, numeric_precision=80)
    elif rule == "decimal-comma":
        completion = re.sub(r"(\d),(\d)", r"\1.\2", completion)
        gold = re.sub(r"(\d),(\d)", r"\1.\2", gold)
    elif rule == "inequality-interval":
        options["allow_set_relation_comp"] = True
    elif rule == "normalization":
        completion = "$" + normalize_answer_text(found.answer or "") + "$"
    elif rule == "split-inline-math":
        options["targets"] = (LatexExtractionConfig(),)
    return gold, completion


def explained(outcome: Outcome, documented: set[str]) -> bool:
    """Whether the row's rules, all documented, account for math-verify's other verdict."""
    rules = [r for r in outcome.row.get("rule", "").split("+") if r]
    if not rules or not set(rules) <= documented:
        return False
    if "hedging" in rules and not outcome.ours and outcome.reason.startswith("hedging"):
        return True
    if "long-integer" in rules and re.search(r"\d{4301}", outcome.row["gold"] + outcome.row["completion"]):
        return outcome.ours  # past int()'s 4,300 digits math-verify cannot read the number
    gold, completion, options = outcome.row["gold"], outcome.row["completion"], {}
    for rule in rules:
        gold, completion = _apply(rule, gold, completion, options)
    targets = options.pop("targets", DEFAULT_TARGETS)
    return mv_says(gold, completion, targets, **options) == outcome.ours


def documented_rules() -> set[str]:
    """The rule ids in the first column of docs/math.md's disagreement table."""
    text = DOCS.read_text()
    section = text.split("Where rewardkit and math-verify disagree", 1)[-1].split("\n## ", 1)[0]
    return set(re.findall(r"^\| `([a-z-]+)` \|", section, re.M))


@pytest.fixture(scope="module")
def outcomes() -> list[Outcome]:
    out = []
    for row in corpus():
        verdict = verify_math(row["completion"], row["gold"])
        out.append(Outcome(row, verdict.correct, verdict.reason, mv_says(row["gold"], row["completion"])))
    return out


def disagreement_table(outcomes: list[Outcome], explanations: dict[int, bool]) -> str:
    """The disagreements by rule, then one line each (``explanations``: id(outcome) -> explained)."""
    rows = [o for o in outcomes if o.ours != o.mv]
    by_rule = Counter((o.row.get("rule", "(none)"), o.ours) for o in rows)
    lines = [
        f"math-verify differential: {len(outcomes)} pairs, {len(outcomes) - len(rows)} agree, "
        f"{len(rows)} disagree ({sum(not explanations[id(o)] for o in rows)} unexplained)",
        "",
        "| rule | rewardkit 1, math-verify 0 | rewardkit 0, math-verify 1 |",
        "|---|---:|---:|",
    ]
    for rule in sorted({r for r, _ in by_rule}):
        lines.append(f"| {rule} | {by_rule[(rule, True)]} | {by_rule[(rule, False)]} |")
    lines += [
        "",
        "| source | rule | right | rewardkit | math-verify | explained | gold | completion (end) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for o in rows:
        tail = o.row["completion"][-70:].replace("\n", "\\n").replace("|", "\\|")
        lines.append(
            f"| {o.row['source']} | {o.row.get('rule', '')} | {int(o.row['expected'])} | {int(o.ours)} | "
            f"{int(o.mv)} | {'yes' if explanations[id(o)] else 'NO'} | {o.row['gold'][:40]} | {tail} |"
        )
    return "\n".join(lines)


# ---- the tests --------------------------------------------------------------------------------------
def test_corpus_is_large_and_mixed():
    rows = corpus()
    sources = Counter(r["source"].split("/")[0] for r in rows)
    assert len(rows) >= MIN_PAIRS, len(rows)
    assert {"gsm8k", "math", "model", "multi", "families", "normalization", "procedural"} <= set(sources), (
        sources
    )
    assert 0.3 < sum(r["expected"] for r in rows) / len(rows) < 0.7  # both directions


def test_rewardkit_is_right_on_every_row(outcomes):
    wrong = [o for o in outcomes if o.ours != o.row["expected"]]
    listing = "\n".join(
        f"  {o.row['source']}: gold {o.row['gold']!r}, completion ...{o.row['completion'][-80:]!r}, got {o.ours} ({o.reason})"
        for o in wrong
    )
    assert not wrong, f"{len(wrong)} wrong verdicts:\n{listing}"


def test_every_disagreement_with_math_verify_is_a_documented_rule(outcomes):
    documented = documented_rules()
    explanations = {id(o): explained(o, documented) for o in outcomes if o.ours != o.mv}
    table = disagreement_table(outcomes, explanations)
    print("\n" + table)
    unexplained = [o for o in outcomes if o.ours != o.mv and not explanations[id(o)]]
    assert not unexplained, f"{len(unexplained)} undocumented disagreements:\n{table}"


def test_the_rules_named_in_the_corpus_are_documented():
    documented = documented_rules()
    named = {r for row in corpus() for r in row.get("rule", "").split("+") if r}
    assert named <= documented, f"not in docs/math.md's disagreement table: {sorted(named - documented)}"
    assert {"hedging", "rounding", "multi-valued", "decimal-comma", "inequality-interval"} <= documented


def test_an_undocumented_rule_or_a_wrong_explanation_is_caught(outcomes):
    """The check can fail: a disagreement labelled with a rule that does not explain it is reported."""
    documented = documented_rules()
    disagreement = next(o for o in outcomes if o.ours != o.mv and o.row.get("rule") == "answer-tag")
    assert explained(disagreement, documented)
    relabelled = Outcome(
        {**disagreement.row, "rule": "rounding"}, disagreement.ours, disagreement.reason, disagreement.mv
    )
    assert not explained(relabelled, documented)
    assert not explained(disagreement, documented - {"answer-tag"})
