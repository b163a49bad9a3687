"""The training loop, top to bottom:

    rollout -> score -> overlong shaping -> dynamic-sampling filter -> advantages -> loss -> step -> sync weights

``train(cfg)`` sets a run up (``_start``) and repeats ``_train_step``: ``collect_batch`` (in
``rewardkit.rl.sampling``) does the first four stages; ``optimize`` the next three, in two halves:
``compute_advantages`` (the batch as tensors, a no-grad pass for old/reference log-probs and old values,
token rewards, advantages, importance weights) and ``update`` (epochs x mini-batches x micro-batches of
loss, backward and optimizer steps); then the rollout back end gets the new weights.

Algorithms differ only in the registry entries their preset names (``rewardkit.rl.algorithms``):
nothing here branches on an algorithm's name, nor on the back end's: whether the sampler's log-probs
are the trainer's own is ``samples_policy_distribution`` (the generator's ``samples_trained_module``, and
sampling without top-k/top-p). Multi-turn environments plug in
unchanged because every sample is a ``Trajectory`` whose mask marks the policy's tokens.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from rewardkit.config import ConfigError, bad_value
from rewardkit.console import quiet_third_party
from rewardkit.data.tasks import tasks_from
from rewardkit.envs.base import Environment
from rewardkit.generation.base import Generator, samples_policy_distribution
from rewardkit.imports import import_modules
from rewardkit.models import latest_model, load_model, resolve_model, resolve_tokenizer, token_decoder
from rewardkit.registry import load_env
from rewardkit.rl import checkpoint as ckpt
from rewardkit.rl import distributed, sharding
from rewardkit.rl.algorithms import (
    ADVANTAGES,
    KL_ESTIMATORS,
    AlgorithmConfig,
    StepNorm,
    distill_advantage,
    masked_sum,
    policy_loss,
    token_mean,
    token_rewards,
    value_loss,
)
from rewardkit.rl.async_rollouts import AsyncRollouts, load_buffer
from rewardkit.rl.config import TrainConfig
from rewardkit.rl.kl import KLControl, reset_reference
from rewardkit.rl.logging import RunLogger
from rewardkit.rl.model import (
    ValueModel,
    completion_logprobs,
    completion_values,
    frozen_copy,
    load_policy,
    pack,
    reference_logprobs,
    weights_for_sync,
)
from rewardkit.rl.monitor import ExploitMonitor
from rewardkit.rl.run_dir import RunDirMode, StopSignals, clear_for_overwrite, stop_reason
from rewardkit.rl.run_dir import prepare as prepare_run_dir
from rewardkit.rl.sampling import (
    Batch,
    PromptSampler,
    batch_metrics,
    collect_step,
    merge_batches,
    rollout_sampling,
)
from rewardkit.types import Task


@dataclass
class TrainResult:
    """What ``train`` did: where the run is, how far it got, and the model to evaluate or share."""

    output_dir: Path
    """The run's directory (``cfg.output_dir``)."""
    steps: int
    """The last finished step (the one the latest checkpoint holds, unless a second signal cut an update)."""
    last_metrics: dict[str, float]
    """The last step's metrics.jsonl row (empty when no step ran)."""
    interrupted: bool = False
    """Stopped by Ctrl-C or SIGTERM before ``cfg.steps``; continue with ``resume=True``."""
    signal: int | None = None
    """The signal that stopped the run (``signal.SIGINT``, ``signal.SIGTERM``); None when it finished, or
    for a KeyboardInterrupt raised by code."""
    final_model: Path | None = None
    """The Hugging Face model directory of the run's latest checkpoint (``checkpoints/step_N/model``), for
    ``rewardkit eval --model`` or ``from_pretrained``; None when there is no checkpoint."""


def is_main_process() -> bool:
    """Rank 0 logs and saves; the others only compute (torchrun sets RANK; ``rewardkit.rl.distributed``)."""
    return int(os.environ.get("RANK", "0")) == 0


# ---------------------------------------------------------------------------------------------------------------
# The loop


def train(
    cfg: TrainConfig,
    *,
    env: Environment | None = None,
    tasks: list[Task] | None = None,
    resume: bool = False,
    overwrite: bool = False,
    allow_config_change: bool = False,
) -> TrainResult:
    """Train ``cfg.model`` against ``cfg.env``; returns where the run was written and its last metrics.

    An ``output_dir`` that already holds a run is refused unless ``resume`` (continue from its latest
    checkpoint; a config that differs from the checkpoint's beyond ``run_dir.RESUME_SAFE_KEYS`` is refused
    unless ``allow_config_change``) or ``overwrite`` (delete that run and start again): see
    ``rewardkit.rl.run_dir``. Ctrl-C and SIGTERM checkpoint the last finished step and return
    ``interrupted``; the interrupted step is redone on resume."""
    run = _start(cfg, env, tasks, RunDirMode(resume, overwrite, allow_config_change))
    cfg = run.cfg
    metrics: dict[str, float] = {}
    done = saved = run.start  # the last finished step; the last step checkpointed
    with StopSignals() as stop, _closing(run):
        try:
            for step in range(run.start + 1, cfg.steps + 1):
                metrics = _train_step(run, step, stop)
                done = step
                if cfg.save_every and step % cfg.save_every == 0:
                    run.save(step)
                    saved = step
                if step < cfg.steps:  # a signal held during the update stops here, the step done
                    _agree_on_stop(stop)
                    stop.check()
        except KeyboardInterrupt as exc:  # Ctrl-C, SIGTERM (run_dir.Interrupted), or raised by code
            return _interrupted(run, done, saved, metrics, stop.clean, exc)
        if done > saved:
            run.save(done)
    run.logger.close()
    distributed.close()  # torchrun: every rank leaves the group it joined in _start
    return TrainResult(run.out, done, metrics, final_model=latest_model(run.out))


