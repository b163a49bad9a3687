"""The warm-runner core of both back ends, written once.

A warm runner is ``runner.py`` serving jobs as PID 1 of a docker container or of a bubblewrap sandbox
(a local warm slot). Everything between the host and such a runner lives here: the byte stream to it
(``RunnerStream``; a subprocess's pipes for local, docker's attach socket for docker), JSON-line
framing with deadlines, the handshake and the job dict, the run loop (a lost runner gets one fresh
retry, a hung one is a timeout, a runner that is not clean afterwards or has done its share of jobs
is destroyed instead of reused), and the pool hygiene (``LiveRunners``: every live runner of one
sandbox, shared with its exit-time finalizer, left alone by a forked child). A back end adds only how
to spawn and destroy a runner, and how it hands runners out (docker: an idle queue over a fixed pool;
local: one slot per slot uid).
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import select
import subprocess
import threading
import time
from collections.abc import Callable, Hashable, Iterator
from pathlib import Path
from typing import Any, Protocol

from rewardkit.sandbox import runner
from rewardkit.sandbox.base import ExecResult, RunnerLost, SandboxError

MISSED_DEADLINE = "runner missed its deadline"
ANSWER_FIELDS = ("exit_code", "stdout", "stderr", "timed_out", "wall_s", "truncated")
_ITSELF: Any = object()
"""The default key of a registered runner: the runner itself (None is a key: local's uid-less slots)."""


@functools.cache
def runner_source() -> str:
    """The runner's source, sent verbatim as an argument (read on first use, not at import)."""
    return Path(runner.__file__).read_text()


def runner_argv(python: str) -> list[str]:
    """The argv that starts the runner as PID 1 under ``python`` (no file needed where it runs)."""
    return [python, "-I", "-u", "-c", runner.BOOTSTRAP, runner_source(), "serve"]


def time_left(deadline: float) -> float:
    """Seconds until ``deadline``; past it the runner is hung (RunnerLost with ``hung``)."""
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise RunnerLost(MISSED_DEADLINE, hung=True)
    return remaining


# ---- the connection -------------------------------------------------------------------------------
class RunnerStream:
    """A byte stream to one runner's stdin and stdout, read as JSON lines with deadlines.

    Subclasses say how bytes move (``send_bytes``, ``recv_bytes``, ``close``); the framing is here.
    """

    def __init__(self) -> None:
        self._buf = bytearray()

    def send_bytes(self, data: bytes) -> None:
        """Write all of ``data`` to the runner's stdin; OSError when that fails."""
        raise NotImplementedError

    def recv_bytes(self, deadline: float) -> bytes:
        """Some (never no) bytes of the runner's stdout; RunnerLost at its end or past ``deadline``."""
        raise NotImplementedError

    def close(self) -> None:
        """Close our end (the runner reads end of input and exits); idempotent, never raises."""
        raise NotImplementedError

    def send(self, message: dict[str, Any]) -> None:
        try:
            self.send_bytes(json.dumps(message).encode() + b"\n")
        except (OSError, ValueError) as exc:  # ValueError: the stream was already closed
            raise RunnerLost(f"cannot send job: {exc}") from exc

    def receive(self, deadline: float) -> dict[str, Any]:
        """The runner's next JSON line."""
        while b"\n" not in self._buf:
            self._buf += self.recv_bytes(deadline)
        line, _, rest = bytes(self._buf).partition(b"\n")
        self._buf = bytearray(rest)
        try:
            message = json.loads(line)
        except ValueError:
            message = None
        if not isinstance(message, dict):
            raise RunnerLost(f"runner sent garbage: {line[:200]!r}")
        return message


class PipeStream(RunnerStream):
    """The stdin and stdout pipes of a subprocess running the runner (a local warm slot)."""

    def __init__(self, proc: subprocess.Popen[bytes]) -> None:
        super().__init__()
        self.proc = proc

    def send_bytes(self, data: bytes) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(data)
        self.proc.stdin.flush()

    def recv_bytes(self, deadline: float) -> bytes:
        assert self.proc.stdout is not None
        try:
            fd = self.proc.stdout.fileno()
            if not select.select([fd], [], [], time_left(deadline))[0]:
                raise RunnerLost(MISSED_DEADLINE, hung=True)
            chunk = os.read(fd, 1 << 16)
        except (OSError, ValueError) as exc:  # ValueError: closed meanwhile
            raise RunnerLost(f"connection to runner failed: {exc}") from exc
        if not chunk:
            raise RunnerLost(f"runner ended (status {self.proc.poll()})")
        return chunk

    def close(self) -> None:
        for stream in (self.proc.stdin, self.proc.stdout):
            try:
                if stream is not None:
                    stream.close()
            except OSError:
                pass


# ---- one runner -----------------------------------------------------------------------------------
class WarmRunner:
    """One live runner. A back end's subclass spawns it, sets ``stream``, calls ``await_ready``, and
    says how to ``destroy`` it (which must never raise, and may run before ``stream`` is set)."""

    stream: RunnerStream | None = None

    def __init__(self) -> None:
        self.jobs = 0

    @contextlib.contextmanager
    def destroyed_on_failure(self) -> Iterator[None]:
        """Whatever goes wrong while starting, nothing of the runner is left behind."""
        try:
            yield
        except BaseException:
            self.destroy()
            raise

    def await_ready(self, start_timeout_s: float) -> None:
        assert self.stream is not None
        ready = self.stream.receive(time.monotonic() + start_timeout_s)
        if not ready.get("ready"):
            raise RunnerLost(f"runner did not report ready: {ready!r}")

    def execute(self, job: dict[str, Any], deadline: float) -> dict[str, Any]:
        """Send one job and return the runner's answer; RunnerLost if it does not answer in time."""
        assert self.stream is not None
        self.jobs += 1
        self.stream.send(job)
        return self.stream.receive(deadline)

    def hangup(self) -> None:
        """Close our end of the stream: the runner reads end of input and exits by itself."""
        if self.stream is not None:
            self.stream.close()

    def destroy(self) -> None:
        raise NotImplementedError


# ---- one run --------------------------------------------------------------------------------------
class JobConfig(Protocol):
    """The fields of LocalConfig and DockerConfig that every job carries."""

    command: tuple[str, ...]
    filename: str
    max_output_bytes: int


def make_job(
    cfg: JobConfig, code: str, stdin: str, timeout_s: float, memory_mb: int, **extra: Any
) -> dict[str, Any]:
    """The JSON job of runner.py's protocol; ``extra`` are back-end fields (``fork``, ``fsize_mb``)."""
    return {
        "code": code,
        "stdin": stdin,
        "timeout_s": timeout_s,
        "memory_mb": memory_mb,
        "max_output_bytes": cfg.max_output_bytes,
        "argv": list(cfg.command),
        "filename": cfg.filename,
        **extra,
    }


def result_from_answer(answer: dict[str, Any]) -> ExecResult:
    return ExecResult(**{name: answer[name] for name in ANSWER_FIELDS})


def run_with_retry(
    job: dict[str, Any],
    budget_s: float,
    max_jobs: int,
    acquire: Callable[[], WarmRunner],
    release: Callable[[WarmRunner, bool], None],
    what: str,
) -> ExecResult:
    """Run ``job`` on a runner from ``acquire`` and hand the runner back with ``release(runner, keep)``.

    ``budget_s`` is the run's timeout plus the grace the runner has to answer. A runner lost mid-job
    gets one fresh retry, then it is the sandbox's fault (RunnerLost); a runner still silent at the
    end of the budget is stuck on the program's account, which is a timeout. ``keep`` is False for a
    lost runner, one that did not report itself clean, one whose answer was an error, and one that
    has done ``max_jobs`` jobs.
    """
    lost: RunnerLost | None = None
    for _ in range(2):
        worker = acquire()
        started = time.monotonic()
        try:
            answer = worker.execute(job, started + budget_s)
        except RunnerLost as exc:
            release(worker, False)
            if exc.hung:
                return ExecResult(None, "", "", timed_out=True, wall_s=time.monotonic() - started)
            lost = exc
            continue
        failed = "error" in answer
        release(worker, answer.get("clean") is True and not failed and worker.jobs < max_jobs)
        if failed:
            raise SandboxError(f"sandbox runner failed: {answer['error']}")
        return result_from_answer(answer)
    raise RunnerLost(f"{what} lost twice running one program: {lost}") from lost


# ---- pool hygiene ---------------------------------------------------------------------------------
class LiveRunners:
    """The runners one sandbox holds, by key; shared with its exit-time finalizer (which must not
    hold the sandbox). Which runners are registered is the back end's choice: docker registers every
    container while it lives, local its idle slots by slot uid."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.by_key: dict[Hashable, WarmRunner] = {}
        self.pid = os.getpid()
        self.closed = False

    @property
    def forked(self) -> bool:
        """True in a forked child: these runners belong to the parent."""
        return os.getpid() != self.pid

    def live(self) -> list[WarmRunner]:
        with self.lock:
            return list(self.by_key.values())

    def put(self, worker: WarmRunner, key: Hashable = _ITSELF) -> bool:
        """Register ``worker`` under ``key`` (default: itself). Once closed: destroy it, return False."""
        with self.lock:
            if not self.closed:
                self.by_key[worker if key is _ITSELF else key] = worker
                return True
        worker.destroy()
        return False

    def take(self, key: Hashable) -> WarmRunner | None:
        with self.lock:
            return self.by_key.pop(key, None)

    def destroy_all(self) -> None:
        """Close: destroy every registered runner now; later ``put`` calls destroy theirs.

        In a forked child only the child's view closes: the runners are its parent's.
        """
        self.closed = True  # before the lock: a fork may have copied it held
        if self.forked:
            return
        with self.lock:
            workers, self.by_key = list(self.by_key.values()), {}
        for worker in workers:  # closing our end alone already ends each runner
            worker.hangup()
        _destroy_concurrently(workers)


def _destroy_concurrently(workers: list[WarmRunner]) -> None:
    """Destroy in parallel (removing a container is an engine round trip); one by one where no new
    thread can start (at interpreter shutdown)."""
    if len(workers) < 2:
        for worker in workers:
            worker.destroy()
        return
    threads = [threading.Thread(target=worker.destroy) for worker in workers]
    try:
        for thread in threads:
            thread.start()
    except RuntimeError:
        threads = [t for t in threads if t.ident is not None]
        for worker in workers[len(threads) :]:
            worker.destroy()
    for thread in threads:
        thread.join()
