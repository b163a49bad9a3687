"""Runs one untrusted program as a child process with limits, and serves jobs inside a container.

This file is standard library only and must stay that way: the docker back end sends its source
verbatim into each container, where rewardkit is not installed. The local back end imports
``communicate``, ``outcome`` and ``kill_group`` so both back ends cap output and time the same way;
the host side of the protocol below is rewardkit/sandbox/warm.py (which imports this file, never
the other way round).

Container protocol: the host writes one JSON object per line on the runner's stdin
(``{"code", "stdin", "timeout_s", "memory_mb", "max_output_bytes", "argv", "filename"}``, plus ``fork``
or ``fsize_mb`` where a back end sets them); the runner answers one JSON line (``{"exit_code",
"stdout", "stderr", "timed_out", "truncated", "wall_s", "clean"}``). Its first line is
``{"ready": true}``. End of input ends the runner, which ends the
container: that is how no container outlives the host process that owned it.

Inside the container three kinds of process exist:
  * the runner (PID 1): speaks the protocol, enforces limits, sweeps up after every job. PID 1 cannot
    be killed from inside its namespace and it is made non-dumpable, so jobs can neither kill it nor
    reach its pipes through /proc.
  * the template: a Python interpreter started once, which never sees a job's code, input or tests.
    For each Python job it forks a fresh child. Forking an initialised interpreter skips the ~10-20 ms
    of interpreter start-up that dominates small test programs, and starting from a clean template
    (not from the runner) means no job can find another job's data in its memory.
  * the job's child: a new session, its own rlimits and work dir; it runs the program as ``__main__``.
Programs for other commands (other languages) are exec'd directly instead.
"""

from __future__ import annotations

import json
import os
import resource
import selectors
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

CHUNK = 1 << 16
SANDBOX_ENV = {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8", "PYTHONDONTWRITEBYTECODE": "1"}
PYTHON_ARGV = ["python3", "{file}"]
TEMPLATE_REPLY_S = 2.0
"""How long the template may take to answer; longer means a job froze or killed it."""


# ---- output pumping (shared with the local back end) ----------------------------------------------
def communicate(proc, stdin, timeout_s, max_output):
    """Feed ``stdin`` to a Popen and collect its output until it exits, the deadline passes or output overflows.

    Returns ``(stdout, stderr, timed_out, truncated)``. The main process exiting ends the run even if a
    background child still holds the pipes open, so leftover processes cannot stretch a run to its
    timeout. Output beyond ``max_output`` bytes per stream stops the run (it is almost surely runaway).
    """
    fds = (proc.stdin.fileno(), proc.stdout.fileno(), proc.stderr.fileno())
    try:
        return pump(
            proc.pid, fds, stdin, timeout_s, max_output, lambda: proc.poll() is not None, proc.stdin.close
        )
    finally:
        for stream in (proc.stdin, proc.stdout, proc.stderr):
            try:
                stream.close()
            except OSError:
                pass


def pump(pid, fds, stdin, timeout_s, max_output, has_exited, close_stdin):
    """The loop behind ``communicate`` on raw fds (stdin write end, stdout and stderr read ends).

    ``has_exited`` is polled when a pidfd is unavailable. ``close_stdin`` (idempotent) is called once
    all input is written, so the program sees end-of-file. The caller closes the fds afterwards.
    """
    stdin_fd, out_fd, err_fd = fds
    sel = selectors.DefaultSelector()
    bufs = {out_fd: bytearray(), err_fd: bytearray()}
    for fd in bufs:
        os.set_blocking(fd, False)
        sel.register(fd, selectors.EVENT_READ)
    pending = memoryview(stdin)
    if pending:
        os.set_blocking(stdin_fd, False)
        sel.register(stdin_fd, selectors.EVENT_WRITE)
    else:
        close_stdin()
    exit_fd = _pidfd(pid)
    if exit_fd is not None:
        sel.register(exit_fd, selectors.EVENT_READ)
    deadline = time.monotonic() + timeout_s
    timed_out = truncated = exited = False
    try:
        while not (exited or truncated):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                timed_out = not has_exited()
                break
            # Without a pidfd we poll for exit every 20 ms.
            events = sel.select(remaining if exit_fd is not None else min(remaining, 0.02))
            for key, _ in events:
                if key.fd == exit_fd:
                    exited = True
                elif key.fd in bufs:
                    truncated |= _read_into(sel, key.fd, bufs[key.fd], max_output)
                else:
                    pending = _write_some(sel, stdin_fd, pending, close_stdin)
            if exit_fd is None and has_exited():
                exited = True
        if exited:
            for fd, buf in bufs.items():  # what the process wrote just before exiting
                truncated |= _drain(fd, buf, max_output)
    finally:
        sel.close()
        if exit_fd is not None:
            os.close(exit_fd)
    return bytes(bufs[out_fd]), bytes(bufs[err_fd]), timed_out, truncated


def _pidfd(pid):
    try:
        return os.pidfd_open(pid)
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
        except OSError:
            return False
        if not data:
            return False
        buf += data
    del buf[max_output:]
    return True


def _write_some(sel, fd, pending, close_stdin):
    """Write what the pipe takes; close it when all is written or the reader is gone."""
    try:
        written = os.write(fd, pending[:CHUNK])
    except BlockingIOError:
        return pending
    except OSError:  # the program closed stdin or exited: the rest is not wanted
        written = len(pending)
    pending = pending[written:]
    if not pending:
        sel.unregister(fd)
        close_stdin()
    return pending


def outcome(proc, timed_out, truncated):
    """``(exit_code, timed_out)`` of a finished Popen; see ``exit_outcome``."""
    return exit_outcome(proc.returncode, timed_out, truncated)


def exit_outcome(returncode, timed_out, truncated):
    """``(exit_code, timed_out)``: exit code None when the run was stopped (timeout, output overflow).

    Hitting the CPU-time rlimit (SIGXCPU) is a timeout too, never a plain crash.
    """
    timed_out = timed_out or returncode == -signal.SIGXCPU
    if timed_out or truncated:
        return None, timed_out
    return returncode, False


def kill_group(proc):
    """SIGKILL the child's process group (it leads its own session) and reap the child."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    proc.wait()


def set_limits(timeout_s, memory_mb, fsize_mb, nofile):
    """Lower this process's rlimits for a job (CPU seconds, address space, file size, fds, no cores)."""
    cpu = int(timeout_s) + 1
    resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))
    if memory_mb:
        size = int(memory_mb) << 20
        resource.setrlimit(resource.RLIMIT_AS, (size, size))
    resource.setrlimit(resource.RLIMIT_FSIZE, (fsize_mb << 20, fsize_mb << 20))
    resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


