"""The preference losses against slow references written from the papers' formulas (float64, one pair at a
time with ``math``), their gradients (``torch.autograd.gradcheck``), and the properties each paper states."""

from __future__ import annotations

import math
import random

import pytest

torch = pytest.importorskip("torch")

from rewardkit.rl.preference import (  # noqa: E402
    PREFERENCE_LOSSES,
    PreferenceBatch,
    PreferenceConfig,
    dpo_loss,
    ipo_loss,
    kto_loss,
    rrhf_loss,
)

CFG = PreferenceConfig(beta=0.3, label_smoothing=0.1, simpo_gamma=0.4, orpo_lambda=0.2)


def _sig(x: float) -> float:
    return 1 / (1 + math.exp(-x))


def _pairs(n: int = 16, seed: int = 0) -> list[dict[str, float]]:
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        lc, lr = rng.randint(3, 30), rng.randint(3, 30)
        out.append(
            {
                "c": -rng.uniform(0.2, 3.0) * lc,
                "r": -rng.uniform(0.2, 3.0) * lr,
                "rc": -rng.uniform(0.2, 3.0) * lc,
                "rr": -rng.uniform(0.2, 3.0) * lr,
                "lc": float(lc),
                "lr": float(lr),
                "good": rng.random() < 0.5,
            }
        )
    return out


def _batch(pairs, grad: bool = False) -> PreferenceBatch:
    def col(key, dtype=torch.float64):
        return torch.tensor(
            [p[key] for p in pairs], dtype=dtype, requires_grad=grad and dtype == torch.float64
        )

    return PreferenceBatch(
        chosen_logps=col("c"),
        rejected_logps=col("r"),
        ref_chosen_logps=col("rc").detach(),
        ref_rejected_logps=col("rr").detach(),
        chosen_lengths=col("lc").detach(),
        rejected_lengths=col("lr").detach(),
        desirable=torch.tensor([p["good"] for p in pairs]),
    )


def ref_dpo(p, cfg):
    h = (p["c"] - p["rc"]) - (p["r"] - p["rr"])
    e = cfg.label_smoothing
    return -(1 - e) * math.log(_sig(cfg.beta * h)) - e * math.log(_sig(-cfg.beta * h))


def ref_ipo(p, cfg):
    h = (p["c"] - p["rc"]) / p["lc"] - (p["r"] - p["rr"]) / p["lr"]
    return (h - 1 / (2 * cfg.beta)) ** 2


def ref_simpo(p, cfg):
    return -math.log(_sig(cfg.beta * p["c"] / p["lc"] - cfg.beta * p["r"] / p["lr"] - cfg.simpo_gamma))


def ref_orpo(p, cfg):
    mc, mr = p["c"] / p["lc"], p["r"] / p["lr"]
    odds_c, odds_r = math.exp(mc) / (1 - math.exp(mc)), math.exp(mr) / (1 - math.exp(mr))
    return -mc + cfg.orpo_lambda * -math.log(_sig(math.log(odds_c / odds_r)))


def ref_kto(pairs, cfg):
    r = [p["c"] - p["rc"] for p in pairs]
    z0 = max(0.0, sum(r) / len(r))
    out = []
    for p, ri in zip(pairs, r):
        if p["good"]:
            out.append(cfg.kto_desirable_weight * (1 - _sig(cfg.beta * (ri - z0))))
        else:
            out.append(cfg.kto_undesirable_weight * (1 - _sig(cfg.beta * (z0 - ri))))
    return sum(out) / len(out)


REFERENCES = {"dpo": ref_dpo, "ipo": ref_ipo, "simpo": ref_simpo, "orpo": ref_orpo}


