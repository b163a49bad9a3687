"""Core value types shared by every part of rewardkit.

All of them are frozen dataclasses: a Score, a Task or a Trajectory is a value that is passed between
processes and written to disk, never mutated in place.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, TypeAlias

Message: TypeAlias = dict[str, Any]
"""A chat message: ``{"role": "system" | "user" | "assistant" | "tool", "content": str, ...}``.

Callers may pass OpenAI-style text parts as content; ``rewardkit.inputs`` joins them into the str a
verifier sees."""

Completion: TypeAlias = "str | tuple[Message, ...]"
"""What an environment scores: plain text, or the messages the policy and environment exchanged."""

Status = Literal["ok", "timeout", "error", "invalid_input"]
STATUSES: tuple[str, ...] = ("ok", "timeout", "error", "invalid_input")


@dataclass(frozen=True)
class Score:
    """The one result type of every environment and verifier.

    ``reward`` is what the trainer optimises. ``metrics`` are named numbers that are logged but never
    summed into the reward. ``info`` carries diagnostics; ``info["status"]`` is always one of
    ``ok``, ``timeout``, ``error``, ``invalid_input`` and anything but ``ok`` comes with reward 0.0 and
    ``info["reason"]``.
    """

    reward: float
    """What the trainer optimises; 0.0 whenever the status is not ``ok``."""
    metrics: dict[str, float] = field(default_factory=dict)
    """Named numbers for logs and reports, never summed into ``reward``."""
    info: dict[str, Any] = field(default_factory=lambda: {"status": "ok"})
    """Diagnostics: ``status`` always, ``reason`` when it is not ``ok``, anything else the verifier adds."""

    def __post_init__(self) -> None:
        if self.info.get("status") not in STATUSES:
            raise ValueError(
                f"Score.info['status'] must be one of {STATUSES}, got {self.info.get('status')!r}"
            )

    @property
    def status(self) -> str:
        return self.info["status"]

    @classmethod
    def ok(cls, reward: float, metrics: Mapping[str, float] | None = None, **info: Any) -> Score:
        return cls(float(reward), dict(metrics or {}), {"status": "ok", **info})

    @classmethod
    def failure(cls, status: Status, reason: str, **info: Any) -> Score:
        """A zero-reward score that says why: never a silent 0."""
        if status == "ok":
            raise ValueError("failure() needs a non-ok status")
        return cls(0.0, {}, {"status": status, "reason": reason, **info})

    @classmethod
    def from_exception(cls, exc: BaseException, memory_mb: int | None = None) -> Score:
        """The ``error`` Score of a verifier that raised ``exc``, with the end of its traceback; a
        MemoryError names the worker's memory cap ``memory_mb``."""
        if isinstance(exc, MemoryError):
            return cls.failure("error", f"out of memory (worker cap {memory_mb} MB)")
        import traceback

        tb = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__, limit=3))
        return cls.failure("error", f"{type(exc).__name__}: {exc}", traceback=tb[-2000:])

    def to_dict(self) -> dict[str, Any]:
        return {"reward": self.reward, "metrics": dict(self.metrics), "info": dict(self.info)}


def as_score(value: Any) -> Score:
    """Turn what a verifier returned (a Score, or a real number) into a Score, or raise TypeError."""
    if isinstance(value, Score):
        score = value
    elif isinstance(value, bool | int | float) or type(value).__name__ in ("float64", "float32", "int64"):
        score = Score.ok(float(value))
    else:
        raise TypeError(f"a reward function must return a float or a Score, got {type(value).__name__}")
    if not math.isfinite(score.reward):
        raise ValueError(f"reward is not finite: {score.reward!r}")
    return score


@dataclass(frozen=True)
class Task:
    """One problem: the prompt shown to the policy, and what the environment needs to check the answer.

    ``prompt`` is plain text (used as is) or chat messages (rendered with the tokenizer's chat template).
    """

    prompt: str | tuple[Message, ...]
    """What the policy sees: text as is, or chat messages."""
    answer: Any = None
    """The gold answer the environment checks against (None when it needs none)."""
    info: dict[str, Any] = field(default_factory=dict)
    """What else the environment needs per task (tests to run, a match mode, tool calls that solve it)."""
    id: str = ""
    """A stable name for reports and resumed evaluations."""

    def to_dict(self) -> dict[str, Any]:
        prompt = self.prompt if isinstance(self.prompt, str) else [dict(m) for m in self.prompt]
        return {"id": self.id, "prompt": prompt, "answer": self.answer, "info": dict(self.info)}


