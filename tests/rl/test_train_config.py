"""The train config is checked whole when it is read, before anything loads: key-first messages, ranges,
group sizes that carry a signal, the nested ``algo``/``vllm``/``lora`` mappings, ``--set`` merging, and a
``--help-config`` that lists every key with its whole docstring."""

from __future__ import annotations

import dataclasses
import time

import pytest

pytest.importorskip("torch")

import torch  # noqa: E402

from rewardkit.config import ConfigError, field_docs, load_yaml, parse_overrides  # noqa: E402
from rewardkit.rl.algorithms import ADVANTAGES, ALGORITHM_PRESETS, AlgorithmConfig, preset  # noqa: E402
from rewardkit.rl.config import LORA_FIELDS, TrainConfig, describe  # noqa: E402


def config(**values):
    return TrainConfig.from_dict({"model": "tiny", **values})


def error_of(**values) -> str:
    with pytest.raises(ConfigError) as info:
        config(**values)
    return str(info.value)


# ---- messages: KEY: got X, expected Y ---------------------------------------------------------------------
@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"lr": "fast"}, "train config: lr: got 'fast', expected a float"),
        ({"steps": "many"}, "train config: steps: got 'many', expected an int"),
        (
            {"rollout_backend": "vlm"},
            "train config: rollout_backend: got 'vlm', expected one of 'hf', 'vllm', 'auto' (did you mean 'vllm'?)",
        ),
        (
            {"algorithm": "grp"},
            "train config: algorithm: got 'grp', expected one of cispo, dapo, dr_grpo, grpo, gspo, ppo, reinforce_pp,"
            " rloo, sapo (did you mean 'grpo'?)",
        ),
        (
            {"model": ""},
            "train config: model: got '', expected a Hugging Face model id, a local directory, or tiny",
        ),
        (
            {"report_to": ["wandbb"]},
            "train config: report_to[0]: got 'wandbb', expected one of 'tensorboard', ",
        ),
    ],
)
def test_a_bad_value_is_named_key_first_with_what_is_expected(values, message):
    assert error_of(**values).startswith(message)


# ---- ranges -----------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        ("lr", 0.0, "> 0"),
        ("lr", -1e-5, "> 0"),
        ("max_grad_norm", 0.0, "> 0"),
        ("is_cap", 0.5, ">= 1"),
        ("keep_checkpoints", -1, ">= 0"),
        ("save_every", -1, ">= 0"),
        ("sample_every", -1, ">= 0"),
        ("warmup_steps", -1, ">= 0"),
        ("rollout_batch_size", 0, ">= 1"),
        ("top_k", -1, ">= 0"),
        ("weight_decay", -0.1, ">= 0"),
        ("value_lr", 0.0, "> 0"),
        ("max_tasks", 0, ">= 1"),
        ("group_size", 0, ">= 1"),
        ("top_p", 1.5, "a value in (0, 1]"),
        ("temperature", -1.0, ">= 0"),
    ],
)
def test_out_of_range_values_are_refused_when_the_config_is_read(key, value, expected):
    assert error_of(**{key: value}) == f"train config: {key}: got {value!r}, expected {expected}"


def test_adam_betas_are_each_in_0_1():
    assert (
        error_of(adam_betas=[0.9, 1.0]) == "train config: adam_betas[1]: got 1.0, expected a value in [0, 1)"
    )
    assert config(adam_betas=[0.0, 0.95]).adam_betas == (0.0, 0.95)


def test_algo_overrides_are_named_as_the_user_wrote_them():
    assert error_of(algo={"clip_eps_low": -0.1}) == (
        "train config: algo.clip_eps_low: got -0.1, expected a value in [0, 1]"
    )
    assert error_of(algo={"kl_coef": "lots"}) == "train config: algo.kl_coef: got 'lots', expected a float"
    message = error_of(algo={"kl_cof": 0.1})
    assert message.startswith("train config: unknown key 'algo.kl_cof' (did you mean 'algo.kl_coef'?)")
    assert "allowed keys of algo: advantage, loss_agg," in message
    assert error_of(algo={"advantage": "grpoo"}).startswith(
        "train config: algo.advantage: got 'grpoo', expected one of dr_grpo, gae, grpo, grpo_batch_std, pass_at_k,"
        " reinforce_pp, rloo (did you mean 'grpo'?)"
    )


