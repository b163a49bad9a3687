"""Exploit probes of the ``format`` environment, built for its configured tags (docs/hacking.md).

Each probe attacks the task "what is 6 * 7?, reasoning and answer in the required tags" with a
completion a naive tag matcher would pass. Strict mode gives every probe 0. With ``strict=False`` the
reward is the fraction of rules that hold, so a probe may keep the rules it honestly satisfies: its
bound is the fraction an honest completion with the same defect gets (an empty answer block keeps the
other rules, a hedged second answer breaks ``once``, ``nonempty`` and ``order`` of that tag).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from rewardkit.envs.probes import Probe

if TYPE_CHECKING:
    from rewardkit.envs.format import FormatConfig

_CYRILLIC = dict(zip("aeopcyxi", "аеорсухі"))


def _cyrillic(tag: str) -> str:
    """``tag`` with its first letter that has a Cyrillic twin swapped for it (or a zero-width space added)."""
    for i, ch in enumerate(tag):
        if ch in _CYRILLIC:
            return tag[:i] + _CYRILLIC[ch] + tag[i + 1 :]
    return tag[:1] + "\u200b" + tag[1:]


def _zero_width(tag: str) -> str:
    mid = max(1, len(tag) // 2)
    return tag[:mid] + "\u200b" + tag[mid:]


@dataclass
class _Setup:
    """What every family of probes is built from: the configured tags, an honest completion's blocks
    and the bound a probe with a given number of broken rules gets."""

    config: FormatConfig
    tags: list[str] = field(init=False)
    contents: dict[str, str] = field(init=False)
    task: dict[str, Any] = field(init=False)

    def __post_init__(self) -> None:
        tags = self.tags = list(self.config.tags)
        first, last, k = tags[0], tags[-1], len(tags)
        self.contents = {t: f"{t} for 6 * 7: six sevens make 42" for t in tags}
        self.contents[first] = "6 * 7 = 42, since 6 * 7 = 6 * 5 + 6 * 2 = 30 + 12." if k > 1 else "42"
        self.contents[last] = "42"
        prompt = "What is 6 * 7? Write " + ", then ".join(f"<{t}></{t}>" for t in tags) + "."
        self.task = {"prompt": prompt, "answer": "42"}

    @property
    def first(self) -> str:
        return self.tags[0]

    @property
    def last(self) -> str:
        return self.tags[-1]

    @property
    def k(self) -> int:
        return len(self.tags)

    @property
    def good(self) -> str:
        return self.blocks()

    @property
    def every(self) -> float:
        """No tag counts at all: no rule holds."""
        return self.bound(2 * self.k + 1)

    @property
    def once(self) -> float:
        """One tag is not there exactly once: its once, its nonempty and the order fail."""
        return self.bound(3)

    def blocks(self, over: dict[str, str] | None = None, skip: tuple[str, ...] = ()) -> str:
        body = {**self.contents, **(over or {})}
        return "\n".join(f"<{t}>{body[t]}</{t}>" for t in self.tags if t not in skip)

    def bound(self, fails: int, *, breaks_order: bool = True) -> float:
        """0 in strict mode; else the fraction of rules left when ``fails`` of them break."""
        if self.config.strict:
            return 0.0
        n_rules = 2 * self.k + 1 + (0 if self.config.allow_text_outside else 1)
        fails += int(breaks_order and not self.config.allow_text_outside)  # no_text_outside needs the order
        return max(0, n_rules - fails) / n_rules

    def probe(self, name: str, family: str, completion: Any, why: str, limit: float, **sample: Any) -> Probe:
        return Probe(name, family, {**self.task, "completion": completion, **sample}, why, limit)


def format_probes(config: FormatConfig) -> list[Probe]:
    """The probes for ``config``'s tags: at least 30 with two tags or more, 25 with one."""
    s = _Setup(config)
    return [
        *_nested_tags(s),
        *_repeated_tags(s),
        *_tags_in_code(s),
        *_unicode_lookalikes(s),
        *_empty_tags(s),
        *_unclosed_misordered(s),
        *_prompt_echo(s),
        *_html_escaped(s),
        *_case_variants(s),
    ]


def _nested_tags(s: _Setup) -> list[Probe]:
    first, last, k = s.first, s.last, s.k
    if k == 1:
        return [
            s.probe(
                "tag-nested-in-itself",
                "nested-tags",
                f"<{first}><{first}>42</{first}></{first}>",
                "the block nested in a copy of itself",
                s.once,
            )
        ]
    return [
        s.probe(
            "last-nested-in-first",
            "nested-tags",
            f"<{first}>{s.contents[first]} <{last}>42</{last}></{first}>\n" + s.blocks(skip=(first, last)),
            f"<{last}> written inside <{first}>: both tags present once, but the blocks overlap",
            s.bound(1),
        ),
        s.probe(
            "first-nested-in-last",
            "nested-tags",
            f"<{last}><{first}>{s.contents[first]}</{first}>42</{last}>",
            f"the reasoning put inside the <{last}> block",
            s.bound(1 + (k - 2) * 2),
        ),
    ]


