"""The ``harness`` environment: agents written with the ``openai`` client, their calls as trajectories
(the trained tokens are exactly the sampled ones), failed episodes, check_env, and a GRPO run on CPU."""

from __future__ import annotations

import json
import math
import threading
import time

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")
openai = pytest.importorskip("openai")
pytest.importorskip("torch")

from rewardkit.conformance import check_env  # noqa: E402
from rewardkit.envs.harness import HarnessEnv, episode_trajectory  # noqa: E402
from rewardkit.generation import make_generator  # noqa: E402
from rewardkit.generation.base import SamplingParams  # noqa: E402
from rewardkit.registry import load_env  # noqa: E402
from rewardkit.serve import Call  # noqa: E402
from rewardkit.types import Task  # noqa: E402

SEEN: dict[str, list[dict]] = {}
"""Per episode, what the agent got back from the server: prompt ids, sampled ids, log-probs."""
_SEEN_LOCK = threading.Lock()


def openai_agent(base_url: str, task: Task, episode_id: str) -> str:
    """Two turns with the openai client: answer, then a follow-up the agent writes; the last reply wins."""
    client = openai.OpenAI(base_url=base_url, api_key="unused", max_retries=0)
    messages = [{"role": "user", "content": str(task.prompt)}]
    text = ""
    for follow_up in ("Check it and give the final answer in <answer></answer> tags.", None):
        reply = client.chat.completions.create(model="policy", messages=messages, logprobs=True)
        choice = reply.choices[0]
        with _SEEN_LOCK:
            SEEN.setdefault(episode_id, []).append(
                {
                    "prompt_ids": reply.model_extra["prompt_token_ids"],
                    "ids": choice.model_extra["token_ids"],
                    "logprobs": [t.logprob for t in choice.logprobs.content],
                }
            )
        text = choice.message.content
        if follow_up is None:
            break
        messages += [{"role": "assistant", "content": text}, {"role": "user", "content": follow_up}]
    return text


def history_editing_agent(base_url: str, task: Task, episode_id: str) -> str:
    """Rewrites its history between calls: the second prompt cannot extend the first call's ids."""
    client = openai.OpenAI(base_url=base_url, api_key="unused", max_retries=0)
    client.chat.completions.create(model="policy", messages=[{"role": "user", "content": "first"}])
    reply = client.chat.completions.create(model="policy", messages=[{"role": "user", "content": "second"}])
    return reply.choices[0].message.content


def raising_agent(base_url: str, task: Task, episode_id: str) -> str:
    raise RuntimeError("the agent broke")


def sleeping_agent(base_url: str, task: Task, episode_id: str) -> str:
    time.sleep(30)
    return "late"


def _assert_trained_equals_sampled(traj, seen: list[dict]) -> None:
    """The trajectory is the recorded calls, token for token: mask 1 exactly on the sampled ids."""
    full = list(traj.prompt_ids + traj.completion_ids)
    assert list(traj.prompt_ids) == seen[0]["prompt_ids"]
    trained = [t for t, m in zip(traj.completion_ids, traj.completion_mask) if m]
    assert trained == [t for call in seen for t in call["ids"]]
    lps = [lp for lp, m in zip(traj.logprobs, traj.completion_mask) if m]
    assert lps == pytest.approx([lp for call in seen for lp in call["logprobs"]])
    assert all(lp == 0.0 for lp, m in zip(traj.logprobs, traj.completion_mask) if not m)
    for call in seen:  # each call saw a prefix of the trajectory and sampled what follows it
        n = len(call["prompt_ids"])
        assert full[:n] == call["prompt_ids"]
        assert full[n : n + len(call["ids"])] == call["ids"]
        assert all(traj.completion_mask[i - len(traj.prompt_ids)] for i in range(n, n + len(call["ids"])))
    assert traj.num_policy_tokens == sum(len(call["ids"]) for call in seen)


@pytest.fixture(scope="module")
def generator(tmp_path_factory):
    from rewardkit.models.loading import load_model
    from rewardkit.models.tiny import tiny_model_for

    tasks = load_env("math", executor="inline").tasks("train")
    model, tok = load_model(tiny_model_for(tasks, tmp_path_factory.mktemp("tiny") / "model"))
    return make_generator("hf", model, tok)


@pytest.fixture(scope="module")
def tasks():
    return list(load_env("math", executor="inline").tasks("train")[:2])


def test_openai_agent_episodes_become_exact_trajectories(generator, tasks):
    env = load_env("harness", agent=openai_agent, agent_workers=4)
    assert isinstance(env, HarnessEnv)
    trajectories = env.rollout(generator, tasks, n=2, sampling=SamplingParams(max_tokens=6))
    assert [t.task for t in trajectories] == [tasks[0]] * 2 + [tasks[1]] * 2  # grouped by task
    for traj in trajectories:
        assert traj.info["status"] == "ok", traj.info
        seen = SEEN[traj.info["episode_id"]]
        assert len(seen) == 2 and traj.turns == 2 and traj.info["continued_calls"] == 1
        _assert_trained_equals_sampled(traj, seen)
        assert all(len(call["ids"]) <= 6 for call in seen)  # the rollout's max_tokens caps each call
        assert 0 in traj.completion_mask  # the template and the follow-up between the calls
    scores = env.score_batch(
        [
            {
                "completion": t.completion,
                "answer": t.task.answer,
                "prompt": t.task.prompt,
                "info": {"episode": t.info},
            }
            for t in trajectories
        ]
    )
    assert all(s.status == "ok" for s in scores)
    env.close()


