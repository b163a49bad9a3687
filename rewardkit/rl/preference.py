"""Preference losses (the DPO family), one registry: ``PREFERENCE_LOSSES[name](batch, cfg)``.

Each loss takes a ``PreferenceBatch``: per pair, the policy's and (where the loss has one) the
reference model's log-probabilities of the chosen and the rejected completion, **summed** over the
completion's tokens, and the completions' lengths in tokens. Losses that work on per-token means divide
by the length themselves, and say so. Every loss returns the batch mean and the metrics TRL users read:
``rewards/chosen``, ``rewards/rejected`` (beta times the log-ratio to the reference, or its
reference-free analogue), ``rewards/margins``, ``rewards/accuracies`` (the fraction of pairs whose chosen
reward is higher) and ``logps/chosen``, ``logps/rejected`` (the policy's summed log-probs).

Notation: ``h = (log pi(y_c) - log ref(y_c)) - (log pi(y_r) - log ref(y_r))``, ``sigma`` the logistic
function, ``beta`` ``PreferenceConfig.beta``.

``rewardkit train`` with ``algorithm: dpo`` (or any name here) trains with them on a dataset of pairs
(``rewardkit.rl.offline``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from rewardkit.config import check_ranges


@dataclass(frozen=True)
class PreferenceBatch:
    """One batch of preference pairs (or, for KTO, of single labelled completions), each field [B]."""

    chosen_logps: Tensor
    """The policy's log-prob of each chosen completion, summed over its tokens (KTO: of each completion)."""
    rejected_logps: Tensor | None = None
    """The same for the rejected completions (None for KTO, whose completions are unpaired)."""
    ref_chosen_logps: Tensor | None = None
    """The reference model's summed log-probs of the chosen completions (None for reference-free losses)."""
    ref_rejected_logps: Tensor | None = None
    chosen_lengths: Tensor | None = None
    """Completion lengths in tokens (float or int), for the losses on per-token means."""
    rejected_lengths: Tensor | None = None
    desirable: Tensor | None = None
    """KTO: [B] bool, True where the completion is desirable (the verifier's score passed its threshold)."""
    group_logps: Tensor | None = None
    """RRHF: [B, N] the policy's summed log-probs of N responses per prompt (``chosen_logps`` unused)."""
    group_lengths: Tensor | None = None
    """RRHF: [B, N] their lengths in tokens (a padding slot: length 0)."""
    group_scores: Tensor | None = None
    """RRHF: [B, N] their scores (the verifier's rewards)."""


@dataclass(frozen=True)
class PreferenceConfig:
    """The preference losses' hyper-parameters (each loss reads the ones its docstring names)."""

    beta: float = 0.1
    """Inverse temperature of the implicit reward (DPO, IPO, cDPO, SimPO, KTO)."""
    label_smoothing: float = 0.0
    """cDPO: the assumed probability that a pair's labels are flipped, in [0, 0.5] (0.5: no preference left)."""
    rpo_alpha: float = 0.0
    """DPO: the weight of an NLL term on the chosen completion (RPO, Pang et al. 2024); 0: plain DPO."""
    simpo_gamma: float = 0.5
    """SimPO: the target reward margin gamma (Meng et al. use gamma / beta of about 0.5)."""
    orpo_lambda: float = 0.1
    """ORPO: the weight of the odds-ratio term next to the SFT loss."""
    kto_desirable_weight: float = 1.0
    """KTO: lambda_D, the weight of desirable completions."""
    kto_undesirable_weight: float = 1.0
    """KTO: lambda_U, the weight of undesirable completions."""
    rrhf_sft_weight: float = 1.0
    """RRHF: the weight of the SFT anchor (the best response's per-token NLL) next to the ranking loss."""

    def __post_init__(self) -> None:
        check_ranges(self, LOSS_RANGES, where="loss")