def _interrupted(
    run: _Run, done: int, saved: int, metrics: dict[str, float], clean: bool, exc: KeyboardInterrupt
) -> TrainResult:
    """Checkpoint the last finished step, unless a second signal cut an update in half (then leave now)."""
    signum, how = stop_reason(exc)
    if clean:
        if done > saved:
            run.save(done)
        run.logger.note(f"{how}: saved a checkpoint at step {done}; continue with --resume")
    else:
        latest = f"the latest is step {saved}" if saved else "there is none"
        run.logger.note(f"{how} during an update: no checkpoint written ({latest})")
    run.logger.close()
    distributed.close(wait=clean)  # clean: every rank stopped after the same step (_agree_on_stop)
    return TrainResult(
        run.out, done, metrics, interrupted=True, signal=signum, final_model=latest_model(run.out)
    )


def _agree_on_stop(stop: StopSignals) -> None:
    """Over several ranks: if any rank got a signal, all stop after this step (one all-reduce)."""
    if distributed.world().distributed:
        signum = int(distributed.all_max(torch.tensor(stop.requested or 0)))
        if signum and stop.requested is None:
            stop.requested = signum


def _train_step(run: _Run, step: int, stop: StopSignals) -> dict[str, float]:
    """One optimizer-step round: rollout -> score -> shaping -> filter -> advantages -> loss -> step -> sync.

    A signal during the rollout abandons the step (the policy has not changed yet); one later is held
    until the step is done (``StopSignals``)."""
    learner = run.learner
    t0 = time.perf_counter()
    batch = _rollout(run, step, stop)
    whole = _whole_batch(batch)  # every rank's part (rank 0 logs it); this rank's own in one process
    metrics = batch_metrics(whole)
    metrics.update(run.monitor.update(step, [s.trajectory.completion for s in whole.generated or []]))
    if whole.samples:  # over several ranks, a rank with no samples of its own still joins the update
        metrics.update(optimize(_learner_for(run, batch), batch, step))  # advantages -> loss -> step
        _control_kl(run, step, metrics, len(whole.samples))  # next step's KL coefficient; reference reset
        if run.generator is not None:
            run.generator.update_weights(_weights(learner.policy))  # in place; a no-op for hf
    if run.rollouts is not None:  # version ``step``, for the batches sampled from it (if any)
        run.rollouts.publish(step, lambda: _weights(learner.policy))
    tokens = sum(len(s.trajectory.completion_ids) for s in batch.generated)  # kept or not, all were generated
    metrics.update(
        step=step,
        step_time_s=time.perf_counter() - t0,
        tokens_per_s=tokens / max(metrics["rollout_time_s"], 1e-9),
        lr=learner.scheduler.get_last_lr()[0],
        world_size=float(distributed.world().size),
    )
    run.logger.log_step(step, metrics, whole)
    return metrics


def _rollout(run: _Run, step: int, stop: StopSignals) -> Batch:
    """The step's batch: sampled now (sync), or the rollout process's (async). A signal while it is
    made abandons the step: a synchronous one is undone, so it draws the same prompts on resume."""
    if run.rollouts is not None:
        with stop.rollout():
            return run.rollouts.batch(step)  # buffered until trained on, so nothing to undo
    position, rng = run.sampler.state_dict(), ckpt.rng_state()  # where the step starts, to undo it
    try:
        with stop.rollout():
            batch = rollout_batch(run, step)
    except KeyboardInterrupt:
        run.sampler.load_state_dict(position)  # the abandoned step draws the same prompts on resume,
        ckpt.set_rng_state(rng)  # and the same random numbers (an inline verifier's, say)
        raise
    run.generator.sleep()  # GPU vLLM with sleep mode: free its memory while the optimizer steps
    return batch


def _learner_for(run: _Run, batch: Batch) -> Learner:
    """The learner for this batch. Async: its samples are the policy's own log-probs only when sampled
    by the current weights (staleness 0) through hf without top-k/top-p; staler ones get the no-grad
    pass (the proximal policy of the ratio) and importance weights to the sampler (``is_correction``)."""
    if run.rollouts is None:
        return run.learner
    fresh = batch.stats.get("staleness", 0.0) == 0.0
    own = fresh and run.cfg.rollout_backend == "hf" and not rollout_sampling(run.cfg, 0).truncates
    return dataclasses.replace(run.learner, samples_trained_module=own)


@contextlib.contextmanager
def _closing(run: _Run) -> Iterator[None]:
    try:
        yield
    finally:
        if run.rollouts is not None:
            run.rollouts.close()


def _whole_batch(batch: Batch) -> Batch:
    """The step's batch over all ranks (for metrics and the rollout log): this rank's in one process."""
    if not distributed.world().distributed:
        return batch
    return merge_batches(distributed.all_gather_objects(batch))


def rollout_batch(run: _Run, step: int, world: distributed.World | None = None) -> Batch:
    """Step ``step``'s batch: rollout -> score -> overlong shaping -> dynamic-sampling filter; this rank's
    part of it (``world``: the process group's by default; ``World()`` collects the whole batch here)."""
    world = world or distributed.world()
    # hf samples the policy itself: with strategy fsdp its full weights, gathered once for the rollout
    # (each rank generates as long as its own sequences need, so no per-forward collectives)
    policy = run.learner.policy if run.cfg.rollout_backend == "hf" else None
    with sharding.gathered(policy):
        return collect_step(run.cfg, run.env, run.generator, run.sampler, step, world)