def _job_limits(job):
    return job["timeout_s"], job.get("memory_mb"), job.get("fsize_mb", 16), 64


def _job_env(workdir):
    return dict(SANDBOX_ENV, HOME=workdir, TMPDIR=workdir)


# ---- the template: forks a fresh Python child per job ---------------------------------------------
PRELOAD = (
    "atexit",
    "threading",
    "traceback",
    "types",  # what every child needs to finish like an interpreter
    "bisect",
    "collections",
    "functools",
    "heapq",
    "itertools",
    "math",
    "re",
    "string",
    "typing",
)
"""Imported once in the template, so children (and the common imports of test programs) start warm.

Only side-effect-free standard modules: a program sees them in ``sys.modules`` already loaded, as
under any fork server; ``random`` is left out on purpose (children must not share a seed).
"""


def template_main(control_fd):
    """Template loop: a spawn request (limits + three pipe fds) in, the child's pid and status out."""
    _set_dumpable(False)
    for name in PRELOAD:
        __import__(name)
    import gc

    gc.freeze()  # keep the collector from touching (and so copying) the template's pages in children
    control = socket.socket(fileno=control_fd)
    while True:
        try:
            message, fds, _, _ = socket.recv_fds(control, 4096, 3)
        except OSError:
            os._exit(0)
        if not message or len(fds) != 3:
            os._exit(0)
        request = json.loads(message)
        pid = os.fork()
        if pid == 0:
            _child_main(request, fds)  # never returns
        for fd in fds:
            os.close(fd)
        control.sendall(json.dumps({"pid": pid}).encode())
        _, status = os.waitpid(pid, 0)
        control.sendall(json.dumps({"pid": pid, "status": status}).encode())


def _child_main(request, fds):
    """In the forked child: become a fresh ``python3 main.py`` as far as the program can tell."""
    status = 120
    try:
        os.setsid()
        for target, fd in enumerate(fds):
            os.dup2(fd, target)
        _close_inherited_fds()  # the template's control socket must not reach the program
        workdir, path = request["workdir"], request["path"]
        os.chdir(workdir)
        os.environ.clear()
        os.environ.update(_job_env(workdir))
        set_limits(*_job_limits(request))
        _set_dumpable(True)  # the program's own /proc entries stay usable; the runner's stay closed
        sys.stdin = sys.__stdin__ = open(0, encoding="utf-8", closefd=False)
        sys.stdout = sys.__stdout__ = open(1, "w", encoding="utf-8", closefd=False)
        sys.stderr = sys.__stderr__ = open(
            2, "w", encoding="utf-8", errors="backslashreplace", closefd=False, buffering=1
        )
        sys.argv = [path]
        sys.path[0] = workdir
        status = _run_as_main(path)
    finally:
        os._exit(status)