LOSS_RANGES = {
    "beta": "> 0",
    "label_smoothing": "[0, 0.5]",
    "rpo_alpha": ">= 0",
    "simpo_gamma": ">= 0",
    "orpo_lambda": ">= 0",
    "kto_desirable_weight": "> 0",
    "kto_undesirable_weight": "> 0",
    "rrhf_sft_weight": ">= 0",
}
"""PreferenceConfig's ranges (``rewardkit.config.in_range`` rules)."""


Metrics = dict[str, float]
LossFn = Callable[[PreferenceBatch, PreferenceConfig], tuple[Tensor, Metrics]]


def _need(value: Tensor | None, what: str, loss: str) -> Tensor:
    if value is None:
        raise ValueError(f"the {loss} loss needs {what}")
    return value


def _log_ratios(batch: PreferenceBatch, loss: str) -> tuple[Tensor, Tensor]:
    rejected = _need(batch.rejected_logps, "rejected_logps", loss)
    ref_c = _need(batch.ref_chosen_logps, "ref_chosen_logps (a reference model)", loss)
    ref_r = _need(batch.ref_rejected_logps, "ref_rejected_logps (a reference model)", loss)
    return batch.chosen_logps - ref_c, rejected - ref_r


def _pair_metrics(batch: PreferenceBatch, chosen_reward: Tensor, rejected_reward: Tensor) -> Metrics:
    chosen_reward, rejected_reward = chosen_reward.detach(), rejected_reward.detach()
    out = {
        "rewards/chosen": chosen_reward.mean().item(),
        "rewards/rejected": rejected_reward.mean().item(),
        "rewards/margins": (chosen_reward - rejected_reward).mean().item(),
        "rewards/accuracies": (chosen_reward > rejected_reward).float().mean().item(),
        "logps/chosen": batch.chosen_logps.detach().mean().item(),
    }
    if batch.rejected_logps is not None:
        out["logps/rejected"] = batch.rejected_logps.detach().mean().item()
    return out


def dpo_loss(batch: PreferenceBatch, cfg: PreferenceConfig) -> tuple[Tensor, Metrics]:
    """DPO (Rafailov et al. 2023, arXiv:2305.18290, eq. 7): ``-log sigma(beta * h)``, on summed log-probs;
    with ``label_smoothing`` eps > 0 it is conservative DPO (cDPO, Mitchell 2023): ``-(1 - eps) log
    sigma(beta h) - eps log sigma(-beta h)``, the expected DPO loss when a pair's labels are flipped with
    probability eps. Rewards: ``beta * (log pi - log ref)``.

    With ``rpo_alpha`` a > 0 it is RPO (Pang et al. 2024, arXiv:2404.19733, eq. 1): ``+ a * NLL(y_c)``, the
    chosen completion's per-token mean NLL, which keeps DPO from lowering the chosen answer's likelihood
    along with the rejected one's (the failure mode that makes DPO lose accuracy on reasoning pairs).
    The NLL is length-normalised per pair, as in the paper; TRL (1.16: ``loss_type=["sigmoid", "sft"]``,
    ``loss_weights=[1, a]``) averages over all the batch's chosen tokens instead, which equals this when
    the chosen lengths are equal (tested). Also logs ``nll``."""
    chosen, rejected = _log_ratios(batch, "dpo")
    h = chosen - rejected
    eps = cfg.label_smoothing
    losses = -(1 - eps) * F.logsigmoid(cfg.beta * h) - eps * F.logsigmoid(-cfg.beta * h)
    metrics = _pair_metrics(batch, cfg.beta * chosen, cfg.beta * rejected)
    if cfg.rpo_alpha:
        nll = -batch.chosen_logps / _need(batch.chosen_lengths, "chosen_lengths", "dpo with rpo_alpha")
        losses = losses + cfg.rpo_alpha * nll
        metrics["nll"] = nll.detach().mean().item()
    return losses.mean(), metrics


