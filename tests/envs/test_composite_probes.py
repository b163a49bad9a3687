"""The ``weighted`` environment's probes: its components', bounded by the rule of docs/hacking.md."""

from __future__ import annotations

import sys

import cloudpickle
import pytest

from rewardkit import EnvCheckError, Environment, Score, check_env, load_env
from rewardkit.envs.composite import WeightedEnv
from rewardkit.envs.probes import run_probes

cloudpickle.register_pickle_by_value(sys.modules[__name__])

GOOD = "<think>6 * 7 = 42</think>\n<answer>42</answer>"
MIXED = {
    "format": 1.0,
    "overlong": {"weight": 0.5, "env": "efficiency", "length_penalty": "soft_overlong", "max_length": 512},
}


def test_the_default_ci_composite_has_the_format_probes():
    with load_env("weighted", components={"format": 1.0}) as env:
        report = check_env(env)
        assert report["probes"] == len(env.components["format"][0].exploit_probes()) >= 10
        assert all(p.name.startswith("format-") for p in env.exploit_probes())


def test_every_positive_component_lends_its_probes_with_the_rule_bound():
    with load_env("weighted", components=MIXED) as env:
        fmt, eff = env.components["format"][0], env.components["overlong"][0]
        probes = {p.name: p for p in env.exploit_probes()}
        assert len(probes) == len(fmt.exploit_probes()) + len(eff.exploit_probes())
        # a format probe: 1.0 * its bound (0) + 0.5 * what the length penalty gives that sample (0: short)
        assert probes["format-fenced-block"].bound == 0.0
        # an efficiency probe: 0.5 * -1 (empty answer) + 1.0 * the format reward of "" (0)
        assert probes["overlong-empty-string"].bound == -0.5
        assert check_env(env)["probes"] == len(probes)
        results = {r.probe.name: r for r in run_probes(env)}
        assert results["overlong-empty-string"].score.reward == -0.5


def test_penalty_components_lend_no_probes():
    components = {"format": 1.0, "long": {"weight": -0.1, "env": "efficiency", "max_length": 64}}
    with load_env("weighted", components=components) as env:
        probes = env.exploit_probes()
        assert len(probes) >= 10 and all(p.name.startswith("format-") for p in probes)
        assert all(r.within_bound for r in run_probes(env))


class DropsThePrompt(WeightedEnv):
    """A broken composite: it forgets the prompt on the way to its components."""

    def verify(self, completion, *, answer, prompt, info):
        return super().verify(completion, answer=answer, prompt=None, info=info)


def test_a_composite_that_reopens_a_component_hole_fails_check_env():
    # the format component needs the prompt to see an echoed template: without it the echo passes
    with DropsThePrompt(components={"format": 1.0}) as broken, pytest.raises(EnvCheckError) as err:
        check_env(broken)
    assert "format-echoed-template" in str(err.value)
    with load_env("weighted", components={"format": 1.0}) as fine:
        echoed = next(p for p in fine.exploit_probes() if p.name == "format-echoed-template")
        assert fine.score_batch([echoed.sample])[0].reward == 0.0
        assert fine.score(GOOD, prompt=echoed.sample["prompt"]).reward == 1.0  # the honest answer passes


class Flaky(Environment):
    name = "flaky"

    def __init__(self, **config):
        super().__init__(executor="inline", **config)

    def verify(self, completion, *, answer, prompt, info):
        if "```" in str(completion):
            raise RuntimeError("cannot read code")
        return 1.0


def test_a_sample_another_component_fails_on_is_bounded_by_zero():
    with WeightedEnv(components={"format": 1.0, "flaky": (Flaky(), 1.0)}, executor="inline") as env:
        probes = {p.name: p for p in env.exploit_probes()}
        assert probes["format-fenced-block"].bound == 0.0  # flaky raises: the composite fails the sample
        assert probes["format-second-answer-hedge"].bound == 1.0  # format's 0 plus flaky's 1.0
        assert all(r.within_bound for r in run_probes(env))


def test_signals_and_suspicious_come_from_the_components():
    with load_env("weighted", components=MIXED) as env:
        signals = env.exploit_signals(["```\n" + GOOD + "\n```", GOOD])
        assert signals["format/tag-in-code"] == 0.5 and signals["overlong/blank-answer"] == 0.0
        hack = "<think>6 * 7 = 42</think><answer>\u200b</answer>"
        passed = Score.ok(1.0, {"format/reward": 1.0, "overlong/reward": 0.0}, components={})
        assert env.suspicious({"completion": hack}, passed).startswith("format: ")
        assert env.suspicious({"completion": GOOD}, env.score(GOOD)) is None
