"""Pure helpers of the code environment: find the solution in a completion, compare program output.

Nothing here runs code; rewardkit.sandbox does that.
"""

from __future__ import annotations

import math
import re

# An opening fence (``` or ~~~, optional info string), the body, and a closing fence of the same
# characters at the start of a line. Up to three spaces of indentation, as in CommonMark.
_FENCE = re.compile(
    r"^ {0,3}(?P<fence>`{3,}|~{3,})[^\n]*\n(?P<body>.*?)^ {0,3}(?P=fence)[ \t]*$", re.M | re.S
)


def extract_code(text: str) -> str:
    """The last fenced code block of ``text``, or all of ``text`` when it has none.

    The last block, not the first: models often show a broken attempt or an example first and the
    final program last. An unclosed fence is not a block (the completion was likely cut off).
    """
    blocks = [m.group("body") for m in _FENCE.finditer(text)]
    return blocks[-1] if blocks else text


def normalize_output(text: str) -> list[str]:
    """Lines with trailing whitespace removed and trailing blank lines dropped (leading space counts)."""
    lines = [line.rstrip() for line in text.replace("\r\n", "\n").split("\n")]
    while lines and not lines[-1]:
        lines.pop()
    return lines


def outputs_match(actual: str, expected: str, *, float_tolerance: float | None = None) -> bool:
    """Whether a program's output equals the expected output, ignoring trailing whitespace.

    With ``float_tolerance``, tokens that both parse as numbers match when they are within that
    absolute or relative tolerance (so ``0.3333333`` matches ``0.333333333``); other tokens must be
    equal, and the number of lines and tokens per line must agree.
    """
    got, want = normalize_output(actual), normalize_output(expected)
    if got == want:
        return True
    if float_tolerance is None or len(got) != len(want):
        return False
    return all(_line_close(a, b, float_tolerance) for a, b in zip(got, want))


def _line_close(got: str, want: str, tolerance: float) -> bool:
    got_tokens, want_tokens = got.split(), want.split()
    if len(got_tokens) != len(want_tokens):
        return False
    return all(_token_close(a, b, tolerance) for a, b in zip(got_tokens, want_tokens))


def _token_close(got: str, want: str, tolerance: float) -> bool:
    if got == want:
        return True
    try:
        a, b = float(got), float(want)
    except ValueError:
        return False
    if math.isnan(a) or math.isnan(b):
        return False
    return math.isclose(a, b, rel_tol=tolerance, abs_tol=tolerance)


def python_syntax_error(source: str) -> str | None:
    """The syntax error of ``source`` as a message, or None if it compiles. Compiling runs no code."""
    try:
        compile(source, "<solution>", "exec", dont_inherit=True)
    except (SyntaxError, ValueError, RecursionError, MemoryError) as exc:  # ValueError: NUL bytes
        return f"{type(exc).__name__}: {exc}"
    return None
