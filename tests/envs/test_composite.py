"""Weighted composition: reward = sum of weight * component reward, metrics keep every component."""

from __future__ import annotations

import sys
import time

import cloudpickle
import pytest

from rewardkit import Environment, EnvStep, Score, check_env, load_env
from rewardkit.envs.composite import WeightedEnv

cloudpickle.register_pickle_by_value(sys.modules[__name__])  # workers get these classes by value

GOOD = "<think>t</think><answer>42</answer>"


class Constant(Environment):
    """Returns a fixed reward, or misbehaves on request."""

    name = "constant"

    def __init__(self, *, value: float = 1.0, **config):
        config.setdefault("executor", "inline")
        super().__init__(**config)
        self.value = value

    def verify(self, completion, *, answer, prompt, info):
        if completion == "raise":
            raise RuntimeError("component bug")
        if completion == "hang":
            time.sleep(60)
        if completion == "fail":
            return Score.failure("timeout", "upstream judge timed out")
        return Score.ok(self.value, {"seen": 1.0}, detail="kept")

    def gold_examples(self):
        return [{"completion": GOOD}]


@pytest.fixture(scope="module")
def weighted():
    components = {
        "format": {"weight": 0.5, "strict": False},
        "brevity": {"weight": 2.0, "env": "efficiency", "max_length": 100},
        "const": (Constant(value=0.25), -1.0),
    }
    with load_env("weighted", components=components, timeout_s=2.0, workers=1) as env:
        yield env


def test_reward_is_the_weighted_sum_and_metrics_keep_components(weighted):
    text = "<think>x</think>" + "y" * 4  # 20 characters, 2 of 5 format rules
    score = weighted.score(text)
    assert score.status == "ok"
    expected = 0.5 * (2 / 5) + 2.0 * (1 - 20 / 100) - 1.0 * 0.25
    assert score.reward == pytest.approx(expected)
    m = score.metrics
    assert m["format/reward"] == pytest.approx(2 / 5) and m["format/format_ok"] == 0.0
    assert m["format/rules_satisfied"] == pytest.approx(2 / 5)
    assert m["brevity/reward"] == pytest.approx(0.8) and m["brevity/length"] == 20
    assert m["const/reward"] == 0.25 and m["const/seen"] == 1.0
    assert score.info["components"]["const"] == {"detail": "kept"}
    assert "rules" in score.info["components"]["format"]


def test_weights_forms():
    env = WeightedEnv(components={"format": 3.0}, executor="inline")
    assert env.components["format"][1] == 3.0 and env.components["format"][0].name == "format"
    assert env.score(GOOD).reward == 3.0
    assert env.pass_threshold == 3.0
    with pytest.raises(TypeError, match="expected a weight"):
        WeightedEnv(components={"format": "heavy"})
    with pytest.raises(TypeError, match="not an Environment"):
        WeightedEnv(components={"x": ("not an env", 1.0)})


def test_a_failing_component_fails_the_sample_with_its_status():
    env = WeightedEnv(components={"format": 1.0, "const": (Constant(), 1.0)}, executor="inline")
    failed = env.score("fail")
    assert (failed.status, failed.reward) == ("timeout", 0.0)
    assert "const" in failed.info["reason"] and "judge timed out" in failed.info["reason"]


def test_component_exception_and_hang_in_the_composite_worker():
    components = {"const": (Constant(), 1.0), "format": 1.0}
    with WeightedEnv(components=components, timeout_s=0.5, workers=2) as env:
        raised, hung, fine = env.score_batch([{"completion": c} for c in ("raise", "hang", GOOD)])
    assert (raised.status, hung.status, fine.status) == ("error", "timeout", "ok")
    assert "component bug" in raised.info["reason"]
    assert fine.reward == 2.0


def test_timeout_defaults_to_the_slowest_component():
    env = WeightedEnv(components={"a": (Constant(timeout_s=3.0), 1.0), "b": (Constant(timeout_s=7.0), 1.0)})
    assert env.scoring.timeout_s == 7.0


def test_weighted_passes_check_env():
    components = {
        "format": 1.0,
        "overlong": {
            "weight": 1.0,
            "env": "efficiency",
            "length_penalty": "soft_overlong",
            "max_length": 512,
        },
    }
    with load_env("weighted", components=components, workers=1) as env:
        assert check_env(env)["gold_examples"] >= 1


def test_gold_examples_are_those_every_positive_component_passes():
    # Constant(0.0) never reaches its pass threshold of 1.0, so with a positive weight no gold remains.
    failing = WeightedEnv(components={"format": 1.0, "const": (Constant(value=0.0), 1.0)})
    assert failing.gold_examples() == []
    # ... but a negatively weighted (penalty) component does not veto gold examples.
    penalty = WeightedEnv(components={"format": 1.0, "const": (Constant(value=0.0), -1.0)})
    assert len(penalty.gold_examples()) == 2


class Countdown(Environment):
    """Multi-turn: the environment says "again" until the policy has spoken ``turns`` times."""

    name = "countdown"
    max_turns = 3

    def verify(self, completion, *, answer, prompt, info):
        return 1.0

    def initial_state(self, task):
        return {"left": 2, "task": task}

    def env_response(self, messages, state):
        state["left"] -= 1
        return EnvStep(done=state["left"] == 0, messages=({"role": "user", "content": "again"},))


def test_primary_component_owns_the_rollout_protocol():
    from rewardkit import Task

    primary = Countdown(executor="inline")
    env = WeightedEnv(components={"countdown": (primary, 1.0), "format": 0.5})
    assert env.max_turns == 3
    state = env.initial_state(Task(prompt="p"))
    assert state["left"] == 2
    assert env.env_response([{"role": "assistant", "content": "a"}], state).done is False
    assert env.env_response([{"role": "assistant", "content": "b"}], state).done is True
