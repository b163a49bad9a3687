"""Per-episode stateful tools and scripted user turns in ``tool_use`` (issue 17, deliverables 3 and 4).

A task names its tools' factory (``task.info["tools"]``): every sample of every group gets fresh
instances, the final state reaches ``verify`` through ``Trajectory.info["tool_state"]``, and
``info["expected_state"]`` makes the outcome state-based. A task's ``user_turns`` arrive one by one after
each assistant turn without calls; the episode ends after the last. The policy is first a scripted one
(a real tokenizer and chat templates), then a tiny Llama trained by GRPO with 8 samples per task."""

from __future__ import annotations

import copy
import json
import re
import time

import pytest
from test_tool_use import CHATML, QWEN3_LIKE, SYSTEM_FIRST, ScriptedGenerator, call, make_tokenizer, runs

from rewardkit.envs.tool_use import ToolUseEnv, task_tools, tool_state
from rewardkit.generation.base import SamplingParams
from rewardkit.types import Task


class Counter:
    """A tool with state, standing in for a file system or a trading account."""

    def __init__(self, start: int = 0) -> None:
        self.count = start
        self.added: list[int] = []

    def increment(self, by: int) -> int:
        """Add to the counter and return its new value.

        Args:
            by: how much to add.
        """
        self.count += by
        self.added.append(by)
        return self.count


SPEC = {"factory": "test_tool_use_stateful:Counter", "kwargs": {"start": 10}}


def counter_task(i: int = 0, **info) -> Task:
    env = ToolUseEnv(task=None, tools=())
    prompt = ({"role": "system", "content": env.system_prompt()}, {"role": "user", "content": "Count up."})
    return Task(prompt, None, {"tools": SPEC, **info}, f"t{i}")


def test_task_tools_builds_fresh_instances_from_a_factory():
    tools_a, obj_a = task_tools(SPEC)
    tools_b, obj_b = task_tools(SPEC)
    assert obj_a is not obj_b and [t.__name__ for t in tools_a] == ["increment"]
    tools_a[0](by=2)
    assert tool_state(obj_a) == {"count": 12, "added": [2]} and tool_state(obj_b) == {
        "count": 10,
        "added": [],
    }
    with pytest.raises(ValueError, match="factory"):
        task_tools({"kwargs": {}})


def test_every_sample_gets_its_own_tool_state(tokenizer):
    """8 samples of each of 2 tasks: sample k adds k+1 once. Shared instances would add up across samples."""

    def policy(context: str, k: int) -> str:
        if "<|im_start|>tool" in context:
            return "done"
        return call("increment", by=k + 1)

    env = ToolUseEnv(task=None, tools=(), executor="inline")
    tasks = [counter_task(0), counter_task(1)]
    trajectories = env.rollout(
        ScriptedGenerator(tokenizer, policy), tasks, n=8, sampling=SamplingParams(max_tokens=64, seed=0)
    )
    assert len(trajectories) == 16
    for i, traj in enumerate(trajectories):
        k = i % 8
        assert traj.info["tool_state"] == {"count": 10 + k + 1, "added": [k + 1]}, i


def test_parallel_calls_in_one_turn_all_run(tokenizer):
    """A turn with two calls that ends on the end-of-turn token (no ``</tool_call>`` stop string) runs
    both, in order, each with its own result message."""

    def policy(context: str, k: int) -> str:
        if "<|im_start|>tool" in context:
            return "done"
        return call("increment", by=1) + "\n" + call("increment", by=2)

    env = ToolUseEnv(task=None, tools=(), executor="inline")
    (traj,) = env.rollout(
        ScriptedGenerator(tokenizer, policy),
        [counter_task()],
        n=1,
        sampling=SamplingParams(max_tokens=96, seed=0),
    )
    assert [m["content"] for m in traj.completion if m["role"] == "tool"] == ["11", "13"]
    assert traj.info["tool_state"] == {"count": 13, "added": [1, 2]} and traj.info["tool_calls"] == 2


