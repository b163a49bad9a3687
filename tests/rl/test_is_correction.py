"""Importance correction for the sampler/trainer mismatch: truncated and masked IS at the token, sequence and
geometric-mean levels against hand values and slow loops, unbiasedness, and the trainer using them (the hf
back end with top-k sampling is off the trained module's distribution)."""

from __future__ import annotations

import math

import pytest

torch = pytest.importorskip("torch", reason="the IS correction is a torch function")

from rewardkit.rl.is_correction import (  # noqa: E402
    MODES,
    correction_weights,
    masked_is_weights,
    truncated_is_weights,
)


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


# ---------------------------------------------------------------------------------------------------------------
# Every mode against a slow reference


def _slow_mode(trainer, sampler, mask, mode, cap=2.0, low=0.5, high=2.0):
    """Reference for every mode: per row, the level's ratio from plain loops, then truncate or mask it."""
    level, masked = (mode.removesuffix("_mask"), True) if mode.endswith("_mask") else (mode, False)
    out = []
    for t_row, s_row, m_row in zip(trainer.tolist(), sampler.tolist(), mask.tolist()):
        logs = [t - s for t, s, m in zip(t_row, s_row, m_row) if m]
        row = []
        for t, s, m in zip(t_row, s_row, m_row):
            if not m:
                row.append(1.0)
                continue
            if level == "token":
                ratio = math.exp(t - s)
            elif level == "sequence":
                ratio = math.exp(sum(logs))
            else:
                ratio = math.exp(sum(logs) / len(logs))
            row.append((1.0 if low <= ratio <= high else 0.0) if masked else min(ratio, cap))
        out.append(row)
    return torch.tensor(out, dtype=torch.float64)


def _random_batch(seed):
    g = torch.Generator().manual_seed(seed)
    trainer = -torch.rand(5, 9, generator=g, dtype=torch.float64) * 3
    sampler = trainer + torch.randn(5, 9, generator=g, dtype=torch.float64) * 0.4
    mask = (torch.rand(5, 9, generator=g) > 0.3).long()
    mask[3] = 0  # a row with no policy tokens
    return trainer, sampler, mask


