"""Defects an audit of the trainer found (issue #13), each pinned on a tiny model with real components:
the entropy bonus has a gradient, policy and critic gradients are clipped separately, an update makes
exactly ``mini_batches`` optimizer steps, no no-grad pass runs for a KL term of weight 0, and the metrics
say what they measure (``kl_ref`` / ``kl_rollout``, ``reward_mean`` over every generated sample)."""

from __future__ import annotations

import copy
import dataclasses
import json
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from rewardkit.config import ConfigError  # noqa: E402
from rewardkit.registry import FunctionEnv  # noqa: E402
from rewardkit.rl.algorithms import AlgorithmConfig, StepNorm  # noqa: E402
from rewardkit.rl.config import TrainConfig  # noqa: E402
from rewardkit.rl.run_dir import RunDirMode  # noqa: E402
from rewardkit.rl.trainer import (  # noqa: E402
    BatchTensors,
    _loss_backward,
    _Run,
    _start,
    compute_advantages,
    no_grad_pass,
    optimize,
    rollout_batch,
    train,
)
from rewardkit.types import Task  # noqa: E402


@pytest.fixture(scope="module")
def tiny_model(say_model):
    return say_model("small", vocab=200)


def tasks(n=8):
    return [Task(prompt=f"Say {i}:", id=str(i)) for i in range(n)]


def always_one(completion, *, answer=None, prompt=None, info=None):
    return 1.0


def by_length(completion, *, answer=None, prompt=None, info=None):
    """Varied, non-zero rewards from any model: PPO's critic and policy both get a gradient."""
    return 0.25 + (len(completion) % 5) / 4


def config(tiny_model, out, **kw):
    base = dict(
        model=tiny_model,
        env="toy",
        prompts_per_step=3,
        group_size=3,
        max_new_tokens=6,
        steps=1,
        lr=1e-3,
        micro_batch_size=16,
        output_dir=str(out),
        seed=0,
        save_every=0,
        sample_every=0,
        progress=False,
        algo={"kl_coef": 0.0},
    )
    base.update(kw)
    return TrainConfig(**base)


def start(cfg, reward=by_length) -> _Run:
    return _start(cfg, env(reward), tasks(), RunDirMode())


def rollout(run: _Run, step=1):
    return rollout_batch(run, step)


def env(reward=by_length):
    return FunctionEnv(reward, "toy", executor="inline")


def rows(out: Path):
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def grad_norm(grads):
    return float(torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads])))


# ---------------------------------------------------------------------------------------------------------------
# 1. The entropy bonus


def explicit_entropy_bonus(model, packed, mask, temperature, coef):
    """-coef * seq_mean_token_mean(H) with H = -sum_v p_v log p_v written out token by token."""
    P = packed["prompt_len"]
    logits = model(
        input_ids=packed["input_ids"],
        attention_mask=packed["attention_mask"],
        position_ids=packed["position_ids"],
    ).logits.float()
    per_seq = []
    for i in range(mask.shape[0]):
        tokens = []
        for j in range(mask.shape[1]):
            if mask[i, j]:
                p = torch.softmax(logits[i, P - 1 + j] / temperature, dim=-1)
                tokens.append(-(p * torch.log(p)).sum())
        if tokens:
            per_seq.append(sum(tokens) / len(tokens))
    return -coef * sum(per_seq) / len(per_seq)


def test_the_entropy_bonus_has_the_gradient_of_an_explicit_entropy(tiny_model, tmp_path):
    cfg = config(tiny_model, tmp_path, temperature=0.7, algo={"kl_coef": 0.0, "entropy_coef": 0.5})
    run = start(cfg, always_one)
    learner = run.learner
    reference = copy.deepcopy(learner.policy)
    inputs = compute_advantages(learner, rollout(run))
    assert bool((inputs.advantages == 0).all())  # every reward 1.0: only the entropy term can move the policy
    micro = list(range(len(inputs.data.prompts)))
    norm = StepNorm.from_masks([inputs.data.loss_mask])
    _loss_backward(learner, inputs, micro, norm)
    params = [p for p in learner.policy.parameters() if p.requires_grad]
    assert all(p.grad is not None for p in params)
    assert grad_norm([p.grad for p in params]) > 1e-3

    packed = inputs.data.pack(micro, learner.pad_id, learner.device)
    mask = inputs.data.loss_mask[:, : packed["completion_len"]]
    explicit_entropy_bonus(reference, packed, mask, 0.7, 0.5).backward()
    for p, ref in zip(params, [p for p in reference.parameters() if p.requires_grad]):
        torch.testing.assert_close(p.grad, ref.grad, atol=1e-6, rtol=1e-5)


def test_entropy_keeps_no_graph_when_it_is_only_a_metric(tiny_model, tmp_path):
    from rewardkit.rl.model import completion_logprobs

    run = start(config(tiny_model, tmp_path))
    data = BatchTensors.from_batch(rollout(run), run.learner.device)
    packed = data.pack([0, 1], run.learner.pad_id, run.learner.device)
    _, entropy = completion_logprobs(run.learner.policy, packed, 1.0, with_entropy=True)
    assert not entropy.requires_grad
    _, entropy = completion_logprobs(run.learner.policy, packed, 1.0, with_entropy=True, entropy_grad=True)
    assert entropy.requires_grad


