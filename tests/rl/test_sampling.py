"""Overlong shaping and dynamic sampling, driven by a real environment and a scripted generator."""

from __future__ import annotations

import pytest

from rewardkit.generation.base import Generation, SamplingParams
from rewardkit.registry import FunctionEnv
from rewardkit.rl.sampling import (
    PromptSampler,
    batch_metrics,
    collect_batch,
    filter_value,
    overlong_penalty,
    policy_turn_lengths,
)
from rewardkit.types import Score, Task, Trajectory


class CharTokenizer:
    """One token per character: enough for the rollout loop's plain-text path."""

    chat_template = None

    def encode(self, text, add_special_tokens=False):
        return [ord(c) for c in text]

    def decode(self, ids, skip_special_tokens=True):
        return "".join(chr(i) for i in ids)


class ScriptedGenerator:
    """Answers each prompt with texts from ``script(prompt_text, sample_index)``."""

    def __init__(self, script, max_len=None):
        self.tokenizer = CharTokenizer()
        self.script = script
        self.calls = 0

    def generate(self, prompts, params):
        self.calls += 1
        out = []
        for p in prompts:
            group = []
            for k in range(params.n):
                text = self.script(self.tokenizer.decode(p), k)
                ids = tuple(self.tokenizer.encode(text))[: params.max_tokens]
                reason = "length" if len(text) > params.max_tokens else "stop"
                group.append(Generation(ids, tuple(-0.5 for _ in ids), reason, self.tokenizer.decode(ids)))
            out.append(group)
        return out

    samples_trained_module = False

    def update_weights(self, named_tensors):
        pass

    def sleep(self) -> None:
        pass


def exact(completion, *, answer=None, prompt=None, info=None):
    return float(completion.strip() == str(answer))


def make_tasks(n):
    return [Task(prompt=f"task{i}:", answer=str(i), id=str(i)) for i in range(n)]


def traj(n_tokens, truncated=False):
    return Trajectory(
        Task("p"), (1,), tuple(range(n_tokens)), (1,) * n_tokens, (0.0,) * n_tokens, "x", truncated=truncated
    )


@pytest.mark.parametrize(
    ("n", "expected"),
    [(70, 0.0), (80, 0.0), (81, -0.05), (90, -0.5), (100, -1.0), (101, -1.0)],
)
def test_overlong_penalty_follows_dapo_formula(n, expected):
    # L = 100, B = 20: 0 up to 80, linear to -1 at 100, -1 beyond
    assert overlong_penalty(traj(n), 100, 0.2) == pytest.approx(expected)


def test_overlong_penalty_off_when_buffer_zero():
    assert overlong_penalty(traj(500), 100, 0.0) == 0.0


def sampling(max_tokens=16):
    return SamplingParams(n=4, max_tokens=max_tokens, seed=0)


def test_dynamic_sampling_drops_uniform_groups_and_refills():
    env = FunctionEnv(exact, "exact", executor="inline")

    # even tasks: every sample right (all-equal group); odd tasks: half right (signal)
    def script(prompt, k):
        i = int(prompt.removeprefix("task").rstrip(":"))
        return str(i) if i % 2 == 0 or k % 2 == 0 else "wrong"

    gen = ScriptedGenerator(script)
    batch = collect_batch(
        env,
        gen,
        PromptSampler(make_tasks(40), seed=1),
        prompts=4,
        group_size=4,
        sampling=sampling(),
        dynamic_sampling=True,
        max_rounds=10,
        overlong_buffer_frac=0.0,
        overlong_filter=False,
    )
    assert len(batch.samples) == 16
    groups = {}
    for s in batch.samples:
        groups.setdefault(s.group, []).append(s.reward)
    assert all(len(set(r)) > 1 for r in groups.values()), "a zero-variance group was kept"
    assert batch.stats["groups_dropped"] >= 1
    assert batch.stats["sampling_rounds"] >= 2
    assert batch.stats["batch_short"] == 0.0


