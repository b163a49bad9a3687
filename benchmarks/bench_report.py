"""Shared by the benchmark scripts: write one benchmark's section of BENCHMARKS.md."""

from __future__ import annotations

from pathlib import Path


def write_section(path: str | Path, header: str, body: str) -> None:
    """Replace the section starting with ``header`` (up to the next ``## ``) or append it; others stay."""
    path = Path(path)
    text = path.read_text() if path.exists() else "# Benchmarks\n"
    start = text.find(header)
    if start == -1:
        text = text.rstrip("\n") + "\n\n" + body
    else:
        end = text.find("\n## ", start + len(header))
        text = text[:start] + body.rstrip("\n") + "\n" + ("" if end == -1 else text[end:])
    path.write_text(text.rstrip("\n") + "\n")
