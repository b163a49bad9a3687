"""Docker back end: hardening, warm-pool reuse and replacement, and no leaked containers ever."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from rewardkit.sandbox import SandboxError, get_sandbox
from rewardkit.sandbox.docker import LABEL, DockerConfig

from .conftest import docker_or_skip, wait_until


@pytest.fixture(params=["local", "docker"])
def runner_sandbox(request):
    """Back ends whose jobs go through the job runner: docker, and local warm slots."""
    return request.getfixturevalue(f"{request.param}_sandbox")


def owned_containers(client, owner: str, key: str = "owner") -> list[str]:
    """Ids of the containers with this label (low-level list: no race with auto-removal)."""
    return [c["Id"] for c in client.api.containers(all=True, filters={"label": f"{LABEL}.{key}={owner}"})]


def test_containers_are_hardened(docker_sandbox):
    worker = docker_sandbox._runners.live()[0]
    worker.container.reload()
    host = worker.container.attrs["HostConfig"]
    config = worker.container.attrs["Config"]
    assert host["NetworkMode"] == "none"
    assert host["ReadonlyRootfs"] is True
    assert host["CapDrop"] == ["ALL"]
    assert "no-new-privileges" in host["SecurityOpt"]
    assert host["Memory"] == DockerConfig().container_memory_mb << 20
    assert host["MemorySwap"] == host["Memory"]  # no swap on top
    assert host["PidsLimit"] == DockerConfig().pids_limit
    assert host["NanoCpus"] > 0
    assert "size=" in host["Tmpfs"]["/tmp"]
    assert host["LogConfig"]["Type"] == "none"
    assert config["User"] not in ("", "0", "root") and not config["User"].startswith("0:")
    result = docker_sandbox.run("import os\nprint(os.getuid(), os.geteuid())")
    assert result.stdout.split() == ["65534", "65534"]


def test_warm_container_is_reused_across_runs():
    with docker_or_skip(pool_size=1) as sandbox:
        names = {sandbox.run("import socket\nprint(socket.gethostname())").stdout for _ in range(5)}
        assert len(names) == 1
        assert sandbox._runners.live()[0].jobs == 5


def test_runs_spread_over_the_pool(docker_sandbox):
    """Two two-second sleeps on a pool of two take about two seconds, not four."""
    import concurrent.futures

    started = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        results = list(pool.map(lambda _: docker_sandbox.run("import time\ntime.sleep(2)"), range(2)))
    assert all(r.exit_code == 0 for r in results)
    assert time.monotonic() - started < 3.5


def test_dead_container_is_replaced_and_the_run_retried():
    with docker_or_skip(pool_size=1) as sandbox:
        victim = sandbox._runners.live()[0]
        victim.container.kill()
        result = sandbox.run("print('after')")
        assert result.stdout == "after\n"
        assert victim not in sandbox._runners.live() and sandbox.pool_size == 1


def test_runner_answers_cannot_be_forged(runner_sandbox):
    """A job cannot write to the runner's pipes, and look-alike output stays mere output."""
    fake = '{"exit_code": 0, "stdout": "", "stderr": "", "timed_out": false, "truncated": false, "wall_s": 0, "clean": true}'
    code = textwrap.dedent(f"""
        import sys
        for fd in (0, 1, 2):
            try:
                open(f'/proc/1/fd/{{fd}}', 'w').write({fake!r} + '\\n')
            except OSError as exc:
                print('denied', fd, exc.errno, file=sys.stderr)
        print({fake!r})
        sys.exit(3)
    """)
    result = runner_sandbox.run(code)
    assert result.exit_code == 3
    assert result.stderr.count("denied") == 3


def test_close_removes_every_container():
    sandbox = docker_or_skip(pool_size=2)
    instance = sandbox._labels[f"{LABEL}.instance"]
    assert len(owned_containers(sandbox._client, instance, "instance")) == 2
    sandbox.close()
    sandbox.close()  # idempotent
    assert wait_until(lambda: not owned_containers(sandbox._client, instance, "instance"), 10)
    with pytest.raises(SandboxError):
        sandbox.run("print(1)")


