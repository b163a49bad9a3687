"""The docker back end: a warm pool of hardened containers, each running a job runner as PID 1.

A run costs one JSON line each way over the container's attached stdin/stdout and one fork+exec in
the container, so it is about as cheap as a local subprocess; ``docker run`` per program costs
hundreds of milliseconds. Between jobs the runner SIGKILLs every other process in the container and
empties its writable places; a container that misses a deadline, dies, or reports leftovers is
destroyed and replaced. Containers end when their owner's connection closes (``stdin_once`` +
``auto_remove``), so even a SIGKILLed host process leaks none; a closed or garbage-collected sandbox
and interpreter exit (Ctrl-C included) remove them at once.

This module holds only what is docker's: the hardened container, its attach socket's framing, and
the pool (an idle queue of ``pool_size`` containers, each lost one replaced). Talking to the runner,
the retry loop and the clean-up at close and exit are rewardkit/sandbox/warm.py's, shared with the
local back end.
"""

from __future__ import annotations

import concurrent.futures
import os
import queue
import socket
import struct
import uuid
import weakref
from dataclasses import dataclass
from typing import Any

from rewardkit.config import bad_value, check_ranges
from rewardkit.sandbox import runner, warm
from rewardkit.sandbox.base import (
    DEFAULT_MAX_OUTPUT_BYTES,
    PYTHON_COMMAND,
    ExecResult,
    RunnerLost,
    SandboxError,
    SandboxUnavailable,
    check_limits,
)

DEFAULT_IMAGE = "rewardkit-sandbox:latest"
LABEL = "rewardkit.sandbox"


@dataclass(frozen=True)
class DockerConfig:
    """Options of ``get_sandbox("docker", ...)``. Bad values raise ValueError at construction."""

    image: str = DEFAULT_IMAGE
    """Image with ``python3`` (and whatever ``command`` needs); build the default one with
    ``rewardkit sandbox build-image``."""
    pool_size: int | None = None
    """Warm containers; runs beyond it wait for a free one. Default: the CPU count."""
    command: tuple[str, ...] = PYTHON_COMMAND
    """Argv that runs the program inside the container; ``{file}`` becomes its path."""
    filename: str = "main.py"
    """Name of the source file in the job's work dir."""
    container_memory_mb: int = 1024
    """Memory cgroup limit of each container (no swap): the hard ceiling over the per-run
    ``memory_mb`` address-space limit."""
    cpus: float = 1.0
    """CPU share of each container."""
    pids_limit: int = 128
    """Processes (threads included) a container may hold; stops fork bombs."""
    tmpfs_mb: int = 64
    """Size of the writable /tmp where jobs run; the root filesystem is read-only."""
    max_output_bytes: int = DEFAULT_MAX_OUTPUT_BYTES
    """Per-stream output cap; passing it stops the run."""
    grace_s: float = 5.0
    """How long past a run's timeout the host waits for the runner before it gives the container up
    as hung (the run is then a timeout) and replaces it."""
    max_jobs_per_container: int = 1000
    """Replace a container after this many jobs, for hygiene."""
    start_timeout_s: float = 30.0
    """How long a new container may take to report ready."""
    user: str = "65534:65534"
    """uid:gid inside the container (never root)."""
    fork_server: bool = True
    """Run Python programs in children forked from a warm, job-free interpreter (skips interpreter
    start-up); False execs ``command`` for every run instead."""

    def __post_init__(self) -> None:
        where = "docker sandbox"
        if not any("{file}" in arg for arg in self.command):
            raise bad_value(
                where, "command", self.command, "an argv with a '{file}' argument, e.g. ['python3', '{file}']"
            )
        if self.user.split(":")[0] in ("0", "root", ""):
            raise bad_value(where, "user", self.user, "a non-root uid:gid, e.g. '65534:65534'")
        ranges = {"pool_size": ">= 1", "container_memory_mb": "> 0", "cpus": "> 0", "pids_limit": "> 0"}
        ranges |= {"tmpfs_mb": "> 0", "max_output_bytes": "> 0", "grace_s": ">= 0"}
        ranges |= {"max_jobs_per_container": ">= 1", "start_timeout_s": "> 0"}
        check_ranges(self, ranges, where=where)


