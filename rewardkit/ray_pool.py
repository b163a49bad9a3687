"""Scoring on a Ray cluster: the ``ray`` executor of ``ScoringConfig``, with ``WorkerPool``'s guarantees.

Each worker is a Ray actor (one CPU, spread over the cluster's nodes) that holds the environment's
scorer, sent to it once by value (cloudpickle, as for the local worker processes). A dispatcher thread
in the driver hands each idle actor one job at a time and watches the clock:

- per-sample timeout, counted from when the job was handed to an actor: a job past it is ``timeout``,
  its actor is killed (``ray.kill``: a hung verifier cannot hold a CPU forever) and replaced;
- an actor that dies mid-job (a segfault, ``os.abort()``, the OOM killer, a lost node, someone's
  ``ray.kill``) costs that job (status ``error``, the reason says the actor died); the rest of the
  batch goes on, on a replacement actor;
- results come back in input order (``Scorer.submit`` keeps one Future per sample), and a verifier
  that raises is that sample's ``error``, exactly as in ``WorkerPool``;
- back-pressure: at most ``workers`` jobs are in flight on the cluster at once; the others wait in the
  driver's queue, so a large batch never floods the object store.

The cluster: ``address`` (``ScoringConfig.ray_address``), else ``RAY_ADDRESS``, else a local Ray started
on first use (``ray.init()``); a driver that already called ``ray.init`` is used as it is. Ray is an
optional dependency: ``pip install "ray[default]"``.
"""

from __future__ import annotations

import collections
import os
import threading
import time
from collections.abc import Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

import cloudpickle

from rewardkit.types import Score

__all__ = ["RayPool"]


def _ray() -> Any:
    try:
        import ray
    except ImportError as exc:  # pragma: no cover - depends on the installation
        raise ImportError('executor "ray" needs Ray: pip install "ray[default]"') from exc
    return ray


def _mapped_bytes() -> int:
    """This process's virtual address space in bytes (``VmSize``; 0 where /proc is missing)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError):
        return 0


class _ScoreActor:
    """The actor's class (made a Ray actor in ``RayPool``): unpickle the scorer once, then score."""

    def __init__(self, payload: bytes, memory_mb: int | None) -> None:
        if memory_mb:
            import resource

            # Counted from what the actor maps already: a Ray worker's address space holds Ray's own
            # mappings (the object store of a `ray start` node: gigabytes), so an absolute cap of
            # memory_mb could be below it and fail every later mmap, imports included
            limit = _mapped_bytes() + int(memory_mb) * 1024 * 1024
            resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
        self._scorer = cloudpickle.loads(payload)
        self._memory_mb = memory_mb

    def ready(self) -> int:
        return os.getpid()

    def score(self, sample: Any) -> Any:
        try:
            return self._scorer(sample)
        except BaseException as exc:  # noqa: BLE001 - one sample's failure is that sample's status
            return Score.from_exception(exc, self._memory_mb)


@dataclass
class _Job:
    sample: Any
    future: Future
    timeout_s: float


@dataclass
class _Actor:
    handle: Any
    starting: Any = None
    """The ``ready()`` call's ref until the actor has started (imports, the scorer unpickled), then None."""
    started: float = field(default_factory=time.monotonic)
    pid: int | None = None
    """The actor's process id once it has started (on its node)."""
    job: _Job | None = None
    ref: Any = None
    deadline: float = 0.0


