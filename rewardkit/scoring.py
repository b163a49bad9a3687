"""The scoring runtime: every sample an environment scores goes through here.

``Scorer`` is the runtime behind one environment: it validates samples (bad input becomes an
``invalid_input`` Score), shares verdicts of equal samples (``cache_key``), and runs ``verify`` on the
executor the environment's ``ScoringConfig`` names. It sees an environment only through the small
``Verifiable`` protocol, never by importing ``rewardkit.envs``. ``score_trajectories`` is the one
function that turns rollouts into scores, for the trainer, the evaluator and the demo alike.

Why not ``concurrent.futures.ProcessPoolExecutor`` for the process executor (``WorkerPool``): it cannot
stop a job that hangs, and one worker that dies (a segfault, ``os.abort()``, the OOM killer) breaks
the whole pool. Here each worker is a process with its own pipe; a dispatcher thread hands jobs to
workers (up to ``WORKER_PREFETCH`` each, so a worker goes from one job to the next without waiting for
a round trip) and watches the clock. A job past its deadline gets its worker SIGKILLed and replaced,
and comes back as a ``timeout`` Score; a worker that dies mid-job costs that job (status ``error``)
and is replaced. Every other job in the batch goes on; the jobs sent ahead to that worker had not
started, and run again elsewhere. Worker start-up (imports, unpickling the
environment) does not count against a job's time.

The ``thread`` executor (``ThreadPool``) cannot kill anything: Python has no way to stop a thread. A
job past its deadline resolves to a ``timeout`` Score at once, and its thread is abandoned: it keeps
running (and using CPU, if the verifier spins) until the verifier returns or the process exits, while
a fresh thread takes its place. The threads are daemons, so a hung verifier never keeps the
interpreter from exiting (``concurrent.futures.ThreadPoolExecutor`` joins its threads at exit, which
waits forever on a hung one). Only the ``process`` executor kills a hung verifier.

Everything returns ``concurrent.futures.Future`` objects underneath, so plain calls, threads and
asyncio (``asyncio.wrap_future``) are all served.
"""

from __future__ import annotations

import collections
import concurrent.futures
import contextlib
import functools
import multiprocessing as mp
import os
import pickle
import signal
import socket
import subprocess
import sys
import threading
import time
import weakref
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait
from typing import Any, Literal, Protocol

import cloudpickle

from rewardkit.config import check_choices
from rewardkit.inputs import InvalidInput, normalize_sample
from rewardkit.types import Completion, Sample, Score, Trajectory, as_score

ScoreFn = Callable[[Sample], Score]
MAX_STARTUP_DEATHS = 3
WORKER_PREFETCH = 4
"""Jobs a ``WorkerPool`` worker holds at once: the one it runs and the next ones, sent ahead so that it
never waits for the dispatcher between jobs (a round trip costs more than a cheap verifier)."""
MAX_STUCK_THREADS = 32
"""Abandoned (timed-out, still running) threads a ``ThreadPool`` tolerates before it refuses new jobs."""


@dataclass(frozen=True)
class ScoringConfig:
    """How an environment's samples are scored: the options every environment accepts in ``load_env``."""

    timeout_s: float = 10.0
    """Hard wall-clock limit per sample; past it the sample gets status ``timeout``."""
    workers: int | None = None
    """Samples scored at once (None: the CPU count, or what the environment says it can serve)."""
    memory_mb: int | None = None
    """Address-space cap per worker process (``process`` executor only; None: no cap)."""
    executor: Literal["process", "thread", "inline", "ray"] = "process"
    """``process``: isolated worker processes with hard timeouts (the default). ``thread``: for
    verifiers that wait on something else (a sandbox) and need no isolation of their own.
    ``inline``: in the caller's thread, no timeout (microsecond checks, debugging). ``ray``: actors
    on a Ray cluster, with the same timeouts, statuses and order as ``process``
    (``rewardkit.ray_pool``; ``workers`` is then the actors, default the cluster's CPUs)."""
    ray_address: str | None = None
    """The Ray cluster of the ``ray`` executor (None: ``RAY_ADDRESS``, else a local one)."""
    max_completion_chars: int = 1_000_000
    """Longer completions are ``invalid_input``."""
    cache_size: int = 100_000
    """Verdicts kept for ``cache_key`` hits (0 disables caching)."""

    def __post_init__(self) -> None:
        check_choices(self, where="scoring config")
        if isinstance(self.timeout_s, bool) or not self.timeout_s or self.timeout_s <= 0:
            raise ValueError(f"timeout_s must be > 0, got {self.timeout_s!r}")
        if self.workers is not None and self.workers < 1:
            raise ValueError(f"workers must be >= 1, got {self.workers!r}")
        if self.max_completion_chars < 1 or self.cache_size < 0:
            raise ValueError("max_completion_chars must be >= 1 and cache_size >= 0")


