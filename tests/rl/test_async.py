"""``rollout_mode: async``: a real rollout process (spawned, its own policy copy and generator) samples
ahead of the trainer by a fixed ``max_staleness``.

What is checked: staleness 0 is the synchronous run bit for bit; a stale run is deterministic and says
how stale each step was and how far the sampler was from the trainer; a run killed with SIGKILL at
random points and resumed each time trains every step on the prompts (and samples) of the run that was
never interrupted; a rollout process that fails, an environment that cannot travel to it, and several
ranks each give a clear error."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from rewardkit.registry import FunctionEnv  # noqa: E402
from rewardkit.rl.async_rollouts import RolloutError, WeightSlot, behaviour_version  # noqa: E402
from rewardkit.rl.config import TrainConfig  # noqa: E402
from rewardkit.rl.trainer import train  # noqa: E402
from rewardkit.types import Task  # noqa: E402

TASKS = [Task(prompt=f"Say {i}:", id=str(i)) for i in range(12)]
TIMING = ("_time_s", "tokens_per_s", "rollout_wait_s", "elapsed_s", "eta_s")


def by_length(completion, *, answer=None, prompt=None, info=None):
    return 0.25 + (len(completion) % 5) / 4


class BrokenRollouts(FunctionEnv):
    """An environment whose rollouts raise (a verifier's exception would only make an error Score)."""

    def rollout(self, *args, **kwargs):
        raise RuntimeError("this environment's rollout always fails")


@pytest.fixture
def one_thread():
    """Both runs of a comparison on one torch thread per process (matmul sums in one order)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def model(say_model):
    return say_model("small", vocab=200)


def _cfg(model: str, out: Path, **kw) -> TrainConfig:
    values = dict(
        model=model,
        env="toy",
        prompts_per_step=2,
        group_size=4,
        max_new_tokens=6,
        micro_batch_size=4,
        lr=1e-2,
        steps=5,
        seed=0,
        save_every=0,
        sample_every=1,
        progress=False,
        output_dir=str(out),
    )
    values.update(kw)
    return TrainConfig(**values)


def _train(cfg: TrainConfig, env=None) -> list[dict]:
    train(cfg, env=env or FunctionEnv(by_length, "toy", executor="inline"), tasks=TASKS, overwrite=True)
    return _rows(Path(cfg.output_dir))


def _rows(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def _untimed(row: dict) -> dict:
    return {k: v for k, v in row.items() if not k.endswith(TIMING)}


def _trained(out: Path) -> dict[int, list]:
    """Each step's trained samples: (task id, completion, reward), from the rollout files."""
    steps = {}
    for path in sorted((out / "rollouts").glob("step_*.jsonl")):
        rows = [json.loads(line) for line in path.read_text().splitlines()]
        steps[int(path.stem.split("_")[1])] = [
            (r["task_id"], r["completion"], r["reward"]) for r in rows if r["trained"]
        ]
    return steps


def _final_weights(out: Path) -> dict:
    from safetensors.torch import load_file

    model = next((out / "checkpoints").glob("step_*")) / "model"
    return load_file(str(model / "model.safetensors"))


def test_behaviour_version_is_a_fixed_lag():
    assert [behaviour_version(s, 0) for s in range(1, 6)] == [0, 1, 2, 3, 4]
    assert [behaviour_version(s, 2) for s in range(1, 7)] == [0, 0, 0, 1, 2, 3]
    assert [behaviour_version(s, 2, first=4) for s in (5, 7, 8)] == [4, 4, 5]  # resumed at step 4


def test_the_weight_slot_hands_every_version_over_once():
    """The trainer cannot overwrite a version the rollout process has not taken yet (a fast trainer would
    otherwise make a batch's sampling weights depend on timing)."""
    import torch.multiprocessing as mp

    slot = WeightSlot(mp.get_context("spawn"), [("w", torch.zeros(3))], version=0)
    seen = []

    def publisher():
        for v in (1, 2, 3):
            slot.publish(v, [("w", torch.full((3,), float(v)))], check=lambda: None)

    thread = threading.Thread(target=publisher)
    thread.start()
    for v in (0, 1, 2, 3):
        time.sleep(0.05)  # a slow rollout process
        slot.take(v, lambda t: seen.append(float(t["w"][0])), check=lambda: None)
    thread.join(timeout=10)
    assert seen == [0.0, 1.0, 2.0, 3.0]


@pytest.mark.parametrize(
    "algorithm,algo",
    [
        ("grpo", {"kl_coef": 0.05}),  # a KL reference
        ("dapo", {"overlong_buffer_frac": 0.5}),  # dynamic sampling and overlong shaping
    ],
)
def test_staleness_0_is_the_synchronous_run_bit_for_bit(algorithm, algo, model, tmp_path, one_thread):
    sync = _train(_cfg(model, tmp_path / "sync", algorithm=algorithm, algo=algo))
    stale0 = _train(
        _cfg(model, tmp_path / "async", algorithm=algorithm, algo=algo, rollout_mode="async", max_staleness=0)
    )
    assert [r["staleness"] for r in stale0] == [0.0] * 5
    for a, b in zip(sync, stale0):
        for key, value in _untimed(a).items():
            assert b[key] == value, (a["step"], key)  # exactly: the same floats
    assert _trained(tmp_path / "sync") == _trained(tmp_path / "async")
    wa, wb = _final_weights(tmp_path / "sync"), _final_weights(tmp_path / "async")
    assert all(torch.equal(wa[k], wb[k]) for k in wa)


def test_a_stale_run_is_deterministic_and_corrected(model, tmp_path, one_thread):
    """max_staleness 2 with dynamic sampling: the same seed gives the same run (the schedule, not a race,
    decides which weights sample which step); stale steps get the no-grad pass and importance weights."""
    kw = dict(
        algorithm="dapo", algo={"overlong_buffer_frac": 0.5}, rollout_mode="async", max_staleness=2, steps=6
    )
    first = _train(_cfg(model, tmp_path / "a", **kw))
    second = _train(_cfg(model, tmp_path / "b", **kw))
    assert [_untimed(r) for r in first] == [_untimed(r) for r in second]
    assert _trained(tmp_path / "a") == _trained(tmp_path / "b")
    assert [r["staleness"] for r in first] == [0.0, 1.0, 2.0, 2.0, 2.0, 2.0]
    assert [r["policy_version"] for r in first] == [0.0, 0.0, 0.0, 1.0, 2.0, 3.0]
    assert "mismatch_kl" not in first[0]  # fresh: the sampler's log-probs are the policy's own
    for row in first[3:]:  # sampled by weights 2 updates old: measured and weighed
        assert row["mismatch_kl"] > 0 and "is_weight_mean" in row
    rollout = json.loads((tmp_path / "a" / "rollouts" / "step_000005.jsonl").read_text().splitlines()[0])
    assert rollout["policy_version"] == 2


def test_a_failing_rollout_process_is_a_clear_error(model, tmp_path):
    env = BrokenRollouts(by_length, "toy", executor="inline")
    cfg = _cfg(model, tmp_path / "run", rollout_mode="async", steps=2)
    with pytest.raises(RolloutError, match="failed at step 1") as info:
        train(cfg, env=env, tasks=TASKS, overwrite=True)
    assert "this environment's rollout always fails" in str(info.value)  # its traceback


def test_an_environment_that_cannot_travel_is_a_clear_error(model, tmp_path):
    def local(completion, **kw):  # a closure: pickle cannot name it
        return 1.0

    cfg = _cfg(model, tmp_path / "run", rollout_mode="async", steps=1)
    with pytest.raises(TypeError, match="cannot be pickled to get there"):
        train(cfg, env=FunctionEnv(local, "toy", executor="inline"), tasks=TASKS, overwrite=True)


def test_async_on_several_ranks_is_refused(model, tmp_path):
    from rewardkit.config import ConfigError
    from rewardkit.rl.distributed import World
    from rewardkit.rl.trainer import _check_world

    with pytest.raises(ConfigError, match="rollout_mode: got 'async' on 2 ranks"):
        _check_world(_cfg(model, tmp_path, rollout_mode="async"), World(0, 2))


UNGUARDED = """
from rewardkit.rl.config import TrainConfig
from rewardkit.rl.trainer import train
from rewardkit.types import Task

cfg = TrainConfig(model={model!r}, env="efficiency", env_config={{"max_length": 12}}, prompts_per_step=2,
                  group_size=2, max_new_tokens=4, steps=2, rollout_mode="async", progress=False,
                  output_dir={out!r})
print("steps:", train(cfg, tasks=[Task(prompt=f"Say {{i}}:", id=str(i)) for i in range(4)]).steps)
"""


def test_a_script_without_a_main_guard_trains_async(model, tmp_path):
    """spawn would run the calling script again in the rollout process; with nothing of ``__main__`` to
    unpickle it does not, so a plain script (no ``if __name__ == "__main__":``) works as in sync mode."""
    script = tmp_path / "plain.py"
    script.write_text(UNGUARDED.format(model=model, out=str(tmp_path / "run")))
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.count("steps: 2") == 1  # trained once: the script did not run again


# ---------------------------------------------------------------------------------------------------------------
# SIGKILL at random points, then --resume


def _config(out: Path, data: Path) -> str:
    return (
        f"model: tiny\nenv: efficiency\nenv_config: {{max_length: 12}}\ndata: {{path: {data}}}\n"
        "algorithm: dapo\nalgo: {overlong_buffer_frac: 0.5}\nprompts_per_step: 2\ngroup_size: 4\n"
        "max_new_tokens: 8\nlr: 0.01\nsteps: 16\nsave_every: 1\nsample_every: 1\nprogress: false\n"
        f"rollout_mode: async\nmax_staleness: 2\noutput_dir: {out}\n"
    )


def _launch(config: Path) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}  # one thread per process, as in the uninterrupted run
    cmd = [sys.executable, "-m", "rewardkit", "train", str(config), "--resume"]  # from step 0 if none yet
    return subprocess.Popen(
        cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True
    )


