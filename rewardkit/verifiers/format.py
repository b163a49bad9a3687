"""Format checks: are the required tags there, well formed, in order? Pure text in, numbers out.

A tag counts only where a reader sees one (docs/hacking.md, ``format``):

* written exactly: ``<answer>``, not ``<ANSWER>``, ``＜answer＞``, ``<аnswer>`` (Cyrillic ``а``),
  ``<ans\u200bwer>`` or ``&lt;answer&gt;``. Such a disguised copy is no tag, and next to the real one it
  is a second occurrence (a hedge a lenient parser downstream may read): ``<tag>:once`` fails;
* outside code: tags inside a fenced block (an unclosed fence runs to the end), inline code or an HTML
  comment are quoted, not used;
* around content: a block holding only whitespace, invisible characters (zero-width, fillers), markup
  (HTML tags and entities, markdown emphasis) or a placeholder (``...``) is empty, and so are blocks
  that copy the prompt's own (every required block verbatim, as when the format template is echoed).
"""

from __future__ import annotations

import html
import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass

_FENCE_LINE_RE = re.compile(r"[ ]{0,3}(`{3,}|~{3,})(.*)")
_INLINE_CODE_RE = re.compile(r"(?<!`)(`+)(?!`).+?(?<!`)\1(?!`)", re.S)
_COMMENT_RE = re.compile(r"<!--.*?(?:-->|\Z)", re.S)
_HTML_TAG_RE = re.compile(r"</?[A-Za-z][\w:.-]*(?:\s[^<>]*)?/?>")
_MARKUP_CHARS = frozenset("*_~`#>|-.\u2026\u00b7")
"""Markdown emphasis, headings, quotes, rules, and placeholder dots: no content on their own."""
_INVISIBLE = frozenset("\u115f\u1160\u3164\uffa0\u2800\u180e")
"""Printable but blank: Hangul fillers, the Braille blank, the Mongolian vowel separator."""
_BLANK_CATEGORIES = frozenset({"Cc", "Cf", "Co", "Cn", "Mn", "Me", "Zs", "Zl", "Zp"})

# Look-alikes of Latin letters and of the angle brackets, folded when looking for disguised tags.
_CONFUSABLES = str.maketrans(
    {
        **dict(zip("аеорсухіјѕһԁԛԝкмтвнг", "aeopcyxijshdqwkmtbhr")),  # Cyrillic
        **dict(zip("АВЕКМНОРСТХУІЈЅ", "ABEKMHOPCTXYIJS")),
        **dict(zip("αονρτικυχ", "aovptikux")),  # Greek
        **dict(zip("ΑΒΕΖΗΙΚΜΝΟΡΤΥΧ", "ABEZHIKMNOPTYX")),
        "ı": "i",
        "ɑ": "a",
        "‹": "<",
        "›": ">",
        "〈": "<",
        "〉": ">",
        "⟨": "<",
        "⟩": ">",
        "˂": "<",
        "˃": ">",
        "ᐸ": "<",
        "ᐳ": ">",
    }
)


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


def visible_text(text: str) -> str:
    """What of ``text`` a reader sees as content: no whitespace, invisible characters, HTML tags,
    comments or entities, markdown markup or placeholder dots. Empty means the text says nothing."""
    text = html.unescape(text)
    text = _COMMENT_RE.sub("", text)
    text = _HTML_TAG_RE.sub("", text)
    return "".join(
        ch
        for ch in text
        if ch not in _MARKUP_CHARS
        and ch not in _INVISIBLE
        and not ch.isspace()
        and unicodedata.category(ch) not in _BLANK_CATEGORIES
    )


def code_spans(text: str) -> list[tuple[int, int]]:
    """Where ``text`` quotes rather than writes: fenced code blocks, inline code, HTML comments."""
    spans = _fences(text)
    masked = _mask(text, spans)
    spans += [m.span() for m in _COMMENT_RE.finditer(masked)]
    masked = _mask(text, spans)
    spans += [m.span() for m in _INLINE_CODE_RE.finditer(masked)]
    return sorted(spans)


def _fences(text: str) -> list[tuple[int, int]]:
    """Fenced code blocks, CommonMark style: a line of 3+ backticks or tildes opens one, a line of at
    least as many of the same closes it, and an unclosed one runs to the end of the text."""
    spans: list[tuple[int, int]] = []
    opened: tuple[int, str] | None = None
    start = 0
    for line in text.splitlines(keepends=True):
        body = line.rstrip("\r\n")
        m = _FENCE_LINE_RE.match(body)
        if opened is None:
            if m and not (m.group(1)[0] == "`" and "`" in m.group(2)):  # a backtick fence's info has none
                opened = (start, m.group(1))
        elif (
            m
            and m.group(1)[0] == opened[1][0]
            and len(m.group(1)) >= len(opened[1])
            and not m.group(2).strip()
        ):
            spans.append((opened[0], start + len(body)))
            opened = None
        start += len(line)
    if opened is not None:
        spans.append((opened[0], len(text)))
    return spans


