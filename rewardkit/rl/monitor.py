"""The training-time reward-hacking monitor: each environment's exploit signatures, every step.

The environment names its signatures (``Environment.exploit_patterns`` / ``exploit_signals``: a code
solution defining ``__eq__``, a math answer that lists several candidates ...). Each step logs the
fraction of the step's completions showing each one as ``exploit/<name>`` in ``metrics.jsonl``. A
signature whose rate over the last ``window`` steps stands ``rise`` or more above its rate over the
run's first ``window`` steps is warned about once (and again only after it has fallen back): a policy
that has found a hole usually shows it as a climbing signature before the reward curve looks odd.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

from rewardkit.envs.base import Environment

log = logging.getLogger("rewardkit.rl")
PREFIX = "exploit/"


class ExploitMonitor:
    """Per-step exploit-signature rates for one environment, and a warning when one climbs."""

    def __init__(
        self,
        env: Environment,
        *,
        rise: float | None = 0.2,
        window: int = 10,
        warn: Callable[[str], None] | None = None,
    ) -> None:
        if window < 1:
            raise ValueError(f"window must be >= 1, got {window}")
        self.env = env
        self.rise = rise
        self.window = window
        self._warn = warn or log.warning
        self._baseline: dict[str, list[float]] = {}
        self._recent: dict[str, deque[float]] = {}
        self._warned: set[str] = set()

    def update(self, step: int, completions: Sequence[Any]) -> dict[str, float]:
        """The step's ``exploit/<name>`` rates (empty when the environment has no signatures)."""
        try:
            rates = self.env.exploit_signals(list(completions))
        except Exception as exc:  # a broken signature must not stop training; say so once
            if "__error__" not in self._warned:
                self._warned.add("__error__")
                self._warn(f"exploit monitor disabled: {self.env.name}.exploit_signals raised {exc!r}")
            return {}
        for name, rate in rates.items():
            self._track(step, name, float(rate))
        return {f"{PREFIX}{name}": float(rate) for name, rate in rates.items()}

    def _track(self, step: int, name: str, rate: float) -> None:
        base = self._baseline.setdefault(name, [])
        recent = self._recent.setdefault(name, deque(maxlen=self.window))
        recent.append(rate)
        if len(base) < self.window:
            base.append(rate)
            return
        if self.rise is None:
            return
        before, now = sum(base) / len(base), sum(recent) / len(recent)
        if now - before >= self.rise and name not in self._warned:
            self._warned.add(name)
            self._warn(
                f"step {step}: exploit signature {name!r} of {self.env.name!r} is rising: "
                f"{now:.0%} of the last {len(recent)} steps' completions vs {before:.0%} at the start "
                "(see docs/hacking.md; `rewardkit audit` checks the environment's defences)"
            )
        elif now - before < self.rise / 2:
            self._warned.discard(name)  # fallen back: warn again if it climbs again
