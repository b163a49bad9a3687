"""Hostile programs against both back ends: each must be contained in bounded time, leave nothing
behind, and leave the host healthy. These run real attacks; see conftest.py for the pids guard."""

from __future__ import annotations

import os
import secrets
import socket
import threading
import time

import pytest

from rewardkit.sandbox import runner
from rewardkit.sandbox.local import LocalSandbox, _uids_of_processes

from .conftest import wait_until


def leftovers(sandbox) -> list:
    """Processes a sandbox still runs for finished jobs (a docker runner itself does not count)."""
    if isinstance(sandbox, LocalSandbox):
        stray = []
        for pid, uid in _uids_of_processes():
            if uid in sandbox.slot_uids and not is_runner(f"/proc/{pid}/cmdline"):
                stray.append(pid)
        return stray
    stray = []
    for worker in sandbox._runners.live():
        for process in worker.container.top()["Processes"] or []:
            command = process[-1]
            if runner.BOOTSTRAP not in command:  # the runner and its template are not leftovers
                stray.append(command[:200])
    return stray


def is_runner(cmdline_path: str) -> bool:
    """A warm slot's own processes (wrappers, runner, template) carry the runner's bootstrap."""
    try:
        with open(cmdline_path, "rb") as f:
            return runner.BOOTSTRAP.encode() in f.read()
    except OSError:
        return False


def processes_with(marker: str) -> list[int]:
    """Host pids whose command line contains ``marker`` (container processes are visible here too)."""
    found = []
    for name in os.listdir("/proc"):
        if name.isdigit() and int(name) != os.getpid():
            try:
                with open(f"/proc/{name}/cmdline", "rb") as f:
                    if marker.encode() in f.read():
                        found.append(int(name))
            except OSError:
                continue
    return found


def assert_healthy(sandbox) -> None:
    """Nothing left running, and the sandbox still serves a trivial program quickly."""
    assert wait_until(lambda: not leftovers(sandbox)), f"leftover processes: {leftovers(sandbox)}"
    started = time.monotonic()
    result = sandbox.run("print(6 * 7)", timeout_s=10)
    assert result.stdout == "42\n" and result.exit_code == 0, result
    assert time.monotonic() - started < 5.0  # generous: CI machines are shared


def test_infinite_loop_times_out(sandbox):
    started = time.monotonic()
    result = sandbox.run("while True:\n    pass\n", timeout_s=1.0)
    assert result.timed_out and result.exit_code is None and not result.ok
    assert time.monotonic() - started < 4.0
    assert_healthy(sandbox)


def test_sleeping_program_times_out(sandbox):
    """Wall-clock, not only CPU time: a program blocked in sleep is stopped too."""
    result = sandbox.run("import time\ntime.sleep(60)\n", timeout_s=1.0)
    assert result.timed_out and result.wall_s < 3.0


def test_fork_bomb_is_contained(sandbox):
    bomb = "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass\n"
    started = time.monotonic()
    result = sandbox.run(bomb, timeout_s=2.0)
    assert result.timed_out
    assert time.monotonic() - started < 10.0
    assert_healthy(sandbox)


def test_fork_bomb_cannot_exceed_process_limit(sandbox):
    code = (
        "import os, time\nn = 0\nfor _ in range(5000):\n    try:\n        pid = os.fork()\n"
        "    except OSError:\n        break\n    if pid == 0:\n        time.sleep(30)\n        os._exit(0)\n"
        "    n += 1\nprint(n)\n"
    )
    result = sandbox.run(code, timeout_s=10.0)
    assert result.exit_code == 0, result
    assert 0 < int(result.stdout) < 300  # the pids limit stopped it long before 5000
    assert_healthy(sandbox)


@pytest.mark.parametrize(
    "bomb",
    [
        "x = bytearray(4 << 30)\n",
        "chunks = []\nwhile True:\n    chunks.append(bytearray(32 << 20))\n",
    ],
    ids=["one-big-allocation", "growing"],
)
def test_memory_bomb_fails_within_the_limit(sandbox, bomb):
    started = time.monotonic()
    result = sandbox.run(bomb, timeout_s=10.0, memory_mb=256)
    assert result.exit_code not in (0, None), result
    assert "MemoryError" in result.stderr or result.exit_code < 0
    assert time.monotonic() - started < 10.0
    assert_healthy(sandbox)