def test_dynamic_sampling_bound_hit_trains_on_what_there_is():
    env = FunctionEnv(exact, "exact", executor="inline")
    gen = ScriptedGenerator(lambda prompt, k: "always wrong")
    batch = collect_batch(
        env,
        gen,
        PromptSampler(make_tasks(10), seed=0),
        prompts=4,
        group_size=4,
        sampling=sampling(),
        dynamic_sampling=True,
        max_rounds=3,
        overlong_buffer_frac=0.0,
        overlong_filter=False,
    )
    assert batch.samples == []
    assert batch.stats["sampling_rounds"] == 3
    assert batch.stats["batch_short"] == 1.0
    assert batch.stats["frac_zero_std_groups"] == 1.0
    assert batch_metrics(batch)["num_samples"] == 0.0
    # what the step generated, kept or not: the viewer's x axis in samples counts these
    assert batch_metrics(batch)["num_generated"] == float(len(batch.generated)) > 0


def test_overlong_filter_and_penalty_use_model_tokens():
    env = FunctionEnv(exact, "exact", executor="inline")
    gen = ScriptedGenerator(lambda prompt, k: "x" * (4 + 6 * k))  # 4, 10, 16, 22 tokens; cap 16
    batch = collect_batch(
        env,
        gen,
        PromptSampler(make_tasks(1), seed=0),
        prompts=1,
        group_size=4,
        sampling=sampling(16),
        dynamic_sampling=False,
        max_rounds=1,
        overlong_buffer_frac=0.25,
        overlong_filter=True,
    )
    lengths = [s.trajectory.num_policy_tokens for s in batch.samples]
    assert lengths == [4, 10, 16, 16]
    rewards = [s.reward for s in batch.samples]
    assert rewards[:2] == [0.0, 0.0]  # within L - B = 12
    assert rewards[2] == pytest.approx(-1.0)  # n = L: (12 - 16) / 4
    assert [s.loss_mask_off for s in batch.samples] == [False, False, False, True]
    assert batch_metrics(batch)["truncated_frac"] == 0.25


def test_prompt_sampler_is_resumable():
    tasks = make_tasks(7)
    a = PromptSampler(tasks, seed=3)
    first = a.draw(5)
    state = a.state_dict()
    rest = a.draw(9)
    b = PromptSampler(tasks, seed=3)
    b.load_state_dict(state)
    assert [t.id for t in b.draw(9)] == [t.id for t in rest]
    assert len({t.id for t in first}) == 5


# ---------------------------------------------------------------------------------------------------------------
# Overlong shaping is per policy turn


class TwoTurns(FunctionEnv):
    """Two policy turns with a 7-token environment reply (``" again:"``) between them."""

    max_turns = 2

    def env_response(self, messages, state):
        from rewardkit.envs.base import EnvStep

        return EnvStep(messages=({"role": "user", "content": " again:"},))


def two_turn_batch(turn_lengths, max_tokens=8, buffer_frac=0.25):
    """One group of two-turn episodes through the real rollout loop; sample k writes ``turn_lengths[k]``
    characters (= tokens) per turn, in a letter of its own so a later turn can tell whose it is."""
    env = TwoTurns(exact, "exact2", executor="inline")

    def script(prompt, k):
        history = prompt.removeprefix("task0:")
        if not history:  # the first turn: sample k of the group
            return chr(ord("a") + k) * turn_lengths[k][0]
        k = ord(history[0]) - ord("a")
        return chr(ord("a") + k) * turn_lengths[k][1]

    batch = collect_batch(
        env,
        ScriptedGenerator(script),
        PromptSampler(make_tasks(1), seed=0),
        prompts=1,
        group_size=len(turn_lengths),
        sampling=sampling(max_tokens),
        dynamic_sampling=False,
        max_rounds=1,
        overlong_buffer_frac=buffer_frac,
        overlong_filter=True,
    )
    env.close()
    return batch


