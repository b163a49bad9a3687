"""Weighted composition: one environment whose reward is a weighted sum of several.

Components are scored inside the composite's own worker, one after the other, so the composite's
timeout bounds the whole sample. Each component's reward and metrics are kept in the metrics under
its name (``math/reward``, ``format/format_ok``); the first component that fails (timeout, error,
invalid input) makes the whole sample fail with that status, never a silent partial reward.

Exploit probes are the components' own (docs/hacking.md, ``weighted``): each positively weighted
component's probe, scored by the composite, may reach ``weight * bound`` plus what the other components
give that very sample, so a hole a component closed stays closed inside the sum (and a composite that
lost the prompt or the answer on the way to its components shows it).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from rewardkit.envs.base import Environment, EnvStep
from rewardkit.inputs import normalize_sample
from rewardkit.scoring import score_one
from rewardkit.types import Completion, Message, Sample, Score, Task

if TYPE_CHECKING:
    from rewardkit.envs.probes import Probe


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

    def exploit_probes(self) -> list[Probe]:
        """Every positively weighted component's probes, named ``<component>-<probe>``.

        A probe of component ``c`` (weight ``w``, bound ``b``) may score ``w * b`` plus the weighted
        rewards the other components give the same sample (scored here, once); when one of them fails
        on it the composite fails the sample, so its bound is 0. Penalty components (weight <= 0) lend
        no probes: an exploit of a penalty raises its reward, which lowers the composite's.
        """
        from rewardkit.envs.probes import Probe

        probes: list[Probe] = []
        names: set[str] = set()
        for key, (env, weight) in self.components.items():
            if weight <= 0:
                continue
            prefix = _slug(key)
            for probe in env.exploit_probes():
                others = [
                    (w, _safe_score(e, _full(probe.sample)))
                    for k, (e, w) in self.components.items()
                    if k != key
                ]
                if all(score.status == "ok" for _, score in others):
                    bound = weight * probe.bound + sum(w * score.reward for w, score in others)
                else:
                    bound = 0.0
                name = f"{prefix}-{probe.name}"
                while name in names:  # two component keys with the same slug
                    name += "-"
                names.add(name)
                probes.append(
                    Probe(name, probe.family, probe.sample, f"{key} (weight {weight:g}): {probe.why}", bound)
                )
        return probes

    def exploit_signals(self, completions: Sequence[Completion]) -> dict[str, float]:
        """Each component's signatures, as ``<component>/<name>``."""
        signals = super().exploit_signals(completions)
        for key, (env, _) in self.components.items():
            signals.update({f"{key}/{name}": rate for name, rate in env.exploit_signals(completions).items()})
        return signals

    def suspicious(self, sample: Mapping[str, Any], score: Score) -> str | None:
        """The first positively weighted component's doubt about the sample, given its part of ``score``."""
        parts = score.info.get("components") or {}
        for key, (env, weight) in self.components.items():
            if weight <= 0 or f"{key}/reward" not in score.metrics:
                continue
            metrics = {m[len(key) + 1 :]: v for m, v in score.metrics.items() if m.startswith(f"{key}/")}
            reward = metrics.pop("reward")
            if reason := env.suspicious(sample, Score.ok(reward, metrics, **parts.get(key, {}))):
                return f"{key}: {reason}"
        return None

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


def _slug(key: str) -> str:
    """A component key as a probe-name prefix: lower-case letters, digits, ``-`` and ``_``."""
    slug = re.sub(r"[^a-z0-9_-]+", "-", key.lower()).strip("-_")
    return slug if slug[:1].isalnum() else f"c{slug}"


def _safe_score(env: Environment, sample: Sample) -> Score:
    try:
        return score_one(env, sample)
    except Exception as exc:  # the composite's own verify would fail this sample: bound 0
        return Score.from_exception(exc)