@pytest.mark.parametrize("fd", [1, 2], ids=["stdout", "stderr"])
def test_gigabytes_of_output_are_capped(sandbox, fd):
    flood = f"import os\nblock = b'x' * (1 << 20)\nwhile True:\n    os.write({fd}, block)\n"
    started = time.monotonic()
    result = sandbox.run(flood, timeout_s=20.0)
    captured = result.stdout if fd == 1 else result.stderr
    assert result.truncated and result.exit_code is None and not result.ok
    assert len(captured) == sandbox.config.max_output_bytes
    assert time.monotonic() - started < 5.0  # stopped at the cap, long before the timeout
    assert_healthy(sandbox)


def test_host_environment_secret_is_not_visible(sandbox, monkeypatch):
    secret = f"sk-{secrets.token_hex(16)}"
    monkeypatch.setenv("REWARDKIT_TEST_API_KEY", secret)
    code = (
        "import os\nprint(dict(os.environ))\n"
        f"for pid in ('self', '1', str(os.getppid()), '{os.getpid()}'):\n"
        "    try:\n        print(open(f'/proc/{pid}/environ', 'rb').read())\n"
        "    except OSError as exc:\n        print('denied', pid, exc)\n"
    )
    result = sandbox.run(code, timeout_s=10.0)
    assert result.exit_code == 0, result
    assert secret not in result.stdout + result.stderr
    assert "REWARDKIT_TEST_API_KEY" not in result.stdout


def test_host_file_secret_is_not_readable(sandbox, tmp_path):
    secret = f"secret-{secrets.token_hex(16)}"
    target = tmp_path / "credentials.txt"
    target.write_text(secret)
    for path in (target, *target.parents):  # readable by anyone: only isolation can hide it
        if path == tmp_path.parent.parent:
            break
        os.chmod(path, 0o755 if path.is_dir() else 0o644)
    code = (
        f"try:\n    print(open({str(target)!r}).read())\nexcept OSError as exc:\n    print('blocked', exc)\n"
    )
    result = sandbox.run(code, timeout_s=10.0)
    assert secret not in result.stdout + result.stderr
    assert "blocked" in result.stdout


def test_writes_outside_the_work_dir_do_not_reach_the_host(sandbox, tmp_path):
    name = f"rewardkit-escape-{secrets.token_hex(6)}"
    shared = tmp_path / "shared"
    shared.mkdir()
    os.chmod(shared, 0o777)
    os.chmod(tmp_path, 0o755)
    targets = [f"/tmp/{name}", f"/{name}", f"/usr/{name}", f"/etc/{name}", str(shared / name)]
    code = (
        f"for path in {targets!r}:\n"
        "    try:\n        open(path, 'w').write('escaped')\n        print('wrote', path)\n"
        "    except OSError as exc:\n        print('blocked', path, exc.errno)\n"
    )
    result = sandbox.run(code, timeout_s=10.0)
    assert result.exit_code == 0, result
    for path in targets:
        assert not os.path.exists(path), f"sandboxed program created {path} on the host"


def test_scratch_files_do_not_survive_into_the_next_job(sandbox):
    name = f"trace-{secrets.token_hex(6)}"
    plant = f"import os\nfor d in ('.', '/tmp', '/dev/shm'):\n    try:\n        open(os.path.join(d, {name!r}), 'w').write('x')\n    except OSError:\n        pass\n"
    probe = f"import os\nprint([d for d in ('.', '/tmp', '/dev/shm') if os.path.exists(os.path.join(d, {name!r}))])\n"
    for _ in range(4):  # more jobs than containers, so every container is probed after a plant
        sandbox.run(plant, timeout_s=10.0)
        result = sandbox.run(probe, timeout_s=10.0)
        assert result.stdout == "[]\n", result


@pytest.fixture
def loopback_server():
    """A TCP server on the host's loopback and one on an abstract unix socket, counting connections."""
    accepted = []
    tcp = socket.create_server(("127.0.0.1", 0))
    unix = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    abstract = f"\0rewardkit-test-{secrets.token_hex(6)}"
    unix.bind(abstract)
    unix.listen()
    stop = threading.Event()

    def serve(server):
        server.settimeout(0.1)
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except OSError:
                continue
            accepted.append(conn)

    threads = [threading.Thread(target=serve, args=(s,), daemon=True) for s in (tcp, unix)]
    for thread in threads:
        thread.start()
    yield tcp.getsockname()[1], abstract, accepted
    stop.set()
    for thread in threads:
        thread.join()
    tcp.close()
    unix.close()


