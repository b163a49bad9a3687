"""Core value types: Score, Task, Trajectory, and the helpers around them."""

from __future__ import annotations

import dataclasses
import math
import pickle

import pytest

from rewardkit import Score, Task, Trajectory, completion_text
from rewardkit.types import STATUSES, as_score


def test_score_status_is_always_one_of_four():
    assert STATUSES == ("ok", "timeout", "error", "invalid_input")
    assert Score(0.5).status == "ok"
    for bad in ({}, {"status": "fine"}, {"status": None}):
        with pytest.raises(ValueError, match="status"):
            Score(0.0, {}, bad)


def test_score_ok_and_failure():
    ok = Score.ok(1, {"m": 0.5}, note="x")
    assert (ok.reward, ok.metrics, ok.info) == (1.0, {"m": 0.5}, {"status": "ok", "note": "x"})
    assert isinstance(ok.reward, float)
    failed = Score.failure("timeout", "too slow", elapsed=3)
    assert (failed.reward, failed.status, failed.info["reason"], failed.info["elapsed"]) == (
        0.0,
        "timeout",
        "too slow",
        3,
    )
    with pytest.raises(ValueError):
        Score.failure("ok", "not a failure")  # type: ignore[arg-type]


def test_score_is_frozen_and_travels():
    score = Score.ok(0.25, {"a": 1.0})
    with pytest.raises(dataclasses.FrozenInstanceError):
        score.reward = 1.0  # type: ignore[misc]
    assert pickle.loads(pickle.dumps(score)) == score
    assert score.to_dict() == {"reward": 0.25, "metrics": {"a": 1.0}, "info": {"status": "ok"}}
    as_dict = score.to_dict()
    as_dict["metrics"]["a"] = 9.0
    assert score.metrics["a"] == 1.0  # to_dict copies


@pytest.mark.parametrize("value", [1, 0.5, True, Score.ok(0.3)])
def test_as_score_accepts_numbers_and_scores(value):
    assert as_score(value).reward == float(value.reward if isinstance(value, Score) else value)


def test_as_score_accepts_numpy_scalars():
    np = pytest.importorskip("numpy")
    assert as_score(np.float64(0.5)).reward == 0.5
    assert as_score(np.float32(0.25)).reward == 0.25
    assert as_score(np.int64(1)).reward == 1.0


@pytest.mark.parametrize("value", [None, "1.0", [1.0], {"reward": 1.0}])
def test_as_score_rejects_other_types(value):
    with pytest.raises(TypeError, match="float or a Score"):
        as_score(value)


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_as_score_rejects_non_finite(value):
    with pytest.raises(ValueError, match="not finite"):
        as_score(value)


def test_task_to_dict_copies_messages():
    task = Task(prompt=({"role": "user", "content": "hi"},), answer="4", info={"k": 1}, id="t1")
    assert task.to_dict() == {
        "id": "t1",
        "prompt": [{"role": "user", "content": "hi"}],
        "answer": "4",
        "info": {"k": 1},
    }
    assert Task(prompt="plain").to_dict()["prompt"] == "plain"


def _trajectory(**overrides):
    fields = dict(
        task=Task(prompt="p"),
        prompt_ids=(1, 2),
        completion_ids=(3, 4, 5, 6),
        completion_mask=(1, 1, 0, 1),
        logprobs=(-0.1, -0.2, 0.0, -0.3),
        completion="text",
    )
    return Trajectory(**{**fields, **overrides})


def test_trajectory_counts_policy_tokens():
    traj = _trajectory()
    assert traj.num_policy_tokens == 3
    assert (traj.turns, traj.stop_reason, traj.truncated, traj.turn_rewards) == (1, "stop", False, ())


@pytest.mark.parametrize("field", ["completion_mask", "logprobs"])
def test_trajectory_rejects_misaligned_arrays(field):
    with pytest.raises(ValueError, match="same length"):
        _trajectory(**{field: (1,)})


def test_completion_text_takes_the_last_assistant_message():
    messages = [
        {"role": "user", "content": "q"},
        {"role": "assistant", "content": "first"},
        {"role": "tool", "content": "result"},
        {"role": "assistant", "content": "final"},
    ]
    assert completion_text(messages) == "final"
    assert completion_text("plain") == "plain"
    assert completion_text([{"role": "user", "content": "q"}]) == ""
    assert completion_text([{"role": "assistant", "content": None}]) == ""
