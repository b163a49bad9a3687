"""Exact resume: a run stopped at any point (rollout generation, scoring, the middle of an update) and
resumed writes the same metrics.jsonl, number for number, and the same rollouts as the run that was never
stopped, for every algorithm preset, and an interrupt in the first step after a resume never replaces the
checkpoint it resumed from.

The interrupts are real: SIGINT sent to this process (or a KeyboardInterrupt raised) from a torch forward
hook on the policy (generation and the update) or from the reward function (scoring). The hook sees every
``*ForCausalLM`` forward: a generation forward is one with ``use_cache=True`` (the rollout's KV-cached
loop), an update forward is one with gradients on; the no-grad passes (old and reference log-probs) are
neither. Where the interrupt falls is drawn at random (seeded by the test's id) from the forwards and
reward calls of the uninterrupted run.
"""

from __future__ import annotations

import json
import os
import random
import signal
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
np = pytest.importorskip("numpy")
pytest.importorskip("transformers")

from rewardkit.registry import FunctionEnv  # noqa: E402
from rewardkit.rl.algorithms import ALGORITHM_PRESETS, preset  # noqa: E402
from rewardkit.rl.config import TrainConfig  # noqa: E402
from rewardkit.rl.trainer import TrainResult, train  # noqa: E402
from rewardkit.types import Task  # noqa: E402

STEPS = 4
PHASES = ("generate", "score", "update")
TIMINGS = ("step_time_s", "rollout_time_s", "score_time_s", "tokens_per_s")
"""Wall-clock metrics: the only ones a resumed run may write differently."""


@pytest.fixture(scope="module")
def tiny_model(say_model) -> str:
    return say_model("small")


def tasks(n: int = 12) -> list[Task]:
    return [Task(prompt=f"Say {i}:", id=str(i)) for i in range(n)]


def config(tiny_model: str, out: Path, algorithm: str, **kw) -> TrainConfig:
    """Four steps of two optimizer steps (mini_batches 2), twice over the batch (num_iterations 2), each of
    two micro-batches: every kind of update boundary a resume can fall on; a warm-up and a cosine schedule.
    12 tasks and 4 prompts a step (more with dynamic sampling) start a new epoch of the prompt sampler
    during the run."""
    base = dict(
        model=tiny_model,
        env="digits",
        algorithm=algorithm,
        prompts_per_step=4,
        group_size=2,
        max_new_tokens=5,
        steps=STEPS,
        lr=1e-2,
        warmup_steps=1,
        lr_schedule="cosine",
        mini_batches=2,
        num_iterations=2,
        micro_batch_size=2,
        output_dir=str(out),
        save_every=0,
        keep_checkpoints=0,
        sample_every=1,
        progress=False,
    )
    return TrainConfig(**{**base, **kw})


# ---- where a run is, and how to stop it there ------------------------------------------------------------
@dataclass
class Counter:
    """Counts the run's generation forwards, update forwards and reward calls; ``stop_at`` (phase, n)
    interrupts the n-th of that phase (counted from 1 in this ``train`` call): with ``SIGINT`` sent to this
    process, or with a KeyboardInterrupt raised on the spot (``how="raise"``)."""

    stop_at: tuple[str, int] | None = None
    how: str = "signal"
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(PHASES, 0))
    fired: bool = False

    def tick(self, phase: str) -> None:
        self.counts[phase] += 1
        if self.fired or self.stop_at != (phase, self.counts[phase]):
            return
        self.fired = True
        if self.how == "raise":
            raise KeyboardInterrupt
        os.kill(os.getpid(), signal.SIGINT)  # the handler runs at the next bytecode, here

    @contextmanager
    def watching(self) -> Iterator[None]:
        def hook(module, args, kwargs, output):
            if not type(module).__name__.endswith("ForCausalLM"):
                return
            if kwargs.get("use_cache"):
                self.tick("generate")
            elif torch.is_grad_enabled():
                self.tick("update")

        handle = torch.nn.modules.module.register_module_forward_hook(hook, with_kwargs=True)
        try:
            yield
        finally:
            handle.remove()

    def env(self, noisy: bool = False) -> FunctionEnv:
        def digits(completion, *, answer=None, prompt=None, info=None):
            """Toy reward with signal at random init: the share of the completion's characters that are
            digits (its rewards tie often, so dynamic sampling draws extra rounds). ``noisy``: plus draws
            from Python's, NumPy's and torch's global generators, as a verifier that checks a random
            sample of its test cases does."""
            self.tick("score")
            text = completion.replace(" ", "")
            reward = sum(c.isdigit() for c in text) / max(len(text), 1)
            if noisy:
                reward += 1e-3 * (random.random() + float(np.random.random()) + float(torch.rand(())))
            return reward

        return FunctionEnv(digits, "digits", executor="inline", cache_size=0)


