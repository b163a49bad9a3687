"""The sandbox contract: one ``run`` call executes one untrusted program and reports what happened.

Back ends differ in how they isolate (see docs/sandbox.md), never in what ``run`` returns or raises.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

DEFAULT_MAX_OUTPUT_BYTES = 1 << 20
"""Per-stream output cap. Output beyond it stops the run: it is runaway output, not an answer."""

PYTHON_COMMAND = ("python3", "{file}")
"""How a program is started; ``{file}`` is replaced by the path of the written source file."""


class SandboxError(RuntimeError):
    """The sandbox itself failed (engine down, image missing, container lost twice).

    Distinct from a program failing: callers must not turn this into a reward of 0. Every failure of
    a back end is this class or one of its subclasses below.
    """


class SandboxUnavailable(SandboxError):
    """The sandbox cannot run anything here: an engine, tool, image or program is missing or refuses."""


class SandboxLimitError(SandboxError, ValueError):
    """A run's limits are meaningless (e.g. ``timeout_s <= 0``); also a ValueError, as it always was."""


class RunnerLost(SandboxError):
    """A warm job runner stopped answering properly: it died, broke the protocol, or missed a deadline.

    Raised inside a back end for each lost runner (``hung``: it missed the deadline, so the run counts
    as a timeout) and to the caller only when a run lost its runner twice.
    """

    def __init__(self, reason: str, hung: bool = False) -> None:
        super().__init__(reason)
        self.hung = hung


@dataclass(frozen=True)
class ExecResult:
    """The outcome of one program run."""

    exit_code: int | None
    """The program's exit status, negative for a signal (e.g. -9 after an out-of-memory kill); None
    when the sandbox stopped the run (timeout or output overflow)."""
    stdout: str
    """Captured standard output (UTF-8, undecodable bytes replaced), at most the per-stream cap."""
    stderr: str
    """Captured standard error, same rules as ``stdout``."""
    timed_out: bool
    """The wall-clock or CPU-time limit ended the run. Never reported as a clean exit."""
    wall_s: float
    """Seconds from start to end of the program."""
    truncated: bool = False
    """Output passed the per-stream cap, so the run was stopped and its output cut."""

    @property
    def ok(self) -> bool:
        """True iff the program ran to completion and exited 0."""
        return self.exit_code == 0 and not self.timed_out and not self.truncated


@runtime_checkable
class Sandbox(Protocol):
    """Runs untrusted code. Implementations are thread-safe: ``run`` may be called from many threads."""

    kind: str

    def run(self, code: str, *, stdin: str = "", timeout_s: float = 10.0, memory_mb: int = 512) -> ExecResult:
        """Run ``code`` as a program in a fresh working directory with the given limits.

        Raises SandboxError (or a subclass: SandboxLimitError for bad limits, RunnerLost, ...) only
        when the sandbox itself fails or is closed; whatever the program does (crash, hang, flood
        output, attack the host) is reported in the ExecResult.
        """
        ...

    def protections(self) -> dict[str, bool]:
        """Which protections are active, by name (e.g. ``network``, ``filesystem``, ``pids``)."""
        ...

    def close(self) -> None:
        """Release everything the sandbox holds (processes, containers). Idempotent."""
        ...


def check_limits(timeout_s: float, memory_mb: int | None) -> None:
    """Reject limits that would make a run meaningless: SandboxLimitError naming the bad value."""
    if not timeout_s > 0:
        raise SandboxLimitError(f"timeout_s must be > 0, got {timeout_s!r}")
    if memory_mb is not None and memory_mb < 16:
        raise SandboxLimitError(
            f"memory_mb must be >= 16 (an interpreter needs that much), got {memory_mb!r}"
        )
