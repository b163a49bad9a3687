"""Exploit probes: completions written to game an environment, which it must score at most a bound.

An environment lists its probes next to its gold examples (``Environment.exploit_probes``): gold examples
say what must pass, probes say what must not. ``check_env`` and ``rewardkit audit`` run them; a probe
over its bound is a hole in the reward, fixed in the environment (never by weakening the probe).
docs/hacking.md lists every family and the rule that defeats it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from rewardkit.types import Score

if TYPE_CHECKING:
    from rewardkit.envs.base import Environment

NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_\-]*$")


@dataclass(frozen=True)
class Probe:
    """One exploit attempt: a sample (``completion``, ``answer``, ``prompt``, ``info``) and the most it may score."""

    name: str
    """Short, unique within the environment, lower-case (``always-equal``, ``boxed-every-candidate``)."""
    family: str
    """The kind of exploit, as docs/hacking.md groups them (``empty-answer``, ``test-tampering``, ...)."""
    sample: Mapping[str, Any]
    """What ``score_batch`` receives: the exploit completion and the task it attacks."""
    why: str
    """What the exploit tries, in one sentence (printed by ``rewardkit audit``)."""
    bound: float = 0.0
    """The highest reward the environment may give it (0.0: no credit at all)."""

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not NAME_RE.match(self.name):
            raise ValueError(f"probe name must be lower-case letters, digits, '-' or '_', got {self.name!r}")
        if not isinstance(self.family, str) or not NAME_RE.match(self.family):
            raise ValueError(f"probe {self.name!r}: family must be lower-case, got {self.family!r}")
        if not isinstance(self.sample, Mapping) or "completion" not in self.sample:
            raise ValueError(f"probe {self.name!r}: sample must be a dict with a 'completion'")
        if isinstance(self.bound, bool) or not isinstance(self.bound, int | float):
            raise ValueError(f"probe {self.name!r}: bound must be a number, got {self.bound!r}")


@dataclass(frozen=True)
class ProbeResult:
    """A probe's outcome: the Score it got and whether that is within its bound."""

    probe: Probe
    score: Score
    within_bound: bool = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "within_bound", self.score.reward <= self.probe.bound + 1e-9)

    @property
    def verdict(self) -> str:
        return "ok" if self.within_bound else "EXPLOITABLE"

    def row(self) -> dict[str, Any]:
        """One line of the audit table (and of ``audit.json``)."""
        return {
            "probe": self.probe.name,
            "family": self.probe.family,
            "reward": round(self.score.reward, 4),
            "bound": self.probe.bound,
            "status": self.score.status,
            "verdict": self.verdict,
            "why": self.probe.why,
        }


def run_probes(env: Environment, probes: Sequence[Probe] | None = None) -> list[ProbeResult]:
    """Score ``probes`` (default: the environment's own) in one batch; one result per probe, in order."""
    probes = list(env.exploit_probes() if probes is None else probes)
    check_probe_names(probes, env.name)
    scores = env.score_batch([dict(p.sample) for p in probes]) if probes else []
    return [ProbeResult(p, s) for p, s in zip(probes, scores)]


def check_probe_names(probes: Sequence[Probe], where: str) -> None:
    """Probe names are an environment's stable ids (audit reports, monitors): no two alike."""
    seen: set[str] = set()
    for probe in probes:
        if not isinstance(probe, Probe):
            raise TypeError(f"{where}: exploit_probes() returned a {type(probe).__name__}, not a Probe")
        if probe.name in seen:
            raise ValueError(f"{where}: two probes are named {probe.name!r}")
        seen.add(probe.name)
