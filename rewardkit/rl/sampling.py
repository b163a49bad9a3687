"""Between the rollouts and the loss: scoring, overlong shaping and DAPO's dynamic sampling.

``collect_batch`` is one optimizer step's worth of data: it draws prompts, rolls out G samples each
through the environment, scores them, applies overlong shaping, and (with dynamic sampling) drops
groups whose accuracy is all equal (they carry no signal under group-relative advantages; what is
compared is ``AlgorithmConfig.dynamic_sampling_metric``, see ``filter_value``) and draws more prompts
until the batch is full or the round budget is spent. It never fails when the budget runs out: it
trains on what it has and says so in the stats.

Overlong shaping is per policy turn: ``max_new_tokens`` is the budget of one turn, so a multi-turn
episode is judged by its longest turn (``overlong_penalty``), never by the sum of its turns.
"""

from __future__ import annotations

import random
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from rewardkit.envs.base import Environment
from rewardkit.generation.base import Generator, SamplingParams
from rewardkit.rl.distributed import World, all_gather_objects, shard
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
    policy_version: int = 0
    """The policy that sampled it: the number of optimizer steps its weights had taken (synchronous
    runs: the step's own, ``step - 1``; ``rollout_mode: async``: up to ``max_staleness`` older)."""


@dataclass
class Batch:
    """One optimizer step's samples, grouped by prompt, and how collecting them went."""

    samples: list[ScoredSample]
    """The kept groups' samples, group by group: what the step trains on."""
    stats: dict[str, float] = field(default_factory=dict)
    """Timings and dynamic-sampling counts (logged with the step's metrics)."""
    generated: list[ScoredSample] | None = None
    """Every sample the step generated, kept or dropped (the step's reward and length statistics are
    theirs); None: the kept samples are all there were."""

    def __post_init__(self) -> None:
        if self.generated is None:
            self.generated = list(self.samples)


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


def policy_turn_lengths(trajectory: Trajectory) -> list[int]:
    """The number of tokens of each policy turn: the runs of 1 in the completion mask (environment replies
    are the 0s between them). A reply that tokenises to nothing would join two turns into one run."""
    lengths: list[int] = []
    previous = 0
    for m in trajectory.completion_mask:
        if m and previous:
            lengths[-1] += 1
        elif m:
            lengths.append(1)
        previous = m
    return lengths


def overlong_penalty(trajectory: Trajectory, max_new_tokens: int, buffer_frac: float) -> float:
    """DAPO's soft overlong penalty (Yu et al. 2025, arXiv:2503.14476, sec. 3.4, eq. 13) on the longest policy
    turn, with L = ``max_new_tokens`` and buffer B = ``buffer_frac`` * L (0 when ``buffer_frac`` is 0).

    DAPO punishes a response for running into its generation budget. In a multi-turn episode that budget
    is per turn (each turn is generated with ``max_new_tokens``), so the turn that came closest to its own
    budget decides: two 6-token turns under a budget of 8 are not overlong, though they hold 12 policy
    tokens. A truncated turn has length L and gets -1. Single-turn, this is the number of policy tokens."""
    if buffer_frac <= 0:
        return 0.0
    buffer = max(1, int(round(buffer_frac * max_new_tokens)))
    longest = max(policy_turn_lengths(trajectory), default=0)
    return soft_overlong_penalty(longest, max_new_tokens, buffer)


