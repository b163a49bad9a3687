"""Runs one untrusted program as a child process with limits, and serves jobs inside a container.

This file is standard library only and must stay that way: the docker back end sends its source
verbatim into each container (``python3 -c``), where rewardkit is not installed. The local back end
imports ``communicate`` and ``outcome`` from it so both back ends cap output and time the same way.

Protocol (container mode): the host writes one JSON object per line on the runner's stdin
(``{"code", "stdin", "timeout_s", "memory_mb", "max_output_bytes", "argv", "filename"}``); the runner
answers one JSON line on stdout (``{"exit_code", "stdout", "stderr", "timed_out", "truncated",
"wall_s", "clean"}``). The first line it writes is ``{"ready": true}``. End of input ends the runner,
which ends the container: that is how a container outlives no host process that owned it.
"""

from __future__ import annotations

import json
import os
import resource
import selectors
import shutil
import signal
import subprocess
import sys
import tempfile
import time

CHUNK = 1 << 16
SANDBOX_ENV = {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8", "PYTHONDONTWRITEBYTECODE": "1"}


def communicate(proc, stdin, timeout_s, max_output):
    """Feed ``stdin`` and collect output until the process exits, the deadline passes or output overflows.

    Returns ``(stdout, stderr, timed_out, truncated)``. The main process exiting ends the run even if a
    background child still holds the pipes open, so leftover processes cannot stretch a run to its
    timeout. Output beyond ``max_output`` bytes per stream stops the run (it is almost surely runaway).
    """
    sel = selectors.DefaultSelector()
    out_fd, err_fd = proc.stdout.fileno(), proc.stderr.fileno()
    bufs = {out_fd: bytearray(), err_fd: bytearray()}
    for fd in bufs:
        os.set_blocking(fd, False)
        sel.register(fd, selectors.EVENT_READ)
    pending = memoryview(stdin)
    if pending:
        os.set_blocking(proc.stdin.fileno(), False)
        sel.register(proc.stdin.fileno(), selectors.EVENT_WRITE)
    else:
        proc.stdin.close()
    exit_fd = _exit_fd(proc)
    if exit_fd is not None:
        sel.register(exit_fd, selectors.EVENT_READ)
    deadline = time.monotonic() + timeout_s
    timed_out = truncated = exited = False
    try:
        while not (exited or truncated):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                timed_out = proc.poll() is None
                break
            # Without a pidfd we poll for exit every 20 ms.
            events = sel.select(remaining if exit_fd is not None else min(remaining, 0.02))
            for key, _ in events:
                fd = key.fd
                if fd == exit_fd:
                    exited = True
                elif fd in bufs:
                    truncated |= _read_into(sel, fd, bufs[fd], max_output)
                else:
                    pending = _write_some(sel, proc, pending)
            if exit_fd is None and proc.poll() is not None:
                exited = True
        if exited:
            for fd, buf in bufs.items():  # what the process wrote just before exiting
                truncated |= _drain(fd, buf, max_output)
    finally:
        sel.close()
        if exit_fd is not None:
            os.close(exit_fd)
        for stream in (proc.stdin, proc.stdout, proc.stderr):
            _close_quietly(stream)
    return bytes(bufs[out_fd]), bytes(bufs[err_fd]), timed_out, truncated


def _exit_fd(proc):
    try:
        return os.pidfd_open(proc.pid)
    except (AttributeError, OSError):
        return None


def _read_into(sel, fd, buf, max_output):
    try:
        data = os.read(fd, CHUNK)
    except BlockingIOError:
        return False
    if not data:
        sel.unregister(fd)
        return False
    buf += data
    if len(buf) > max_output:
        del buf[max_output:]
        return True
    return False


def _drain(fd, buf, max_output):
    while len(buf) <= max_output:
        try:
            data = os.read(fd, CHUNK)
        except (BlockingIOError, OSError):
            return False
        if not data:
            return False
        buf += data
    del buf[max_output:]
    return True


def _write_some(sel, proc, pending):
    try:
        written = os.write(proc.stdin.fileno(), pending[:CHUNK])
    except BlockingIOError:
        return pending
    except (BrokenPipeError, OSError):
        written = len(pending)
    pending = pending[written:]
    if not pending:
        sel.unregister(proc.stdin.fileno())
        _close_quietly(proc.stdin)
    return pending


def _close_quietly(stream):
    try:
        stream.close()
    except OSError:
        pass


def outcome(proc, timed_out, truncated):
    """``(exit_code, timed_out)``: exit code None when the run was stopped (timeout, output overflow).

    Hitting the CPU-time rlimit (SIGXCPU) is a timeout too, never a plain crash.
    """
    timed_out = timed_out or proc.returncode == -signal.SIGXCPU
    if timed_out or truncated:
        return None, timed_out
    return proc.returncode, False


def kill_group(proc):
    """SIGKILL the child's process group (it leads its own session) and reap the child."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    proc.wait()


def limit_setter(timeout_s, memory_mb, fsize_mb, nofile):
    """Return a pre-exec hook that sets rlimits in the child (safe here: the runner is single-threaded)."""

    def apply():
        cpu = int(timeout_s) + 1
        resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))
        if memory_mb:
            size = int(memory_mb) << 20
            resource.setrlimit(resource.RLIMIT_AS, (size, size))
        resource.setrlimit(resource.RLIMIT_FSIZE, (fsize_mb << 20, fsize_mb << 20))
        resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile))
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))

    return apply


def run_job(job, scratch):
    """Run one job in a fresh directory under ``scratch``; return the answer dict."""
    workdir = tempfile.mkdtemp(prefix="job-", dir=scratch)
    path = os.path.join(workdir, job.get("filename", "main.py"))
    with open(path, "w", encoding="utf-8") as f:
        f.write(job["code"])
    argv = [arg.replace("{file}", path) for arg in job.get("argv", ["python3", "{file}"])]
    started = time.monotonic()
    proc = subprocess.Popen(
        argv,
        cwd=workdir,
        env=dict(SANDBOX_ENV, HOME=workdir, TMPDIR=workdir),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
        preexec_fn=limit_setter(job["timeout_s"], job.get("memory_mb"), job.get("fsize_mb", 16), 64),
    )
    out, err, timed_out, truncated = communicate(
        proc, job.get("stdin", "").encode(), job["timeout_s"], job["max_output_bytes"]
    )
    kill_group(proc)
    wall = time.monotonic() - started
    exit_code, timed_out = outcome(proc, timed_out, truncated)
    return {
        "exit_code": exit_code,
        "stdout": out.decode("utf-8", "replace"),
        "stderr": err.decode("utf-8", "replace"),
        "timed_out": timed_out,
        "truncated": truncated,
        "wall_s": wall,
        "clean": True,
    }


def _sweep(scratch):
    """Kill every process but this one and empty the writable places, so no job sees another's traces.

    Only valid as PID 1 of a container: kill(-1) reaches every process this user may signal.
    """
    try:
        os.kill(-1, signal.SIGKILL)
    except ProcessLookupError:
        pass
    while True:
        try:
            os.waitpid(-1, 0)
        except ChildProcessError:
            break
    clean = True
    for place in (scratch, "/dev/shm"):
        for name in _listdir(place):
            target = os.path.join(place, name)
            if os.path.isdir(target) and not os.path.islink(target):
                shutil.rmtree(target, ignore_errors=True)
            else:
                try:
                    os.unlink(target)
                except OSError:
                    pass
            clean &= not os.path.lexists(target)
    return clean


def _listdir(place):
    try:
        return os.listdir(place)
    except OSError:
        return []


def _make_undumpable():
    """Make /proc/1/* root-owned so a job (same uid) cannot reach the runner's pipes or memory."""
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    pr_set_dumpable = 4
    if libc.prctl(pr_set_dumpable, 0, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_DUMPABLE) failed")


def serve(scratch="/tmp"):
    """Container main loop: one JSON job per input line, one JSON answer per output line."""
    if os.getpid() != 1:
        raise SystemExit("runner.serve must be PID 1 of its container (it kills every other process)")
    _make_undumpable()
    out = sys.stdout
    out.write(json.dumps({"ready": True}) + "\n")
    out.flush()
    for line in sys.stdin:
        try:
            answer = run_job(json.loads(line), scratch)
        except Exception as exc:  # a broken job must not take the runner down
            answer = {"error": f"{type(exc).__name__}: {exc}"}
        answer["clean"] = _sweep(scratch) and answer.get("clean", True)
        out.write(json.dumps(answer) + "\n")
        out.flush()


if __name__ == "__main__":
    serve()
