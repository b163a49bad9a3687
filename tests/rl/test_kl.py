"""KL control: the adaptive coefficient against a slow reference, reference resets, their config checks, and
the trainer using, logging and checkpointing both (a resumed run continues exactly)."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from rewardkit.config import ConfigError  # noqa: E402
from rewardkit.rl.config import TrainConfig  # noqa: E402
from rewardkit.rl.kl import KLControl, reset_reference  # noqa: E402


def _slow_adaptive(beta, target, horizon, kls, ns):
    """Reference: Ziegler et al. 2019's controller written out step by step."""
    out = []
    for kl, n in zip(kls, ns):
        error = (kl - target) / target
        if error > 0.2:
            error = 0.2
        if error < -0.2:
            error = -0.2
        beta = beta * (1 + error * n / horizon)
        out.append(beta)
    return out


def test_adaptive_coefficient_matches_the_slow_reference():
    g = torch.Generator().manual_seed(0)
    kls = (torch.rand(50, generator=g, dtype=torch.float64) * 0.2).tolist()  # both sides of the target
    ns = torch.randint(1, 128, (50,), generator=g).tolist()
    control = KLControl(0.05, target=0.06, horizon=500)
    fast = [control.update(kl, n) for kl, n in zip(kls, ns)]
    assert fast == pytest.approx(_slow_adaptive(0.05, 0.06, 500, kls, ns), rel=1e-9, abs=1e-12)


def test_coefficient_moves_toward_the_target_and_is_bounded_per_step():
    control = KLControl(0.1, target=0.01, horizon=100)
    assert control.update(1.0, 10) == pytest.approx(0.1 * (1 + 0.2 * 0.1))  # KL far above: error clipped
    control = KLControl(0.1, target=0.01, horizon=100)
    assert control.update(0.0, 10) == pytest.approx(0.1 * (1 - 0.2 * 0.1))  # no KL at all: clipped too
    control = KLControl(0.1, target=0.01, horizon=100)
    assert control.update(0.011, 10) == pytest.approx(0.1 * (1 + 0.1 * 0.1))  # 10% above: proportional


def test_fixed_without_target_and_reset_schedule():
    control = KLControl(0.04, reset_every=3)
    assert control.update(5.0, 64) == 0.04
    assert [s for s in range(1, 10) if control.reset_due(s)] == [3, 6, 9]
    assert not any(KLControl(0.04).reset_due(s) for s in range(1, 10))


def test_state_dict_round_trip():
    control = KLControl(0.3, target=0.1, horizon=50, reset_every=2, last_reset=4)
    control.update(0.5, 8)
    other = KLControl(0.3, target=0.1, horizon=50, reset_every=2)
    other.load_state_dict(control.state_dict())
    assert (other.coef, other.last_reset) == (control.coef, control.last_reset)


def test_reset_reference_copies_the_policy_and_clears_the_optimizer():
    policy = torch.nn.Linear(3, 2)
    reference = torch.nn.Linear(3, 2).requires_grad_(False)
    optimizer = torch.optim.AdamW(policy.parameters(), lr=0.1)
    policy(torch.ones(1, 3)).sum().backward()
    optimizer.step()
    assert optimizer.state
    reset_reference(reference, policy, optimizer)
    assert torch.equal(reference.weight, policy.weight) and torch.equal(reference.bias, policy.bias)
    assert not reference.weight.requires_grad
    assert not optimizer.state and optimizer.param_groups[0]["lr"] == 0.1
    with torch.no_grad():
        policy.weight.add_(1.0)
    assert not torch.equal(reference.weight, policy.weight)  # a copy, not shared storage


@pytest.mark.parametrize(
    "kw, key",
    [
        ({"kl_target": 0.1, "algo": {"kl_coef": 0.0}}, "kl_target"),
        ({"ref_reset_every": 5, "algo": {"kl_coef": 0.0}}, "ref_reset_every"),
        ({"ref_reset_every": 5, "lora": {"r": 4}}, "ref_reset_every"),
        ({"kl_target": 0.1, "kl_horizon": 10}, "kl_horizon"),  # 0.2 * 8 * 8 = 12.8 >= 10
        ({"kl_target": -1.0}, "kl_target"),
        ({"is_mask_low": 1.5}, "is_mask_low"),
        ({"is_mask_high": 0.9}, "is_mask_high"),
    ],
)
def test_config_refuses_kl_control_without_a_reference_of_its_own(kw, key):
    if "lora" in kw:
        pytest.importorskip("peft")
    with pytest.raises(ConfigError, match=key):
        TrainConfig(**{"model": "m", "algo": {"kl_coef": 0.04}, **kw})