def filter_value(score: Score, reward: float, metric: str, correctness: str | None = None) -> float:
    """What dynamic sampling compares within a group, for one sample (``AlgorithmConfig.dynamic_sampling_metric``).

    DAPO (sec. 3.2) drops the groups whose *accuracy* is all 0 or all 1, so ``auto`` reads the Score's
    ``correctness`` metric (the environment's ``correctness_metric``: math's ``correct``, code's
    ``all_passed``, tool_use's ``outcome``; else ``correct``) and falls back to ``env_reward``, the reward before
    overlong shaping: a length penalty alone is no reason to train on a group. ``reward`` is the shaped
    reward; any other name is a metric of the Score. A failed Score (timeout, error, invalid input) has no
    metrics and counts as 0."""
    if metric == "reward":
        return reward
    if metric == "env_reward":
        return score.reward
    if metric == "auto":
        return float(score.metrics.get(correctness or "correct", score.reward))
    if metric in score.metrics:
        return float(score.metrics[metric])
    if score.status != "ok":
        return 0.0
    known = ", ".join(sorted(score.metrics)) or "none"
    raise ValueError(
        f"dynamic_sampling_metric {metric!r} is not a metric of this environment's scores (its metrics: "
        f"{known}); use auto, env_reward, reward, or one of those"
    )


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
    dynamic_sampling_metric: str = "auto",
    world: World | None = None,
) -> Batch:
    """``prompts`` groups of ``group_size`` scored, shaped samples (see the module docstring).

    Over several ranks (``world``, ``rewardkit.rl.distributed``) ``prompts`` is the global count: every
    rank draws the same prompts and rolls out its own slice of them; dynamic sampling's extra rounds
    draw the global shortfall, and of the groups kept in a round the first ones in rank order fill it.
    The returned batch is this rank's part."""
    world = world or World()
    kept: list[list[ScoredSample]] = []
    generated: list[ScoredSample] = []
    correctness = getattr(env, "correctness_metric", None)
    stats = {"rollout_time_s": 0.0, "score_time_s": 0.0, "groups_seen": 0.0, "groups_dropped": 0.0}
    zero_std_groups, rounds, total_kept = 0, 0, 0  # total_kept: over all ranks
    while total_kept < prompts and rounds < max_rounds:
        seed = None if sampling.seed is None else sampling.seed + 7919 * rounds
        tasks = shard(sampler.draw(prompts - total_kept if dynamic_sampling else prompts), world)
        t0 = time.perf_counter()
        trajectories = env.rollout(generator, tasks, n=group_size, sampling=_with_seed(sampling, seed))
        t1 = time.perf_counter()
        scores = score_trajectories(env, trajectories)
        stats["rollout_time_s"] += t1 - t0
        stats["score_time_s"] += time.perf_counter() - t1
        rounds += 1
        fresh: list[list[ScoredSample]] = []  # this round's groups that carry a signal, in order
        for g in range(len(tasks)):
            part = slice(g * group_size, (g + 1) * group_size)
            group = [
                _shaped(
                    traj,
                    score,
                    len(kept) + len(fresh),
                    sampling.max_tokens,
                    overlong_buffer_frac,
                    overlong_filter,
                )
                for traj, score in zip(trajectories[part], scores[part])
            ]
            generated += group
            stats["groups_seen"] += 1
            zero_std_groups += _all_equal([s.reward for s in group])  # no advantage signal
            if dynamic_sampling and _all_equal(
                [filter_value(s.score, s.reward, dynamic_sampling_metric, correctness) for s in group]
            ):
                stats["groups_dropped"] += 1
                continue
            fresh.append(group)
        # The round's groups fill the shortfall in rank order (one process: simply the first ones).
        counts = [len(fresh)] if not world.distributed else all_gather_objects(len(fresh))
        room = max(0, prompts - total_kept - sum(counts[: world.rank]))
        kept += fresh[:room]  # their group ids run on from len(kept), as they were numbered
        total_kept += min(sum(counts), prompts - total_kept)
        if not dynamic_sampling:
            break
    stats["sampling_rounds"] = float(rounds)
    stats["frac_zero_std_groups"] = zero_std_groups / max(stats["groups_seen"], 1)
    stats["batch_short"] = float(total_kept < prompts)  # dynamic sampling ran out of rounds
    return Batch([s for group in kept for s in group], stats, generated)


def rollout_sampling(cfg: Any, step: int, rank: int = 0) -> SamplingParams:
    """Step ``step``'s rollout sampling (``cfg``: a ``TrainConfig``): ``group_size`` samples per prompt,
    seeded by the run's seed, the step and the rank (ranks sample their own prompts with their own
    random streams), so a step's samples do not depend on which process draws them, or when."""
    return SamplingParams(
        n=cfg.group_size,
        temperature=cfg.temperature,
        top_p=cfg.top_p,
        top_k=cfg.top_k,
        max_tokens=cfg.max_new_tokens,
        stop=tuple(cfg.stop),
        seed=cfg.seed * 100_003 + step + 1_000_003 * rank,
    )


def collect_step(
    cfg: Any,
    env: Environment,
    generator: Generator,
    sampler: PromptSampler,
    step: int,
    world: World | None = None,
    policy_version: int | None = None,
) -> Batch:
    """Step ``step``'s batch as ``cfg`` (a ``TrainConfig``) asks: ``collect_batch`` with the run's group
    size, sampling, dynamic sampling and overlong shaping; every sample tagged with ``policy_version``
    (default ``step - 1``, the synchronous run's)."""
    algo = cfg.algorithm_config
    world = world or World()
    batch = collect_batch(
        env,
        generator,
        sampler,
        world=world,
        prompts=cfg.prompts_per_step,
        group_size=cfg.group_size,
        sampling=rollout_sampling(cfg, step, world.rank),
        dynamic_sampling=algo.dynamic_sampling,
        max_rounds=cfg.max_sampling_rounds,
        overlong_buffer_frac=algo.overlong_buffer_frac,
        overlong_filter=algo.overlong_filter,
        dynamic_sampling_metric=algo.dynamic_sampling_metric,
    )
    version = step - 1 if policy_version is None else policy_version
    return _tagged(batch, version) if version else batch