class Verifiable(Protocol):
    """What the runtime needs from an environment (``rewardkit.Environment`` provides it)."""

    scoring: ScoringConfig

    def verify(
        self, completion: Completion, *, answer: Any, prompt: Any, info: Mapping[str, Any]
    ) -> Score | float: ...

    def cache_key(
        self, completion: Completion, *, answer: Any, prompt: Any, info: Mapping[str, Any]
    ) -> Hashable | None: ...


class Scores(Protocol):
    """Anything with ``score_batch`` (every Environment): what ``score_trajectories`` needs."""

    def score_batch(self, samples: Iterable[Any]) -> list[Score]: ...


def score_one(env: Verifiable, sample: Sample) -> Score:
    """Call ``verify`` on one validated sample and coerce its result into a Score (may raise)."""
    result = env.verify(sample.completion, answer=sample.answer, prompt=sample.prompt, info=sample.info)
    return as_score(result)


def score_trajectories(env: Scores, trajectories: Sequence[Trajectory]) -> list[Score]:
    """Score rollouts: each becomes ``Sample.from_trajectory`` (task data plus the episode's info).

    The trainer, the evaluator and the demo all score through this function, so an episode that
    ended on an infrastructure failure gets the same status everywhere.
    """
    return env.score_batch([Sample.from_trajectory(t) for t in trajectories])


class Scorer:
    """The runtime behind one environment: validation, the verdict cache, and the executor.

    Thread-safe. Created on an environment's first ``score`` and closed with it; it is never pickled
    (each process that scores builds its own).
    """

    def __init__(self, env: Verifiable) -> None:
        self.config = cfg = env.scoring
        self._env = env
        self._cache: collections.OrderedDict[Hashable, Score] = collections.OrderedDict()
        self._lock = threading.Lock()
        self._pool: WorkerPool | Any = None
        self._threads: ThreadPool | None = None
        if cfg.executor == "process":
            scorer = functools.partial(score_one, env)
            self._pool = WorkerPool(
                scorer, workers=cfg.workers, timeout_s=cfg.timeout_s, memory_mb=cfg.memory_mb
            )
        elif cfg.executor == "ray":
            from rewardkit.ray_pool import RayPool  # Ray is optional: imported only when asked for

            self._pool = RayPool(
                functools.partial(score_one, env),
                workers=cfg.workers,
                timeout_s=cfg.timeout_s,
                memory_mb=cfg.memory_mb,
                address=cfg.ray_address,
            )
        elif cfg.executor == "thread":
            self._threads = ThreadPool(
                functools.partial(score_one, env), workers=cfg.workers or 8, timeout_s=cfg.timeout_s
            )

    def score_batch(self, samples: Iterable[Any]) -> list[Score]:
        """Score samples in parallel, each with its own timeout; the result order matches the input."""
        return [future.result() for future in self.submit(list(samples))]

    def submit(self, samples: Sequence[Any]) -> list[Future]:
        """One Future per sample, resolving to its Score (never raising)."""
        slots: list[Future | int] = []  # a Future, or the index of the sample in `to_run` that answers it
        to_run: list[tuple[Sample, Hashable | None]] = []
        by_key: dict[Hashable, int] = {}
        for raw in samples:
            sample, key, early = self._prepare(raw)
            if early is not None:
                slots.append(_done(early))
                continue
            if key is not None:
                if (cached := self._cache_get(key)) is not None:
                    slots.append(_done(cached))
                    continue
                if key in by_key:  # an equal sample earlier in this batch: share its verdict
                    slots.append(by_key[key])
                    continue
                by_key[key] = len(to_run)
            slots.append(len(to_run))
            to_run.append((sample, key))
        running = self._run([sample for sample, _ in to_run])  # all at once: one hand-over to the executor
        for future, (_, key) in zip(running, to_run):
            if key is not None:
                future.add_done_callback(lambda f, k=key: self._cache_put(k, f.result()))
        return [running[slot] if isinstance(slot, int) else slot for slot in slots]

    def _prepare(self, raw: Any) -> tuple[Sample | None, Hashable | None, Score | None]:
        """(validated sample, cache key, or the Score that answers it already)."""
        try:
            sample = normalize_sample(raw, self.config.max_completion_chars)
        except InvalidInput as exc:
            return None, None, Score.failure("invalid_input", str(exc))
        except Exception as exc:  # an object that breaks when read (a raising __len__ or __getitem__)
            return (
                None,
                None,
                Score.failure("invalid_input", f"sample could not be read: {type(exc).__name__}: {exc}"),
            )
        try:
            return sample, self._key(sample), None
        except Exception as exc:  # a cache_key that fails is that sample's error, not the batch's
            return None, None, Score.failure("error", f"cache_key failed: {type(exc).__name__}: {exc}")

    def _key(self, sample: Sample) -> Hashable | None:
        if not self.config.cache_size:
            return None
        key = self._env.cache_key(
            sample.completion, answer=sample.answer, prompt=sample.prompt, info=sample.info
        )
        if key is None:
            return None
        hash(key)  # an unhashable key (e.g. a tuple of message dicts) is this sample's error, not a raise
        return (key,)

    def _run(self, samples: list[Sample]) -> list[Future]:
        if not samples:
            return []
        if self._pool is not None:
            return self._pool.submit_many(samples)
        if self._threads is not None:
            return [self._threads.submit(sample) for sample in samples]
        return [_done(_safe_score(self._env, sample)) for sample in samples]

    def _cache_get(self, key: Hashable) -> Score | None:
        with self._lock:
            score = self._cache.get(key)
            if score is not None:
                self._cache.move_to_end(key)
            return score

    def _cache_put(self, key: Hashable, score: Score) -> None:
        if score.status != "ok":  # timeouts and crashes may be load-dependent: never cache them
            return
        with self._lock:
            self._cache[key] = score
            while len(self._cache) > self.config.cache_size:
                self._cache.popitem(last=False)

    @property
    def pool(self) -> WorkerPool | Any:
        """The worker processes (``process`` executor) or Ray actors (``ray``), for statistics and tests."""
        return self._pool

    @property
    def threads(self) -> ThreadPool | None:
        """The daemon threads (``thread`` executor), for statistics and tests."""
        return self._threads

    def close(self) -> None:
        if self._pool is not None:
            self._pool.close()
        if self._threads is not None:
            self._threads.close()


