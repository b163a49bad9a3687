"""The 2025 policy-loss family in rewardkit.rl.algorithms (gspo, gspo_token, cispo, sapo): each against a slow
reference written as plain loops over sequences and tokens, the properties its paper claims, and a real
training run of its preset on a tiny model."""

from __future__ import annotations

import json
import math

import pytest

torch = pytest.importorskip("torch", reason="rewardkit.rl needs torch (pip install rewardkit[train])")

from rewardkit.rl import algorithms as A  # noqa: E402

NEW_LOSSES = ["gspo", "gspo_token", "cispo", "sapo"]


def batch(seed=0, B=5, T=7, spread=0.3):
    """Float64 log-probs (the parameter), old log-probs, per-sequence advantages and a ragged mask; padded
    positions hold large finite garbage that must not reach any value or gradient."""
    gen = torch.Generator().manual_seed(seed)
    lengths = torch.tensor([7, 3, 5, 1, 4])[:B]
    mask = torch.arange(T)[None, :] < lengths[:, None]  # [B, T]
    mask[0, 3] = False  # an environment token inside a multi-turn response
    logp = -torch.rand(B, T, generator=gen, dtype=torch.float64) * 3 - 0.1  # [B, T]
    old = logp + torch.randn(B, T, generator=gen, dtype=torch.float64) * spread  # [B, T]
    adv_seq = torch.randn(B, generator=gen, dtype=torch.float64)  # [B]
    adv = adv_seq[:, None].expand(B, T).clone()  # [B, T]
    logp[~mask], old[~mask], adv[~mask] = 40.0, -40.0, 1e6
    return logp.requires_grad_(), old, adv, mask


def tokens_of(mask, i):
    return [t for t in range(mask.shape[1]) if mask[i, t]]


def loss_and_grad(name, logp, old, adv, mask, **fields):
    """The step loss of one full batch through the public policy_loss (the preset's aggregation), and its gradient."""
    cfg = A.preset(name, **fields) if name in A.ALGORITHM_PRESETS else A.AlgorithmConfig(**fields)
    norm = A.StepNorm.from_masks([mask], constant=mask.shape[1])
    loss, metrics = A.policy_loss(logp, old, adv, mask, norm, cfg)
    (grad,) = torch.autograd.grad(loss, logp)
    return loss, grad, metrics


def ref_grad(ref_loss, logp):
    (grad,) = torch.autograd.grad(ref_loss, logp)
    return grad


def assert_close(actual, expected, tol=1e-6):
    torch.testing.assert_close(
        torch.as_tensor(actual).double(), torch.as_tensor(expected, dtype=torch.float64), atol=tol, rtol=tol
    )


# ---------------------------------------------------------------------------------------------------------------
# Slow references: one sequence, one token at a time


def ref_gspo(logp, old, adv, mask, eps_low, eps_high):
    """GSPO eq. 5: (1/N) sum_i -min(s_i A_i, clip(s_i) A_i), s_i = exp(mean_t log pi/pi_old)."""
    total, n = 0.0, 0
    for i in range(mask.shape[0]):
        toks = tokens_of(mask, i)
        if not toks:
            continue
        log_s = sum(logp[i, t] - old[i, t] for t in toks) / len(toks)
        s = torch.exp(log_s)
        a = sum(float(adv[i, t]) for t in toks) / len(toks)
        clipped = torch.clamp(s, 1 - eps_low, 1 + eps_high)
        total = total - torch.minimum(s * a, clipped * a)
        n += 1
    return total / max(n, 1)


def ref_gspo_token(logp, old, adv, mask, eps_low, eps_high):
    """GSPO-token: s_it = sg[s_i] pi_t / sg[pi_t]; (1/N) sum_i (1/|o_i|) sum_t -min(s_it A_it, clip(s_it) A_it)."""
    total, n = 0.0, 0
    for i in range(mask.shape[0]):
        toks = tokens_of(mask, i)
        if not toks:
            continue
        log_s = sum(float(logp[i, t].detach() - old[i, t]) for t in toks) / len(toks)
        s = math.exp(log_s)  # sg[s_i], a number
        seq = 0.0
        for t in toks:
            s_t = s * torch.exp(logp[i, t] - float(logp[i, t].detach()))
            a = float(adv[i, t])
            seq = seq - torch.minimum(s_t * a, torch.clamp(s_t, 1 - eps_low, 1 + eps_high) * a)
        total = total + seq / len(toks)
        n += 1
    return total / max(n, 1)


