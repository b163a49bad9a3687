"""Atomic checkpoints: everything needed to continue a run exactly where it stopped.

A checkpoint is a directory ``checkpoints/step_NNNNNN`` with the model in Hugging Face format (for
evaluation and sharing) and ``trainer_state.pt`` (policy and critic weights, optimizer, scheduler,
RNG states, data position, step). It is written to a temporary directory and renamed into place, so
a crash mid-save never leaves a half-written checkpoint; ``checkpoints/latest`` names the newest.
"""

from __future__ import annotations

import json
import os
import random
import shutil
from pathlib import Path
from typing import Any

import torch

from rewardkit.models.loading import (
    CHECKPOINTS,
    LATEST,
    STATE_FILE,
    checkpoint_dir,
    checkpoint_step,
    save_model,
)


def save(
    out: Path,
    step: int,
    policy: Any,
    tokenizer: Any,
    critic: Any,
    optimizer: Any,
    scheduler: Any,
    sampler: Any,
    cfg: Any,
    keep: int,
) -> Path:
    root = Path(out) / CHECKPOINTS
    root.mkdir(parents=True, exist_ok=True)
    final = checkpoint_dir(out, step)
    tmp = root / f".tmp_step_{step:06d}_{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    save_model(policy, tokenizer, tmp)  # model/ (LoRA merged in) and, for LoRA, adapter/
    state = {
        "step": step,
        "policy": policy.state_dict(),
        "critic": critic.state_dict() if critic is not None else None,
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "sampler": sampler.state_dict(),
        "rng": {
            "python": random.getstate(),
            "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
        },
    }
    torch.save(state, tmp / STATE_FILE)
    (tmp / "config.json").write_text(json.dumps(cfg.to_dict(), indent=2, default=str))
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)
    _write_atomic(root / LATEST, final.name)
    prune(root, keep)
    return final


def load(path: Path, policy: Any, critic: Any, optimizer: Any, scheduler: Any, sampler: Any) -> int:
    """Restore a run's state in place; returns the step the checkpoint was taken after."""
    state = torch.load(Path(path) / STATE_FILE, map_location="cpu", weights_only=False)
    policy.load_state_dict(state["policy"])
    if critic is not None and state["critic"] is not None:
        critic.load_state_dict(state["critic"])
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    sampler.load_state_dict(state["sampler"])
    random.setstate(state["rng"]["python"])
    torch.set_rng_state(state["rng"]["torch"])
    if state["rng"]["cuda"] is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["rng"]["cuda"])
    return int(state["step"])


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def prune(root: Path, keep: int) -> None:
    """Delete all but the newest ``keep`` checkpoints under ``root`` (0: keep all).

    Newest by step number (``step_1000000`` is newer than ``step_999999``), and the checkpoint
    ``latest`` names is always one of those kept, so the pointer never names a deleted folder."""
    if keep <= 0:
        return
    pointer = root / LATEST
    latest = pointer.read_text().strip() if pointer.exists() else None
    steps = sorted((p for p in root.glob("step_*") if checkpoint_step(p) is not None), key=checkpoint_step)
    others = [p for p in steps if p.name != latest]
    room = keep - (len(others) < len(steps))  # the latest takes one of the ``keep`` places
    for old in others[: max(len(others) - room, 0)]:
        shutil.rmtree(old, ignore_errors=True)
