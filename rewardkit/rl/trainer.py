"""The training loop, top to bottom:

    rollout -> score -> overlong shaping -> dynamic-sampling filter -> advantages -> loss -> step -> sync weights

``train(cfg)`` is the whole thing. Algorithms differ only in the registry entries their preset names
(``rewardkit.rl.algorithms``): nothing here branches on an algorithm's name. Multi-turn environments
plug in unchanged because every sample is a ``Trajectory`` whose mask marks the policy's tokens.
"""

from __future__ import annotations

import dataclasses
import math
import os
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from rewardkit.envs.base import Environment
from rewardkit.generation.base import SamplingParams
from rewardkit.models import latest_checkpoint
from rewardkit.registry import load_env
from rewardkit.rl import checkpoint as ckpt
from rewardkit.rl.algorithms import (
    ADVANTAGES,
    KL_ESTIMATORS,
    AlgorithmConfig,
    StepNorm,
    policy_loss,
    token_mean,
    token_rewards,
    value_loss,
)
from rewardkit.rl.config import TrainConfig
from rewardkit.rl.logging import RunLogger
from rewardkit.rl.model import (
    ValueModel,
    completion_logprobs,
    completion_values,
    frozen_copy,
    load_policy,
    pack,
    weights_for_sync,
)
from rewardkit.rl.sampling import Batch, PromptSampler, batch_metrics, collect_batch
from rewardkit.types import Task


@dataclass
class TrainResult:
    output_dir: Path
    steps: int
    last_metrics: dict[str, float]
    interrupted: bool = False


def is_main_process() -> bool:
    """Rank 0 logs and saves; the others only compute (torchrun sets RANK)."""
    return int(os.environ.get("RANK", "0")) == 0


def train(
    cfg: TrainConfig, *, env: Environment | None = None, tasks: list[Task] | None = None, resume: bool = False
) -> TrainResult:
    """Train ``cfg.model`` against ``cfg.env``; returns where the run was written and its last metrics."""
    from rewardkit.generation import resolve_backend

    cfg = dataclasses.replace(
        cfg, rollout_backend=resolve_backend(cfg.rollout_backend)
    )  # "auto" -> hf | vllm
    algo = cfg.algorithm_config
    _seed_everything(cfg.seed)
    out = Path(cfg.output_dir)
    env = env or load_env(cfg.env, **cfg.env_config)
    tasks = list(tasks if tasks is not None else env.tasks(cfg.train_split))[: cfg.max_tasks]
    model_path = build_tiny_for(tasks, out / "tiny_model", cfg.seed) if cfg.model == "tiny" else cfg.model
    policy, tokenizer = load_policy(
        model_path, cfg.tokenizer, cfg.dtype, cfg.gradient_checkpointing, cfg.lora
    )
    reference = frozen_copy(policy) if algo.needs_reference and not cfg.lora else None
    critic = ValueModel(policy).to(policy.device) if algo.needs_values else None
    generator = _make_generator(cfg, policy, tokenizer)
    optimizer = _optimizer(cfg, policy, critic)
    scheduler = _scheduler(cfg, optimizer)
    sampler = PromptSampler(tasks, cfg.seed)
    start = 0
    if resume and (latest := latest_checkpoint(out)) is not None:
        start = ckpt.load(latest, policy, critic, optimizer, scheduler, sampler)
        generator.update_weights(weights_for_sync(policy))
    logger = RunLogger(out, cfg, enabled=is_main_process(), start_step=start)

    def save(at_step: int) -> None:
        if is_main_process():
            ckpt.save(
                out,
                at_step,
                policy,
                tokenizer,
                critic,
                optimizer,
                scheduler,
                sampler,
                cfg,
                cfg.keep_checkpoints,
            )

    metrics: dict[str, float] = {}
    step = start
    try:
        for step in range(start + 1, cfg.steps + 1):
            t0 = time.perf_counter()
            sampling = SamplingParams(
                n=cfg.group_size,
                temperature=cfg.temperature,
                top_p=cfg.top_p,
                top_k=cfg.top_k,
                max_tokens=cfg.max_new_tokens,
                stop=tuple(cfg.stop),
                seed=cfg.seed * 100_003 + step,
            )
            batch = collect_batch(
                env,
                generator,
                sampler,
                prompts=cfg.prompts_per_step,
                group_size=cfg.group_size,
                sampling=sampling,
                dynamic_sampling=algo.dynamic_sampling,
                max_rounds=cfg.max_sampling_rounds,
                overlong_buffer_frac=algo.overlong_buffer_frac,
                overlong_filter=algo.overlong_filter,
            )
            generator.sleep()  # GPU vLLM with sleep mode: free its memory while the optimizer steps
            metrics = batch_metrics(batch)
            if batch.samples:
                metrics.update(
                    optimize(
                        cfg,
                        algo,
                        policy,
                        reference,
                        critic,
                        optimizer,
                        scheduler,
                        batch,
                        tokenizer.pad_token_id,
                        step,
                    )
                )
                generator.update_weights(weights_for_sync(policy))  # in place; a no-op for the hf back end
            step_time = time.perf_counter() - t0
            tokens = sum(len(s.trajectory.completion_ids) for s in batch.samples)
            metrics.update(
                step=step,
                step_time_s=step_time,
                tokens_per_s=tokens / max(metrics["rollout_time_s"], 1e-9),
                lr=scheduler.get_last_lr()[0],
            )
            logger.log_step(step, metrics, batch)
            if cfg.save_every and step % cfg.save_every == 0:
                save(step)
    except KeyboardInterrupt:
        save(step - 1)  # the interrupted step did not finish: resume redoes it
        logger.note(f"interrupted: saved a checkpoint at step {step - 1}; continue with --resume")
        logger.close()
        return TrainResult(out, step - 1, metrics, interrupted=True)
    if cfg.steps > start and not (cfg.save_every and cfg.steps % cfg.save_every == 0):
        save(cfg.steps)
    logger.close()
    return TrainResult(out, cfg.steps, metrics)