class AttachStream(warm.RunnerStream):
    """Docker's attach socket: the runner's stdout and stderr arrive in frames behind 8-byte headers
    (stream number, size). Stdout feeds the shared line reader; the stderr tail explains a death."""

    def __init__(self, sock: socket.socket) -> None:
        super().__init__()
        self.sock = sock
        self._stderr = bytearray()

    def send_bytes(self, data: bytes) -> None:
        self.sock.sendall(data)

    def recv_bytes(self, deadline: float) -> bytes:
        while True:
            header = self._recv_exactly(8, deadline)
            stream, size = header[0], struct.unpack(">I", header[4:])[0]
            payload = self._recv_exactly(size, deadline)
            if stream != 1:
                self._stderr = (self._stderr + payload)[-4096:]
            elif payload:
                return payload

    def _recv_exactly(self, n: int, deadline: float) -> bytes:
        data = bytearray()
        while len(data) < n:
            try:
                self.sock.settimeout(warm.time_left(deadline))
                chunk = self.sock.recv(n - len(data))
            except TimeoutError as exc:
                raise RunnerLost(warm.MISSED_DEADLINE, hung=True) from exc
            except OSError as exc:
                raise RunnerLost(f"connection to runner failed: {exc}") from exc
            if not chunk:
                tail = self._stderr.decode("utf-8", "replace")
                raise RunnerLost(f"container ended{': ' + tail if tail else ''}")
            data += chunk
        return bytes(data)

    def close(self) -> None:
        try:
            self.sock.close()
        except (AttributeError, OSError):
            pass


class Container(warm.WarmRunner):
    """One warm hardened container whose PID 1 is the runner, attached to our socket."""

    def __init__(self, client: Any, cfg: DockerConfig, labels: dict[str, str]) -> None:
        super().__init__()
        self.container = client.containers.create(cfg.image, **_container_options(cfg, labels))
        with self.destroyed_on_failure():
            attached = self.container.attach_socket(
                params={"stdin": 1, "stdout": 1, "stderr": 1, "stream": 1}
            )
            self.stream = AttachStream(getattr(attached, "_sock", attached))
            self.container.start()
            self.await_ready(cfg.start_timeout_s)

    def destroy(self) -> None:
        """Close our end and remove the container now; never raises."""
        self.hangup()
        _remove(self.container)