def ipo_loss(batch: PreferenceBatch, cfg: PreferenceConfig) -> tuple[Tensor, Metrics]:
    """IPO (Azar et al. 2023, arXiv:2310.12036, eq. 17): ``(h - 1 / (2 beta))^2``, a squared loss that
    regresses the log-ratio gap to a finite target instead of pushing it to infinity. As in TRL, ``h`` is
    taken on per-token mean log-probs (each summed log-prob divided by its completion's length). Rewards,
    as TRL logs them: DPO's, ``beta`` times the summed log-ratio."""
    lc = _need(batch.chosen_lengths, "chosen_lengths", "ipo")
    lr = _need(batch.rejected_lengths, "rejected_lengths", "ipo")
    chosen, rejected = _log_ratios(batch, "ipo")
    losses = (chosen / lc - rejected / lr - 1 / (2 * cfg.beta)) ** 2
    return losses.mean(), _pair_metrics(batch, cfg.beta * chosen, cfg.beta * rejected)


def simpo_loss(batch: PreferenceBatch, cfg: PreferenceConfig) -> tuple[Tensor, Metrics]:
    """SimPO (Meng et al. 2024, arXiv:2405.14734, eq. 6): ``-log sigma(beta/|y_c| log pi(y_c) -
    beta/|y_r| log pi(y_r) - gamma)``: reference-free, the reward is the length-normalised log-prob, and
    ``simpo_gamma`` is the target margin. Rewards: ``beta * log pi / |y|``."""
    rejected = _need(batch.rejected_logps, "rejected_logps", "simpo")
    lc = _need(batch.chosen_lengths, "chosen_lengths", "simpo")
    lr = _need(batch.rejected_lengths, "rejected_lengths", "simpo")
    chosen_reward, rejected_reward = cfg.beta * batch.chosen_logps / lc, cfg.beta * rejected / lr
    losses = -F.logsigmoid(chosen_reward - rejected_reward - cfg.simpo_gamma)
    return losses.mean(), _pair_metrics(batch, chosen_reward, rejected_reward)


def orpo_loss(batch: PreferenceBatch, cfg: PreferenceConfig) -> tuple[Tensor, Metrics]:
    """ORPO (Hong et al. 2024, arXiv:2403.07691, eqs. 6-7): ``NLL(y_c) + lambda * -log sigma(log odds(y_c) -
    log odds(y_r))``, no reference model. ``odds(y) = P(y) / (1 - P(y))`` with ``P(y) = exp(mean token
    log-prob)``, so ``log odds = m - log(1 - exp(m))`` for the per-token mean ``m`` (computed as
    ``m - log(-expm1(m))``, stable for m near 0); the NLL is the chosen completion's per-token mean.
    Rewards: ``beta * m``; also logs ``log_odds_ratio`` and ``nll``."""
    rejected = _need(batch.rejected_logps, "rejected_logps", "orpo")
    mc = batch.chosen_logps / _need(batch.chosen_lengths, "chosen_lengths", "orpo")
    mr = rejected / _need(batch.rejected_lengths, "rejected_lengths", "orpo")
    log_odds = (mc - torch.log(-torch.expm1(mc))) - (mr - torch.log(-torch.expm1(mr)))
    ratio_loss = -F.logsigmoid(log_odds)
    nll = -mc
    losses = nll + cfg.orpo_lambda * ratio_loss
    metrics = _pair_metrics(batch, cfg.beta * mc, cfg.beta * mr)
    metrics.update(log_odds_ratio=log_odds.detach().mean().item(), nll=nll.detach().mean().item())
    return losses.mean(), metrics