@pytest.mark.parametrize("name", sorted(REFERENCES))
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_each_pair_loss_is_its_papers_formula(name, seed):
    pairs = _pairs(seed=seed)
    loss, metrics = PREFERENCE_LOSSES[name](_batch(pairs), CFG)
    expected = sum(REFERENCES[name](p, CFG) for p in pairs) / len(pairs)
    assert loss.item() == pytest.approx(expected, rel=1e-9, abs=1e-12)
    assert {"rewards/chosen", "rewards/rejected", "rewards/margins", "rewards/accuracies"} <= set(metrics)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_kto_is_its_papers_formula(seed):
    pairs = _pairs(seed=seed)
    loss, metrics = kto_loss(_batch(pairs), CFG)
    assert loss.item() == pytest.approx(ref_kto(pairs, CFG), rel=1e-9)
    assert metrics["kl"] >= 0


def _groups(seed: int) -> list[list[tuple[float, float, float]]]:
    """Prompts with 2-5 (summed log-prob, length, score) responses; scores tie sometimes."""
    rng = random.Random(seed)
    out = []
    for _ in range(6):
        n = rng.randint(2, 5)
        out.append(
            [
                (-rng.uniform(0.2, 3.0) * (k := rng.randint(2, 20)), float(k), float(rng.randint(0, 3)))
                for _ in range(n)
            ]
        )
    return out


def _group_batch(groups, grad: bool = False) -> PreferenceBatch:
    width = max(len(g) for g in groups)
    rows = [g + [(0.0, 0.0, 0.0)] * (width - len(g)) for g in groups]  # padding slots: length 0
    logps, lengths, scores = (
        torch.tensor([[r[k] for r in row] for row in rows], dtype=torch.float64) for k in range(3)
    )
    logps.requires_grad_(grad)
    return PreferenceBatch(logps, group_logps=logps, group_lengths=lengths, group_scores=scores)


def ref_rrhf(group, cfg):
    p = [lp / n for lp, n, _ in group]
    rank = sum(
        max(0.0, p[i] - p[j])
        for i in range(len(group))
        for j in range(len(group))
        if group[i][2] < group[j][2]
    )
    best = max(range(len(group)), key=lambda i: (group[i][2], -i))  # the first of the best scores
    return rank + cfg.rrhf_sft_weight * -p[best]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_rrhf_is_its_papers_formula(seed):
    groups = _groups(seed)
    cfg = PreferenceConfig(beta=0.3, rrhf_sft_weight=0.7)
    loss, metrics = rrhf_loss(_group_batch(groups), cfg)
    assert loss.item() == pytest.approx(sum(ref_rrhf(g, cfg) for g in groups) / len(groups), rel=1e-9)
    assert {"rewards/chosen", "rewards/rejected", "rewards/margins", "rank_loss", "nll"} <= set(metrics)
    batch = _group_batch(groups, grad=True)
    assert torch.autograd.gradcheck(
        lambda lp: rrhf_loss(
            PreferenceBatch(
                lp, group_logps=lp, group_lengths=batch.group_lengths, group_scores=batch.group_scores
            ),
            cfg,
        )[0],
        (batch.group_logps,),
    )


@pytest.mark.parametrize("name", sorted(set(PREFERENCE_LOSSES) - {"rrhf"}))
def test_gradients_match_finite_differences(name):
    pairs = _pairs(6, seed=3)

    def f(chosen, rejected):
        batch = _batch(pairs)
        batch = PreferenceBatch(
            chosen, rejected, batch.ref_chosen_logps, batch.ref_rejected_logps,
            batch.chosen_lengths, batch.rejected_lengths, batch.desirable,
        )  # fmt: skip
        return PREFERENCE_LOSSES[name](batch, CFG)[0]

    batch = _batch(pairs, grad=True)
    assert torch.autograd.gradcheck(f, (batch.chosen_logps, batch.rejected_logps))


