"""Importance correction for the sampler/trainer log-probability mismatch: truncated or masked IS.

The rollout engine samples from a distribution ``pi_sampler`` that differs from the trainer's ``pi_old``
for the same weights: vLLM's kernels and precision, or top-k/top-p truncating what is sampled (the hf
back end reports, as vLLM's ``processed_logprobs`` do, the log-probs of the truncated, renormalised
distribution actually sampled; the trainer scores the full one at the temperature). The PPO/GRPO
gradient assumes samples from ``pi_old``; using them as they are biases it. With the per-token ratio
``r_t = pi_old(y_t) / pi_sampler(y_t)`` the loss becomes ``w.detach() * ppo_clip_loss(pi_theta / pi_old, A)``
where ``w`` is one of (``mode``):

  truncated IS (Yao et al. 2025, "Your efficient RL framework secretly brings you off-policy RL
  training"; C = 2 is their default): reweight, capping the weight at C to bound the variance
    token:              w_t = min(r_t, C)
    sequence:           w   = min(prod_t r_t, C)             one weight for all tokens of a sequence
    geo_sequence:       w   = min(exp(mean_t log r_t), C)    the geometric mean: length-independent
  masked IS (IcePop, Ling Team 2025, arXiv 2510.18855, "Every Step Evolves"; verl's rejection-sampling
  ``rollout_rs`` token / sequence / geometric modes): no reweighting, drop what disagrees too much
    token_mask:         w_t = 1 if low <= r_t <= high else 0
    sequence_mask:      w   = 1 if low <= prod_t r_t <= high else 0
    geo_sequence_mask:  w   = 1 if low <= exp(mean_t log r_t) <= high else 0

Products and means run over a sequence's policy tokens. A weight of 0 takes a token's policy-gradient
term out of the loss; as in IcePop's objective the token still counts in the loss's denominator, and in
the KL and entropy terms. Truncation keeps every sample and bounds its weight (biased, low variance);
masking drops the samples whose ratio says they came from somewhere else (the geometric mean suits
long sequences, whose ratio products drift far from 1 even for small per-token noise: verl's typical
geometric thresholds are 1.0002-1.001).

Both log-probabilities must be of the SAME tokens: the trainer's at the sampling temperature
(``log_softmax(logits / T)``), the sampler's as the back ends return them. Only tokens with mask 1 (policy
tokens) count; environment tokens get weight 1.
"""

from __future__ import annotations

import math
from typing import Literal, cast

import torch

Level = Literal["token", "sequence", "geo_sequence"]
LEVELS: tuple[str, ...] = ("token", "sequence", "geo_sequence")
MODES: tuple[str, ...] = (*LEVELS, *(f"{level}_mask" for level in LEVELS), "none")
"""Every ``is_correction`` value: truncated at a level, masked at a level, or ``none`` (measure only)."""
_LOG_RATIO_CLAMP = 20.0  # exp() of a log ratio beyond this is reported as exp(20), never inf


