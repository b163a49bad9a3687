"""The local back end: each run is a fresh child process with namespaces, rlimits and a scratch tmpfs.

Layers, outermost first (each one is used when the machine allows it; ``protections()`` says which):
  * an unprivileged uid per concurrent slot (when the host runs as root), so the process-count
    rlimit binds (it never binds for root) and a slot's leftovers can be found and killed by uid;
  * ``prlimit``: CPU seconds, address space, file size, open files, process count, no core dumps;
  * bubblewrap: new user/pid/net/ipc/uts namespaces, only /usr (read-only) of the host filesystem,
    a size-capped tmpfs as the work dir, a fresh /proc; the pid namespace dies with the program.
Without bubblewrap it falls back to ``unshare --net`` (no network only), then to rlimits alone.

With bubblewrap and ``warm=True`` each slot uid keeps one such sandbox alive with the job runner as
its PID 1 (``_Slot``); talking to it, the retry loop and the clean-up are rewardkit/sandbox/warm.py's,
shared with the docker back end. This module adds how a slot is spawned and killed.
"""

from __future__ import annotations

import fcntl
import os
import queue
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import weakref
from dataclasses import dataclass

from rewardkit.config import bad_value, check_ranges, suggest
from rewardkit.sandbox import runner, warm
from rewardkit.sandbox.base import (
    DEFAULT_MAX_OUTPUT_BYTES,
    PYTHON_COMMAND,
    ExecResult,
    SandboxError,
    SandboxUnavailable,
    check_limits,
)

ISOLATION_MODES = ("auto", "bwrap", "unshare", "none")
SLOT_START_TIMEOUT_S = 30.0
"""How long a new warm slot may take to report ready."""


@dataclass(frozen=True)
class LocalConfig:
    """Options of ``get_sandbox("local", ...)``. Bad values raise ValueError at construction."""

    isolation: str = "auto"
    """``auto`` picks the strongest layer that works here (bwrap > unshare > none); naming one makes
    construction fail (SandboxUnavailable) if it does not work, instead of silently weakening."""
    command: tuple[str, ...] = PYTHON_COMMAND
    """Argv that runs the program; ``{file}`` becomes the source path. Other languages go here (e.g.
    ``("node", "{file}")`` with ``filename="main.js"``)."""
    filename: str = "main.py"
    """Name of the source file in the work dir."""
    max_parallel: int = 16
    """Runs at once; each holds one slot uid, so this also bounds the uids used."""
    base_uid: int = 61000
    """First uid a sandbox may claim (root hosts only). Each sandbox claims max_parallel free uids from
    here on (lock files make claims exclusive across processes); the range
    base_uid..base_uid+64*max_parallel must belong to no real user: leftovers die by uid."""
    nproc: int = 64
    """Processes (threads included) a run may own at once; stops fork bombs."""
    work_mb: int = 64
    """Size of the tmpfs work dir (bwrap only): stops disk filling."""
    fsize_mb: int = 16
    """Largest file a run may write."""
    max_output_bytes: int = DEFAULT_MAX_OUTPUT_BYTES
    """Per-stream output cap; passing it stops the run."""
    warm: bool = True
    """With bubblewrap, keep one sandbox per slot alive and run jobs in it through the job runner (the
    docker back end's, Python forked from a warm interpreter): a run then costs milliseconds instead
    of a namespace set-up plus interpreter start-up. False builds a fresh sandbox for every run."""
    grace_s: float = 5.0
    """(warm) How long past a run's timeout the host waits for the runner before it gives the slot up
    as hung (the run is then a timeout)."""
    max_jobs_per_slot: int = 1000
    """(warm) Replace a slot after this many jobs, for hygiene."""

    def __post_init__(self) -> None:
        where = "local sandbox"
        if self.isolation not in ISOLATION_MODES:
            expected = "one of " + ", ".join(map(repr, ISOLATION_MODES))
            raise bad_value(
                where, "isolation", self.isolation, expected, suggest(self.isolation, ISOLATION_MODES)
            )
        if not self.command or not any("{file}" in arg for arg in self.command):
            raise bad_value(
                where, "command", self.command, "an argv with a '{file}' argument, e.g. ['python3', '{file}']"
            )
        ranges = {"max_parallel": ">= 1", "nproc": ">= 1", "work_mb": ">= 1", "fsize_mb": ">= 1"}
        ranges |= {"max_output_bytes": ">= 1", "grace_s": ">= 0", "max_jobs_per_slot": ">= 1"}
        check_ranges(self, ranges, where=where)


