"""The ``format`` environment: required tags, strict (1/0) or partial credit per satisfied rule."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from rewardkit.envs.base import Environment
from rewardkit.types import Completion, Score, completion_text
from rewardkit.verifiers.format import check_tags


@dataclass(frozen=True)
class FormatConfig:
    """Options of the ``format`` environment."""

    tags: tuple[str, ...] = ("think", "answer")
    """Tag names that must each appear once, in this order."""
    strict: bool = True
    """Reward 1.0 only when every rule holds; False: the fraction of rules that hold."""
    allow_text_outside: bool = True
    """When False, text outside the tagged blocks breaks the format."""

    def __post_init__(self) -> None:
        tags = self.tags
        if isinstance(tags, str) or not tags or not all(isinstance(t, str) and t.strip() for t in tags):
            raise ValueError(f"tags must be a non-empty list of tag names, got {tags!r}")
        if len(set(tags)) != len(tags):
            raise ValueError(f"tags must be distinct, got {tags!r}")


class FormatEnv(Environment):
    """Checks that the completion wraps its parts in the required tags (options: ``FormatConfig``)."""

    name = "format"
    Config = FormatConfig

    @classmethod
    def scoring_defaults(cls, config: FormatConfig) -> Mapping[str, Any]:
        return {"executor": "inline"}  # microseconds of regex work: a process hop costs more

    def verify(self, completion: Completion, *, answer: Any, prompt: Any, info: Mapping[str, Any]) -> Score:
        result = check_tags(
            completion_text(completion), self.config.tags, allow_text_outside=self.config.allow_text_outside
        )
        reward = float(result.all_ok) if self.config.strict else result.fraction
        metrics = {"format_ok": float(result.all_ok), "rules_satisfied": result.fraction}
        return Score.ok(reward, metrics, rules=result.rules)

    def gold_examples(self) -> list[dict[str, Any]]:
        body = "".join(f"<{t}>example {t}</{t}>\n" for t in self.config.tags)
        return [
            {"completion": body},
            {"completion": [{"role": "user", "content": "q"}, {"role": "assistant", "content": body}]},
        ]
