"""On-policy distillation (``teacher``): the student samples, a frozen teacher scores the sampled tokens, and
the per-token advantage is -(log pi_old - log pi_teacher), a negated reverse-KL estimate. Pinned here: the
advantage against plain Hugging Face forward passes, a zero KL to a teacher that is the student, a KL that
training reduces, and the checks on the teacher's tokenizer and the config keys."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from rewardkit.config import ConfigError  # noqa: E402
from rewardkit.registry import FunctionEnv  # noqa: E402
from rewardkit.rl.config import TrainConfig  # noqa: E402
from rewardkit.rl.run_dir import RESUME_SAFE_KEYS, RunDirMode, config_changes  # noqa: E402
from rewardkit.rl.trainer import _start, compute_advantages, rollout_batch, train  # noqa: E402
from rewardkit.types import Task  # noqa: E402

BASE = {"hidden_size": 64, "intermediate_size": 128, "num_layers": 2, "num_heads": 2}  # conftest's "base"


@pytest.fixture(scope="module")
def student(say_model):
    return say_model("base")


@pytest.fixture(scope="module")
def teacher(tmp_path_factory):
    """Another tiny Llama with the student's tokenizer (the same corpus as conftest's ``say_model``), of
    its own random init (seed 1), fine-tuned for a moment on "Say i: 7 7 7 ...": it answers every prompt
    with sevens, far from the random student (a reverse KL of ~6 nats per token), and a mode that the
    student's dense per-token signal can reach in a few steps."""
    from rewardkit.models.tiny import TinyConfig, build_tiny

    path = tmp_path_factory.mktemp("teacher")
    corpus = [f"Say {i}: {i * 37 % 1000} {i} 7 77 abc" for i in range(300)]
    model, tokenizer = build_tiny(corpus, TinyConfig(vocab_size=300, seed=1, **BASE))
    batch = tokenizer(
        [f"Say {i}: " + " ".join("7" * 10) for i in range(32)], return_tensors="pt", padding=True
    )
    labels = batch.input_ids.masked_fill(batch.attention_mask == 0, -100)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    for _ in range(40):
        loss = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask, labels=labels).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert loss.item() < 1.5  # what is left: the digits of "Say i:"
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return str(path)


def tasks(n=16):
    return [Task(prompt=f"Say {i}:", id=str(i)) for i in range(n)]


def by_length(completion, *, answer=None, prompt=None, info=None):
    """Varied rewards, so that the environment's advantage is not zero where it is mixed in."""
    return 0.25 + (len(completion) % 5) / 4


def env():
    return FunctionEnv(by_length, "toy", executor="inline")


def config(model, out, **kw):
    base = dict(
        model=model,
        env="toy",
        prompts_per_step=3,
        group_size=3,
        max_new_tokens=6,
        steps=1,
        lr=1e-3,
        micro_batch_size=4,  # several micro-batches, each padded to its own width
        output_dir=str(out),
        seed=0,
        save_every=0,
        sample_every=0,
        progress=False,
        algo={"kl_coef": 0.0},
    )
    base.update(kw)
    return TrainConfig(**base)