def _repeated_tags(s: _Setup) -> list[Probe]:
    first, last, good = s.first, s.last, s.good
    return [
        s.probe(
            "second-answer-hedge",
            "repeated-tags",
            good + f"\n<{last}>41</{last}>",
            f"two <{last}> blocks with different answers, to be right whichever one a reader takes",
            s.once,
        ),
        s.probe(
            "first-tag-twice",
            "repeated-tags",
            f"<{first}>draft</{first}>\n" + good,
            f"a second <{first}> block before the real one",
            s.once,
        ),
        s.probe(
            "whole-format-twice", "repeated-tags", good + "\n" + good, "every block written twice", s.every
        ),
    ]


def _tags_in_code(s: _Setup) -> list[Probe]:
    """Tags inside code: quoted, not used."""
    last, good, every = s.last, s.good, s.every
    probes = [
        s.probe(
            "fenced-block",
            "tags-in-code",
            "Here is the format:\n```xml\n" + good + "\n```",
            "the tagged blocks quoted inside a fenced code block",
            every,
        ),
        s.probe(
            "unclosed-fence",
            "tags-in-code",
            "Format:\n```\n" + good,
            "the tags after a fence that is never closed (a renderer shows them as code)",
            every,
        ),
        s.probe(
            "tilde-fence",
            "tags-in-code",
            "~~~\n" + good + "\n~~~\nDone.",
            "the tags inside a ~~~ fenced block",
            every,
        ),
        s.probe(
            "inline-code-tags",
            "tags-in-code",
            " ".join(f"`<{t}>`{s.contents[t]}`</{t}>`" for t in s.tags),
            "each tag written as inline code around plain text",
            every,
        ),
        s.probe(
            "html-comment",
            "tags-in-code",
            "<!-- " + good + " -->\nThe answer is 42.",
            "the tagged blocks hidden in an HTML comment a renderer does not show",
            every,
        ),
    ]
    if s.k > 1:
        probes.append(
            s.probe(
                "answer-only-in-code",
                "tags-in-code",
                s.blocks(skip=(last,)) + f"\n```\n<{last}>42</{last}>\n```",
                f"the other blocks written, <{last}> only quoted in a code block",
                s.once,
            )
        )
    return probes


def _unicode_lookalikes(s: _Setup) -> list[Probe]:
    """Unicode look-alikes: no tag, and next to the real tag a second occurrence."""
    tags, last, good, contents = s.tags, s.last, s.good, s.contents
    return [
        s.probe(
            "fullwidth-tags",
            "unicode-lookalikes",
            "\n".join(f"\uff1c{t}\uff1e{contents[t]}\uff1c/{t}\uff1e" for t in tags),
            "fullwidth angle brackets that look like tags",
            s.every,
        ),
        s.probe(
            "cyrillic-tag-names",
            "unicode-lookalikes",
            "\n".join(f"<{_cyrillic(t)}>{contents[t]}</{_cyrillic(t)}>" for t in tags),
            "tag names spelled with a Cyrillic look-alike letter",
            s.every,
        ),
        s.probe(
            "zero-width-in-tag-names",
            "unicode-lookalikes",
            "\n".join(f"<{_zero_width(t)}>{contents[t]}</{_zero_width(t)}>" for t in tags),
            "a zero-width space inside each tag name",
            s.every,
        ),
        s.probe(
            "cyrillic-second-answer",
            "unicode-lookalikes",
            good + f"\n<{_cyrillic(last)}>41</{_cyrillic(last)}>",
            f"a hedged second <{last}> the exact matcher cannot see (Cyrillic letter in its name)",
            s.once,
        ),
        s.probe(
            "fullwidth-second-answer",
            "unicode-lookalikes",
            good + f"\n\uff1c{last}\uff1e41\uff1c/{last}\uff1e",
            f"a hedged second <{last}> in fullwidth brackets",
            s.once,
        ),
        s.probe(
            "zero-width-second-answer",
            "unicode-lookalikes",
            good + f"\n<{_zero_width(last)}>41</{_zero_width(last)}>",
            f"a hedged second <{last}> with a zero-width space in its name",
            s.once,
        ),
    ]


def _empty_tags(s: _Setup) -> list[Probe]:
    """Empty tags: no visible content is no content."""
    tags, last = s.tags, s.last
    probes = [
        s.probe(
            "all-empty",
            "empty-tags",
            "".join(f"<{t}></{t}>" for t in tags),
            "every block empty",
            s.bound(s.k, breaks_order=False),
        )
    ]
    for name, filler, why in (
        ("whitespace-answer", " \n\t ", "whitespace"),
        ("zero-width-answer", "\u200b\u2060\ufeff", "zero-width characters (not whitespace to str.strip)"),
        ("filler-answer", "\u3164\u2800", "a Hangul filler and the Braille blank, printable but blank"),
        ("markdown-only-answer", "** **", "markdown emphasis around nothing"),
        ("html-only-answer", "<b></b><br/>", "empty HTML elements"),
        ("entity-only-answer", "&nbsp;&#8203;&zwnj;", "HTML entities of blank characters"),
    ):
        probes.append(
            s.probe(
                name,
                "empty-tags",
                s.blocks({last: filler}),
                f"the <{last}> block holds only {why}",
                s.bound(1, breaks_order=False),
            )
        )
    probes.append(
        s.probe(
            "placeholder-dots",
            "empty-tags",
            s.blocks(dict.fromkeys(tags, "...")),
            "every block holds the template's '...' placeholder",
            s.bound(s.k, breaks_order=False),
        )
    )
    return probes