def optimize(
    cfg: TrainConfig,
    algo: AlgorithmConfig,
    policy: Any,
    reference: Any,
    critic: ValueModel | None,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    batch: Batch,
    pad_id: int,
    step: int,
) -> dict[str, float]:
    """Advantages for the whole batch, then ``num_iterations`` epochs of mini-batch optimizer steps."""
    device = next(policy.parameters()).device
    samples = batch.samples
    prompts = [list(s.trajectory.prompt_ids) for s in samples]
    completions = [list(s.trajectory.completion_ids) for s in samples]
    T = max(max(len(c) for c in completions), 1)
    policy_mask = _rows([s.trajectory.completion_mask for s in samples], T, device).bool()  # [B, T]
    loss_mask = (
        policy_mask & ~torch.tensor([s.loss_mask_off for s in samples], device=device)[:, None]
    )  # [B, T]
    sampler_logprobs = _rows([s.trajectory.logprobs for s in samples], T, device)  # [B, T]
    rewards = torch.tensor([s.reward for s in samples], dtype=torch.float32, device=device)  # [B]
    group_ids = torch.tensor([s.group for s in samples], device=device)  # [B]
    pieces = _precompute(cfg, algo, policy, reference, critic, prompts, completions, T, pad_id, device)

    old_logprobs = pieces.get("old_logprobs", sampler_logprobs)
    tok_rewards = token_rewards(
        rewards, policy_mask, algo, old_logprobs, pieces.get("ref_logprobs")
    )  # [B, T]
    advantages, returns = ADVANTAGES[algo.advantage](
        tok_rewards, policy_mask, group_ids, pieces.get("old_values"), algo
    )
    is_weights, is_stats = _is_weights(cfg, pieces.get("old_logprobs"), sampler_logprobs, policy_mask)

    totals: dict[str, float] = {}
    updates = 0
    gen = torch.Generator().manual_seed(cfg.seed * 7 + step)
    for _ in range(cfg.num_iterations):
        order = torch.randperm(len(samples), generator=gen).tolist()
        for mini in _chunks(order, math.ceil(len(order) / cfg.mini_batches)):
            norm = StepNorm.from_masks([loss_mask[mini]], constant=float(cfg.max_new_tokens))
            step_metrics: dict[str, float] = {}
            for micro in _chunks(mini, cfg.micro_batch_size):
                packed = pack([prompts[i] for i in micro], [completions[i] for i in micro], pad_id, device)
                logprobs, entropy = completion_logprobs(policy, packed, cfg.temperature, with_entropy=True)
                sl = (micro, slice(0, packed["completion_len"]))
                old = pieces["old_logprobs"][sl] if "old_logprobs" in pieces else logprobs.detach()
                adv = advantages[sl] * (is_weights[sl] if is_weights is not None else 1.0)
                ref = pieces["ref_logprobs"][sl] if "ref_logprobs" in pieces else None
                loss, m = policy_loss(logprobs, old, adv, loss_mask[sl], norm, algo, ref, entropy)
                if (
                    reference is None and "kl" not in m
                ):  # no reference model: report the drift from the rollout policy
                    m["kl"] = token_mean(KL_ESTIMATORS["k3"](logprobs.detach(), old), loss_mask[sl], norm)
                if critic is not None:
                    values = completion_values(critic, packed)
                    v_loss, vm = value_loss(
                        values, pieces["old_values"][sl], returns[sl], loss_mask[sl], norm, algo
                    )
                    loss = loss + v_loss
                    m.update(vm)
                loss.backward()
                for k, v in m.items():
                    step_metrics[k] = step_metrics.get(k, 0.0) + float(v)
            params = [p for group in optimizer.param_groups for p in group["params"]]
            grad_norm = torch.nn.utils.clip_grad_norm_(params, cfg.max_grad_norm)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            step_metrics["grad_norm"] = float(grad_norm)
            for k, v in step_metrics.items():
                totals[k] = totals.get(k, 0.0) + v
            updates += 1
    out = {k: v / max(updates, 1) for k, v in totals.items()}
    out.update(is_stats)
    out["optimizer_updates"] = float(updates)
    return out