def _container_options(cfg: DockerConfig, labels: dict[str, str]) -> dict[str, Any]:
    """The hardening: every limit here is one line of docs/sandbox.md's threat model."""
    from docker.types import LogConfig, Ulimit

    memory = f"{cfg.container_memory_mb}m"
    return {
        "command": warm.runner_argv("python3"),
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


class DockerSandbox:
    """Runs programs in a warm pool of hardened containers. Thread-safe; spread runs over threads."""

    kind = "docker"

    def __init__(self, **options: Any) -> None:
        self.config = DockerConfig(**options)
        self._client = _connect(self.config.image)
        self._labels = {LABEL: "1", f"{LABEL}.owner": _owner_id(), f"{LABEL}.instance": uuid.uuid4().hex}
        _reap_orphans(self._client)
        self._runners = warm.LiveRunners()  # every container of the pool, idle or busy
        self._finalizer = weakref.finalize(self, self._runners.destroy_all)
        self._idle: queue.SimpleQueue[Container] = queue.SimpleQueue()
        size = self.config.pool_size or os.cpu_count() or 2
        with concurrent.futures.ThreadPoolExecutor(max_workers=min(size, 8)) as pool:
            futures = [pool.submit(self._spawn) for _ in range(size)]
        errors = [f.exception() for f in futures if f.exception() is not None]
        if errors:
            self.close()
            raise SandboxUnavailable(
                f"could not start sandbox containers from {self.config.image!r}: {errors[0]}"
            )

    @property
    def pool_size(self) -> int:
        return len(self._runners.live())

    def protections(self) -> dict[str, bool]:
        names = ("network", "filesystem", "disk_quota", "memory", "pids", "cpu", "unprivileged_uid")
        return dict.fromkeys(names + ("no_new_privileges", "no_capabilities", "pid_namespace"), True)

    def run(self, code: str, *, stdin: str = "", timeout_s: float = 10.0, memory_mb: int = 512) -> ExecResult:
        check_limits(timeout_s, memory_mb)
        cfg = self.config
        memory_mb = min(memory_mb, cfg.container_memory_mb)
        job = warm.make_job(cfg, code, stdin, timeout_s, memory_mb, fork=cfg.fork_server)
        budget_s = timeout_s + cfg.grace_s
        return warm.run_with_retry(
            job, budget_s, cfg.max_jobs_per_container, self._acquire, self._release, "sandbox container"
        )

    def close(self) -> None:
        """Remove every container of the pool now. Idempotent; also runs at interpreter exit."""
        self._finalizer()

    def __enter__(self) -> DockerSandbox:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _spawn(self) -> Container:
        if self._runners.closed:
            raise SandboxError("the sandbox is closed")
        worker = Container(self._client, self.config, self._labels)
        if not self._runners.put(worker):  # closed while this one was starting: it is gone already
            raise SandboxError("the sandbox is closed")
        self._idle.put(worker)
        return worker

    def _acquire(self) -> Container:
        if self._runners.forked:
            raise SandboxError(
                "a docker sandbox cannot be used from a forked process (its connections belong to the "
                "parent); create it in the process that runs programs, or use threads"
            )
        while True:
            if self._runners.closed:
                raise SandboxError("the sandbox is closed")
            try:
                return self._idle.get(timeout=1.0)
            except queue.Empty:
                if not self._runners.live():
                    raise SandboxUnavailable(
                        "no sandbox containers are left (is the Docker engine running?)"
                    ) from None

    def _release(self, worker: warm.WarmRunner, keep: bool) -> None:
        if keep and not self._runners.closed:
            self._idle.put(worker)  # type: ignore[arg-type]
        else:
            self._replace(worker)

    def _replace(self, worker: warm.WarmRunner) -> None:
        self._runners.take(worker)
        worker.destroy()
        try:
            self._spawn()
        except Exception as exc:
            if self._runners.closed:
                return  # no replacement is wanted any more
            raise SandboxUnavailable(f"could not replace a sandbox container: {exc}") from exc


def _connect(image: str) -> Any:
    try:
        import docker
    except ImportError as exc:
        raise SandboxUnavailable("the docker back end needs the Docker SDK: pip install 'docker>=7'") from exc
    try:
        client = docker.from_env()
        client.ping()
    except docker.errors.DockerException as exc:
        raise SandboxUnavailable(
            f"cannot reach the Docker engine ({exc}); is dockerd running? See docs/sandbox.md"
        ) from exc
    try:
        client.images.get(image)
    except docker.errors.ImageNotFound:
        raise SandboxUnavailable(
            f"docker image {image!r} not found; build it with `rewardkit sandbox build-image` (see docs/sandbox.md)"
        ) from None
    except docker.errors.DockerException as exc:
        raise SandboxUnavailable(f"cannot look up docker image {image!r}: {exc}") from exc
    return client


def _owner_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def _reap_orphans(client: Any) -> None:
    """Remove containers left by a rewardkit process on this host that no longer exists."""
    import docker.errors

    host = socket.gethostname()
    try:
        # The low-level list does not inspect each container, so one vanishing meanwhile is no error.
        summaries = client.api.containers(all=True, filters={"label": LABEL})
    except docker.errors.DockerException as exc:
        raise SandboxUnavailable(f"cannot list containers on the Docker engine: {exc}") from exc
    for summary in summaries:
        owner = (summary.get("Labels") or {}).get(f"{LABEL}.owner", "")
        owner_host, _, pid = owner.rpartition(":")
        if owner_host == host and pid.isdigit() and not runner.pid_alive(int(pid)):
            try:
                client.api.remove_container(summary["Id"], force=True)
            except (docker.errors.NotFound, docker.errors.APIError):
                pass
