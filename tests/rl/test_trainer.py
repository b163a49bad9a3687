"""The trainer end to end on a tiny model: every algorithm learns a toy reward, resume is exact,
Ctrl-C saves a checkpoint, and metrics.jsonl keeps the public keys."""

from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from rewardkit.registry import FunctionEnv  # noqa: E402
from rewardkit.rl.config import TrainConfig  # noqa: E402
from rewardkit.rl.logging import REQUIRED_KEYS  # noqa: E402
from rewardkit.rl.trainer import train  # noqa: E402
from rewardkit.types import Task  # noqa: E402


def sevens(completion, *, answer=None, prompt=None, info=None):
    """Toy reward: the share of the completion's characters that are digits.

    Digits are split one per token, so a random-init model emits one about every 30 tokens: every step
    has signal, and the test does not depend on a lucky first sample (a single-token target did).
    """
    text = completion.replace(" ", "")
    return sum(c.isdigit() for c in text) / max(len(text), 1)


@pytest.fixture(scope="module")
def tiny_model(say_model):
    return say_model("base")


def tasks(n=16):
    return [Task(prompt=f"Say {i}:", id=str(i)) for i in range(n)]


def config(tiny_model, out, **kw):
    base = dict(
        model=tiny_model,
        env="sevens",
        prompts_per_step=4,
        group_size=4,
        max_new_tokens=8,
        steps=6,
        lr=3e-3,
        micro_batch_size=8,
        output_dir=str(out),
        seed=0,
        save_every=0,
        sample_every=3,
        progress=False,
        algo={"kl_coef": 0.0},
    )
    base.update(kw)
    return TrainConfig(**base)


def env():
    return FunctionEnv(sevens, "sevens", executor="inline")


def rows(out: Path):
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


ALGORITHMS = {
    "grpo": {"algo": {"kl_coef": 0.04}},
    "dr_grpo": {},
    "dapo": {"algo": {"overlong_buffer_frac": 0.25}},
    "rloo": {},
    "ppo": {},
    "reinforce_pp": {},
}


@pytest.mark.parametrize("algorithm", sorted(ALGORITHMS))
def test_each_algorithm_raises_the_reward(algorithm, tiny_model, tmp_path):
    extra = dict(ALGORITHMS[algorithm])
    algo = {"kl_coef": 0.0, **extra.pop("algo", {})}
    if algorithm in ("ppo", "rloo", "reinforce_pp"):
        algo.pop("kl_coef")
    cfg = config(tiny_model, tmp_path, algorithm=algorithm, steps=12, lr=1e-2, algo=algo, **extra)
    result = train(cfg, env=env(), tasks=tasks())
    history = rows(tmp_path)
    assert len(history) == 12 and not result.interrupted
    for row in history:
        for key, value in row.items():
            assert not (isinstance(value, float) and math.isnan(value)), (
                f"{algorithm}: {key} is NaN at step {row['step']}"
            )
    first = sum(r["reward_mean"] for r in history[:3]) / 3
    last = sum(r["reward_mean"] for r in history[-3:]) / 3
    # from ~1/vocab at random init; the margin is several times the step-to-step noise seen here
    assert last > first + 0.05, f"{algorithm}: reward {first:.3f} -> {last:.3f}"


def test_metrics_jsonl_has_the_public_keys_and_artifacts(tiny_model, tmp_path):
    train(config(tiny_model, tmp_path, steps=3), env=env(), tasks=tasks())
    history = rows(tmp_path)
    assert [r["step"] for r in history] == [1, 2, 3]
    for key in REQUIRED_KEYS:
        assert key in history[0], key
    assert (tmp_path / "curves.png").stat().st_size > 1000
    assert (tmp_path / "rollouts" / "step_000003.jsonl").exists()
    assert (tmp_path / "checkpoints" / "step_000003" / "model" / "config.json").exists()


