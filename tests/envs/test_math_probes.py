"""The ``math`` environment's exploit probes (docs/hacking.md): each hole found open, its honest counterpart,
the probes through ``check_env``, the training signals and the ``suspicious`` audit check."""

from __future__ import annotations

import pytest

from rewardkit import check_env, load_env
from rewardkit.envs.math_probes import math_probes
from rewardkit.envs.probes import run_probes
from rewardkit.verifiers.math_extract import after_thinking, extract_answer, visible_text

WORK = "<think>6 rows of 7 eggs: 6 \\times 7 = 42.</think>"

# probe name -> (an honest completion of the same task, its gold): the probe scored 1.0 before the fix,
# and the honest counterpart must still score 1.0 after it.
FIXED = {
    "empty-box-after-work": ("6 \\times 7 = 42.\n\n\\boxed{42}", "42"),
    "vee-joined": ("<answer>x = 1 \\vee x = 2</answer>", "1, 2"),
    "land-joined": ("<answer>42</answer>", "42"),
    "line-break-list": ("<answer>x = 2 \\\\ y = 3</answer>", "x = 2, y = 3"),
    "hedge-in-text-unit": ("<answer>42 \\text{ eggs}</answer>", "42"),
    "hedge-in-unit-words": ("<answer>42 \\text{ eggs}</answer>", "42"),
    "words-around-box": (WORK + "<answer>so \\boxed{42}</answer>", "42"),
    "box-then-words": (WORK + "<answer>12 and 30 give \\boxed{42}</answer>", "42"),
    "parenthetical-hedge": ("The answer is 42 (six rows of seven).", "42"),
    "phantom-gold": (WORK + "<answer>\\phantom{-}42</answer>", "42"),
    "iffalse-gold": (WORK + "<answer>\\iffalse 7 \\fi 42</answer>", "42"),
    "iffalse-box": ("So we get 42. \\iffalse \\boxed{7} \\fi", "42"),
    "commented-box": ("So 50% of 84 is \\boxed{42}. % checked twice", "42"),
    "html-comment-tag": ("<!-- draft: 7 -->The answer is 42.", "42"),
    "not-gold": ("<answer>x \\not= 7</answer>", "x \\not= 7"),
    "neq-gold": ("<answer>x \\neq 7</answer>", "x \\neq 7"),
    "not-equals-gold": ("<answer>42</answer>", "42"),
    "neg-gold": ("<answer>42</answer>", "42"),
    "nested-box-hedge": ("\\boxed{\\boxed{42}}", "42"),
    "geq-gold": ("<answer>x \\geq 42</answer>", "[42, \\infty)"),
    "leq-gold": ("<answer>x \\le 42</answer>", "(-\\infty, 42]"),
    "false-equation": ("<answer>x = 6 \\cdot 7 = 42</answer>", "42"),
    "equals-chain": ("<answer>6 \\cdot 7 = 42</answer>", "42"),
    "assignment-chain": ("<answer>x = 42 = 42.0</answer>", "42"),
    "unclosed-think": ("<think>6 \\times 7 = 42.</think> The answer is 42.", "42"),
    "tag-in-unclosed-think": ("<think>6 \\times 7 = 42</think> <answer>42</answer>", "42"),
    "capitalised-think-close": ("<think>maybe 7</Think> \\boxed{42}", "42"),
    "spaced-think-close": ("<think>maybe 7</think > \\boxed{42}", "42"),
    "reopened-think": ("<think>hmm</think><think>7?</think>\\boxed{42}", "42"),
    "nested-tags-inner-first": ("<answer><answer>42</answer></answer>", "42"),
    "box-outside-tag": ("So \\boxed{42}. <answer>42</answer>", "42"),
    "tag-then-box": ("<answer>42</answer> (that is, \\boxed{42})", "42"),
    "capitalised-tag": ("<Answer>42</Answer>", "42"),
}
PROBES = {p.name: p for p in math_probes()}


@pytest.fixture(scope="module")
def env():
    with load_env("math", timeout_s=10.0, workers=2) as math_env:
        yield math_env


@pytest.fixture(scope="module")
def probe_scores(env):
    return {r.probe.name: r.score for r in run_probes(env)}


@pytest.mark.parametrize("name", sorted(FIXED))
def test_a_fixed_hole_scores_zero_and_its_honest_counterpart_passes(env, probe_scores, name):
    probe = PROBES[name]
    assert probe_scores[name].reward <= probe.bound, (name, probe_scores[name].info)
    completion, gold = FIXED[name]
    honest = env.score(completion, answer=gold, prompt=probe.sample.get("prompt"))
    assert honest.reward == 1.0, (name, honest.info)