def _control_kl(run: _Run, step: int, metrics: dict[str, float], n_samples: int) -> None:
    """After the update (``rewardkit.rl.kl``): log the KL coefficient this step used as ``kl_coef``, adapt
    it to the measured KL to the reference (``kl_target``; the learner gets the new value for the next
    step), and every ``ref_reset_every`` steps copy the policy into the reference."""
    control, learner = run.kl_control, run.learner
    metrics["kl_coef"] = learner.algo.kl_coef
    if "kl_ref" in metrics:  # measured whenever there is a reference
        control.update(metrics["kl_ref"], n_samples)
    if control.coef != learner.algo.kl_coef:
        run.learner = dataclasses.replace(
            learner, algo=dataclasses.replace(learner.algo, kl_coef=control.coef)
        )
    if control.reset_due(step):  # TrainConfig: resets need a reference of their own (kl_coef > 0, no LoRA)
        reset_reference(learner.reference, learner.policy, learner.optimizer)
        control.last_reset = step


# ---------------------------------------------------------------------------------------------------------------
# Setting a run up


@dataclass(frozen=True)
class Learner:
    """What an update reads and changes: the models, the optimizer and its schedule."""

    cfg: TrainConfig
    """The run's config (``rollout_backend`` resolved)."""
    algo: AlgorithmConfig
    """``cfg.algorithm_config``, resolved once; its ``kl_coef`` is the KL controller's current one."""
    policy: Any
    """The trained causal LM (a peft model under LoRA)."""
    reference: Any
    """Frozen copy of the initial policy (of the last reset's, with ``ref_reset_every``) for the KL term;
    None when there is none, or under LoRA (the reference is then the policy with its adapters off)."""
    critic: ValueModel | None
    """PPO's value model; None for critic-free algorithms."""
    optimizer: torch.optim.Optimizer
    """AdamW over the policy's trainable parameters (and the critic's, in a second group)."""
    scheduler: Any
    """The learning-rate schedule, stepped once per optimizer step."""
    pad_id: int
    """The tokenizer's padding id, for packing micro-batches."""
    samples_trained_module: bool
    """``samples_policy_distribution(generator, sampling)``: True when the sampler's log-probs are the
    policy's own (the generator samples the trained module, without top-k/top-p), so they need no no-grad
    recomputation and no importance correction. Read once: a run's sampling truncates at every step or
    at none (temperature, top_k and top_p are the config's)."""
    teacher: Any = None
    """The frozen teacher of on-policy distillation (``cfg.teacher``); None without one."""

    @property
    def device(self) -> torch.device:
        return sharding.compute_device(self.policy)


@dataclass
class _Run:
    """Everything one ``train`` call holds: the config, the data, the learner, the rollout back end."""

    cfg: TrainConfig
    """The config, with ``rollout_backend`` resolved (``auto`` -> ``hf`` or ``vllm``)."""
    out: Path
    """The run's directory (``cfg.output_dir``)."""
    env: Environment
    sampler: PromptSampler
    """Draws the prompts of each step; its position is checkpointed."""
    generator: Generator | None
    """The rollout back end (None with ``rollout_mode: async``: the rollout process has its own)."""
    tokenizer: Any
    learner: Learner
    logger: RunLogger
    """Writes metrics.jsonl, rollouts and curves (rank 0 only)."""
    start: int
    """The last step already done (0, or the step of the checkpoint resumed from)."""
    kl_control: KLControl
    """The KL coefficient (fixed or adaptive) and the reference resets; checkpointed."""
    rollouts: AsyncRollouts | None = None
    """``rollout_mode: async``: the rollout process's batches (``generator`` is then None)."""
    monitor: ExploitMonitor = dataclasses.field(init=False)
    """The environment's exploit signatures, logged every step (``rewardkit.rl.monitor``)."""

    def __post_init__(self) -> None:
        self.monitor = ExploitMonitor(self.env, rise=self.cfg.exploit_warn_rise, warn=self.logger.note)

    def save(self, at_step: int) -> None:
        if is_main_process() or sharding.is_sharded(self.learner.policy):  # sharded: every rank writes
            learner = self.learner
            ckpt.save(
                self.out,
                at_step,
                learner.policy,
                self.tokenizer,
                learner.critic,
                learner.optimizer,
                learner.scheduler,
                self.sampler,
                self.cfg,
                self.cfg.keep_checkpoints,
                reference=learner.reference if self.cfg.ref_reset_every else None,  # else: the initial policy
                kl_control=self.kl_control,
                rollouts=self.rollouts.checkpoint(at_step) if self.rollouts is not None else None,
            )


