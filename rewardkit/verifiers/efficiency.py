"""Efficiency terms: length budgets and operation counts, and what a message counts as written."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any


def linear_budget(n: float, budget: float) -> float:
    """``max(0, 1 - n / budget)``: 1 for nothing used, 0 at or past the budget."""
    if budget <= 0:
        raise ValueError(f"budget must be > 0, got {budget}")
    return max(0.0, 1.0 - n / budget)


def soft_overlong_penalty(n: int, max_len: int, buffer: int) -> float:
    """DAPO's soft overlong punishment (Yu et al., 2025, eq. 13), in [-1, 0].

    With max length L and buffer B: 0 if n <= L - B; ((L - B) - n) / B if L - B < n <= L; -1 if n > L.
    """
    if not 0 < buffer <= max_len:
        raise ValueError(f"need 0 < buffer <= max_len, got buffer={buffer}, max_len={max_len}")
    threshold = max_len - buffer
    if n <= threshold:
        return 0.0
    if n <= max_len:
        return (threshold - n) / buffer
    return -1.0


def written(message: str | Mapping[str, Any]) -> str:
    """What the policy wrote in a message: its text and its tool calls' names and arguments."""
    if isinstance(message, str):
        return message
    parts = [message.get("content") or ""]
    calls = message.get("tool_calls")
    for call in calls if isinstance(calls, list) else ([calls] if calls else []):
        function = call.get("function") if isinstance(call, Mapping) else None
        if isinstance(function, Mapping):
            arguments = function.get("arguments")
            parts.append(str(function.get("name") or ""))
            if arguments is not None:
                parts.append(
                    arguments
                    if isinstance(arguments, str)
                    else json.dumps(arguments, ensure_ascii=False, default=str)
                )
        else:
            parts.append(call if isinstance(call, str) else json.dumps(call, ensure_ascii=False, default=str))
    return "".join(parts)
