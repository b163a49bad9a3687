"""Local back end: which layers are active, the weaker fallbacks, limits, and concurrency."""

from __future__ import annotations

import concurrent.futures
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest

from rewardkit.sandbox import ExecResult, Sandbox, SandboxError, get_sandbox
from rewardkit.sandbox.local import LocalConfig, LocalSandbox, _uids_of_processes
from rewardkit.sandbox.runner import communicate

needs_root_bwrap = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("bwrap") is None, reason="needs root and bubblewrap (CI has both)"
)


def test_contract_types(local_sandbox):
    assert isinstance(local_sandbox, Sandbox)
    result = local_sandbox.run("import sys\nprint(sys.stdin.read()[::-1], end='')", stdin="abc")
    assert isinstance(result, ExecResult)
    assert (result.exit_code, result.stdout, result.timed_out, result.ok) == (0, "cba", False, True)
    assert 0 < result.wall_s < 5


def test_exit_codes_and_signals_are_reported(local_sandbox):
    assert local_sandbox.run("raise SystemExit(7)").exit_code == 7
    crashed = local_sandbox.run("import os, signal\nos.kill(os.getpid(), signal.SIGSEGV)")
    assert crashed.exit_code == -signal.SIGSEGV and not crashed.timed_out


def test_cpu_limit_counts_as_timeout():
    """A CPU-time rlimit kill (SIGXCPU) is a timeout, never a crash with a reward-able exit."""
    sandbox = get_sandbox("local")
    # Wall limit well past the CPU limit: only the rlimit can end this one.
    code = "import resource\nresource.setrlimit(resource.RLIMIT_CPU, (1, 2))\nwhile True:\n    pass\n"
    result = sandbox.run(code, timeout_s=10.0)
    assert result.timed_out and result.exit_code is None and result.wall_s < 5


@needs_root_bwrap
def test_all_protections_active_as_root_with_bwrap(local_sandbox):
    assert all(local_sandbox.protections().values()), local_sandbox.protections()
    result = local_sandbox.run("import os\nprint(os.getuid(), sorted(os.listdir('/')))")
    uid, listing = result.stdout.split(" ", 1)
    assert int(uid) in local_sandbox.slot_uids
    assert "root" not in listing and "etc" not in listing and "home" not in listing


@needs_root_bwrap
def test_each_concurrent_run_has_its_own_uid(local_sandbox):
    code = "import os, time\ntime.sleep(0.3)\nprint(os.getuid())"
    with concurrent.futures.ThreadPoolExecutor(6) as pool:
        uids = [r.stdout for r in pool.map(lambda _: local_sandbox.run(code), range(6))]
    assert len(set(uids)) == 6


@pytest.mark.parametrize("isolation", ["unshare", "none"])
def test_fallbacks_still_contain_processes_and_time(isolation):
    """Without bwrap: rlimits, uid sweeping and the session kill still hold; protections() says what is off."""
    if os.geteuid() != 0:
        pytest.skip("the fallbacks' process containment relies on per-slot uids, which needs root")
    sandbox = get_sandbox("local", isolation=isolation)
    assert not sandbox.protections()["filesystem"]
    assert sandbox.protections()["network"] is (isolation == "unshare")
    marker = "rewardkit-fallback-bg"
    code = (
        "import os\nif os.fork() == 0:\n    os.setsid()\n"
        f"    os.execvp('python3', ['python3', '-c', 'import time; time.sleep(300)', '{marker}'])\nprint('ok')\n"
    )
    assert sandbox.run(code).stdout == "ok\n"
    slots = set(sandbox.slot_uids)
    assert not [pid for pid, uid in _uids_of_processes() if uid in slots]
    bomb = "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass\n"
    started = time.monotonic()
    assert sandbox.run(bomb, timeout_s=1.0).timed_out
    assert time.monotonic() - started < 8
    assert not [pid for pid, uid in _uids_of_processes() if uid in slots]


def test_unknown_isolation_and_bad_options_are_rejected():
    with pytest.raises(ValueError, match="isolation"):
        LocalConfig(isolation="chroot")
    with pytest.raises(ValueError, match="command"):
        LocalConfig(command=("python3", "main.py"))
    with pytest.raises(ValueError, match="max_parallel"):
        LocalConfig(max_parallel=0)
    with pytest.raises(ValueError, match="timeout_s"):
        get_sandbox("local").run("pass", timeout_s=0)
    with pytest.raises(ValueError, match="unknown sandbox kind"):
        get_sandbox("firecracker")


def test_other_languages_through_the_command(tmp_path):
    """The run command is configurable: here a shell script instead of Python."""
    sandbox = LocalSandbox(command=("sh", "{file}"), filename="main.sh")
    result = sandbox.run('read x\necho "got $x"', stdin="7\n")
    assert result.stdout == "got 7\n", result


def test_communicate_returns_when_the_main_process_exits():
    """A background child holding the pipes open must not stretch a run to its timeout."""
    proc = subprocess.Popen(
        [sys.executable, "-c", "import subprocess, sys; subprocess.Popen(['sleep', '30']); print('done')"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    started = time.monotonic()
    out, err, timed_out, truncated = communicate(proc, b"", 20.0, 1 << 20)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert out == b"done\n" and not timed_out and not truncated
    assert time.monotonic() - started < 5


def test_close_stops_warm_slots():
    with get_sandbox("local") as sandbox:
        assert sandbox.run("print(1)").stdout == "1\n"
        slots = list(sandbox._runners.live())
        assert slots and all(slot.proc.poll() is None for slot in slots)
    assert all(slot.proc.poll() is not None for slot in slots)
    with pytest.raises(SandboxError, match="closed"):
        sandbox.run("print(1)")


def test_a_forked_worker_gets_its_own_slots():
    """Process pools fork: the child must not talk to the parent's warm slots or use its uids."""
    import multiprocessing

    with get_sandbox("local") as sandbox:
        parent_uid = sandbox.run("import os\nprint(os.getuid())").stdout
        _SHARED["sandbox"] = sandbox  # inherited by the forked worker, as an env's state would be
        with multiprocessing.get_context("fork").Pool(1) as pool:
            child_uid = pool.apply(_uid_in_sandbox)
        assert child_uid.strip().isdigit() and child_uid != parent_uid
        assert sandbox.run("import os\nprint(os.getuid())").stdout == parent_uid  # parent unharmed


_SHARED: dict = {}


def _uid_in_sandbox():
    return _SHARED["sandbox"].run("import os\nprint(os.getuid())").stdout
