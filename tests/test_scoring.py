"""The scoring engine: worker processes, hard per-sample timeouts, crash isolation, order, concurrency.

Verifiers here misbehave on purpose (sleep forever, ``os.abort()``, raise, eat memory). Each must cost
exactly its own sample while the rest of the batch scores, and the pool must replace the worker.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import math
import os
import sys
import threading
import time

import cloudpickle
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from rewardkit import Environment, Score, load_env
from rewardkit.scoring import WorkerPool
from rewardkit.types import STATUSES

# Workers receive these classes by value, so they need not import this test module (any import mode).
cloudpickle.register_pickle_by_value(sys.modules[__name__])

TIMEOUT_S = 1.0


class Misbehaving(Environment):
    """Reward = the completion read as a number; some completions are sabotage."""

    name = "misbehaving"

    def verify(self, completion, *, answer, prompt, info):
        if completion == "hang":
            while True:
                time.sleep(60)
        if completion == "abort":
            os.abort()
        if completion == "segfault":
            import ctypes

            ctypes.string_at(0)  # reads address 0: SIGSEGV
        if completion == "exit":
            os._exit(3)
        if completion == "raise":
            raise RuntimeError("verifier bug")
        if completion == "nan":
            return float("nan")
        if completion == "dict":
            return {"reward": 1.0}
        if completion == "hog":
            return float(len(bytearray(2 * 1024**3)))
        if completion.startswith("sleep "):  # "sleep <seconds> <value>": finishes out of order
            _, seconds, value = completion.split()
            time.sleep(float(seconds))
            return float(value)
        return float(completion)


@pytest.fixture(scope="module")
def env():
    with Misbehaving(timeout_s=TIMEOUT_S, workers=2) as misbehaving:
        yield misbehaving


def _pool(env: Environment) -> WorkerPool:
    pool = env.scorer.pool
    assert pool is not None
    return pool


def test_hang_and_abort_cost_one_sample_each(env):
    batch = ["1", "hang", "2", "abort", "3", "raise", "4", "exit", "5", "segfault", "6"]
    before = _pool(env).stats.copy()
    start = time.monotonic()
    scores = env.score_batch([{"completion": c} for c in batch])
    elapsed = time.monotonic() - start

    assert [s.status for s in scores] == [
        "ok",
        "timeout",
        "ok",
        "error",
        "ok",
        "error",
        "ok",
        "error",
        "ok",
        "error",
        "ok",
    ]
    assert [s.reward for s in scores] == [1.0, 0.0, 2.0, 0.0, 3.0, 0.0, 4.0, 0.0, 5.0, 0.0, 6.0]
    assert "1 s limit" in scores[1].info["reason"]
    assert "SIGABRT" in scores[3].info["reason"]
    assert "RuntimeError: verifier bug" in scores[5].info["reason"] and "traceback" in scores[5].info
    assert "exit code 3" in scores[7].info["reason"]
    assert "SIGSEGV" in scores[9].info["reason"]
    assert elapsed < TIMEOUT_S + 20, "a hung verifier must not hold the batch much past its own timeout"

    stats = _pool(env).stats
    assert stats["timeouts"] - before["timeouts"] == 1
    assert stats["crashes"] - before["crashes"] == 3  # abort, _exit, segfault; a raise is not a crash
    assert stats["restarts"] - before["restarts"] == 4
    assert stats["started"] - before["started"] >= 4  # killed workers were replaced

    assert len(_pool(env)._workers) <= 2  # replacements never exceed the configured pool size
    # The replaced workers serve the next batch normally.
    assert [s.reward for s in env.score_batch([{"completion": str(i)} for i in range(6)])] == list(range(6))


def test_bad_return_values_are_errors_not_zeros(env):
    nan, wrong_type = env.score_batch([{"completion": "nan"}, {"completion": "dict"}])
    assert (nan.status, wrong_type.status) == ("error", "error")
    assert (
        "not finite" in nan.info["reason"] and "must return a float or a Score" in wrong_type.info["reason"]
    )


def test_order_is_preserved_across_a_parallel_batch(env):
    # Earlier samples sleep longer, so workers finish them last.
    samples = [{"completion": f"sleep {0.02 * ((20 - i) % 5)} {i}"} for i in range(20)]
    assert [s.reward for s in env.score_batch(samples)] == [float(i) for i in range(20)]


def test_work_runs_in_parallel(env):
    env.score_batch([{"completion": "0"}] * 4)  # warm both workers up
    start = time.monotonic()
    env.score_batch([{"completion": "sleep 0.5 1"}] * 4)
    assert time.monotonic() - start < 1.9, "4 x 0.5 s on 2 workers should take about 1 s"


def test_ascore_from_asyncio(env):
    async def main() -> list[Score]:
        return await asyncio.gather(*(env.ascore(f"sleep 0.01 {i}") for i in range(24)))

    scores = asyncio.run(main())
    assert [s.reward for s in scores] == [float(i) for i in range(24)]


def test_ascore_does_not_block_the_event_loop(env):
    async def main() -> int:
        ticks = 0
        task = asyncio.ensure_future(env.ascore("sleep 0.5 1"))
        while not task.done():
            ticks += 1
            await asyncio.sleep(0.01)
        assert task.result().reward == 1.0
        return ticks

    assert asyncio.run(main()) >= 10


def test_score_from_several_threads_at_once(env):
    def work(k: int) -> list[float]:
        return [env.score(str(10 * k + i)).reward for i in range(5)]

    with concurrent.futures.ThreadPoolExecutor(max_workers=6) as threads:
        results = list(threads.map(work, range(6)))
    assert results == [[float(10 * k + i) for i in range(5)] for k in range(6)]


def test_memory_cap_turns_a_hog_into_an_error():
    with Misbehaving(timeout_s=10, workers=1, memory_mb=1024) as capped:
        hog, fine = capped.score_batch([{"completion": "hog"}, {"completion": "7"}])
    assert (hog.status, fine.status, fine.reward) == ("error", "ok", 7.0)
    assert "out of memory" in hog.info["reason"]


def test_thread_executor_has_a_timeout_too():
    with Misbehaving(executor="thread", timeout_s=0.3, workers=2) as threaded:
        slow, quick = threaded.score_batch([{"completion": "sleep 3 1"}, {"completion": "2"}])
    assert (slow.status, quick.status, quick.reward) == ("timeout", "ok", 2.0)


_HANGING_SCRIPT = """
import time
import rewardkit