@dataclass(frozen=True)
class Trajectory:
    """One episode, single- or multi-turn, as token ids (the source of truth for training).

    ``completion_ids`` holds everything after the prompt: the policy's turns and, in multi-turn
    episodes, the environment's replies between them. ``completion_mask[i]`` is 1 where the policy
    sampled token i (those get loss) and 0 where the environment wrote it. ``logprobs[i]`` is the
    sampler's log-probability of a policy token (0.0 on environment tokens).
    """

    task: Task
    """The task the episode answered."""
    prompt_ids: tuple[int, ...]
    """The rendered prompt's token ids."""
    completion_ids: tuple[int, ...]
    """Everything after the prompt: policy turns and environment replies."""
    completion_mask: tuple[int, ...]
    """1 where the policy sampled the token, 0 where the environment wrote it."""
    logprobs: tuple[float, ...]
    """The sampler's log-probability of each policy token (0.0 on environment tokens)."""
    completion: str | tuple[Message, ...]
    """What the environment scores: the text (plain single-turn) or the episode's messages."""
    turns: int = 1
    """Policy turns taken."""
    stop_reason: str = "stop"
    """``stop`` (policy ended its turn), ``length`` (max tokens of a turn), ``max_turns``, ``max_total_tokens``,
    ``done`` (the environment ended the episode)."""
    truncated: bool = False
    """The last policy turn ran into the token limit."""
    turn_rewards: tuple[float, ...] = ()
    """Per-turn rewards the environment reported (diagnostics; the outcome is scored separately)."""
    info: dict[str, Any] = field(default_factory=dict)
    """The environment's account of the episode (its status, tool counts, why it ended)."""

    def __post_init__(self) -> None:
        n = len(self.completion_ids)
        if len(self.completion_mask) != n or len(self.logprobs) != n:
            raise ValueError(
                f"completion_ids ({n}), completion_mask ({len(self.completion_mask)}) and logprobs "
                f"({len(self.logprobs)}) must have the same length"
            )

    @property
    def num_policy_tokens(self) -> int:
        return sum(self.completion_mask)

    def segments(self, decode: Callable[[Sequence[int]], str]) -> list[dict[str, Any]]:
        """The completion as runs of policy-sampled and environment-written tokens, each decoded:
        ``[{"text": ..., "policy": True}, {"text": ..., "policy": False}, ...]``. What a rollout viewer
        highlights, so a reader sees exactly which tokens got loss."""
        runs: list[dict[str, Any]] = []
        start = 0
        for end in range(1, len(self.completion_ids) + 1):
            if end == len(self.completion_ids) or self.completion_mask[end] != self.completion_mask[start]:
                text = decode(self.completion_ids[start:end])
                runs.append({"text": text, "policy": bool(self.completion_mask[start])})
                start = end
        return runs

    @property
    def has_environment_tokens(self) -> bool:
        return not all(self.completion_mask)


@dataclass(frozen=True)
class Sample:
    """One thing to score: what the policy wrote, and what the environment needs to check it.

    ``score_batch`` takes these (or dicts with the same keys). ``info`` reaches ``verify`` as is; a
    sample made from an episode carries the episode's own account under ``info["episode"]``, so an
    environment can say ``error`` for an episode its infrastructure broke instead of scoring it 0.
    """

    completion: Any
    """A string or a sequence of chat messages (anything else is ``invalid_input``)."""
    answer: Any = None
    """The gold answer."""
    prompt: Any = None
    """The prompt the completion answers (text or messages), for environments that read it."""
    info: Mapping[str, Any] = field(default_factory=dict)
    """Per-sample data for the environment (tests to run, tolerances, the episode's info)."""

    @classmethod
    def from_trajectory(cls, trajectory: Trajectory) -> Sample:
        """The one way an episode becomes a sample: the task's data plus the episode's info."""
        task = trajectory.task
        return cls(
            trajectory.completion, task.answer, task.prompt, {**task.info, "episode": dict(trajectory.info)}
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "completion": self.completion,
            "answer": self.answer,
            "prompt": self.prompt,
            "info": dict(self.info or {}),
        }


def completion_text(completion: str | Sequence[Message]) -> str:
    """The text a single-answer verifier checks: the string itself, or the last assistant message."""
    if isinstance(completion, str):
        return completion
    for message in reversed(completion):
        if message.get("role") == "assistant":
            return message.get("content") or ""
    return ""