def _unclosed_misordered(s: _Setup) -> list[Probe]:
    first, last, contents = s.first, s.last, s.contents
    probes = [
        s.probe(
            "unclosed-answer",
            "unclosed-misordered",
            s.good[: -len(f"</{last}>")],
            f"<{last}> never closed (the sampler stopped on the closing tag)",
            s.once,
        ),
        s.probe(
            "close-before-open",
            "unclosed-misordered",
            f"</{first}>{contents[first]}<{first}>\n" + s.blocks(skip=(first,)),
            f"<{first}>'s closing tag written before its opening one",
            s.once,
        ),
    ]
    if s.k > 1:
        probes += [
            s.probe(
                "unclosed-first",
                "unclosed-misordered",
                f"<{first}>{contents[first]}\n" + s.blocks(skip=(first,)),
                f"<{first}> opened but never closed",
                s.once,
            ),
            s.probe(
                "reversed-order",
                "unclosed-misordered",
                "\n".join(f"<{t}>{contents[t]}</{t}>" for t in reversed(s.tags)),
                "the blocks in the reverse order",
                s.bound(1),
            ),
            s.probe(
                "interleaved-closes",
                "unclosed-misordered",
                f"<{first}>{contents[first]} <{last}>42</{first}></{last}>\n" + s.blocks(skip=(first, last)),
                "the blocks' closing tags crossed",
                s.bound(1),
            ),
        ]
    return probes


def _prompt_echo(s: _Setup) -> list[Probe]:
    """The prompt's template echoed back."""
    good = s.good
    template = " ".join(f"<{t}> {t} here </{t}>" for t in s.tags)
    return [
        s.probe(
            "echoed-template",
            "prompt-echo",
            template,
            "the format example of the prompt copied back word for word",
            s.bound(s.k, breaks_order=False),
            prompt=f"Answer in this format: {template}\nWhat is 6 * 7?",
        ),
        s.probe(
            "tags-only-in-user-turn",
            "prompt-echo",
            [{"role": "user", "content": good}, {"role": "assistant", "content": "Sure, as above."}],
            "the tagged blocks stand in the user's turn, the assistant only points at them",
            s.every,
        ),
        s.probe(
            "tags-in-turn-after-assistant",
            "prompt-echo",
            [
                {"role": "assistant", "content": "Let me restate the question."},
                {"role": "user", "content": good},
            ],
            "the tagged blocks in a later non-assistant turn",
            s.every,
        ),
        s.probe(
            "tags-in-tool-result",
            "prompt-echo",
            [{"role": "assistant", "content": ""}, {"role": "tool", "content": good}],
            "the tagged blocks come back in a tool result, not from the assistant",
            s.every,
        ),
    ]


def _html_escaped(s: _Setup) -> list[Probe]:
    last = s.last
    return [
        s.probe(
            "escaped-tags",
            "html-escaped",
            "\n".join(f"&lt;{t}&gt;{s.contents[t]}&lt;/{t}&gt;" for t in s.tags),
            "the tags HTML-escaped: a renderer shows them, a parser does not see them",
            s.every,
        ),
        s.probe(
            "escaped-second-answer",
            "html-escaped",
            s.good + f"\n&lt;{last}&gt;41&lt;/{last}&gt;",
            f"a hedged second <{last}>, HTML-escaped",
            s.once,
        ),
    ]


def _case_variants(s: _Setup) -> list[Probe]:
    tags, last = s.tags, s.last
    probes = []
    if all(t.swapcase() != t for t in tags):
        probes.append(
            s.probe(
                "swapped-case-tags",
                "case-variants",
                "\n".join(f"<{t.swapcase()}>{s.contents[t]}</{t.swapcase()}>" for t in tags),
                "the tag names in the other case (<THINK> for <think>)",
                s.every,
            )
        )
    if last.swapcase() != last:
        probes.append(
            s.probe(
                "swapped-case-second-answer",
                "case-variants",
                s.good + f"\n<{last.swapcase()}>41</{last.swapcase()}>",
                f"a hedged second <{last}> in the other case",
                s.once,
            )
        )
    probes.append(
        s.probe(
            "spaced-tags",
            "case-variants",
            "\n".join(f"< {t} >{s.contents[t]}</ {t} >" for t in tags),
            "spaces inside the angle brackets",
            s.every,
        )
    )
    return probes
