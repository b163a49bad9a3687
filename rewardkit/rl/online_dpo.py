"""Online (iterative) DPO: the preference pairs re-sampled from the current policy every K steps.

A round, before step 1 and then every ``online.every`` steps: draw ``online.prompts`` prompts from the
data (its ``prompt_field``, with the answer the environment checks), sample ``online.samples``
completions of each from the policy being trained (the hf back end, temperature ``online.temperature``,
seeded by the run's seed and the step), score them with ``online.env``, and pair the best against the
worst completion of each prompt when their rewards differ by more than ``online.min_margin``. Only
samples scored ``ok`` are ranked (a timeout says nothing of a completion). The steps until the next round
draw their pairs from that round's, reshuffled when they run out. The pairs are the sampled token ids
themselves, so the loss scores exactly what the policy wrote.

Each round logs ``online/pairs``, ``online/prompts_without_pair`` (ties, all-equal groups, too few
ranked samples) and ``online/reward_mean``. The round's pairs and the prompt order are part of a
checkpoint (``rollouts.pt``), so a resumed run trains on the same pairs.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import torch

from rewardkit.generation.base import SamplingParams
from rewardkit.rl.offline_config import OfflineConfig
from rewardkit.rl.offline_data import Example
from rewardkit.rl.sampling import PromptSampler
from rewardkit.scoring import score_trajectories

MAX_EMPTY_ROUNDS = 4
"""Rounds tried in a row before giving up when none gives a pair (every group tied)."""


class OnlineRounds:
    """The pairs of online DPO: sampled, scored and paired every ``online.every`` steps."""

    def __init__(self, cfg: OfflineConfig, policy: Any, tokenizer: Any) -> None:
        from rewardkit.data.tasks import DataConfig, load_tasks
        from rewardkit.generation import make_generator
        from rewardkit.registry import load_env

        assert cfg.online is not None
        self.cfg, self.online = cfg, cfg.online
        data = DataConfig(
            path=cfg.data, name=cfg.data_name, split=cfg.data_split, prompt_field=cfg.prompt_field
        )
        tasks = load_tasks(data)[: cfg.max_examples]
        self.prompts = PromptSampler(tasks, cfg.seed)
        self.env = load_env(self.online.env, **self.online.env_config)
        self.generator = make_generator("hf", policy, tokenizer)
        self.policy = policy
        self.pool: list[Example] = []
        self.order = PromptSampler([0], cfg.seed)  # over the pool; remade each round
        self.last_metrics: dict[str, float] = {}

    def draw(self, step: int, n: int) -> list[Example]:
        """Step ``step``'s ``n`` pairs (a new round first when one is due)."""
        self.last_metrics = {}
        if not self.pool or (step - 1) % self.online.every == 0:
            self._new_round(step)
        return [self.pool[i] for i in self.order.draw(n)]

    def _new_round(self, step: int) -> None:
        for attempt in range(MAX_EMPTY_ROUNDS):
            pairs, metrics = self._sample_pairs(step, attempt)
            if pairs:
                self.pool = pairs
                self.order = PromptSampler(list(range(len(pairs))), self.cfg.seed + step)
                self.last_metrics = metrics
                return
        raise RuntimeError(
            f"online DPO: {MAX_EMPTY_ROUNDS} rounds of {self.online.prompts} prompts x {self.online.samples} "
            f"samples at step {step} gave no pair (every group's rewards within min_margin "
            f"{self.online.min_margin}); raise online.samples or online.temperature, or lower online.min_margin"
        )

    def _sample_pairs(self, step: int, attempt: int) -> tuple[list[Example], dict[str, float]]:
        online = self.online
        tasks = self.prompts.draw(online.prompts)
        sampling = SamplingParams(
            n=online.samples,
            temperature=online.temperature,
            max_tokens=online.max_new_tokens,
            seed=self.cfg.seed * 100_003 + step + 7919 * attempt,
        )
        was_training = self.policy.training
        self.policy.eval()
        with torch.no_grad():
            trajectories = self.env.rollout(self.generator, tasks, n=online.samples, sampling=sampling)
        self.policy.train(was_training)
        scores = score_trajectories(self.env, trajectories)
        if any(0 in t.completion_mask for t in trajectories):
            raise ValueError(
                f"online DPO: environment {online.env!r} replied inside an episode; online pairs need a "
                "single-turn environment (each completion all the policy's own tokens)"
            )
        pairs: list[Example] = []
        for g in range(len(tasks)):
            part = slice(g * online.samples, (g + 1) * online.samples)
            group = [(s.reward, t) for t, s in zip(trajectories[part], scores[part]) if s.status == "ok"]
            if len(group) < 2:
                continue
            best = max(range(len(group)), key=lambda i: (group[i][0], -i))
            worst = min(range(len(group)), key=lambda i: (group[i][0], i))
            if group[best][0] - group[worst][0] > online.min_margin:
                chosen, rejected = group[best][1], group[worst][1]
                pairs.append(
                    Example(
                        list(chosen.prompt_ids), (list(chosen.completion_ids), list(rejected.completion_ids))
                    )
                )
        rewards = [s.reward for s in scores if s.status == "ok"]
        metrics = {
            "online/pairs": float(len(pairs)),
            "online/prompts_without_pair": float(len(tasks) - len(pairs)),
            "online/reward_mean": sum(rewards) / len(rewards) if rewards else 0.0,
        }
        return pairs, metrics

    def checkpoint(self) -> dict[str, Any]:
        """What a checkpoint keeps: the round's pairs, the order over them, the prompt order."""
        return {
            "online_pool": [dataclasses.asdict(e) for e in self.pool],
            "online_order": {
                **self.order.state_dict(),
                "size": len(self.order.tasks),
                "seed": self.order.seed,
            },
            "online_prompts": self.prompts.state_dict(),
        }

    def restore(self, checkpoint: Path) -> None:
        from rewardkit.rl.checkpoint import ROLLOUTS_FILE

        path = Path(checkpoint) / ROLLOUTS_FILE
        if not path.exists():
            return
        saved = torch.load(path, map_location="cpu", weights_only=False)
        self.pool = [Example(e["prompt"], tuple(e["completions"])) for e in saved["online_pool"]]
        order = saved["online_order"]
        self.order = PromptSampler(list(range(order["size"])), order["seed"])
        self.order.load_state_dict(order)
        self.prompts.load_state_dict(saved["online_prompts"])
