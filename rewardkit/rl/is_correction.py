"""Truncated importance sampling (TIS) for the sampler/trainer log-probability mismatch.

The rollout engine (vLLM kernels, bf16, batch-dependent reductions) samples from a distribution
``pi_sampler`` that is slightly different from the trainer's ``pi_old`` for the same weights. The
PPO/GRPO gradient assumes samples come from ``pi_old``; using them as-is biases it. Weighting each
token's loss by ``w = pi_old / pi_sampler`` removes the bias, and capping ``w`` at ``C`` bounds the
variance (Yao et al. 2025, "Your efficient RL framework secretly brings you off-policy RL training";
C = 2 is their default). The loss becomes ``w.detach() * ppo_clip_loss(pi_theta / pi_old, A)``.

Levels:
  token:    w_t = min(exp(log pi_old(y_t) - log pi_sampler(y_t)), C)
  sequence: w   = min(exp(sum_t [log pi_old(y_t) - log pi_sampler(y_t)]), C), the same for every
            token of the sequence (unbiased for sequence-level objectives, higher variance).

Both log-probabilities must be of the SAME distribution: the trainer's at the sampling temperature
(``log_softmax(logits / T)``), the sampler's as returned by the back ends (processed logprobs).
Only tokens with mask 1 (policy tokens) count; environment tokens get weight 1.
"""

from __future__ import annotations

import math
from typing import Literal

import torch


def truncated_is_weights(
    trainer_logprobs: torch.Tensor,
    sampler_logprobs: torch.Tensor,
    mask: torch.Tensor,
    *,
    level: Literal["token", "sequence"] = "token",
    cap: float = 2.0,
    enabled: bool = True,
) -> tuple[torch.Tensor, dict[str, float]]:
    """Per-token importance weights ([B, T], detached) and mismatch metrics.

    ``trainer_logprobs``, ``sampler_logprobs`` and ``mask`` are [B, T]; ``mask`` is 1 on policy
    tokens. Metrics (over masked tokens): ``mismatch_log_ratio_abs_mean``/``_max`` (|log pi_old -
    log pi_sampler|), ``mismatch_kl`` (k3 estimate of KL(sampler || trainer)), ``is_clip_frac`` (share of
    tokens, or of sequences at sequence level, whose weight hit the cap) and ``is_weight_mean``.

    ``level``: ``token`` (one ratio per token) or ``sequence`` (the product of a sequence's ratios,
    shared by its tokens). ``cap``: C, at least 1 (a cap below 1 would down-weight tokens the trainer
    finds more likely than the sampler did). ``enabled=False`` returns unit weights but still measures.
    """
    if level not in ("token", "sequence"):
        raise ValueError(f"level must be 'token' or 'sequence', got {level!r}")
    if not cap >= 1.0:
        raise ValueError(f"cap must be >= 1, got {cap}")
    if not trainer_logprobs.shape == sampler_logprobs.shape == mask.shape:
        raise ValueError(
            f"shape mismatch: trainer {tuple(trainer_logprobs.shape)}, sampler "
            f"{tuple(sampler_logprobs.shape)}, mask {tuple(mask.shape)}"
        )
    mask = mask.to(torch.float32)
    log_ratio = (trainer_logprobs.detach().float() - sampler_logprobs.detach().float()) * mask  # [B, T]
    log_cap = math.log(cap)
    if level == "token":
        clipped = (log_ratio > log_cap) & (mask > 0)  # [B, T]
        weights = torch.exp(log_ratio.clamp(max=log_cap))
        clip_frac = _masked_mean(clipped.float(), mask)
    else:
        seq_log_ratio = log_ratio.sum(dim=-1, keepdim=True)  # [B, 1]
        clipped = seq_log_ratio > log_cap
        weights = torch.exp(seq_log_ratio.clamp(max=log_cap)).expand_as(log_ratio)
        has_tokens = (mask.sum(dim=-1, keepdim=True) > 0).float()
        clip_frac = float((clipped.float() * has_tokens).sum() / has_tokens.sum().clamp(min=1.0))
    weights = torch.where(mask > 0, weights, torch.ones_like(weights))
    metrics = _mismatch_metrics(log_ratio, mask)
    metrics["is_clip_frac"] = clip_frac
    metrics["is_weight_mean"] = _masked_mean(weights, mask)
    if not enabled:
        weights = torch.ones_like(weights)
    return weights.detach(), metrics


def _mismatch_metrics(log_ratio: torch.Tensor, mask: torch.Tensor) -> dict[str, float]:
    abs_ratio = log_ratio.abs() * mask
    # k3 estimator of KL(sampler || trainer) with samples from the sampler: r - 1 - log r, r = pi_old/pi_s.
    k3 = (torch.exp(log_ratio) - 1.0 - log_ratio) * mask
    return {
        "mismatch_log_ratio_abs_mean": _masked_mean(abs_ratio, mask),
        "mismatch_log_ratio_abs_max": float(abs_ratio.max()) if mask.any() else 0.0,
        "mismatch_kl": _masked_mean(k3, mask),
    }


def _masked_mean(values: torch.Tensor, mask: torch.Tensor) -> float:
    return float((values * mask).sum() / mask.sum().clamp(min=1.0))
