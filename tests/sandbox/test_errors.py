"""Every failure of a back end is a SandboxError, of the subclass that says what went wrong."""

from __future__ import annotations

import shutil

import pytest

from rewardkit.sandbox import (
    RunnerLost,
    SandboxError,
    SandboxLimitError,
    SandboxUnavailable,
    get_sandbox,
    warm,
)

from .conftest import docker_or_skip


def test_the_error_classes_are_sandbox_errors():
    for cls in (SandboxUnavailable, SandboxLimitError, RunnerLost):
        assert issubclass(cls, SandboxError)
    assert issubclass(SandboxLimitError, ValueError)  # what check_limits always raised
    assert issubclass(SandboxError, RuntimeError)


@pytest.fixture(params=["local", "docker"])
def any_sandbox(request):
    return request.getfixturevalue(f"{request.param}_sandbox")


@pytest.mark.parametrize(
    "limits, named",
    [({"timeout_s": 0}, "timeout_s"), ({"timeout_s": -1.0}, "timeout_s"), ({"memory_mb": 8}, "memory_mb")],
)
def test_bad_limits_are_a_sandbox_limit_error_and_a_value_error(any_sandbox, limits, named):
    with pytest.raises(SandboxLimitError, match=named) as raised:
        any_sandbox.run("print(1)", **limits)
    assert isinstance(raised.value, SandboxError) and isinstance(raised.value, ValueError)
    assert any_sandbox.run("print(1)").stdout == "1\n"  # the sandbox is unharmed


@pytest.mark.parametrize("kind", ["local", "local_cold", "docker"])
def test_a_closed_sandbox_raises_sandbox_error(kind):
    if kind == "docker":
        sandbox = docker_or_skip(pool_size=1)
    else:
        sandbox = get_sandbox("local", warm=kind == "local")
    assert sandbox.run("print(1)").stdout == "1\n"
    sandbox.close()
    with pytest.raises(SandboxError, match="closed"):
        sandbox.run("print(1)")


def test_a_missing_docker_image_is_sandbox_unavailable():
    docker_or_skip(pool_size=1).close()  # the engine is there
    with pytest.raises(SandboxUnavailable, match="build-image"):
        get_sandbox("docker", image="rewardkit-no-such-image:0", pool_size=1)


def which_without(*missing: str):
    real = shutil.which

    def which(name, *args, **kwargs):
        return None if name in missing else real(name, *args, **kwargs)

    return which


def test_missing_prlimit_is_sandbox_unavailable(monkeypatch):
    monkeypatch.setattr(shutil, "which", which_without("prlimit"))
    with pytest.raises(SandboxUnavailable, match="prlimit"):
        get_sandbox("local")


def test_a_requested_isolation_that_does_not_work_is_sandbox_unavailable(monkeypatch):
    monkeypatch.setattr(shutil, "which", which_without("bwrap"))
    with pytest.raises(SandboxUnavailable, match="isolation 'bwrap'") as raised:
        get_sandbox("local", isolation="bwrap")
    assert isinstance(raised.value, RuntimeError)  # what it raised before it was a SandboxError


def test_a_missing_program_is_sandbox_unavailable():
    with pytest.raises(SandboxUnavailable, match="not found"):
        get_sandbox("local", command=("rewardkit-no-such-interpreter", "{file}"))


def warm_local_or_skip():
    sandbox = get_sandbox("local")
    if not sandbox._warm:
        sandbox.close()
        pytest.skip("warm slots need bubblewrap")
    return sandbox


def test_a_slot_that_never_reports_ready_is_sandbox_unavailable(monkeypatch):
    with warm_local_or_skip() as sandbox:
        monkeypatch.setattr(warm, "runner_argv", lambda python: [python, "-c", "pass"])
        with pytest.raises(SandboxUnavailable, match="could not start a local sandbox slot"):
            sandbox.run("print(1)")


def test_a_slot_lost_on_every_job_is_runner_lost(monkeypatch):
    ready_then_exit = "print('{\"ready\": true}', flush=True)"
    with warm_local_or_skip() as sandbox:
        monkeypatch.setattr(warm, "runner_argv", lambda python: [python, "-c", ready_then_exit])
        with pytest.raises(RunnerLost, match="local sandbox slot lost twice") as lost:
            sandbox.run("print(1)")
        assert not lost.value.hung
        monkeypatch.undo()
        assert sandbox.run("print(2)").stdout == "2\n"  # the lost slots are gone; a fresh one serves
