"""Adapters for TRL and verl. The TRL test hands the adapter to the real ``trl.GRPOTrainer`` on CPU."""

from __future__ import annotations

import inspect
import math

import pytest

from rewardkit import Score, load_env, reward_env


@reward_env(name="test_interop_recording", register=False)
def _recording_reward(completion, *, answer=None, prompt=None, info=None):
    """Rewards a longer last assistant message; fails on purpose where ``info["fail"]`` is set."""
    RECORDED.append({"completion": completion, "answer": answer, "prompt": prompt, "info": info})
    if info.get("fail"):
        raise RuntimeError("verifier bug on purpose")
    text = completion if isinstance(completion, str) else completion[-1]["content"]
    return Score.ok(min(1.0, len(text) / 40), {"chars": float(len(text))})


RECORDED: list[dict] = []


@pytest.fixture
def recording_env():
    RECORDED.clear()
    with _recording_reward.env(executor="inline") as env:  # inline: RECORDED lives in this process
        yield env


# ---- TRL -----------------------------------------------------------------------------------------


def test_trl_reward_func_direct_call(recording_env):
    func = recording_env.as_trl_reward_func()
    logged: dict[str, float] = {}
    rewards = func(
        prompts=[[{"role": "user", "content": "q1"}], [{"role": "user", "content": "q2"}]],
        completions=[[{"role": "assistant", "content": "a" * 20}], [{"role": "assistant", "content": "b"}]],
        completion_ids=[[1, 2], [3]],
        answer=["4", "5"],
        info=[{}, {"fail": True}],
        trainer_state=None,
        log_metric=lambda name, value: logged.__setitem__(name, value),
    )
    assert rewards == [0.5, 0.0]
    assert func.__name__ == "rewardkit_test_interop_recording"
    assert func.last_statuses == {"ok": 1, "error": 1}
    assert logged == {
        "rewardkit_test_interop_recording/timeout_frac": 0.0,
        "rewardkit_test_interop_recording/error_frac": 0.5,
        "rewardkit_test_interop_recording/invalid_input_frac": 0.0,
    }
    assert [r["answer"] for r in RECORDED] == ["4", "5"]
    assert RECORDED[0]["completion"] == ({"role": "assistant", "content": "a" * 20},)
    assert RECORDED[0]["prompt"] == ({"role": "user", "content": "q1"},)


def test_trl_reward_func_custom_columns_and_bad_rows(recording_env):
    func = recording_env.as_trl_reward_func(answer_column="solution", info_column="meta")
    rewards = func(
        prompts=["p", "p", "p"], completions=["x" * 40, None, b"bytes"], solution=["s"] * 3, meta=None
    )
    assert rewards == [1.0, 0.0, 0.0]
    assert func.last_statuses == {"ok": 1, "invalid_input": 2}
    assert RECORDED[0]["answer"] == "s" and RECORDED[0]["info"] == {}


def test_trl_grpo_trainer_trains_with_the_adapter(recording_env, hf_tokenizer, tmp_path):
    """One tiny random Llama, two GRPO steps on CPU, rewards from rewardkit."""
    torch = pytest.importorskip("torch")
    datasets = pytest.importorskip("datasets", reason="datasets is not installed")
    trl = pytest.importorskip("trl", reason="trl is not installed ([dev] extra)")
    transformers = pytest.importorskip("transformers")

    torch.manual_seed(0)
    config = transformers.LlamaConfig(
        vocab_size=len(hf_tokenizer),
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=2,
        max_position_embeddings=128,
        pad_token_id=hf_tokenizer.pad_token_id,
        eos_token_id=hf_tokenizer.eos_token_id,
    )
    model = transformers.LlamaForCausalLM(config)
    dataset = datasets.Dataset.from_list(
        [
            {
                "prompt": [{"role": "user", "content": "Two plus two?"}],
                "answer": "4",
                "info": {"fail": False},
            },
            {
                "prompt": [{"role": "user", "content": "Guess my number."}],
                "answer": "7",
                "info": {"fail": True},
            },
        ]
    )
    args = trl.GRPOConfig(
        output_dir=str(tmp_path),
        per_device_train_batch_size=4,
        num_generations=2,  # 4 completions per step = both prompts twice
        max_completion_length=6,
        max_steps=2,
        learning_rate=1e-3,
        use_cpu=True,
        bf16=False,
        report_to="none",
        logging_steps=1,
        save_strategy="no",
        seed=0,
        disable_tqdm=True,
    )
    reward_func = recording_env.as_trl_reward_func()
    trainer = trl.GRPOTrainer(
        model=model,
        reward_funcs=[reward_func],
        args=args,
        train_dataset=dataset,
        processing_class=hf_tokenizer,
    )
    trainer.train()

    logs = [entry for entry in trainer.state.log_history if "reward" in entry]
    assert len(logs) == 2 and len(RECORDED) == 8
    name = reward_func.__name__
    for step, entry in enumerate(logs):
        batch = RECORDED[4 * step : 4 * step + 4]
        expected = [
            0.0 if r["info"]["fail"] else min(1.0, len(r["completion"][-1]["content"]) / 40) for r in batch
        ]
        assert entry[f"rewards/{name}/mean"] == pytest.approx(sum(expected) / 4, abs=1e-6)
        assert entry[f"{name}/error_frac"] == pytest.approx(0.5)  # failures are logged, not silent zeros
    assert {r["answer"] for r in RECORDED} == {"4", "7"}  # dataset columns reach the verifier
    assert all(r["completion"][-1]["role"] == "assistant" for r in RECORDED)
    assert all(r["prompt"][0]["role"] == "user" for r in RECORDED)