# ---- group_size = 1 ---------------------------------------------------------------------------------------
def _single_sample_groups_get_zero_advantage(cfg: AlgorithmConfig) -> bool:
    """Run the estimator on groups of one with varied rewards: is every advantage exactly 0?"""
    torch.manual_seed(0)
    B, T = 6, 4
    token_rewards = torch.zeros(B, T)
    token_rewards[:, -1] = torch.tensor([0.0, 1.0, 0.5, 1.0, 0.0, 0.25])
    mask = torch.ones(B, T, dtype=torch.bool)
    values = torch.randn(B, T) if cfg.needs_values else None
    adv, _ = ADVANTAGES[cfg.advantage](token_rewards, mask, torch.arange(B), values, cfg)
    return bool((adv == 0).all())


@pytest.mark.parametrize(
    ("algorithm", "algo"),
    [(name, {}) for name in ALGORITHM_PRESETS]
    + [("reinforce_pp", {"group_baseline": True})]
    + [("grpo", {"advantage": "grpo_batch_std"}), ("grpo", {"advantage": "pass_at_k", "pass_k": 3})],
)
def test_group_relative_says_what_the_estimator_does_with_a_group_of_one(algorithm, algo):
    cfg = preset(algorithm, **algo)
    assert cfg.group_relative == _single_sample_groups_get_zero_advantage(cfg)


@pytest.mark.parametrize(
    ("algorithm", "algo"),
    [("grpo", {}), ("dr_grpo", {}), ("dapo", {}), ("rloo", {}), ("reinforce_pp", {"group_baseline": True})],
)
def test_group_size_one_is_refused_where_it_trains_nothing(algorithm, algo):
    message = error_of(algorithm=algorithm, algo=algo, group_size=1)
    assert message.startswith(f"train config: group_size: got 1, expected >= 2 for algorithm {algorithm!r}: ")
    assert "trains nothing" in message


def test_group_size_one_is_accepted_with_a_learned_or_batch_baseline():
    assert config(algorithm="ppo", group_size=1).group_size == 1
    assert config(algorithm="reinforce_pp", group_size=1).group_size == 1
    message = error_of(algorithm="ppo", algo={"dynamic_sampling": True}, group_size=1)
    assert "dynamic sampling drops every group" in message


# ---- vllm: and lora: ----------------------------------------------------------------------------------------
def test_vllm_options_are_checked_against_the_back_end_config():
    from rewardkit.generation.vllm import VLLMGeneratorConfig

    assert config(vllm={"gpu_memory_utilization": 0.5, "enforce_eager": True}).vllm["enforce_eager"] is True
    message = error_of(vllm={"gpu_memory_utilisation": 0.5})
    assert message.startswith(
        "train config: unknown key 'vllm.gpu_memory_utilisation' (did you mean 'vllm.gpu_memory_utilization'?)"
    )
    assert (
        f"allowed keys of vllm: {', '.join(f.name for f in dataclasses.fields(VLLMGeneratorConfig))}"
        in message
    )
    assert error_of(vllm={"max_model_len": "long"}) == (
        "train config: vllm.max_model_len: got 'long', expected an int or None"
    )
    assert "gpu_memory_utilization" in error_of(vllm={"gpu_memory_utilization": 2.0})
    # the hf back end's option; in the train config it is rollout_batch_size
    assert "'vllm.max_batch_size'" in error_of(vllm={"max_batch_size": 8})


def test_lora_options_are_checked_against_peft():
    pytest.importorskip("peft")
    cfg = config(lora={"r": 16, "lora_alpha": 32, "target_modules": ["q_proj", "v_proj"]})
    assert cfg.lora["r"] == 16
    assert error_of(lora={"rank": 16}).startswith("train config: unknown key 'lora.rank'")
    assert error_of(lora={"lora_alfa": 16}).startswith(
        "train config: unknown key 'lora.lora_alfa' (did you mean 'lora.lora_alpha'?)"
    )
    assert error_of(lora={"r": "big"}) == "train config: lora.r: got 'big', expected an int"
    assert error_of(lora={"r": 0}) == "train config: lora.r: got 0, expected >= 1"
    assert (
        error_of(lora={"lora_dropout": 1.5})
        == "train config: lora.lora_dropout: got 1.5, expected a value in [0, 1)"
    )
    assert error_of(lora={"bias": "nnone"}).startswith(
        "train config: lora.bias: got 'nnone', expected one of 'none'"
    )
    assert "rewardkit sets CAUSAL_LM" in error_of(lora={"task_type": "SEQ_CLS"})
    assert "an empty mapping would train all weights" in error_of(lora={})
    assert config(lora=None).lora is None


