"""Asynchronous rollouts (``rollout_mode: async``): a rollout process samples ahead of the trainer.

The rollout process holds its own copy of the policy and a generator over it (hf or vLLM), the run's
environment and prompt sampler, and makes the batches of steps 1, 2, 3, ... in order. Step N's batch
is sampled with the weights the policy had after update ``N - 1 - max_staleness`` (``behaviour_version``;
never before the first), so while the trainer updates on step N's batch, the rollout process is already
sampling the next ``max_staleness`` ones. The lag is fixed, not "at most": which weights sample which
batch never depends on timing, so a run is deterministic given its seed, and ``max_staleness: 0``
is the synchronous run (each batch waits for the update before it).

Weights travel through one slot of shared memory (``WeightSlot``): the trainer copies version V into it
after update V, once the rollout process has taken version V-1; the rollout process copies a version out
when its next batch needs it. Neither side waits longer than a copy unless the other is behind.

What a checkpoint at step S holds (``AsyncRollouts.checkpoint``): the batches of steps S+1 .. S+k,
already sampled from versions older than S and not yet trained on (they cannot be sampled again: those
weights are gone), and the sampler's position after them. A resumed run trains on exactly those, then
samples step S+k+1 with the checkpoint's own weights, as the uninterrupted run did: no prompt skipped or
trained twice, after Ctrl-C or SIGKILL alike (a killed run resumes from its last checkpoint).
"""

from __future__ import annotations

import contextlib
import os
import queue
import signal
import sys
import time
import traceback
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from rewardkit.rl.sampling import Batch, PromptSampler, collect_step
from rewardkit.types import Task


def behaviour_version(step: int, max_staleness: int, first: int = 0) -> int:
    """The policy version (updates done) that samples step ``step``'s batch: ``step - 1 - max_staleness``,
    and never one before ``first`` (0; on resume, the checkpoint's step)."""
    return max(first, step - 1 - max_staleness)


class RolloutError(RuntimeError):
    """The rollout process failed or died; the message carries its traceback or exit code."""


class _Stopped(Exception):
    """The trainer asked the rollout process to stop."""


class WeightSlot:
    """One copy of the policy's weights in shared CPU memory, handed from the trainer to the rollout process
    one version at a time: ``publish`` waits until the version in the slot has been taken (each is needed
    exactly once); ``take`` waits until the slot holds the version asked for."""

    def __init__(self, ctx: Any, weights: Iterable[tuple[str, torch.Tensor]], version: int) -> None:
        self.tensors = {
            name: t.detach().to("cpu", copy=True).contiguous().share_memory_() for name, t in weights
        }
        self.cond = ctx.Condition()
        self.published = ctx.Value("q", version, lock=False)  # guarded by cond
        self.taken = ctx.Value("q", version - 1, lock=False)

    def publish(
        self, version: int, weights: Iterable[tuple[str, torch.Tensor]], check: Callable[[], None]
    ) -> None:
        """Trainer: put ``version`` in the slot (``check`` raises if the rollout process is gone)."""
        with self.cond:
            while self.taken.value < self.published.value:  # the rollout process still needs the old one
                self.cond.wait(0.2)
                check()
            for name, tensor in weights:
                self.tensors[name].copy_(tensor.detach())
            self.published.value = version
            self.cond.notify_all()

    def take(
        self, version: int, load: Callable[[dict[str, torch.Tensor]], None], check: Callable[[], None]
    ) -> None:
        """Rollout process: wait for ``version`` and ``load`` it (``check`` raises to stop waiting)."""
        with self.cond:
            while self.published.value < version:
                self.cond.wait(0.2)
                check()
            if self.published.value != version:
                raise RuntimeError(f"weight slot holds version {self.published.value}, expected {version}")
            load(self.tensors)
            self.taken.value = version
            self.cond.notify_all()


@dataclass
class _Spec:
    """What the rollout process is started with."""

    cfg: Any
    env: Any
    tasks: list[Task]
    model_path: str
    sampler_state: dict[str, int]
    first_step: int
    first_version: int
    threads: int
    parent: int


