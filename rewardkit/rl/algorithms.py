"""The RL algorithms as pure tensor functions: advantages, policy and value losses, loss aggregation, KL, entropy.

Every algorithm rewardkit trains (grpo, dr_grpo, dapo, rloo, ppo, reinforce_pp, gspo, cispo, sapo) is a
combination of entries from four registries, chosen by name in an `AlgorithmConfig` (see `preset`). The
trainer looks pieces up by name and never branches on the algorithm's name:

    cfg = preset("dapo", clip_eps_high=0.3)
    rewards_t = token_rewards(rewards, mask, cfg, old_logprobs, ref_logprobs)      # [B, T]
    adv, returns = ADVANTAGES[cfg.advantage](rewards_t, mask, group_ids, values, cfg)  # whole rollout batch
    for step_batches in optimizer_steps:                                  # each a list of micro-batches
        norm = StepNorm.from_masks([mb.mask for mb in step_batches], constant=max_new_tokens)
        for mb in step_batches:
            loss, metrics = policy_loss(mb.logprobs, mb.old_logprobs, mb.adv, mb.mask, norm, cfg, ...)
            loss.backward()                                               # no further scaling

Shapes: B sequences, T response positions (padded), V vocabulary. `mask` [B, T] is true on policy tokens,
the tokens the model sampled and is trained on; false on padding and on environment/tool tokens of
multi-turn rollouts. Values at masked positions never reach a loss or a statistic (selected out with where(),
not multiplied by 0); keep them finite, as model outputs are, so that their zero gradients stay zero.

Conventions pinned by tests and explained in docs/algorithms.md:
- std is the unbiased (Bessel, n - 1) estimate, as torch.std and the TRL/verl GRPO implementations use, so
  learning rates carry over from them. A group of one has std 0 (not NaN) and advantage 0.
- eps is added to the std, not the variance: (x - mean) / (std + eps).
- A group (or batch) whose values are all equal gets advantage exactly 0 (forced, not left to rounding).
- Empty masks give a loss of exactly 0 and zero gradients, never NaN.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, fields
from typing import Any

import torch
from torch import Tensor

from rewardkit.config import bad_value, check_ranges, suggest
from rewardkit.rl.distributed import all_max, all_min, all_sum

LOG_RATIO_CLAMP = 20.0  # |log pi/pi_old| beyond this is clamped before exp(), so a ratio never overflows


# ---------------------------------------------------------------------------------------------------------------
# Registries


class Registry:
    """A name -> function table filled by a decorator. One table per extension point, one signature per table."""

    def __init__(self, kind: str, variable: str, signature: str):
        self.kind = kind  # "advantage estimator", used in error messages
        self.variable = variable  # the module attribute holding this registry, for the "how to add one" hint
        self.signature = signature
        self._fns: dict[str, Callable[..., Any]] = {}
        self._info: dict[str, dict[str, Any]] = {}

    def register(self, name: str, **info: Any) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        """Decorator adding `fn` under `name`; `info` holds facts the trainer needs (e.g. needs_values,
        group_relative)."""

        def add(fn: Callable[..., Any]) -> Callable[..., Any]:
            if name in self._fns:
                old = self._fns[name]
                raise ValueError(
                    f"{self.kind} {name!r} is already registered by {old.__module__}.{old.__qualname__}"
                )
            self._fns[name] = fn
            self._info[name] = info
            return fn

        return add

    def __getitem__(self, name: str) -> Callable[..., Any]:
        if name not in self._fns:
            raise ValueError(
                f"unknown {self.kind} {name!r}; known: {', '.join(self.names())}. "
                f"Add one with @{self.variable}.register({name!r}) on a function {self.signature}."
            )
        return self._fns[name]

    def __contains__(self, name: object) -> bool:
        return name in self._fns

    def info(self, name: str) -> dict[str, Any]:
        self[name]  # raises the helpful error for unknown names
        return dict(self._info[name])

    def names(self) -> list[str]:
        return sorted(self._fns)


ADVANTAGES = Registry(
    "advantage estimator",
    "ADVANTAGES",
    "(token_rewards [B,T], mask [B,T], group_ids [B], values [B,T] | None, cfg) -> (advantages [B,T], returns [B,T])",
)
POLICY_LOSSES = Registry(
    "policy loss",
    "POLICY_LOSSES",
    "(logprobs [B,T], old_logprobs [B,T], advantages [B,T], mask [B,T], cfg) -> (loss [B,T], stats {name: [B,T]})",
)
AGGREGATIONS = Registry(
    "loss aggregation", "AGGREGATIONS", "(loss [B,T], mask [B,T], norm: StepNorm) -> scalar"
)
KL_ESTIMATORS = Registry("KL estimator", "KL_ESTIMATORS", "(logprobs [B,T], ref_logprobs [B,T]) -> kl [B,T]")


# ---------------------------------------------------------------------------------------------------------------
# Config and presets


WHERE = "algorithm config"
_RANGES = {
    "clip_eps_low": "[0, 1]",
    "clip_eps_high": ">= 0",
    "sapo_tau_pos": "> 0",
    "sapo_tau_neg": "> 0",
    "pass_k": ">= 1",
    "dual_clip_c": "> 1",
    "adv_eps": ">= 0",
    "gamma": "[0, 1]",
    "lam": "[0, 1]",
    "kl_coef": ">= 0",
    "entropy_coef": ">= 0",
    "value_clip": "> 0",
    "overlong_buffer_frac": "[0, 1)",
}
"""AlgorithmConfig's numeric fields and their valid ranges (``rewardkit.config.in_range`` rules)."""