# ---------------------------------------------------------------------------------------------------------------
# The trainer


@pytest.fixture(scope="module")
def tiny_model(say_model):
    return say_model("base")


def _variety(completion, *, answer=None, prompt=None, info=None):
    """Distinct characters per character: differs between almost any two samples, so every group has signal."""
    return len(set(completion)) / max(len(completion), 1)


def _config(tiny_model, out, **kw):
    base = dict(
        model=tiny_model,
        env="variety",
        prompts_per_step=2,
        group_size=4,
        max_new_tokens=8,
        steps=2,
        lr=1e-2,
        output_dir=str(out),
        save_every=0,
        sample_every=0,
        progress=False,
        algo={"kl_coef": 0.05},
    )
    return TrainConfig(**{**base, **kw})


def _train(cfg, resume=False):
    from rewardkit.registry import FunctionEnv
    from rewardkit.rl.trainer import train
    from rewardkit.types import Task

    tasks = [Task(prompt=f"Say {i}:", id=str(i)) for i in range(8)]
    train(cfg, env=FunctionEnv(_variety, "variety", executor="inline"), tasks=tasks, resume=resume)
    return [json.loads(line) for line in (Path(cfg.output_dir) / "metrics.jsonl").read_text().splitlines()]


def test_fixed_coefficient_is_logged(tiny_model, tmp_path):
    history = _train(_config(tiny_model, tmp_path))
    assert [r["kl_coef"] for r in history] == [0.05, 0.05]


def test_adaptive_coefficient_follows_the_measured_kl(tiny_model, tmp_path):
    """Each step logs the coefficient it used; the next one is the controller applied to its measured KL."""
    history = _train(_config(tiny_model, tmp_path, steps=3, kl_target=1e-6, kl_horizon=16))
    assert history[0]["kl_coef"] == 0.05
    beta = 0.05
    for row, after in zip(history, history[1:]):
        beta = _slow_adaptive(beta, 1e-6, 16, [row["kl_ref"]], [8])[0]
        assert after["kl_coef"] == pytest.approx(beta, rel=1e-9)
    assert history[2]["kl_coef"] > history[1]["kl_coef"]  # the policy drifts past a tiny target: beta grows


def test_reference_reset_anchors_the_kl_to_the_last_policy(tiny_model, tmp_path):
    """With a reset after step 1, step 2 starts with policy == reference: its KL (measured before its only
    optimizer step) is exactly 0; without the reset the policy has already moved away from the reference."""
    reset = _train(_config(tiny_model, tmp_path / "reset", ref_reset_every=1))
    kept = _train(_config(tiny_model, tmp_path / "kept"))
    assert reset[0]["kl_ref"] == kept[0]["kl_ref"] == 0.0
    assert reset[1]["kl_ref"] == pytest.approx(0.0, abs=1e-7)
    assert kept[1]["kl_ref"] > 1e-6


def test_resume_restores_the_coefficient_and_the_reset_reference(tiny_model, tmp_path):
    """A checkpoint at step 3 holds the coefficient adapted so far and the reference of the reset after
    step 2 (not the policy, not the initial model): the resumed step 4 equals the uninterrupted one."""
    kw = dict(steps=4, save_every=3, kl_target=1e-3, kl_horizon=16, ref_reset_every=2)
    full = _train(_config(tiny_model, tmp_path / "full", **kw))
    half = _config(tiny_model, tmp_path / "half", **{**kw, "steps": 3})
    _train(half)
    resumed = _train(replace(half, steps=4), resume=True)
    assert [r["step"] for r in resumed] == [1, 2, 3, 4]
    for key in ("kl_coef", "kl_ref", "loss", "reward_mean"):
        assert resumed[3][key] == pytest.approx(full[3][key], rel=1e-5, abs=1e-8), key
