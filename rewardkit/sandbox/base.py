"""The sandbox contract: one ``run`` call executes one untrusted program and reports what happened.

Back ends differ in how they isolate (see docs/sandbox.md), never in what ``run`` returns.
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

    Distinct from a program failing: callers must not turn this into a reward of 0.
    """


@dataclass(frozen=True)
class ExecResult:
    """The outcome of one program run.

    Attributes:
        exit_code: the program's exit status, negative for a signal (e.g. -9 after an out-of-memory
            kill); None when the sandbox stopped the run (timeout or output overflow).
        stdout: captured standard output (UTF-8, undecodable bytes replaced), at most the cap.
        stderr: captured standard error, same rules.
        timed_out: the wall-clock or CPU-time limit ended the run. Never reported as a clean exit.
        wall_s: seconds from start to end of the program.
        truncated: output passed the per-stream cap, so the run was stopped and output cut.
    """

    exit_code: int | None
    stdout: str
    stderr: str
    timed_out: bool
    wall_s: float
    truncated: bool = False

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

        Raises SandboxError only when the sandbox itself fails; whatever the program does
        (crash, hang, flood output, attack the host) is reported in the ExecResult.
        """
        ...

    def protections(self) -> dict[str, bool]:
        """Which protections are active, by name (e.g. ``network``, ``filesystem``, ``pids``)."""
        ...

    def close(self) -> None:
        """Release everything the sandbox holds (processes, containers). Idempotent."""
        ...


def check_limits(timeout_s: float, memory_mb: int | None) -> None:
    """Reject limits that would make a run meaningless, with a message naming the bad value."""
    if not timeout_s > 0:
        raise ValueError(f"timeout_s must be > 0, got {timeout_s!r}")
    if memory_mb is not None and memory_mb < 16:
        raise ValueError(f"memory_mb must be >= 16 (an interpreter needs that much), got {memory_mb!r}")