def run(cfg: TrainConfig, counter: Counter | None = None, noisy: bool = False, **kw) -> TrainResult:
    counter = counter or Counter()
    with counter.watching():
        return train(cfg, env=counter.env(noisy), tasks=tasks(), **kw)


def rows(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def rollouts(out: Path, step: int) -> list[str]:
    return (out / "rollouts" / f"step_{step:06d}.jsonl").read_text().splitlines()


def checkpoints(out: Path) -> dict[str, int]:
    """Each file under checkpoints/ with its mtime: what an interrupt must leave as it was."""
    root = out / "checkpoints"
    return {str(p.relative_to(root)): p.stat().st_mtime_ns for p in sorted(root.rglob("*")) if p.is_file()}


def assert_same_run(cut: Path, full: Path) -> None:
    """Every metric of every step (wall-clock timings aside) bit for bit, and the same rollouts."""
    a, b = rows(full), rows(cut)
    assert [r["step"] for r in b] == list(range(1, STEPS + 1))
    for ra, rb in zip(a, b):
        differ = {k: (ra[k], rb.get(k)) for k in ra if k not in TIMINGS and ra[k] != rb.get(k)}
        assert not differ, f"step {ra['step']}: uninterrupted -> resumed {differ}"
        assert set(ra) == set(rb), ra["step"]
    for step in range(1, STEPS + 1):
        assert rollouts(cut, step) == rollouts(full, step), step


@dataclass
class Reference:
    """The uninterrupted run of one config, and how many of each phase each of its steps had."""

    out: Path
    per_step: list[dict[str, int]]


_REFERENCES: dict[tuple, Reference] = {}


def reference(tiny_model: str, root: Path, algorithm: str, noisy: bool = False, **kw) -> Reference:
    """The uninterrupted run of ``config(algorithm, **kw)`` (run once per module for each config)."""
    key = (algorithm, noisy, json.dumps(kw, sort_keys=True))
    if key not in _REFERENCES:
        out = root / f"full_{len(_REFERENCES)}_{algorithm}"
        per_step, before = [], dict.fromkeys(PHASES, 0)
        counter = Counter()

        def snapshot(step: int, metrics: dict, batch) -> None:  # after each step: the counts so far
            nonlocal before
            per_step.append({k: counter.counts[k] - before[k] for k in PHASES})
            before = dict(counter.counts)

        with _after_each_step(snapshot):
            result = run(config(tiny_model, out, algorithm, **kw), counter, noisy)
        assert not result.interrupted and result.steps == STEPS
        _REFERENCES[key] = Reference(out, per_step)
    return _REFERENCES[key]


@contextmanager
def _after_each_step(fn: Callable) -> Iterator[None]:
    """Calls ``fn`` after each step is logged (by wrapping ``RunLogger.log_step``; it only observes)."""
    from rewardkit.rl.logging import RunLogger

    original = RunLogger.log_step

    def log_step(self, step, metrics, batch):
        original(self, step, metrics, batch)
        fn(step, metrics, batch)

    RunLogger.log_step = log_step
    try:
        yield
    finally:
        RunLogger.log_step = original


@pytest.fixture(scope="module")
def references_root(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("references")


@pytest.fixture(scope="module", autouse=True)
def one_thread() -> Iterator[None]:
    """A tiny model trains several times faster on one thread on a machine whose cores are shared; every
    run compared here uses the same count."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def interrupt_point(
    ref: Reference, phase: str, key: str, first: int = 1, last: bool = False
) -> tuple[int, int]:
    """(step, n): a random ``phase`` call of step 2 or 3 (its ``first``-th or later; with ``last``, its
    last: in dynamic sampling's last round), as the n-th of the run; in the update, one after the step's
    first optimizer step (the first mini-batch's 2 micro-batches of the first epoch) and before its last."""
    rng = random.Random(zlib.crc32(key.encode()))
    step = rng.choice([2, 3])
    within = ref.per_step[step - 1][phase]
    if phase == "update":
        assert within >= 4, ref.per_step
        k = rng.randint(3, within - 1)
    else:
        k = within if last else rng.randint(first, within)
    return step, sum(s[phase] for s in ref.per_step[: step - 1]) + k


# ---- the tests -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("phase", PHASES)
@pytest.mark.parametrize("algorithm", sorted(ALGORITHM_PRESETS))
def test_a_run_stopped_anywhere_resumes_exactly(algorithm, phase, tiny_model, references_root, tmp_path):
    """SIGINT at a random point of step 2 or 3; then a resume that is itself stopped by SIGINT in its first
    rollout (which must leave the checkpoint it resumed from as it was); then a resume to the end."""
    ref = reference(tiny_model, references_root, algorithm)
    dynamic = preset(algorithm).dynamic_sampling  # stopped in the step's last sampling round
    step, n = interrupt_point(ref, phase, f"{algorithm}-{phase}", last=dynamic)
    cfg = config(tiny_model, tmp_path, algorithm)
    first = run(cfg, Counter(stop_at=(phase, n)))
    done = step if phase == "update" else step - 1  # a signal in an update waits for the step to finish
    assert first.interrupted and first.signal == signal.SIGINT and first.steps == done
    assert (tmp_path / "checkpoints" / "latest").read_text() == f"step_{done:06d}"
    before = checkpoints(tmp_path)
    second = run(cfg, Counter(stop_at=("generate", 1)), resume=True)
    assert second.interrupted and second.steps == done
    assert checkpoints(tmp_path) == before, "an interrupt right after a resume rewrote its checkpoint"
    assert not run(cfg, resume=True).interrupted
    assert_same_run(tmp_path, ref.out)
    if dynamic:  # the step stopped in drew extra rounds, and they were redone the same
        assert rows(tmp_path)[step - 1]["sampling_rounds"] > 1


@pytest.mark.parametrize("algorithm", ["grpo", "ppo"])
def test_a_keyboard_interrupt_inside_an_update_saves_nothing_and_the_step_is_redone(
    algorithm, tiny_model, references_root, tmp_path
):
    """A KeyboardInterrupt raised (not a signal, which would wait) after the first optimizer step: the
    policy is half-updated, so nothing is saved; the resume redoes the step from the previous checkpoint."""
    ref = reference(tiny_model, references_root, algorithm, save_every=1)
    step, n = interrupt_point(ref, "update", f"{algorithm}-raise")
    cfg = config(tiny_model, tmp_path, algorithm, save_every=1)
    first = run(cfg, Counter(stop_at=("update", n), how="raise"))
    assert first.interrupted and first.signal is None and first.steps == step - 1
    assert (tmp_path / "checkpoints" / "latest").read_text() == f"step_{step - 1:06d}"
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == [
        "latest",
        *(f"step_{s:06d}" for s in range(1, step)),
    ]
    assert not run(cfg, resume=True).interrupted
    assert_same_run(tmp_path, ref.out)


def test_a_verifier_drawing_random_numbers_resumes_exactly(tiny_model, references_root, tmp_path):
    """Stopped while scoring, after the step's verifier has drawn from Python's, NumPy's and torch's global
    generators; resumed with those generators somewhere else, as in a new process after a preemption: the
    redone step draws the same numbers, because the abandoned step's draws are undone and every generator
    is seeded and checkpointed."""
    ref = reference(tiny_model, references_root, "grpo", noisy=True)
    step, n = interrupt_point(ref, "score", "noisy", first=2)
    cfg = config(tiny_model, tmp_path, "grpo")
    assert run(cfg, Counter(stop_at=("score", n)), noisy=True).steps == step - 1
    random.seed(1)  # what a fresh interpreter would hold instead
    np.random.seed(2)
    torch.manual_seed(3)
    assert not run(cfg, noisy=True, resume=True).interrupted
    assert_same_run(tmp_path, ref.out)


@pytest.mark.parametrize("phase", ["score", "update"])
def test_an_adaptive_kl_coefficient_and_reference_resets_resume_exactly(
    phase, tiny_model, references_root, tmp_path
):
    """The KL controller's coefficient and a reference reset every 2 steps are part of what resumes: a stop
    in step 2 or 3 (its reset saved with it, or redone) continues as if nothing had happened."""
    kl = dict(kl_target=0.01, kl_horizon=10, ref_reset_every=2)
    ref = reference(tiny_model, references_root, "grpo", **kl)
    step, n = interrupt_point(ref, phase, f"kl-{phase}")
    cfg = config(tiny_model, tmp_path, "grpo", **kl)
    assert run(cfg, Counter(stop_at=(phase, n))).interrupted
    assert not run(cfg, resume=True).interrupted
    assert_same_run(tmp_path, ref.out)
    assert len({r["kl_coef"] for r in rows(tmp_path)}) == STEPS  # it did adapt at every step


def test_a_lora_run_is_not_changed_by_its_checkpoints_and_resumes_exactly(
    tiny_model, references_root, tmp_path
):
    """Writing a LoRA checkpoint merges the adapters into a copy of the model for ``model/``; the weights
    the run trains on, and the ones the checkpoint holds, stay exactly what they were. Checkpointing every
    step, stopped in an update and resumed: the same run as one never checkpointed nor stopped."""
    pytest.importorskip("peft")
    lora = dict(lora={"r": 4, "lora_alpha": 8, "target_modules": ["q_proj", "v_proj"]})
    ref = reference(tiny_model, references_root, "grpo", **lora)
    step, n = interrupt_point(ref, "update", "lora")
    cfg = config(tiny_model, tmp_path, "grpo", save_every=1, **lora)
    assert run(cfg, Counter(stop_at=("update", n))).steps == step
    assert not run(cfg, resume=True).interrupted
    assert_same_run(tmp_path, ref.out)