def test_resume_matches_the_uninterrupted_run(tiny_model, tmp_path):
    full = config(tiny_model, tmp_path / "full", steps=4, save_every=2, num_iterations=2, mini_batches=2)
    train(full, env=env(), tasks=tasks())
    half = replace(full, output_dir=str(tmp_path / "half"), steps=2)
    train(half, env=env(), tasks=tasks())
    train(replace(half, steps=4), env=env(), tasks=tasks(), resume=True)
    a, b = rows(tmp_path / "full"), rows(tmp_path / "half")
    assert [r["step"] for r in b] == [1, 2, 3, 4]
    for ra, rb in zip(a, b):
        for key in ("loss", "reward_mean", "grad_norm", "response_len_mean"):
            assert ra[key] == pytest.approx(rb[key], rel=1e-5, abs=1e-7), (key, ra["step"])


class InterruptingEnv(FunctionEnv):
    """Raises KeyboardInterrupt while scoring the third batch, like Ctrl-C mid-step."""

    calls = 0

    def score_batch(self, samples):
        type(self).calls += 1
        if type(self).calls == 3:
            raise KeyboardInterrupt
        return super().score_batch(samples)


def test_ctrl_c_saves_a_checkpoint_and_resume_continues(tiny_model, tmp_path):
    cfg = config(tiny_model, tmp_path, steps=5)
    result = train(cfg, env=InterruptingEnv(sevens, "sevens", executor="inline"), tasks=tasks())
    assert result.interrupted and result.steps == 2
    assert (tmp_path / "checkpoints" / "latest").read_text().strip() == "step_000002"
    resumed = train(cfg, env=env(), tasks=tasks(), resume=True)
    assert not resumed.interrupted
    assert [r["step"] for r in rows(tmp_path)] == [1, 2, 3, 4, 5]


def test_multi_turn_env_trains_with_exact_masks(tiny_model, tmp_path):
    """A two-turn environment: the environment's reply tokens never get loss, and training runs."""
    from rewardkit.envs.base import EnvStep

    class TwoTurns(FunctionEnv):
        max_turns = 2

        def env_response(self, messages, state):
            return EnvStep(messages=({"role": "user", "content": " again:"},), done=len(messages) >= 4)

    two = TwoTurns(sevens, "sevens2", executor="inline")
    cfg = config(tiny_model, tmp_path, steps=2)
    result = train(cfg, env=two, tasks=tasks())
    assert result.steps == 2
    two.close()
    # the rollouts record which tokens were the policy's: the environment's reply is a non-policy run
    records = [
        json.loads(line) for line in (tmp_path / "rollouts" / "step_000002.jsonl").read_text().splitlines()
    ]
    episodes = [r for r in records if r["turns"] == 2]
    assert episodes, [(r["turns"], r["truncated"]) for r in records]
    assert all(any("again:" in seg["text"] for seg in r["segments"] if not seg["policy"]) for r in episodes)
    assert all(seg["policy"] for r in episodes for seg in r["segments"][:1])


def test_lora_with_gradient_checkpointing_trains_and_syncs_merged_weights(tiny_model, tmp_path):
    """LoRA through peft (adapters only are trained; the KL reference is the base with adapters off),
    and the weights sent to a rollout engine are the merged model under the base model's names."""
    pytest.importorskip("peft")
    from transformers import AutoModelForCausalLM

    from rewardkit.rl.model import load_policy, weights_for_sync

    lora = {"r": 4, "lora_alpha": 8, "target_modules": ["q_proj", "v_proj"]}
    cfg = config(
        tiny_model, tmp_path, steps=2, lr=1e-2, lora=lora, gradient_checkpointing=True, algo={"kl_coef": 0.05}
    )
    result = train(cfg, env=env(), tasks=tasks())
    assert result.steps == 2
    assert all(r["kl"] >= 0.0 for r in rows(tmp_path))

    policy, _ = load_policy(tiny_model, None, "fp32", False, lora)
    with torch.no_grad():
        for name, p in policy.named_parameters():
            if "lora_B" in name:
                p.fill_(0.1)  # a non-zero adapter, so merging changes the weights
    base_names = set(AutoModelForCausalLM.from_pretrained(tiny_model).state_dict())
    synced = dict(weights_for_sync(policy))
    assert set(synced) == base_names
    q = next(n for n in synced if n.endswith("self_attn.q_proj.weight"))
    base_q = AutoModelForCausalLM.from_pretrained(tiny_model).state_dict()[q]
    assert not torch.allclose(synced[q], base_q), "LoRA was not merged into the synced weights"
    # after the sync the adapters are unmerged again: training continues on them
    assert any("lora_A" in n for n, _ in policy.named_parameters())


