"""The training-time exploit monitor (issue 19): each environment signature's rate, every step, in
metrics.jsonl, measured on the completions the step really generated."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")

from rewardkit.envs.base import Environment  # noqa: E402
from rewardkit.rl.config import TrainConfig  # noqa: E402
from rewardkit.rl.trainer import train  # noqa: E402
from rewardkit.types import Task  # noqa: E402


class Watched(Environment):
    """Rewards length; watches two signatures, one that the tiny model's output shows and one it cannot."""

    name = "watched"
    exploit_patterns = {"digit": r"\d", "never": r"\x00never\x00"}

    def __init__(self, **options):
        super().__init__(executor="inline", **options)

    def verify(self, completion, *, answer, prompt, info):
        return (len(completion) % 5) / 4


def _rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_each_step_logs_the_fraction_of_its_completions_showing_each_signature(say_model, tmp_path):
    cfg = TrainConfig(
        model=say_model("small", vocab=200),
        env="watched",
        prompts_per_step=2,
        group_size=4,
        max_new_tokens=6,
        steps=2,
        lr=1e-3,
        output_dir=str(tmp_path),
        save_every=0,
        sample_every=1,
        progress=False,
        algo={"kl_coef": 0.0},
    )
    train(cfg, env=Watched(), tasks=[Task(prompt=f"Say {i}:", id=str(i)) for i in range(4)])
    for row in _rows(tmp_path / "metrics.jsonl"):
        samples = _rows(tmp_path / "rollouts" / f"step_{row['step']:06d}.jsonl")
        completions = [s["completion"] for s in samples]
        assert len(completions) == 8
        expected = sum(any(c.isdigit() for c in text) for text in completions) / len(completions)
        assert row["exploit/digit"] == pytest.approx(expected)
        assert row["exploit/never"] == 0.0