@pytest.mark.parametrize("mode", [m for m in MODES if m != "none"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_every_mode_matches_the_slow_reference(mode, seed):
    trainer, sampler, mask = _random_batch(seed)
    w, metrics = correction_weights(trainer, sampler, mask, mode, cap=1.3, low=0.8, high=1.25)
    ref = _slow_mode(trainer, sampler, mask, mode, cap=1.3, low=0.8, high=1.25)
    assert torch.allclose(w.double(), ref, atol=1e-6), (w, ref)
    assert not w.requires_grad
    on = mask.bool()
    assert metrics["is_weight_mean"] == pytest.approx(float(ref[on].mean()), abs=1e-6)


@pytest.mark.parametrize("mode", ["token_mask", "sequence_mask", "geo_sequence_mask", "geo_sequence"])
def test_masked_tokens_change_nothing(mode):
    trainer, sampler, mask = _random_batch(3)
    w, metrics = correction_weights(trainer, sampler, mask, mode)
    noisy = sampler + (1 - mask) * 7.0
    w2, metrics2 = correction_weights(trainer, noisy, mask, mode)
    assert torch.equal(w, w2) and metrics == metrics2


def test_token_mask_hand_values_and_metrics():
    """IcePop-style: ratios 1, 3, 0.5 and 0.25 with [0.5, 2]: the 3 and the 0.25 are dropped."""
    trainer = torch.tensor([[math.log(0.5), math.log(0.9), math.log(0.2), math.log(0.1)]])
    sampler = torch.tensor([[math.log(0.5), math.log(0.3), math.log(0.4), math.log(0.4)]])
    w, m = masked_is_weights(trainer, sampler, torch.ones(1, 4), level="token", low=0.5, high=2.0)
    assert w.tolist()[0] == [1.0, 0.0, 1.0, 0.0]
    assert m["is_mask_frac"] == pytest.approx(0.5) and m["is_clip_frac"] == 0.0
    assert m["is_weight_mean"] == pytest.approx(0.5)
    assert m["mismatch_ratio_mean"] == pytest.approx((1 + 3 + 0.5 + 0.25) / 4)
    assert m["mismatch_ratio_max"] == pytest.approx(3.0)
    kl = [r - 1 - math.log(r) for r in (1, 3, 0.5, 0.25)]
    assert m["mismatch_kl"] == pytest.approx(sum(kl) / 4)


def test_sequence_levels_hand_values():
    """Row 0: ratios 2 and 2 (product 4, geometric mean 2); row 1: 1.1 and 1/1.1 (product 1)."""
    trainer = torch.tensor([[math.log(2.0), math.log(2.0)], [math.log(1.1), -math.log(1.1)]])
    sampler = torch.zeros(2, 2)
    mask = torch.ones(2, 2)
    w, m = masked_is_weights(trainer, sampler, mask, level="sequence", low=0.5, high=3.0)
    assert w.tolist() == [[0.0, 0.0], [1.0, 1.0]] and m["is_mask_frac"] == pytest.approx(0.5)
    w, m = masked_is_weights(trainer, sampler, mask, level="geo_sequence", low=0.5, high=3.0)
    assert w.tolist() == [[1.0, 1.0], [1.0, 1.0]] and m["is_mask_frac"] == 0.0  # geometric mean 2 is kept
    w, m = truncated_is_weights(trainer, sampler, mask, level="geo_sequence", cap=1.5)
    assert w.flatten().tolist() == pytest.approx([1.5, 1.5, 1.0, 1.0])
    assert m["is_clip_frac"] == pytest.approx(0.5)


def test_huge_ratios_stay_finite():
    trainer = torch.tensor([[0.0, 0.0]])
    sampler = torch.tensor([[-80.0, -200.0]])
    for mode in MODES:
        w, m = correction_weights(trainer, sampler, torch.ones(1, 2), mode)
        assert all(math.isfinite(v) for v in m.values()), (mode, m)
        assert w is None or bool(torch.isfinite(w).all())


def test_none_measures_but_gives_no_weights():
    trainer = torch.tensor([[0.0, -1.0]])
    sampler = torch.tensor([[-1.0, -1.0]])
    w, m = correction_weights(trainer, sampler, torch.ones(1, 2), "none")
    assert w is None
    assert m["mismatch_ratio_max"] == pytest.approx(math.e) and m["is_clip_frac"] == pytest.approx(0.5)


def test_bad_mask_bounds_and_modes_raise():
    ones = torch.ones(1, 2)
    with pytest.raises(ValueError, match="low"):
        masked_is_weights(ones, ones, ones, low=1.2, high=2.0)
    with pytest.raises(ValueError, match="mode"):
        correction_weights(ones, ones, ones, "tokens")


# ---------------------------------------------------------------------------------------------------------------
# The trainer: the hf back end with top-k sampling is corrected like vLLM; every mode trains


@pytest.fixture(scope="module")
def tiny_model(say_model):
    return say_model("base")


def _digits(completion, *, answer=None, prompt=None, info=None):
    text = completion.replace(" ", "")
    return sum(c.isdigit() for c in text) / max(len(text), 1)


def _train(tiny_model, out, **kw):
    import json

    from rewardkit.registry import FunctionEnv
    from rewardkit.rl.config import TrainConfig
    from rewardkit.rl.trainer import train
    from rewardkit.types import Task

    base = dict(
        model=tiny_model,
        env="digits",
        prompts_per_step=2,
        group_size=4,
        max_new_tokens=8,
        steps=2,
        lr=3e-3,
        output_dir=str(out),
        save_every=0,
        sample_every=0,
        progress=False,
        algo={"kl_coef": 0.0},
    )
    cfg = TrainConfig(**{**base, **kw})
    tasks = [Task(prompt=f"Say {i}:", id=str(i)) for i in range(8)]
    train(cfg, env=FunctionEnv(_digits, "digits", executor="inline"), tasks=tasks)
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


MISMATCH_KEYS = (
    "mismatch_log_ratio_abs_mean",
    "mismatch_log_ratio_abs_max",
    "mismatch_ratio_mean",
    "mismatch_ratio_max",
    "mismatch_kl",
    "is_weight_mean",
    "is_clip_frac",
    "is_mask_frac",
)


def test_hf_top_k_sampling_is_measured_and_corrected(tiny_model, tmp_path):
    """top_k=20 samples from a truncated distribution: the sampler's log-probs (of what it sampled) are
    above the trainer's full-distribution ones, so the trainer recomputes old log-probs, logs the
    mismatch and applies weights pi_old / pi_sampler < 1 (the loss differs from ``none``'s)."""
    corrected = _train(tiny_model, tmp_path / "token", top_k=20, is_correction="token")
    plain = _train(tiny_model, tmp_path / "none", top_k=20, is_correction="none")
    for row in corrected + plain:
        for key in MISMATCH_KEYS:
            assert key in row, key
        assert row["mismatch_log_ratio_abs_max"] > 0.1  # the truncation's mass, not kernel noise
        assert row["mismatch_ratio_max"] <= 1.0 + 1e-4  # pi_full <= pi_truncated on a kept token
    assert corrected[0]["is_weight_mean"] < 1.0
    assert corrected[0]["reward_mean"] == plain[0]["reward_mean"]  # the same first rollouts
    assert corrected[0]["pg_loss"] != pytest.approx(plain[0]["pg_loss"], abs=1e-7)  # weights applied


def test_hf_without_truncation_logs_trivial_mismatch_when_old_logprobs_exist(tiny_model, tmp_path):
    """The sampler is the trained module and samples its full distribution: nothing to correct, but with
    two mini-batches the old log-probs are computed anyway and the mismatch is logged (~0)."""
    history = _train(tiny_model, tmp_path, mini_batches=2)
    for row in history:
        assert row["mismatch_log_ratio_abs_max"] < 1e-4
        assert row["mismatch_ratio_mean"] == pytest.approx(1.0, abs=1e-4)
        assert row["is_mask_frac"] == 0.0


@pytest.mark.parametrize("mode", ["geo_sequence", "token_mask", "sequence_mask", "geo_sequence_mask"])
def test_each_mode_trains_two_steps(tiny_model, tmp_path, mode):
    history = _train(tiny_model, tmp_path, top_p=0.8, is_correction=mode, is_mask_low=0.9, is_mask_high=1.1)
    assert [r["step"] for r in history] == [1, 2]
    for row in history:
        assert all(math.isfinite(v) for v in row.values() if isinstance(v, float))
        assert 0.0 <= row["is_mask_frac"] <= 1.0
    if mode.endswith("_mask"):
        assert any(r["is_mask_frac"] > 0 for r in history)  # top-p moves ratios out of [0.9, 1.1]
