"""``benchmarks/gpu/bench.py --dry-run``: the GPU benchmark's whole code path at toy size on this CPU,
so the script is known to work before a GPU machine is lent (no figures are judged here)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

pytest.importorskip("transformers")
REPO = Path(__file__).resolve().parents[1]


def test_the_gpu_benchmark_runs_every_measurement_at_toy_size(tmp_path):
    out = tmp_path / "section.md"
    env = {**os.environ, "OUT": str(tmp_path), "OMP_NUM_THREADS": "1"}
    env = {k: v for k, v in env.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR")}
    proc = subprocess.run(
        ["bash", str(REPO / "benchmarks" / "gpu" / "run.sh"), "--dry-run"],
        env=env,
        capture_output=True,
        text=True,
        timeout=1200,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    text = out.read_text()
    assert text.startswith("## One GPU: rollouts, GRPO step, FSDP2") and "**dry run**" in text
    assert "failed:" not in text, text
    for row in (
        "rollout, hf back end",
        "GRPO step, rewardkit (bf16",
        "GRPO step, TRL",
        "strategy fsdp on 1 GPU",
        "rollout_mode async",
    ):
        line = next(line for line in text.splitlines() if row in line)
        assert "tokens/s" in line or "s/step" in line, line  # a figure, not "not run"
    assert "x TRL's" in text  # both trainers ran: the ratio is there