def _precompute(
    cfg, algo, policy, reference, critic, prompts, completions, T, pad_id, device
) -> dict[str, torch.Tensor]:
    """No-grad passes over the whole batch: old log-probs (when the policy moves before the last use of
    the batch, or the sampler is not the trained module), reference log-probs, old values."""
    need_old = (
        cfg.num_iterations > 1 or cfg.mini_batches > 1 or cfg.rollout_backend != "hf" or algo.kl_in_reward
    )
    need_ref = algo.needs_reference
    out: dict[str, torch.Tensor] = {}
    names = [
        n
        for n, on in (
            ("old_logprobs", need_old),
            ("ref_logprobs", need_ref),
            ("old_values", critic is not None),
        )
        if on
    ]
    if not names:
        return out
    for name in names:
        out[name] = torch.zeros(len(prompts), T, device=device)
    with torch.no_grad():
        for micro in _chunks(list(range(len(prompts))), cfg.micro_batch_size):
            packed = pack([prompts[i] for i in micro], [completions[i] for i in micro], pad_id, device)
            t = packed["completion_len"]
            if need_old:
                out["old_logprobs"][micro, :t] = completion_logprobs(policy, packed, cfg.temperature, False)[
                    0
                ]
            if need_ref:
                if reference is not None:
                    out["ref_logprobs"][micro, :t] = completion_logprobs(
                        reference, packed, cfg.temperature, False
                    )[0]
                else:  # LoRA: the reference is the base model, i.e. the policy with its adapters off
                    with policy.disable_adapter():
                        out["ref_logprobs"][micro, :t] = completion_logprobs(
                            policy, packed, cfg.temperature, False
                        )[0]
            if critic is not None:
                out["old_values"][micro, :t] = completion_values(critic, packed)
    return out


def _is_weights(
    cfg: TrainConfig,
    trainer_logprobs: torch.Tensor | None,
    sampler_logprobs: torch.Tensor,
    mask: torch.Tensor,
) -> tuple[torch.Tensor | None, dict[str, float]]:
    """Truncated importance weights for the sampler/trainer mismatch (vLLM samples with other numerics).

    The mismatch metrics are logged whenever the sampler is not the trained module, even with the
    correction off, so a user can see whether it is needed."""
    if cfg.rollout_backend == "hf" or trainer_logprobs is None:
        return None, {}
    from rewardkit.rl.is_correction import truncated_is_weights

    enabled = cfg.is_correction != "none"
    level = cfg.is_correction if enabled else "token"
    weights, metrics = truncated_is_weights(
        trainer_logprobs, sampler_logprobs, mask, level=level, cap=cfg.is_cap, enabled=enabled
    )
    return (weights if enabled else None), metrics


def _rows(values: list[Any], T: int, device: Any) -> torch.Tensor:
    out = torch.zeros(len(values), T, dtype=torch.float32)
    for i, v in enumerate(values):
        if len(v):
            out[i, : len(v)] = torch.tensor(v, dtype=torch.float32)
    return out.to(device)


def _chunks(items: list[int], size: int) -> list[list[int]]:
    size = max(1, size)
    return [items[i : i + size] for i in range(0, len(items), size)]


def build_tiny_for(tasks: list[Task], path: Path, seed: int) -> str:
    """``model: tiny``: a random tiny Llama whose tokenizer is trained on the tasks' prompts and answers,
    so every example config runs on a CPU with nothing downloaded. Reused if already built."""
    from rewardkit.models.tiny import TinyConfig, build_tiny

    if not (path / "config.json").exists():
        corpus = [
            f"{t.prompt if isinstance(t.prompt, str) else str(t.prompt)} <think></think><answer>{t.answer}</answer>"
            for t in tasks[:2000]
        ]
        build_tiny(corpus, TinyConfig(seed=seed), save_to=path)
    return str(path)


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    torch.manual_seed(seed)


def _make_generator(cfg: TrainConfig, policy: Any, tokenizer: Any) -> Any:
    from rewardkit.generation import make_generator

    return make_generator(
        cfg.rollout_backend, policy, tokenizer, max_batch_size=cfg.rollout_batch_size, **cfg.vllm
    )


def _optimizer(cfg: TrainConfig, policy: Any, critic: ValueModel | None) -> torch.optim.Optimizer:
    groups = [{"params": [p for p in policy.parameters() if p.requires_grad], "lr": cfg.lr}]
    if critic is not None:
        groups.append({"params": list(critic.parameters()), "lr": cfg.value_lr or cfg.lr})
    return torch.optim.AdamW(groups, betas=tuple(cfg.adam_betas), weight_decay=cfg.weight_decay)


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
