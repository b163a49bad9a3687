"""Running untrusted code: the Sandbox protocol, ExecResult, and the local and docker back ends.

``get_sandbox("local" | "docker", **options)`` is the entry point; docs/sandbox.md has the threat model.
Every failure of the sandbox itself is a SandboxError: SandboxUnavailable (an engine, tool or image is
missing), SandboxLimitError (meaningless limits; also a ValueError) or RunnerLost (a run lost its warm
job runner twice).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, Literal, get_args

from rewardkit.config import ConfigError, build
from rewardkit.sandbox.base import (
    ExecResult,
    RunnerLost,
    Sandbox,
    SandboxError,
    SandboxLimitError,
    SandboxUnavailable,
)

SandboxKind = Literal["local", "docker"]
"""The sandbox back ends ``get_sandbox`` knows."""
SANDBOX_KINDS: tuple[str, ...] = get_args(SandboxKind)


def get_sandbox(kind: str, **options: object) -> Sandbox:
    """Build a sandbox back end by name. Options are the fields of LocalConfig or DockerConfig."""
    if kind == "local":
        from rewardkit.sandbox.local import LocalSandbox

        return LocalSandbox(**options)
    if kind == "docker":
        from rewardkit.sandbox.docker import DockerSandbox

        return DockerSandbox(**options)
    raise ValueError(f"unknown sandbox kind {kind!r}; known kinds: {', '.join(SANDBOX_KINDS)}")


def sandbox_config(kind: str, options: Mapping[str, Any], *, where: str = "", prefix: str = "") -> Any:
    """The checked options of a back end (a LocalConfig or DockerConfig), without starting anything.

    What ``get_sandbox(kind, **options)`` would refuse later (an unknown name, a bad value) raises
    ConfigError now, naming the key as ``prefix + name`` in ``where`` (default: ``"KIND sandbox"``); an
    option of the other back end says which one it belongs to. No process, container or engine is
    touched, so an environment can check its sandbox options when it is configured.
    """
    if kind not in SANDBOX_KINDS:
        raise ValueError(f"unknown sandbox kind {kind!r}; known kinds: {', '.join(SANDBOX_KINDS)}")
    configs = _config_classes()
    where = where or f"{kind} sandbox"
    own = [f.name for f in dataclasses.fields(configs[kind])]
    for key in options:
        other = [
            k for k, cls in configs.items() if k != kind and key in {f.name for f in dataclasses.fields(cls)}
        ]
        if key not in own and other:
            raise ConfigError(
                f"{where}: {prefix}{key}: an option of the {other[0]} sandbox, not of the {kind} one; "
                f"the {kind} sandbox's options: {', '.join(own)}"
            )
    return build(configs[kind], options, where=where, prefix=prefix)


def _config_classes() -> dict[str, type]:
    from rewardkit.sandbox.docker import DockerConfig
    from rewardkit.sandbox.local import LocalConfig

    return {"local": LocalConfig, "docker": DockerConfig}


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
    "SandboxKind",
    "SandboxUnavailable",
    "build_image",
    "get_sandbox",
    "sandbox_config",
]
