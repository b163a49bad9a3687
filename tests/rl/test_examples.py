"""Smoke-run every example config through the CLI, as a user would (one step each, tiny model)."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")

EXAMPLES = sorted((Path(__file__).parents[2] / "examples").glob("*.yaml"))


def test_there_is_one_example_per_algorithm():
    from rewardkit.rl.algorithms import ALGORITHM_PRESETS

    assert {p.stem for p in EXAMPLES} >= set(ALGORITHM_PRESETS)


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.stem)
def test_example_runs(example, tmp_path):
    first = example.read_text().splitlines()[0]
    assert first == f"# rewardkit train examples/{example.name}", (
        "an example starts with the command that runs it"
    )
    cmd = [
        sys.executable,
        "-m",
        "rewardkit",
        "train",
        str(example),
        "--set",
        f"output_dir={tmp_path}",
        "--set",
        "steps=1",
        "--set",
        "progress=false",
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert len(rows) == 1 and rows[0]["step"] == 1
    assert "finished at step 1" in proc.stdout
    # the last step always writes its rollouts, so a short run shows what the model wrote
    rollouts = [
        json.loads(line) for line in (tmp_path / "rollouts" / "step_000001.jsonl").read_text().splitlines()
    ]
    assert rollouts and {"prompt", "completion", "reward", "trained"} <= set(rollouts[0])
    # quiet by default: no third-party progress bars at the checkpoint saves
    assert "Writing model shards" not in proc.stderr and "Loading weights" not in proc.stderr, proc.stderr[
        -3000:
    ]


# ---- the config behind the examples ---------------------------------------------------------------------
@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.stem)
def test_example_config_parses_and_round_trips(example):
    from rewardkit.rl.config import TrainConfig

    cfg = TrainConfig.from_yaml(example)
    assert cfg.algorithm == example.stem
    assert TrainConfig.from_dict(cfg.to_dict()) == cfg


def test_help_config_lists_every_key_with_its_docstring(capsys):
    from rewardkit.cli import main
    from rewardkit.config import field_docs
    from rewardkit.rl.algorithms import AlgorithmConfig
    from rewardkit.rl.config import TrainConfig

    assert main(["train", "--help-config"]) == 0
    text = capsys.readouterr().out
    for cls, prefix in ((TrainConfig, ""), (AlgorithmConfig, "algo.")):
        docs = field_docs(cls)
        for f in dataclasses.fields(cls):
            assert f"\n{prefix}{f.name}: " in text, f.name
            assert docs[f.name].splitlines()[0] in text, f.name
    assert "rollout_backend: 'hf' | 'vllm' | 'auto' = 'hf'" in text


def test_set_overrides_are_checked_with_the_key_and_the_allowed_values(capsys):
    from rewardkit.cli import main

    grpo = str(EXAMPLES[0].parent / "grpo.yaml")
    for pair, message in [
        ("lrr=1", "train config: unknown key 'lrr' (did you mean 'lr'?); allowed keys: model,"),
        ("dtype=fp16", "train config: dtype: got 'fp16', expected one of 'auto', 'bf16', 'fp32'"),
        ("steps=many", "train config: steps: got 'many', expected an int"),
        (
            "algorithm=grp",
            "algorithm: got 'grp', expected one of cispo, dapo, dr_grpo, grpo, gspo, ppo, reinforce_pp, rloo, sapo",
        ),
        ("algo.kl_cof=0.1", "unknown key 'algo.kl_cof' (did you mean 'algo.kl_coef'?)"),
    ]:
        assert main(["train", grpo, "--set", pair]) == 2, pair
        assert message in capsys.readouterr().err, pair


def test_overrides_merge_and_algorithm_may_be_a_mapping(tmp_path):
    from rewardkit.config import ConfigError, parse_overrides
    from rewardkit.rl.config import TrainConfig

    cfg = TrainConfig.from_yaml(
        EXAMPLES[0].parent / "dapo.yaml",
        parse_overrides(["lr=1e-5", "algo.kl_coef=0.1", "adam_betas=[0.9,0.95]"]),
    )
    assert cfg.lr == 1e-5 and cfg.algo["kl_coef"] == 0.1 and cfg.adam_betas == (0.9, 0.95)
    assert cfg.algorithm_config.kl_coef == 0.1 and cfg.algorithm_config.dynamic_sampling  # still dapo

    path = tmp_path / "c.yaml"
    path.write_text("model: tiny\nalgorithm: {name: dapo, clip_eps_high: 0.3}\n")
    cfg = TrainConfig.from_yaml(path, parse_overrides(["algorithm.kl_coef=0.01"]))
    assert (cfg.algorithm, cfg.algo) == ("dapo", {"clip_eps_high": 0.3, "kl_coef": 0.01})
    cfg = TrainConfig.from_yaml(path, parse_overrides(["algorithm.name=grpo"]))
    assert (cfg.algorithm, cfg.algo) == ("grpo", {"clip_eps_high": 0.3})
    with pytest.raises(ConfigError, match="given both under algorithm and under algo"):
        TrainConfig.from_dict({"model": "tiny", "algorithm": {"kl_coef": 0.1}, "algo": {"kl_coef": 0.2}})