def test_host_loopback_servers_are_unreachable(sandbox, loopback_server):
    port, abstract, accepted = loopback_server
    code = (
        "import socket\n"
        f"for host in ('127.0.0.1', 'localhost', '172.17.0.1'):\n"
        "    try:\n"
        f"        socket.create_connection((host, {port}), timeout=1)\n"
        "        print('connected', host)\n"
        "    except OSError as exc:\n        print('blocked', host, exc)\n"
        "s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)\n"
        f"try:\n    s.connect({abstract!r})\n    print('connected unix')\n"
        "except OSError as exc:\n    print('blocked unix', exc)\n"
    )
    result = sandbox.run(code, timeout_s=10.0)
    assert "connected" not in result.stdout, result.stdout
    time.sleep(0.2)
    assert accepted == []


@pytest.mark.parametrize("detach", ["popen", "double-fork"])
def test_background_process_is_not_left_behind(sandbox, detach):
    marker = f"rewardkit-bg-{secrets.token_hex(6)}"
    sleeper = f"['python3', '-c', 'import time; time.sleep(300)', {marker!r}]"
    if detach == "popen":
        code = f"import subprocess\nsubprocess.Popen({sleeper}, start_new_session=True)\nprint('left')\n"
    else:
        code = (
            "import os\nif os.fork() == 0:\n    os.setsid()\n    if os.fork() == 0:\n"
            f"        os.execvp('python3', {sleeper})\n    os._exit(0)\nprint('left')\n"
        )
    started = time.monotonic()
    result = sandbox.run(code, timeout_s=10.0)
    assert result.exit_code == 0 and result.stdout == "left\n", result
    assert time.monotonic() - started < 3.0  # the job ended with its main process, not at the timeout
    assert wait_until(lambda: not processes_with(marker)), (
        f"background process survived: {processes_with(marker)}"
    )
    assert_healthy(sandbox)


def test_killing_the_parent_does_not_break_the_sandbox(sandbox):
    code = (
        "import os, signal\n"
        "for target in (os.getppid(), 1, -1):\n"
        "    try:\n        os.kill(target, signal.SIGKILL)\n    except OSError as exc:\n        print('denied', target, exc)\n"
        "print('still here')\n"
    )
    result = sandbox.run(code, timeout_s=10.0)  # whatever it reports, it must report
    assert result.exit_code != 0 or "still here" in result.stdout
    assert_healthy(sandbox)


def test_filling_the_disk_is_bounded(sandbox):
    code = (
        "import os\nwritten = 0\nblock = b'x' * (1 << 20)\n"
        "for place in ('.', '/tmp', '/dev/shm'):\n"
        "    for i in range(100000):\n"
        "        try:\n"
        "            with open(os.path.join(place, f'fill-{i}'), 'wb') as f:\n"
        "                for _ in range(8):\n                    f.write(block)\n"
        "            written += 8\n"
        "        except OSError:\n            break\n"
        "print(written)\n"
    )
    started = time.monotonic()
    result = sandbox.run(code, timeout_s=30.0)
    assert result.exit_code == 0, result
    assert int(result.stdout) <= 3 * 64 + 24  # three scratch places of at most 64 MiB each
    assert time.monotonic() - started < 20.0
    assert_healthy(sandbox)


def test_stdin_flood_and_ignored_stdin(sandbox):
    """A program that never reads stdin must not deadlock the host writing it."""
    result = sandbox.run("print('ignored')", stdin="y\n" * (4 << 20), timeout_s=10.0)
    assert result.exit_code == 0 and result.stdout == "ignored\n", result
    echo = sandbox.run("import sys\nprint(len(sys.stdin.read()))", stdin="z" * (600 << 10), timeout_s=10.0)
    assert echo.stdout == f"{600 << 10}\n"


def test_undecodable_text_is_the_programs_failure_not_the_sandboxs(sandbox):
    result = sandbox.run("x = '\udcff'\nprint(x)", stdin="\udcff", timeout_s=10.0)
    assert result.exit_code not in (0, None), result
    assert sandbox.run("import sys\nprint(len(sys.stdin.buffer.read()))", stdin="a\udcffb").stdout == "5\n"


def test_signals_to_pid_1_do_not_stop_the_runner(sandbox):
    """Inside a container or warm slot the runner is PID 1: no signal a job may send ends it."""
    code = (
        "import os, signal, time\n"
        "for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1, signal.SIGKILL):\n"
        "    try:\n        os.kill(1, sig)\n    except OSError:\n        pass\n"
        "time.sleep(0.3)\nprint('still here')\n"
    )
    result = sandbox.run(code, timeout_s=10.0)
    assert (result.exit_code, result.stdout) == (0, "still here\n"), result
    assert_healthy(sandbox)