def _start(cfg: TrainConfig, env: Environment | None, tasks: list[Task] | None, mode: RunDirMode) -> _Run:
    """The run directory checked (``run_dir.prepare``, before anything loads); environment, tasks, models,
    rollout back end, optimizer; the latest checkpoint when resuming."""
    from rewardkit.generation import resolve_backend

    quiet_third_party(cfg.verbose)  # before anything loads a model or imports vLLM
    world = distributed.setup()  # torchrun: join the ranks (one process: nothing to do)
    cfg = dataclasses.replace(cfg, rollout_backend=resolve_backend(cfg.rollout_backend))  # auto -> hf | vllm
    algo = cfg.algorithm_config
    ckpt.seed_rngs(cfg.seed)  # Python's, NumPy's and torch's generators, as a checkpoint restores them
    out = Path(cfg.output_dir)
    resume_from = prepare_run_dir(out, cfg, mode, main=is_main_process())
    env_arg = env  # async: the object given travels to the rollout process (else it loads cfg.env there)
    env, tasks = _env_and_tasks(cfg, env, tasks)
    _check_model_paths(cfg)  # a mistyped path fails in one line, before --overwrite deletes anything
    _check_world(cfg, world)
    clear_for_overwrite(out, mode, main=is_main_process())
    model_path = _model_path(cfg, tasks, out) if world.is_main else None  # model: tiny is built once
    distributed.barrier()
    model_path = model_path or _model_path_built(cfg, out)
    policy, tokenizer = load_policy(
        model_path, cfg.tokenizer, cfg.dtype, cfg.gradient_checkpointing, cfg.lora
    )
    critic = ValueModel(policy).to(policy.device) if algo.needs_values else None
    distributed.broadcast_parameters([policy, critic])  # replicas start equal (LoRA and value-head inits)
    reference = frozen_copy(policy) if algo.needs_reference and not cfg.lora else None
    teacher = _load_teacher(cfg, policy, tokenizer)
    sync = cfg.rollout_mode == "sync"
    generator = _make_generator(cfg, policy, tokenizer) if sync else None  # vLLM: before any sharding
    if cfg.strategy == "fsdp" and distributed.initialized():  # before the optimizer: params become shards
        for module in (policy, reference, critic, teacher):
            if module is not None:
                sharding.fully_shard_model(module, cfg.fsdp)
    optimizer = _optimizer(cfg, policy, critic)
    scheduler = _scheduler(cfg, optimizer)
    sampler = PromptSampler(tasks, cfg.seed)
    kl_control = KLControl(algo.kl_coef, cfg.kl_target, cfg.kl_horizon, cfg.ref_reset_every)
    start = 0
    if resume_from is not None:
        start = ckpt.load(
            resume_from,
            policy,
            critic,
            optimizer,
            scheduler,
            sampler,
            reference=reference,
            kl_control=kl_control,
        )
        if generator is not None:
            generator.update_weights(_weights(policy))
    rollouts = None
    if not sync:  # the rollout process starts from the weights of step ``start``
        saved = load_buffer(resume_from) if resume_from is not None else None
        rollouts = AsyncRollouts(cfg, env_arg, tasks, model_path, _weights(policy), sampler, start, saved)
    algo = dataclasses.replace(algo, kl_coef=kl_control.coef)  # the adapted coefficient when resuming
    learner = Learner(
        cfg,
        algo,
        policy,
        reference,
        critic,
        optimizer,
        scheduler,
        tokenizer.pad_token_id,
        samples_policy_distribution(generator, rollout_sampling(cfg, 0)) if sync else False,
        teacher,
    )
    logger = RunLogger(out, cfg, enabled=is_main_process(), start_step=start, decode=token_decoder(tokenizer))
    return _Run(cfg, out, env, sampler, generator, tokenizer, learner, logger, start, kl_control, rollouts)


def _env_and_tasks(
    cfg: TrainConfig, env: Environment | None, tasks: Sequence[Task] | None
) -> tuple[Environment, list[Task]]:
    """The environment (``cfg.imports`` imported first) and the tasks: ``tasks`` when given, else
    ``cfg.data``'s, ``cfg.tasks``'s, or the environment's ``train_split``; the first ``max_tasks``."""
    import_modules(cfg.imports)
    env = env or load_env(cfg.env, **cfg.env_config)
    if tasks is None:
        hint = "give your own with `data: {path: FILE.jsonl}` or `tasks: module:function` in the train config"
        tasks = tasks_from(cfg.data, cfg.tasks, cfg.tasks_kwargs, lambda: env.tasks(cfg.train_split), hint)
    tasks = list(tasks)[: cfg.max_tasks]
    if not tasks:
        raise ConfigError(f"no tasks to train on (env {cfg.env!r}, max_tasks {cfg.max_tasks})")
    return env, tasks


def _check_model_paths(cfg: TrainConfig) -> None:
    """``FileNotFoundError`` in one line for a ``model`` or ``tokenizer`` path that does not exist."""
    if cfg.model != "tiny":
        resolve_model(cfg.model)
    if cfg.tokenizer is not None:
        resolve_tokenizer(cfg.tokenizer)
    if cfg.teacher is not None:
        resolve_model(cfg.teacher)


def _load_teacher(cfg: TrainConfig, policy: Any, tokenizer: Any) -> Any:
    """``cfg.teacher`` in the policy's dtype (``cfg.dtype``) on its device, eval mode, no gradients; None
    without one. It scores the student's token ids, so it must have the student's tokenizer."""
    if cfg.teacher is None:
        return None
    teacher, teacher_tokenizer = load_model(cfg.teacher, None, cfg.dtype)
    student_vocab, teacher_vocab = tokenizer.get_vocab(), teacher_tokenizer.get_vocab()
    rows = getattr(teacher.config, "vocab_size", None) or len(teacher_vocab)
    if teacher_vocab != student_vocab or rows < len(student_vocab):
        differ = sum(teacher_vocab.get(tok) != i for tok, i in student_vocab.items())
        raise bad_value(
            "train config",
            "teacher",
            cfg.teacher,
            "a model with the student's tokenizer",
            f": the teacher scores the student's token ids, but its tokenizer has {len(teacher_vocab)} tokens "
            f"and its model {rows} output rows, the student's {len(student_vocab)} tokens "
            f"({differ} of them with another id or missing); distil from a model of the same family",
        )
    teacher = teacher.to(policy.device).eval()
    for p in teacher.parameters():
        p.requires_grad_(False)
    return teacher


def _check_world(cfg: TrainConfig, world: distributed.World) -> None:
    """Over several ranks every rank needs prompts: ``prompts_per_step`` >= the number of ranks."""
    if world.distributed and cfg.prompts_per_step < world.size:
        raise ConfigError(
            f"prompts_per_step: got {cfg.prompts_per_step}, expected at least the number of ranks "
            f"({world.size}): each rank rolls out whole prompt groups"
        )
    if world.distributed and cfg.rollout_mode == "async":
        raise ConfigError(
            f"rollout_mode: got 'async' on {world.size} ranks, expected 'sync': asynchronous rollouts run "
            "beside one trainer process for now (train on one process, or synchronously on several)"
        )


