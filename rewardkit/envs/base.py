"""The Environment base: one score API, one rollout loop, for single- and multi-turn episodes.

A subclass says *what* to check (``verify``) and, for multi-turn episodes, how the environment answers
the policy (``env_response``). The base owns everything a user should not have to get right again:
input validation, parallel worker processes with a hard per-sample timeout, caching of repeated
verdicts, and the rollout loop the trainer and evaluator call without knowing how many turns there are.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import contextlib
import threading
from collections.abc import Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from rewardkit.inputs import InvalidInput, normalize_sample
from rewardkit.types import Completion, Message, Score, Task, Trajectory, as_score

EXECUTORS = ("process", "thread", "inline")


@dataclass(frozen=True)
class EnvStep:
    """The environment's answer to one policy turn."""

    messages: tuple[Message, ...] = ()
    """Messages to append before the policy's next turn (e.g. tool results, "higher"/"lower")."""
    done: bool = False
    """End the episode now (a final answer was given, the game is over)."""
    reward: float | None = None
    """Optional per-turn reward, recorded in ``Trajectory.turn_rewards``."""
    info: dict[str, Any] = field(default_factory=dict)


class Environment:
    """Base class of every reward environment.

    Subclasses implement ``verify`` (and optionally ``cache_key``, ``gold_examples``, ``tasks``, and
    for multi-turn episodes ``env_response`` with ``max_turns``). They take their own keyword config,
    validate it (raising ``ValueError``/``TypeError`` with a clear message), and pass the rest here.

    Args:
        timeout_s: hard wall-clock limit per sample; past it the sample gets status ``timeout``.
        workers: parallel scoring workers (default: CPU count).
        memory_mb: address-space cap per worker process (``process`` executor only).
        executor: ``process`` (isolated workers, hard timeouts: the default), ``thread`` (for
            verifiers that wait on something else, e.g. a sandbox, and need no isolation of their
            own), or ``inline`` (in the caller's thread, no timeout: for debugging).
        max_completion_chars: longer completions are ``invalid_input``.
        cache_size: verdicts kept for ``cache_key`` hits (0 disables caching).
    """

    name: ClassVar[str] = ""
    max_turns: ClassVar[int] = 1
    max_total_tokens: int | None = None
    pass_threshold: float = 1.0
    """A sample counts as passed (for pass@k) when its reward reaches this value."""

    def __init__(
        self,
        *,
        timeout_s: float = 10.0,
        workers: int | None = None,
        memory_mb: int | None = None,
        executor: str = "process",
        max_completion_chars: int = 1_000_000,
        cache_size: int = 100_000,
    ) -> None:
        if executor not in EXECUTORS:
            raise ValueError(f"executor must be one of {EXECUTORS}, got {executor!r}")
        if not timeout_s or timeout_s <= 0:
            raise ValueError(f"timeout_s must be > 0, got {timeout_s!r}")
        if workers is not None and workers < 1:
            raise ValueError(f"workers must be >= 1, got {workers!r}")
        self.timeout_s = float(timeout_s)
        self.workers = workers
        self.memory_mb = memory_mb
        self.executor = executor
        self.max_completion_chars = max_completion_chars
        self.cache_size = cache_size
        self._runtime: _Runtime | None = None
        self._runtime_lock = threading.Lock()

    # ---- what subclasses implement -------------------------------------------------------------------
    def verify(
        self, completion: Completion, *, answer: Any, prompt: Any, info: Mapping[str, Any]
    ) -> Score | float:
        """Score one validated completion. Runs in a worker; may raise (the sample gets status ``error``)."""
        raise NotImplementedError(f"{type(self).__name__} must implement verify()")

    def cache_key(
        self, completion: Completion, *, answer: Any, prompt: Any, info: Mapping[str, Any]
    ) -> Hashable | None:
        """A key under which equal samples share one verdict (computed in the caller's process), or None."""
        return None

    def gold_examples(self) -> list[dict[str, Any]]:
        """Samples (``completion``, ``answer``, ``prompt``, ``info``) that must score ``pass_threshold`` or more."""
        return []

    def tasks(self, split: str = "train") -> Sequence[Task]:
        """The environment's dataset for a split."""
        raise NotImplementedError(f"environment {self.name or type(self).__name__!r} has no built-in dataset")

    def initial_state(self, task: Task) -> dict[str, Any]:
        """Per-episode state handed to ``env_response``."""
        return {"task": task}

    def env_response(self, messages: list[Message], state: dict[str, Any]) -> EnvStep:
        """Answer the policy's latest turn (``messages[-1]``). The default ends the episode: single turn."""
        return EnvStep(done=True)

    # ---- scoring (provided) -----------------------------------------------------------------------
    def score(self, completion: Any, *, answer: Any = None, prompt: Any = None, info: Any = None) -> Score:
        """Score one completion. Never raises on bad input: see ``Score.info["status"]``."""
        return self.score_batch(
            [{"completion": completion, "answer": answer, "prompt": prompt, "info": info}]
        )[0]

    async def ascore(
        self, completion: Any, *, answer: Any = None, prompt: Any = None, info: Any = None
    ) -> Score:
        """``score`` for asyncio code: the event loop is never blocked by verification."""
        sample = {"completion": completion, "answer": answer, "prompt": prompt, "info": info}
        futures = self._submit([sample])
        return (await asyncio.gather(*(asyncio.wrap_future(f) for f in futures)))[0]

    def score_batch(self, samples: Iterable[Any]) -> list[Score]:
        """Score samples in parallel, each with its own timeout; the result order matches the input."""
        return [future.result() for future in self._submit(list(samples))]

    def _submit(self, samples: list[Any]) -> list[concurrent.futures.Future]:
        runtime = self._get_runtime()
        futures: list[concurrent.futures.Future] = []
        by_key: dict[Hashable, concurrent.futures.Future] = {}
        for raw in samples:
            try:
                sample = normalize_sample(raw, self.max_completion_chars)
            except InvalidInput as exc:
                futures.append(_done(Score.failure("invalid_input", str(exc))))
                continue
            except Exception as exc:  # an object that breaks when read (a raising __len__ or __getitem__)
                reason = f"sample could not be read: {type(exc).__name__}: {exc}"
                futures.append(_done(Score.failure("invalid_input", reason)))
                continue
            try:
                key = self._key(sample)
            except Exception as exc:  # a cache_key that fails is that sample's error, not the batch's
                futures.append(
                    _done(Score.failure("error", f"cache_key failed: {type(exc).__name__}: {exc}"))
                )
                continue
            if key is not None:
                if (cached := runtime.cache_get(key)) is not None:
                    futures.append(_done(cached))
                    continue
                if key in by_key:  # an equal sample earlier in this batch: share its verdict
                    futures.append(by_key[key])
                    continue
            future = runtime.submit(sample)
            if key is not None:
                by_key[key] = future
                future.add_done_callback(lambda f, k=key: runtime.cache_put(k, f.result()))
            futures.append(future)
        return futures

    def _key(self, sample: dict[str, Any]) -> Hashable | None:
        if not self.cache_size:
            return None
        key = self.cache_key(
            sample["completion"], answer=sample["answer"], prompt=sample["prompt"], info=sample["info"]
        )
        if key is None:
            return None
        hash(key)  # an unhashable key (e.g. a tuple of message dicts) is this sample's error, not a raise
        return (key,)

    def _score_one(self, sample: dict[str, Any]) -> Score:
        """Runs in the worker: call ``verify`` and coerce its result into a Score."""
        result = self.verify(
            sample["completion"], answer=sample["answer"], prompt=sample["prompt"], info=sample["info"]
        )
        return as_score(result)

    def _get_runtime(self) -> _Runtime:
        with self._runtime_lock:
            if self._runtime is None:
                self._runtime = _Runtime(self)
            return self._runtime

    def close(self) -> None:
        """Stop worker processes (also happens at interpreter exit)."""
        with self._runtime_lock:
            if self._runtime is not None:
                self._runtime.close()
                self._runtime = None

    def __enter__(self) -> Environment:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_runtime"] = None
        state.pop("_runtime_lock", None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._runtime_lock = threading.Lock()

    # ---- rollout (provided) -----------------------------------------------------------------------
    def rollout(
        self, generator: Any, tasks: Sequence[Task], *, n: int = 1, sampling: Any = None
    ) -> list[Trajectory]:
        """Run ``n`` episodes per task with ``generator``; returns ``len(tasks) * n`` trajectories, grouped by task.

        Works for single- and multi-turn environments alike: the loop asks ``env_response`` after each
        policy turn. Token ids are the source of truth; see ``rewardkit.envs.rollout``.
        """
        from rewardkit.envs.rollout import run_episodes

        return run_episodes(self, generator, tasks, n=n, sampling=sampling)

    def as_trl_reward_func(self, **kwargs: Any) -> Any:
        """A reward function for TRL's ``GRPOTrainer``; see ``rewardkit.interop``."""
        from rewardkit.interop import as_trl_reward_func

        return as_trl_reward_func(self, **kwargs)

    def as_verl_compute_score(self) -> Any:
        """A ``compute_score`` function for verl; see ``rewardkit.interop``."""
        from rewardkit.interop import as_verl_compute_score

        return as_verl_compute_score(self)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} name={self.name!r}>"


