"""The docker back end: a warm pool of hardened containers, each running a job runner as PID 1.

A run costs one JSON line each way over the container's attached stdin/stdout and one fork+exec in
the container, so it is about as cheap as a local subprocess; ``docker run`` per program costs
hundreds of milliseconds. Between jobs the runner SIGKILLs every other process in the container and
empties its writable places; a container that misses a deadline, dies, or reports leftovers is
destroyed and replaced. Containers end when their owner's connection closes (``stdin_once`` +
``auto_remove``), so even a SIGKILLed host process leaks none; a closed or garbage-collected sandbox
and interpreter exit (Ctrl-C included) remove them at once.
"""

from __future__ import annotations

import concurrent.futures
import json
import os
import queue
import socket
import struct
import threading
import time
import uuid
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rewardkit.sandbox import runner
from rewardkit.sandbox.base import (
    DEFAULT_MAX_OUTPUT_BYTES,
    PYTHON_COMMAND,
    ExecResult,
    SandboxError,
    check_limits,
)

DEFAULT_IMAGE = "rewardkit-sandbox:latest"
LABEL = "rewardkit.sandbox"
RUNNER_SOURCE = (Path(__file__).parent / "runner.py").read_text
"""Read lazily (a function, not text) so importing this module does no work."""


@dataclass(frozen=True)
class DockerConfig:
    """Options of ``get_sandbox("docker", ...)``.

    Attributes:
        image: image with ``python3`` (and whatever ``command`` needs); build the default one with
            ``rewardkit sandbox build-image``.
        pool_size: warm containers; runs beyond it wait for a free one. Default: CPU count.
        command: argv that runs the program inside the container; ``{file}`` becomes its path.
        filename: name of the source file in the job's work dir.
        container_memory_mb: memory cgroup limit of each container (no swap); the hard ceiling over
            the per-run ``memory_mb`` address-space limit.
        cpus: CPU share of each container.
        pids_limit: processes (threads included) a container may hold; stops fork bombs.
        tmpfs_mb: size of the writable /tmp where jobs run; the root filesystem is read-only.
        max_output_bytes: per-stream output cap; passing it stops the run.
        grace_s: how long past a run's timeout the host waits for the runner before it gives the
            container up as hung and replaces it.
        max_jobs_per_container: replace a container after this many jobs, for hygiene.
        start_timeout_s: how long a new container may take to report ready.
        user: uid:gid inside the container (never root).
        fork_server: run Python programs in children forked from a warm, job-free interpreter
            (skips interpreter start-up); False execs ``command`` for every run instead.
    """

    image: str = DEFAULT_IMAGE
    pool_size: int | None = None
    command: tuple[str, ...] = PYTHON_COMMAND
    filename: str = "main.py"
    container_memory_mb: int = 1024
    cpus: float = 1.0
    pids_limit: int = 128
    tmpfs_mb: int = 64
    max_output_bytes: int = DEFAULT_MAX_OUTPUT_BYTES
    grace_s: float = 5.0
    max_jobs_per_container: int = 1000
    start_timeout_s: float = 30.0
    user: str = "65534:65534"
    fork_server: bool = True

    def __post_init__(self) -> None:
        if self.pool_size is not None and self.pool_size < 1:
            raise ValueError(f"pool_size must be >= 1, got {self.pool_size!r}")
        if not any("{file}" in arg for arg in self.command):
            raise ValueError(f"command must contain a '{{file}}' argument, got {self.command!r}")
        if self.user.split(":")[0] in ("0", "root", ""):
            raise ValueError(f"user must be a non-root uid:gid, got {self.user!r}")
        for name in ("container_memory_mb", "cpus", "pids_limit", "tmpfs_mb", "max_output_bytes"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)!r}")


class _Lost(Exception):
    """The container stopped answering properly (died, protocol broken, or deadline passed)."""

    def __init__(self, reason: str, hung: bool = False) -> None:
        super().__init__(reason)
        self.hung = hung