def _run_as_main(path):
    """Execute the file as ``__main__`` and finish like the interpreter would: the exit status."""
    import atexit
    import threading
    import traceback
    import types

    main = types.ModuleType("__main__")
    main.__file__ = path
    sys.modules["__main__"] = main
    status = 0
    try:
        with open(path, encoding="utf-8") as f:
            source = f.read()
        exec(compile(source, path, "exec"), main.__dict__)
    except SystemExit as exc:
        status = _exit_status(exc.code)
    except BaseException as exc:
        tb = exc.__traceback__.tb_next if exc.__traceback__ is not None else None  # hide this frame
        traceback.print_exception(type(exc), exc, tb)
        status = 1
    try:
        threading._shutdown()  # wait for non-daemon threads, as interpreter exit does
        atexit._run_exitfuncs()
    except SystemExit as exc:
        status = _exit_status(exc.code)
    except BaseException:
        pass
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            status = status or 120
    return status


def _exit_status(code):
    if code is None:
        return 0
    if isinstance(code, int):
        return code & 0xFF
    try:
        print(code, file=sys.stderr)
    except BaseException:
        pass
    return 1


def _set_dumpable(flag, _libc=[]):  # noqa: B006 - the default list caches libc across calls and forks
    """Non-dumpable makes /proc/PID/* root-owned, so same-uid jobs cannot read fds or memory."""
    import ctypes

    if not _libc:
        _libc.append(ctypes.CDLL(None, use_errno=True))
    pr_set_dumpable = 4
    if _libc[0].prctl(pr_set_dumpable, int(flag), 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_DUMPABLE) failed")


def _close_inherited_fds():
    """Close every fd above 2 (listing them is far cheaper than closing the whole fd range)."""
    for name in os.listdir("/proc/self/fd"):
        if int(name) > 2:
            try:
                os.close(int(name))
            except OSError:
                pass


# ---- the runner: PID 1 of a container ---------------------------------------------------------------
BOOTSTRAP = "import sys; exec(sys.argv[1])"
"""``python3 -c BOOTSTRAP SOURCE ROLE``: the source rides in argv, so the runner can start the template."""