class AsyncRollouts:
    """The trainer's side: start the rollout process, hand out its batches in step order, push weights,
    checkpoint what is buffered, and stop it."""

    def __init__(
        self,
        cfg: Any,
        env: Any,
        tasks: list[Task],
        model_path: str,
        weights: Iterable[tuple[str, torch.Tensor]],
        sampler: PromptSampler,
        start: int,
        saved: dict[str, Any] | None,
    ) -> None:
        import torch.multiprocessing as mp

        self.cfg, self.sampler, self.k = cfg, sampler, cfg.max_staleness
        self.buffer: dict[int, tuple[int, Batch]] = dict((saved or {}).get("buffer", {}))
        first_step = start + 1 + len(self.buffer)
        self._last_needed = cfg.steps - 1 - self.k  # the last version any batch is sampled from
        self._threads = torch.get_num_threads()
        rollout_threads = cfg.rollout_threads or max(1, self._threads // 2)
        torch.set_num_threads(max(1, self._threads - rollout_threads))
        ctx = mp.get_context("spawn")  # a fresh interpreter: no forked OpenMP or CUDA state
        self.slot = WeightSlot(ctx, weights, start)
        self.results = ctx.Queue()
        self.stopped = ctx.Event()
        self.proc = None
        if first_step <= cfg.steps:
            spec = _Spec(
                cfg, _picklable(env), tasks, model_path, sampler.state_dict(), first_step, start,
                rollout_threads, os.getpid(),
            )  # fmt: skip
            self.proc = ctx.Process(
                target=_rollout_main,
                args=(spec, self.slot, self.results, self.stopped),
                name="rewardkit-rollout",
                daemon=True,
            )
            with _spawning(needs_main=_refers_to_main(env)):
                self.proc.start()

    def batch(self, step: int) -> Batch:
        """Step ``step``'s batch (waiting for the rollout process if need be), its staleness in the stats."""
        t0 = time.perf_counter()
        while step not in self.buffer:
            self._receive()
        version, batch = self.buffer.pop(step)
        stats = dict(batch.stats, policy_version=float(version), staleness=float(step - 1 - version))
        stats["rollout_wait_s"] = time.perf_counter() - t0
        return Batch(batch.samples, stats, batch.generated)

    def publish(self, version: int, weights: Callable[[], Iterable[tuple[str, torch.Tensor]]]) -> None:
        """After update ``version``: hand its weights over, if any batch is still to be sampled from them."""
        if self.proc is not None and version <= self._last_needed:
            self.slot.publish(version, weights(), self._check)

    def checkpoint(self, step: int) -> dict[str, Any]:
        """What a checkpoint at ``step`` keeps: the batches of the next ``max_staleness`` steps (waited for;
        they are sampled from weights older than ``step``'s), with the sampler left after the last."""
        last = min(step + self.k, self.cfg.steps)
        while max(self.buffer, default=step) < last:
            self._receive()
        return {"buffer": {j: b for j, b in self.buffer.items() if j > step}, "version": step}

    def close(self) -> None:
        """Stop the rollout process (it is killed if it does not stop in time); restore the trainer's threads."""
        torch.set_num_threads(self._threads)
        if self.proc is None:
            return
        self.stopped.set()
        self.proc.join(timeout=10)
        if self.proc.is_alive():
            self.proc.kill()
            self.proc.join(timeout=10)
        self.results.close()
        self.results.cancel_join_thread()
        self.proc = None

    def _receive(self) -> None:
        """One message from the rollout process: a batch (buffered; the sampler's position follows it)."""
        held = len(self.buffer)
        while len(self.buffer) == held:
            try:
                message = self.results.get(timeout=0.5)
            except queue.Empty:
                self._check()  # which takes a batch sent just before the process exited
                continue
            self._handle(message)

    def _handle(self, message: tuple[Any, ...]) -> None:
        if message[0] == "error":
            raise RolloutError(f"the rollout process failed at step {message[1]}:\n{message[2]}")
        _, step, version, batch, sampler_state = message
        self.buffer[step] = (version, batch)
        self.sampler.load_state_dict(sampler_state)

    def _check(self) -> None:
        """Raise if the rollout process is gone (with its traceback when it sent one)."""
        if self.proc is not None and self.proc.is_alive():
            return
        try:  # what it sent before it exited
            message = self.results.get(timeout=1)
        except (queue.Empty, OSError, ValueError):
            code = None if self.proc is None else self.proc.exitcode
            raise RolloutError(f"the rollout process died (exit code {code}); see its output above") from None
        self._handle(message)


def load_buffer(checkpoint: Path) -> dict[str, Any] | None:
    """An async checkpoint's buffered batches (``AsyncRollouts.checkpoint``); None for a synchronous one."""
    from rewardkit.rl.checkpoint import ROLLOUTS_FILE

    path = Path(checkpoint) / ROLLOUTS_FILE
    return torch.load(path, map_location="cpu", weights_only=False) if path.exists() else None


def _picklable(env: Any) -> Any:
    """The environment object given to ``train``, checked to travel to the rollout process (None: it is
    loaded there by name, from the config)."""
    if env is None:
        return None
    import pickle

    try:
        pickle.dumps(env)
    except Exception as exc:
        raise TypeError(
            f"rollout_mode: async runs the environment in a rollout process, and {type(env).__name__} cannot "
            f"be pickled to get there ({exc}); name it in the config (env: NAME) instead of passing an "
            "object, or use rollout_mode: sync"
        ) from exc
    return env


def _refers_to_main(env: Any) -> bool:
    """Whether the pickled environment names something of the ``__main__`` module (a function defined in
    the script that calls ``train``): then the rollout process must import that script as spawn does."""
    import pickle

    return env is not None and b"__main__" in pickle.dumps(env)


@contextlib.contextmanager
def _spawning(needs_main: bool) -> Iterator[None]:
    """Start the rollout process without running the caller's script again when nothing needs it (spawn
    runs ``__main__`` in the child unless it has neither a file nor a module name): a script that calls
    ``train`` without an ``if __name__ == "__main__":`` guard then works, as with ``rollout_mode: sync``."""
    main = sys.modules["__main__"]
    if needs_main:
        if getattr(main, "__file__", None) is None and getattr(main, "__spec__", None) is None:
            raise TypeError(
                "rollout_mode: async: the environment uses functions defined in __main__ (an interactive "
                "session or notebook), which the rollout process cannot import; define them in a module, "
                "or name the environment in the config (env: NAME)"
            )
        yield  # the script must guard its train() call with if __name__ == "__main__": (as spawn requires)
        return
    hidden = {k: main.__dict__.pop(k) for k in ("__file__", "__spec__") if k in main.__dict__}
    main.__spec__ = None  # spawn reads it
    try:
        yield
    finally:
        del main.__spec__
        main.__dict__.update(hidden)


# ---------------------------------------------------------------------------------------------------------------
# The rollout process


def _rollout_main(spec: _Spec, slot: WeightSlot, results: Any, stopped: Any) -> None:
    """Sample steps ``first_step`` .. ``cfg.steps`` in order, each from its ``behaviour_version``."""
    _die_with_parent(spec.parent)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole process group: the trainer
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # decides, and stops this process when it is done with it
    torch.set_num_threads(spec.threads)
    cfg, step = spec.cfg, spec.first_step

    def check() -> None:
        if stopped.is_set() or os.getppid() != spec.parent:
            raise _Stopped

    try:
        env, generator, load = _rollout_side(spec)
        sampler = PromptSampler(spec.tasks, cfg.seed)
        sampler.load_state_dict(spec.sampler_state)
        loaded = None
        for step in range(spec.first_step, cfg.steps + 1):
            version = behaviour_version(step, cfg.max_staleness, spec.first_version)
            if version != loaded:
                slot.take(version, load, check)
                loaded = version
            _seed_step(cfg.seed, step)
            batch = collect_step(cfg, env, generator, sampler, step, policy_version=version)
            results.put(("batch", step, version, batch, sampler.state_dict()))
            check()
    except _Stopped:
        return
    except BaseException:
        results.put(("error", step, traceback.format_exc()))
        results.close()
        results.join_thread()
        raise SystemExit(1) from None
    results.close()
    results.join_thread()  # the last batches are in the pipe before this process exits


def _rollout_side(spec: _Spec) -> tuple[Any, Any, Callable[[dict[str, torch.Tensor]], None]]:
    """The environment, the generator over the rollout copy of the policy, and how a version is loaded."""
    from rewardkit.console import quiet_third_party
    from rewardkit.generation import make_generator
    from rewardkit.imports import import_modules
    from rewardkit.registry import load_env
    from rewardkit.rl.model import load_policy

    cfg = spec.cfg
    quiet_third_party(cfg.verbose)
    import_modules(cfg.imports)
    env = spec.env if spec.env is not None else load_env(cfg.env, **cfg.env_config)
    # The rollout copy: the base architecture (LoRA's adapters come merged in with every version)
    policy, tokenizer = load_policy(spec.model_path, cfg.tokenizer, cfg.dtype, False, None)
    policy.requires_grad_(False)
    generator = make_generator(
        cfg.rollout_backend, policy, tokenizer, max_batch_size=cfg.rollout_batch_size, **cfg.vllm
    )

    def load(tensors: dict[str, torch.Tensor]) -> None:
        if generator.samples_trained_module:  # hf: it samples the copy itself
            policy.load_state_dict(tensors, strict=True)
        else:  # vLLM: its engine holds the weights
            generator.update_weights(tensors.items())

    return env, generator, load


def _seed_step(seed: int, step: int) -> None:
    """The global generators seeded by the step: what an environment draws while scoring a batch does not
    depend on which batches this process made before (a resumed rollout process starts mid-run)."""
    from rewardkit.rl.checkpoint import seed_rngs

    seed_rngs(seed * 1_000_033 + step)


def _die_with_parent(parent: int) -> None:
    """Linux: the kernel kills this process when the trainer dies, SIGKILL included (no orphan keeps
    sampling); elsewhere the trainer's pid is checked while waiting."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass
    if os.getppid() != parent:  # the trainer died before the request was made
        os._exit(0)
