"""The rollout interface: what every generation back end (Hugging Face ``generate``, vLLM) provides.

Token ids are the currency: prompts go in as ids and samples come out as ids with the sampler's
per-token log-probabilities, so nothing is decoded and re-tokenised on the way to the trainer. This
module imports no torch, so environments can use the types without pulling in a deep-learning stack.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable


@dataclass(frozen=True)
class SamplingParams:
    """How to sample. Defaults suit RL rollouts (pure sampling, no truncation of the distribution)."""

    n: int = 1
    """Samples per prompt (the group size G for GRPO)."""
    temperature: float = 1.0
    """0 means greedy."""
    top_p: float = 1.0
    """Nucleus sampling: keep the smallest set of tokens whose probability reaches this (1.0: all)."""
    top_k: int = 0
    """0 disables top-k."""
    max_tokens: int = 256
    """Maximum new tokens per call (per turn in multi-turn episodes)."""
    stop: tuple[str, ...] = ()
    """Stop strings; the matched string is kept in the output, so the trainer sees what was sampled."""
    seed: int | None = None
    """Seed of this call's sampling (None: unseeded); equal seeds give equal samples on one back end."""

    def __post_init__(self) -> None:
        if self.n < 1:
            raise ValueError(f"n must be >= 1, got {self.n}")
        if self.max_tokens < 1:
            raise ValueError(f"max_tokens must be >= 1, got {self.max_tokens}")
        if self.temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")

    @property
    def truncates(self) -> bool:
        """True when top-k or top-p cut the distribution sampled: the samples then come from a truncated,
        renormalised distribution, not from the policy at ``temperature`` (greedy truncates nothing)."""
        return self.temperature > 0 and (self.top_k > 0 or self.top_p < 1.0)


FinishReason = Literal["stop", "length"]


@dataclass(frozen=True)
class Generation:
    """One sample: the new token ids, the sampler's log-probability of each, and why it ended."""

    token_ids: tuple[int, ...]
    logprobs: tuple[float, ...]
    finish_reason: FinishReason
    text: str = ""
    info: dict[str, Any] = field(default_factory=dict)


@runtime_checkable
class Generator(Protocol):
    """A rollout back end.

    ``generate`` takes token-id prompts and returns, for each prompt, ``params.n`` generations in a
    list (order preserved). ``update_weights`` loads new policy weights in place (called after each
    optimizer step); a back end that shares the trainer's module may make it a no-op. The trainer
    calls ``sleep`` after each rollout phase, and reads ``samples_trained_module`` to know whether the
    sampler's log-probs are its own.
    """

    tokenizer: Any

    @property
    def samples_trained_module(self) -> bool:
        """True when ``generate`` samples from the very module the trainer updates (the Hugging Face back
        end), with the trainer's numerics. False when it samples from a copy of the weights with its own
        numerics (vLLM: other kernels, its own precision). Whether the sampler's log-probs are the
        trainer's own also depends on the sampling: see ``samples_policy_distribution``."""
        ...

    def generate(
        self, prompts: Sequence[Sequence[int]], params: SamplingParams
    ) -> list[list[Generation]]: ...

    def update_weights(self, named_tensors: Iterable[tuple[str, Any]]) -> None: ...

    def sleep(self) -> None:
        """Release generation memory until the next ``generate`` (vLLM on GPU); may be a no-op."""
        ...


def samples_policy_distribution(generator: Generator, params: SamplingParams) -> bool:
    """Whether ``generator.generate(prompts, params)`` samples the trained policy's own distribution at
    ``params.temperature``, so its log-probs are the ones the trainer computes: the generator samples the
    trained module (``samples_trained_module``) and ``params`` truncate nothing. Every back end reports
    the log-probs of the distribution it actually sampled (after top-k/top-p, renormalised: vLLM's
    ``processed_logprobs``), while the trainer scores the full distribution; when this is False the
    trainer recomputes the old log-probs itself, logs the sampler/trainer mismatch and corrects it with
    importance weights unless ``is_correction`` is ``none`` (``rewardkit.rl.is_correction``)."""
    return generator.samples_trained_module and not params.truncates