@pytest.mark.parametrize("template", ["chatml", "qwen3_like", "system_first"])
def test_scripted_user_turns_arrive_after_each_turn_without_calls(tokenizer, template):
    tokenizer = copy.deepcopy(tokenizer)
    tokenizer.chat_template = {"chatml": CHATML, "qwen3_like": QWEN3_LIKE, "system_first": SYSTEM_FIRST}[
        template
    ]

    def policy(context: str, k: int) -> str:  # one call per user turn, then a reply without calls
        last = context.rsplit("<|im_start|>", 2)[-2]
        return "ok" if last.startswith("tool") else call("increment", by=1)

    env = ToolUseEnv(task=None, tools=(), max_turns=10, executor="inline")
    task = counter_task(user_turns=["Again.", "Once more."], expected_state={"count": 13})
    gen = ScriptedGenerator(tokenizer, policy)
    (traj,) = env.rollout(gen, [task], n=1, sampling=SamplingParams(max_tokens=64, seed=0))
    roles = [m["role"] for m in traj.completion]
    assert roles == ["assistant", "tool", "assistant", "user"] * 2 + ["assistant", "tool", "assistant"]
    assert [m["content"] for m in traj.completion if m["role"] == "user"] == ["Again.", "Once more."]
    assert traj.info["end"] == "conversation_done" and traj.info["tool_state"]["count"] == 13
    # Masks stay exact: the policy's runs decode to its turns, everything else is the environment's
    sampled = [m["content"] for m in traj.completion if m["role"] == "assistant"]
    decoded = [
        tokenizer.decode(r, skip_special_tokens=False)
        for r in runs(traj.completion_mask, traj.completion_ids, 1)
    ]
    assert decoded == [s + "<|im_end|>" for s in sampled]
    env_text = "".join(
        tokenizer.decode(r, skip_special_tokens=False)
        for r in runs(traj.completion_mask, traj.completion_ids, 0)
    )
    assert "Again." in env_text and "Once more." in env_text
    score = env.score(traj.completion, answer=None, info={**task.info, "episode": traj.info})
    assert score.reward == 1.0 and score.metrics["outcome"] == 1.0  # the state-based outcome


def test_the_expected_state_decides_the_outcome():
    env = ToolUseEnv(task=None, tools=())
    info = {"expected_state": {"count": 13}}
    done = env.score("ok", answer=None, info={**info, "episode": {"tool_state": {"count": 13, "added": [3]}}})
    short = env.score("ok", answer=None, info={**info, "episode": {"tool_state": {"count": 12}}})
    assert done.metrics["outcome"] == 1.0 and short.metrics["outcome"] == 0.0
    assert "state.count: expected 13, got 12" in short.info["reason"]
    assert env.score("ok", answer=None, info={}).status == "invalid_input"


SPANS: list[tuple[float, float]] = []


def slow_echo(text: str) -> str:
    """Echo the text after a pause, as a tool that waits on a sandbox or a service would.

    Args:
        text: what to echo.
    """
    start = time.monotonic()
    time.sleep(0.05)
    SPANS.append((start, time.monotonic()))
    return text.upper()


def _most_at_once(spans):
    events = sorted([(a, 1) for a, _ in spans] + [(b, -1) for _, b in spans])
    level = peak = 0
    for _, delta in events:
        level += delta
        peak = max(peak, level)
    return peak


def test_episodes_answered_by_a_thread_pool_are_the_sequential_ones(tokenizer):
    """``response_workers: 8``: the episodes' tool calls overlap (8 calls at once), and every trajectory
    is the one a single worker makes: ids, masks, messages and tool results alike."""

    def policy(context: str, k: int) -> str:
        if "<|im_start|>tool" in context:
            return "<answer>done</answer>"
        return call("slow_echo", text=f"sample {k}")

    results = {}
    for workers in (1, 8):
        SPANS.clear()
        env = ToolUseEnv(task=None, tools=(slow_echo,), response_workers=workers, executor="inline")
        task = Task(({"role": "user", "content": "Echo."},), "done", {"match": "exact"}, "echo")
        trajectories = env.rollout(
            ScriptedGenerator(tokenizer, policy), [task], n=8, sampling=SamplingParams(max_tokens=64, seed=0)
        )
        results[workers] = (trajectories, _most_at_once(SPANS))
    (one, peak_one), (many, peak_many) = results[1], results[8]
    assert peak_one == 1 and peak_many > 1
    for a, b in zip(one, many, strict=True):
        assert (a.completion_ids, a.completion_mask, a.completion) == (
            b.completion_ids,
            b.completion_mask,
            b.completion,
        )
    assert [m["content"] for t in many for m in t.completion if m["role"] == "tool"] == [
        f"SAMPLE {k}" for k in range(8)
    ]


@pytest.fixture(scope="module")
def tokenizer():
    return make_tokenizer()


# ---------------------------------------------------------------------------------------------------------------
# GRPO with a tiny Llama: 8 samples per task, each with its own counter


