"""The ``efficiency`` environment: reward short answers and few operations.

The reward is the sum of the enabled terms:

* length, ``length_penalty="linear"``: ``max(0, 1 - n / max_length)``, in [0, 1];
* length, ``length_penalty="soft_overlong"``: DAPO's soft overlong penalty with ``overlong_buffer``,
  in [-1, 0] (meant to be composed with a correctness reward);
* operations (``max_ops`` set): ``max(0, 1 - n_ops / max_ops)``, where an operation is a tool call
  (an assistant message with ``tool_calls`` or a ``<tool_call>`` block) or, if ``op_pattern`` is set,
  a match of that regular expression in the assistant's text.

Length counts characters, or tokens when ``tokenizer`` names a ``tokenizer.json`` file or a folder
holding one (read with the ``tokenizers`` library: no torch in scoring).
"""

from __future__ import annotations

import functools
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from rewardkit.config import check_choices
from rewardkit.envs.base import Environment
from rewardkit.types import Completion, Score
from rewardkit.verifiers.efficiency import linear_budget, soft_overlong_penalty

TOOL_CALL_RE = re.compile(r"<tool_call>.*?</tool_call>", re.S)


@dataclass(frozen=True)
class EfficiencyConfig:
    """Options of the ``efficiency`` environment (see the module docstring for the reward terms)."""

    max_length: int | None = 512
    """Length budget, in characters (or tokens with ``tokenizer``)."""
    length_penalty: Literal["linear", "soft_overlong", "none"] = "linear"
    """``linear``: ``max(0, 1 - n / max_length)``; ``soft_overlong``: DAPO's penalty in [-1, 0];
    ``none``: no length term."""
    overlong_buffer: int | None = None
    """``soft_overlong``: the buffer before ``max_length`` where the penalty ramps (default: a quarter)."""
    tokenizer: str | None = None
    """A ``tokenizer.json`` file or a folder holding one: count tokens instead of characters."""
    max_ops: int | None = None
    """Budget of the operations term ``max(0, 1 - n_ops / max_ops)`` (None: no operations term)."""
    op_pattern: str | None = None
    """A regular expression whose matches in the assistant's text count as operations (default: tool calls)."""

    def __post_init__(self) -> None:
        check_choices(self, where="efficiency environment")
        if self.length_penalty != "none" and (not isinstance(self.max_length, int) or self.max_length <= 0):
            raise ValueError(f"max_length must be a positive int, got {self.max_length!r}")
        if self.length_penalty == "soft_overlong":
            if not 0 < self.buffer <= self.max_length:
                raise ValueError(f"need 0 < overlong_buffer <= max_length, got {self.buffer}")
        if self.max_ops is not None and self.max_ops <= 0:
            raise ValueError(f"max_ops must be > 0, got {self.max_ops}")
        if self.length_penalty == "none" and self.max_ops is None:
            raise ValueError("nothing to measure: set length_penalty or max_ops")
        if self.tokenizer is not None:
            _tokenizer_file(self.tokenizer)  # fail at load_env, not per sample
        if self.op_pattern:
            try:
                re.compile(self.op_pattern)
            except re.error as exc:  # re.error is no ValueError: callers expect one for bad config
                raise ValueError(
                    f"op_pattern {self.op_pattern!r} is not a valid regular expression: {exc}"
                ) from None

    @property
    def buffer(self) -> int:
        """``soft_overlong``'s buffer: ``overlong_buffer``, or a quarter of ``max_length``."""
        return self.overlong_buffer or max(1, (self.max_length or 0) // 4)


class EfficiencyEnv(Environment):
    """Rewards short answers and few operations (options: ``EfficiencyConfig``)."""

    name = "efficiency"
    Config = EfficiencyConfig

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        cfg = self.config
        self.pattern = re.compile(cfg.op_pattern) if cfg.op_pattern else None
        self.pass_threshold = float(cfg.length_penalty == "linear") + float(cfg.max_ops is not None)

    @classmethod
    def scoring_defaults(cls, config: EfficiencyConfig) -> Mapping[str, Any]:
        # counting characters is microseconds of work; running a tokenizer is real work, isolated and timed
        return {"executor": "inline" if config.tokenizer is None else "process"}

    def verify(self, completion: Completion, *, answer: Any, prompt: Any, info: Mapping[str, Any]) -> Score:
        texts = (
            [completion]
            if isinstance(completion, str)
            else [m["content"] for m in completion if m["role"] == "assistant"]
        )
        metrics: dict[str, float] = {}
        reward = 0.0
        if self.config.length_penalty != "none":
            n = sum(self._length(t) for t in texts)
            metrics["length"] = float(n)
            if self.config.length_penalty == "linear":
                term = linear_budget(n, self.config.max_length)
            else:
                term = soft_overlong_penalty(n, self.config.max_length, self.config.buffer)
            metrics["length_term"] = term
            reward += term
        if self.config.max_ops is not None:
            n_ops = self._count_ops(completion, texts)
            metrics["ops"] = float(n_ops)
            metrics["ops_term"] = linear_budget(n_ops, self.config.max_ops)
            reward += metrics["ops_term"]
        return Score.ok(reward, metrics)

    def _length(self, text: str) -> int:
        if self.config.tokenizer is None:
            return len(text)
        return len(_load_tokenizer(self.config.tokenizer).encode(text, add_special_tokens=False).ids)

    def _count_ops(self, completion: Completion, texts: list[str]) -> int:
        if self.pattern is not None:
            return sum(len(self.pattern.findall(t)) for t in texts)
        structured = (
            0
            if isinstance(completion, str)
            else sum(len(m.get("tool_calls") or []) for m in completion if m["role"] == "assistant")
        )
        return structured + sum(len(TOOL_CALL_RE.findall(t)) for t in texts)

    def gold_examples(self) -> list[dict[str, Any]]:
        return (
            [{"completion": ""}] if self.config.length_penalty != "soft_overlong" else [{"completion": "ok"}]
        )


def _tokenizer_file(path: str) -> str:
    file = os.path.join(path, "tokenizer.json") if os.path.isdir(path) else path
    if not os.path.isfile(file):
        raise ValueError(f"tokenizer {path!r}: no tokenizer.json found there")
    return file


@functools.lru_cache(maxsize=4)
def _load_tokenizer(path: str) -> Any:
    from tokenizers import Tokenizer

    return Tokenizer.from_file(_tokenizer_file(path))