@dataclass(frozen=True)
class AlgorithmConfig:
    """Every algorithmic knob of a run. Build one with `preset(name, **overrides)`; docs/algorithms.md maps each
    field to its paper and equation."""

    advantage: str = "grpo"
    """Advantage estimator, a name in ADVANTAGES: grpo, grpo_batch_std, dr_grpo, rloo, pass_at_k, reinforce_pp,
    gae."""
    loss_agg: str = "seq_mean_token_mean"
    """How per-token losses become one scalar per optimizer step, a name in AGGREGATIONS."""
    policy_loss: str = "ppo_clip"
    """Per-token policy loss, a name in POLICY_LOSSES: ppo_clip, gspo, gspo_token, cispo, sapo."""
    clip_eps_low: float = 0.2
    """PPO clip range below 1: the ratio is clipped at 1 - clip_eps_low (Schulman et al. 2017, eq. 7); 1 means
    no lower bound. gspo clips the sequence ratio with it, cispo the IS weight."""
    clip_eps_high: float = 0.2
    """PPO clip range above 1: 1 + clip_eps_high. DAPO's clip-higher sets it above clip_eps_low (0.28)."""
    sapo_tau_pos: float = 1.0
    """sapo only: temperature of the soft gate on tokens with a positive advantage (larger: faster decay)."""
    sapo_tau_neg: float = 1.05
    """sapo only: temperature of the soft gate on tokens with a negative (or zero) advantage."""
    pass_k: int = 1
    """pass_at_k only: the k of the pass@k objective (min(k, group size) where a group is smaller); 1 gives
    GRPO's advantage with the population std."""
    dual_clip_c: float | None = None
    """Dual-clip bound c > 1 on the loss of negative-advantage tokens (Ye et al. 2020); None disables it."""
    adv_eps: float = 1e-6
    """Added to the std in every normalisation: (x - mean) / (std + adv_eps)."""
    gamma: float = 1.0
    """Discount per policy token, for returns (reinforce_pp) and GAE."""
    lam: float = 1.0
    """GAE lambda (Schulman et al. 2016): 1 gives Monte Carlo returns minus values, 0 gives TD(0)."""
    whiten_advantages: bool = True
    """gae only: whiten advantages over the batch's policy tokens, as PPO implementations do."""
    group_baseline: bool = False
    """reinforce_pp only: subtract the group mean reward before batch whitening (REINFORCE++-baseline)."""
    kl_coef: float = 0.0
    """Weight of KL(pi || pi_ref). 0 means no reference model is needed at all."""
    kl_estimator: str = "k3"
    """KL estimator, a name in KL_ESTIMATORS: k1, k2, k3 (Schulman 2020)."""
    kl_in_reward: bool = False
    """True: subtract kl_coef * KL per token from the reward (PPO/RLOO/REINFORCE++ style). False: add it to the
    loss (GRPO style)."""
    entropy_coef: float = 0.0
    """Weight of an entropy bonus in the loss (0: entropy is only logged)."""
    value_clip: float = 0.2
    """gae only: new values stay within old_values +- value_clip in the clipped value loss."""
    dynamic_sampling: bool = False
    """DAPO: drop groups whose rewards are all equal and sample more prompts (read by the sampler)."""
    dynamic_sampling_metric: str = "auto"
    """What dynamic sampling compares within a group (DAPO sec. 3.2 filters on accuracy, not on the shaped
    reward): ``auto`` (the environment's ``correctness_metric``: math's ``correct``, code's
    ``all_passed``, tool_use's ``outcome``; else ``correct`` where a Score has it; else ``env_reward``), ``env_reward`` (the environment's reward before overlong shaping), ``reward`` (after
    shaping), or the name of any metric in the environment's Scores."""
    overlong_buffer_frac: float = 0.0
    """DAPO soft overlong penalty: buffer length as a fraction of max_new_tokens; 0 disables it."""
    overlong_filter: bool = False
    """DAPO overlong filtering: truncated responses are masked out of the loss (read by the sampler)."""

    def __post_init__(self) -> None:
        for key, registry in (
            ("advantage", ADVANTAGES),
            ("loss_agg", AGGREGATIONS),
            ("policy_loss", POLICY_LOSSES),
            ("kl_estimator", KL_ESTIMATORS),
        ):  # unknown names fail here, at configuration time, with the list of known ones
            name = getattr(self, key)
            if name not in registry:
                hint = suggest(name, registry.names()) + f"; add one with @{registry.variable}.register(...)"
                raise bad_value(WHERE, key, name, f"one of {', '.join(registry.names())}", hint)
        check_ranges(self, _RANGES, where=WHERE)
        if not (isinstance(self.dynamic_sampling_metric, str) and self.dynamic_sampling_metric.strip()):
            expected = "auto, env_reward, reward, or the name of a Score metric"
            raise bad_value(WHERE, "dynamic_sampling_metric", self.dynamic_sampling_metric, expected)
        if self.kl_coef > 0 and not self.kl_in_reward and self.kl_estimator == "k1":
            raise bad_value(
                WHERE,
                "kl_estimator",
                "k1",
                "k2 or k3 for a KL term in the loss",
                " (k1 as a loss term has zero expected gradient: it only adds noise); or kl_in_reward=True",
            )

    @property
    def group_relative(self) -> bool:
        """True when advantages compare each sample with the others of its group, so that a group of one
        has advantage 0 and trains nothing: group_size must be >= 2 (ADVANTAGES' ``group_relative`` info:
        True, or the name of the bool field that makes the estimator so, e.g. ``group_baseline``)."""
        relative = ADVANTAGES.info(self.advantage).get("group_relative", False)
        return bool(getattr(self, relative)) if isinstance(relative, str) else bool(relative)

    @property
    def needs_values(self) -> bool:
        """True when the advantage estimator reads a value model, so the trainer must build one (PPO)."""
        return bool(ADVANTAGES.info(self.advantage).get("needs_values", False))

    @property
    def needs_reference(self) -> bool:
        """True when a frozen reference model is needed: only for a non-zero KL coefficient."""
        return self.kl_coef > 0


# Each algorithm is a set of AlgorithmConfig fields; fields not named keep their defaults. docs/algorithms.md has
# the same table with the paper behind every value (a test keeps the two in step).
ALGORITHM_PRESETS: dict[str, dict[str, Any]] = {
    "grpo": {"advantage": "grpo", "loss_agg": "seq_mean_token_mean", "kl_coef": 0.04, "kl_estimator": "k3"},
    "dr_grpo": {"advantage": "dr_grpo", "loss_agg": "seq_mean_token_sum_norm", "kl_coef": 0.0},
    "dapo": {
        "advantage": "grpo",
        "loss_agg": "token_mean",
        "clip_eps_low": 0.2,
        "clip_eps_high": 0.28,
        "kl_coef": 0.0,
        "dynamic_sampling": True,
        "overlong_buffer_frac": 0.2,
    },
    "rloo": {"advantage": "rloo", "loss_agg": "token_mean", "kl_in_reward": True, "kl_estimator": "k1"},
    "ppo": {
        "advantage": "gae",
        "loss_agg": "token_mean",
        "gamma": 1.0,
        "lam": 0.95,
        "whiten_advantages": True,
        "kl_in_reward": True,
        "kl_estimator": "k1",
    },
    "reinforce_pp": {
        "advantage": "reinforce_pp",
        "loss_agg": "token_mean",
        "kl_in_reward": True,
        "kl_estimator": "k1",
    },
    "gspo": {
        "advantage": "grpo",
        "policy_loss": "gspo",
        "loss_agg": "seq_mean_token_mean",  # with per-token copies of the sequence loss: (1/N) sum_i L_i
        "clip_eps_low": 3e-4,
        "clip_eps_high": 4e-4,
        "kl_coef": 0.0,
    },
    "cispo": {
        "advantage": "grpo",
        "policy_loss": "cispo",
        "loss_agg": "token_mean",
        "clip_eps_low": 1.0,  # no lower bound on the IS weight, as in the paper
        "clip_eps_high": 4.0,  # IS weight capped at 5
        "kl_coef": 0.0,
    },
    "sapo": {
        "advantage": "grpo",
        "policy_loss": "sapo",
        "loss_agg": "seq_mean_token_mean",
        "sapo_tau_pos": 1.0,
        "sapo_tau_neg": 1.05,
        "kl_coef": 0.0,
    },
}