def _done(score: Score) -> Future:
    future: Future = Future()
    future.set_result(score)
    return future


def _safe_score(env: Verifiable, sample: Sample) -> Score:
    return _safe_call(functools.partial(score_one, env), sample)


def _safe_call(scorer: ScoreFn, sample: Any) -> Score:
    try:
        return scorer(sample)
    except Exception as exc:  # one sample's failure is that sample's status
        return Score.failure("error", f"{type(exc).__name__}: {exc}")


def _resolve(future: Future, score: Score) -> None:
    """Set a result unless another party (a deadline, a close) already did."""
    with contextlib.suppress(concurrent.futures.InvalidStateError):
        future.set_result(score)


@dataclass(eq=False)
class _Slot:
    """One daemon thread of a ``ThreadPool``: the job it runs and whether it was given up on."""

    job: _Job | None = None
    deadline: float = 0.0
    abandoned: bool = False


class ThreadPool:
    """Runs ``scorer(sample) -> Score`` on up to ``workers`` daemon threads with a per-job deadline.

    The deadline counts from when a thread takes the job (as in ``WorkerPool``). A job past it
    resolves to a ``timeout`` Score; its thread cannot be killed, so it is abandoned (counted in
    ``stats["stuck"]`` while it runs on) and a fresh thread replaces it. Past ``MAX_STUCK_THREADS``
    threads stuck at once, new jobs get an ``error`` Score instead of piling up more threads. All
    threads are daemons: a stuck one never blocks interpreter exit.
    """

    def __init__(self, scorer: ScoreFn, *, workers: int, timeout_s: float) -> None:
        self._scorer = scorer
        self.num_workers = max(1, workers)
        self.timeout_s = timeout_s
        self._cond = threading.Condition()
        self._queue: collections.deque[_Job] = collections.deque()
        self._busy: set[_Slot] = set()
        self._live = 0  # threads not abandoned
        self._idle = 0
        self._starting = 0  # started threads that have not yet asked for a job
        self._closed = False
        self._watchdog: threading.Thread | None = None
        self.stats = collections.Counter()  # timeouts, stuck (now), started: for logs and tests

    def submit(self, sample: Any) -> Future:
        """Queue one job; the Future resolves to a Score (never raises)."""
        future: Future = Future()
        with self._cond:
            if self._closed:
                raise RuntimeError("the scoring threads are closed")
            if self.stats["stuck"] >= MAX_STUCK_THREADS:
                future.set_result(Score.failure("error", self._too_many_stuck()))
                return future
            self._queue.append(_Job(sample, future, self.timeout_s))
            self._grow()
            self._cond.notify_all()
        return future

    def close(self) -> None:
        """Fail queued and running jobs (``error``); running threads are abandoned, never joined."""
        with self._cond:
            self._closed = True
            for job in self._queue:
                _resolve(job.future, Score.failure("error", "scoring closed before the job ran"))
            self._queue.clear()
            for slot in self._busy:
                slot.abandoned = True
                if slot.job is not None:
                    _resolve(slot.job.future, Score.failure("error", "scoring closed while the job ran"))
            self._cond.notify_all()

    def _too_many_stuck(self) -> str:
        return (
            f"{self.stats['stuck']} scoring threads are stuck in verifiers that did not return within "
            f"{self.timeout_s:g} s; threads cannot be killed: use executor='process', which kills a hung verifier"
        )

    def _grow(self) -> None:  # called with the lock held
        """Start threads while queued jobs outnumber idle threads, up to ``workers`` live ones."""
        while len(self._queue) > self._idle + self._starting and self._live < self.num_workers:
            self._start_thread()

    def _start_thread(self) -> None:  # called with the lock held
        self._live += 1
        self._starting += 1
        self.stats["started"] += 1
        threading.Thread(target=self._work, name="rewardkit-scoring-thread", daemon=True).start()
        if self._watchdog is None:
            self._watchdog = threading.Thread(
                target=self._watch, name="rewardkit-scoring-deadlines", daemon=True
            )
            self._watchdog.start()

    def _next_job(self, slot: _Slot) -> _Job | None:
        """Wait for a job and mark it running on ``slot``; None when this thread should exit."""
        with self._cond:
            while True:
                while not self._queue and not self._closed:
                    self._idle += 1
                    self._cond.wait()
                    self._idle -= 1
                if self._closed:
                    self._live -= 1
                    return None
                job = self._queue.popleft()
                if job.future.set_running_or_notify_cancel():
                    slot.job, slot.deadline = job, time.monotonic() + job.timeout_s
                    self._busy.add(slot)
                    self._cond.notify_all()  # the watchdog learns the new deadline
                    return job

    def _work(self) -> None:
        slot = _Slot()
        with self._cond:
            self._starting -= 1
        while (job := self._next_job(slot)) is not None:
            try:
                result = _safe_call(self._scorer, job.sample)
            except BaseException as exc:  # noqa: BLE001 - sys.exit() in a verifier: that sample's error
                result = Score.failure("error", f"{type(exc).__name__}: {exc}")
            _resolve(job.future, result)
            with self._cond:
                self._busy.discard(slot)
                slot.job = None
                if slot.abandoned:  # a fresh thread took this one's place: leave
                    self.stats["stuck"] -= int(not self._closed)
                    return

    def _watch(self) -> None:
        """Resolve jobs past their deadline as ``timeout`` and replace their threads."""
        with self._cond:
            while not self._closed:
                now = time.monotonic()
                # A job whose thread has its result but not yet the lock back is not late.
                running = [s for s in self._busy if s.job is not None and not s.job.future.done()]
                for slot in [s for s in running if now >= s.deadline]:
                    self._abandon(slot)
                deadlines = [s.deadline for s in running if not s.abandoned]
                self._cond.wait(timeout=max(0.0, min(deadlines) - now) if deadlines else None)
            self._watchdog = None

    def _abandon(self, slot: _Slot) -> None:  # called with the lock held
        job = slot.job
        assert job is not None
        self._busy.discard(slot)
        slot.abandoned = True
        self._live -= 1
        self.stats["timeouts"] += 1
        self.stats["stuck"] += 1
        _resolve(job.future, Score.failure("timeout", f"scoring exceeded the {job.timeout_s:g} s limit"))
        self._grow()


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
        except BaseException as exc:  # noqa: BLE001 - one sample's failure is that sample's status
            result = Score.from_exception(exc, memory_mb)
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
    sample: Any
    future: Future
    timeout_s: float
    id: int = 0