def correction_weights(
    trainer_logprobs: torch.Tensor,
    sampler_logprobs: torch.Tensor,
    mask: torch.Tensor,
    mode: str,
    *,
    cap: float = 2.0,
    low: float = 0.5,
    high: float = 2.0,
) -> tuple[torch.Tensor | None, dict[str, float]]:
    """The weights of ``mode`` (one of ``MODES``; see the module docstring) and the mismatch metrics.

    Returns None for the weights under ``none``, whose metrics are token-level truncation's (so
    ``is_clip_frac`` says how much a ``token`` correction would change). ``cap`` is truncation's C,
    ``low``/``high`` the masks' acceptance interval."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)}; got {mode!r}")
    if mode.endswith("_mask"):
        level = cast(Level, mode.removesuffix("_mask"))
        return masked_is_weights(trainer_logprobs, sampler_logprobs, mask, level=level, low=low, high=high)
    on = mode != "none"
    level = cast(Level, mode if on else "token")
    weights, metrics = truncated_is_weights(
        trainer_logprobs, sampler_logprobs, mask, level=level, cap=cap, enabled=on
    )
    return (weights if on else None), metrics


def truncated_is_weights(
    trainer_logprobs: torch.Tensor,
    sampler_logprobs: torch.Tensor,
    mask: torch.Tensor,
    *,
    level: Level = "token",
    cap: float = 2.0,
    enabled: bool = True,
) -> tuple[torch.Tensor, dict[str, float]]:
    """Truncated importance weights ``min(r, C)`` ([B, T], detached) at ``level``, and mismatch metrics.

    ``trainer_logprobs``, ``sampler_logprobs`` and ``mask`` are [B, T]; ``mask`` is 1 on policy tokens.
    ``level``: ``token`` (one ratio per token), ``sequence`` (the product of a sequence's ratios) or
    ``geo_sequence`` (their geometric mean), the last two shared by the sequence's tokens. ``cap``: C, at
    least 1 (a cap below 1 would down-weight tokens the trainer finds more likely than the sampler did).
    ``enabled=False`` returns unit weights but still measures. Metrics: see ``_metrics``; here
    ``is_clip_frac`` is the share of tokens (or of sequences, at the sequence levels) whose weight hit
    the cap, and ``is_mask_frac`` is 0."""
    if not cap >= 1.0:
        raise ValueError(f"cap must be >= 1, got {cap}")
    log_ratio, mask = _log_ratio(trainer_logprobs, sampler_logprobs, mask)
    level_ratio = _level_log_ratio(log_ratio, mask, level)  # [B, T]
    log_cap = math.log(cap)
    weights = torch.exp(level_ratio.clamp(max=log_cap))
    weights = torch.where(mask > 0, weights, torch.ones_like(weights))
    metrics = _metrics(log_ratio, mask, weights, hit=level_ratio > log_cap, level=level)
    metrics["is_clip_frac"], metrics["is_mask_frac"] = metrics.pop("is_hit_frac"), 0.0
    if not enabled:
        weights = torch.ones_like(weights)
    return weights.detach(), metrics


def masked_is_weights(
    trainer_logprobs: torch.Tensor,
    sampler_logprobs: torch.Tensor,
    mask: torch.Tensor,
    *,
    level: Level = "token",
    low: float = 0.5,
    high: float = 2.0,
) -> tuple[torch.Tensor, dict[str, float]]:
    """Masked importance sampling: weight 0 where the ratio at ``level`` lies outside [``low``, ``high``],
    1 elsewhere ([B, T], detached), and mismatch metrics (``is_mask_frac``: the share of tokens, or of
    sequences at the sequence levels, dropped; ``is_clip_frac`` is 0). ``low`` <= 1 <= ``high``, so a
    sampler that agrees with the trainer never loses a token."""
    if not 0 < low <= 1 <= high:
        raise ValueError(f"need 0 < low <= 1 <= high, got low={low}, high={high}")
    log_ratio, mask = _log_ratio(trainer_logprobs, sampler_logprobs, mask)
    level_ratio = _level_log_ratio(log_ratio, mask, level)  # [B, T]
    outside = (level_ratio < math.log(low)) | (level_ratio > math.log(high))  # [B, T]
    weights = torch.where((mask > 0) & outside, 0.0, 1.0)
    metrics = _metrics(log_ratio, mask, weights, hit=outside, level=level)
    metrics["is_mask_frac"], metrics["is_clip_frac"] = metrics.pop("is_hit_frac"), 0.0
    return weights.detach(), metrics


def _log_ratio(
    trainer_logprobs: torch.Tensor, sampler_logprobs: torch.Tensor, mask: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """``log r_t`` [B, T] (0 off the mask) and the mask as float32; shapes checked."""
    if not trainer_logprobs.shape == sampler_logprobs.shape == mask.shape:
        raise ValueError(
            f"shape mismatch: trainer {tuple(trainer_logprobs.shape)}, sampler "
            f"{tuple(sampler_logprobs.shape)}, mask {tuple(mask.shape)}"
        )
    mask = mask.to(torch.float32)
    diff = trainer_logprobs.detach().float() - sampler_logprobs.detach().float()
    return torch.where(mask > 0, diff, 0.0), mask


def _level_log_ratio(log_ratio: torch.Tensor, mask: torch.Tensor, level: str) -> torch.Tensor:
    """The log of the ratio each token's weight is built from, [B, T]: its own (``token``), its
    sequence's sum (``sequence``) or mean (``geo_sequence``) over policy tokens."""
    if level == "token":
        return log_ratio
    if level not in LEVELS:
        raise ValueError(f"level must be one of {', '.join(LEVELS)}; got {level!r}")
    total = log_ratio.sum(dim=-1, keepdim=True)  # [B, 1]
    if level == "geo_sequence":
        total = total / mask.sum(dim=-1, keepdim=True).clamp(min=1.0)
    return total.expand_as(log_ratio)


def _metrics(
    log_ratio: torch.Tensor, mask: torch.Tensor, weights: torch.Tensor, *, hit: torch.Tensor, level: str
) -> dict[str, float]:
    """Over policy tokens: ``mismatch_log_ratio_abs_mean``/``_max`` (|log pi_old - log pi_sampler|),
    ``mismatch_ratio_mean``/``_max`` (r = pi_old / pi_sampler; exp(20) at most), ``mismatch_kl`` (the
    k3 estimate r - 1 - log r of KL(sampler || trainer), with samples from the sampler),
    ``is_weight_mean``; and ``is_hit_frac``, the share of tokens (``level`` token) or of sequences with
    policy tokens (the sequence levels) where ``hit`` [B, T] holds."""
    on = mask > 0
    ratio = torch.exp(log_ratio.clamp(max=_LOG_RATIO_CLAMP))
    if level == "token":
        hit_frac = _masked_mean(hit.float(), mask)
    else:
        rows = on.any(dim=-1)  # [B]
        hit_frac = float((hit[:, 0] & rows).sum() / rows.sum().clamp(min=1))
    return {
        "mismatch_log_ratio_abs_mean": _masked_mean(log_ratio.abs(), mask),
        "mismatch_log_ratio_abs_max": float(log_ratio.abs().max()) if on.any() else 0.0,
        "mismatch_ratio_mean": _masked_mean(ratio, mask),
        "mismatch_ratio_max": float(ratio[on].max()) if on.any() else 1.0,
        "mismatch_kl": _masked_mean(ratio - 1.0 - log_ratio, mask),
        "is_weight_mean": _masked_mean(weights, mask),
        "is_hit_frac": hit_frac,
    }


def _masked_mean(values: torch.Tensor, mask: torch.Tensor) -> float:
    return float(torch.where(mask > 0, values, 0.0).sum() / mask.sum().clamp(min=1.0))
