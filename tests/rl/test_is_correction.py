"""Truncated importance sampling for the sampler/trainer mismatch: hand values, a slow loop, unbiasedness."""

from __future__ import annotations

import math

import pytest

torch = pytest.importorskip("torch", reason="the IS correction is a torch function")

from rewardkit.rl.is_correction import truncated_is_weights  # noqa: E402


def _slow_weights(trainer, sampler, mask, level, cap):
    """Reference: plain Python loops over sequences and tokens."""
    out = []
    for t_row, s_row, m_row in zip(trainer.tolist(), sampler.tolist(), mask.tolist()):
        if level == "token":
            out.append([min(math.exp(t - s), cap) if m else 1.0 for t, s, m in zip(t_row, s_row, m_row)])
        else:
            total = sum(t - s for t, s, m in zip(t_row, s_row, m_row) if m)
            w = min(math.exp(total), cap)
            out.append([w if m else 1.0 for m in m_row])
    return torch.tensor(out)


def test_token_level_hand_values():
    trainer = torch.tensor([[math.log(0.5), math.log(0.9), math.log(0.2)]])
    sampler = torch.tensor([[math.log(0.5), math.log(0.3), math.log(0.4)]])
    mask = torch.tensor([[1, 1, 1]])
    w, m = truncated_is_weights(trainer, sampler, mask, cap=2.0)
    assert w.tolist()[0] == pytest.approx([1.0, 2.0, 0.5])  # 0.9/0.3 = 3 is capped at 2
    assert m["is_clip_frac"] == pytest.approx(1 / 3)
    assert m["mismatch_log_ratio_abs_max"] == pytest.approx(math.log(3))
    assert m["mismatch_log_ratio_abs_mean"] == pytest.approx((0 + math.log(3) + math.log(2)) / 3)
    assert m["is_weight_mean"] == pytest.approx(3.5 / 3)


@pytest.mark.parametrize("level", ["token", "sequence"])
def test_matches_slow_loop_and_ignores_masked_tokens(level):
    g = torch.Generator().manual_seed(0)
    trainer = -torch.rand(4, 7, generator=g) * 3
    sampler = trainer + torch.randn(4, 7, generator=g) * 0.3
    mask = (torch.rand(4, 7, generator=g) > 0.3).long()
    mask[2] = 0  # a row with no policy tokens
    w, metrics = truncated_is_weights(trainer, sampler, mask, level=level, cap=1.5)
    assert torch.allclose(w, _slow_weights(trainer, sampler, mask, level, 1.5), atol=1e-5)
    assert not w.requires_grad
    # Changing logprobs under mask 0 changes nothing.
    noisy = sampler + (1 - mask) * 5.0
    w2, metrics2 = truncated_is_weights(trainer, noisy, mask, level=level, cap=1.5)
    assert torch.equal(w, w2) and metrics == metrics2


def test_sequence_level_shares_one_weight_and_counts_sequences():
    trainer = torch.tensor([[0.0, 0.0], [0.0, 0.0]])
    sampler = torch.tensor([[-0.5, -0.5], [0.1, 0.0]])  # row 0: ratio e^1 > 2 (clipped); row 1: e^-0.1
    mask = torch.ones(2, 2)
    w, m = truncated_is_weights(trainer, sampler, mask, level="sequence", cap=2.0)
    assert w[0].tolist() == pytest.approx([2.0, 2.0])
    assert w[1].tolist() == pytest.approx([math.exp(-0.1)] * 2)
    assert m["is_clip_frac"] == pytest.approx(0.5)


def test_disabled_gives_unit_weights_but_still_measures():
    trainer = torch.tensor([[0.0, -1.0]])
    sampler = torch.tensor([[-1.0, -1.0]])
    w, m = truncated_is_weights(trainer, sampler, torch.ones(1, 2), enabled=False)
    assert torch.equal(w, torch.ones(1, 2))
    assert m["mismatch_log_ratio_abs_max"] == pytest.approx(1.0)
    assert m["mismatch_kl"] == pytest.approx((math.e - 2) / 2)


def test_identical_logprobs_mean_no_correction():
    lp = -torch.rand(3, 5)
    w, m = truncated_is_weights(lp, lp.clone(), torch.ones(3, 5))
    assert torch.equal(w, torch.ones(3, 5))
    assert m["mismatch_log_ratio_abs_max"] == 0.0 and m["is_clip_frac"] == 0.0 and m["mismatch_kl"] == 0.0


def test_weights_correct_the_sampling_distribution():
    """Draws from q weighted by p/q estimate an expectation under p: the ratio points the right way."""
    p = torch.tensor([0.1, 0.2, 0.7])
    q = torch.tensor([0.4, 0.4, 0.2])
    draws = torch.multinomial(q, 200_000, replacement=True, generator=torch.Generator().manual_seed(1))
    trainer, sampler = p.log()[draws][None], q.log()[draws][None]
    w, _ = truncated_is_weights(trainer, sampler, torch.ones_like(trainer), cap=100.0)
    f = draws.float()  # E_p[f] = 0*0.1 + 1*0.2 + 2*0.7 = 1.6; E_q[f] = 0.8
    assert float((w[0] * f).mean()) == pytest.approx(1.6, abs=0.03)


def test_bad_config_and_shapes_raise():
    ones = torch.ones(1, 2)
    with pytest.raises(ValueError, match="cap"):
        truncated_is_weights(ones, ones, ones, cap=0.5)
    with pytest.raises(ValueError, match="level"):
        truncated_is_weights(ones, ones, ones, level="batch")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="shape mismatch"):
        truncated_is_weights(torch.zeros(2, 3), torch.zeros(2, 4), torch.ones(2, 3))
