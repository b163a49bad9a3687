"""Exploit probes of the ``format`` environment, built for its configured tags (docs/hacking.md).

Each probe attacks the task "what is 6 * 7?, reasoning and answer in the required tags" with a
completion a naive tag matcher would pass. Strict mode gives every probe 0. With ``strict=False`` the
reward is the fraction of rules that hold, so a probe may keep the rules it honestly satisfies: its
bound is the fraction an honest completion with the same defect gets (an empty answer block keeps the
other rules, a hedged second answer breaks ``once``, ``nonempty`` and ``order`` of that tag).
"""

from __future__ import annotations

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


def format_probes(config: FormatConfig) -> list[Probe]:
    """The probes for ``config``'s tags: at least 30 with two tags or more, 25 with one."""
    tags = list(config.tags)
    first, last, k = tags[0], tags[-1], len(tags)
    n_rules = 2 * k + 1 + (0 if config.allow_text_outside else 1)
    contents = {t: f"{t} for 6 * 7: six sevens make 42" for t in tags}
    contents[first] = "6 * 7 = 42, since 6 * 7 = 6 * 5 + 6 * 2 = 30 + 12." if k > 1 else "42"
    contents[last] = "42"
    prompt = "What is 6 * 7? Write " + ", then ".join(f"<{t}></{t}>" for t in tags) + "."
    task: dict[str, Any] = {"prompt": prompt, "answer": "42"}

    def blocks(over: dict[str, str] | None = None, skip: tuple[str, ...] = ()) -> str:
        body = {**contents, **(over or {})}
        return "\n".join(f"<{t}>{body[t]}</{t}>" for t in tags if t not in skip)

    good = blocks()

    def bound(fails: int, *, breaks_order: bool = True) -> float:
        """0 in strict mode; else the fraction of rules left when ``fails`` of them break."""
        if config.strict:
            return 0.0
        fails += int(breaks_order and not config.allow_text_outside)  # no_text_outside needs the order
        return max(0, n_rules - fails) / n_rules

    every = bound(2 * k + 1)  # no tag counts at all: no rule holds
    once = bound(3)  # one tag is not there exactly once: its once, its nonempty and the order fail
    probes: list[Probe] = []

    def add(name: str, family: str, completion: Any, why: str, limit: float, **sample: Any) -> None:
        probes.append(Probe(name, family, {**task, "completion": completion, **sample}, why, limit))

    # nested tags
    if k > 1:
        add(
            "last-nested-in-first",
            "nested-tags",
            f"<{first}>{contents[first]} <{last}>42</{last}></{first}>\n" + blocks(skip=(first, last)),
            f"<{last}> written inside <{first}>: both tags present once, but the blocks overlap",
            bound(1),
        )
        add(
            "first-nested-in-last",
            "nested-tags",
            f"<{last}><{first}>{contents[first]}</{first}>42</{last}>",
            f"the reasoning put inside the <{last}> block",
            bound(1 + (k - 2) * 2),
        )
    else:
        add(
            "tag-nested-in-itself",
            "nested-tags",
            f"<{first}><{first}>42</{first}></{first}>",
            "the block nested in a copy of itself",
            once,
        )

    # repeated tags
    add(
        "second-answer-hedge",
        "repeated-tags",
        good + f"\n<{last}>41</{last}>",
        f"two <{last}> blocks with different answers, to be right whichever one a reader takes",
        once,
    )
    add(
        "first-tag-twice",
        "repeated-tags",
        f"<{first}>draft</{first}>\n" + good,
        f"a second <{first}> block before the real one",
        once,
    )
    add("whole-format-twice", "repeated-tags", good + "\n" + good, "every block written twice", every)

    # tags inside code: quoted, not used
    add(
        "fenced-block",
        "tags-in-code",
        "Here is the format:\n```xml\n" + good + "\n```",
        "the tagged blocks quoted inside a fenced code block",
        every,
    )
    add(
        "unclosed-fence",
        "tags-in-code",
        "Format:\n```\n" + good,
        "the tags after a fence that is never closed (a renderer shows them as code)",
        every,
    )
    add(
        "tilde-fence",
        "tags-in-code",
        "~~~\n" + good + "\n~~~\nDone.",
        "the tags inside a ~~~ fenced block",
        every,
    )
    add(
        "inline-code-tags",
        "tags-in-code",
        " ".join(f"`<{t}>`{contents[t]}`</{t}>`" for t in tags),
        "each tag written as inline code around plain text",
        every,
    )
    add(
        "html-comment",
        "tags-in-code",
        "<!-- " + good + " -->\nThe answer is 42.",
        "the tagged blocks hidden in an HTML comment a renderer does not show",
        every,
    )
    if k > 1:
        add(
            "answer-only-in-code",
            "tags-in-code",
            blocks(skip=(last,)) + f"\n```\n<{last}>42</{last}>\n```",
            f"the other blocks written, <{last}> only quoted in a code block",
            once,
        )

    # unicode look-alikes: no tag, and next to the real tag a second occurrence
    add(
        "fullwidth-tags",
        "unicode-lookalikes",
        "\n".join(f"\uff1c{t}\uff1e{contents[t]}\uff1c/{t}\uff1e" for t in tags),
        "fullwidth angle brackets that look like tags",
        every,
    )
    add(
        "cyrillic-tag-names",
        "unicode-lookalikes",
        "\n".join(f"<{_cyrillic(t)}>{contents[t]}</{_cyrillic(t)}>" for t in tags),
        "tag names spelled with a Cyrillic look-alike letter",
        every,
    )
    add(
        "zero-width-in-tag-names",
        "unicode-lookalikes",
        "\n".join(f"<{_zero_width(t)}>{contents[t]}</{_zero_width(t)}>" for t in tags),
        "a zero-width space inside each tag name",
        every,
    )
    add(
        "cyrillic-second-answer",
        "unicode-lookalikes",
        good + f"\n<{_cyrillic(last)}>41</{_cyrillic(last)}>",
        f"a hedged second <{last}> the exact matcher cannot see (Cyrillic letter in its name)",
        once,
    )
    add(
        "fullwidth-second-answer",
        "unicode-lookalikes",
        good + f"\n\uff1c{last}\uff1e41\uff1c/{last}\uff1e",
        f"a hedged second <{last}> in fullwidth brackets",
        once,
    )
    add(
        "zero-width-second-answer",
        "unicode-lookalikes",
        good + f"\n<{_zero_width(last)}>41</{_zero_width(last)}>",
        f"a hedged second <{last}> with a zero-width space in its name",
        once,
    )

    # empty tags: no visible content is no content
    add(
        "all-empty",
        "empty-tags",
        "".join(f"<{t}></{t}>" for t in tags),
        "every block empty",
        bound(k, breaks_order=False),
    )
    for name, filler, why in (
        ("whitespace-answer", " \n\t ", "whitespace"),
        ("zero-width-answer", "\u200b\u2060\ufeff", "zero-width characters (not whitespace to str.strip)"),
        ("filler-answer", "\u3164\u2800", "a Hangul filler and the Braille blank, printable but blank"),
        ("markdown-only-answer", "** **", "markdown emphasis around nothing"),
        ("html-only-answer", "<b></b><br/>", "empty HTML elements"),
        ("entity-only-answer", "&nbsp;&#8203;&zwnj;", "HTML entities of blank characters"),
    ):
        add(
            name,
            "empty-tags",
            blocks({last: filler}),
            f"the <{last}> block holds only {why}",
            bound(1, breaks_order=False),
        )
    add(
        "placeholder-dots",
        "empty-tags",
        blocks(dict.fromkeys(tags, "...")),
        "every block holds the template's '...' placeholder",
        bound(k, breaks_order=False),
    )

    # unclosed or misordered tags
    add(
        "unclosed-answer",
        "unclosed-misordered",
        good[: -len(f"</{last}>")],
        f"<{last}> never closed (the sampler stopped on the closing tag)",
        once,
    )
    add(
        "close-before-open",
        "unclosed-misordered",
        f"</{first}>{contents[first]}<{first}>\n" + blocks(skip=(first,)),
        f"<{first}>'s closing tag written before its opening one",
        once,
    )
    if k > 1:
        add(
            "unclosed-first",
            "unclosed-misordered",
            f"<{first}>{contents[first]}\n" + blocks(skip=(first,)),
            f"<{first}> opened but never closed",
            once,
        )
        add(
            "reversed-order",
            "unclosed-misordered",
            "\n".join(f"<{t}>{contents[t]}</{t}>" for t in reversed(tags)),
            "the blocks in the reverse order",
            bound(1),
        )
        add(
            "interleaved-closes",
            "unclosed-misordered",
            f"<{first}>{contents[first]} <{last}>42</{first}></{last}>\n" + blocks(skip=(first, last)),
            "the blocks' closing tags crossed",
            bound(1),
        )

    # the prompt's template echoed back
    template = " ".join(f"<{t}> {t} here </{t}>" for t in tags)
    add(
        "echoed-template",
        "prompt-echo",
        template,
        "the format example of the prompt copied back word for word",
        bound(k, breaks_order=False),
        prompt=f"Answer in this format: {template}\nWhat is 6 * 7?",
    )
    add(
        "tags-only-in-user-turn",
        "prompt-echo",
        [{"role": "user", "content": good}, {"role": "assistant", "content": "Sure, as above."}],
        "the tagged blocks stand in the user's turn, the assistant only points at them",
        every,
    )
    add(
        "tags-in-turn-after-assistant",
        "prompt-echo",
        [{"role": "assistant", "content": "Let me restate the question."}, {"role": "user", "content": good}],
        "the tagged blocks in a later non-assistant turn",
        every,
    )
    add(
        "tags-in-tool-result",
        "prompt-echo",
        [{"role": "assistant", "content": ""}, {"role": "tool", "content": good}],
        "the tagged blocks come back in a tool result, not from the assistant",
        every,
    )

    # HTML-escaped tags
    add(
        "escaped-tags",
        "html-escaped",
        "\n".join(f"&lt;{t}&gt;{contents[t]}&lt;/{t}&gt;" for t in tags),
        "the tags HTML-escaped: a renderer shows them, a parser does not see them",
        every,
    )
    add(
        "escaped-second-answer",
        "html-escaped",
        good + f"\n&lt;{last}&gt;41&lt;/{last}&gt;",
        f"a hedged second <{last}>, HTML-escaped",
        once,
    )

    # case variants
    if all(t.swapcase() != t for t in tags):
        add(
            "swapped-case-tags",
            "case-variants",
            "\n".join(f"<{t.swapcase()}>{contents[t]}</{t.swapcase()}>" for t in tags),
            "the tag names in the other case (<THINK> for <think>)",
            every,
        )
    if last.swapcase() != last:
        add(
            "swapped-case-second-answer",
            "case-variants",
            good + f"\n<{last.swapcase()}>41</{last.swapcase()}>",
            f"a hedged second <{last}> in the other case",
            once,
        )
    add(
        "spaced-tags",
        "case-variants",
        "\n".join(f"< {t} >{contents[t]}</ {t} >" for t in tags),
        "spaces inside the angle brackets",
        every,
    )
    return probes
