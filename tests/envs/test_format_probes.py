"""The ``format`` environment's exploit probes and the holes they found (docs/hacking.md, ``format``)."""

from __future__ import annotations

import re

import pytest

from rewardkit import EnvCheckError, Score, check_env, load_env
from rewardkit.envs.format import FormatEnv
from rewardkit.envs.probes import run_probes
from rewardkit.verifiers.format import check_tags, visible_text

GOOD = "<think>6 * 7 = 42</think>\n<answer>42</answer>"
FAMILIES = {
    "nested-tags",
    "repeated-tags",
    "tags-in-code",
    "unicode-lookalikes",
    "empty-tags",
    "unclosed-misordered",
    "prompt-echo",
    "html-escaped",
    "case-variants",
}


@pytest.fixture(scope="module")
def strict():
    with load_env("format") as env:
        yield env


# Each hole that was open (reward 1.0 under the old verifier), and the honest completion next to it.
HOLES = {
    "fenced-block": "Here is the format:\n```xml\n" + GOOD + "\n```",
    "unclosed-fence": "Format:\n```\n" + GOOD,
    "tilde-fence": "~~~\n" + GOOD + "\n~~~",
    "inline-code": "`<think>`6 * 7 = 42`</think>` `<answer>`42`</answer>`",
    "html-comment": "<!-- " + GOOD + " -->\nThe answer is 42.",
    "answer-only-in-code": "<think>6 * 7 = 42</think>\n```\n<answer>42</answer>\n```",
    "cyrillic-second-answer": GOOD + "\n<\u0430nswer>41</\u0430nswer>",
    "fullwidth-second-answer": GOOD + "\n\uff1canswer\uff1e41\uff1c/answer\uff1e",
    "zero-width-second-answer": GOOD + "\n<ans\u200bwer>41</ans\u200bwer>",
    "escaped-second-answer": GOOD + "\n&lt;answer&gt;41&lt;/answer&gt;",
    "upper-case-second-answer": GOOD + "\n<ANSWER>41</ANSWER>",
    "zero-width-answer": "<think>6 * 7 = 42</think><answer>\u200b\u2060\ufeff</answer>",
    "filler-answer": "<think>6 * 7 = 42</think><answer>\u3164\u2800</answer>",
    "markdown-only-answer": "<think>6 * 7 = 42</think><answer>** **</answer>",
    "html-only-answer": "<think>6 * 7 = 42</think><answer><b></b><br/></answer>",
    "entity-only-answer": "<think>6 * 7 = 42</think><answer>&nbsp;&#8203;&zwnj;</answer>",
    "placeholder-dots": "<think>...</think><answer>...</answer>",
}


@pytest.mark.parametrize("name", sorted(HOLES))
def test_a_closed_hole_scores_zero(strict, name):
    assert strict.score(HOLES[name]).reward == 0.0
    assert strict.score(GOOD).reward == 1.0  # the honest completion next to it still passes


def test_a_hole_was_open_under_the_old_rule():
    """The exploits are real: a plain regex for the tags, as the verifier was, passes every one."""

    def naive(text: str) -> bool:
        return all(
            len(re.findall(f"<{t}>", text)) == 1 and re.search(f"<{t}>(.+?)</{t}>", text, re.S)
            for t in ("think", "answer")
        )

    assert all(naive(text) for text in HOLES.values())


def test_tags_in_code_do_not_count_but_code_in_a_block_does(strict):
    # a tag quoted in inline code inside the reasoning no longer counts as a second <answer>
    assert strict.score("<think>I will end with `<answer>`.</think><answer>42</answer>").reward == 1.0
    # code inside the answer block is content; code between blocks is ignored
    assert strict.score("<think>t</think><answer>\n```python\nprint(42)\n```\n</answer>").reward == 1.0
    assert strict.score("<think>t</think>\n```\nx = 1\n```\n<answer>-5</answer>").reward == 1.0
    assert strict.score("```\n```\n" + GOOD).reward == 1.0  # an empty fence closes on its next line


def test_partial_credit_of_an_empty_answer_equals_a_visibly_empty_one():
    with load_env("format", strict=False) as env:
        honest_empty = env.score("<think>t</think><answer></answer>").reward
        assert honest_empty == pytest.approx(4 / 5)
        assert env.score(HOLES["zero-width-answer"]).reward == honest_empty
        assert env.score(HOLES["cyrillic-second-answer"]).reward == pytest.approx(2 / 5)  # answer:once broke
        assert env.score(GOOD).reward == 1.0