class _Worker:
    """One warm container and the raw socket attached to its runner's stdin/stdout."""

    def __init__(self, client: Any, cfg: DockerConfig, labels: dict[str, str]) -> None:
        self.jobs = 0
        self.container = client.containers.create(cfg.image, **_container_options(cfg, labels))
        try:
            attached = self.container.attach_socket(
                params={"stdin": 1, "stdout": 1, "stderr": 1, "stream": 1}
            )
            self.sock: socket.socket = getattr(attached, "_sock", attached)
            self._buf = bytearray()
            self._stderr = bytearray()
            self.container.start()
            ready = self._read_line(time.monotonic() + cfg.start_timeout_s)
            if not ready.get("ready"):
                raise _Lost(f"runner did not report ready: {ready!r}")
        except BaseException:
            self.destroy()
            raise

    def execute(self, job: dict[str, Any], deadline: float) -> dict[str, Any]:
        self.jobs += 1
        try:
            self.sock.sendall(json.dumps(job).encode() + b"\n")
        except OSError as exc:
            raise _Lost(f"cannot send job: {exc}") from exc
        return self._read_line(deadline)

    def _read_line(self, deadline: float) -> dict[str, Any]:
        """Demultiplex docker's attach stream (8-byte frame headers) until one stdout line is complete."""
        while b"\n" not in self._buf:
            header = self._recv_exactly(8, deadline)
            stream, size = header[0], struct.unpack(">I", header[4:])[0]
            payload = self._recv_exactly(size, deadline)
            if stream == 1:
                self._buf += payload
            else:
                self._stderr = (self._stderr + payload)[-4096:]
        line, _, rest = bytes(self._buf).partition(b"\n")
        self._buf = bytearray(rest)
        try:
            return json.loads(line)
        except ValueError as exc:
            raise _Lost(f"runner sent garbage: {line[:200]!r}") from exc

    def _recv_exactly(self, n: int, deadline: float) -> bytes:
        data = bytearray()
        while len(data) < n:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise _Lost("runner missed its deadline", hung=True)
            self.sock.settimeout(remaining)
            try:
                chunk = self.sock.recv(n - len(data))
            except TimeoutError as exc:
                raise _Lost("runner missed its deadline", hung=True) from exc
            except OSError as exc:
                raise _Lost(f"connection to runner failed: {exc}") from exc
            if not chunk:
                tail = self._stderr.decode("utf-8", "replace")
                raise _Lost(f"container ended{': ' + tail if tail else ''}")
            data += chunk
        return bytes(data)

    def close_connection(self) -> None:
        """Close our end: the runner reads end-of-input and exits, and the container is auto-removed."""
        try:
            self.sock.close()
        except (AttributeError, OSError):
            pass

    def destroy(self) -> None:
        """Close our end and remove the container now; never raises."""
        self.close_connection()
        _remove(self.container)


def _container_options(cfg: DockerConfig, labels: dict[str, str]) -> dict[str, Any]:
    """The hardening: every limit here is one line of docs/sandbox.md's threat model."""
    from docker.types import LogConfig, Ulimit

    memory = f"{cfg.container_memory_mb}m"
    return {
        "command": ["python3", "-I", "-u", "-c", runner.BOOTSTRAP, RUNNER_SOURCE(), "serve"],
        "user": cfg.user,
        "stdin_open": True,
        # docker-py sets StdinOnce with stdin_open: our connection closing ends the runner and container.
        "tty": False,
        "auto_remove": True,
        "network_mode": "none",
        "read_only": True,
        "tmpfs": {"/tmp": f"rw,nosuid,nodev,size={cfg.tmpfs_mb}m,mode=1777"},
        "shm_size": "16m",
        "mem_limit": memory,
        "memswap_limit": memory,
        "pids_limit": cfg.pids_limit,
        "nano_cpus": int(cfg.cpus * 1e9),
        "cap_drop": ["ALL"],
        "security_opt": ["no-new-privileges"],
        "ulimits": [Ulimit(name="nofile", soft=256, hard=256), Ulimit(name="core", soft=0, hard=0)],
        "ipc_mode": "private",
        "log_config": LogConfig(type="none"),  # results travel over the socket; logs would fill the disk
        "working_dir": "/tmp",
        "environment": {"LANG": "C.UTF-8"},
        "labels": labels,
    }