def ref_cispo(logp, old, adv, mask, eps_low, eps_high):
    """MiniMax-M1 CISPO: sum_i sum_t -sg(clip(r_it, 1 - eps_low, 1 + eps_high)) A_it log pi_it / sum_i |o_i|."""
    total, count = 0.0, 0
    for i in range(mask.shape[0]):
        for t in tokens_of(mask, i):
            r = math.exp(float(logp[i, t].detach() - old[i, t]))
            weight = min(max(r, 1 - eps_low), 1 + eps_high)  # a number: no gradient through it
            total = total - weight * float(adv[i, t]) * logp[i, t]
            count += 1
    return total / max(count, 1)


def ref_sapo(logp, old, adv, mask, tau_pos, tau_neg):
    """SAPO: (1/N) sum_i (1/|o_i|) sum_t -f(r_it) A_it with f(r) = sigmoid(tau (r - 1)) 4 / tau, tau by the sign of A."""
    total, n = 0.0, 0
    for i in range(mask.shape[0]):
        toks = tokens_of(mask, i)
        if not toks:
            continue
        seq = 0.0
        for t in toks:
            a = float(adv[i, t])
            tau = tau_pos if a > 0 else tau_neg
            r = torch.exp(logp[i, t] - old[i, t])
            seq = seq - torch.sigmoid(tau * (r - 1)) * 4 / tau * a
        total = total + seq / len(toks)
        n += 1
    return total / max(n, 1)


@pytest.mark.parametrize("eps", [(3e-4, 4e-4), (0.05, 0.08)])
@pytest.mark.parametrize("spread", [1e-4, 0.05, 0.3])
def test_gspo_matches_reference_loop(eps, spread):
    logp, old, adv, mask = batch(spread=spread)
    fields = dict(clip_eps_low=eps[0], clip_eps_high=eps[1])
    loss, grad, metrics = loss_and_grad("gspo", logp, old, adv, mask, **fields)
    ref = ref_gspo(logp, old, adv, mask, *eps)
    assert_close(loss, ref)
    assert_close(grad, ref_grad(ref, logp))
    assert grad[~mask].abs().max() == 0


