"""The ``format`` environment: required tags, strict (1/0) or partial credit per satisfied rule.

What counts as a tag, and what as content, is ``rewardkit.verifiers.format``'s rule (exact spelling,
outside code, visible content, not the prompt's template echoed); docs/hacking.md lists the exploits
it defeats (``exploit_probes``).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from rewardkit.envs.base import Environment, policy_text
from rewardkit.types import Completion, Score, completion_text
from rewardkit.verifiers.format import (
    check_tags,
    code_spans,
    mask_code,
    tag_blocks,
    tag_variants,
    visible_text,
)

if TYPE_CHECKING:
    from rewardkit.envs.probes import Probe


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

    exploit_patterns: ClassVar[Mapping[str, str]] = {
        "fullwidth-tag": r"[\uff1c\ufe64][^\uff1e\ufe65\n]{1,40}[\uff1e\ufe65]",
        "escaped-tag": r"&(?:lt|#0*60|#x0*3c);\s*/?\s*\w+\s*&(?:gt|#0*62|#x0*3e);",
        "zero-width": r"[\u200b-\u200f\u2060-\u2064\ufeff\u3164\u2800]",
        "tag-in-fence": r"(?ms)^[ ]{0,3}(?:```|~~~).*?</?(?:think|answer)>",
    }
    """Signatures worth watching for the default tags; ``exploit_signals`` adds the configured tags'."""

    def verify(self, completion: Completion, *, answer: Any, prompt: Any, info: Mapping[str, Any]) -> Score:
        result = check_tags(
            completion_text(completion),
            self.config.tags,
            allow_text_outside=self.config.allow_text_outside,
            prompt=_prompt_text(prompt),
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

    def exploit_probes(self) -> list[Probe]:
        from rewardkit.envs.format_probes import format_probes

        return format_probes(self.config)

    def exploit_signals(self, completions: Sequence[Completion]) -> dict[str, float]:
        """``exploit_patterns`` plus, for the configured tags: a tag inside code (``tag-in-code``), a
        disguised copy of a tag (``disguised-tag``), a block with no visible content (``empty-block``)."""
        signals = super().exploit_signals(completions)
        if not completions:
            return signals
        found = {"tag-in-code": 0, "disguised-tag": 0, "empty-block": 0}
        for completion in completions:
            text = policy_text(completion)
            for name, hit in self._signatures(text).items():
                found[name] += hit
        return {**signals, **{name: n / len(completions) for name, n in found.items()}}

    def _signatures(self, text: str) -> dict[str, bool]:
        masked = mask_code(text)
        quoted = "".join(text[a:b] for a, b in code_spans(text))
        in_code = any(re.search(f"</?{re.escape(t)}>", quoted) for t in self.config.tags)
        disguised = any(
            tag_variants(masked, t) != (masked.count(f"<{t}>"), masked.count(f"</{t}>"))
            for t in self.config.tags
        )
        empty = any(not visible_text(b) for t in self.config.tags for b in tag_blocks(masked, t))
        return {"tag-in-code": in_code, "disguised-tag": disguised, "empty-block": empty}

    def suspicious(self, sample: Mapping[str, Any], score: Score) -> str | None:
        """A second look at a pass: the ``answer`` block (the last tag's, without one) must hold a letter
        or digit once markup is stripped, and every required tag must appear outside code at least once."""
        completion = sample.get("completion")
        if not isinstance(completion, str | Sequence):
            return None
        text = completion_text(completion)  # type: ignore[arg-type]
        outside = _strip_code_independently(text)
        for tag in self.config.tags:
            if f"<{tag}>" in text and f"<{tag}>" not in outside:
                return f"<{tag}> appears only inside code or a comment"
        last = "answer" if "answer" in self.config.tags else self.config.tags[-1]
        blocks = re.findall(f"<{re.escape(last)}>(.*?)</{re.escape(last)}>", text, re.S)
        if blocks and not any(_has_alnum(b) for b in blocks):
            return f"<{last}> holds no letter or digit once markup is stripped: {blocks[-1][:60]!r}"
        return None


def _prompt_text(prompt: Any) -> str | None:
    """The prompt as one text (a chat prompt's contents joined), for the echoed-template rule."""
    if isinstance(prompt, str):
        return prompt
    if isinstance(prompt, Sequence):
        return "\n".join(str(m.get("content") or "") for m in prompt if isinstance(m, Mapping))
    return None


_CODE_RE = re.compile(r"```.*?(?:```|\Z)|~~~.*?(?:~~~|\Z)|`[^`]*`|<!--.*?(?:-->|\Z)", re.S)
_MARKUP_RE = re.compile(r"<[^<>]*>|&#?\w+;")


def _strip_code_independently(text: str) -> str:
    """Code and comments removed by a plain regex, not by the verifier's CommonMark-style scan."""
    return _CODE_RE.sub(" ", text)


def _has_alnum(text: str) -> bool:
    """A letter or digit that is not a Hangul filler (letters by category, blank on the page)."""
    return any(ch.isalnum() and "FILLER" not in unicodedata.name(ch, "") for ch in _MARKUP_RE.sub("", text))