def _done(score: Score) -> concurrent.futures.Future:
    future: concurrent.futures.Future = concurrent.futures.Future()
    future.set_result(score)
    return future


class _Runtime:
    """The executor behind one environment, plus its verdict cache."""

    def __init__(self, env: Environment) -> None:
        from rewardkit.scoring import WorkerPool

        self.executor = env.executor
        self.timeout_s = env.timeout_s
        self._env = env
        self._cache: collections.OrderedDict[Hashable, Score] = collections.OrderedDict()
        self._cache_size = env.cache_size
        self._lock = threading.Lock()
        self._pool: WorkerPool | None = None
        self._threads: concurrent.futures.ThreadPoolExecutor | None = None
        if env.executor == "process":
            self._pool = WorkerPool(
                env._score_one, workers=env.workers, timeout_s=env.timeout_s, memory_mb=env.memory_mb
            )
        elif env.executor == "thread":
            self._threads = concurrent.futures.ThreadPoolExecutor(max_workers=env.workers or 8)

    def submit(self, sample: dict[str, Any]) -> concurrent.futures.Future:
        if self._pool is not None:
            return self._pool.submit(sample)
        if self._threads is not None:
            inner = self._threads.submit(_safe_score, self._env, sample)
            return _with_deadline(inner, self.timeout_s)
        return _done(_safe_score(self._env, sample))

    def cache_get(self, key: Hashable) -> Score | None:
        with self._lock:
            score = self._cache.get(key)
            if score is not None:
                self._cache.move_to_end(key)
            return score

    def cache_put(self, key: Hashable, score: Score) -> None:
        if score.status != "ok":  # timeouts and crashes may be load-dependent: never cache them
            return
        with self._lock:
            self._cache[key] = score
            while len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.close()
        if self._threads is not None:
            self._threads.shutdown(wait=False, cancel_futures=True)


def _safe_score(env: Environment, sample: dict[str, Any]) -> Score:
    try:
        return env._score_one(sample)
    except Exception as exc:  # one sample's failure is that sample's status
        return Score.failure("error", f"{type(exc).__name__}: {exc}")


def _with_deadline(inner: concurrent.futures.Future, timeout_s: float) -> concurrent.futures.Future:
    """A future that resolves to the inner result, or to a ``timeout`` Score after ``timeout_s``."""
    outer: concurrent.futures.Future = concurrent.futures.Future()

    def expire() -> None:
        with contextlib.suppress(concurrent.futures.InvalidStateError):
            outer.set_result(Score.failure("timeout", f"scoring exceeded the {timeout_s:g} s limit"))

    timer = threading.Timer(timeout_s, expire)
    timer.daemon = True

    def finish(f: concurrent.futures.Future) -> None:
        timer.cancel()
        try:
            result = f.result()
        except BaseException as exc:  # noqa: BLE001
            result = Score.failure("error", f"{type(exc).__name__}: {exc}")
        with contextlib.suppress(concurrent.futures.InvalidStateError):
            outer.set_result(result)

    timer.start()
    inner.add_done_callback(finish)
    return outer