def mask_code(text: str) -> str:
    """``text`` with its code and comments blanked out, every position kept (same length)."""
    return _mask(text, code_spans(text))


def _mask(text: str, spans: Sequence[tuple[int, int]]) -> str:
    chars = list(text)
    for start, end in spans:
        chars[start:end] = " " * (end - start)
    return "".join(chars)


def _skeleton(text: str) -> str:
    """``text`` with disguises undone: entities, compatibility forms (fullwidth), zero-width characters,
    look-alike letters and brackets, case."""
    text = unicodedata.normalize("NFKC", html.unescape(text))
    text = "".join(ch for ch in text if unicodedata.category(ch) not in ("Cf", "Mn") and ch not in _INVISIBLE)
    return text.translate(_CONFUSABLES).casefold()


def tag_variants(text: str, tag: str, *, skeleton: str | None = None) -> tuple[int, int]:
    """How many opening and closing tags of ``tag`` a reader would see in ``text`` (disguised or not);
    ``skeleton``: ``text`` already passed through ``_skeleton``."""
    name = re.escape(_skeleton(tag))
    skeleton = _skeleton(text) if skeleton is None else skeleton
    opens = len(re.findall(rf"<\s*{name}(?:\s[^<>]*)?>", skeleton))
    closes = len(re.findall(rf"<\s*/\s*{name}\s*>", skeleton))
    return opens, closes


def tag_blocks(text: str, tag: str) -> list[str]:
    """The contents of every exact ``<tag>...</tag>`` in ``text``, code included (the prompt's blocks)."""
    return re.findall(f"<{re.escape(tag)}>(.*?)</{re.escape(tag)}>", text, re.S)


def check_tags(
    text: str, tags: Sequence[str], *, allow_text_outside: bool = True, prompt: str | None = None
) -> FormatResult:
    """Check that each tag appears exactly once as ``<tag>...</tag>``, non-empty, in the given order.

    Rules (one per tag, plus ordering): ``<tag>:once`` (exactly one opening and one closing tag, the
    opening first, and no disguised copy of either), ``<tag>:nonempty`` (visible content inside, see
    ``visible_text``), ``order`` (the tags appear in the listed order without overlapping), and, when
    ``allow_text_outside`` is False, ``no_text_outside`` (nothing but whitespace between and around the
    tagged blocks). Tags inside code or comments do not count (``mask_code``). With ``prompt``, blocks
    that all copy the prompt's blocks of the same tags verbatim are empty: an echoed template.
    """
    rules: dict[str, bool] = {}
    spans: list[tuple[int, int]] = []
    inners: dict[str, str] = {}
    masked = mask_code(text)
    skeleton = _skeleton(masked)
    for tag in tags:
        opens = [m.start() for m in re.finditer(f"<{re.escape(tag)}>", masked)]
        closes = [m.start() for m in re.finditer(f"</{re.escape(tag)}>", masked)]
        seen = tag_variants(masked, tag, skeleton=skeleton)
        once = len(opens) == 1 and len(closes) == 1 and opens[0] < closes[0] and seen == (1, 1)
        rules[f"{tag}:once"] = once
        inner = text[opens[0] + len(tag) + 2 : closes[0]] if once else ""
        inners[tag] = inner
        rules[f"{tag}:nonempty"] = bool(visible_text(inner))
        if once:
            spans.append((opens[0], closes[0] + len(tag) + 3))
    if prompt and _echoed(inners, prompt):
        for tag in tags:
            rules[f"{tag}:nonempty"] = False
    ordered = len(spans) == len(tags) and all(a[1] <= b[0] for a, b in zip(spans, spans[1:]))
    rules["order"] = ordered
    if not allow_text_outside:
        outside = text
        for start, end in sorted(spans, reverse=True):
            outside = outside[:start] + outside[end:]
        rules["no_text_outside"] = ordered and not outside.strip()
    return FormatResult(rules)


def _echoed(inners: dict[str, str], prompt: str) -> bool:
    """Every required block's content is a same-tag block of the prompt, word for word."""

    def norm(s: str) -> str:
        return " ".join(s.split())

    for tag, inner in inners.items():
        if not inner or norm(inner) not in {norm(b) for b in tag_blocks(prompt, tag)}:
            return False
    return True