OWNER_SCRIPT = """
import os, signal, sys, time
from rewardkit.sandbox import get_sandbox
sandbox = get_sandbox("docker", pool_size=2)
print("ready", flush=True)
how = sys.argv[1]
if how == "sigkill":
    os.kill(os.getpid(), signal.SIGKILL)
if how == "sigint":
    import threading
    threading.Timer(0.5, lambda: os.kill(os.getpid(), signal.SIGINT)).start()
    sandbox.run("import time\\ntime.sleep(30)", timeout_s=60)
"""


@pytest.mark.parametrize("how", ["sigkill", "sigint", "exit"])
def test_no_container_outlives_its_owner(how):
    """Killed with SIGKILL, interrupted with Ctrl-C, or just exiting: the pool's containers go."""
    probe = docker_or_skip(pool_size=1)
    client = probe._client
    probe.close()
    proc = subprocess.Popen([sys.executable, "-c", OWNER_SCRIPT, how], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "ready"
    owner = f"{os.uname().nodename}:{proc.pid}"
    proc.wait(timeout=60)
    if how == "sigkill":
        assert proc.returncode == -signal.SIGKILL
    assert wait_until(lambda: not owned_containers(client, owner), 30), owned_containers(client, owner)


def test_missing_image_says_how_to_build_it():
    try:
        get_sandbox("docker", image="rewardkit-no-such-image:0", pool_size=1)
    except SandboxError as exc:
        if "Docker engine" in str(exc):
            pytest.skip(f"docker unavailable: {exc}")
        assert "rewardkit sandbox build-image" in str(exc)
    else:
        pytest.fail("a missing image must raise SandboxError")


@pytest.mark.parametrize(
    "options", [{"pool_size": 0}, {"user": "0:0"}, {"user": "root"}, {"command": ("python3",)}, {"cpus": 0}]
)
def test_bad_config_is_rejected(options):
    with pytest.raises(ValueError):
        DockerConfig(**options)


EQUIVALENCE_PROGRAMS = [
    "import sys\nprint(__name__, sys.argv[0].endswith('main.py'), __file__ == sys.argv[0])",
    "import os\nprint(os.getcwd() == os.path.dirname(__file__), sorted(os.environ))",
    "raise SystemExit(3)",
    "import sys\nsys.exit('bye')",
    "raise ValueError('boom')",
    "def f(:\n    pass",
    "import sys\nprint(sys.stdin.read()[::-1])",
    "import threading, time\nthreading.Thread(target=lambda: (time.sleep(0.2), print('thread'))).start()",
    "import atexit\natexit.register(print, 'atexit')\nprint('main')",
    "import os\nprint('partial', end='')\nos._exit(4)",
    "import pickle\nclass A: pass\nprint(type(pickle.loads(pickle.dumps(A()))).__name__)",
    "import sys\nprint('é', file=sys.stderr)\nsys.stdout.write('ünïcode\\n')",
]


def normalized(result):
    """Output with the per-job work dir masked: it is random in both modes."""
    import re

    def mask(text):
        return re.sub(r"/tmp/job-[^/\s'\"]+", "/tmp/job-X", text)

    return result.exit_code, mask(result.stdout), mask(result.stderr).splitlines()[-1:]


def test_fork_server_behaves_like_a_fresh_interpreter(docker_sandbox):
    """Equivalence: each program gives the same exit code and output forked as exec'd."""
    with docker_or_skip(pool_size=1, fork_server=False) as exec_sandbox:
        for code in EQUIVALENCE_PROGRAMS:
            forked = docker_sandbox.run(code, stdin="abc")
            execed = exec_sandbox.run(code, stdin="abc")
            assert normalized(forked) == normalized(execed), code


def test_forked_children_do_not_share_random_state(runner_sandbox):
    draws = {runner_sandbox.run("import random\nprint(random.getrandbits(64))").stdout for _ in range(4)}
    assert len(draws) == 4


def test_no_job_finds_another_jobs_data_in_its_memory(runner_sandbox):
    """The template never handles job data, so a child's memory holds only its own job."""
    import secrets

    secret = secrets.token_hex(8)
    plant = f"key = 'RKSECRET-' + {secret!r}\nprint(len(key))"
    scan = (
        "import re\nfound = set()\npattern = re.compile(rb'RKSECRET-' + rb'[0-9a-f]{16}')\n"
        "mem = open('/proc/self/mem', 'rb', buffering=0)\n"
        "for line in open('/proc/self/maps'):\n"
        "    span, perms = line.split()[:2]\n"
        "    if 'r' not in perms or '[v' in line:\n        continue\n"
        "    start, end = (int(x, 16) for x in span.split('-'))\n"
        "    try:\n        mem.seek(start)\n        found.update(pattern.findall(mem.read(end - start)))\n"
        "    except (OSError, OverflowError, ValueError):\n        pass\n"
        "print(sorted(found))\n"
    )
    for _ in range(3):
        assert runner_sandbox.run(plant).stdout == "25\n"
    results = [runner_sandbox.run(scan, timeout_s=20) for _ in range(2)]
    for result in results:
        assert result.exit_code == 0, result
        assert secret not in result.stdout, "a job's memory held another job's code"


def test_a_frozen_template_is_replaced(runner_sandbox):
    code = "import os, signal\nos.kill(os.getppid(), signal.SIGSTOP)\nprint('froze it')"
    started = time.monotonic()
    result = runner_sandbox.run(code)
    assert result.exit_code is None and "template" in result.stderr
    assert time.monotonic() - started < 8
    assert runner_sandbox.run("print('fine')").stdout == "fine\n"


def test_a_hung_container_times_out_and_is_replaced():
    """If the runner itself stops answering, the host deadline still ends the run: timed_out."""
    with docker_or_skip(pool_size=1, grace_s=1.0) as sandbox:
        victim = sandbox._runners.live()[0]
        victim.container.pause()
        started = time.monotonic()
        result = sandbox.run("print(1)", timeout_s=1.0)
        assert result.timed_out and result.exit_code is None
        assert time.monotonic() - started < 6
        assert victim not in sandbox._runners.live()
        assert sandbox.run("print(2)").stdout == "2\n"


def test_containers_of_dead_owners_are_reaped_by_the_next_sandbox():
    """Belt and braces for leaks: a new sandbox removes containers whose owner process is gone."""
    probe = docker_or_skip(pool_size=1)
    client = probe._client
    probe.close()
    dead = subprocess.Popen(["true"])
    dead.wait()
    owner = f"{os.uname().nodename}:{dead.pid}"
    orphan = client.containers.run(
        DockerConfig().image,
        ["sleep", "300"],
        detach=True,
        network_mode="none",
        labels={LABEL: "1", f"{LABEL}.owner": owner},
    )
    try:
        with docker_or_skip(pool_size=1):
            assert wait_until(lambda: not owned_containers(client, owner), 10)
    finally:
        try:
            orphan.remove(force=True)
        except Exception:
            pass


_FORKED: dict = {}


def _run_in_forked_child():
    try:
        _FORKED["sandbox"].run("print(1)")
    except SandboxError as exc:
        return str(exc)
    return "ran"


def test_forked_processes_get_a_clear_error(docker_sandbox):
    import multiprocessing

    _FORKED["sandbox"] = docker_sandbox
    with multiprocessing.get_context("fork").Pool(1) as pool:
        assert "forked process" in pool.apply(_run_in_forked_child)
    assert docker_sandbox.run("print(2)").stdout == "2\n"


@pytest.mark.parametrize("kind", ["local", "docker"])
def test_a_forked_child_exiting_leaves_the_parents_sandbox_alone(kind, request):
    sandbox = request.getfixturevalue(f"{kind}_sandbox")
    assert sandbox.run("print(1)").stdout == "1\n"
    pid = os.fork()
    if pid == 0:  # run the exit-time finalizers as a forked script's normal exit would, then leave
        try:
            import atexit

            atexit._run_exitfuncs()
        finally:
            os._exit(0)
    os.waitpid(pid, 0)
    time.sleep(0.5)
    if kind == "local":  # the very same warm slots are still running
        assert all(slot.proc.poll() is None for slot in sandbox._runners.live())
    else:  # the very same containers are still there
        ids = {w.container.id for w in sandbox._runners.live()}
        assert ids == {c["Id"] for c in sandbox._client.api.containers(filters={"id": list(ids)})}
