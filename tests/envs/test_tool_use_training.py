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


ENV_CONFIG = {
    "task": "calculator",
    "max_turns": 3,
    "max_total_tokens": 200,
    "no_call_reply": "Call a tool or answer.",
    "executor": "thread",
}


@pytest.fixture(scope="module")
def tiny_model_dir(tmp_path_factory):
    """A tiny random Llama whose tokenizer was trained on the tool prompts (saved as an HF directory)."""
    try:
        from rewardkit.models.tiny import TinyConfig, build_tiny
    except ImportError as exc:
        pytest.skip(f"rewardkit.models.tiny is not available: {exc}")
    env = ToolUseEnv(**ENV_CONFIG)
    corpus = [env.system_prompt(), ENV_CONFIG["no_call_reply"]] + [
        t.prompt[-1]["content"] for t in env.tasks()[:8]
    ]
    path = tmp_path_factory.mktemp("tool_tiny") / "tiny"
    build_tiny(corpus * 4, TinyConfig(max_position_embeddings=1024), save_to=path)
    return path


@pytest.mark.parametrize("backend", ["hf", pytest.param("vllm", marks=pytest.mark.vllm)])
def test_short_grpo_run_on_tool_task(tmp_path, tiny_model_dir, backend):
    if backend == "vllm":
        pytest.importorskip("vllm", reason="vLLM is not installed")
    try:
        from rewardkit.rl.config import TrainConfig
        from rewardkit.rl.trainer import train
    except ImportError as exc:
        pytest.skip(f"the trainer is not available: {exc}")
    env = RecordingToolEnv(**ENV_CONFIG)
    tasks = list(env.tasks("train"))[:4]
    cfg = TrainConfig(
        model=str(tiny_model_dir),
        env="tool_use",
        rollout_backend=backend,
        steps=2,
        prompts_per_step=1,
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
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    nudge = f"<|im_end|>\n<|im_start|>user\n{ENV_CONFIG['no_call_reply']}<|im_end|>\n<|im_start|>assistant\n"
    for traj in multi:
        assert traj.info["nudges"] == traj.turns - 1
        policy, between = _runs(traj.completion_mask, traj.completion_ids)
        assert len(policy) == traj.turns and len(between) == traj.turns - 1
        turns = [m["content"] for m in traj.completion if m["role"] == "assistant"]
        for ids, text in zip(policy, turns):
            # The sampler's text stops right after the stop string; its ids end with the token that
            # completed it, which may carry a few more characters. Never anything else.
            assert tokenizer.decode(ids, skip_special_tokens=True).startswith(text)
        # Environment tokens: the template's nudge, led by the end-of-turn text the model did not sample
        # (its turns end on a stop string or on </s>, never on the template's <|im_end|>).
        for ids in between:
            assert tokenizer.decode(ids, skip_special_tokens=False) == nudge


def _runs(mask, ids):
    """(policy runs, environment runs): maximal spans of ``ids`` with mask 1 and mask 0."""
    spans: list[tuple[int, list[int]]] = []
    for m, i in zip(mask, ids):
        if spans and spans[-1][0] == m:
            spans[-1][1].append(i)
        else:
            spans.append((m, [i]))
    return [s for m, s in spans if m == 1], [s for m, s in spans if m == 0]


def test_tool_task_in_rewardkit_eval_reports_tool_metrics(tmp_path, tiny_model_dir):
    try:
        from rewardkit.eval.run import EvalConfig, evaluate
        from rewardkit.eval.suite import parse_suite
    except ImportError as exc:
        pytest.skip(f"the evaluator is not available: {exc}")
    suite = parse_suite(
        {
            "name": "tool",
            "environments": [
                {
                    "env": "tool_use",
                    "config": ENV_CONFIG,
                    "tasks": {"split": "test"},
                    "num_tasks": 2,
                    "n": 2,
                    "sampling": {"temperature": 1.0, "max_tokens": 12, "stop": [" "], "seed": 0},
                }
            ],
        }
    )
    cfg = EvalConfig(model=str(tiny_model_dir), output_dir=str(tmp_path / "eval"), progress=False)
    summary = evaluate(cfg, suite)
    report = summary["environments"]["tool_use"]
    assert report["samples"] == 4
    for name in ("tool_calls", "tool_errors", "tool_error_rate", "parse_errors", "turns", "outcome"):
        assert name in report["metrics"], sorted(report["metrics"])
    assert report["metrics"]["turns"] > 1  # nudged multi-turn episodes went through the evaluator
    records = [json.loads(line) for line in (tmp_path / "eval" / "rollouts.jsonl").read_text().splitlines()]
    assert {r["turns"] for r in records} >= {3}