# ---------------------------------------------------------------------------------------------------------------
# 2. Policy and critic gradients are clipped separately


def grads_at_step(learner, batch):
    """Optimize once on ``batch``; returns the metrics and each param group's gradients as the optimizer sees
    them (after clipping)."""
    seen = []

    def record(optimizer, args, kwargs):
        seen.append(
            [[p.grad.clone() for p in g["params"] if p.grad is not None] for g in optimizer.param_groups]
        )

    handle = learner.optimizer.register_step_pre_hook(record)
    metrics = optimize(learner, batch, 1)
    handle.remove()
    assert len(seen) == 1
    return metrics, seen[0]


def test_a_large_critic_gradient_does_not_shrink_the_policy_update(tiny_model, tmp_path):
    unclipped = start(config(tiny_model, tmp_path / "a", algorithm="ppo", algo={}, max_grad_norm=1e9))
    batch = rollout(unclipped)
    _, (policy_g, critic_g) = grads_at_step(unclipped.learner, batch)
    policy_norm, critic_norm = grad_norm(policy_g), grad_norm(critic_g)
    assert policy_norm > 1e-2 and critic_norm > 1e-2

    for max_norm, value_max in ((1e-3, None), (1e9, 2e-3)):
        cfg = config(
            tiny_model,
            tmp_path / f"b{max_norm}",
            algorithm="ppo",
            algo={},
            max_grad_norm=max_norm,
            value_max_grad_norm=value_max,
        )
        run = start(cfg)
        metrics, (policy_c, critic_c) = grads_at_step(run.learner, batch)
        value_max = max_norm if value_max is None else value_max
        assert metrics["grad_norm"] == pytest.approx(policy_norm, rel=1e-5)
        assert metrics["value_grad_norm"] == pytest.approx(critic_norm, rel=1e-5)
        for grads, clipped, norm, bound in (
            (policy_g, policy_c, policy_norm, max_norm),
            (critic_g, critic_c, critic_norm, value_max),
        ):
            scale = min(1.0, bound / (norm + 1e-6))  # each group clipped to its own bound, by its own norm
            for g, c in zip(grads, clipped):
                torch.testing.assert_close(c, g * scale, rtol=1e-4, atol=1e-9)


def test_value_max_grad_norm_must_be_positive(tiny_model, tmp_path):
    with pytest.raises(ConfigError, match="value_max_grad_norm"):
        config(tiny_model, tmp_path, value_max_grad_norm=0.0)


# ---------------------------------------------------------------------------------------------------------------
# 5c. Exactly mini_batches optimizer steps per epoch


@pytest.mark.parametrize(("prompts", "group", "mini", "epochs"), [(3, 3, 4, 1), (5, 2, 6, 2), (2, 2, 6, 1)])
def test_an_epoch_makes_exactly_mini_batches_optimizer_steps(
    tiny_model, tmp_path, prompts, group, mini, epochs
):
    cfg = config(
        tiny_model,
        tmp_path,
        prompts_per_step=prompts,
        group_size=group,
        mini_batches=mini,
        num_iterations=epochs,
    )
    run = start(cfg)
    batch = rollout(run)
    sizes = []
    handle = run.learner.optimizer.register_step_pre_hook(
        lambda opt, args, kwargs: sizes.append(sum(p.grad is not None for p in opt.param_groups[0]["params"]))
    )
    metrics = optimize(run.learner, batch, 1)
    handle.remove()
    samples = prompts * group
    stepped = (
        min(mini, samples) * epochs
    )  # a mini-batch with no sample (more mini-batches than samples) skips
    assert metrics["optimizer_updates"] == stepped == len(sizes)
    # the schedule counts every planned update, so its length (steps x epochs x mini_batches) stays right
    assert run.learner.scheduler.last_epoch == mini * epochs


def test_mini_batches_are_near_equal_parts():
    from rewardkit.rl.trainer import _split

    assert [len(p) for p in _split(list(range(10)), 4)] == [3, 3, 2, 2]
    assert [len(p) for p in _split(list(range(3)), 5)] == [1, 1, 1, 0, 0]
    assert sum(_split(list(range(10)), 4), []) == list(range(10))


# ---------------------------------------------------------------------------------------------------------------
# 5d. No no-grad pass for a KL term of weight 0


def test_no_old_logprob_pass_for_a_kl_in_the_reward_of_weight_zero(tiny_model, tmp_path):
    run = start(config(tiny_model, tmp_path / "rloo", algorithm="rloo", algo={}))
    assert run.learner.algo.kl_in_reward and run.learner.algo.kl_coef == 0
    data = BatchTensors.from_batch(rollout(run), run.learner.device)
    nograd = no_grad_pass(run.learner, data)
    assert nograd.old_logprobs is None and nograd.ref_logprobs is None and nograd.old_values is None

    run = start(config(tiny_model, tmp_path / "kl", algorithm="rloo", algo={"kl_coef": 0.1}))
    nograd = no_grad_pass(run.learner, BatchTensors.from_batch(rollout(run), run.learner.device))
    assert nograd.old_logprobs is not None and nograd.ref_logprobs is not None