class _Slot(warm.WarmRunner):
    """A warm slot: one long-lived bubblewrap sandbox (under prlimit, as the slot uid) whose PID 1 is
    the job runner, spoken to over its stdin/stdout pipes. Its pid namespace dies with it."""

    def __init__(self, wrapper: list[str], python: str) -> None:
        super().__init__()
        self.proc = subprocess.Popen(
            [*wrapper, *warm.runner_argv(python)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
            env=dict(runner.SANDBOX_ENV, HOME="/tmp", TMPDIR="/tmp"),
        )
        self.stream = warm.PipeStream(self.proc)
        with self.destroyed_on_failure():
            self.await_ready(SLOT_START_TIMEOUT_S)

    def destroy(self) -> None:
        """Kill the slot's session; bubblewrap's pid namespace takes every process in it down."""
        if self.proc.returncode is None:  # once reaped, its pid may be someone else's
            runner.kill_group(self.proc)
        self.hangup()


class LocalSandbox:
    """Runs programs as isolated local child processes. Thread-safe."""

    kind = "local"

    def __init__(self, **options: object) -> None:
        self.config = LocalConfig(**options)  # type: ignore[arg-type]
        self._root = os.geteuid() == 0
        self._fork_lock = threading.Lock()
        self._take_slots()
        self._argv0 = _resolve(self.config.command[0])
        self._python = _resolve("python3")  # runs the warm slots' job runner, whatever the command
        self._prlimit = shutil.which("prlimit")
        self._setpriv = shutil.which("setpriv")
        self._own_processes = 0 if self._root else _count_own_processes()
        self._warm = False  # probes run cold
        self._start_warm_pool()
        self._isolation = self._pick_isolation()
        # As root, a warm slot must drop to its uid through setpriv (it is not spawned per run).
        self._warm = (
            self.config.warm and self._isolation == "bwrap" and (not self._root or bool(self._setpriv))
        )

    def _take_slots(self) -> None:
        """Claim slot uids for this process and queue them."""
        self._pid = os.getpid()
        # Warm: reuse the most recently used uid (its slot is running); cold: rotate through them all,
        # so a uid's killed processes have time to be reaped before it is used again.
        self._slots: queue.Queue[int | None] = queue.LifoQueue() if self.config.warm else queue.Queue()
        self._claims = _claim_uids(self.config) if self._root else {}
        self._release = weakref.finalize(self, _release_uids, dict(self._claims))
        for uid in self._claims or [None] * self.config.max_parallel:
            self._slots.put(uid)

    def _start_warm_pool(self) -> None:
        self._runners = warm.LiveRunners()  # the idle warm slots, by slot uid
        self._stop_warm = weakref.finalize(self, self._runners.destroy_all)

    def _after_fork(self) -> None:
        """In a forked child: leave the parent's uids and warm slots to the parent; take our own."""
        self._release.detach()
        self._stop_warm.detach()
        self._take_slots()
        self._start_warm_pool()

    def protections(self) -> dict[str, bool]:
        bwrap = self._isolation == "bwrap"
        return {
            "rlimits": True,
            "own_session": True,
            "scrubbed_env": True,
            "unprivileged_uid": self._root,
            "pids": self._root,  # for a non-root host the count is shared with the user's processes
            "network": self._isolation in ("bwrap", "unshare"),
            "filesystem": bwrap,
            "pid_namespace": bwrap,
            "disk_quota": bwrap,
        }

    @property
    def slot_uids(self) -> list[int]:
        """The uids this sandbox runs programs as (root hosts only), claimed for its lifetime."""
        return sorted(self._claims)

    def close(self) -> None:
        """Stop the warm slots and give the slot uids back. Idempotent; also runs at exit."""
        self._stop_warm()
        self._release()

    def __enter__(self) -> LocalSandbox:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def run(self, code: str, *, stdin: str = "", timeout_s: float = 10.0, memory_mb: int = 512) -> ExecResult:
        check_limits(timeout_s, memory_mb)
        if self._runners.closed:
            raise SandboxError("the sandbox is closed")
        if os.getpid() != self._pid:  # a forked worker must not share the parent's pipes and uids
            with self._fork_lock:
                if os.getpid() != self._pid:
                    self._after_fork()
        uid = self._slots.get()
        try:
            if self._warm:
                return self._run_warm(uid, code, stdin, timeout_s, memory_mb)
            return self._run_cold(uid, code, stdin, timeout_s, memory_mb)
        finally:
            if uid is not None and self._isolation != "bwrap":
                _kill_uids({uid})  # the bwrap pid namespace already took everything down
            self._slots.put(uid)

    def _run_cold(
        self, uid: int | None, code: str, stdin: str, timeout_s: float, memory_mb: int
    ) -> ExecResult:
        try:
            result = self._run_as(uid, code, stdin, timeout_s, memory_mb)
            if uid is not None and _namespace_refused(result):
                # The slot's last processes were killed but not yet reaped, and still count against
                # its process limit: wait them out and run again.
                _kill_uids({uid}, include_zombies=True)
                result = self._run_as(uid, code, stdin, timeout_s, memory_mb)
        except OSError as exc:  # the host could not start or watch the program, whatever it was
            raise SandboxError(f"local sandbox failed to run a program: {exc}") from exc
        return result

    def _run_warm(
        self, uid: int | None, code: str, stdin: str, timeout_s: float, memory_mb: int
    ) -> ExecResult:
        """Run in the slot uid's warm slot (started on first use); the slot stays bound to that uid."""
        cfg = self.config
        job = warm.make_job(cfg, code, stdin, timeout_s, memory_mb, fsize_mb=cfg.fsize_mb)

        def release(slot: warm.WarmRunner, keep: bool) -> None:
            if keep:
                self._runners.put(slot, key=uid)  # which destroys it once the sandbox is closed
            else:
                slot.destroy()

        def acquire() -> warm.WarmRunner:
            return self._runners.take(uid) or self._start_slot(uid)

        return warm.run_with_retry(
            job, timeout_s + cfg.grace_s, cfg.max_jobs_per_slot, acquire, release, "local sandbox slot"
        )

    def _start_slot(self, uid: int | None) -> _Slot:
        cfg = self.config
        nproc = cfg.nproc if uid is not None else self._own_processes + cfg.nproc
        limits = [f"--nproc={nproc}", f"--fsize={cfg.fsize_mb << 20}", "--nofile=256", "--core=0"]
        scratch = ["--size", str(cfg.work_mb << 20), "--tmpfs", "/tmp"]
        tail = ["--remount-ro", "/", "--chdir", "/tmp", "--as-pid-1", "--"]
        wrapper = self._user_argv(uid) + self._prlimit_argv(limits) + self._bwrap_common() + scratch + tail
        try:
            return _Slot(wrapper, self._python)
        except (SandboxError, OSError) as exc:  # RunnerLost: it never reported ready
            raise SandboxUnavailable(f"could not start a local sandbox slot: {exc}") from exc

    def _run_as(self, uid: int | None, code: str, stdin: str, timeout_s: float, memory_mb: int) -> ExecResult:
        cfg = self.config
        with tempfile.TemporaryFile() as source, _host_workdir(self._isolation, uid) as hostdir:
            source.write(code.encode("utf-8", "surrogatepass"))
            source.flush()
            source.seek(0)
            if self._isolation == "bwrap":
                workdir, fds = "/work", (source.fileno(),)
                wrap = self._bwrap_argv(source.fileno())
            else:
                workdir, fds = hostdir, ()
                _place_source(hostdir, cfg.filename, code, uid)
                # A user namespace lets the unprivileged slot uid own a fresh, empty network namespace.
                wrap = (
                    ["unshare", "--user", "--map-current-user", "--net"]
                    if self._isolation == "unshare"
                    else []
                )
            path = os.path.join(workdir, cfg.filename)
            program = [self._argv0] + [arg.replace("{file}", path) for arg in cfg.command[1:]]
            argv = self._user_argv(uid) + self._limits_argv(uid, timeout_s, memory_mb) + wrap + program
            started = time.monotonic()
            proc = subprocess.Popen(
                argv,
                cwd=hostdir or "/",
                env=dict(runner.SANDBOX_ENV, HOME=workdir, TMPDIR=workdir),
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                start_new_session=True,
                pass_fds=fds,
                **self._user_kwargs(uid),
            )
            try:
                out, err, timed_out, truncated = runner.communicate(
                    proc, stdin.encode("utf-8", "surrogatepass"), timeout_s, cfg.max_output_bytes
                )
            finally:
                runner.kill_group(proc)
            wall = time.monotonic() - started
        if self._isolation == "bwrap" and 128 < proc.returncode < 160:
            # bwrap's init reports a signal death as 128+N (the shell convention); undo that so
            # SIGXCPU is seen as a timeout. An explicit exit(128+N) is indistinguishable: documented.
            proc.returncode = 128 - proc.returncode
        exit_code, timed_out = runner.outcome(proc, timed_out, truncated)
        return ExecResult(
            exit_code=exit_code,
            stdout=out.decode("utf-8", "replace"),
            stderr=err.decode("utf-8", "replace"),
            timed_out=timed_out,
            wall_s=wall,
            truncated=truncated,
        )

    def _user_argv(self, uid: int | None) -> list[str]:
        """Drop to the slot uid with ``setpriv`` in the child's argv.

        Popen's own ``user=``/``group=`` would make CPython fork instead of vfork, copying the whole
        host process for every run: about 140 ms from a 1.5 GB trainer, against 4 ms this way.
        """
        if uid is None or self._setpriv is None:
            return []
        return [self._setpriv, f"--reuid={uid}", f"--regid={uid}", "--clear-groups"]

    def _user_kwargs(self, uid: int | None) -> dict[str, object]:
        if uid is None or self._setpriv is not None:
            return {}
        return {"user": uid, "group": uid, "extra_groups": []}  # slow path, see _user_argv

    def _limits_argv(self, uid: int | None, timeout_s: float, memory_mb: int) -> list[str]:
        cfg = self.config
        cpu = int(timeout_s) + 1
        # Without a slot uid the count includes all of this user's processes: counted once, at start.
        nproc = cfg.nproc if uid is not None else self._own_processes + cfg.nproc
        limits = [
            f"--cpu={cpu}:{cpu + 1}",
            f"--as={memory_mb << 20}",
            f"--fsize={cfg.fsize_mb << 20}",
            "--nofile=64",
            f"--nproc={nproc}",
            "--core=0",
        ]
        return self._prlimit_argv(limits)

    def _prlimit_argv(self, limits: list[str]) -> list[str]:
        if self._prlimit is None:
            raise SandboxUnavailable(
                "prlimit (util-linux) is required by the local sandbox; install util-linux"
            )
        return [self._prlimit, *limits, "--"]

    def _bwrap_argv(self, source_fd: int) -> list[str]:
        """A fresh sandbox for one run: the program's source is copied into a tmpfs /work."""
        cfg = self.config
        work = ["--size", str(cfg.work_mb << 20), "--tmpfs", "/work"]
        argv = self._bwrap_common() + work + ["--file", str(source_fd), f"/work/{cfg.filename}"]
        # The root and /dev are bwrap's own tmpfs mounts: left writable they would be unbounded RAM.
        return argv + ["--remount-ro", "/", "--chdir", "/work", "--"]

    def _bwrap_common(self) -> list[str]:
        """Namespaces, read-only /usr, a private /proc, read-only /dev with a size-capped /dev/shm."""
        cfg = self.config
        argv = ["bwrap", "--unshare-all", "--die-with-parent", "--new-session", "--cap-drop", "ALL"]
        argv += ["--ro-bind", "/usr", "/usr"]
        for top in ("/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32"):
            if os.path.islink(top):
                argv += ["--symlink", os.readlink(top), top]
            elif os.path.isdir(top):
                argv += ["--ro-bind", top, top]
        for prefix in sorted({_interpreter_root(self._argv0), _interpreter_root(self._python)} - {None}):
            argv += ["--ro-bind", prefix, prefix]
        shm = ["--size", str(cfg.work_mb << 20), "--tmpfs", "/dev/shm"]
        return argv + ["--proc", "/proc", "--dev", "/dev", "--remount-ro", "/dev", *shm]

    def _pick_isolation(self) -> str:
        wanted = self.config.isolation
        order = ("bwrap", "unshare", "none") if wanted == "auto" else (wanted,)
        for mode in order:
            if mode == "none" or self._probe(mode):
                return mode
        raise SandboxUnavailable(
            f"local sandbox isolation {wanted!r} does not work on this machine "
            "(is bubblewrap installed and are user namespaces enabled?); use isolation='auto'"
        )

    def _probe(self, mode: str) -> bool:
        """Run ``true`` under the wrapper once: cheaper than failing every run later."""
        if mode == "bwrap" and shutil.which("bwrap") is None:
            return False
        if mode == "unshare" and shutil.which("unshare") is None:
            return False
        self._isolation = mode
        result = self.run("", timeout_s=10.0, memory_mb=256) if self._argv0 else None
        return result is not None and result.exit_code == 0


def _resolve(program: str) -> str:
    """Absolute path of the interpreter, preferring the system's over a virtualenv's shim."""
    found = shutil.which(program, path="/usr/local/bin:/usr/bin:/bin") or shutil.which(program)
    if found is None and program == "python3":
        found = sys.executable
    if found is None:
        raise SandboxUnavailable(f"local sandbox: program {program!r} not found on PATH")
    return os.path.realpath(found)


def _interpreter_root(argv0: str) -> str | None:
    """The install prefix to expose read-only when the interpreter lives outside /usr (e.g. pyenv)."""
    if argv0.startswith("/usr/"):
        return None
    return os.path.dirname(os.path.dirname(argv0))


class _host_workdir:
    """A fresh host directory owned by the slot uid (fallback modes); none under bwrap."""

    def __init__(self, isolation: str, uid: int | None) -> None:
        self.isolation, self.uid, self.path = isolation, uid, ""

    def __enter__(self) -> str:
        if self.isolation != "bwrap":
            self.path = tempfile.mkdtemp(prefix="rewardkit-run-")
            if self.uid is not None:
                os.chown(self.path, self.uid, self.uid)
        return self.path

    def __exit__(self, *exc: object) -> None:
        if self.path:
            shutil.rmtree(self.path, ignore_errors=True)


def _place_source(hostdir: str, filename: str, code: str, uid: int | None) -> None:
    path = os.path.join(hostdir, filename)
    with open(path, "w", encoding="utf-8", errors="surrogatepass") as f:
        f.write(code)
    if uid is not None:
        os.chown(path, uid, uid)


def _uids_of_processes(include_zombies: bool = False) -> list[tuple[int, int]]:
    """(pid, real uid) of every process visible in /proc; zombies only if asked (they cannot be killed,
    but until reaped they still count against their uid's process limit)."""
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/status", encoding="ascii", errors="replace") as f:
                fields = dict(line.split(":", 1) for line in f if ":" in line)
        except OSError:
            continue
        zombie = fields.get("State", "").strip().startswith("Z")
        if "Uid" in fields and (include_zombies or not zombie):
            found.append((int(name), int(fields["Uid"].split()[0])))
    return found


def _release_uids(claims: dict[int, int]) -> None:
    for fd in claims.values():
        os.close(fd)


def _namespace_refused(result: ExecResult) -> bool:
    """bwrap could not start: the slot uid is at its process limit (EAGAIN), not the program's doing."""
    return (
        result.exit_code == 1
        and result.stderr.startswith("bwrap: ")
        and "Resource temporarily unavailable" in result.stderr
    )


def _claim_uids(cfg: LocalConfig) -> dict[int, int]:
    """Claim ``max_parallel`` free uids from ``base_uid`` up with flock, so sandboxes in several
    processes never share a uid (and never kill each other's programs sweeping one)."""
    lock_dir = os.path.join(tempfile.gettempdir(), "rewardkit-sandbox-uids")
    os.makedirs(lock_dir, mode=0o700, exist_ok=True)
    claims: dict[int, int] = {}
    for uid in range(cfg.base_uid, cfg.base_uid + 64 * cfg.max_parallel):
        fd = os.open(os.path.join(lock_dir, str(uid)), os.O_CREAT | os.O_RDWR, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            continue
        claims[uid] = fd
        if len(claims) == cfg.max_parallel:
            _kill_uids(set(claims), include_zombies=True)
            return claims
    for fd in claims.values():
        os.close(fd)
    raise SandboxUnavailable(
        f"no {cfg.max_parallel} free sandbox uids from {cfg.base_uid}: too many sandboxes running"
    )


def _kill_uids(uids: set[int], include_zombies: bool = False) -> None:
    """SIGKILL every process of these uids, repeating until none is left (a fork bomb keeps forking).

    Used on a slot after each run, and on claimed uids that an earlier owner (e.g. a crashed process)
    may have left busy; ``include_zombies`` also waits until their zombies are reaped.
    """
    for _ in range(200):
        pids = [pid for pid, owner in _uids_of_processes(include_zombies) if owner in uids]
        if not pids:
            return
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(0.01)


def _count_own_processes() -> int:
    me = os.getuid()
    return sum(1 for _, owner in _uids_of_processes() if owner == me)