def rows(out: Path):
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def plain_logprobs(model_dir: str, prompt: list[int], completion: list[int]) -> torch.Tensor:
    """log p(completion_t | prompt, completion_<t) [T] from one unpadded forward pass of a freshly
    loaded model: nothing of rewardkit's packing, positions or chunked log-softmax."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    ids = torch.tensor([prompt + completion])
    with torch.no_grad():
        logits = model(input_ids=ids).logits[0].double()  # [P + T, V]
    logp = torch.log_softmax(logits, dim=-1)
    P = len(prompt)
    return torch.stack([logp[P - 1 + t, tok] for t, tok in enumerate(completion)])


# ---------------------------------------------------------------------------------------------------------------
# 1. The advantage against a slow reference


def test_the_advantage_is_the_teacher_minus_the_student_log_prob_per_token(student, teacher, tmp_path):
    cfg = config(student, tmp_path, teacher=teacher, reward_coef=0.0)
    run = _start(cfg, env(), tasks(), RunDirMode())
    batch = rollout_batch(run, 1)
    inputs = compute_advantages(run.learner, batch)
    mask = inputs.data.policy_mask
    expected = torch.zeros(mask.shape, dtype=torch.float64)
    kl_sum, teacher_sum = 0.0, 0.0
    for i, sample in enumerate(batch.samples):
        prompt, completion = list(sample.trajectory.prompt_ids), list(sample.trajectory.completion_ids)
        s = plain_logprobs(student, prompt, completion)
        t = plain_logprobs(teacher, prompt, completion)
        expected[i, : len(completion)] = t - s
        kl_sum += float((s - t).sum())
        teacher_sum += float(t.sum())
    assert bool(mask.any()) and float(expected.abs().max()) > 0.1  # a teacher far from the student
    # to 1e-6, absolute and relative: the trainer's log-probs are float32, whose rounding at the ~12 nats of
    # a token the teacher rules out is ~1.4e-6 (the reference is float64 from the same float32 logits)
    torch.testing.assert_close(inputs.advantages.double(), expected, rtol=1e-6, atol=1e-6)
    n = int(mask.sum())
    assert inputs.distill_stats["distill/reverse_kl"] == pytest.approx(kl_sum / n, rel=1e-6, abs=1e-6)
    assert inputs.distill_stats["distill/teacher_logp"] == pytest.approx(teacher_sum / n, rel=1e-6, abs=1e-6)

    # mixed with the environment's advantage: reward_coef * A_env + distill_coef * A_distill
    no_teacher = dataclasses.replace(run.learner, teacher=None)
    env_adv = compute_advantages(no_teacher, batch).advantages
    assert float(env_adv.abs().max()) > 0  # varied rewards: the environment's part is not zero
    mixed_cfg = dataclasses.replace(cfg, reward_coef=0.5, distill_coef=2.0)
    mixed = compute_advantages(dataclasses.replace(run.learner, cfg=mixed_cfg), batch).advantages
    torch.testing.assert_close(mixed.double(), 0.5 * env_adv.double() + 2.0 * expected, rtol=1e-6, atol=2e-6)


# ---------------------------------------------------------------------------------------------------------------
# 2. A teacher that is the student


def test_a_teacher_equal_to_the_initial_student_has_zero_reverse_kl(student, tmp_path):
    cfg = config(student, tmp_path, teacher=student, steps=2)
    result = train(cfg, env=env(), tasks=tasks())
    first = rows(tmp_path)[0]
    assert not result.interrupted
    assert abs(first["distill/reverse_kl"]) < 1e-6
    assert first["distill/teacher_logp"] < -1.0  # a random model: ~log(1/300) per token
    assert "distill/reverse_kl" in rows(tmp_path)[1]


def test_a_teacher_works_under_lora(student, tmp_path):
    lora = {"r": 4, "lora_alpha": 8, "target_modules": ["q_proj", "v_proj"]}
    cfg = config(student, tmp_path, teacher=student, steps=2, lora=lora, lr=1e-2)
    result = train(cfg, env=env(), tasks=tasks())
    history = rows(tmp_path)
    assert not result.interrupted and len(history) == 2
    assert abs(history[0]["distill/reverse_kl"]) < 1e-6  # LoRA's B = 0: the student starts as the teacher


# ---------------------------------------------------------------------------------------------------------------
# 3. Training reduces the reverse KL


def test_pure_distillation_reduces_the_reverse_kl(student, teacher, tmp_path):
    cfg = config(
        student,
        tmp_path,
        teacher=teacher,
        reward_coef=0.0,  # the environment's reward is only logged
        prompts_per_step=4,
        group_size=4,
        max_new_tokens=8,
        steps=10,
        lr=3e-2,
        micro_batch_size=16,
        algo={"kl_coef": 0.0, "loss_agg": "token_mean"},
    )
    train(cfg, env=env(), tasks=tasks())
    kl = [r["distill/reverse_kl"] for r in rows(tmp_path)]
    first, last = sum(kl[:2]) / 2, sum(kl[-2:]) / 2
    assert first > 3.0, kl  # the teacher of sevens is far from the random student
    assert last < 0.5 * first, kl  # ~6 -> ~1 nats per token (seeds 0-4: at most 1.9)


# ---------------------------------------------------------------------------------------------------------------
# 4. The teacher's tokenizer, and the config keys


def test_a_teacher_with_another_tokenizer_is_refused_naming_the_key(student, say_model, tmp_path):
    other = say_model("small", vocab=200)
    cfg = config(student, tmp_path, teacher=other)
    with pytest.raises(ConfigError, match="teacher") as info:
        train(cfg, env=env(), tasks=tasks())
    assert info.value.key == "teacher"
    assert "tokenizer" in str(info.value)


def test_a_missing_teacher_path_fails_before_anything_loads(student, tmp_path):
    cfg = config(student, tmp_path / "run", teacher=str(tmp_path / "no_such_teacher"))
    with pytest.raises(FileNotFoundError, match="no_such_teacher"):
        train(cfg, env=env(), tasks=tasks())
    assert not (tmp_path / "run" / "metrics.jsonl").exists()


def error_of(**kw) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        TrainConfig(model="m", **kw)
    return info.value


def test_the_distillation_keys_are_checked():
    assert error_of(teacher="t", distill_coef=-1.0).key == "distill_coef"
    assert error_of(teacher="t", reward_coef=-0.5).key == "reward_coef"
    # without a teacher, the weights would silently do nothing (or train nothing)
    assert "teacher" in str(error_of(distill_coef=0.5))
    assert "teacher" in str(error_of(reward_coef=0.0))
    assert error_of(teacher="tiny").key == "teacher"  # a random model is no teacher
    # dynamic sampling filters on the reward, which reward_coef 0 ignores
    message = str(error_of(teacher="t", reward_coef=0.0, algorithm="dapo"))
    assert "dynamic_sampling" in message
    # pure distillation needs no group: group_size 1 is fine there, not with the reward's grpo advantage
    assert TrainConfig(model="m", teacher="t", reward_coef=0.0, group_size=1).group_size == 1
    assert error_of(teacher="t", group_size=1).key == "group_size"


def test_a_resumed_distillation_run_matches_the_uninterrupted_one(student, teacher, tmp_path):
    """The teacher is fixed and not checkpointed: a run stopped after step 2 and resumed is the same run."""
    full = config(student, tmp_path / "full", teacher=teacher, steps=4, save_every=2, reward_coef=0.5)
    train(full, env=env(), tasks=tasks())
    half = dataclasses.replace(full, output_dir=str(tmp_path / "half"), steps=2)
    train(half, env=env(), tasks=tasks())
    train(dataclasses.replace(half, steps=4), env=env(), tasks=tasks(), resume=True)
    a, b = rows(tmp_path / "full"), rows(tmp_path / "half")
    assert [r["step"] for r in b] == [1, 2, 3, 4]
    for ra, rb in zip(a, b):
        for key in ("loss", "grad_norm", "distill/reverse_kl", "distill/teacher_logp"):
            assert ra[key] == pytest.approx(rb[key], rel=1e-5, abs=1e-7), (key, ra["step"])


def test_a_changed_teacher_blocks_a_resume():
    assert "teacher" not in RESUME_SAFE_KEYS
    old = TrainConfig(model="m", teacher="a").to_dict()
    assert config_changes(old, TrainConfig(model="m", teacher="b"))["teacher"] == ("a", "b")
    assert "teacher" in config_changes(TrainConfig(model="m").to_dict(), TrainConfig(model="m", teacher="a"))