class _Template:
    """The template process and the socket to it. Dead or frozen templates are replaced by the runner."""

    def __init__(self, source):
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.proc = subprocess.Popen(
            [sys.executable, "-I", "-c", BOOTSTRAP, source, "template", str(theirs.fileno())],
            pass_fds=[theirs.fileno()],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        theirs.close()
        self.sock = ours
        self.pid = self.proc.pid
        self.dead = False

    def spawn(self, request, fds):
        """The pid of a fresh child for ``request``, or None if the template does not answer."""
        try:
            socket.send_fds(self.sock, [json.dumps(request).encode()], fds)
        except OSError:
            self.kill()
            return None
        reply = self.reply()
        return None if reply is None else reply["pid"]

    def reply(self):
        self.sock.settimeout(TEMPLATE_REPLY_S)
        try:
            data = self.sock.recv(4096)
        except OSError:
            data = b""
        if not data:  # killed or frozen by a job: kill it now, so its children can be reaped
            self.kill()
            return None
        return json.loads(data)

    def kill(self):
        self.dead = True
        try:
            os.kill(self.pid, signal.SIGKILL)
        except OSError:
            pass
        self.sock.close()


def run_job(job, scratch, template=None):
    """Run one job in a fresh directory under ``scratch``; return the answer dict."""
    workdir = tempfile.mkdtemp(prefix="job-", dir=scratch)
    path = os.path.join(workdir, job.get("filename", "main.py"))
    # Lone surrogates pass through as bytes: the program then fails to decode, as it would anywhere.
    with open(path, "w", encoding="utf-8", errors="surrogatepass") as f:
        f.write(job["code"])
    argv = job.get("argv", PYTHON_ARGV)
    stdin = job.get("stdin", "").encode("utf-8", "surrogatepass")
    started = time.monotonic()
    if job.get("fork", True) and argv == PYTHON_ARGV and template is not None and not template.dead:
        returncode, out, err, timed_out, truncated = _run_forked(job, workdir, path, stdin, template)
    else:
        returncode, out, err, timed_out, truncated = _run_exec(job, workdir, path, argv, stdin)
    exit_code, timed_out = exit_outcome(returncode, timed_out, truncated)
    return {
        "exit_code": exit_code,
        "stdout": out.decode("utf-8", "replace"),
        "stderr": err.decode("utf-8", "replace"),
        "timed_out": timed_out,
        "truncated": truncated,
        "wall_s": time.monotonic() - started,
        "clean": True,
    }


def _run_exec(job, workdir, path, argv, stdin):
    limits = _job_limits(job)
    proc = subprocess.Popen(
        [arg.replace("{file}", path) for arg in argv],
        cwd=workdir,
        env=_job_env(workdir),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
        preexec_fn=lambda: set_limits(*limits),  # the runner is single-threaded: safe here
    )
    out, err, timed_out, truncated = communicate(proc, stdin, job["timeout_s"], job["max_output_bytes"])
    kill_group(proc)
    return proc.returncode, out, err, timed_out, truncated


def _run_forked(job, workdir, path, stdin, template):
    """Have the template fork the job's child, then pump its pipes like any other process."""
    stdin_r, stdin_w = os.pipe()
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    request = {
        "workdir": workdir,
        "path": path,
        "timeout_s": job["timeout_s"],
        "memory_mb": job.get("memory_mb"),
    }
    try:
        pid = template.spawn(request, [stdin_r, out_w, err_w])
    finally:
        for fd in (stdin_r, out_w, err_w):
            os.close(fd)
    closed = []

    def close_stdin():
        if not closed:
            closed.append(True)
            os.close(stdin_w)

    try:
        if pid is None:
            return (
                None,
                b"",
                b"rewardkit sandbox: the job runner's template stopped answering\n",
                False,
                False,
            )
        out, err, timed_out, truncated = pump(
            pid,
            (stdin_w, out_r, err_r),
            stdin,
            job["timeout_s"],
            job["max_output_bytes"],
            lambda: not pid_alive(pid),
            close_stdin,
        )
    finally:
        close_stdin()
        os.close(out_r)
        os.close(err_r)
    try:
        os.killpg(pid, signal.SIGKILL)
    except OSError:
        pass
    reply = template.reply()
    if reply is None:  # the program killed or froze the template: no trustworthy status
        err += b"\nrewardkit sandbox: the program disabled the job runner's template\n"
        return None, out, err, timed_out, truncated
    return os.waitstatus_to_exitcode(reply["status"]), out, err, timed_out, truncated


def pid_alive(pid):
    """Whether a process with this pid exists (also one of another user, which we may not signal)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _sweep(scratch, spare):
    """Kill every process but PID 1 and ``spare``; reap; empty the writable places.

    Returns ``(clean, reaped pids)``. Only valid as PID 1 of a container.
    """
    reaped = set()
    clean = False
    for _ in range(500):
        others = [pid for pid in _pids() if pid != 1 and pid not in spare]
        for pid in others:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        reaped |= _reap_children()
        if not others:
            clean = True
            break
        time.sleep(0.002)
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
    return clean, reaped


def _pids():
    return [int(name) for name in _listdir("/proc") if name.isdigit()]


def _reap_children():
    reaped = set()
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return reaped
        if pid == 0:
            return reaped
        reaped.add(pid)


def _listdir(place):
    try:
        return os.listdir(place)
    except OSError:
        return []


def serve(source, scratch="/tmp"):
    """Container main loop: one JSON job per input line, one JSON answer per output line."""
    if os.getpid() != 1:
        raise SystemExit("runner.serve must be PID 1 of its container (it kills every other process)")
    _set_dumpable(False)
    # PID 1 receives from inside its namespace only the signals it handles; Python handles SIGINT, so
    # a job could raise KeyboardInterrupt here. Handlers (unlike SIG_IGN) reset on exec: the template
    # and exec'd jobs still get Python's defaults.
    signal.signal(signal.SIGINT, lambda signum, frame: None)
    template = _Template(source)
    out = sys.stdout
    out.write(json.dumps({"ready": True}) + "\n")
    out.flush()
    for line in sys.stdin:
        if template.dead:
            template = _Template(source)
        try:
            answer = run_job(json.loads(line), scratch, template)
        except Exception as exc:  # a broken job must not take the runner down
            answer = {"error": f"{type(exc).__name__}: {exc}"}
        clean, reaped = _sweep(scratch, {template.pid})
        if template.pid in reaped:
            template.dead = True
        answer["clean"] = clean and answer.get("clean", True)
        out.write(json.dumps(answer) + "\n")
        out.flush()


if __name__ == "__main__" and len(sys.argv) >= 3:
    if sys.argv[2] == "serve":
        serve(sys.argv[1])
    elif sys.argv[2] == "template":
        template_main(int(sys.argv[3]))
