"""A short GRPO run on the tool task with a tiny random Llama: multi-turn trajectories through the trainer.

A random model never writes a valid tool call, so the environment nudges (``no_call_reply``) instead
of ending the episode, and turns end on a stop string (a space) rather than an end-of-turn token:
every episode then has several policy turns separated by environment tokens, and the trainer must
take the masks as they are. The run itself checks little about learning; it proves the trainer and
both rollout back ends handle multi-turn tool episodes end to end.
"""

from __future__ import annotations

import json

import pytest

from rewardkit.envs.tool_use import ToolUseEnv

pytest.importorskip("torch")
pytest.importorskip("transformers")


class RecordingToolEnv(ToolUseEnv):
    """Keeps every trajectory the trainer's rollouts produce, to inspect after training."""

    def __init__(self, **config):
        super().__init__(**config)
        self.seen = []

    def rollout(self, generator, tasks, *, n=1, sampling=None):
        trajectories = super().rollout(generator, tasks, n=n, sampling=sampling)
        self.seen += trajectories
        return trajectories


@pytest.mark.parametrize("backend", ["hf", pytest.param("vllm", marks=pytest.mark.vllm)])
def test_short_grpo_run_on_tool_task(tmp_path, backend):
    if backend == "vllm":
        pytest.importorskip("vllm", reason="vLLM is not installed")
    try:
        from rewardkit.rl.config import TrainConfig
        from rewardkit.rl.tiny import TinyConfig, build_tiny
        from rewardkit.rl.trainer import train
    except ImportError as exc:
        pytest.skip(f"the trainer is not available: {exc}")
    env = RecordingToolEnv(
        task="calculator",
        max_turns=3,
        max_total_tokens=200,
        no_call_reply="Call a tool or answer.",
        executor="thread",
    )
    tasks = list(env.tasks("train"))[:4]
    corpus = [env.system_prompt(), "Call a tool or answer."] + [t.prompt[-1]["content"] for t in tasks]
    build_tiny(corpus * 4, TinyConfig(max_position_embeddings=1024), save_to=tmp_path / "tiny")
    cfg = TrainConfig(
        model=str(tmp_path / "tiny"),
        env="tool_use",
        rollout_backend=backend,
        steps=2,
        prompts_per_step=2,
        group_size=2,
        max_new_tokens=12,
        stop=(" ",),
        micro_batch_size=4,
        output_dir=str(tmp_path / "run"),
        save_every=0,
        sample_every=0,
        progress=False,
        vllm={"gpu_memory_utilization": 0.2, "max_model_len": 1024},
    )
    train(cfg, env=env, tasks=tasks)
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2]
    assert all(r["reward_mean"] == r["reward_mean"] for r in rows)  # not NaN
    multi = [t for t in env.seen if t.turns >= 2]
    assert multi, f"no multi-turn episode: {[(t.turns, t.stop_reason) for t in env.seen]}"
    for traj in multi:
        assert 0 in traj.completion_mask and traj.completion_mask[0] == 1
        assert traj.info["nudges"] >= 1