def test_episodes_that_are_not_one_sequence_fail_with_a_reason_and_train_nothing(generator, tasks):
    cases = [
        (history_editing_agent, "error", "does not extend", 300.0),
        (raising_agent, "error", "the agent broke", 300.0),
        (sleeping_agent, "timeout", "ran past", 2.0),
    ]
    for agent, status, words, timeout in cases:
        env = load_env("harness", agent=agent, agent_timeout_s=timeout)
        (traj,) = env.rollout(generator, tasks[:1], n=1, sampling=SamplingParams(max_tokens=4))
        assert traj.info["status"] == status and words in traj.info["reason"], traj.info
        assert sum(traj.completion_mask) == 0
        score = env.score(
            traj.completion, answer=traj.task.answer, prompt=traj.task.prompt, info={"episode": traj.info}
        )
        assert score.status == status and score.reward == 0.0 and words in score.info["reason"]
        env.close()
    # the history-editing episode kept its first call, consistent, and not the second
    env = load_env("harness", agent=history_editing_agent)
    (traj,) = env.rollout(generator, tasks[:1], n=1, sampling=SamplingParams(max_tokens=4))
    assert traj.info["calls"] == 2 and traj.info["calls_used"] == 1 and traj.turns == 1
    env.close()


def test_episode_trajectory_from_calls():
    task = Task("q", "1")
    a = Call("e", 0, (), (1, 2), (3, 4), (-0.5, -0.25), "stop", "x")
    b = Call("e", 1, (), (1, 2, 3, 4, 9, 9), (5,), (-1.0,), "length", "y", continued=True)
    traj = episode_trajectory(task, "e", [a, b], None)
    assert traj.prompt_ids == (1, 2)
    assert traj.completion_ids == (3, 4, 9, 9, 5)
    assert traj.completion_mask == (1, 1, 0, 0, 1)
    assert traj.logprobs == (-0.5, -0.25, 0.0, 0.0, -1.0)
    assert traj.completion == "y" and traj.truncated and traj.info["status"] == "ok"
    bad = Call("e", 1, (), (1, 2, 3, 7), (5,), (-1.0,), "stop", "z")
    traj = episode_trajectory(task, "e", [a, bad], "final")
    assert traj.info["status"] == "error" and "differ at token 3" in traj.info["reason"]
    assert traj.completion_ids == (3, 4) and traj.completion_mask == (0, 0) and traj.completion == "final"
    two = Call("e", 0, (), (1, 2), (3,), (-0.1,), "stop", "w", n=2)
    assert episode_trajectory(task, "e", [two], None).info["status"] == "error"
    assert "no call" in episode_trajectory(task, "e", [], None).info["reason"]


def test_check_env_and_the_default_agent(generator, tasks):
    env = load_env("harness")
    report = check_env(env)
    assert report["probes"] >= 10 and report["gold_examples"] > 0
    (traj,) = env.rollout(generator, tasks[:1], n=1, sampling=SamplingParams(max_tokens=4))
    assert traj.info["status"] == "ok" and traj.turns == 1 and sum(traj.completion_mask) >= 1
    env.close()


class CapturingHarness(HarnessEnv):
    """The harness, keeping every trajectory it hands the trainer."""

    captured: list = []

    def rollout(self, generator, tasks, *, n=1, sampling=None):
        trajectories = super().rollout(generator, tasks, n=n, sampling=sampling)
        type(self).captured.extend(trajectories)
        return trajectories


def test_grpo_trains_on_an_openai_agent(tmp_path):
    from rewardkit.rl.config import TrainConfig
    from rewardkit.rl.trainer import train

    env = CapturingHarness(agent=openai_agent, agent_workers=4)
    cfg = TrainConfig(
        model="tiny",
        env="harness",
        prompts_per_step=2,
        group_size=2,
        max_new_tokens=8,
        steps=2,
        output_dir=str(tmp_path),
        save_every=0,
        sample_every=0,
        progress=False,
        algo={"kl_coef": 0.0},
    )
    train(cfg, env=env)
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert len(rows) == 2
    assert all(math.isfinite(r["reward_mean"]) and r["status_error"] == 0 for r in rows)
    assert len(CapturingHarness.captured) == 8  # 2 steps x 2 prompts x 2 samples
    for traj in CapturingHarness.captured:
        assert traj.info["status"] == "ok"
        _assert_trained_equals_sampled(traj, SEEN[traj.info["episode_id"]])
    env.close()
