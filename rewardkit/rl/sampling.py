"""Between the rollouts and the loss: scoring, overlong shaping and DAPO's dynamic sampling.

``collect_batch`` is one optimizer step's worth of data: it draws prompts, rolls out G samples each
through the environment, scores them, applies overlong shaping, and (with dynamic sampling) drops
groups whose rewards are all equal (they carry no gradient under group-relative advantages) and
draws more prompts until the batch is full or the round budget is spent. It never fails when the
budget runs out: it trains on what it has and says so in the stats.
"""

from __future__ import annotations

import random
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from rewardkit.envs.base import Environment
from rewardkit.generation.base import Generator, SamplingParams
from rewardkit.scoring import score_trajectories
from rewardkit.types import Score, Task, Trajectory
from rewardkit.verifiers.efficiency import soft_overlong_penalty


@dataclass(frozen=True)
class ScoredSample:
    """One scored trajectory: ``reward`` is the environment's reward plus any overlong shaping."""

    trajectory: Trajectory
    """The episode, as token ids."""
    score: Score
    """What the environment said."""
    reward: float
    """``score.reward`` plus overlong shaping: what the advantages are computed from."""
    group: int
    """Index of the prompt group in the batch (samples of one prompt share it)."""
    loss_mask_off: bool = False
    """True when overlong filtering removes this sample from the loss."""


@dataclass
class Batch:
    """One optimizer step's samples, grouped by prompt, and how collecting them went."""

    samples: list[ScoredSample]
    """The kept groups' samples, group by group."""
    stats: dict[str, float] = field(default_factory=dict)
    """Timings and dynamic-sampling counts (logged with the step's metrics)."""


class PromptSampler:
    """Draws tasks without replacement, reshuffling each epoch; its position is part of a checkpoint."""

    def __init__(self, tasks: Sequence[Task], seed: int) -> None:
        if not tasks:
            raise ValueError("no training tasks: the environment's split is empty")
        self.tasks, self.seed = list(tasks), seed
        self.epoch, self.index = 0, 0
        self._order = self._shuffled(0)

    def _shuffled(self, epoch: int) -> list[int]:
        order = list(range(len(self.tasks)))
        random.Random(self.seed * 1_000_003 + epoch).shuffle(order)
        return order

    def draw(self, n: int) -> list[Task]:
        out = []
        for _ in range(n):
            if self.index >= len(self._order):
                self.epoch, self.index = self.epoch + 1, 0
                self._order = self._shuffled(self.epoch)
            out.append(self.tasks[self._order[self.index]])
            self.index += 1
        return out

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.epoch, "index": self.index}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.epoch, self.index = int(state["epoch"]), int(state["index"])
        self._order = self._shuffled(self.epoch)


def overlong_penalty(trajectory: Trajectory, max_new_tokens: int, buffer_frac: float) -> float:
    """DAPO's soft overlong penalty on the number of policy tokens (0 when ``buffer_frac`` is 0)."""
    if buffer_frac <= 0:
        return 0.0
    buffer = max(1, int(round(buffer_frac * max_new_tokens)))
    return soft_overlong_penalty(trajectory.num_policy_tokens, max_new_tokens, buffer)


def collect_batch(
    env: Environment,
    generator: Generator,
    sampler: PromptSampler,
    *,
    prompts: int,
    group_size: int,
    sampling: SamplingParams,
    dynamic_sampling: bool,
    max_rounds: int,
    overlong_buffer_frac: float,
    overlong_filter: bool,
) -> Batch:
    kept: list[list[ScoredSample]] = []
    stats = {"rollout_time_s": 0.0, "score_time_s": 0.0, "groups_seen": 0.0, "groups_dropped": 0.0}
    zero_std_groups, rounds = 0, 0
    while len(kept) < prompts and rounds < max_rounds:
        seed = None if sampling.seed is None else sampling.seed + 7919 * rounds
        tasks = sampler.draw(prompts - len(kept) if dynamic_sampling else prompts)
        t0 = time.perf_counter()
        trajectories = env.rollout(generator, tasks, n=group_size, sampling=_with_seed(sampling, seed))
        t1 = time.perf_counter()
        scores = score_trajectories(env, trajectories)
        stats["rollout_time_s"] += t1 - t0
        stats["score_time_s"] += time.perf_counter() - t1
        rounds += 1
        for g in range(len(tasks)):
            group = []
            for traj, score in zip(
                trajectories[g * group_size : (g + 1) * group_size],
                scores[g * group_size : (g + 1) * group_size],
            ):
                penalty = overlong_penalty(traj, sampling.max_tokens, overlong_buffer_frac)
                group.append(
                    ScoredSample(
                        traj, score, score.reward + penalty, len(kept), overlong_filter and traj.truncated
                    )
                )
            stats["groups_seen"] += 1
            all_equal = len({round(s.reward, 9) for s in group}) == 1
            zero_std_groups += all_equal
            if dynamic_sampling and all_equal:
                stats["groups_dropped"] += 1
                continue
            if len(kept) < prompts:
                kept.append(group)
        if not dynamic_sampling:
            break
    stats["sampling_rounds"] = float(rounds)
    stats["frac_zero_std_groups"] = zero_std_groups / max(stats["groups_seen"], 1)
    stats["batch_short"] = float(len(kept) < prompts)  # dynamic sampling ran out of rounds
    samples = [s for group in kept for s in group]
    return Batch(samples, stats)


def _with_seed(sampling: SamplingParams, seed: int | None) -> SamplingParams:
    from dataclasses import replace

    return replace(sampling, seed=seed)


def batch_metrics(batch: Batch) -> dict[str, float]:
    """Reward, status and length statistics of a batch, with each environment metric's mean."""
    samples = batch.samples
    n = max(len(samples), 1)
    rewards = [s.reward for s in samples]
    mean = sum(rewards) / n
    out = {
        "reward_mean": mean,
        "reward_std": (sum((r - mean) ** 2 for r in rewards) / n) ** 0.5,
        "env_reward_mean": sum(s.score.reward for s in samples) / n,
        "response_len_mean": sum(s.trajectory.num_policy_tokens for s in samples) / n,
        "truncated_frac": sum(s.trajectory.truncated for s in samples) / n,
        "num_samples": float(len(samples)),
    }
    for status in ("timeout", "error", "invalid_input"):
        out[f"status_{status}"] = float(sum(s.score.status == status for s in samples))
    metric_sums: dict[str, float] = {}
    for s in samples:
        for key, value in s.score.metrics.items():
            metric_sums[key] = metric_sums.get(key, 0.0) + float(value)
    out.update({f"env/{k}": v / n for k, v in metric_sums.items()})
    out.update(batch.stats)
    return out
