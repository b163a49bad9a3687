"""Weighted composition: one environment whose reward is a weighted sum of several.

Components are scored inside the composite's own worker, one after the other, so the composite's
timeout bounds the whole sample. Each component's reward and metrics are kept in the metrics under
its name (``math/reward``, ``format/format_ok``); the first component that fails (timeout, error,
invalid input) makes the whole sample fail with that status, never a silent partial reward.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from rewardkit.envs.base import Environment, EnvStep
from rewardkit.inputs import normalize_sample
from rewardkit.scoring import score_one
from rewardkit.types import Completion, Message, Sample, Score, Task


@dataclass(frozen=True)
class WeightedConfig:
    """Options of the ``weighted`` environment."""

    components: Mapping[str, Any] = field(default_factory=dict)
    """``{name: weight}`` for registered environments with default config, or
    ``{name: {"weight": w, "env": "registered-name", **config}}``, or ``{name: (Environment, weight)}``.
    The first component provides the dataset and, for multi-turn episodes, the rollout protocol."""

    def __post_init__(self) -> None:
        if not isinstance(self.components, Mapping) or not self.components:
            raise ValueError("components must be a non-empty mapping of name -> weight or config")


class WeightedEnv(Environment):
    """``reward = sum_i weight_i * reward_i`` over named components (options: ``WeightedConfig``).

    The scoring ``timeout_s`` defaults to the longest of the components' (they run one after another
    inside this environment's worker).
    """

    name = "weighted"
    Config = WeightedConfig

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.components: dict[str, tuple[Environment, float]] = {
            key: _component(key, spec) for key, spec in self.config.components.items()
        }
        self.primary = next(iter(self.components.values()))[0]
        self.pass_threshold = sum(w * e.pass_threshold for e, w in self.components.values() if w > 0)
        self.max_turns = self.primary.max_turns  # type: ignore[misc]
        self.max_total_tokens = self.primary.max_total_tokens
        if "timeout_s" not in options:
            timeout = max(e.scoring.timeout_s for e, _ in self.components.values())
            self.scoring = dataclasses.replace(self.scoring, timeout_s=timeout)

    def verify(self, completion: Completion, *, answer: Any, prompt: Any, info: Mapping[str, Any]) -> Score:
        reward, metrics, parts = 0.0, {}, {}
        sample = Sample(completion, answer, prompt, info)
        for key, (env, weight) in self.components.items():
            score = score_one(env, sample)
            if score.status != "ok":
                return Score.failure(score.status, f"component {key!r}: {score.info.get('reason', '')}")  # type: ignore[arg-type]
            reward += weight * score.reward
            metrics[f"{key}/reward"] = score.reward
            metrics.update({f"{key}/{m}": v for m, v in score.metrics.items()})
            parts[key] = {k: v for k, v in score.info.items() if k != "status"}
        return Score.ok(reward, metrics, components=parts)

    def cache_key(
        self, completion: Completion, *, answer: Any, prompt: Any, info: Mapping[str, Any]
    ) -> Hashable | None:
        keys = []
        for env, _ in self.components.values():
            key = env.cache_key(completion, answer=answer, prompt=prompt, info=info)
            if key is None:
                return None
            keys.append(key)
        return tuple(keys)

    def gold_examples(self) -> list[dict[str, Any]]:
        """The primary's gold examples that every positively weighted component passes."""
        positive = [env for env, weight in self.components.values() if weight > 0]

        def passes(env: Environment, sample: Sample) -> bool:
            score = score_one(env, sample)
            return score.status == "ok" and score.reward >= env.pass_threshold

        return [s for s in self.primary.gold_examples() if all(passes(e, _full(s)) for e in positive)]

    def tasks(self, split: str = "train") -> Sequence[Task]:
        return self.primary.tasks(split)

    def initial_state(self, task: Task) -> dict[str, Any]:
        return self.primary.initial_state(task)

    def env_response(self, messages: list[Message], state: dict[str, Any]) -> EnvStep:
        return self.primary.env_response(messages, state)


def _component(key: str, spec: Any) -> tuple[Environment, float]:
    """One component: ``weight``, ``{"weight": w, "env": name, **config}`` or ``(Environment, weight)``."""
    from rewardkit.registry import load_env

    if isinstance(spec, tuple):
        env, weight = spec
    elif isinstance(spec, int | float):
        env, weight = load_env(key, executor="inline"), float(spec)
    elif isinstance(spec, Mapping):
        spec = dict(spec)
        weight = float(spec.pop("weight", 1.0))
        env = load_env(spec.pop("env", key), **{"executor": "inline", **spec})
    else:
        raise TypeError(f"component {key!r}: expected a weight, a config dict or (env, weight), got {spec!r}")
    if not isinstance(env, Environment):
        raise TypeError(f"component {key!r} is not an Environment")
    return env, float(weight)


def _full(sample: Mapping[str, Any]) -> Sample:
    return normalize_sample(sample, 10_000_000)
