"""Efficiency terms: length budgets and operation counts. Pure functions on numbers."""

from __future__ import annotations


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