@pytest.mark.parametrize("spread", [1e-4, 0.05, 0.3])
def test_gspo_token_matches_reference_loop_with_per_token_advantages(spread):
    logp, old, _, mask = batch(spread=spread)
    adv = torch.randn(mask.shape, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    fields = dict(policy_loss="gspo_token", clip_eps_low=0.02, clip_eps_high=0.03)
    loss, grad, _ = loss_and_grad("gspo", logp, old, adv, mask, **fields)
    ref = ref_gspo_token(logp, old, adv, mask, 0.02, 0.03)
    assert_close(loss, ref)
    assert_close(grad, ref_grad(ref, logp))


@pytest.mark.parametrize("spread", [1e-4, 0.05, 0.3])
def test_gspo_token_equals_gspo_when_advantages_are_per_sequence(spread):
    # GSPO (GSPO-token): with A_it = A_i the two objectives have the same value and the same gradient
    logp, old, adv, mask = batch(spread=spread)
    seq_loss, seq_grad, seq_metrics = loss_and_grad("gspo", logp, old, adv, mask, clip_eps_high=0.01)
    tok_loss, tok_grad, tok_metrics = loss_and_grad(
        "gspo", logp, old, adv, mask, policy_loss="gspo_token", clip_eps_high=0.01
    )
    assert_close(tok_loss, seq_loss, tol=1e-12)
    assert_close(tok_grad, seq_grad, tol=1e-12)
    assert_close(tok_metrics["clip_frac"], seq_metrics["clip_frac"], tol=1e-12)


@pytest.mark.parametrize("eps", [(1.0, 4.0), (0.2, 0.28), (0.0, 0.0)])
def test_cispo_matches_reference_loop(eps):
    logp, old, adv, mask = batch(spread=0.5)
    loss, grad, metrics = loss_and_grad(
        "cispo", logp, old, adv, mask, clip_eps_low=eps[0], clip_eps_high=eps[1]
    )
    ref = ref_cispo(logp, old, adv, mask, *eps)
    assert_close(loss, ref)
    assert_close(grad, ref_grad(ref, logp))
    ratio = (logp - old).exp().detach()[mask]
    outside = ((ratio > 1 + eps[1]) | (ratio < 1 - eps[0])).double().mean()
    assert_close(metrics["clip_frac"], outside)


@pytest.mark.parametrize("taus", [(1.0, 1.05), (0.5, 3.0)])
@pytest.mark.parametrize("spread", [0.05, 0.5])
def test_sapo_matches_reference_loop(taus, spread):
    logp, old, adv, mask = batch(spread=spread)
    loss, grad, metrics = loss_and_grad(
        "sapo", logp, old, adv, mask, sapo_tau_pos=taus[0], sapo_tau_neg=taus[1]
    )
    ref = ref_sapo(logp, old, adv, mask, *taus)
    assert_close(loss, ref)
    assert_close(grad, ref_grad(ref, logp))
    assert metrics["clip_frac"] == 0.0  # a soft gate: nothing is hard-clipped


# ---------------------------------------------------------------------------------------------------------------
# What each paper claims about its loss


@pytest.mark.parametrize("name", ["ppo_clip", *NEW_LOSSES])
def test_on_policy_every_loss_is_the_policy_gradient(name):
    # At pi = pi_old every ratio is 1: the gradient of the summed per-token loss is -A on each policy token.
    logp, _, adv, mask = batch()
    cfg = A.AlgorithmConfig(policy_loss=name)
    loss, _ = A.POLICY_LOSSES[name](logp, logp.detach(), adv, mask, cfg)
    (grad,) = torch.autograd.grad(A.masked_sum(loss, mask), logp)
    assert_close(grad[mask], -adv[mask], tol=1e-12)
    assert grad[~mask].abs().max() == 0


def test_gspo_clips_whole_sequences():
    # One sequence's ratio is far outside the band: all of its tokens lose their gradient, the others keep it.
    logp, _, adv, mask = batch()
    old = logp.detach().clone()
    old[1] -= 0.5 * torch.sign(adv[1, 0])  # s_1 = e^{+-0.5} in the direction its advantage pushes
    _, grad, metrics = loss_and_grad("gspo", logp, old, adv, mask)
    assert grad[1].abs().max() == 0 and grad[0][mask[0]].abs().min() > 0
    assert_close(metrics["clip_frac"], mask[1].sum() / mask.sum())


def test_cispo_keeps_the_gradient_of_clipped_tokens():
    # PPO's clip zeroes the gradient of a token pushed past 1 + eps; CISPO only bounds its weight.
    ratio = torch.tensor([[3.0, 0.1, 1.1]], dtype=torch.float64)
    adv = torch.tensor([[1.0, -1.0, 1.0]], dtype=torch.float64)
    mask = torch.ones(1, 3, dtype=torch.bool)
    old = torch.full((1, 3), -2.0, dtype=torch.float64)
    logp = (old + ratio.log()).requires_grad_()
    cfg = A.AlgorithmConfig(policy_loss="cispo", clip_eps_low=0.2, clip_eps_high=0.28)
    loss, stats = A.POLICY_LOSSES["cispo"](logp, old, adv, mask, cfg)
    loss.sum().backward()
    assert_close(logp.grad, [[-1.28, 0.8, -1.1]], tol=1e-12)  # -clip(r) A
    assert stats["clip_frac_high"].tolist() == [[1, 0, 0]] and stats["clip_frac_low"].tolist() == [[0, 1, 0]]
    ppo_logp = logp.detach().clone().requires_grad_()
    ppo, _ = A.POLICY_LOSSES["ppo_clip"](ppo_logp, old, adv, mask, cfg)
    ppo.sum().backward()
    assert ppo_logp.grad[0, 0] == 0  # the token CISPO keeps


def test_sapo_gate_is_smooth_and_decays_faster_for_negative_advantages():
    # d loss / d log pi = -A * 4 p (1 - p) * r with p = sigmoid(tau (r - 1)): 1 on policy, decaying off it.
    r = torch.tensor([0.5, 0.9, 1.0, 1.1, 2.0, 4.0], dtype=torch.float64)
    old = torch.zeros(2, 6, dtype=torch.float64)
    logp = r.log().expand(2, 6).clone().requires_grad_()
    adv = torch.tensor([[1.0] * 6, [-1.0] * 6], dtype=torch.float64)
    cfg = A.preset("sapo")
    loss, stats = A.POLICY_LOSSES["sapo"](logp, old, adv, torch.ones(2, 6, dtype=torch.bool), cfg)
    loss.sum().backward()
    for row, tau in ((0, cfg.sapo_tau_pos), (1, cfg.sapo_tau_neg)):
        p = torch.sigmoid(tau * (r - 1))
        assert_close(logp.grad[row], -adv[row] * 4 * p * (1 - p) * r, tol=1e-12)
        assert_close(stats["soft_gate_weight"][row], 4 * p * (1 - p), tol=1e-12)
    weight = stats["soft_gate_weight"]
    assert (weight[:, 2] == 1).all()  # on policy: the plain policy gradient
    assert (weight[1, [0, 1, 3, 4, 5]] < weight[0, [0, 1, 3, 4, 5]]).all()  # tau_neg > tau_pos
    assert (weight[0, 3:].diff() < 0).all()  # smooth decay, no cliff


def test_presets_use_the_papers_values():
    gspo, cispo, sapo = A.preset("gspo"), A.preset("cispo"), A.preset("sapo")
    assert (gspo.policy_loss, gspo.clip_eps_low, gspo.clip_eps_high) == ("gspo", 3e-4, 4e-4)
    assert gspo.loss_agg == "seq_mean_token_mean" and gspo.kl_coef == 0
    assert (cispo.policy_loss, cispo.loss_agg, cispo.clip_eps_low) == ("cispo", "token_mean", 1.0)
    assert (sapo.policy_loss, sapo.sapo_tau_pos, sapo.sapo_tau_neg) == ("sapo", 1.0, 1.05)
    with pytest.raises(ValueError, match="sapo_tau_neg: got 0.0, expected > 0"):
        A.preset("sapo", sapo_tau_neg=0.0)


# ---------------------------------------------------------------------------------------------------------------
# Each new preset trains a tiny Llama through the real trainer


@pytest.fixture(scope="module")
def tiny_model(say_model):
    return say_model("base")


def digits(completion, *, answer=None, prompt=None, info=None):
    """The share of the completion's characters that are digits (every step has signal at random init)."""
    text = completion.replace(" ", "")
    return sum(c.isdigit() for c in text) / max(len(text), 1)


@pytest.mark.parametrize("algorithm", ["gspo", "cispo", "sapo"])
def test_each_new_preset_raises_the_reward(algorithm, tiny_model, tmp_path):
    from rewardkit.registry import FunctionEnv
    from rewardkit.rl.config import TrainConfig
    from rewardkit.rl.trainer import train
    from rewardkit.types import Task

    cfg = TrainConfig(
        model=tiny_model, env="digits", algorithm=algorithm, prompts_per_step=4, group_size=4,
        max_new_tokens=8, steps=8, lr=1e-2, micro_batch_size=8, mini_batches=2, output_dir=str(tmp_path),
        seed=0, save_every=0, sample_every=0, progress=False,
    )  # fmt: skip
    tasks = [Task(prompt=f"Say {i}:", id=str(i)) for i in range(16)]
    train(cfg, env=FunctionEnv(digits, "digits", executor="inline"), tasks=tasks)
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert len(rows) == 8
    assert all(math.isfinite(r["loss"]) and 0 <= r["clip_frac"] <= 1 for r in rows)
    first = sum(r["reward_mean"] for r in rows[:2]) / 2
    last = sum(r["reward_mean"] for r in rows[-2:]) / 2
    assert last > first + 0.05, f"{algorithm}: reward {first:.3f} -> {last:.3f}"
    if algorithm == "gspo":  # two mini-batches: the second is off-policy, and GSPO's tiny band clips there
        assert max(r["clip_frac"] for r in rows) > 0