def test_what_the_papers_say_of_them():
    zero = [{"c": -5.0, "r": -7.0, "rc": -5.0, "rr": -7.0, "lc": 5.0, "lr": 7.0, "good": True}]
    plain = PreferenceConfig(beta=0.5)
    # DPO: policy = reference gives log 2; raising the chosen log-prob lowers the loss
    assert dpo_loss(_batch(zero), plain)[0].item() == pytest.approx(math.log(2))
    better = [dict(zero[0], c=-4.0)]
    assert dpo_loss(_batch(better), plain)[0].item() < math.log(2)
    # cDPO at eps = 0.5 cannot tell chosen from rejected: the loss is even in h, least at h = 0
    half = PreferenceConfig(beta=0.5, label_smoothing=0.5)
    worse = [dict(zero[0], c=-6.0)]
    assert dpo_loss(_batch(worse), half)[0].item() == pytest.approx(dpo_loss(_batch(better), half)[0].item())
    assert dpo_loss(_batch(zero), half)[0].item() < dpo_loss(_batch(better), half)[0].item()
    # IPO: zero loss exactly at the target gap 1 / (2 beta) of per-token log-ratios
    target = [dict(zero[0], c=-5.0 + 5.0 * (1 / (2 * 0.5)))]
    assert ipo_loss(_batch(target), plain)[0].item() == pytest.approx(0.0, abs=1e-12)
    # KTO: with z0 the batch's mean log-ratio (here 0), a desirable completion the policy likes more than
    # the reference and an undesirable one it likes less each cost less than 1/2; alone, one costs 1/2
    disliked = [dict(zero[0], c=-6.0, good=False)]
    assert kto_loss(_batch(better + disliked), plain)[0].item() < 0.5
    assert kto_loss(_batch(better), plain)[0].item() == pytest.approx(0.5)


def test_a_missing_input_names_itself():
    pairs = _pairs(2)
    batch = _batch(pairs)
    no_ref = PreferenceBatch(batch.chosen_logps, batch.rejected_logps)
    with pytest.raises(ValueError, match="the dpo loss needs ref_chosen_logps"):
        dpo_loss(no_ref, CFG)
    with pytest.raises(ValueError, match="the kto loss needs desirable labels"):
        kto_loss(PreferenceBatch(batch.chosen_logps, ref_chosen_logps=batch.ref_chosen_logps), CFG)


@pytest.mark.parametrize("seed", [0, 1])
def test_rpo_is_dpo_plus_alpha_times_the_chosen_per_token_nll(seed):
    pairs = _pairs(seed=seed)
    cfg = PreferenceConfig(beta=0.2, label_smoothing=0.1, rpo_alpha=0.7)
    loss, metrics = dpo_loss(_batch(pairs), cfg)
    expected = sum(ref_dpo(p, cfg) + 0.7 * -p["c"] / p["lc"] for p in pairs) / len(pairs)
    assert loss.item() == pytest.approx(expected, rel=1e-9)
    assert metrics["nll"] == pytest.approx(sum(-p["c"] / p["lc"] for p in pairs) / len(pairs))
    assert "nll" not in dpo_loss(_batch(pairs), PreferenceConfig(beta=0.2))[1]


def test_rpo_pulls_the_chosen_log_prob_up_where_dpo_alone_lets_it_fall():
    """The defect RPO fixes: DPO's gradient on the chosen log-prob is beta * sigma(-beta h), which vanishes
    once the margin is large, so nothing holds the chosen completion's likelihood up; RPO's NLL term does."""
    pairs = [{"c": -40.0, "r": -90.0, "rc": -20.0, "rr": -20.0, "lc": 10.0, "lr": 10.0, "good": True}]
    grads = {}
    for alpha in (0.0, 1.0):
        batch = _batch(pairs, grad=True)
        dpo_loss(batch, PreferenceConfig(beta=0.5, rpo_alpha=alpha))[0].backward()
        grads[alpha] = -batch.chosen_logps.grad.item()  # how hard a descent step raises log pi(y_c)
    assert grads[0.0] < 1e-9 < 0.09 < grads[1.0]


@pytest.mark.parametrize(
    "key, value", [("beta", 0.0), ("label_smoothing", 0.6), ("rpo_alpha", -1.0), ("kto_desirable_weight", 0)]
)
def test_a_loss_value_out_of_range_names_the_key(key, value):
    from rewardkit.config import ConfigError

    with pytest.raises(ConfigError, match=f"loss: {key}: got {value}"):
        PreferenceConfig(**{key: value})