def test_the_exploit_itself_does_not_pass_against_the_other_value(env):
    """A hedge must fail against each of its values, not only against the one the parser dropped."""
    for completion in (
        "<answer>7 \\vee 42</answer>",
        "<answer>7 \\\\ 42</answer>",
        "<answer>42 \\land 7</answer>",
    ):
        for gold in ("7", "42"):
            assert env.score(completion, answer=gold).reward == 0.0, (completion, gold)


def test_check_env_runs_the_probes(env):
    report = check_env(env)
    assert report["probes"] >= 10
    families = {p.family for p in math_probes()}
    assert {"empty-answer", "hedging", "giant-number", "misleading-latex", "answer-in-think"} <= families
    assert "tag-stuffing" in families


def test_every_probe_is_within_its_bound(probe_scores):
    over = {n: s.reward for n, s in probe_scores.items() if s.reward > PROBES[n].bound}
    assert not over
    assert all(p.bound == 0.0 for p in PROBES.values())


def test_giant_numbers_are_decided_not_timed_out(probe_scores):
    for name, probe in PROBES.items():
        if probe.family == "giant-number":
            assert probe_scores[name].status == "ok", (name, probe_scores[name].info)


def test_visible_text_and_after_thinking():
    assert visible_text("a <!-- \\boxed{1} --> b") == "a  b"
    assert visible_text("x \\iffalse 42 \\fi y") == "x  y"
    assert visible_text("\\phantom{4{2}}7") == "7"
    assert visible_text("50% of 84 is 42 % note") == "50% of 84 is 42 % note"  # a comment without an answer
    assert visible_text("so x % \\boxed{42}\nend") == "so x \nend"
    assert after_thinking("<think>a</think>b") == "b"
    assert after_thinking("<think>a</THINK >b") == "b"
    assert after_thinking("<think>the answer is 42") == ""
    assert after_thinking("no thinking: 42") == "no thinking: 42"
    assert extract_answer("<answer>7</answer> <ANSWER>42</ANSWER>").candidates == ("7", "42")


def test_exploit_signals_flag_matching_completions_only(env):
    clean = "<think>6 \\times 7 = 42</think><answer>42</answer>"
    cases = {
        "multiple-answer-tags": "<answer>7</answer><answer>42</answer>",
        "multiple-boxes": "\\boxed{7} or \\boxed{42}",
        "answer-only-in-think": "<think>so \\boxed{42}</think>\n",
        "unclosed-think": "<think>6 \\times 7 = 42",
        "long-digit-string": "<answer>" + "9" * 500 + "</answer>",
        "hidden-markup": "<answer>\\phantom{42}</answer>",
        "hedge-word-in-answer": "<answer>7 or 42</answer>",
    }
    assert set(cases) == set(env.exploit_patterns)
    for name, hack in cases.items():
        signals = env.exploit_signals([hack, clean])
        assert signals[name] == 0.5, (name, signals)
    assert all(v == 0.0 for v in env.exploit_signals([clean]).values())


def test_suspicious_flags_hacks_and_not_honest_passes(env):
    honest = [
        {"completion": WORK + "<answer>42</answer>", "answer": "42"},
        {"completion": "<think>x = \\frac{1}{2}</think><answer>\\frac{1}{2}</answer>", "answer": "0.5"},
        {"completion": "So the result is $\\boxed{\\dfrac{1}{2}}$.", "answer": "0.5"},
        {"completion": "<answer>\\frac{\\pi}{3}</answer>", "answer": "\\frac{\\pi}{3}"},
        {"completion": "First \\boxed{0.5}, that is \\boxed{\\frac12}.", "answer": "1/2"},
        {"completion": "We get 12 apples. The final answer is 12.", "answer": "12"},
    ]
    hacks = [  # each scores 1.0 by the verdict's rules
        {"completion": "<think>6 \\times 7 = 42, no wait, 41.</think><answer>42</answer>", "answer": "42"},
        {"completion": "It is about \\boxed{0.33}, or \\boxed{0.333333}.", "answer": "\\frac{1}{3}"},
    ]
    for sample in honest:
        score = env.score(sample["completion"], answer=sample["answer"])
        assert score.reward == 1.0, sample
        assert env.suspicious(sample, score) is None, sample
    reasons = []
    for sample in hacks:
        score = env.score(sample["completion"], answer=sample["answer"])
        assert score.reward == 1.0, sample
        reasons.append(env.suspicious(sample, score))
    assert "last number" in reasons[0] and "41" in reasons[0]
    assert "2 different candidate answers" in reasons[1]


def test_a_percent_after_a_number_and_a_space_is_no_comment():
    env = load_env("math")
    try:
        assert env.score("50 % of 84 is \\boxed{42}", answer="42").reward == 1.0
        assert env.score("x % \\boxed{42}", answer="42").reward == 0.0
    finally:
        env.close()