def _tagged(batch: Batch, version: int) -> Batch:
    """``batch`` with every sample's ``policy_version`` set (a kept sample stays one object in both lists)."""
    memo: dict[int, ScoredSample] = {}

    def tag(s: ScoredSample) -> ScoredSample:
        return memo.setdefault(id(s), replace(s, policy_version=version))

    return Batch([tag(s) for s in batch.samples], batch.stats, [tag(s) for s in batch.generated or []])


def merge_batches(parts: Sequence[Batch]) -> Batch:
    """One batch from the ranks' parts (rank order), as if one process had collected it: group ids are
    renumbered to stay distinct (a kept sample stays the same object in ``samples`` and ``generated``),
    counts add up, times and round counts are the slowest rank's, fractions are over the whole."""
    samples: list[ScoredSample] = []
    generated: list[ScoredSample] = []
    offset = 0
    for part in parts:
        moved: dict[int, ScoredSample] = {}

        def move(
            sample: ScoredSample, by: int = offset, memo: dict[int, ScoredSample] = moved
        ) -> ScoredSample:
            return memo.setdefault(id(sample), replace(sample, group=sample.group + by))

        samples += [move(x) for x in part.samples]
        generated += [move(x) for x in part.generated or []]
        offset = 1 + max((x.group for x in samples + generated), default=-1)
    stats: dict[str, float] = {}
    for key in {k for part in parts for k in part.stats}:
        values = [part.stats[key] for part in parts if key in part.stats]
        slowest = key.endswith("_s") or key in ("sampling_rounds", "batch_short")
        stats[key] = max(values) if slowest else sum(values)
    if "frac_zero_std_groups" in stats:
        seen = [part.stats.get("groups_seen", 0.0) for part in parts]
        zero = sum(part.stats.get("frac_zero_std_groups", 0.0) * n for part, n in zip(parts, seen))
        stats["frac_zero_std_groups"] = zero / max(sum(seen), 1)
    return Batch(samples, stats, generated)


def _shaped(
    traj: Trajectory, score: Score, group: int, max_tokens: int, buffer_frac: float, overlong_filter: bool
) -> ScoredSample:
    """One sample with its overlong penalty added (and masked out of the loss when filtered)."""
    reward = score.reward + overlong_penalty(traj, max_tokens, buffer_frac)
    return ScoredSample(traj, score, reward, group, overlong_filter and traj.truncated)


def _all_equal(values: list[float]) -> bool:
    return len({round(v, 9) for v in values}) == 1


def _with_seed(sampling: SamplingParams, seed: int | None) -> SamplingParams:
    return replace(sampling, seed=seed)


def batch_metrics(batch: Batch) -> dict[str, float]:
    """Reward, status and length statistics of every sample the step generated (kept or dropped by dynamic
    sampling), with each environment metric's mean; ``reward_mean_kept`` and ``kept_fraction`` describe
    the samples it trains on (``reward_mean_kept`` is absent when every group was dropped)."""
    samples = batch.generated or []
    n = max(len(samples), 1)
    rewards = [s.reward for s in samples]
    mean = sum(rewards) / n
    out = {
        "reward_mean": mean,
        "reward_std": (sum((r - mean) ** 2 for r in rewards) / n) ** 0.5,
        "env_reward_mean": sum(s.score.reward for s in samples) / n,
        "response_len_mean": sum(s.trajectory.num_policy_tokens for s in samples) / n,
        "truncated_frac": sum(s.trajectory.truncated for s in samples) / n,
        "num_samples": float(len(batch.samples)),
        "num_generated": float(len(samples)),
        "kept_fraction": len(batch.samples) / n,
    }
    if batch.samples:
        out["reward_mean_kept"] = sum(s.reward for s in batch.samples) / len(batch.samples)
    for status in ("timeout", "error", "invalid_input"):
        out[f"status_{status}"] = float(sum(s.score.status == status for s in samples))
    metric_sums: dict[str, float] = {}
    for s in samples:
        for key, value in s.score.metrics.items():
            metric_sums[key] = metric_sums.get(key, 0.0) + float(value)
    out.update({f"env/{k}": v / n for k, v in metric_sums.items()})
    out.update(batch.stats)
    return out
