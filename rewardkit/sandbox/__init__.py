"""Running untrusted code: the Sandbox protocol, ExecResult, and the local and docker back ends.

``get_sandbox("local" | "docker", **options)`` is the entry point; docs/sandbox.md has the threat model.
Every failure of the sandbox itself is a SandboxError: SandboxUnavailable (an engine, tool or image is
missing), SandboxLimitError (meaningless limits; also a ValueError) or RunnerLost (a run lost its warm
job runner twice).
"""

from __future__ import annotations

from rewardkit.sandbox.base import (
    ExecResult,
    RunnerLost,
    Sandbox,
    SandboxError,
    SandboxLimitError,
    SandboxUnavailable,
)

SANDBOX_KINDS = ("local", "docker")


def get_sandbox(kind: str, **options: object) -> Sandbox:
    """Build a sandbox back end by name. Options are the fields of LocalConfig or DockerConfig."""
    if kind == "local":
        from rewardkit.sandbox.local import LocalSandbox

        return LocalSandbox(**options)
    if kind == "docker":
        from rewardkit.sandbox.docker import DockerSandbox

        return DockerSandbox(**options)
    raise ValueError(f"unknown sandbox kind {kind!r}; known kinds: {', '.join(SANDBOX_KINDS)}")


def build_image(name: str = "rewardkit-sandbox:latest", **options: object) -> str:
    """Build the docker sandbox image (see rewardkit.sandbox.image.build_image); returns its name."""
    from rewardkit.sandbox.image import build_image as _build

    return _build(name, **options)


__all__ = [
    "ExecResult",
    "RunnerLost",
    "SANDBOX_KINDS",
    "Sandbox",
    "SandboxError",
    "SandboxLimitError",
    "SandboxUnavailable",
    "build_image",
    "get_sandbox",
]