def test_echoed_template_is_empty_but_a_coinciding_answer_is_not(strict):
    template = "<think> reasoning process here </think> <answer> answer here </answer>"
    prompt = f"Answer in this format: {template}\nWhat is 6 * 7?"
    assert strict.score(template, prompt=prompt).reward == 0.0
    assert strict.score(template).reward == 1.0  # without the prompt there is nothing it copies
    assert strict.score(GOOD, prompt=prompt).reward == 1.0
    few_shot = "Example: <think>2 * 21 = 42</think><answer>42</answer>\nWhat is 6 * 7?"
    assert strict.score(GOOD, prompt=few_shot).reward == 1.0  # same answer, own reasoning: not an echo
    chat = ({"role": "system", "content": prompt}, {"role": "user", "content": "go"})
    assert strict.score(template, prompt=chat).reward == 0.0  # a chat prompt's contents count too


def test_visible_text():
    assert visible_text(" \u200b<b></b>&nbsp;** ... \u3164") == ""
    assert visible_text("<b>42</b>") == "42" and visible_text("x < 3") == "x<3"


def test_disguised_copy_breaks_once_only_outside_code():
    rules = check_tags(GOOD + "\n`<ANSWER>41</ANSWER>`", ["think", "answer"]).rules
    assert rules["answer:once"]  # quoted in code: no second answer
    assert not check_tags(GOOD + "\n<ANSWER>41</ANSWER>", ["think", "answer"]).rules["answer:once"]


@pytest.mark.parametrize(
    "config",
    [
        {},
        {"strict": False},
        {"strict": False, "allow_text_outside": False},
        {"tags": ["plan", "code", "final"], "strict": False},
        {"tags": ["answer"]},
    ],
)
def test_check_env_runs_the_probes(config):
    with load_env("format", **config) as env:
        report = check_env(env)
        assert report["probes"] >= 10
        probes = env.exploit_probes()
        assert {p.family for p in probes} == FAMILIES
        assert all(r.within_bound for r in run_probes(env))


def test_the_probes_catch_a_naive_verifier():
    class Naive(FormatEnv):
        def verify(self, completion, *, answer, prompt, info):
            text = completion if isinstance(completion, str) else completion[-1]["content"]
            return float(all(f"<{t}>" in text and f"</{t}>" in text for t in self.config.tags))

    with Naive() as env, pytest.raises(EnvCheckError) as err:
        check_env(env)
    assert "fenced-block" in str(err.value) and "zero-width-answer" in str(err.value)


def test_exploit_signals(strict):
    clean = [GOOD, "<think>a</think><answer>b</answer>"]
    assert all(rate == 0.0 for rate in strict.exploit_signals(clean).values())
    hacked = [HOLES["fenced-block"], HOLES["zero-width-answer"], HOLES["fullwidth-second-answer"], GOOD]
    signals = strict.exploit_signals(hacked)
    assert signals["tag-in-code"] == 0.25 and signals["tag-in-fence"] == 0.25
    assert signals["empty-block"] == 0.25 and signals["zero-width"] == 0.25
    assert signals["disguised-tag"] == 0.25 and signals["fullwidth-tag"] == 0.25
    assert (
        strict.exploit_signals([[{"role": "assistant", "content": HOLES["html-comment"]}]])["tag-in-code"]
        == 1.0
    )


def test_suspicious(strict):
    passed = Score.ok(1.0)  # as the old verifier scored these
    assert "code" in strict.suspicious({"completion": HOLES["fenced-block"]}, passed)
    assert "no letter or digit" in strict.suspicious({"completion": HOLES["zero-width-answer"]}, passed)
    assert "no letter or digit" in strict.suspicious({"completion": HOLES["filler-answer"]}, passed)
    assert "no letter or digit" in strict.suspicious({"completion": HOLES["entity-only-answer"]}, passed)
    honest = "<think>t</think><answer>\n```python\nprint(42)\n```\n</answer>"
    for text in (GOOD, honest, "<think>I end with `<answer>`</think><answer>x</answer>"):
        assert strict.suspicious({"completion": text}, strict.score(text)) is None
    chat = [{"role": "user", "content": "q"}, {"role": "assistant", "content": GOOD}]
    assert strict.suspicious({"completion": chat}, strict.score(chat)) is None