def preset(name: str, **overrides: Any) -> AlgorithmConfig:
    """The AlgorithmConfig of a named algorithm, with `overrides` (AlgorithmConfig fields) applied on top."""
    if name not in ALGORITHM_PRESETS:
        raise ValueError(f"unknown algorithm {name!r}; known: {', '.join(sorted(ALGORITHM_PRESETS))}")
    known = {f.name for f in fields(AlgorithmConfig)}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise ValueError(f"unknown algorithm option(s) {unknown}; known: {', '.join(sorted(known))}")
    return AlgorithmConfig(**{**ALGORITHM_PRESETS[name], **overrides})


# ---------------------------------------------------------------------------------------------------------------
# Masked statistics


def masked_sum(x: Tensor, mask: Tensor, dim: int | None = None) -> Tensor:
    """sum(x over mask). Uses where(), not x * mask, so inf/NaN in masked-out positions cannot leak in."""
    masked = torch.where(mask.bool(), x, torch.zeros((), dtype=x.dtype, device=x.device))
    return masked.sum() if dim is None else masked.sum(dim)


def masked_mean(x: Tensor, mask: Tensor, dim: int | None = None) -> Tensor:
    """sum(x over mask) / count(mask); 0 where the mask is empty (not NaN)."""
    count = mask.bool().sum() if dim is None else mask.bool().sum(dim)
    return masked_sum(x, mask, dim) / count.clamp(min=1)


def masked_whiten(x: Tensor, mask: Tensor, eps: float) -> Tensor:
    """(x - mean) / (std + eps) over the masked entries of the whole batch; 0 outside the mask.

    std is unbiased (n - 1). When all masked entries are equal (or there are fewer than two) the result is
    exactly 0 rather than rounding noise divided by eps. Over several ranks the batch is all of theirs:
    mean and std are all-reduced (``distributed.all_sum``), so each rank whitens as one process would.
    """
    mask = mask.bool()
    kept = x[mask]  # [n]
    n = all_sum(mask.sum())
    mean = all_sum(kept.sum()) / n.clamp(min=1)
    std = (all_sum(((kept - mean) ** 2).sum()) / (n - 1).clamp(min=1)).sqrt()
    out = torch.where(mask, (x - mean) / (std + eps), 0.0)
    if int(n) == 0 or _all_equal_everywhere(kept):
        return torch.zeros_like(out)  # all equal: exactly 0, not rounding noise / eps
    return out


def _all_equal_everywhere(values: Tensor) -> bool:
    """Whether every rank's ``values`` hold one and the same number (an empty rank agrees with any)."""
    inf = torch.tensor(float("inf"), dtype=torch.float64)
    low = all_min(values.min().double() if values.numel() else inf)
    high = all_max(values.max().double() if values.numel() else -inf)
    return bool(low == high)