def kto_loss(batch: PreferenceBatch, cfg: PreferenceConfig) -> tuple[Tensor, Metrics]:
    """KTO (Ethayarajh et al. 2024, arXiv:2402.01306, eq. 8) on unpaired completions labelled desirable
    or not (here: by the verifier's score against a threshold). With ``r = log pi(y) - log ref(y)``
    (summed) and the reference point ``z0 = max(0, mean_batch r)``, detached (the batch's estimate of
    KL(pi || ref); the paper and TRL estimate it on mismatched prompt-completion pairs, which this
    function leaves to its caller), the loss of a desirable completion is ``lambda_D (1 - sigma(beta (r
    - z0)))`` and of an undesirable one ``lambda_U (1 - sigma(beta (z0 - r)))``; the batch's mean."""
    desirable = _need(batch.desirable, "desirable labels", "kto").bool()
    ref = _need(batch.ref_chosen_logps, "ref_chosen_logps (a reference model)", "kto")
    r = batch.chosen_logps - ref
    z0 = r.detach().mean().clamp(min=0)
    losses = torch.where(
        desirable,
        cfg.kto_desirable_weight * (1 - torch.sigmoid(cfg.beta * (r - z0))),
        cfg.kto_undesirable_weight * (1 - torch.sigmoid(cfg.beta * (z0 - r))),
    )
    rewards = (cfg.beta * r).detach()
    metrics = {"kl": z0.item(), "logps/chosen": batch.chosen_logps.detach().mean().item()}
    if desirable.any():
        metrics["rewards/chosen"] = rewards[desirable].mean().item()
    if (~desirable).any():
        metrics["rewards/rejected"] = rewards[~desirable].mean().item()
    return losses.mean(), metrics


def rrhf_loss(batch: PreferenceBatch, cfg: PreferenceConfig) -> tuple[Tensor, Metrics]:
    """RRHF (Yuan et al. 2023, arXiv:2304.05302, eqs. 1-4): with ``p_i`` the length-normalised log-prob
    of response i and ``r_i`` its score, the ranking loss ``sum_{r_i < r_j} max(0, p_i - p_j)`` (a
    worse-scored response must not be more likely per token) plus ``rrhf_sft_weight`` times the SFT
    anchor, the best-scored response's per-token NLL (the paper sums its tokens' NLL; this takes their
    mean, as the paper's code does). Padding slots (length 0) take no part. No reference model.
    Rewards: ``beta * p`` of the best and the worst response."""
    logps = _need(batch.group_logps, "group_logps", "rrhf")
    lengths = _need(batch.group_lengths, "group_lengths", "rrhf").to(logps.dtype)
    scores = _need(batch.group_scores, "group_scores", "rrhf").to(logps.dtype)
    valid = lengths > 0
    p = torch.where(valid, logps / lengths.clamp(min=1), torch.zeros_like(logps))
    low = float("-inf")
    s = torch.where(valid, scores, torch.full_like(scores, low))
    worse = (
        (s.unsqueeze(2) < s.unsqueeze(1)) & valid.unsqueeze(2) & valid.unsqueeze(1)
    )  # [B, i, j]: r_i < r_j
    rank = ((p.unsqueeze(2) - p.unsqueeze(1)).clamp(min=0) * worse).sum(dim=(1, 2))
    best = s.argmax(dim=1)
    worst = torch.where(valid, scores, torch.full_like(scores, float("inf"))).argmin(dim=1)
    rows = torch.arange(len(p), device=p.device)
    sft = -p[rows, best]
    losses = rank + cfg.rrhf_sft_weight * sft
    chosen_reward, rejected_reward = (cfg.beta * p[rows, best]).detach(), (cfg.beta * p[rows, worst]).detach()
    metrics = {
        "rewards/chosen": chosen_reward.mean().item(),
        "rewards/rejected": rejected_reward.mean().item(),
        "rewards/margins": (chosen_reward - rejected_reward).mean().item(),
        "rewards/accuracies": (chosen_reward > rejected_reward).float().mean().item(),
        "logps/chosen": logps[rows, best].detach().mean().item(),
        "logps/rejected": logps[rows, worst].detach().mean().item(),
        "rank_loss": rank.detach().mean().item(),
        "nll": sft.detach().mean().item(),
    }
    return losses.mean(), metrics


PREFERENCE_LOSSES: dict[str, LossFn] = {
    "dpo": dpo_loss,  # label_smoothing > 0: cDPO
    "ipo": ipo_loss,
    "simpo": simpo_loss,
    "orpo": orpo_loss,
    "kto": kto_loss,
    "rrhf": rrhf_loss,
}
"""Every preference loss by name (docs/algorithms.md, "Preference losses")."""
