"""Bounded execution of scoring work: a pool of worker processes with a hard per-job deadline.

Why not ``concurrent.futures.ProcessPoolExecutor``: it cannot stop a job that hangs, and one worker
that dies (a segfault, ``os.abort()``, the OOM killer) breaks the whole pool. Here each worker is a
process with its own pipe; a dispatcher thread hands jobs to idle workers and watches the clock. A
job past its deadline gets its worker SIGKILLed and replaced, and comes back as a ``timeout`` Score;
a worker that dies mid-job costs that job (status ``error``) and is replaced. Every other job in the
batch goes on. Worker start-up (imports, unpickling the scorer) does not count against a job's time.

The pool is thread-safe and returns ``concurrent.futures.Future`` objects, so it serves plain calls,
threads and asyncio (``asyncio.wrap_future``) alike.
"""

from __future__ import annotations

import collections
import contextlib
import multiprocessing as mp
import os
import pickle
import signal
import socket
import subprocess
import sys
import threading
import time
import traceback
import weakref
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait
from typing import Any

import cloudpickle

from rewardkit.types import Score

ScoreFn = Callable[[dict[str, Any]], Score]
MAX_STARTUP_DEATHS = 3


def _worker_main(conn: Connection, payload: bytes, memory_mb: int | None) -> None:
    """Worker loop: unpickle the scorer once, then answer jobs until the pipe closes."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    try:
        scorer: ScoreFn = cloudpickle.loads(payload)
        if memory_mb:
            import resource

            limit = int(memory_mb) * 1024 * 1024
            resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    except BaseException as exc:  # noqa: BLE001 - reported to the parent, which fails the jobs clearly
        conn.send(("init_error", f"{type(exc).__name__}: {exc}"))
        return
    conn.send(("ready", os.getpid()))
    while True:
        try:
            job_id, sample = pickle.loads(conn.recv_bytes())
        except (EOFError, OSError):
            return
        try:
            result: Any = scorer(sample)
        except MemoryError:
            result = Score.failure("error", f"out of memory (worker cap {memory_mb} MB)")
        except BaseException as exc:  # noqa: BLE001 - one sample's failure is that sample's status
            tb = traceback.format_exc(limit=3)
            result = Score.failure("error", f"{type(exc).__name__}: {exc}", traceback=tb[-2000:])
        try:
            conn.send((job_id, result))
        except Exception as exc:  # an unpicklable Score payload
            conn.send((job_id, Score.failure("error", f"result could not be sent back: {exc}")))


def _worker_entry() -> None:
    """``python -c`` entry of a worker: argv is (socket fd, memory cap in MB or 0)."""
    conn = Connection(int(sys.argv[1]))
    memory_mb = int(sys.argv[2]) or None
    try:
        payload = conn.recv_bytes()
    except (EOFError, OSError):
        return
    _worker_main(conn, payload, memory_mb)


@dataclass
class _Job:
    sample: dict[str, Any]
    future: Future
    timeout_s: float
    id: int = 0


@dataclass
class _Worker:
    process: Any
    conn: Connection
    ready: bool = False
    job: _Job | None = None
    deadline: float = 0.0
    started: float = field(default_factory=time.monotonic)


class WorkerPool:
    """Runs ``scorer(sample) -> Score`` in ``workers`` processes with a hard per-job wall-clock limit.

    Args:
        scorer: a picklable (by cloudpickle) callable; it is sent to each worker once.
        workers: number of worker processes (default: the CPU count).
        timeout_s: default per-job limit, in seconds, counted from when a worker takes the job.
        memory_mb: address-space limit per worker (RLIMIT_AS), or None for none.
        startup_timeout_s: how long a worker may take to import and unpickle before it is considered broken.
    """

    def __init__(
        self,
        scorer: ScoreFn,
        *,
        workers: int | None = None,
        timeout_s: float = 10.0,
        memory_mb: int | None = None,
        startup_timeout_s: float = 120.0,
    ) -> None:
        self._payload = cloudpickle.dumps(scorer)
        self.num_workers = max(1, workers or os.cpu_count() or 1)
        self.timeout_s = timeout_s
        self.memory_mb = memory_mb
        self.startup_timeout_s = startup_timeout_s
        self._lock = threading.Lock()
        self._queue: collections.deque[_Job] = collections.deque()
        self._workers: list[_Worker] = []
        self._wake_r, self._wake_w = mp.Pipe(duplex=False)
        self._closed = False
        self._init_error: str | None = None
        self._startup_deaths = 0
        self._next_id = 0
        self.stats = collections.Counter()  # timeouts, crashes, restarts: for logs and tests
        self._thread: threading.Thread | None = None
        self._finalizer = weakref.finalize(self, WorkerPool._kill_all, self._workers)

    # ---- public API -------------------------------------------------------------------------------
    def submit(self, sample: dict[str, Any], timeout_s: float | None = None) -> Future:
        """Queue one job; the Future resolves to a Score (never raises)."""
        future: Future = Future()
        with self._lock:
            if self._closed:
                raise RuntimeError("the scoring pool is closed")
            if self._init_error is not None:
                future.set_result(Score.failure("error", f"scoring workers cannot start: {self._init_error}"))
                return future
            self._next_id += 1
            self._queue.append(_Job(sample, future, timeout_s or self.timeout_s, self._next_id))
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._dispatch_loop, name="rewardkit-scoring", daemon=True
                )
                self._thread.start()
        self._wake()
        return future

    def close(self) -> None:
        with self._lock:
            self._closed = True
            pending = list(self._queue)
            self._queue.clear()
        for job in pending:
            job.future.set_result(Score.failure("error", "scoring pool closed before the job ran"))
        self._wake()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=10)
        with self._lock:  # jobs still running when the pool closes must not leave callers waiting
            self._abort_running("scoring pool closed while the job ran")
        self._finalizer()

    # ---- dispatcher -------------------------------------------------------------------------------
    def _wake(self) -> None:
        with contextlib.suppress(OSError):
            self._wake_w.send_bytes(b"x")

    def _spawn(self) -> _Worker:
        """Start a worker as a fresh interpreter (``python -c``) joined to us by a socket pair.

        Not multiprocessing's spawn/forkserver: both re-import the caller's ``__main__`` in the child,
        which re-runs any script that lacks an ``if __name__ == "__main__"`` guard. A clean interpreter
        imports only rewardkit; the scorer arrives pickled by value.
        """
        parent_sock, child_sock = socket.socketpair()
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
        code = "from rewardkit.scoring import _worker_entry; _worker_entry()"
        args = [sys.executable, "-c", code, str(child_sock.fileno()), str(self.memory_mb or 0)]
        proc = subprocess.Popen(args, pass_fds=[child_sock.fileno()], stdin=subprocess.DEVNULL, env=env)
        child_sock.close()
        conn = Connection(parent_sock.detach())
        conn.send_bytes(self._payload)
        self.stats["started"] += 1
        return _Worker(proc, conn)

    def _dispatch_loop(self) -> None:
        try:
            self._dispatch()
        except BaseException as exc:  # noqa: BLE001 - e.g. a worker that cannot be started
            # A dead dispatcher would leave every caller waiting forever: fail what it held instead,
            # and let the next submit start a fresh dispatcher.
            reason = f"scoring dispatcher failed: {type(exc).__name__}: {str(exc).strip()}"
            with self._lock:
                self._thread = None
                self._fail_queue(reason)
                self._abort_running(reason)

    def _abort_running(self, reason: str) -> None:
        for worker in list(self._workers):
            job = worker.job
            self._remove(worker)
            if job is not None and not job.future.done():
                job.future.set_result(Score.failure("error", reason))

    def _dispatch(self) -> None:
        while True:
            with self._lock:
                if self._closed:
                    return
                self._fill_workers()
                self._assign_jobs()
                waiting = [w.conn for w in self._workers if w.job is not None or not w.ready]
                timeout = self._next_wakeup()
            ready = wait([*waiting, self._wake_r], timeout=timeout)
            if self._wake_r in ready:
                with contextlib.suppress(EOFError, OSError):
                    while self._wake_r.poll():
                        self._wake_r.recv_bytes()
            with self._lock:
                for worker in list(self._workers):
                    if worker.conn in ready:
                        self._receive(worker)
                self._enforce_deadlines()

    def _fill_workers(self) -> None:
        want = min(self.num_workers, len(self._queue) + sum(w.job is not None for w in self._workers))
        while len(self._workers) < max(want, 0) and self._init_error is None:
            self._workers.append(self._spawn())

    def _assign_jobs(self) -> None:
        for worker in list(self._workers):
            if not self._queue:
                return
            if not worker.ready or worker.job is not None:
                continue
            job = self._queue.popleft()
            # From here the future is RUNNING and cannot be cancelled: a cancel() that succeeded while
            # the job ran would make the later set_result raise inside the dispatcher.
            if not job.future.running() and not job.future.set_running_or_notify_cancel():
                continue  # cancelled while queued
            try:
                data = pickle.dumps((job.id, job.sample), protocol=pickle.HIGHEST_PROTOCOL)
            except Exception as exc:  # an unpicklable sample is that sample's problem only
                job.future.set_result(
                    Score.failure("invalid_input", f"sample cannot be sent to a worker: {exc}")
                )
                continue
            try:
                worker.conn.send_bytes(data)
            except OSError:  # the idle worker died: replace it and keep the job
                self._queue.appendleft(job)
                self._remove(worker)
                self.stats["crashes"] += 1
                continue
            worker.job, worker.deadline = job, time.monotonic() + job.timeout_s

    def _next_wakeup(self) -> float:
        now = time.monotonic()
        deadlines = [w.deadline for w in self._workers if w.job is not None]
        deadlines += [w.started + self.startup_timeout_s for w in self._workers if not w.ready]
        return max(0.0, min(deadlines) - now) if deadlines else 1.0

    def _receive(self, worker: _Worker) -> None:
        try:
            kind, value = worker.conn.recv()
        except (EOFError, OSError):
            reason = self._death_reason(worker)
            if not worker.ready:  # died while starting: retrying forever would spin, so give up after a few
                self._startup_deaths += 1
                if self._startup_deaths >= MAX_STARTUP_DEATHS:
                    self._init_error = f"{MAX_STARTUP_DEATHS} workers in a row died while starting ({reason})"
                    self._remove(worker)
                    self._fail_queue(f"scoring workers cannot start: {self._init_error}")
                    return
            self._replace(worker, "error", reason)
            return
        if kind == "ready":
            worker.ready = True
            self._startup_deaths = 0
        elif kind == "init_error":
            self._init_error = value
            self._remove(worker)
            self._fail_queue(f"scoring workers cannot start: {value}")
        elif worker.job is not None and kind == worker.job.id:
            worker.job.future.set_result(value)
            worker.job = None

    def _enforce_deadlines(self) -> None:
        now = time.monotonic()
        for worker in list(self._workers):
            if worker.job is not None and now >= worker.deadline:
                self.stats["timeouts"] += 1
                self._replace(
                    worker, "timeout", f"scoring exceeded the {worker.job.timeout_s:g} s limit; worker killed"
                )
            elif not worker.ready and now >= worker.started + self.startup_timeout_s:
                self._init_error = f"a worker did not start within {self.startup_timeout_s:g} s"
                self._remove(worker)
                self._fail_queue(self._init_error)

    def _death_reason(self, worker: _Worker) -> str:
        try:
            code = worker.process.wait(timeout=1)
        except subprocess.TimeoutExpired:
            code = None
        self.stats["crashes"] += 1
        if code is not None and code < 0:
            return f"scoring worker died from signal {signal.Signals(-code).name}"
        return f"scoring worker exited unexpectedly (exit code {code})"

    def _replace(self, worker: _Worker, status: str, reason: str) -> None:
        job = worker.job
        self._remove(worker)
        if job is not None and not job.future.done():
            job.future.set_result(Score.failure(status, reason))  # type: ignore[arg-type]
        self.stats["restarts"] += 1  # the next _fill_workers starts a fresh one if there is work

    def _remove(self, worker: _Worker) -> None:
        self._workers.remove(worker)
        _kill(worker)

    def _fail_queue(self, reason: str) -> None:
        while self._queue:
            job = self._queue.popleft()
            if not job.future.done():
                job.future.set_result(Score.failure("error", reason))

    @staticmethod
    def _kill_all(workers: list[_Worker]) -> None:
        for worker in list(workers):
            _kill(worker)
        workers.clear()


def _kill(worker: _Worker) -> None:
    with contextlib.suppress(Exception):
        worker.conn.close()
    if worker.process.poll() is None:
        with contextlib.suppress(Exception):
            worker.process.kill()
    with contextlib.suppress(Exception):
        worker.process.wait(timeout=2)
