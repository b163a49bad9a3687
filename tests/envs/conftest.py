"""Shared by the environment tests: the two-step GRPO run on a random tiny model that every adapter gets."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest


@pytest.fixture
def grpo_smoke(tmp_path):
    """``grpo_smoke(env, env_config)``: train ``model: tiny`` for 2 GRPO steps on ``env`` (2 prompts x 2
    samples, 8 new tokens) and return the metrics rows, checked to be 2 with finite rewards and no
    sample that errored or timed out."""
    pytest.importorskip("torch")
    pytest.importorskip("transformers")

    def run(env: str, env_config: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        from rewardkit.rl.config import TrainConfig
        from rewardkit.rl.trainer import train

        cfg = TrainConfig(
            model="tiny",
            env=env,
            env_config=env_config or {},
            prompts_per_step=2,
            group_size=2,
            max_new_tokens=8,
            steps=2,
            output_dir=str(tmp_path / "grpo"),
            save_every=0,
            sample_every=0,
            progress=False,
            algo={"kl_coef": 0.0},
        )
        train(cfg)
        rows = [json.loads(line) for line in (tmp_path / "grpo" / "metrics.jsonl").read_text().splitlines()]
        assert len(rows) == 2
        for row in rows:
            assert math.isfinite(row["reward_mean"]) and math.isfinite(row["env_reward_mean"])
            assert row["status_error"] == 0.0 and row["status_timeout"] == 0.0
        return rows

    return run