@dataclass
class _Worker:
    process: Any
    conn: Connection
    ready: bool = False
    jobs: collections.deque[_Job] = field(default_factory=collections.deque)
    """The jobs sent to this worker, in order: the first runs (``deadline`` is its), the rest wait."""
    broken: bool = False
    """A send failed: it is dying; its unread results are still taken, then it is replaced."""
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
    def submit(self, sample: Any, timeout_s: float | None = None) -> Future:
        """Queue one job; the Future resolves to a Score (never raises)."""
        return self.submit_many([sample], timeout_s)[0]

    def submit_many(self, samples: Sequence[Any], timeout_s: float | None = None) -> list[Future]:
        """Queue several jobs at once (one wake-up of the dispatcher); one Future per sample, in order."""
        futures: list[Future] = [Future() for _ in samples]
        with self._lock:
            if self._closed:
                raise RuntimeError("the scoring pool is closed")
            if self._init_error is not None:
                for future in futures:
                    future.set_result(
                        Score.failure("error", f"scoring workers cannot start: {self._init_error}")
                    )
                return futures
            for sample, future in zip(samples, futures):
                self._next_id += 1
                self._queue.append(_Job(sample, future, timeout_s or self.timeout_s, self._next_id))
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._dispatch_loop, name="rewardkit-scoring", daemon=True
                )
                self._thread.start()
        self._wake()
        return futures

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
            self._remove(worker)
            for i, job in enumerate(worker.jobs):  # the head ran; the jobs sent ahead had not started
                why = reason if i == 0 else "scoring pool closed before the job ran"
                _resolve(job.future, Score.failure("error", why))

    def _dispatch(self) -> None:
        while True:
            with self._lock:
                if self._closed:
                    return
                self._fill_workers()
                self._assign_jobs()
                waiting = [w.conn for w in self._workers if w.jobs or not w.ready]
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
        want = min(self.num_workers, len(self._queue) + sum(bool(w.jobs) for w in self._workers))
        while len(self._workers) < max(want, 0) and self._init_error is None:
            self._workers.append(self._spawn())

    def _assign_jobs(self) -> None:
        """Top every ready worker up to ``WORKER_PREFETCH`` jobs, one job per worker per round, so a
        batch spreads evenly; a worker runs its jobs in the order sent."""
        for depth in range(WORKER_PREFETCH):
            for worker in list(self._workers):
                if not self._queue:
                    return
                if worker.ready and not worker.broken and len(worker.jobs) <= depth:
                    self._send(worker, self._queue.popleft())

    def _send(self, worker: _Worker, job: _Job) -> None:
        if job.future.cancelled():
            return  # cancelled while queued
        try:
            data = pickle.dumps((job.id, job.sample), protocol=pickle.HIGHEST_PROTOCOL)
        except Exception as exc:  # an unpicklable sample is that sample's problem only
            _resolve(job.future, Score.failure("invalid_input", f"sample cannot be sent to a worker: {exc}"))
            return
        try:
            worker.conn.send_bytes(data)
        except OSError:  # the worker died: keep the job for another one
            self._queue.appendleft(job)
            if worker.jobs:  # results it sent before dying may still be unread: _receive drains them first
                worker.broken = True
            else:
                self._remove(worker)
                self.stats["crashes"] += 1
            return
        worker.jobs.append(job)
        if len(worker.jobs) == 1:
            self._start_head(worker)

    def _start_head(self, worker: _Worker) -> None:
        """The worker's first job is the one it runs now: its clock starts. From here its future is
        RUNNING and cannot be cancelled; one cancelled while it waited in the worker is run (the worker
        cannot skip it) but its result is dropped."""
        job = worker.jobs[0]
        if not job.future.running():
            job.future.set_running_or_notify_cancel()  # False: cancelled while held; result dropped
        worker.deadline = time.monotonic() + job.timeout_s

    def _next_wakeup(self) -> float:
        now = time.monotonic()
        deadlines = [w.deadline for w in self._workers if w.jobs]
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
        elif worker.jobs and kind == worker.jobs[0].id:
            _resolve(worker.jobs.popleft().future, value)
            if worker.jobs:
                self._start_head(worker)

    def _enforce_deadlines(self) -> None:
        now = time.monotonic()
        for worker in list(self._workers):
            if worker.jobs and now >= worker.deadline:
                self.stats["timeouts"] += 1
                self._replace(
                    worker,
                    "timeout",
                    f"scoring exceeded the {worker.jobs[0].timeout_s:g} s limit; worker killed",
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
        """Kill ``worker``: the job it ran gets ``status``; the jobs sent ahead of it had not started and
        go back to the front of the queue, in order, for the next worker."""
        self._remove(worker)
        if worker.jobs:
            _resolve(worker.jobs.popleft().future, Score.failure(status, reason))  # type: ignore[arg-type]
            self._queue.extendleft(reversed(worker.jobs))
            worker.jobs.clear()
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