def _model_path_built(cfg: TrainConfig, out: Path) -> str:
    """On ranks > 0: the model rank 0 resolved (``model: tiny`` was built by rank 0 in the run's dir)."""
    return str(out / "tiny_model") if cfg.model == "tiny" else cfg.model


def _model_path(cfg: TrainConfig, tasks: Sequence[Task], out: Path) -> str:
    """``cfg.model``; for ``model: tiny``, a tiny model built for the tasks in the run's directory."""
    if cfg.model != "tiny":
        return cfg.model
    from rewardkit.models.tiny import tiny_model_for

    return tiny_model_for(tasks, out / "tiny_model", cfg.seed)


def _make_generator(cfg: TrainConfig, policy: Any, tokenizer: Any) -> Generator:
    from rewardkit.generation import make_generator

    return make_generator(
        cfg.rollout_backend, policy, tokenizer, max_batch_size=cfg.rollout_batch_size, **cfg.vllm
    )


def _optimizer(cfg: TrainConfig, policy: Any, critic: ValueModel | None) -> torch.optim.Optimizer:
    groups = [{"params": [p for p in policy.parameters() if p.requires_grad], "lr": cfg.lr}]
    if critic is not None:
        groups.append({"params": list(critic.parameters()), "lr": cfg.value_lr or cfg.lr})
    # The fused kernel (one pass over all parameters, on CPU and CUDA) instead of a Python loop per
    # parameter: the same update, ~15 ms less per step on the benchmark's tiny model (BENCHMARKS.md).
    fused = all(p.device.type in ("cpu", "cuda") for g in groups for p in g["params"])
    return torch.optim.AdamW(
        groups, betas=tuple(cfg.adam_betas), weight_decay=cfg.weight_decay, fused=fused or None
    )


def _scheduler(cfg: TrainConfig, optimizer: torch.optim.Optimizer) -> torch.optim.lr_scheduler.LambdaLR:
    total = max(1, cfg.steps * cfg.num_iterations * cfg.mini_batches)
    warmup = cfg.warmup_steps * cfg.num_iterations * cfg.mini_batches

    def factor(update: int) -> float:
        if update < warmup:
            return (update + 1) / (warmup + 1)
        if cfg.lr_schedule == "cosine":
            progress = (update - warmup) / max(1, total - warmup)
            return 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))
        return 1.0

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


# ---------------------------------------------------------------------------------------------------------------
# Advantages: everything the loss needs that stays fixed while the policy is updated


@dataclass(frozen=True)
class BatchTensors:
    """A rollout batch of B samples as token lists and tensors; T is its longest completion."""

    prompts: list[list[int]]
    """Prompt token ids of each sample (the first turn's prompt in multi-turn episodes)."""
    completions: list[list[int]]
    """Everything after the prompt: the policy's tokens and, in multi-turn episodes, the environment's."""
    policy_mask: Tensor
    """[B, T] bool: True on the tokens the policy sampled (not on padding or environment tokens)."""
    loss_mask: Tensor
    """[B, T] bool: ``policy_mask`` without the samples that overlong filtering takes out of the loss."""
    sampler_logprobs: Tensor
    """[B, T] float32: the rollout back end's log-prob of each sampled token (0 elsewhere)."""
    rewards: Tensor
    """[B] float32: each sample's reward after overlong shaping."""
    group_ids: Tensor
    """[B]: which prompt group each sample belongs to."""

    @classmethod
    def from_batch(cls, batch: Batch, device: Any) -> BatchTensors:
        samples = batch.samples
        completions = [list(s.trajectory.completion_ids) for s in samples]
        T = max((len(c) for c in completions), default=1) or 1  # no samples: a rank with none this step
        policy_mask = _rows([s.trajectory.completion_mask for s in samples], T, device).bool()
        filtered = torch.tensor([s.loss_mask_off for s in samples], dtype=torch.bool, device=device)[:, None]
        return cls(
            prompts=[list(s.trajectory.prompt_ids) for s in samples],
            completions=completions,
            policy_mask=policy_mask,
            loss_mask=policy_mask & ~filtered,
            sampler_logprobs=_rows([s.trajectory.logprobs for s in samples], T, device),
            rewards=torch.tensor([s.reward for s in samples], dtype=torch.float32, device=device),  # [B]
            group_ids=torch.tensor([s.group for s in samples], dtype=torch.long, device=device),
        )

    @property
    def shape(self) -> tuple[int, int]:
        """(B, T)."""
        return tuple(self.policy_mask.shape)  # type: ignore[return-value]

    def pack(self, rows: list[int], pad_id: int, device: Any) -> dict[str, Any]:
        """These rows as one padded micro-batch (``rewardkit.rl.model.pack``); its width is theirs."""
        return pack([self.prompts[i] for i in rows], [self.completions[i] for i in rows], pad_id, device)


@dataclass(frozen=True)
class NoGradPass:
    """Forward passes over the whole batch before any update, each [B, T] (zero past a row's completion);
    None where the run does not need them."""

    old_logprobs: Tensor | None = None
    """Log-probs under the policy before this step's updates (the ratio's denominator). Computed when the
    policy moves before the batch's last use (several epochs or mini-batches), when the sampler is not the
    trained module, or for a KL penalty in the reward. When None, each micro-batch's own detached log-probs
    stand in (ratio 1 with the gradient of the policy-gradient loss)."""
    ref_logprobs: Tensor | None = None
    """Log-probs under the KL reference (the frozen copy, or the base model under LoRA)."""
    old_values: Tensor | None = None
    """The critic's values before the update (PPO: GAE and value clipping)."""
    teacher_logprobs: Tensor | None = None
    """Log-probs of the sampled tokens under the distillation teacher (``cfg.teacher``)."""


