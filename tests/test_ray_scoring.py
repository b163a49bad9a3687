"""The ``ray`` scoring executor on a real local Ray cluster (``ray.init()`` here; no mock): a mixed batch
with a hang, crashes and a raising verifier scores exactly as on the local worker pool, and an actor
killed mid-batch costs at most its own sample, which comes back ``error``, never lost."""

from __future__ import annotations

import os
import sys
import time

import cloudpickle
import pytest

ray = pytest.importorskip("ray", reason="the ray executor needs Ray (pip install ray)")

from rewardkit import Environment  # noqa: E402

cloudpickle.register_pickle_by_value(sys.modules[__name__])  # actors get these classes by value

TIMEOUT_S = 2.0


class Misbehaving(Environment):
    """Reward = the completion read as a number; some completions are sabotage."""

    name = "misbehaving_ray"

    def verify(self, completion, *, answer, prompt, info):
        if completion == "hang":
            while True:
                time.sleep(60)
        if completion == "abort":
            os.abort()
        if completion == "exit":
            os._exit(3)
        if completion == "raise":
            raise RuntimeError("verifier bug")
        if completion == "nan":
            return float("nan")
        if completion.startswith("sleep "):
            _, seconds, value = completion.split()
            time.sleep(float(seconds))
            return float(value)
        return float(completion)


@pytest.fixture(scope="module")
def cluster():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield
    ray.shutdown()


def _summary(scores):
    return [(s.status, s.reward) for s in scores]


def test_a_mixed_batch_scores_as_on_the_local_pool(cluster):
    batch = [
        {"completion": c} for c in ["1", "hang", "2", "abort", "3", "raise", "4", "exit", "5", "nan", "6"]
    ]
    with Misbehaving(timeout_s=TIMEOUT_S, workers=2, executor="ray") as on_ray:
        ray_scores = on_ray.score_batch(batch)
        pool = on_ray.scorer.pool
        assert type(pool).__name__ == "RayPool"
        assert pool.stats["timeouts"] == 1 and pool.stats["crashes"] == 2  # abort, _exit
        # The replaced actors serve the next batch normally, in order.
        assert [s.reward for s in on_ray.score_batch([{"completion": str(i)} for i in range(6)])] == list(
            range(6)
        )
    with Misbehaving(timeout_s=TIMEOUT_S, workers=2) as local:
        local_scores = local.score_batch(batch)
    assert _summary(ray_scores) == _summary(local_scores)
    assert [s.status for s in ray_scores] == [
        "ok", "timeout", "ok", "error", "ok", "error", "ok", "error", "ok", "error", "ok"
    ]  # fmt: skip
    assert "2 s limit" in ray_scores[1].info["reason"]
    assert "actor died" in ray_scores[3].info["reason"]
    assert "RuntimeError: verifier bug" in ray_scores[5].info["reason"]


def test_order_is_kept_when_samples_finish_out_of_order(cluster):
    samples = [{"completion": f"sleep {0.05 * ((12 - i) % 4)} {i}"} for i in range(12)]
    with Misbehaving(timeout_s=TIMEOUT_S * 5, workers=2, executor="ray") as env:
        assert [s.reward for s in env.score_batch(samples)] == [float(i) for i in range(12)]


def test_killing_an_actor_mid_batch_loses_no_sample(cluster):
    with Misbehaving(timeout_s=30, workers=2, executor="ray") as env:
        env.score_batch([{"completion": "0"}] * 2)  # both actors up
        futures = env.scorer.submit([{"completion": f"sleep 1 {i}"} for i in range(6)])
        pool = env.scorer.pool
        deadline = time.monotonic() + 30
        while not any(a.job is not None for a in pool._actors) and time.monotonic() < deadline:
            time.sleep(0.02)
        victim = next(a for a in pool._actors if a.job is not None)
        ray.kill(victim.handle)
        scores = [f.result(timeout=60) for f in futures]
    statuses = [s.status for s in scores]
    assert statuses.count("error") == 1 and statuses.count("ok") == 5, statuses
    dead = next(s for s in scores if s.status == "error")
    assert "actor died" in dead.info["reason"]
    assert sorted(s.reward for s in scores if s.status == "ok") == sorted(
        float(i) for i, s in enumerate(scores) if s.status == "ok"
    )


def test_a_scorer_that_cannot_start_on_the_cluster_fails_the_batch_clearly(cluster):
    class Unloadable:
        def __reduce__(self):
            return (_explode, ())

    env = Misbehaving(timeout_s=TIMEOUT_S, workers=1, executor="ray")
    env.broken = Unloadable()  # pickled with the environment; unpickling it on the actor raises
    with env:
        (score,) = env.score_batch([{"completion": "1"}])
    assert score.status == "error" and "cannot start" in score.info["reason"]


def _explode():
    raise RuntimeError("no such module on this node")


def test_an_actor_killed_while_its_sandbox_runs_leaves_no_container(cluster):
    """Code scored on Ray actors runs in the actor's own sandbox (docker here); killing the actor
    mid-program must not leave its container running (containers end with their owner's connection)."""
    docker = pytest.importorskip("docker")
    from rewardkit import load_env
    from rewardkit.sandbox.docker import LABEL

    try:
        client = docker.from_env()
        client.ping()
    except Exception as exc:  # noqa: BLE001
        pytest.skip(f"needs a running Docker engine: {exc}")
    env = load_env("code", sandbox="docker", executor="ray", workers=1, timeout_s=120)
    with env:
        assert env.score_batch([{"completion": "print(1)", "info": {"test_code": "pass"}}])[0].status == "ok"
        pool = env.scorer.pool
        (actor,) = pool._actors
        owner = f"{os.uname().nodename}:{actor.pid}"
        owned = lambda: client.api.containers(filters={"label": f"{LABEL}.owner={owner}"})  # noqa: E731
        assert owned(), "the actor's warm container runs while the actor lives"
        (future,) = env.scorer.submit(
            [{"completion": "import time; time.sleep(60)", "info": {"test_code": "pass"}}]
        )
        deadline = time.monotonic() + 30
        while actor.job is None and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(1.0)  # the program is running in the container
        ray.kill(actor.handle)
        score = future.result(timeout=60)
    assert score.status == "error" and "actor died" in score.info["reason"]
    deadline = time.monotonic() + 30
    while owned() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not owned(), f"containers of the killed actor still run: {owned()}"