def _group_stats(x: Tensor, group_ids: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Per-sample statistics of each sample's group: mean, unbiased std, size, all-equal flag. [B] -> 4 x [B].

    Group ids may be any integers, in any order; groups may have different sizes.
    """
    _, inv = torch.unique(group_ids, return_inverse=True)  # [B] group index 0..n-1
    n = int(inv.max()) + 1 if inv.numel() else 0
    count = torch.bincount(inv, minlength=n).to(x.dtype)  # [n]
    mean = torch.zeros(n, dtype=x.dtype, device=x.device).index_add_(0, inv, x) / count.clamp(min=1)  # [n]
    sq_dev = torch.zeros(n, dtype=x.dtype, device=x.device).index_add_(0, inv, (x - mean[inv]) ** 2)  # [n]
    std = (sq_dev / (count - 1).clamp(min=1)).sqrt()  # [n]; a group of one: 0 / 1 = 0
    lo = torch.full((n,), math.inf, dtype=x.dtype, device=x.device).scatter_reduce(0, inv, x, "amin")  # [n]
    hi = torch.full((n,), -math.inf, dtype=x.dtype, device=x.device).scatter_reduce(0, inv, x, "amax")  # [n]
    return mean[inv], std[inv], count[inv], (lo == hi)[inv]


# ---------------------------------------------------------------------------------------------------------------
# Rewards and returns


def token_rewards(
    rewards: Tensor,
    mask: Tensor,
    cfg: AlgorithmConfig,
    old_logprobs: Tensor | None = None,
    ref_logprobs: Tensor | None = None,
) -> Tensor:
    """Per-token rewards [B, T]: the outcome reward on each sequence's last policy token, minus
    kl_coef * KL_t on every policy token when cfg.kl_in_reward (Ouyang et al. 2022; Hu 2025).

    Pass the policy-token mask here, before any overlong filtering: a sequence with no policy token cannot hold
    its reward. KL uses the rollout policy's log-probs (old_logprobs) and is a constant, not differentiated.
    """
    out = on_last_token(rewards, mask)  # [B, T]
    if cfg.kl_in_reward and cfg.kl_coef > 0:
        if old_logprobs is None or ref_logprobs is None:
            raise ValueError("kl_in_reward with kl_coef > 0 needs old_logprobs and ref_logprobs")
        old, ref = old_logprobs.detach().float(), ref_logprobs.detach().float()  # [B, T]
        kl = KL_ESTIMATORS[cfg.kl_estimator](old, ref)  # [B, T]
        out = out - cfg.kl_coef * torch.where(mask.bool(), kl, 0.0)
    return out


def distill_advantage(old_logprobs: Tensor, teacher_logprobs: Tensor, mask: Tensor) -> Tensor:
    """On-policy distillation's per-token advantage [B, T] (Agarwal et al. 2024, GKD, arXiv 2306.13649, with
    on-policy samples and the reverse KL; Lu & Thinking Machines 2025, "On-Policy Distillation"):
        A_t = -(log pi_old(y_t) - log pi_teacher(y_t)),
    the negated per-token estimate of KL(pi_old || pi_teacher) at tokens sampled from pi_old (k1). No
    discount and no normalisation: each token is pushed towards the teacher by its own log-ratio, and with
    the importance-ratio policy loss the update descends the reverse KL. Detached; 0 off the mask."""
    log_ratio = old_logprobs.detach().float() - teacher_logprobs.detach().float()  # [B, T]
    return torch.where(mask.bool(), -log_ratio, 0.0)


def on_last_token(x: Tensor, mask: Tensor) -> Tensor:
    """[B] -> [B, T]: x[i] on the last policy token of row i, 0 elsewhere (and for rows with no policy token)."""
    mask = mask.bool()
    B, T = mask.shape
    out = torch.zeros(B, T, dtype=torch.float32, device=mask.device)
    if T == 0:
        return out
    positions = torch.arange(T, device=mask.device).expand(B, T)  # [B, T]
    last = torch.where(mask, positions, -1).amax(-1)  # [B]; -1: no policy token
    rows = (last >= 0).nonzero().squeeze(-1)  # [B'] rows that have a policy token
    out[rows, last[rows]] = x[rows].to(out.dtype)
    return out


def discounted_returns(token_rewards: Tensor, mask: Tensor, gamma: float) -> Tensor:
    """Reward-to-go G_t = sum_{s >= t, s policy} gamma^(#policy tokens from t to s) r_s, 0 off the mask.

    Discounting counts policy tokens only: environment tokens of a multi-turn rollout are not actions.
    """
    mask = mask.bool()
    if gamma == 1.0:  # the common case, without a python loop: a reverse cumulative sum
        rewards = torch.where(mask, token_rewards.float(), 0.0)  # [B, T]
        return torch.where(mask, rewards.flip(-1).cumsum(-1).flip(-1), 0.0)
    out = torch.zeros_like(token_rewards, dtype=torch.float32)  # [B, T]
    running = torch.zeros(token_rewards.shape[0], dtype=torch.float32, device=token_rewards.device)  # [B]
    for t in reversed(range(token_rewards.shape[1])):
        running = torch.where(mask[:, t], token_rewards[:, t] + gamma * running, running)
        out[:, t] = torch.where(mask[:, t], running, 0.0)
    return out


def _outcome(token_rewards: Tensor, mask: Tensor) -> Tensor:
    """Sequence reward [B]: the sum of a sequence's token rewards (outcome plus any KL penalties)."""
    return masked_sum(token_rewards.float(), mask, dim=-1)


def _per_token(adv: Tensor, mask: Tensor) -> Tensor:
    """Broadcast a sequence-level advantage [B] to its policy tokens [B, T]."""
    return torch.where(mask.bool(), adv[:, None], 0.0)


# ---------------------------------------------------------------------------------------------------------------
# Advantage estimators. One signature:
#   (token_rewards [B,T], mask [B,T], group_ids [B], values [B,T] | None, cfg) -> (advantages [B,T], returns [B,T])
# Call them once on the whole rollout batch (all ranks' rewards gathered): group and batch statistics must not
# depend on how the batch is later cut into micro-batches. `returns` is the value-loss target for gae and the
# reward-to-go for the others.


@ADVANTAGES.register("grpo", group_relative=True)
def grpo_advantage(token_rewards, mask, group_ids, values, cfg):
    """GRPO outcome advantage (Shao et al. 2024, DeepSeekMath, sec. 4.1.2): A_i = (r_i - mean_g) / (std_g + eps),
    the same for every token of sequence i. std_g is unbiased; a group whose rewards are all equal (a group of
    one included) gets A = 0 exactly."""
    r = _outcome(token_rewards, mask)  # [B]
    mean, std, _, all_equal = _group_stats(r, group_ids)  # 4 x [B]
    adv = torch.where(all_equal, 0.0, (r - mean) / (std + cfg.adv_eps))  # [B]
    return _per_token(adv, mask), discounted_returns(token_rewards, mask, 1.0)


@ADVANTAGES.register("dr_grpo", group_relative=True)
def dr_grpo_advantage(token_rewards, mask, group_ids, values, cfg):
    """Dr. GRPO (Liu et al. 2025, "Understanding R1-Zero-Like Training", sec. 3.2): A_i = r_i - mean_g.
    Dividing by std_g is dropped because it up-weights prompts that are nearly always or never solved."""
    r = _outcome(token_rewards, mask)  # [B]
    mean, _, _, all_equal = _group_stats(r, group_ids)
    adv = torch.where(all_equal, 0.0, r - mean)  # Dr. GRPO: no "/ (std + eps)"
    return _per_token(adv, mask), discounted_returns(token_rewards, mask, 1.0)


@ADVANTAGES.register("rloo", group_relative=True)
def rloo_advantage(token_rewards, mask, group_ids, values, cfg):
    """RLOO (Ahmadian et al. 2024, "Back to Basics"): A_i = r_i - (sum_{j != i} r_j) / (G - 1), the mean of
    the other G - 1 samples as baseline; equal to G / (G - 1) * (r_i - mean_g). A group of one has no other
    sample and gets A = 0."""
    r = _outcome(token_rewards, mask)  # [B]
    mean, _, count, all_equal = _group_stats(r, group_ids)
    loo_mean = (mean * count - r) / (count - 1).clamp(min=1)  # [B] mean of the other samples
    adv = torch.where(all_equal, 0.0, r - loo_mean)  # count == 1 implies all_equal
    return _per_token(adv, mask), discounted_returns(token_rewards, mask, 1.0)


@ADVANTAGES.register("grpo_batch_std", group_relative=True)
def grpo_batch_std_advantage(token_rewards, mask, group_ids, values, cfg):
    """Group mean, batch std (Liu et al. 2025, "Tricks or Traps? A Deep Dive into RL for LLM Reasoning",
    arXiv 2508.08221, the Lite PPO normalisation; TRL's ``scale_rewards="batch"``):
        A_i = (r_i - mean_g) / (std_batch + eps),
    std_batch the unbiased std of all rewards of the rollout batch. GRPO's per-group baseline stays; its
    per-group scale, which inflates groups whose rewards are nearly all equal, goes."""
    r = _outcome(token_rewards, mask)  # [B]
    mean, _, _, all_equal = _group_stats(r, group_ids)  # [B]
    n = all_sum(torch.tensor(float(r.numel())))  # batch-level, unbiased; over every rank's samples
    batch_mean = all_sum(r.sum().double()) / n.clamp(min=1)
    var = all_sum(((r.double() - batch_mean) ** 2).sum()) / (n - 1).clamp(min=1)
    std = var.sqrt().to(r.dtype) if n > 1 else r.new_zeros(())
    adv = torch.where(all_equal, 0.0, (r - mean) / (std + cfg.adv_eps))  # Lite PPO: batch std, not std_g
    return _per_token(adv, mask), discounted_returns(token_rewards, mask, 1.0)


@ADVANTAGES.register("pass_at_k", group_relative=True)
def pass_at_k_advantage(token_rewards, mask, group_ids, values, cfg):
    """Pass@k training's analytic advantage (Chen et al. 2025, "Pass@k Training for Adaptively Balancing
    Exploration and Exploitation of Large Reasoning Models", arXiv 2508.10751, its analytical derivation).

    A group of G samples stands for all C(G, k) subsets of k of them, each scored by its best reward (pass@k
    for 0/1 rewards, max@k otherwise). With R the mean subset score and sigma its population std over the
    subsets, sample i gets the mean score of the subsets that contain it, relative to R:
        A_i = (mean_{S contains i} max_{j in S} r_j - R) / (sigma + eps).
    For 0/1 rewards with c of G correct this is the paper's closed form: R = 1 - C(G-c, k) / C(G, k),
    sigma = sqrt(R (1 - R)), A_correct = (1 - R) / sigma, A_wrong = (1 - R - C(G-c-1, k-1) / C(G-1, k-1)) / sigma.
    k = cfg.pass_k (min(k, G) for a smaller group); k = 1 is GRPO with the population std. A group whose
    rewards are all equal gets 0."""
    r = _outcome(token_rewards, mask)  # [B]
    _, inv = torch.unique(group_ids, return_inverse=True)  # [B] group index
    adv = torch.zeros_like(r)
    for g in range(int(inv.max()) + 1 if inv.numel() else 0):
        rows = (inv == g).nonzero().squeeze(-1)  # [G]
        adv[rows] = _pass_at_k_group(r[rows], cfg.pass_k, cfg.adv_eps)
    return _per_token(adv, mask), discounted_returns(token_rewards, mask, 1.0)


def _pass_at_k_group(r: Tensor, k: int, eps: float) -> Tensor:
    """pass_at_k_advantage for one group's rewards [G] -> [G], through the rewards in ascending order: the
    one at (0-based) rank q is the best of C(q, k-1) of the C(G, k) subsets, and of C(q-1, k-2) of those that
    also hold a lower-ranked sample p, besides the C(p, k-1) where p itself is the best."""
    n = r.numel()
    if n < 2 or bool((r == r[0]).all()):
        return torch.zeros_like(r)  # no signal: exactly 0, as for every group estimator
    best_of, weights = _pass_at_k_weights(n, min(k, n))
    order = torch.argsort(r, stable=True)  # [G] ascending
    s = r[order].double()  # [G]
    best_of, weights = s.new_tensor(best_of), s.new_tensor(weights)  # [G], [G, G]
    mean = (best_of * s).sum()  # R
    sigma = ((best_of * s * s).sum() - mean**2).clamp(min=0).sqrt()  # population std over the subsets
    adv_sorted = (weights @ s - mean) / (sigma + eps)  # [G]
    return torch.empty_like(r).index_put_((order,), adv_sorted.to(r.dtype))


@functools.lru_cache(maxsize=64)
def _pass_at_k_weights(n: int, k: int) -> tuple[list[float], list[list[float]]]:
    """For G = n ranked samples: P(the best of a random k-subset is rank q) [n], and P(the best of a random
    k-subset holding rank p is rank q) [n, n] (p itself: C(p, k-1) subsets; q > p: C(q-1, k-2))."""
    best_of = [math.comb(q, k - 1) / math.comb(n, k) for q in range(n)]
    contain = math.comb(n - 1, k - 1)  # k-subsets holding a given sample
    weights = [[0.0] * n for _ in range(n)]
    for p in range(n):
        weights[p][p] = math.comb(p, k - 1) / contain
        for q in range(p + 1, n):
            weights[p][q] = math.comb(q - 1, k - 2) / contain if k >= 2 else 0.0
    return best_of, weights


@ADVANTAGES.register("reinforce_pp", group_relative="group_baseline")
def reinforce_pp_advantage(token_rewards, mask, group_ids, values, cfg):
    """REINFORCE++ (Hu 2025): token returns G_t = sum_{s >= t} gamma^(s-t) r_s (KL penalties included
    when cfg.kl_in_reward), then whitened over all policy tokens of the batch: A_t = (G_t - mean) / (std + eps).
    With cfg.group_baseline (REINFORCE++-baseline) each outcome reward first has its group mean subtracted."""
    rewards = token_rewards.float()
    if cfg.group_baseline:
        mean, _, _, _ = _group_stats(_outcome(rewards, mask), group_ids)  # [B]
        rewards = rewards - on_last_token(mean, mask)  # REINFORCE++-baseline: r - mean_g
    returns = discounted_returns(rewards, mask, cfg.gamma)  # [B, T]
    return masked_whiten(returns, mask, cfg.adv_eps), returns


@ADVANTAGES.register("gae", needs_values=True)
def gae_advantage(token_rewards, mask, group_ids, values, cfg):
    """GAE (Schulman et al. 2016, eq. 16): delta_t = r_t + gamma V_{t+1} - V_t, A_t = sum_l (gamma lam)^l delta_{t+l},
    computed over policy tokens only (environment tokens in between are skipped; V after the last policy
    token is 0). returns = A + V is the value target; A is whitened over the batch when cfg.whiten_advantages."""
    if values is None:
        raise ValueError("the gae estimator needs `values` [B, T] from a value model")
    mask = mask.bool()
    rewards, values = token_rewards.float(), values.detach().float()
    adv = torch.zeros_like(rewards)  # [B, T]
    next_value = torch.zeros(rewards.shape[0], device=rewards.device)  # [B] V of the next policy token
    running = torch.zeros_like(next_value)  # [B] A of the next policy token
    for t in reversed(range(rewards.shape[1])):
        m = mask[:, t]
        delta = rewards[:, t] + cfg.gamma * next_value - values[:, t]  # [B]
        running = torch.where(m, delta + cfg.gamma * cfg.lam * running, running)
        next_value = torch.where(m, values[:, t], next_value)
        adv[:, t] = torch.where(m, running, 0.0)
    returns = torch.where(mask, adv + values, 0.0)  # [B, T]
    if cfg.whiten_advantages:
        adv = masked_whiten(adv, mask, cfg.adv_eps)
    return adv, returns


# ---------------------------------------------------------------------------------------------------------------
# Policy loss. One signature:
#   (logprobs [B,T], old_logprobs [B,T], advantages [B,T], mask [B,T], cfg) -> (loss [B,T], stats {name: [B,T]})
# stats are per-token indicators/values; policy_loss() aggregates them like the loss, so they add up over
# micro-batches.


@POLICY_LOSSES.register("ppo_clip")
def ppo_clip_loss(logprobs, old_logprobs, advantages, mask, cfg):
    """PPO clipped surrogate (Schulman et al. 2017, eq. 7), per token, as a loss to minimise:
        rho = pi / pi_old,  L = -min(rho A, clip(rho, 1 - eps_low, 1 + eps_high) A)
    with DAPO's decoupled eps_low / eps_high (Yu et al. 2025, sec. 3.1 "Clip-Higher") and optional dual clip
    (Ye et al. 2020): for A < 0, L = min(L, -c A), which bounds the loss when rho is huge.
    Normalisation is left to the aggregation (AGGREGATIONS)."""
    log_ratio = (logprobs - old_logprobs.detach()).clamp(-LOG_RATIO_CLAMP, LOG_RATIO_CLAMP)  # [B, T]
    ratio = log_ratio.exp()  # [B, T]
    adv = advantages.detach()
    # DAPO clip-higher: the upper bound has its own eps_high (0.28 > eps_low = 0.2 in the paper)
    clipped = ratio.clamp(1 - cfg.clip_eps_low, 1 + cfg.clip_eps_high)  # [B, T]
    loss = -torch.minimum(ratio * adv, clipped * adv)  # [B, T]
    clip_high = (adv > 0) & (ratio > 1 + cfg.clip_eps_high)  # gradient cut: rho pushed too far up
    clip_low = (adv < 0) & (ratio < 1 - cfg.clip_eps_low)  # gradient cut: rho pushed too far down
    stats = {"clip_frac": (clip_high | clip_low).float(), "clip_frac_high": clip_high.float()}
    stats["clip_frac_low"] = clip_low.float()
    if cfg.dual_clip_c is not None:
        dual = (adv < 0) & (-cfg.dual_clip_c * adv < loss)  # [B, T] i.e. rho > c
        loss = torch.where(dual, -cfg.dual_clip_c * adv, loss)
        stats["dual_clip_frac"] = dual.float()
    stats["ratio"] = ratio.detach()
    return loss, stats


def _clip_stats(ratio: Tensor, adv: Tensor, cfg: AlgorithmConfig) -> dict[str, Tensor]:
    """PPO-style clip indicators [B, T]: the ratio left the band in the direction its advantage pushes."""
    high = (adv > 0) & (ratio > 1 + cfg.clip_eps_high)
    low = (adv < 0) & (ratio < 1 - cfg.clip_eps_low)
    return {"clip_frac": (high | low).float(), "clip_frac_high": high.float(), "clip_frac_low": low.float()}


def _sequence_log_ratio(logprobs: Tensor, old_logprobs: Tensor, mask: Tensor) -> Tensor:
    """GSPO's length-normalised sequence log-ratio [B]: mean over policy tokens of log pi - log pi_old."""
    log_ratio = masked_mean(logprobs - old_logprobs.detach(), mask, dim=-1)  # [B]; 0 for an empty row
    return log_ratio.clamp(-LOG_RATIO_CLAMP, LOG_RATIO_CLAMP)


@POLICY_LOSSES.register("gspo")
def gspo_loss(logprobs, old_logprobs, advantages, mask, cfg):
    """GSPO (Zheng et al. 2025, "Group Sequence Policy Optimization", arXiv 2507.18071, eq. 5): one
    importance ratio per sequence, clipped and optimised at the sequence level:
        s_i = (pi(y_i) / pi_old(y_i))^(1/|y_i|) = exp(mean_t log(pi_t / pi_old_t)),
        L_i = -min(s_i A_i, clip(s_i, 1 - eps_low, 1 + eps_high) A_i),
    with A_i the sequence's advantage (the mean of its per-token advantages: the outcome advantage itself for
    grpo-style estimators). The band is narrow (3e-4 / 4e-4 in the paper, sec. 5.1) because s_i is a
    per-token geometric mean; a clipped sequence gives none of its tokens a gradient.

    Returns L_i on every token of sequence i, so seq_mean_token_mean gives the paper's (1/N) sum_i L_i (other
    aggregations weight sequences by their length). clip_frac: the share of policy tokens in clipped sequences."""
    mask = mask.bool()
    log_s = _sequence_log_ratio(logprobs, old_logprobs, mask)  # [B]
    s = log_s.exp()  # [B]
    adv = masked_mean(advantages.detach(), mask, dim=-1)  # [B] the sequence's advantage
    clipped = s.clamp(1 - cfg.clip_eps_low, 1 + cfg.clip_eps_high)  # [B] GSPO: clip the sequence ratio
    seq_loss = -torch.minimum(s * adv, clipped * adv)  # [B]
    stats = _clip_stats(s[:, None].expand_as(logprobs), adv[:, None].expand_as(logprobs), cfg)
    stats["ratio"] = s.detach()[:, None].expand_as(logprobs)
    return seq_loss[:, None].expand_as(logprobs), stats  # [B, T] L_i on each token of sequence i


@POLICY_LOSSES.register("gspo_token")
def gspo_token_loss(logprobs, old_logprobs, advantages, mask, cfg):
    """GSPO-token (Zheng et al. 2025, arXiv 2507.18071, the token-level variant): per-token advantages with GSPO's sequence
    ratio as each token's value,
        s_it = sg[s_i] * pi_t / sg[pi_t],   L_it = -min(s_it A_it, clip(s_it, 1 - eps_low, 1 + eps_high) A_it).
    s_it equals s_i, and its gradient is s_i times that of log pi_t; so with A_it = A_i for all t this is GSPO
    exactly (value and gradient, under seq_mean_token_mean, the paper's (1/N) sum_i (1/|y_i|) sum_t)."""
    log_s = _sequence_log_ratio(logprobs, old_logprobs, mask).detach()  # [B] sg[log s_i]
    s_t = (log_s[:, None] + logprobs - logprobs.detach()).exp()  # [B, T] value s_i, gradient s_i dlog pi_t
    adv = advantages.detach()
    clipped = s_t.clamp(1 - cfg.clip_eps_low, 1 + cfg.clip_eps_high)  # [B, T]
    loss = -torch.minimum(s_t * adv, clipped * adv)  # [B, T]
    stats = _clip_stats(s_t.detach(), adv, cfg)
    stats["ratio"] = s_t.detach()
    return loss, stats


@POLICY_LOSSES.register("cispo")
def cispo_loss(logprobs, old_logprobs, advantages, mask, cfg):
    """CISPO (MiniMax 2025, "MiniMax-M1", arXiv 2506.13585, the CISPO objective): REINFORCE weighted by a clipped,
    stop-gradient importance weight,
        L_t = -sg(clip(r_t, 1 - eps_low, 1 + eps_high)) A_t log pi_t,   r_t = pi_t / pi_old_t.
    No token's gradient is dropped (PPO's clip zeroes the gradient of tokens past the band, often rare
    "reflection" tokens); clipping only bounds the weight. The paper sets no lower bound (eps_low = 1 here)
    and tunes eps_high; it normalises over all tokens of the batch (token_mean, the preset's aggregation).
    clip_frac: the share of tokens whose weight was clipped (either side, any advantage)."""
    log_ratio = (logprobs - old_logprobs.detach()).clamp(-LOG_RATIO_CLAMP, LOG_RATIO_CLAMP)  # [B, T]
    ratio = log_ratio.detach().exp()  # [B, T]
    # CISPO: clip the weight, not the update
    weight = ratio.clamp(1 - cfg.clip_eps_low, 1 + cfg.clip_eps_high)  # [B, T]
    loss = -weight * advantages.detach() * logprobs  # [B, T] the gradient flows through log pi only
    high, low = ratio > 1 + cfg.clip_eps_high, ratio < 1 - cfg.clip_eps_low
    stats = {"clip_frac": (high | low).float(), "clip_frac_high": high.float(), "clip_frac_low": low.float()}
    stats["ratio"] = ratio
    return loss, stats


@POLICY_LOSSES.register("sapo")
def sapo_loss(logprobs, old_logprobs, advantages, mask, cfg):
    """SAPO (Gao et al. 2025, "Soft Adaptive Policy Optimization", arXiv 2511.20347): a smooth,
    temperature-controlled gate in place of the hard clip,
        L_t = -f(r_t) A_t,   f(r) = sigmoid(tau (r - 1)) * 4 / tau,   tau = tau_pos if A_t > 0 else tau_neg,
    whose gradient is -A_t * w_t * r_t d log pi_t with w_t = 4 p (1 - p), p = sigmoid(tau (r_t - 1)): w = 1 on
    policy (the plain policy gradient) and decays smoothly as r_t leaves 1, faster for tau_neg > tau_pos
    (negative updates spread to many unsampled tokens; the paper uses 1.0 / 1.05). The paper normalises as
    GRPO does, (1/G) sum_i (1/|y_i|) sum_t (seq_mean_token_mean). Nothing is hard-clipped: clip_frac is 0 and
    soft_gate_weight logs the mean w."""
    log_ratio = (logprobs - old_logprobs.detach()).clamp(-LOG_RATIO_CLAMP, LOG_RATIO_CLAMP)  # [B, T]
    ratio = log_ratio.exp()  # [B, T]
    adv = advantages.detach()
    tau_pos, tau_neg = ratio.new_tensor(cfg.sapo_tau_pos), ratio.new_tensor(cfg.sapo_tau_neg)  # ratio's dtype
    tau = torch.where(adv > 0, tau_pos, tau_neg)  # [B, T]
    gate = torch.sigmoid(tau * (ratio - 1))  # [B, T] p
    loss = -gate * (4 / tau) * adv  # [B, T] SAPO: soft gate instead of min(rho A, clip(rho) A)
    p = gate.detach()
    stats = {"clip_frac": torch.zeros_like(p), "soft_gate_weight": 4 * p * (1 - p), "ratio": ratio.detach()}
    return loss, stats


# ---------------------------------------------------------------------------------------------------------------
# Loss aggregation. One signature: (loss [B,T], mask [B,T], norm: StepNorm) -> scalar.
# Denominators come from the whole optimizer step (StepNorm), never from the micro-batch, so the losses of a
# step's micro-batches add up to the loss of the whole step, and so do their gradients.


@dataclass(frozen=True)
class StepNorm:
    """Denominators of one optimizer step, computed once from all of the step's micro-batches.

    Over several ranks the trainer sums num_tokens and num_seqs over ranks and sums (not averages) the
    gradients (``rewardkit.rl.distributed``): the step's gradient is then the same as on one device.
    """

    num_tokens: int
    """Policy tokens in the whole optimizer step."""
    num_seqs: int
    """Sequences with at least one policy token in the step (fully masked ones, e.g. overlong-filtered, don't count)."""
    constant: float | None = None
    """Dr. GRPO's length constant for seq_mean_token_sum_norm, normally the max number of generated tokens."""

    @classmethod
    def from_masks(cls, masks: Iterable[Tensor], constant: float | None = None) -> StepNorm:
        """From the masks [B_i, T_i] of a step's micro-batches (each may be padded to its own length)."""
        masks = [m.bool() for m in masks]
        num_tokens = sum(int(m.sum()) for m in masks)
        num_seqs = sum(int(m.any(-1).sum()) for m in masks)
        return cls(num_tokens=num_tokens, num_seqs=num_seqs, constant=constant)


@AGGREGATIONS.register("token_mean")
def token_mean(loss, mask, norm):
    """DAPO's token-level loss (Yu et al. 2025, sec. 3.3): sum of all policy-token losses of the step / number of
    policy tokens of the step. Every token weighs the same, so long responses are not under-weighted."""
    return masked_sum(loss, mask) / max(norm.num_tokens, 1)


@AGGREGATIONS.register("seq_mean_token_mean")
def seq_mean_token_mean(loss, mask, norm):
    """GRPO (Shao et al. 2024, eq. 3): (1/N) sum_i (1/|o_i|) sum_t L_it, a token mean per sequence, then a mean
    over the N sequences of the step. Tokens of short responses weigh more (the length bias Dr. GRPO removes)."""
    per_seq = masked_sum(loss, mask, dim=-1) / mask.bool().sum(-1).clamp(min=1)  # [B]
    return per_seq.sum() / max(norm.num_seqs, 1)


@AGGREGATIONS.register("seq_mean_token_sum")
def seq_mean_token_sum(loss, mask, norm):
    """(1/N) sum_i sum_t L_it: sequence-level REINFORCE as in RLOO (Ahmadian et al. 2024), where a response is
    one action. The loss scale grows with response length."""
    return masked_sum(loss, mask) / max(norm.num_seqs, 1)


@AGGREGATIONS.register("seq_mean_token_sum_norm")
def seq_mean_token_sum_norm(loss, mask, norm):
    """Dr. GRPO (Liu et al. 2025, sec. 3.2): (1/N) sum_i sum_t L_it / C with a constant C (max generation length)
    in place of |o_i|, so the gradient has no length bias and a stable scale."""
    if norm.constant is None or norm.constant <= 0:
        raise ValueError("seq_mean_token_sum_norm needs StepNorm.constant > 0 (e.g. max_new_tokens)")
    return masked_sum(loss, mask) / (max(norm.num_seqs, 1) * norm.constant)


# ---------------------------------------------------------------------------------------------------------------
# KL estimators. One signature: (logprobs [B,T], ref_logprobs [B,T]) -> per-token estimate of KL(pi || pi_ref)
# at tokens sampled from pi (Schulman 2020, "Approximating KL divergence"; with r = pi_ref / pi).
# As a loss term, k2's gradient equals the gradient of KL(pi || pi_ref) in expectation; k3's equals the gradient
# of the reverse direction KL(pi_ref || pi); k1's is zero in expectation (AlgorithmConfig rejects k1 as a loss).


@KL_ESTIMATORS.register("k1")
def kl_k1(logprobs, ref_logprobs):
    """k1 = -log r = log pi - log pi_ref. Unbiased, high variance, can be negative. Used as a reward penalty."""
    return logprobs - ref_logprobs


@KL_ESTIMATORS.register("k2")
def kl_k2(logprobs, ref_logprobs):
    """k2 = (log r)^2 / 2. Biased, low variance, >= 0."""
    return 0.5 * (logprobs - ref_logprobs) ** 2


@KL_ESTIMATORS.register("k3")
def kl_k3(logprobs, ref_logprobs):
    """k3 = (r - 1) - log r. Unbiased, low variance, >= 0; GRPO's KL term (Shao et al. 2024, eq. 4)."""
    log_r = (ref_logprobs - logprobs).clamp(-LOG_RATIO_CLAMP, LOG_RATIO_CLAMP)  # [B, T]
    return torch.expm1(log_r) - log_r


# ---------------------------------------------------------------------------------------------------------------
# Putting the loss together


def policy_loss(
    logprobs: Tensor,
    old_logprobs: Tensor,
    advantages: Tensor,
    mask: Tensor,
    norm: StepNorm,
    cfg: AlgorithmConfig,
    ref_logprobs: Tensor | None = None,
    entropy: Tensor | None = None,
) -> tuple[Tensor, dict[str, Tensor]]:
    """One micro-batch's share of the step loss: aggregate(policy loss) + kl_coef * aggregate(KL) (unless KL is
    in the reward) - entropy_coef * aggregate(entropy), all aggregated with cfg.loss_agg and the step's `norm`.

    Returns (loss, metrics). Metrics are detached 0-dim tensors aggregated the same way, so summing them over
    the step's micro-batches gives the step's value (call .item() once per step). The KL to the reference is
    logged as ``kl_ref`` whenever ref_logprobs are given, entropy whenever `entropy` [B, T] is given.
    """
    aggregate = AGGREGATIONS[cfg.loss_agg]
    per_token, stats = POLICY_LOSSES[cfg.policy_loss](logprobs, old_logprobs, advantages, mask, cfg)
    loss = aggregate(per_token, mask, norm)
    metrics = {"pg_loss": loss.detach()}
    metrics.update({name: token_mean(value, mask, norm) for name, value in stats.items()})
    kl_in_loss = cfg.kl_coef > 0 and not cfg.kl_in_reward
    if kl_in_loss and ref_logprobs is None:
        raise ValueError("kl_coef > 0 with the KL in the loss (kl_in_reward=False) needs ref_logprobs")
    if ref_logprobs is not None:
        kl = KL_ESTIMATORS[cfg.kl_estimator](logprobs, ref_logprobs.detach())  # [B, T]
        metrics["kl_ref"] = token_mean(kl.detach(), mask, norm)
        if kl_in_loss:
            loss = loss + cfg.kl_coef * aggregate(kl, mask, norm)
    if entropy is not None:
        metrics["entropy"] = token_mean(entropy.detach(), mask, norm)
        if cfg.entropy_coef > 0:
            loss = loss - cfg.entropy_coef * aggregate(entropy, mask, norm)
    metrics["loss"] = loss.detach()
    return loss, metrics


def value_loss(
    values: Tensor, old_values: Tensor, returns: Tensor, mask: Tensor, norm: StepNorm, cfg: AlgorithmConfig
) -> tuple[Tensor, dict[str, Tensor]]:
    """PPO's clipped value loss (as in OpenAI baselines' PPO2, an addition to Schulman et al. 2017):
        V_clip = V_old + clip(V - V_old, -c, c),  L = 1/2 max((V - R)^2, (V_clip - R)^2)
    aggregated with cfg.loss_agg over the step's `norm`. Returns (loss, {"value_loss", "value_clip_frac"})."""
    old_values, returns = old_values.detach(), returns.detach()
    clipped = old_values + (values - old_values).clamp(-cfg.value_clip, cfg.value_clip)  # [B, T]
    loss_unclipped = (values - returns) ** 2  # [B, T]
    loss_clipped = (clipped - returns) ** 2  # [B, T]
    per_token = 0.5 * torch.maximum(loss_unclipped, loss_clipped)
    loss = AGGREGATIONS[cfg.loss_agg](per_token, mask, norm)
    clip_frac = token_mean((loss_clipped > loss_unclipped).float(), mask, norm)
    return loss, {"value_loss": loss.detach(), "value_clip_frac": clip_frac}


# ---------------------------------------------------------------------------------------------------------------
# From logits


def logprobs_from_logits(logits: Tensor, tokens: Tensor, chunk_size: int = 4096) -> Tensor:
    """log softmax(logits)[token] = z_token - logsumexp(z): [..., V], [...] -> [...] in float32.

    Rows are processed `chunk_size` at a time so that the float32 copy of bf16 logits never exists for the
    whole batch at once (it would double the largest activation). With autograd on, each chunk's saved
    tensors still add up; wrap the caller in activation checkpointing to bound that.
    """
    flat_logits = logits.reshape(-1, logits.shape[-1])  # [N, V]
    flat_tokens = tokens.reshape(-1)  # [N]
    parts = []
    for z, tok in zip(flat_logits.split(chunk_size), flat_tokens.split(chunk_size)):
        z = z.float()  # [n, V] the only float32 copy, one chunk at a time
        parts.append(z.gather(-1, tok[:, None]).squeeze(-1) - torch.logsumexp(z, dim=-1))  # [n]
    out = torch.cat(parts) if parts else flat_logits.new_zeros(0, dtype=torch.float32)
    return out.reshape(tokens.shape)


def entropy_from_logits(logits: Tensor, chunk_size: int = 4096) -> Tensor:
    """Entropy of softmax(logits): H = -sum_v p_v log p_v with log p = log_softmax(z): [..., V] -> [...] float32.

    Chunked over rows for the same memory reason as logprobs_from_logits; usually computed under no_grad for
    logging, or with grad for an entropy bonus (entropy_coef).
    """
    flat = logits.reshape(-1, logits.shape[-1])  # [N, V]
    parts = []
    for z in flat.split(chunk_size):
        logp = torch.log_softmax(z.float(), dim=-1)  # [n, V]
        logp = logp.clamp(min=torch.finfo(logp.dtype).min)  # -inf logits (top-k masks): 0 * -inf would be NaN
        parts.append(-(logp.exp() * logp).sum(-1))  # [n]
    out = torch.cat(parts) if parts else flat.new_zeros(0, dtype=torch.float32)
    return out.reshape(logits.shape[:-1])