@dataclass(frozen=True)
class LossInputs:
    """A batch made ready for the update: nothing in it changes while the policy is trained on it."""

    data: BatchTensors
    """The batch itself."""
    nograd: NoGradPass
    """Old and reference log-probs and old values, computed before the update."""
    advantages: Tensor
    """[B, T] per-token advantages."""
    returns: Tensor | None
    """[B, T] value targets (algorithms with a critic), else None."""
    is_weights: Tensor | None
    """[B, T] truncated importance weights for the sampler/trainer mismatch, or None (no correction)."""
    is_stats: dict[str, float]
    """Mismatch metrics (logged whenever the sampler is not the trained module)."""
    proximal: Tensor | None = None
    """[B, T], filled during the update: the policy's log-probs before it (each micro-batch's own, detached),
    when the importance weights are computed there (``_defers_old_logprobs``); else None."""
    distill_stats: dict[str, float] = field(default_factory=dict)
    """With a teacher: ``distill/reverse_kl`` and ``distill/teacher_logp``, over the whole batch."""


def compute_advantages(learner: Learner, batch: Batch) -> LossInputs:
    """The batch as tensors, the no-grad pass, token rewards, advantages and returns, and IS weights."""
    data = BatchTensors.from_batch(batch, learner.device)
    nograd = no_grad_pass(learner, data)
    advantages, returns = _advantages(learner, data, nograd)
    if _defers_old_logprobs(learner):  # the update's own forward passes give the weights and the stats
        proximal = torch.zeros(data.shape, device=learner.device)
        return LossInputs(data, nograd, advantages, returns, None, {}, proximal)  # no teacher (it needs them)
    is_weights, is_stats = _is_weights(learner, nograd.old_logprobs, data.sampler_logprobs, data.policy_mask)
    distill = _distill_stats(nograd, data.policy_mask)
    return LossInputs(data, nograd, advantages, returns, is_weights, is_stats, distill_stats=distill)


def _advantages(learner: Learner, data: BatchTensors, nograd: NoGradPass) -> tuple[Tensor, Tensor | None]:
    algo = learner.algo
    rollout_logprobs = nograd.old_logprobs if nograd.old_logprobs is not None else data.sampler_logprobs
    tok_rewards = token_rewards(
        data.rewards, data.policy_mask, algo, rollout_logprobs, nograd.ref_logprobs
    )  # [B, T]
    advantages, returns = ADVANTAGES[algo.advantage](
        tok_rewards, data.policy_mask, data.group_ids, nograd.old_values, algo
    )
    if nograd.teacher_logprobs is None:
        return advantages, returns
    # on-policy distillation: the teacher's per-token advantage, on top of the reward's (docs/algorithms.md)
    distill = distill_advantage(rollout_logprobs, nograd.teacher_logprobs, data.policy_mask)  # [B, T]
    return learner.cfg.reward_coef * advantages + learner.cfg.distill_coef * distill, returns


def _distill_stats(nograd: NoGradPass, mask: Tensor) -> dict[str, float]:
    """``distill/reverse_kl``, the mean over the batch's policy tokens (every rank's) of log pi_old -
    log pi_teacher, a k1 estimate of KL(pi_old || pi_teacher); ``distill/teacher_logp``, of log pi_teacher."""
    if nograd.teacher_logprobs is None or nograd.old_logprobs is None:
        return {}
    teacher, old = nograd.teacher_logprobs, nograd.old_logprobs
    sums = torch.stack([masked_sum(old - teacher, mask), masked_sum(teacher, mask), mask.sum().float()])
    kl, logp, n = distributed.all_sum(sums.double()).tolist()
    return {"distill/reverse_kl": kl / max(n, 1.0), "distill/teacher_logp": logp / max(n, 1.0)}


def _defers_old_logprobs(learner: Learner) -> bool:
    """Whether the old log-probs of a sampler that is not the trained module (vLLM, top-k/top-p, a stale
    async batch) come from the update's own forward passes instead of a no-grad pass before it: with one
    optimizer step per batch the policy does not move until every micro-batch has run, so each one's
    detached log-probs are the old policy's (one forward pass saved). Not when something needs them
    before the update: several epochs or mini-batches, a KL penalty in the reward, a teacher's advantage."""
    cfg, algo = learner.cfg, learner.algo
    return (
        not learner.samples_trained_module
        and cfg.num_iterations == 1
        and cfg.mini_batches == 1
        and not (algo.kl_in_reward and algo.kl_coef > 0)
        and learner.teacher is None
    )


def no_grad_pass(learner: Learner, data: BatchTensors) -> NoGradPass:
    """Old log-probs, reference log-probs and old values, as far as this run needs them (see NoGradPass)."""
    cfg, algo = learner.cfg, learner.algo
    need_old = not _defers_old_logprobs(learner) and (
        cfg.num_iterations > 1
        or cfg.mini_batches > 1
        or not learner.samples_trained_module
        or (algo.kl_in_reward and algo.kl_coef > 0)  # a KL penalty of weight 0 needs no extra pass
        or learner.teacher is not None  # the distillation advantage: the trainer's own log-probs
    )
    need_ref, need_values = algo.needs_reference, learner.critic is not None
    need_teacher = learner.teacher is not None
    if not (need_old or need_ref or need_values or need_teacher):
        return NoGradPass()
    B, T = data.shape
    old, ref, values, teacher = (
        torch.zeros(B, T, device=learner.device) if on else None
        for on in (need_old, need_ref, need_values, need_teacher)
    )
    models = (learner.policy, learner.reference, learner.critic, learner.teacher)
    with torch.no_grad(), sharding.gathered(*models):
        for micro in _chunks(list(range(B)), cfg.micro_batch_size):
            packed = data.pack(micro, learner.pad_id, learner.device)
            t = packed["completion_len"]
            if old is not None:
                old[micro, :t] = completion_logprobs(learner.policy, packed, cfg.temperature, False)[0]
            if ref is not None:
                ref[micro, :t] = reference_logprobs(
                    learner.policy, learner.reference, packed, cfg.temperature
                )
            if values is not None:
                values[micro, :t] = completion_values(learner.critic, packed)
            if teacher is not None:
                teacher[micro, :t] = completion_logprobs(learner.teacher, packed, cfg.temperature, False)[0]
    return NoGradPass(old, ref, values, teacher)


