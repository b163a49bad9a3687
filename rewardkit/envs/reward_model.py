"""The ``reward_model`` environment: a trained reward model's score as the reward.

``load_env("reward_model", model="runs/rm/model")`` scores each completion with the model that
``rewardkit rm`` trained, or any sequence classifier with one output. It reads the prompt too, so
samples need ``prompt=``. The reward is the raw score, or ``sigmoid(score)`` in [0, 1] with
``squash: true``. A batch of samples is scored in batches of ``batch_size`` forward passes, on the GPU
when there is one. It composes with rule-based environments in ``weighted``, e.g.
``components: {math: 1.0, reward_model: {weight: 0.2, model: runs/rm/model}}``. The model is loaded once
per process, on first use.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from rewardkit.envs.base import Environment
from rewardkit.types import Completion, Sample, Score

WHERE = "environment 'reward_model'"


@dataclass(frozen=True)
class RewardModelEnvConfig:
    """Options of ``load_env("reward_model", ...)``."""

    model: str = ""
    """The reward model's directory (``rewardkit rm``'s ``output_dir/model``) or hub id."""
    batch_size: int = 16
    """Completions per forward pass."""
    max_length: int = 1024
    """Tokens of prompt + completion read (from the left: the completion's end is always read)."""
    squash: bool = False
    """Reward ``sigmoid(score)`` in [0, 1] instead of the raw score."""
    pass_score: float = 0.0
    """The raw score that counts as a pass (pass@k, ``check_env``): 0 is even odds in Bradley-Terry terms."""

    def __post_init__(self) -> None:
        if not self.model:
            raise ValueError(f"{WHERE}: model: got '', expected a reward model directory or hub id")
        if self.batch_size < 1:
            raise ValueError(f"{WHERE}: batch_size: got {self.batch_size}, expected >= 1")


class RewardModelEnv(Environment):
    """A learned reward (options: ``RewardModelEnvConfig``)."""

    name = "reward_model"
    Config = RewardModelEnvConfig

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        cfg = self.config
        self.pass_threshold = 1 / (1 + math.exp(-cfg.pass_score)) if cfg.squash else cfg.pass_score
        self._loaded: tuple[Any, Any] | None = None

    @classmethod
    def scoring_defaults(cls, config: Any) -> Mapping[str, Any]:
        return {"executor": "inline"}  # one model in this process, not one per scoring worker

    def __getstate__(self) -> dict[str, Any]:
        state = super().__getstate__()
        state["_loaded"] = None  # each process loads its own copy
        return state

    def _model(self) -> tuple[Any, Any]:
        if self._loaded is None:
            from rewardkit.models.reward import load_reward_model

            self._loaded = load_reward_model(self.config.model)
            self._loaded[0].eval()
        return self._loaded

    def raw_scores(self, pairs: list[tuple[Any, Completion]]) -> list[float]:
        """The model's scores of (prompt, completion) pairs, ``batch_size`` at a time."""
        import torch

        from rewardkit.models.reward import render, scores

        model, tokenizer = self._model()
        out: list[float] = []
        with torch.no_grad():
            for i in range(0, len(pairs), self.config.batch_size):
                texts = [render(tokenizer, p, c) for p, c in pairs[i : i + self.config.batch_size]]
                out += scores(model, tokenizer, texts, self.config.max_length).tolist()
        return out

    def _score(self, raw: float) -> Score:
        reward = 1 / (1 + math.exp(-raw)) if self.config.squash else raw
        return Score.ok(reward, {"rm_score": raw})

    def verify(self, completion: Completion, *, answer: Any, prompt: Any, info: Mapping[str, Any]) -> Score:
        if prompt is None:
            return Score.failure("invalid_input", "reward_model needs the prompt (prompt=...)")
        return self._score(self.raw_scores([(prompt, completion)])[0])

    def score_batch(self, samples: Iterable[Any]) -> list[Score]:
        """Every sample with a prompt in batched forward passes; the rest through the usual checks."""
        samples = [s if isinstance(s, Sample) else Sample(**s) for s in samples]
        ready = [i for i, s in enumerate(samples) if s.prompt is not None and s.completion is not None]
        out: list[Score | None] = [None] * len(samples)
        for i, raw in zip(
            ready, self.raw_scores([(samples[i].prompt, samples[i].completion) for i in ready])
        ):
            out[i] = self._score(raw)
        rest = [i for i in range(len(samples)) if out[i] is None]
        for i, score in zip(rest, super().score_batch([samples[i] for i in rest]) if rest else []):
            out[i] = score
        return [s for s in out if s is not None]
