"""Format checks: are the required tags there, well formed, in order? Pure text in, numbers out."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class FormatResult:
    rules: dict[str, bool]
    """Each named rule and whether it holds."""

    @property
    def fraction(self) -> float:
        return sum(self.rules.values()) / len(self.rules) if self.rules else 1.0

    @property
    def all_ok(self) -> bool:
        return all(self.rules.values())


def check_tags(text: str, tags: Sequence[str], *, allow_text_outside: bool = True) -> FormatResult:
    """Check that each tag appears exactly once as ``<tag>...</tag>``, non-empty, in the given order.

    Rules (one per tag, plus ordering): ``<tag>:once`` (exactly one opening and one closing tag, the
    opening first), ``<tag>:nonempty`` (something other than whitespace inside), ``order`` (the tags
    appear in the listed order without overlapping), and, when ``allow_text_outside`` is False,
    ``no_text_outside`` (nothing but whitespace between and around the tagged blocks).
    """
    rules: dict[str, bool] = {}
    spans: list[tuple[int, int]] = []
    for tag in tags:
        opens = [m.start() for m in re.finditer(f"<{re.escape(tag)}>", text)]
        closes = [m.start() for m in re.finditer(f"</{re.escape(tag)}>", text)]
        once = len(opens) == 1 and len(closes) == 1 and opens[0] < closes[0]
        rules[f"{tag}:once"] = once
        inner = text[opens[0] + len(tag) + 2 : closes[0]] if once else ""
        rules[f"{tag}:nonempty"] = bool(inner.strip())
        if once:
            spans.append((opens[0], closes[0] + len(tag) + 3))
    ordered = len(spans) == len(tags) and all(a[1] <= b[0] for a, b in zip(spans, spans[1:]))
    rules["order"] = ordered
    if not allow_text_outside:
        outside = text
        for start, end in sorted(spans, reverse=True):
            outside = outside[:start] + outside[end:]
        rules["no_text_outside"] = ordered and not outside.strip()
    return FormatResult(rules)