# ---- verl ----------------------------------------------------------------------------------------


def test_verl_compute_score_signature_and_return():
    with load_env("format", strict=False) as env:
        compute_score = env.as_verl_compute_score()
        params = inspect.signature(compute_score).parameters
        assert list(params)[:4] == ["data_source", "solution_str", "ground_truth", "extra_info"]
        assert params["extra_info"].default is None

        good = compute_score("openai/gsm8k", "<think>a</think><answer>4</answer>", "4")
        assert good["score"] == 1.0
        flags = ("rewardkit_timeout", "rewardkit_error", "rewardkit_invalid_input")
        assert [good[f] for f in flags] == [0.0, 0.0, 0.0]
        assert good["format_ok"] == 1.0 and good["rules_satisfied"] == 1.0
        assert all(isinstance(v, float) and math.isfinite(v) for v in good.values())

        # verl's reward managers call it with keywords.
        partial = compute_score(
            data_source="x", solution_str="<think>a</think>", ground_truth="4", extra_info={"index": 3}
        )
        assert partial["score"] == pytest.approx(2 / 5)

        broken = compute_score("x", None, "4")  # type: ignore[arg-type]
        assert broken["score"] == 0.0 and broken["rewardkit_invalid_input"] == 1.0
        assert (broken["rewardkit_error"], broken["rewardkit_timeout"]) == (0.0, 0.0)


def test_verl_compute_score_accepts_the_keywords_verl_passes():
    """verl's reward managers call ``compute_score(..., **reward_kwargs)``; its default scorer takes
    ``sandbox_fusion_url``, ``concurrent_semaphore`` and ``memory_limit_mb``, and more may come."""
    with load_env("format", strict=False) as env:
        compute_score = env.as_verl_compute_score()
        result = compute_score(
            data_source="openai/gsm8k",
            solution_str="<think>a</think><answer>4</answer>",
            ground_truth="4",
            extra_info=None,
            sandbox_fusion_url="http://localhost:8080/run_code",
            concurrent_semaphore=None,
            memory_limit_mb=1024,
            some_future_option=True,
        )
        assert result["score"] == 1.0


@reward_env(name="test_interop_clashing", register=False)
def _clashing_metrics(completion, *, answer=None, prompt=None, info=None):
    """Metrics named like the adapter's own keys must reach verl unchanged or visibly renamed."""
    return Score.ok(0.25, {"timeout": 7.0, "error": 3.0, "score": 0.5})


def test_verl_compute_score_never_overwrites_a_metric():
    with _clashing_metrics.env(executor="inline") as env:
        result = env.as_verl_compute_score()("src", "text", None)
    assert result["score"] == 0.25  # the reward, not the metric called score
    assert (result["timeout"], result["error"], result["metrics/score"]) == (7.0, 3.0, 0.5)
    assert (result["rewardkit_timeout"], result["rewardkit_error"]) == (0.0, 0.0)


def test_verl_compute_score_flags_failures(recording_env):
    compute_score = recording_env.as_verl_compute_score()
    failed = compute_score("src", "text", "gt", {"fail": True})
    assert (failed["score"], failed["rewardkit_error"]) == (0.0, 1.0)
    ok = compute_score("src", "x" * 20, "gt", {"fail": False})
    assert (ok["score"], ok["chars"], ok["rewardkit_error"]) == (0.5, 20.0, 0.0)
    assert RECORDED[-1]["answer"] == "gt" and RECORDED[-1]["info"] == {"fail": False}
