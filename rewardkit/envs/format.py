"""The ``format`` environment: required tags, strict (1/0) or partial credit per satisfied rule."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from rewardkit.envs.base import Environment
from rewardkit.types import Completion, Score, completion_text
from rewardkit.verifiers.format import check_tags


class FormatEnv(Environment):
    """Checks that the completion wraps its parts in the required tags.

    Args:
        tags: tag names that must each appear once, in this order (default ``think`` then ``answer``).
        strict: reward 1.0 only when every rule holds; otherwise the fraction of rules that hold.
        allow_text_outside: when False, text outside the tagged blocks breaks the format.
    """

    name = "format"

    def __init__(
        self,
        *,
        tags: Sequence[str] = ("think", "answer"),
        strict: bool = True,
        allow_text_outside: bool = True,
        **config: Any,
    ) -> None:
        if isinstance(tags, str) or not tags or not all(isinstance(t, str) and t.strip() for t in tags):
            raise ValueError(f"tags must be a non-empty list of tag names, got {tags!r}")
        if len(set(tags)) != len(tags):
            raise ValueError(f"tags must be distinct, got {tags!r}")
        config.setdefault("executor", "inline")  # microseconds of regex work: a process hop costs more
        super().__init__(**config)
        self.tags = tuple(tags)
        self.strict = bool(strict)
        self.allow_text_outside = bool(allow_text_outside)

    def verify(self, completion: Completion, *, answer: Any, prompt: Any, info: Mapping[str, Any]) -> Score:
        result = check_tags(
            completion_text(completion), self.tags, allow_text_outside=self.allow_text_outside
        )
        reward = float(result.all_ok) if self.strict else result.fraction
        metrics = {"format_ok": float(result.all_ok), "rules_satisfied": result.fraction}
        return Score.ok(reward, metrics, rules=result.rules)

    def gold_examples(self) -> list[dict[str, Any]]:
        body = "".join(f"<{t}>example {t}</{t}>\n" for t in self.tags)
        return [
            {"completion": body},
            {"completion": [{"role": "user", "content": "q"}, {"role": "assistant", "content": body}]},
        ]
