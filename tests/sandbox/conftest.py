"""Fixtures for sandbox tests, and a guard so a failed containment cannot take the machine down.

The hostile tests run fork bombs and memory bombs for real. As root, the process-count rlimit does
not bind, so the whole test process is first moved into its own pids cgroup: if a sandbox ever let a
fork bomb out, the bomb would hit this cgroup's limit instead of exhausting the host's pid space.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from rewardkit.sandbox import SandboxError, get_sandbox

PIDS_ROOT = Path("/sys/fs/cgroup/pids")
GUARD_MAX_PIDS = 4096


def _current_pids_cgroup() -> Path | None:
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        if "pids" in controllers.split(","):
            return PIDS_ROOT / path.lstrip("/")
    return None


@pytest.fixture(scope="session", autouse=True)
def pids_guard():
    """Move this test process into a pids-limited cgroup (v1) for the session, then back."""
    parent = _current_pids_cgroup() if os.geteuid() == 0 and PIDS_ROOT.is_dir() else None
    if parent is None:
        print("pids guard inactive: needs root and a cgroup v1 pids controller")
        yield None
        return
    group = parent / f"rewardkit-tests-{os.getpid()}"
    group.mkdir(exist_ok=True)
    (group / "pids.max").write_text(str(GUARD_MAX_PIDS))
    (group / "cgroup.procs").write_text(str(os.getpid()))
    try:
        yield group
    finally:
        (parent / "cgroup.procs").write_text(str(os.getpid()))
        try:
            group.rmdir()
        except OSError:
            pass


def wait_until(predicate, timeout_s: float = 5.0, interval_s: float = 0.05) -> bool:
    """Poll ``predicate`` until it holds or ``timeout_s`` passes; its last value."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval_s)
    return predicate()


def docker_or_skip(**options):
    """A docker sandbox, or a skip that says why (a failure when CI demands docker)."""
    try:
        return get_sandbox("docker", **options)
    except SandboxError as exc:
        if os.environ.get("REWARDKIT_NO_SKIP") or os.environ.get("REWARDKIT_REQUIRE_DOCKER"):
            pytest.fail(f"REWARDKIT_NO_SKIP is set but the docker sandbox is unavailable: {exc}")
        pytest.skip(f"docker sandbox unavailable: {exc}")


@pytest.fixture(scope="session")
def local_sandbox():
    sandbox = get_sandbox("local")
    yield sandbox
    sandbox.close()


@pytest.fixture(scope="session")
def local_cold_sandbox():
    """The local back end building a fresh bubblewrap sandbox for every run (``warm=False``)."""
    sandbox = get_sandbox("local", warm=False)
    yield sandbox
    sandbox.close()


@pytest.fixture(scope="session")
def docker_sandbox():
    sandbox = docker_or_skip(pool_size=2)
    yield sandbox
    sandbox.close()


@pytest.fixture(params=["local", "local_cold", "docker"])
def sandbox(request):
    """Each hostile test runs against both back ends (the local one warm and cold)."""
    return request.getfixturevalue(f"{request.param}_sandbox")