# ---------------------------------------------------------------------------------------------------------------
# 5a. kl_ref and kl_rollout


def test_kl_to_the_reference_and_to_the_rollout_policy_are_two_metrics(tiny_model, tmp_path):
    train(
        config(tiny_model, tmp_path / "ref", steps=2, mini_batches=2, algo={"kl_coef": 0.05}),
        env=env(),
        tasks=tasks(),
    )
    train(config(tiny_model, tmp_path / "none", steps=2, mini_batches=2), env=env(), tasks=tasks())
    for row in rows(tmp_path / "ref"):
        assert row["kl"] == row["kl_ref"] and row["kl_ref"] > 0  # the second mini-batch has moved away
        assert row["kl_rollout"] > 0
    for row in rows(tmp_path / "none"):
        assert "kl_ref" not in row and row["kl"] == 0.0  # no reference model: no KL to one
        assert row["kl_rollout"] > 0  # the drift from the rollout policy, under its own name


# ---------------------------------------------------------------------------------------------------------------
# 4 and 5b. Dynamic sampling filters on accuracy; reward_mean counts every generated sample


def test_a_constant_reward_trains_nothing_however_the_lengths_are_shaped(tiny_model, tmp_path):
    cfg = config(
        tiny_model,
        tmp_path,
        algorithm="dapo",
        algo={"overlong_buffer_frac": 0.5},
        max_sampling_rounds=2,
        max_new_tokens=8,
    )
    run = start(dataclasses.replace(cfg, output_dir=str(tmp_path / "rollout")), always_one)
    batch = rollout(run)
    G = cfg.group_size
    shaped = [
        {round(s.reward, 6) for s in batch.generated[i : i + G]} for i in range(0, len(batch.generated), G)
    ]
    assert any(len(group) > 1 for group in shaped), "the test needs a group the length penalty tells apart"
    assert batch.samples == []  # every group's accuracy is all-equal: nothing to learn but the penalty

    train(cfg, env=env(always_one), tasks=tasks())
    (row,) = rows(tmp_path)
    assert row["kept_fraction"] == 0.0 and "optimizer_updates" not in row
    assert row["env_reward_mean"] == 1.0


def test_reward_mean_counts_every_generated_sample(tiny_model, tmp_path):
    cfg = config(
        tiny_model, tmp_path, algorithm="dapo", algo={"overlong_buffer_frac": 0.0}, max_sampling_rounds=2
    )
    train(cfg, env=env(always_one), tasks=tasks())
    (row,) = rows(tmp_path)
    assert row["reward_mean"] == 1.0  # every group dropped, every reward 1.0
    assert row["kept_fraction"] == 0.0 and "reward_mean_kept" not in row

    train(config(tiny_model, tmp_path / "kept"), env=env(), tasks=tasks())
    (row,) = rows(tmp_path / "kept")
    assert row["kept_fraction"] == 1.0 and row["reward_mean_kept"] == row["reward_mean"]


def test_dynamic_sampling_metric_is_checked():
    assert AlgorithmConfig().dynamic_sampling_metric == "auto"
    AlgorithmConfig(dynamic_sampling_metric="correct")
    with pytest.raises(ConfigError, match="dynamic_sampling_metric"):
        AlgorithmConfig(dynamic_sampling_metric="")


def test_the_lm_head_on_completion_positions_only_changes_nothing(tiny_model):
    """completion_logprobs asks the model for the last T+1 positions' logits only (``logits_to_keep``):
    the same log-probs and gradients as slicing the full logits, which a model without that argument
    still gets."""
    from rewardkit.models import load_model
    from rewardkit.rl.model import completion_logprobs, pack

    model, _ = load_model(tiny_model, None, "fp32")

    class NoLogitsToKeep(torch.nn.Module):  # a causal LM whose forward lacks logits_to_keep
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, input_ids, attention_mask, position_ids):
            return self.inner(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids)

    packed = pack([[5, 6, 7], [8, 9], [4]], [[10, 11], [12, 13, 14, 15], [16]], 0, "cpu")
    results = []
    for m in (model, NoLogitsToKeep(model)):
        model.zero_grad()
        logprobs, entropy = completion_logprobs(m, packed, 0.7, with_entropy=True)
        (logprobs * torch.arange(1.0, 5.0)).sum().backward()
        results.append((logprobs.detach(), entropy, [p.grad.clone() for p in model.parameters()]))
    (lp_a, ent_a, grads_a), (lp_b, ent_b, grads_b) = results
    assert lp_a.shape == (3, 4)
    torch.testing.assert_close(lp_a, lp_b, rtol=0, atol=1e-6)
    torch.testing.assert_close(ent_a, ent_b, rtol=0, atol=1e-6)
    for a, b in zip(grads_a, grads_b):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-6)