MISMATCH_KEYS = ("mismatch_log_ratio_abs_mean", "mismatch_log_ratio_abs_max", "mismatch_kl", "is_clip_frac")


def test_the_generator_says_whether_the_sampler_is_the_trained_module(tiny_model, tmp_path, monkeypatch):
    """The trainer reads ``samples_trained_module`` (not the back end's name): a sampler that is not the
    trained module gets recomputed old log-probs and logged mismatch metrics, here ~0 as it is the same."""
    from rewardkit.generation.hf import HFGenerator

    train(config(tiny_model, tmp_path / "own", steps=2), env=env(), tasks=tasks())
    monkeypatch.setattr(HFGenerator, "samples_trained_module", property(lambda self: False))
    train(config(tiny_model, tmp_path / "other", steps=2), env=env(), tasks=tasks())
    own, other = rows(tmp_path / "own"), rows(tmp_path / "other")
    assert not any(key in row for row in own for key in MISMATCH_KEYS)
    for row in other:
        for key in MISMATCH_KEYS:
            assert key in row, key
        assert row["mismatch_log_ratio_abs_max"] < 1e-3  # the same module: only kernel-level noise
    assert other[0]["reward_mean"] == own[0]["reward_mean"]  # the same first rollouts


def test_one_update_per_batch_takes_the_old_log_probs_from_its_own_forward_passes(
    tiny_model, tmp_path, monkeypatch
):
    """With one optimizer step per batch, a sampler that is not the policy's own (top-k here) gets its
    importance weights from the micro-batches' own detached log-probs, not a no-grad pass before the
    update: the same weights, metrics and update as with the extra pass (16 samples, micro-batches of 8)."""
    from rewardkit.rl import trainer as trainer_mod

    kw = dict(steps=3, top_k=5, micro_batch_size=8)
    train(config(tiny_model, tmp_path / "own_passes", **kw), env=env(), tasks=tasks())
    monkeypatch.setattr(trainer_mod, "_defers_old_logprobs", lambda learner: False)
    train(config(tiny_model, tmp_path / "no_grad_pass", **kw), env=env(), tasks=tasks())
    deferred, extra = rows(tmp_path / "own_passes"), rows(tmp_path / "no_grad_pass")
    for a, b in zip(deferred, extra):
        assert a["mismatch_kl"] > 1e-3 and a["is_weight_mean"] != 1.0  # top-k: a real mismatch to weigh
        for key in (
            "loss",
            "pg_loss",
            "grad_norm",
            "is_weight_mean",
            "is_clip_frac",
            "mismatch_kl",
            "reward_mean",
        ):
            assert a[key] == pytest.approx(b[key], rel=1e-5, abs=1e-7), (a["step"], key)


def test_model_tiny_is_built_for_the_tasks_and_reused(tmp_path):
    from rewardkit.models.tiny import tiny_model_for

    cfg = TrainConfig(
        model="tiny",
        env="sevens",
        prompts_per_step=2,
        group_size=2,
        max_new_tokens=4,
        steps=1,
        output_dir=str(tmp_path),
        save_every=0,
        sample_every=0,
        progress=False,
    )
    assert train(cfg, env=env(), tasks=tasks()).steps == 1
    weights = tmp_path / "tiny_model" / "model.safetensors"
    built = weights.stat().st_mtime_ns
    assert tiny_model_for(tasks(), tmp_path / "tiny_model", seed=1) == str(tmp_path / "tiny_model")
    assert weights.stat().st_mtime_ns == built  # already there: not rebuilt
