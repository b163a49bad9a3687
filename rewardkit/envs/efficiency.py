"""The ``efficiency`` environment: reward short answers and few operations.

The reward is the sum of the enabled terms:

* length, ``length_penalty="linear"``: ``max(0, 1 - n / max_length)``, in [0, 1];
* length, ``length_penalty="soft_overlong"``: DAPO's soft overlong penalty with ``overlong_buffer``,
  in [-1, 0] (meant to be composed with a correctness reward);
* operations (``max_ops`` set): ``max(0, 1 - n_ops / max_ops)``, where an operation is a tool call as
  ``rewardkit.tools.parse`` reads it, the one reading a tool environment executes (an assistant
  message's ``tool_calls``, each ``<tool_call>`` block, a final one left unclosed included, a
  malformed one too: it costs a turn) or, if ``op_pattern`` is set, a match of that regular expression
  in the assistant's text (compatibility forms such as fullwidth letters folded, zero-width characters
  dropped, so they cannot hide a match).

Length counts what the policy wrote: its text and, in messages, its tool calls' names and arguments
(an answer moved into a call's arguments is still written). It counts characters, or tokens when
``tokenizer`` names a ``tokenizer.json`` file or a folder holding one (read with the ``tokenizers``
library: no torch in scoring).

No answer, no reward: when the answer (the completion, or its last assistant message) has no visible
content (only whitespace, zero-width or filler characters, empty markup such as ``<answer></answer>``,
see ``rewardkit.verifiers.format.visible_text``) every term takes its worst value (0, or -1 for
``soft_overlong``); ``metrics["empty"]`` says so. A pass (``pass_threshold``) is an answer within half
the length budget (linear term >= 0.5), no overlong penalty, and no operation.
"""

from __future__ import annotations

import functools
import os
import re
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from rewardkit.config import check_choices
from rewardkit.envs.base import Environment
from rewardkit.tools.parse import parse_text_calls, parse_tool_calls
from rewardkit.types import Completion, Score, completion_text
from rewardkit.verifiers.efficiency import linear_budget, soft_overlong_penalty, written
from rewardkit.verifiers.format import visible_text

if TYPE_CHECKING:
    from rewardkit.envs.probes import Probe

LINEAR_PASS = 0.5
"""The linear length term a pass needs: the answer uses at most half the budget."""


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

    exploit_patterns: ClassVar[Mapping[str, str]] = {
        "blank-answer": r"\A(?:\s|[\u200b-\u200f\u2060-\u2064\ufeff\u3164\u2800\u115f\u1160\uffa0]|<[^<>]*>|&\w+;)*\Z",
        "invisible-padding": r"[\u200b-\u200f\u2060-\u2064\ufeff\u3164\u2800]{3,}",
        "unclosed-tool-call": r"(?s)<tool_call>(?:(?!</tool_call>).)*\Z",
        "empty-answer-tags": r"<answer>\s*</answer>",
    }
    """Signatures worth watching: an answer with nothing visible, invisible padding, a final
    ``<tool_call>`` left open (executed, once not counted), an empty ``<answer>`` block."""

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        cfg = self.config
        self.pattern = re.compile(cfg.op_pattern) if cfg.op_pattern else None
        self.pass_threshold = LINEAR_PASS * (cfg.length_penalty == "linear") + float(cfg.max_ops is not None)

    @classmethod
    def scoring_defaults(cls, config: EfficiencyConfig) -> Mapping[str, Any]:
        # counting characters is microseconds of work; running a tokenizer is real work, isolated and timed
        return {"executor": "inline" if config.tokenizer is None else "process"}

    def verify(self, completion: Completion, *, answer: Any, prompt: Any, info: Mapping[str, Any]) -> Score:
        mine = (
            [completion]
            if isinstance(completion, str)
            else [m for m in completion if m["role"] == "assistant"]
        )
        texts = [m if isinstance(m, str) else m["content"] for m in mine]
        empty = not visible_text(completion_text(completion))
        metrics: dict[str, float] = {"empty": float(empty)}
        reward = 0.0
        if self.config.length_penalty != "none":
            n = sum(self._length(written(m)) for m in mine)
            metrics["length"] = float(n)
            if self.config.length_penalty == "linear":
                term = 0.0 if empty else linear_budget(n, self.config.max_length)
            else:
                term = -1.0 if empty else soft_overlong_penalty(n, self.config.max_length, self.config.buffer)
            metrics["length_term"] = term
            reward += term
        if self.config.max_ops is not None:
            n_ops = self._count_ops(completion, texts)
            metrics["ops"] = float(n_ops)
            metrics["ops_term"] = 0.0 if empty else linear_budget(n_ops, self.config.max_ops)
            reward += metrics["ops_term"]
        return Score.ok(reward, metrics)

    def _length(self, text: str) -> int:
        if self.config.tokenizer is None:
            return len(text)
        return len(_load_tokenizer(self.config.tokenizer).encode(text, add_special_tokens=False).ids)

    def _count_ops(self, completion: Completion, texts: list[str]) -> int:
        if self.pattern is not None:
            return sum(len(self.pattern.findall(_unmasked(t))) for t in texts)
        if isinstance(completion, str):
            return len(parse_text_calls(completion))
        return sum(len(parse_tool_calls(m)) for m in completion if m["role"] == "assistant")

    def gold_examples(self) -> list[dict[str, Any]]:
        return [
            {"completion": "4"},
            {"completion": [{"role": "user", "content": "2 + 2?"}, {"role": "assistant", "content": "4"}]},
        ]

    def exploit_probes(self) -> list[Probe]:
        from rewardkit.envs.efficiency_probes import efficiency_probes

        return efficiency_probes(self)

    def suspicious(self, sample: Mapping[str, Any], score: Score) -> str | None:
        """A pass whose answer holds no letter, digit or symbol a reader would see (checked on the raw
        characters, not through ``visible_text``)."""
        completion = sample.get("completion")
        if not isinstance(completion, str | Sequence):
            return None
        text = completion_text(completion)  # type: ignore[arg-type]
        shown = re.sub(r"<[^<>]*>|&#?\w+;", "", text)
        if not any(
            unicodedata.category(ch)[0] in "LNS"
            and "FILLER" not in unicodedata.name(ch, "")
            and ch != "\u2800"
            for ch in shown
        ):
            return f"passing answer is empty: {text[:60]!r}"
        return None


def _unmasked(text: str) -> str:
    """``text`` as a reader sees it: compatibility forms folded (NFKC), zero-width characters dropped."""
    return "".join(ch for ch in unicodedata.normalize("NFKC", text) if unicodedata.category(ch) != "Cf")


def _tokenizer_file(path: str) -> str:
    file = os.path.join(path, "tokenizer.json") if os.path.isdir(path) else path
    if not os.path.isfile(file):
        raise ValueError(f"tokenizer {path!r}: no tokenizer.json found there")
    return file


@functools.lru_cache(maxsize=4)
def _load_tokenizer(path: str) -> Any:
    from tokenizers import Tokenizer

    return Tokenizer.from_file(_tokenizer_file(path))