def test_overlong_shaping_judges_each_policy_turn_against_its_own_budget():
    # budget 8 tokens per turn, buffer 2: a turn of <= 6 is fine, 7 gets -0.5, a cut turn (8) gets -1
    batch = two_turn_batch([(6, 6), (3, 7), (6, 9), (2, 2)])
    turns = [policy_turn_lengths(s.trajectory) for s in batch.samples]
    assert turns == [[6, 6], [3, 7], [6, 8], [2, 2]]
    assert all(s.trajectory.turns == 2 for s in batch.samples)
    assert [s.trajectory.num_policy_tokens for s in batch.samples] == [12, 10, 14, 4]
    assert [s.reward for s in batch.samples] == pytest.approx([0.0, -0.5, -1.0, 0.0])
    assert [s.loss_mask_off for s in batch.samples] == [False, False, True, False]  # only the cut turn


# ---------------------------------------------------------------------------------------------------------------
# What dynamic sampling compares


def constant_env(metrics=None):
    """Reward 1.0 for every sample, with optional metrics from ``metrics(completion)``."""

    def fn(completion, *, answer=None, prompt=None, info=None):
        return Score.ok(1.0, metrics(completion) if metrics else {})

    return FunctionEnv(fn, "constant", executor="inline")


def filtered(env, metric, lengths=(4, 10, 16, 22), buffer_frac=0.25):
    gen = ScriptedGenerator(lambda prompt, k: "x" * lengths[k % len(lengths)])
    return collect_batch(
        env,
        gen,
        PromptSampler(make_tasks(4), seed=0),
        prompts=2,
        group_size=4,
        sampling=sampling(16),
        dynamic_sampling=True,
        max_rounds=2,
        overlong_buffer_frac=buffer_frac,
        overlong_filter=False,
        dynamic_sampling_metric=metric,
    )


def test_dynamic_sampling_ignores_a_group_that_differs_only_by_its_length_penalty():
    batch = filtered(constant_env(), "auto")
    assert [s.reward for s in batch.generated[:4]] == [1.0, 1.0, 0.0, 0.0]  # -1 at the budget (16)
    assert batch.samples == []  # accuracy is 1.0 everywhere: no group is trained on the penalty alone
    assert batch.stats["groups_dropped"] == 4 and batch.stats["batch_short"] == 1.0
    metrics = batch_metrics(batch)
    assert metrics["env_reward_mean"] == 1.0 and metrics["kept_fraction"] == 0.0
    assert metrics["reward_mean"] == pytest.approx(0.5)  # every generated sample, not the (no) kept ones
    assert "reward_mean_kept" not in metrics
    # the shaped reward is still there to filter on when wanted
    assert len(filtered(constant_env(), "reward").samples) == 8


def test_dynamic_sampling_reads_the_correct_metric_then_any_named_metric():
    right = constant_env(lambda c: {"correct": 1.0, "short": float(len(c) < 10)})
    assert filtered(right, "auto", buffer_frac=0.0).samples == []  # all correct: dropped
    assert len(filtered(right, "short", buffer_frac=0.0).samples) == 8  # 'short' differs within a group

    with pytest.raises(ValueError, match="'missing' is not a metric.*correct, short"):
        filtered(right, "missing")


def test_auto_reads_the_environments_own_correctness_metric():
    env = constant_env(lambda c: {"solved": 1.0, "correct": float(len(c) < 10)})
    assert len(filtered(env, "auto", buffer_frac=0.0).samples) == 8  # `correct` differs within a group
    env.correctness_metric = "solved"  # every answer solved: nothing to learn from, whatever `correct` says
    assert filtered(env, "auto", buffer_frac=0.0).samples == []


def test_filter_value_of_a_failed_score_is_zero():
    failure = Score.failure("timeout", "slow")
    assert filter_value(failure, 0.0, "correct") == 0.0
    assert filter_value(Score.ok(0.5, {"correct": 1.0}), 0.2, "auto") == 1.0
    assert filter_value(Score.ok(0.5), 0.2, "auto") == 0.5
    assert filter_value(Score.ok(0.5), 0.2, "reward") == 0.2
    # an environment's own correctness metric wins (code: all_passed), then `correct`, then the reward
    assert filter_value(Score.ok(0.5, {"all_passed": 0.0, "correct": 1.0}), 0.2, "auto", "all_passed") == 0.0
