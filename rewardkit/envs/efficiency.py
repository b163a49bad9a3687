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
from typing import Any

from rewardkit.envs.base import Environment
from rewardkit.types import Completion, Score
from rewardkit.verifiers.efficiency import linear_budget, soft_overlong_penalty

LENGTH_PENALTIES = ("linear", "soft_overlong", "none")
TOOL_CALL_RE = re.compile(r"<tool_call>.*?</tool_call>", re.S)


class EfficiencyEnv(Environment):
    name = "efficiency"

    def __init__(
        self,
        *,
        max_length: int | None = 512,
        length_penalty: str = "linear",
        overlong_buffer: int | None = None,
        tokenizer: str | None = None,
        max_ops: int | None = None,
        op_pattern: str | None = None,
        **config: Any,
    ) -> None:
        if length_penalty not in LENGTH_PENALTIES:
            raise ValueError(f"length_penalty must be one of {LENGTH_PENALTIES}, got {length_penalty!r}")
        if length_penalty != "none" and (not isinstance(max_length, int) or max_length <= 0):
            raise ValueError(f"max_length must be a positive int, got {max_length!r}")
        if length_penalty == "soft_overlong":
            overlong_buffer = overlong_buffer or max(1, max_length // 4)
            if not 0 < overlong_buffer <= max_length:
                raise ValueError(f"need 0 < overlong_buffer <= max_length, got {overlong_buffer}")
        if max_ops is not None and max_ops <= 0:
            raise ValueError(f"max_ops must be > 0, got {max_ops}")
        if length_penalty == "none" and max_ops is None:
            raise ValueError("nothing to measure: set length_penalty or max_ops")
        if tokenizer is not None:
            _tokenizer_file(tokenizer)  # fail at load_env, not per sample
        try:
            self.pattern = re.compile(op_pattern) if op_pattern else None
        except re.error as exc:  # re.error is no ValueError: callers expect one for bad config
            raise ValueError(f"op_pattern {op_pattern!r} is not a valid regular expression: {exc}") from None
        config.setdefault("executor", "inline" if tokenizer is None else "process")
        super().__init__(**config)
        self.max_length, self.length_penalty, self.overlong_buffer = (
            max_length,
            length_penalty,
            overlong_buffer,
        )
        self.tokenizer, self.max_ops = tokenizer, max_ops
        self.pass_threshold = float(length_penalty == "linear") + float(max_ops is not None)

    def verify(self, completion: Completion, *, answer: Any, prompt: Any, info: Mapping[str, Any]) -> Score:
        texts = (
            [completion]
            if isinstance(completion, str)
            else [m["content"] for m in completion if m["role"] == "assistant"]
        )
        metrics: dict[str, float] = {}
        reward = 0.0
        if self.length_penalty != "none":
            n = sum(self._length(t) for t in texts)
            metrics["length"] = float(n)
            if self.length_penalty == "linear":
                term = linear_budget(n, self.max_length)
            else:
                term = soft_overlong_penalty(n, self.max_length, self.overlong_buffer)
            metrics["length_term"] = term
            reward += term
        if self.max_ops is not None:
            n_ops = self._count_ops(completion, texts)
            metrics["ops"] = float(n_ops)
            metrics["ops_term"] = linear_budget(n_ops, self.max_ops)
            reward += metrics["ops_term"]
        return Score.ok(reward, metrics)

    def _length(self, text: str) -> int:
        if self.tokenizer is None:
            return len(text)
        return len(_load_tokenizer(self.tokenizer).encode(text, add_special_tokens=False).ids)

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
        return [{"completion": ""}] if self.length_penalty != "soft_overlong" else [{"completion": "ok"}]


def _tokenizer_file(path: str) -> str:
    file = os.path.join(path, "tokenizer.json") if os.path.isdir(path) else path
    if not os.path.isfile(file):
        raise ValueError(f"tokenizer {path!r}: no tokenizer.json found there")
    return file


@functools.lru_cache(maxsize=4)
def _load_tokenizer(path: str) -> Any:
    from tokenizers import Tokenizer

    return Tokenizer.from_file(_tokenizer_file(path))