def test_grpo_trains_on_a_stateful_tool_task_with_isolated_samples(tmp_path):
    """The tiny model is first taught (a few SFT steps) to call ``increment`` with by in 1..3, so its
    samples really call the tool, in different ways; GRPO then trains on 2 tasks x 8 samples a step.
    Every trajectory's final counter is its start plus the calls in its own completion: none saw another's."""
    torch = pytest.importorskip("torch")
    pytest.importorskip("transformers")
    from rewardkit.models.tiny import TinyConfig, build_tiny
    from rewardkit.rl.config import TrainConfig
    from rewardkit.rl.model import completion_logprobs, pack
    from rewardkit.rl.trainer import train

    class Recording(ToolUseEnv):
        seen: list = []

        def rollout(self, generator, tasks, *, n=1, sampling=None):
            out = super().rollout(generator, tasks, n=n, sampling=sampling)
            Recording.seen += out
            return out

    env = Recording(task=None, tools=(), max_turns=2, max_total_tokens=160, executor="inline")
    tasks = [counter_task(i, expected_state={"count": 12}) for i in range(4)]
    calls = [call("increment", by=b) for b in (1, 2, 3)]
    model, tok = build_tiny([env.system_prompt(), "Count up.", *calls] * 8, TinyConfig(seed=0))
    prompt = tok.apply_chat_template(list(tasks[0].prompt), tokenize=False, add_generation_prompt=True)
    ids = tok.encode(prompt, add_special_tokens=False)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    for _ in range(150):
        targets = [tok.encode(c, add_special_tokens=False) + [tok.eos_token_id] for c in calls]
        packed = pack([ids] * 3, targets, tok.pad_token_id, model.device)
        logprobs, _ = completion_logprobs(model, packed, 1.0, with_entropy=False)
        mask = torch.zeros_like(logprobs, dtype=torch.bool)
        for i, t in enumerate(targets):
            mask[i, : len(t)] = True
        (-logprobs[mask].mean()).backward()
        optimizer.step()
        optimizer.zero_grad()
    model.save_pretrained(tmp_path / "model")
    tok.save_pretrained(tmp_path / "model")
    cfg = TrainConfig(
        model=str(tmp_path / "model"),
        env="tool_use",
        prompts_per_step=2,
        group_size=8,
        max_new_tokens=40,
        temperature=0.7,
        steps=2,
        lr=1e-3,
        algo={"kl_coef": 0.0},
        micro_batch_size=16,
        output_dir=str(tmp_path / "run"),
        save_every=0,
        sample_every=0,
        progress=False,
    )
    result = train(cfg, env=env, tasks=tasks)
    assert result.steps == 2 and len(Recording.seen) == 2 * 2 * 8
    calling = 0
    for traj in Recording.seen:
        added = [
            json.loads(m)["arguments"]["by"]
            for msg in traj.completion
            if msg["role"] == "assistant"
            for m in re.findall(r"<tool_call>(.*?)</tool_call>", msg["content"], re.S)
            if _valid_increment(m)
        ]
        ran = [int(m["content"]) for m in traj.completion if m["role"] == "tool" and m["content"].isdigit()]
        if "tool_state" not in traj.info:  # the first turn ran out of tokens: the environment never answered
            assert traj.turns == 1 and traj.stop_reason == "length" and not ran
            continue
        state = traj.info["tool_state"]
        assert state["count"] == 10 + sum(state["added"])  # its own calls only, no other sample's
        assert ran == [10 + sum(state["added"][: j + 1]) for j in range(len(ran))]
        assert state["added"] == added[: len(ran)]
        calling += bool(ran)
    assert calling >= 16, f"only {calling} of {len(Recording.seen)} samples called the tool"


def _valid_increment(body: str) -> bool:
    try:
        parsed = json.loads(body)
    except json.JSONDecodeError:
        return False
    by = parsed.get("arguments", {}).get("by") if isinstance(parsed, dict) else None
    return parsed.get("name") == "increment" and isinstance(by, int) and not isinstance(by, bool)


def test_the_docs_examples_run(tmp_path):
    """docs/tool_use.md's schema-tool and function_call examples, run as written; the Counter example
    saved as my_tools.py and used through a task (scripted policy)."""
    import contextlib
    import io
    import pathlib

    docs = (pathlib.Path(__file__).resolve().parents[2] / "docs" / "tool_use.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", docs, re.S)
    schema_block = next(b for b in blocks if "Tool.from_schema" in b)
    call_block = next(b for b in blocks if 'load_env("function_call")' in b)
    for block, printed in (
        (schema_block, '{"city": "Paris", "temp": 21, "unit": "celsius"}'),
        (call_block, "1.0"),
    ):
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            exec(compile(block, "docs/tool_use.md", "exec"), {})
        assert out.getvalue().strip() == printed
    tools_block = next(b for b in blocks if b.startswith("# my_tools.py"))
    (tmp_path / "my_tools.py").write_text(tools_block)
    sys_path = __import__("sys").path
    sys_path.insert(0, str(tmp_path))
    try:
        task_block = next(b for b in blocks if "my_tools:Counter" in b and "ToolUseEnv" in b)
        scope: dict = {}
        exec(compile(task_block, "docs/tool_use.md", "exec"), scope)
        tools, counter = task_tools(scope["task"].info["tools"])
        tools[0](by=3)
        env = scope["env"]
        score = env.score(
            "ok", answer=None, info={**scope["task"].info, "episode": {"tool_state": tool_state(counter)}}
        )
        assert score.metrics["outcome"] == 1.0
    finally:
        sys_path.remove(str(tmp_path))