class RayPool:
    """``WorkerPool``'s interface (``submit``, ``submit_many``, ``close``, ``stats``) over Ray actors.

    Args:
        scorer: a picklable (by cloudpickle) callable ``sample -> Score``.
        workers: actors, i.e. jobs in flight at once (default: the cluster's CPUs, at most 64).
        timeout_s: default per-job limit, from when an actor takes the job.
        memory_mb: how much address space each actor may add to what it maps at start (Ray's own
            mappings), or None.
        address: the Ray cluster (None: ``RAY_ADDRESS`` or a local one).
        startup_timeout_s: how long an actor may take to start before the pool gives up on it.
    """

    def __init__(
        self,
        scorer: Any,
        *,
        workers: int | None = None,
        timeout_s: float = 10.0,
        memory_mb: int | None = None,
        address: str | None = None,
        startup_timeout_s: float = 120.0,
    ) -> None:
        ray = _ray()
        if not ray.is_initialized():
            ray.init(address=address or os.environ.get("RAY_ADDRESS") or None, log_to_driver=False)
        self._payload = cloudpickle.dumps(scorer)
        self.num_workers = max(1, workers or min(64, int(ray.cluster_resources().get("CPU", 1))))
        self.timeout_s = timeout_s
        self.memory_mb = memory_mb
        self.startup_timeout_s = startup_timeout_s
        self._init_error: str | None = None
        self._remote = ray.remote(num_cpus=1, max_restarts=0, max_task_retries=0)(_ScoreActor).options(
            scheduling_strategy="SPREAD"
        )
        self._lock = threading.Condition()
        self._queue: collections.deque[_Job] = collections.deque()
        self._actors: list[_Actor] = []
        self._closed = False
        self._thread: threading.Thread | None = None
        self.stats: collections.Counter = collections.Counter()

    # ---- public API -------------------------------------------------------------------------------
    def submit(self, sample: Any, timeout_s: float | None = None) -> Future:
        """Queue one job; the Future resolves to a Score (never raises)."""
        return self.submit_many([sample], timeout_s)[0]

    def submit_many(self, samples: Sequence[Any], timeout_s: float | None = None) -> list[Future]:
        """Queue several jobs; one Future per sample, in order."""
        futures: list[Future] = [Future() for _ in samples]
        with self._lock:
            if self._closed:
                raise RuntimeError("the scoring pool is closed")
            self._queue.extend(_Job(s, f, timeout_s or self.timeout_s) for s, f in zip(samples, futures))
            if self._thread is None:
                self._thread = threading.Thread(target=self._dispatch_loop, name="rewardkit-ray", daemon=True)
                self._thread.start()
            self._lock.notify_all()
        return futures

    def close(self) -> None:
        with self._lock:
            self._closed = True
            pending = list(self._queue)
            self._queue.clear()
            self._lock.notify_all()
        for job in pending:
            _resolve(job.future, Score.failure("error", "scoring pool closed before the job ran"))
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=10)
        for actor in list(self._actors):
            if actor.job is not None:
                _resolve(actor.job.future, Score.failure("error", "scoring pool closed while the job ran"))
            self._kill(actor)
        self._actors.clear()

    # ---- dispatcher -------------------------------------------------------------------------------
    def _dispatch_loop(self) -> None:
        ray = _ray()
        try:
            while True:
                with self._lock:
                    if self._closed:
                        return
                    self._assign()
                    running = {a.ref: a for a in self._actors if a.job is not None}
                    starting = {a.starting: a for a in self._actors if a.starting is not None}
                    if not running and not starting:
                        self._lock.wait(timeout=1.0)
                        continue
                    deadlines = [a.deadline for a in running.values()]
                    deadlines += [a.started + self.startup_timeout_s for a in starting.values()]
                    timeout = max(0.0, min(deadlines) - time.monotonic())
                done, _ = ray.wait([*running, *starting], num_returns=1, timeout=min(timeout, 0.5))
                with self._lock:
                    for ref in done:
                        if ref in starting:
                            self._started(starting[ref], ref)
                        else:
                            self._finish(running[ref], ref)
                    self._enforce_deadlines()
        except BaseException as exc:  # noqa: BLE001 - a dead dispatcher must not leave callers waiting
            reason = f"ray scoring dispatcher failed: {type(exc).__name__}: {exc}"
            with self._lock:
                self._thread = None
                while self._queue:
                    _resolve(self._queue.popleft().future, Score.failure("error", reason))
                for actor in self._actors:
                    if actor.job is not None:
                        _resolve(actor.job.future, Score.failure("error", reason))
                        actor.job = None

    def _assign(self) -> None:
        """Start actors up to ``workers`` while there is work, and hand each started, idle one the next
        job. An actor's start-up (imports, unpickling the scorer) does not count against a job's time."""
        if self._init_error is not None:
            self._fail_queue(f"scoring actors cannot start: {self._init_error}")
            return
        while len(self._actors) < min(self.num_workers, len(self._queue) + self._busy()):
            handle = self._remote.remote(self._payload, self.memory_mb)
            self._actors.append(_Actor(handle, starting=handle.ready.remote()))
            self.stats["started"] += 1
        for actor in self._actors:
            if not self._queue:
                return
            if actor.job is not None or actor.starting is not None:
                continue
            job = self._queue.popleft()
            if not job.future.set_running_or_notify_cancel():
                continue  # cancelled while queued
            actor.job, actor.ref = job, actor.handle.score.remote(job.sample)
            actor.deadline = time.monotonic() + job.timeout_s

    def _busy(self) -> int:
        return sum(a.job is not None for a in self._actors)

    def _started(self, actor: _Actor, ref: Any) -> None:
        ray = _ray()
        actor.starting = None
        try:
            actor.pid = ray.get(ref)
        except Exception as exc:  # noqa: BLE001 - e.g. the scorer cannot be unpickled on the cluster
            self._init_error = _first_line(exc)
            self._replace(actor)
            self._fail_queue(f"scoring actors cannot start: {self._init_error}")

    def _fail_queue(self, reason: str) -> None:
        while self._queue:
            _resolve(self._queue.popleft().future, Score.failure("error", reason))

    def _finish(self, actor: _Actor, ref: Any) -> None:
        ray = _ray()
        job = actor.job
        if job is None:
            return
        actor.job, actor.ref = None, None
        try:
            result = ray.get(ref)
        except ray.exceptions.RayActorError as exc:  # the actor died mid-job: that job's loss only
            self.stats["crashes"] += 1
            self._replace(actor)
            _resolve(job.future, Score.failure("error", f"scoring actor died: {_first_line(exc)}"))
            return
        except Exception as exc:  # noqa: BLE001 - e.g. the result could not be deserialised
            _resolve(job.future, Score.failure("error", f"{type(exc).__name__}: {_first_line(exc)}"))
            return
        _resolve(job.future, result)

    def _enforce_deadlines(self) -> None:
        now = time.monotonic()
        for actor in list(self._actors):
            if actor.starting is not None and now >= actor.started + self.startup_timeout_s:
                self._init_error = f"an actor did not start within {self.startup_timeout_s:g} s"
                self._replace(actor)
                self._fail_queue(f"scoring actors cannot start: {self._init_error}")
                continue
            if actor.job is not None and now >= actor.deadline:
                job = actor.job
                self.stats["timeouts"] += 1
                self._replace(actor)
                reason = f"scoring exceeded the {job.timeout_s:g} s limit; actor killed"
                _resolve(job.future, Score.failure("timeout", reason))

    def _replace(self, actor: _Actor) -> None:
        self._kill(actor)
        self._actors.remove(actor)
        self.stats["restarts"] += 1  # the next _assign starts a fresh one if there is work

    def _kill(self, actor: _Actor) -> None:
        try:
            _ray().kill(actor.handle, no_restart=True)
        except Exception:  # noqa: BLE001 - already dead
            pass


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def _resolve(future: Future, score: Score) -> None:
    if not future.done():
        try:
            future.set_result(score)
        except Exception:  # noqa: BLE001 - resolved by another party meanwhile
            pass