def _steps_logged(out: Path) -> int:
    path = out / "metrics.jsonl"
    return len(path.read_text().splitlines()) if path.exists() else 0


def _gone(pgid: int, within: float = 20.0) -> bool:
    """Whether every process of the session (the trainer, its rollout process) has exited."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.1)
    return False


STEPS = 16


def test_sigkill_at_random_points_then_resume_trains_every_prompt_once(tmp_path):
    """Up to 20 SIGKILLs of the whole session (trainer and rollout process) at random points: while starting,
    mid-step, while a checkpoint is written; each time ``--resume``. The run's steps, their prompts,
    samples, rewards and losses are the uninterrupted run's, and no process outlives a kill."""
    data = tmp_path / "tasks.jsonl"
    data.write_text("".join(json.dumps({"prompt": f"Say {i}:", "id": str(i)}) + "\n" for i in range(10)))
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    (tmp_path / "whole.yaml").write_text(_config(whole, data))
    (tmp_path / "killed.yaml").write_text(_config(killed, data))
    t0 = time.monotonic()
    proc = _launch(tmp_path / "whole.yaml")
    while not _steps_logged(whole) and proc.poll() is None:
        time.sleep(0.02)
    startup = time.monotonic() - t0
    _, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err[-3000:]
    step_time = sorted(r["step_time_s"] for r in _rows(whole))[STEPS // 2]  # the median step

    rng = random.Random(0)
    resumed_from = set()
    for kill in range(20):
        pointer = killed / "checkpoints" / "latest"
        resumed_from.add(pointer.read_text().strip() if pointer.exists() else None)
        done = _steps_logged(killed)  # on resume, rows past the checkpoint are dropped once it loads
        proc = _launch(tmp_path / "killed.yaml")
        target = min(done + rng.choice([0, 0, 1, 1, 2]), STEPS - 3)  # it must not finish first
        if target > done:
            while _steps_logged(killed) < target and proc.poll() is None:
                time.sleep(0.01)
        else:
            time.sleep(rng.uniform(0, startup))
        time.sleep(rng.uniform(0, step_time))
        if proc.poll() is not None:  # a resume near the end can finish within the random wait: no kill left
            assert proc.returncode == 0, f"kill {kill}: the run failed:\n{proc.stderr.read()[-3000:]}"
            assert kill >= 10, f"the run finished after only {kill} kills"
            break
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        assert _gone(proc.pid), "a process of the killed run is still alive (an orphaned rollout process?)"
    proc = _launch(tmp_path / "killed.yaml")
    _, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err[-3000:]
    assert len(resumed_from) >= 8, sorted(map(str, resumed_from))  # killed all along the run, not only early
    assert [r["step"] for r in _rows(killed)] == list(range(1, STEPS + 1))
    assert _trained(killed) == _trained(whole)  # the same prompts, samples and rewards at every step
    for a, b in zip(_rows(whole), _rows(killed)):
        assert _untimed(a) == _untimed(b), a["step"]
