"""Atomic checkpoints: everything needed to continue a run exactly where it stopped.

A checkpoint is a directory ``checkpoints/step_NNNNNN`` with the model in Hugging Face format (for
evaluation and sharing) and ``trainer_state.pt`` (policy and critic weights, optimizer, scheduler,
RNG states, data position, step). It is written to a temporary directory and renamed into place, so
a crash mid-save never leaves a half-written checkpoint; ``checkpoints/latest`` names the newest.

Random state: a run seeds Python's, NumPy's and torch's global generators (``seed_rngs``) and a
checkpoint holds all three (``rng_state``), because code the run calls in-process (an inline verifier,
dropout in a model) may draw from any of them. The trainer's own draws do not touch them: rollouts are
seeded by step, mini-batch orders by step, prompts by epoch.
"""

from __future__ import annotations

import json
import os
import random
import shutil
from pathlib import Path
from typing import Any

import numpy as np
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
    *,
    reference: Any = None,
    kl_control: Any = None,
) -> Path:
    """Write ``step``'s checkpoint atomically. ``reference``: the KL reference's weights, saved when the run
    resets it (``ref_reset_every``); ``kl_control``: the ``rewardkit.rl.kl.KLControl`` (coefficient, last
    reset)."""
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
        "reference": reference.state_dict() if reference is not None else None,
        "kl_control": kl_control.state_dict() if kl_control is not None else None,
        "rng": rng_state(),
    }
    torch.save(state, tmp / STATE_FILE)
    (tmp / "config.json").write_text(json.dumps(cfg.to_dict(), indent=2, default=str))
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)
    _write_atomic(root / LATEST, final.name)
    prune(root, keep)
    return final


def load(
    path: Path,
    policy: Any,
    critic: Any,
    optimizer: Any,
    scheduler: Any,
    sampler: Any,
    *,
    reference: Any = None,
    kl_control: Any = None,
) -> int:
    """Restore a run's state in place; returns the step the checkpoint was taken after. ``reference`` and
    ``kl_control`` are restored when given and saved (checkpoints from before KL control hold neither)."""
    state = torch.load(Path(path) / STATE_FILE, map_location="cpu", weights_only=False)
    policy.load_state_dict(state["policy"])
    if critic is not None and state["critic"] is not None:
        critic.load_state_dict(state["critic"])
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    sampler.load_state_dict(state["sampler"])
    if reference is not None and state.get("reference") is not None:
        reference.load_state_dict(state["reference"])
    if kl_control is not None and state.get("kl_control") is not None:
        kl_control.load_state_dict(state["kl_control"])
    set_rng_state(state["rng"])
    return int(state["step"])


def seed_rngs(seed: int) -> None:
    """Seed the global generators a checkpoint holds: Python's, NumPy's, torch's (every CUDA device's too)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)  # NumPy's legacy seed is 32-bit
    torch.manual_seed(seed)


def rng_state() -> dict[str, Any]:
    """The global generators' states (``set_rng_state`` puts them back)."""
    return {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
    }


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what ``rng_state`` returned."""
    random.setstate(state["python"])
    if "numpy" in state:  # checkpoints written before NumPy's generator was saved lack it
        np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if state["cuda"] is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


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