@rewardkit.reward_env(name="hangs_forever", register=False)
def hangs_forever(completion, *, answer=None, prompt=None, info=None):
    while True:  # a verifier stuck in a loop: no thread can be killed, so only exit ends it
        time.sleep(0.01)

env = hangs_forever.env(executor="thread", timeout_s=0.5, workers=2)
scores = env.score_batch([{"completion": "a"}, {"completion": "b"}, {"completion": "c"}])
print(" ".join(s.status for s in scores), flush=True)
if CLOSE:
    env.close()
"""


@pytest.mark.parametrize("close", [True, False])
def test_a_hung_thread_verifier_does_not_block_exit(close):
    import subprocess

    script = _HANGING_SCRIPT.replace("CLOSE", str(close))
    start = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=30, check=False
    )
    assert done.returncode == 0, done.stderr
    # Three samples on two threads: the third runs on a thread that replaced an abandoned one.
    assert done.stdout.split() == ["timeout", "timeout", "timeout"]
    assert time.monotonic() - start < 15  # not joined at exit (the interpreter start dominates)


def test_thread_executor_replaces_stuck_threads_and_times_from_the_start_of_the_job():
    with Misbehaving(executor="thread", timeout_s=0.5, workers=1) as threaded:
        scores = threaded.score_batch([{"completion": "hang"}, {"completion": "sleep 0.3 7"}])
        assert [s.status for s in scores] == ["timeout", "ok"]  # queued time did not count
        assert scores[1].reward == 7.0
        assert threaded.scorer.threads is not None and threaded.scorer.threads.stats["stuck"] == 1


def test_thread_executor_runs_in_parallel_once_warm():
    with Misbehaving(executor="thread", timeout_s=5, workers=3) as threaded:
        threaded.score("1")  # one thread started and idle: the next batch must still get three
        start = time.monotonic()
        scores = threaded.score_batch([{"completion": f"sleep 0.4 {i}"} for i in range(3)])
        elapsed = time.monotonic() - start
    assert [s.reward for s in scores] == [0.0, 1.0, 2.0] and elapsed < 1.0


def test_thread_executor_refuses_work_past_the_stuck_thread_bound(monkeypatch):
    from rewardkit import scoring

    monkeypatch.setattr(scoring, "MAX_STUCK_THREADS", 1)
    with Misbehaving(executor="thread", timeout_s=0.2, workers=1) as threaded:
        assert threaded.score("hang").status == "timeout"
        refused = threaded.score("2")
    assert refused.status == "error" and "use executor='process'" in refused.info["reason"]


def test_thread_executor_close_resolves_a_running_job():
    threaded = Misbehaving(executor="thread", timeout_s=30, workers=1)
    (running,) = threaded.scorer.submit([{"completion": "hang"}])
    time.sleep(0.1)
    threaded.close()
    score = running.result(timeout=2)
    assert score.status == "error" and "closed while the job ran" in score.info["reason"]


def test_close_then_score_again():
    with Misbehaving(timeout_s=5, workers=1) as env:
        assert env.score("1").reward == 1.0
        env.close()
        assert env.score("2").reward == 2.0  # a closed env starts a fresh pool on demand


# ---- WorkerPool directly ---------------------------------------------------------------------


def _slow_double(sample: dict) -> Score:
    time.sleep(sample.get("sleep", 0.0))
    return Score.ok(2 * sample["x"])


def test_pool_per_job_timeout_overrides_the_default():
    pool = WorkerPool(_slow_double, workers=1, timeout_s=10)
    try:
        short = pool.submit({"x": 1, "sleep": 5}, timeout_s=0.3)
        assert short.result(timeout=30).status == "timeout"
        assert pool.submit({"x": 2}).result(timeout=30).reward == 4.0
    finally:
        pool.close()


def test_pool_close_resolves_running_and_queued_jobs():
    pool = WorkerPool(_slow_double, workers=1, timeout_s=30)
    running = pool.submit({"x": 1, "sleep": 30})
    queued = pool.submit({"x": 2})
    deadline = time.monotonic() + 30
    while not any(w.jobs for w in pool._workers) and time.monotonic() < deadline:
        time.sleep(0.02)  # wait until the first job is on a worker
    pool.close()
    assert running.result(timeout=5).status == "error"
    assert queued.result(timeout=5).info["reason"] == "scoring pool closed before the job ran"
    with pytest.raises(RuntimeError, match="closed"):
        pool.submit({"x": 3})


def test_pool_cancelled_futures_do_not_disturb_other_jobs():
    """asyncio.wait_for and concurrent.futures.wait may cancel futures; only queued ones can go."""
    pool = WorkerPool(_slow_double, workers=1, timeout_s=30)
    try:
        running = pool.submit({"x": 1, "sleep": 0.5})
        queued = pool.submit({"x": 2})
        after = pool.submit({"x": 3})
        deadline = time.monotonic() + 30
        while not running.running() and time.monotonic() < deadline:
            time.sleep(0.01)
        assert running.cancel() is False  # already on a worker
        assert queued.cancel() is True
        assert running.result(timeout=30).reward == 2.0
        assert after.result(timeout=30).reward == 6.0
        assert pool.stats["crashes"] == 0
    finally:
        pool.close()


def _misbehave(sample: dict) -> Score:
    if sample.get("hang"):
        time.sleep(60)
    if sample.get("abort"):
        os.abort()
    return Score.ok(2 * sample["x"])


def test_pool_keeps_a_worker_busy_and_loses_nothing_queued_behind_a_bad_job():
    """One worker holds the next jobs while it runs one (so it never waits for the dispatcher between
    jobs); jobs sent behind a job that hangs or kills the worker never started: they are run again,
    on the replacement, each with its own timeout counted from its own start."""
    pool = WorkerPool(_misbehave, workers=1, timeout_s=1.0)
    try:
        jobs = [{"x": 1}, {"x": 2, "hang": True}, *({"x": i} for i in range(3, 7))]
        jobs += [{"x": 7, "abort": True}, *({"x": i} for i in range(8, 12))]
        futures = pool.submit_many(jobs)
        scores = [f.result(timeout=60) for f in futures]
        assert [s.status for s in scores] == ["ok", "timeout", *["ok"] * 4, "error", *["ok"] * 4]
        assert [s.reward for s in scores if s.status == "ok"] == [2.0 * j["x"] for j in jobs if len(j) == 1]
        assert pool.stats["timeouts"] == 1 and pool.stats["crashes"] == 1
        # The pipeline really is fuller than one job: after a warm-up, the worker holds several at once.
        slow = pool.submit_many([{"x": 0, "hang": True}] + [{"x": i} for i in range(1, 6)])
        deadline = time.monotonic() + 30
        while not any(len(w.jobs) > 1 for w in pool._workers) and time.monotonic() < deadline:
            time.sleep(0.01)
        assert max(len(w.jobs) for w in pool._workers) > 1
        assert [f.result(timeout=60).status for f in slow] == ["timeout", *["ok"] * 5]
    finally:
        pool.close()


def test_pool_a_job_cancelled_while_held_by_a_worker_is_skipped():
    pool = WorkerPool(_slow_double, workers=1, timeout_s=30)
    try:
        running, held, after = pool.submit_many([{"x": 1, "sleep": 0.5}, {"x": 2}, {"x": 3}])
        deadline = time.monotonic() + 30
        while not running.running() and time.monotonic() < deadline:
            time.sleep(0.01)
        assert held.cancel() is True  # sent ahead to the worker, but not started: still cancellable
        assert running.result(timeout=30).reward == 2.0
        assert after.result(timeout=30).reward == 6.0
        assert held.cancelled()
    finally:
        pool.close()


def test_pool_reports_a_scorer_that_cannot_start():
    def _fail_on_load() -> None:
        raise ImportError("a dependency is missing in the worker")

    class LoadsBadly:
        def __reduce__(self):
            return (_fail_on_load, ())

        def __call__(self, sample):
            return Score.ok(1.0)

    pool = WorkerPool(LoadsBadly(), workers=2, timeout_s=5)
    try:
        scores = [f.result(timeout=60) for f in [pool.submit({}) for _ in range(3)]]
        assert {s.status for s in scores} == {"error"}
        assert (
            "cannot start" in scores[0].info["reason"] and "dependency is missing" in scores[0].info["reason"]
        )
        assert pool.submit({}).result(timeout=5).status == "error"  # fails fast from now on
    finally:
        pool.close()


def test_pool_survives_a_worker_that_cannot_be_started(monkeypatch):
    """A process start that fails (EAGAIN) must fail the waiting jobs, not leave callers blocked forever."""
    import subprocess

    pool = WorkerPool(_slow_double, workers=1, timeout_s=5)
    real_popen = subprocess.Popen

    def cannot_start(*args, **kwargs):
        raise OSError(11, "Resource temporarily unavailable")

    try:
        monkeypatch.setattr(subprocess, "Popen", cannot_start)
        failed = pool.submit({"x": 1}).result(timeout=10)
        assert failed.status == "error" and "Resource temporarily unavailable" in failed.info["reason"]
        monkeypatch.setattr(subprocess, "Popen", real_popen)
        assert pool.submit({"x": 1}).result(timeout=60).reward == 2.0  # a fresh dispatcher takes over
    finally:
        pool.close()


def test_unpicklable_sample_is_that_samples_problem(env):
    lock = threading.Lock()
    bad, good = env.score_batch([{"completion": "1", "answer": lock}, {"completion": "2"}])
    assert (bad.status, good.reward) == ("invalid_input", 2.0)
    assert "cannot be sent to a worker" in bad.info["reason"]


# ---- caching ---------------------------------------------------------------------------------


class Counting(Environment):
    """Counts verify calls (inline executor, so the count lives in this process)."""

    name = "counting"

    def __init__(self, **config):
        super().__init__(executor="inline", **config)
        self.calls = 0

    def verify(self, completion, *, answer, prompt, info):
        self.calls += 1
        if completion == "raise":
            raise ValueError("flaky")
        return float(len(completion))

    def cache_key(self, completion, *, answer, prompt, info):
        return (completion, answer)


def test_cache_shares_verdicts_but_never_caches_failures():
    env = Counting()
    scores = env.score_batch([{"completion": "ab"}, {"completion": "ab"}, {"completion": "abc"}])
    assert [s.reward for s in scores] == [2.0, 2.0, 3.0] and env.calls == 2
    assert env.score("ab").reward == 2.0 and env.calls == 2
    assert env.score("ab", answer="other").reward == 2.0 and env.calls == 3
    env.score("raise")
    env.score("raise")
    assert env.calls == 5  # an error is retried, not replayed from the cache
    uncached = Counting(cache_size=0)
    uncached.score_batch([{"completion": "ab"}] * 3)
    assert uncached.calls == 3


def test_unhashable_or_raising_cache_key_fails_only_that_sample():
    class BadKey(Counting):
        def cache_key(self, completion, *, answer, prompt, info):
            if completion == "boom":
                raise KeyError("no key")
            return completion  # a tuple of message dicts is unhashable

    env = BadKey()
    messages, boom, fine = env.score_batch(
        [
            {"completion": [{"role": "assistant", "content": "hi"}]},
            {"completion": "boom"},
            {"completion": "abc"},
        ]
    )
    assert (messages.status, boom.status, fine.reward) == ("error", "error", 3.0)
    assert "cache_key failed: TypeError: unhashable" in messages.info["reason"]
    assert "cache_key failed: KeyError" in boom.info["reason"]


def test_environment_config_errors_are_clear():
    with pytest.raises(ValueError, match="executor"):
        Misbehaving(executor="gpu")
    with pytest.raises(ValueError, match="timeout_s"):
        Misbehaving(timeout_s=0)
    with pytest.raises(ValueError, match="workers"):
        Misbehaving(workers=0)


# ---- bad input, case by case ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("completion", "reason"),
    [
        (None, "completion is None"),
        (b"4", "bytes"),
        (bytearray(b"4"), "bytes"),
        (4, "got int"),
        (4.5, "got float"),
        ("x" * 1_000_001, "over the limit"),
        ("ok \ud800 broken", "not valid unicode"),
        ([], "empty message list"),
        ({"role": "assistant", "content": "4"}, "single dict"),
        (["4"], "message 0 is a str"),
        ([None], "message 0 is a NoneType"),
        ([{"content": "4"}], "message 0 has role None"),
        ([{"role": "robot", "content": "4"}], "message 0 has role 'robot'"),
        ([{"role": "assistant", "content": 4}], "content is a int"),
        ([{"role": "assistant", "content": [{"type": "image_url", "image_url": {}}]}], "type 'image_url'"),
        ([{"role": "assistant", "content": "\udfff"}], "not valid unicode"),
    ],
)
def test_bad_completions_are_invalid_input_with_a_reason(fmt_inline_default, completion, reason):
    score = fmt_inline_default.score(completion)
    assert (score.reward, score.status) == (0.0, "invalid_input")
    assert reason in score.info["reason"]


@pytest.mark.parametrize(
    ("sample", "reason"),
    [
        ("just a string", "a sample must be a dict"),
        ({"answer": "4"}, "no 'completion' key"),
        ({"completion": "4", "info": "not a dict"}, "info must be a dict"),
        ({"completion": "4", "prompt": [{"role": "wizard", "content": "q"}]}, "role 'wizard'"),
    ],
)
def test_bad_samples_are_invalid_input(fmt_inline_default, sample, reason):
    scores = fmt_inline_default.score_batch([sample, {"completion": "<think>a</think><answer>b</answer>"}])
    assert scores[0].status == "invalid_input" and reason in scores[0].info["reason"]
    assert scores[1].reward == 1.0  # the rest of the batch is unaffected


def test_content_none_and_extra_keys_are_tolerated(fmt_inline_default):
    messages = [
        {"role": "assistant", "content": None, "tool_calls": [{"id": "1"}], "weird": object()},
        {"role": "assistant", "content": "<think>a</think><answer>b</answer>"},
    ]
    assert fmt_inline_default.score(messages).reward == 1.0


@pytest.fixture(scope="module")
def fmt_inline_default():
    with load_env("format") as env:
        yield env


# ---- property tests: score never raises ----------------------------------------------------------

LEAVES = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | st.text(max_size=30)
    | st.binary(max_size=30)
    | st.text(st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF), min_size=1, max_size=3)
)
MESSAGE_KEYS = st.sampled_from(["role", "content", "name", "tool_calls", "user", "assistant"])
OBJECTS = st.recursive(
    LEAVES,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.tuples(inner, inner)
        | st.dictionaries(MESSAGE_KEYS | st.text(max_size=5), inner, max_size=4)
        | st.builds(dict, role=st.sampled_from(["user", "assistant", "tool", "robot"]) | inner, content=inner)
    ),
    max_leaves=12,
)
ANY_VALUE = OBJECTS | st.from_type(type).flatmap(st.from_type)
MESSAGES = st.lists(
    st.builds(dict, role=st.sampled_from(["user", "assistant", "tool"]), content=st.text(max_size=20)),
    min_size=1,
    max_size=3,
)
COMPLETIONS = st.text(max_size=50) | MESSAGES | ANY_VALUE  # valid often enough to reach the verifier
INFOS = st.none() | st.dictionaries(st.text(max_size=5), ANY_VALUE, max_size=3) | ANY_VALUE
PROPERTY = settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))


def _well_formed(score: Score) -> None:
    assert isinstance(score, Score)
    assert score.status in STATUSES
    assert isinstance(score.reward, float) and math.isfinite(score.reward)
    if score.status != "ok":
        assert score.reward == 0.0 and isinstance(score.info.get("reason"), str) and score.info["reason"]


@pytest.fixture(scope="module")
def fmt_inline():
    with load_env("format", strict=False, max_completion_chars=2000) as env:
        yield env


@pytest.fixture(scope="module")
def fmt_process():
    with load_env("format", strict=False, executor="process", workers=1) as env:
        yield env


@PROPERTY
@given(text=st.text())
def test_any_text_scores_ok(fmt_inline, text):
    score = fmt_inline.score(text)
    _well_formed(score)
    assert score.status == "ok" and 0.0 <= score.reward <= 1.0


@PROPERTY
@given(data=st.binary())
def test_bytes_are_invalid_input(fmt_inline, data):
    score = fmt_inline.score(data)
    assert (score.status, score.reward) == ("invalid_input", 0.0)


@PROPERTY
@given(
    text=st.text(st.characters(codec="utf-8")), bad=st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF)
)
def test_broken_unicode_is_invalid_input(fmt_inline, text, bad):
    score = fmt_inline.score(text[: len(text) // 2] + bad + text[len(text) // 2 :])
    assert score.status == "invalid_input" and "unicode" in score.info["reason"]


@PROPERTY
@given(n=st.integers(2001, 50_000))
def test_huge_strings_are_invalid_input(fmt_inline, n):
    assert fmt_inline.score("x" * n).status == "invalid_input"
    assert fmt_inline.score([{"role": "assistant", "content": "x" * n}]).status == "invalid_input"


@PROPERTY
@given(completion=COMPLETIONS, answer=ANY_VALUE, prompt=COMPLETIONS, info=INFOS)
def test_arbitrary_objects_never_raise(fmt_inline, completion, answer, prompt, info):
    score = fmt_inline.score(completion, answer=answer, prompt=prompt, info=info)
    _well_formed(score)
    event(score.status)


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    samples=st.lists(
        st.fixed_dictionaries({"completion": COMPLETIONS}, optional={"answer": ANY_VALUE, "info": INFOS})
        | ANY_VALUE,
        max_size=6,
    )
)
def test_arbitrary_batches_through_worker_processes(fmt_process, samples):
    """Through real workers: arbitrary answers and infos must also survive pickling (or be invalid)."""
    scores = fmt_process.score_batch(samples)
    assert len(scores) == len(samples)
    for score in scores:
        _well_formed(score)
        event(score.status)  # --hypothesis-show-statistics: both ok and failure paths are exercised


class _DiesOnLoad:
    """Unpickling it kills the worker process outright (like a crashing import)."""

    def __reduce__(self):
        import os

        return (os._exit, (3,))


def test_workers_that_die_while_starting_fail_the_jobs_instead_of_respawning_forever():
    pool = WorkerPool(_DiesOnLoad(), workers=1, timeout_s=5)
    try:
        score = pool.submit({}).result(timeout=60)
        assert score.status == "error" and "died while starting" in score.info["reason"]
        assert pool.stats["started"] <= 3
        assert pool.submit({}).result(timeout=5).status == "error"
    finally:
        pool.close()


@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
@given(items=st.lists(st.integers(0, 99).map(str) | st.sampled_from(["raise", "nan", "dict"]), max_size=12))
def test_order_and_isolation_hold_for_any_batch(env, items):
    """Any mix of good and failing samples: each result lands at its own index."""
    scores = env.score_batch([{"completion": c} for c in items])
    assert [s.reward for s in scores] == [float(c) if c.isdigit() else 0.0 for c in items]
    assert [s.status for s in scores] == ["ok" if c.isdigit() else "error" for c in items]


@pytest.mark.parametrize("executor", ["thread", "inline"])
def test_executors_agree(env, executor):
    samples = [{"completion": c} for c in ["3", "raise", "nan", "12", None]]
    with Misbehaving(executor=executor, timeout_s=5, workers=2) as other:
        theirs = other.score_batch(samples)
    ours = env.score_batch(samples)
    assert [(s.reward, s.status) for s in theirs] == [(s.reward, s.status) for s in ours]