def _is_weights(
    learner: Learner, trainer_logprobs: Tensor | None, sampler_logprobs: Tensor, mask: Tensor
) -> tuple[Tensor | None, dict[str, float]]:
    """Importance weights for the sampler/trainer mismatch (``cfg.is_correction``: truncated or masked IS,
    ``rewardkit.rl.is_correction``) and the mismatch metrics.

    Measured whenever the trainer's old log-probs exist: always when the sampler's log-probs are not the
    policy's own (vLLM's numerics, top-k/top-p sampling), even with the correction off, so a user can see
    whether it is needed; for a sampler that is the policy's own, when they are computed anyway (several
    epochs or mini-batches, a KL penalty in the reward), and then only measured (~0: nothing to correct)."""
    if trainer_logprobs is None:
        return None, {}
    from rewardkit.rl.is_correction import correction_weights

    cfg = learner.cfg
    mode = "none" if learner.samples_trained_module else cfg.is_correction
    return correction_weights(
        trainer_logprobs,
        sampler_logprobs,
        mask,
        mode,
        cap=cfg.is_cap,
        low=cfg.is_mask_low,
        high=cfg.is_mask_high,
    )


# ---------------------------------------------------------------------------------------------------------------
# The update: loss -> backward -> optimizer step


def optimize(learner: Learner, batch: Batch, step: int) -> dict[str, float]:
    """Advantages for the whole batch, then ``num_iterations`` epochs of mini-batch optimizer steps."""
    inputs = compute_advantages(learner, batch)
    metrics, updates = update(learner, inputs, step)
    is_stats = inputs.is_stats
    if inputs.proximal is not None:  # the weights were the micro-batches'; the stats are the whole batch's
        data = inputs.data
        is_stats = _is_weights(learner, inputs.proximal, data.sampler_logprobs, data.policy_mask)[1]
    metrics.update(_mean_over_ranks(is_stats))
    metrics.update(inputs.distill_stats)  # the same on every rank (summed over them)
    metrics["optimizer_updates"] = float(updates)
    return metrics


def update(learner: Learner, inputs: LossInputs, step: int) -> tuple[dict[str, float], int]:
    """``num_iterations`` epochs over the batch, each in a fresh random order (seeded by the run's seed and
    ``step``) cut into exactly ``mini_batches`` near-equal optimizer steps (``_split``), the count the
    learning-rate schedule plans for; returns the metrics averaged over the optimizer steps, and how many
    there were. A batch with fewer samples than ``mini_batches`` (dynamic sampling ran short) leaves some
    parts empty: they only advance the schedule, so later steps keep their planned learning rates.

    Over several ranks each rank shuffles and splits its own samples; a part empty on every rank is
    skipped like that, one empty on this rank only still joins the step (a zero gradient of its own)."""
    cfg = learner.cfg
    totals: dict[str, float] = {}
    updates = 0
    gen = torch.Generator().manual_seed(cfg.seed * 7 + step)
    for _ in range(cfg.num_iterations):
        order = torch.randperm(len(inputs.data.prompts), generator=gen).tolist()
        for mini in _split(order, cfg.mini_batches):
            if not int(distributed.all_sum(torch.tensor(len(mini)))):
                learner.scheduler.step()
                continue
            _accumulate(totals, _optimizer_step(learner, inputs, mini))
            updates += 1
    return {k: v / max(updates, 1) for k, v in totals.items()}, updates


def _optimizer_step(learner: Learner, inputs: LossInputs, mini: list[int]) -> dict[str, float]:
    """Gradients of one mini-batch, accumulated over its micro-batches, then one clipped optimizer step.

    The policy's and the critic's gradients are clipped separately, each by its own norm (as verl and
    OpenRLHF do, with one optimizer each): one global norm would let a large value-loss gradient shrink
    the policy's update. ``grad_norm`` is the policy's norm before clipping, ``value_grad_norm`` the
    critic's.

    Over several ranks the denominators are the whole step's (``StepNorm`` counts summed over ranks), the
    gradients are summed over ranks before clipping, and so are the loss metrics (each rank's is its
    share of the global sum): every rank takes the step one process would take on the whole batch."""
    cfg, optimizer = learner.cfg, learner.optimizer
    norm = _global_norm(
        StepNorm.from_masks([inputs.data.loss_mask[mini]], constant=float(cfg.max_new_tokens))
    )
    metrics: dict[str, float] = {}
    micros = _chunks(mini, cfg.micro_batch_size)
    sharded = sharding.is_sharded(learner.policy)
    # FSDP's forward and backward are collectives: every rank runs as many micro-batches as the most
    for i in range(sharding.micro_batches(len(micros)) if sharded else len(micros)):
        if i < len(micros):
            _accumulate(metrics, _loss_backward(learner, inputs, micros[i], norm))
        else:
            _zero_backward(learner, inputs)
    if distributed.world().distributed:
        metrics = _summed_over_ranks(metrics)
        if not sharded:  # FSDP has reduce-scattered them already
            distributed.sum_gradients(p for group in optimizer.param_groups for p in group["params"])
    policy_params = optimizer.param_groups[0]["params"]  # _optimizer: the policy's group first
    metrics["grad_norm"] = sharding.clip_grad_norm(policy_params, cfg.max_grad_norm)
    if learner.critic is not None:
        value_max = cfg.value_max_grad_norm if cfg.value_max_grad_norm is not None else cfg.max_grad_norm
        metrics["value_grad_norm"] = sharding.clip_grad_norm(optimizer.param_groups[1]["params"], value_max)
    optimizer.step()
    learner.scheduler.step()
    optimizer.zero_grad(set_to_none=True)
    return metrics