def test_fsdp_options_are_checked_and_lora_is_refused_with_sharding():
    cfg = config(strategy="fsdp", fsdp={"param_dtype": "bf16", "cpu_offload": True})
    assert cfg.fsdp.param_dtype == "bf16" and cfg.fsdp.cpu_offload and cfg.fsdp.reduce_dtype == "fp32"
    assert config().strategy == "ddp" and config().fsdp.param_dtype is None
    assert error_of(strategy="zero3").startswith("train config: strategy: got 'zero3', expected one of 'ddp'")
    assert error_of(fsdp={"offload": True}).startswith("train config: unknown key 'fsdp.offload'")
    assert error_of(fsdp={"param_dtype": "bfloat16"}).startswith(
        "train config: fsdp.param_dtype: got 'bfloat16', expected one of 'bf16'"
    )
    message = error_of(strategy="fsdp", lora={"r": 8})
    assert message.startswith("train config: strategy: got 'fsdp', expected ddp under LoRA")


# ---- --set merging ----------------------------------------------------------------------------------------
def test_set_an_empty_mapping_replaces_and_a_nested_key_merges(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("model: tiny\nenv_config: {levels: [2], seed: 3}\nalgo: {kl_coef: 0.1}\n")
    assert TrainConfig.from_yaml(path, parse_overrides(["env_config={}"])).env_config == {}
    assert TrainConfig.from_yaml(path, parse_overrides(["algo={}"])).algo == {}
    merged = TrainConfig.from_yaml(path, parse_overrides(["env_config.levels=[1]"]))
    assert merged.env_config == {"levels": [1], "seed": 3}
    assert TrainConfig.from_yaml(path, {"env_config": {}}).env_config == {}  # the same from Python


# ---- --help-config ----------------------------------------------------------------------------------------
def _flat(text: str) -> str:
    return " ".join(text.split())


def test_help_config_prints_every_key_and_every_nested_key_with_its_whole_docstring():
    from rewardkit.generation.vllm import VLLMGeneratorConfig

    text = describe()
    flat = _flat(text)
    from rewardkit.rl.sharding import FSDPConfig

    nested = (
        (TrainConfig, ""),
        (AlgorithmConfig, "algo."),
        (VLLMGeneratorConfig, "vllm."),
        (FSDPConfig, "fsdp."),
    )
    for cls, prefix in nested:
        docs = field_docs(cls)
        for f in dataclasses.fields(cls):
            assert f"\n{prefix}{f.name}: " in "\n" + text, prefix + f.name
            assert _flat(docs[f.name]) in flat, prefix + f.name  # the whole docstring, not its first line
    for name, meaning in LORA_FIELDS.items():
        assert f"\nlora.{name}" in text and _flat(meaning) in flat, name
    assert "an empty mapping replaces: --set env_config={}" in _flat(text)
    assert all(len(line) <= 110 or " | " in line for line in text.splitlines())  # long type unions stay whole


def test_the_lora_keys_explained_are_peft_fields():
    peft = pytest.importorskip("peft")
    assert set(LORA_FIELDS) <= {f.name for f in dataclasses.fields(peft.LoraConfig)}
    assert "\nlora.r: int = 8\n" in describe()


# ---- validated before any model loads ------------------------------------------------------------------
@pytest.mark.parametrize(
    ("env_config", "named"),
    [
        ({"levelz": [1]}, "levelz"),
        ({"dataset": "no/such/dir/problems.jsonl"}, "no/such/dir/problems.jsonl"),
    ],
)
def test_train_fails_on_a_bad_env_config_before_it_loads_the_model(tmp_path, env_config, named):
    """The model is a path that does not exist: loading it first would raise an OSError instead."""
    from rewardkit.rl.trainer import train

    cfg = config(model=str(tmp_path / "a-70b-model-that-would-take-an-hour"), env="math", env_config=env_config,
                 output_dir=str(tmp_path / "run"))  # fmt: skip
    started = time.monotonic()
    with pytest.raises(ConfigError, match=named):
        train(cfg)
    assert time.monotonic() - started < 30 and not (tmp_path / "run").exists()


def test_the_train_command_reports_a_bad_config_in_one_line(tmp_path, capsys):
    from rewardkit.cli import main

    path = tmp_path / "c.yaml"
    path.write_text(f"model: {tmp_path / 'missing-model'}\noutput_dir: {tmp_path / 'run'}\n")
    assert main(["train", str(path), "--set", "group_size=1"]) == 2
    assert (
        "error: train config: group_size: got 1, expected >= 2 for algorithm 'grpo'"
        in capsys.readouterr().err
    )
    assert main(["train", str(path), "--set", "env_config.levels=[9]"]) == 2
    assert "levels" in capsys.readouterr().err
    assert load_yaml(path.read_text())["model"].endswith("missing-model")