def _remove(container: Any) -> None:
    import docker.errors

    try:
        container.remove(force=True)
    except (docker.errors.NotFound, docker.errors.APIError):
        pass  # already gone (auto_remove) or being removed


class _Containers:
    """Every live worker of one sandbox; shared with the exit-time finalizer (which must not hold the sandbox)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.workers: set[_Worker] = set()
        self.pid = os.getpid()

    def destroy_all(self) -> None:
        if os.getpid() != self.pid:  # a forked child exiting must not tear down its parent's pool
            return
        with self.lock:
            workers, self.workers = list(self.workers), set()
        for worker in workers:  # closing our end alone already ends each runner and its container
            worker.close_connection()
        threads = [threading.Thread(target=_remove, args=(w.container,)) for w in workers]
        try:
            for thread in threads:
                thread.start()
        except RuntimeError:  # at interpreter shutdown no new threads: remove one by one
            threads = [t for t in threads if t.ident is not None]
            for worker in workers[len(threads) :]:
                _remove(worker.container)
        for thread in threads:
            thread.join()


class DockerSandbox:
    """Runs programs in a warm pool of hardened containers. Thread-safe; spread runs over threads."""

    kind = "docker"

    def __init__(self, **options: Any) -> None:
        self.config = DockerConfig(**options)
        self._client = _connect(self.config.image)
        self._pid = os.getpid()
        self._labels = {LABEL: "1", f"{LABEL}.owner": _owner_id(), f"{LABEL}.instance": uuid.uuid4().hex}
        _reap_orphans(self._client)
        self._containers = _Containers()
        self._finalizer = weakref.finalize(self, self._containers.destroy_all)
        self._idle: queue.SimpleQueue[_Worker] = queue.SimpleQueue()
        size = self.config.pool_size or os.cpu_count() or 2
        with concurrent.futures.ThreadPoolExecutor(max_workers=min(size, 8)) as pool:
            futures = [pool.submit(self._spawn) for _ in range(size)]
        errors = [f.exception() for f in futures if f.exception() is not None]
        if errors:
            self.close()
            raise SandboxError(f"could not start sandbox containers from {self.config.image!r}: {errors[0]}")

    @property
    def pool_size(self) -> int:
        return len(self._containers.workers)

    def protections(self) -> dict[str, bool]:
        names = ("network", "filesystem", "disk_quota", "memory", "pids", "cpu", "unprivileged_uid")
        return dict.fromkeys(names + ("no_new_privileges", "no_capabilities", "pid_namespace"), True)

    def run(self, code: str, *, stdin: str = "", timeout_s: float = 10.0, memory_mb: int = 512) -> ExecResult:
        check_limits(timeout_s, memory_mb)
        cfg = self.config
        job = {
            "code": code,
            "stdin": stdin,
            "timeout_s": timeout_s,
            "memory_mb": min(memory_mb, cfg.container_memory_mb),
            "max_output_bytes": cfg.max_output_bytes,
            "argv": list(cfg.command),
            "filename": cfg.filename,
            "fork": cfg.fork_server,
        }
        lost = None
        for _ in range(2):  # a container lost mid-job gets one fresh retry, then it is the sandbox's fault
            worker = self._acquire()
            started = time.monotonic()
            try:
                answer = worker.execute(job, started + timeout_s + cfg.grace_s)
            except _Lost as exc:
                self._replace(worker)
                if exc.hung:  # the runner is stuck past the deadline: the program's doing, a timeout
                    return ExecResult(None, "", "", timed_out=True, wall_s=time.monotonic() - started)
                lost = exc
                continue
            self._release(worker, keep=answer.get("clean") is True and "error" not in answer)
            if "error" in answer:
                raise SandboxError(f"sandbox runner failed: {answer['error']}")
            return ExecResult(
                exit_code=answer["exit_code"],
                stdout=answer["stdout"],
                stderr=answer["stderr"],
                timed_out=answer["timed_out"],
                wall_s=answer["wall_s"],
                truncated=answer["truncated"],
            )
        raise SandboxError(f"sandbox container lost twice running one program: {lost}")

    def close(self) -> None:
        """Remove every container of the pool now. Idempotent; also runs at interpreter exit."""
        self._finalizer()

    def __enter__(self) -> DockerSandbox:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _spawn(self) -> _Worker:
        if not self._finalizer.alive:
            raise SandboxError("the sandbox is closed")
        worker = _Worker(self._client, self.config, self._labels)
        with self._containers.lock:
            self._containers.workers.add(worker)
        if not self._finalizer.alive:  # closed while this one was starting: it must not outlive close()
            self._containers.destroy_all()
            raise SandboxError("the sandbox is closed")
        self._idle.put(worker)
        return worker

    def _acquire(self) -> _Worker:
        if os.getpid() != self._pid:
            raise SandboxError(
                "a docker sandbox cannot be used from a forked process (its connections belong to the "
                "parent); create it in the process that runs programs, or use threads"
            )
        while True:
            if not self._finalizer.alive:
                raise SandboxError("the sandbox is closed")
            try:
                return self._idle.get(timeout=1.0)
            except queue.Empty:
                if not self._containers.workers:
                    raise SandboxError(
                        "no sandbox containers are left (is the Docker engine running?)"
                    ) from None

    def _release(self, worker: _Worker, keep: bool) -> None:
        if keep and worker.jobs < self.config.max_jobs_per_container and self._finalizer.alive:
            self._idle.put(worker)
        else:
            self._replace(worker)

    def _replace(self, worker: _Worker) -> None:
        with self._containers.lock:
            self._containers.workers.discard(worker)
        worker.destroy()
        try:
            self._spawn()
        except Exception as exc:  # the pool shrinks; _acquire reports when nothing is left
            if not isinstance(exc, SandboxError):
                raise SandboxError(f"could not replace a sandbox container: {exc}") from exc


def _connect(image: str) -> Any:
    try:
        import docker
    except ImportError as exc:
        raise SandboxError("the docker back end needs the Docker SDK: pip install 'docker>=7'") from exc
    try:
        client = docker.from_env()
        client.ping()
    except docker.errors.DockerException as exc:
        raise SandboxError(
            f"cannot reach the Docker engine ({exc}); is dockerd running? See docs/sandbox.md"
        ) from exc
    try:
        client.images.get(image)
    except docker.errors.ImageNotFound:
        raise SandboxError(
            f"docker image {image!r} not found; build it with `rewardkit sandbox build-image` (see docs/sandbox.md)"
        ) from None
    return client


def _owner_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def _reap_orphans(client: Any) -> None:
    """Remove containers left by a rewardkit process on this host that no longer exists."""
    import docker.errors

    host = socket.gethostname()
    # The low-level list does not inspect each container, so one vanishing meanwhile is no error.
    for summary in client.api.containers(all=True, filters={"label": LABEL}):
        owner = (summary.get("Labels") or {}).get(f"{LABEL}.owner", "")
        owner_host, _, pid = owner.rpartition(":")
        if owner_host == host and pid.isdigit() and not _alive(int(pid)):
            try:
                client.api.remove_container(summary["Id"], force=True)
            except (docker.errors.NotFound, docker.errors.APIError):
                pass


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