def _loss_backward(learner: Learner, inputs: LossInputs, micro: list[int], norm: StepNorm) -> dict[str, Any]:
    """Forward pass, policy (and value) loss and backward of one micro-batch; returns the loss's metrics."""
    cfg, data, nograd = learner.cfg, inputs.data, inputs.nograd
    packed = data.pack(micro, learner.pad_id, learner.device)
    bonus = learner.algo.entropy_coef != 0  # the entropy keeps its graph only for an entropy bonus
    logprobs, entropy = completion_logprobs(
        learner.policy, packed, cfg.temperature, with_entropy=True, entropy_grad=bonus
    )
    sl = (micro, slice(0, packed["completion_len"]))
    mask = data.loss_mask[sl]
    old = nograd.old_logprobs[sl] if nograd.old_logprobs is not None else logprobs.detach()
    weights = inputs.is_weights[sl] if inputs.is_weights is not None else None
    if inputs.proximal is not None:  # whole sequences in a micro-batch: its rows' weights are the batch's
        inputs.proximal[sl] = old
        weights = _is_weights(learner, old, data.sampler_logprobs[sl], data.policy_mask[sl])[0]
    adv = inputs.advantages[sl] * (weights if weights is not None else 1.0)
    ref = nograd.ref_logprobs[sl] if nograd.ref_logprobs is not None else None
    loss, metrics = policy_loss(logprobs, old, adv, mask, norm, learner.algo, ref, entropy)
    # How far the update has moved from the policy that produced the rollouts: k3 with r = pi / pi_old at
    # tokens sampled from pi_old, an estimate of KL(pi_old || pi); 0 until the first optimizer step.
    metrics["kl_rollout"] = token_mean(KL_ESTIMATORS["k3"](old, logprobs.detach()), mask, norm)
    if learner.critic is not None:
        values = completion_values(learner.critic, packed)
        v_loss, value_metrics = value_loss(
            values, nograd.old_values[sl], inputs.returns[sl], mask, norm, learner.algo
        )
        loss = loss + v_loss
        metrics.update(value_metrics)
    loss.backward()
    return metrics


def _zero_backward(learner: Learner, inputs: LossInputs) -> None:
    """A forward and backward that add nothing to the gradient, for a rank with fewer micro-batches than
    another under FSDP (each unit's gather and reduce-scatter must happen on every rank): one row of the
    batch, or one padding token when the rank has no samples, weighted 0."""
    if len(inputs.data.prompts):
        packed = inputs.data.pack([0], learner.pad_id, learner.device)
    else:
        packed = pack([[learner.pad_id]], [[learner.pad_id]], learner.pad_id, learner.device)
    loss = completion_logprobs(learner.policy, packed, learner.cfg.temperature, False)[0].sum() * 0.0
    if learner.critic is not None:
        loss = loss + completion_values(learner.critic, packed).sum() * 0.0
    loss.backward()


def _weights(policy: Any) -> Any:
    """The policy's weights for the rollout back end's sync: streamed from the shards under FSDP."""
    return sharding.full_weights(policy) if sharding.is_sharded(policy) else weights_for_sync(policy)


# ---------------------------------------------------------------------------------------------------------------
# Helpers


def _global_norm(local: StepNorm) -> StepNorm:
    """The step's denominators over every rank (``local`` itself in one process)."""
    if not distributed.world().distributed:
        return local
    tokens, seqs = distributed.all_sum(torch.tensor([local.num_tokens, local.num_seqs])).tolist()
    return dataclasses.replace(local, num_tokens=int(tokens), num_seqs=int(seqs))


def _mean_over_ranks(metrics: dict[str, float]) -> dict[str, float]:
    """Each key's mean over the ranks that have it (``metrics`` itself in one process)."""
    if not distributed.world().distributed:
        return metrics
    parts = distributed.all_gather_objects(metrics)
    keys = {k for part in parts for k in part}
    return {k: sum(p[k] for p in parts if k in p) / sum(k in p for p in parts) for k in keys}


def _summed_over_ranks(metrics: dict[str, float]) -> dict[str, float]:
    """Each key summed over the ranks that have it (a rank with no samples in the step has none)."""
    total: dict[str, float] = {}
    for part in distributed.all_gather_objects(metrics):
        _accumulate(total, part)
    return total


def _accumulate(totals: dict[str, float], metrics: dict[str, Any]) -> None:
    for k, v in metrics.items():
        totals[k] = totals.get(k, 0.0) + float(v)


def _rows(values: list[Any], T: int, device: Any) -> Tensor:
    out = torch.zeros(len(values), T, dtype=torch.float32)
    for i, v in enumerate(values):
        if len(v):
            out[i, : len(v)] = torch.tensor(v, dtype=torch.float32)
    return out.to(device)


def _split(items: list[int], parts: int) -> list[list[int]]:
    """``items`` in exactly ``parts`` consecutive parts whose sizes differ by at most one, the longer
    first (``torch.tensor_split``'s rule); parts past ``len(items)`` are empty."""
    size, extra = divmod(len(items), parts)
    bounds = [i * size + min(i, extra) for i in range(parts + 1)]
    return [items[bounds[i] : bounds[i + 1]] for i in range(parts)]


def _chunks(items: list[int], size: int) -> list[list[int]]:
    size = max(1, size)
    return [items[i : i + size] for i in range(0, len(items), size)]
