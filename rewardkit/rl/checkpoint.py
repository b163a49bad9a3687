"""Atomic checkpoints: everything needed to continue a run exactly where it stopped.

A checkpoint is a directory ``checkpoints/step_NNNNNN`` with the model in Hugging Face format (for
evaluation and sharing) and ``trainer_state.pt`` (policy and critic weights, optimizer, scheduler,
RNG states, data position, step). It is written to a temporary directory and renamed into place, so
a crash mid-save never leaves a half-written checkpoint; ``checkpoints/latest`` names the newest.

Sharded models (``strategy: fsdp``): every rank takes part. The Hugging Face model is gathered one
tensor at a time and written by rank 0; the weights of the policy, critic and reference and the
optimizer state go to ``state/`` as torch.distributed.checkpoint (DCP) shards, each rank writing its
own, and ``trainer_state.pt`` holds the rest. DCP reshards on load, so such a checkpoint resumes on any
number of ranks, sharded or not, one process included.

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
import warnings
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
from rewardkit.rl import distributed
from rewardkit.rl.sharding import full_weights, is_sharded


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
    rollouts: dict[str, Any] | None = None,
) -> Path:
    """Write ``step``'s checkpoint atomically. ``reference``: the KL reference's weights, saved when the run
    resets it (``ref_reset_every``); ``kl_control``: the ``rewardkit.rl.kl.KLControl`` (coefficient, last
    reset); ``rollouts``: an async run's sampled, untrained batches (``rewardkit.rl.async_rollouts``)."""
    sharded = is_sharded(policy)  # then every rank is here; else rank 0 only
    main = distributed.world().is_main
    root = Path(out) / CHECKPOINTS
    final = checkpoint_dir(out, step)
    tmp = root / f".tmp_step_{step:06d}_{os.getpid()}"
    if main:
        root.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(tmp, ignore_errors=True)
    state: dict[str, Any] = {
        "step": step,
        "scheduler": scheduler.state_dict(),
        "sampler": sampler.state_dict(),
        "kl_control": kl_control.state_dict() if kl_control is not None else None,
        "rng": rng_state(),
    }
    if sharded:
        tmp = Path(distributed.all_gather_objects(str(tmp))[0])  # rank 0's
        distributed.barrier()
        state["sharded"] = _save_sharded(tmp, policy, tokenizer, critic, optimizer, reference)
    else:
        save_model(policy, tokenizer, tmp)  # model/ (LoRA merged in) and, for LoRA, adapter/
        state.update(
            policy=policy.state_dict(),
            critic=critic.state_dict() if critic is not None else None,
            optimizer=optimizer.state_dict(),
            reference=reference.state_dict() if reference is not None else None,
        )
    if main:
        if rollouts is not None:
            torch.save(rollouts, tmp / ROLLOUTS_FILE)
        _commit(tmp, final, root, state, cfg, keep)
    if sharded:
        distributed.barrier()  # no rank goes on (or resumes) before the checkpoint is in place
    return final


def _commit(tmp: Path, final: Path, root: Path, state: dict[str, Any], cfg: Any, keep: int) -> None:
    """Rank 0: the trainer state and config into ``tmp``, then ``tmp`` renamed to ``final``, ``latest``
    pointed at it, and old checkpoints pruned."""
    torch.save(state, tmp / STATE_FILE)
    (tmp / "config.json").write_text(json.dumps(cfg.to_dict(), indent=2, default=str))
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)
    _write_atomic(root / LATEST, final.name)
    prune(root, keep)


ROLLOUTS_FILE = "rollouts.pt"
"""An async run's buffered batches (``rewardkit.rl.async_rollouts.AsyncRollouts.checkpoint``)."""

SHARDED_DIR = "state"
"""A sharded checkpoint's DCP directory: model weights and optimizer state, one file per rank."""


def _save_sharded(
    tmp: Path, policy: Any, tokenizer: Any, critic: Any, optimizer: Any, reference: Any
) -> dict[str, Any]:
    """Every rank: the full Hugging Face model (rank 0 writes it, gathered one tensor at a time) and the
    DCP shards; returns what ``load`` needs to know of them."""
    import torch.distributed.checkpoint as dcp

    main = distributed.world().is_main
    weights = {}
    for name, tensor in full_weights(policy):
        if main:
            weights[name] = tensor.detach().cpu()
    if main:
        save_model(policy, tokenizer, tmp, state_dict=weights)
    del weights
    models = _models(policy, critic, reference)
    # An optimizer that has not stepped yet (or was just reset) is saved as such: taking its state dict
    # would first initialise its moments with a zero step (DCP's rule), and that step would count
    with_optimizer = bool(optimizer.state)
    state = _dcp_state(models, optimizer if with_optimizer else None)
    dcp.save(state, checkpoint_id=tmp / SHARDED_DIR, no_dist=not distributed.world().distributed)
    return {"modules": sorted(models), "optimizer": with_optimizer}


def _models(policy: Any, critic: Any, reference: Any, only: Any = None) -> torch.nn.ModuleDict:
    """The run's models under one root, so their state (and the optimizer's) has one set of names."""
    named = {"policy": policy, "critic": critic, "reference": reference}
    return torch.nn.ModuleDict(
        {k: m for k, m in named.items() if m is not None and (only is None or k in only)}
    )


def _dcp_state(models: torch.nn.Module, optimizer: Any) -> dict[str, Any]:
    from torch.distributed.checkpoint.state_dict import get_model_state_dict, get_state_dict

    if optimizer is None:
        return {"models": get_model_state_dict(models)}
    model_state, optimizer_state = get_state_dict(models, optimizer)
    return {"models": model_state, "optimizer": optimizer_state}


def _load_sharded(
    path: Path, saved: dict[str, Any], policy: Any, critic: Any, optimizer: Any, reference: Any
) -> None:
    """A sharded checkpoint's weights and optimizer state into the run's models, sharded or not, on any
    number of ranks (DCP reshards)."""
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import set_model_state_dict, set_state_dict

    models = _models(policy, critic, reference, only=saved["modules"])
    target = _dcp_state(models, optimizer if saved["optimizer"] else None)
    single = not distributed.world().distributed  # a sharded run resumed on one process
    with warnings.catch_warnings():  # DCP warns that it reads every shard itself: as meant
        warnings.filterwarnings("ignore", "torch.distributed is disabled, unavailable or uninitialized")
        dcp.load(target, checkpoint_id=Path(path) / SHARDED_DIR, no_dist=single)
    if saved["optimizer"]:
        set_state_dict(
            models, optimizer, model_state_dict=target["models"], optim_state_dict=target["optimizer"]
        )
    else:
        set_model_state_dict(models, target["models"])
        optimizer.state.clear()


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
    if state.get("sharded"):
        _load_sharded(path, state["sharded"], policy, critic, optimizer, reference)
    elif is_sharded(policy):
        _load_full_into_sharded(state, policy, critic, optimizer, reference)
    else:
        policy.load_state_dict(state["policy"])
        if critic is not None and state["critic"] is not None:
            critic.load_state_dict(state["critic"])
        optimizer.load_state_dict(state["optimizer"])
        if reference is not None and state.get("reference") is not None:
            reference.load_state_dict(state["reference"])
    scheduler.load_state_dict(state["scheduler"])
    sampler.load_state_dict(state["sampler"])
    if kl_control is not None and state.get("kl_control") is not None:
        kl_control.load_state_dict(state["kl_control"])
    set_rng_state(state["rng"])
    return int(state["step"])


def _load_full_into_sharded(
    state: dict[str, Any], policy: Any, critic: Any, optimizer: Any, reference: Any
) -> None:
    """A checkpoint of replicas (``strategy: ddp`` or one process: every tensor whole, the optimizer's
    state keyed by parameter index) into sharded models: every rank reads it whole and keeps its shards.
    The optimizer's indices become names through the order ``_optimizer`` adds the parameters in, which
    sharding keeps."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_model_state_dict, set_state_dict

    saved = {"policy": state["policy"], "critic": state["critic"], "reference": state.get("reference")}
    models = _models(policy, critic, reference, only=[k for k, v in saved.items() if v is not None])
    weights = {f"{k}.{name}": t for k in models for name, t in saved[k].items()}
    options = StateDictOptions(full_state_dict=True)
    full = state["optimizer"]
    if not full["state"]:  # never stepped (or just reset): nothing but the hyper-parameters
        set_model_state_dict(models, weights, options=options)
        optimizer.state.clear()
        return
    names = {id(p): n for n, p in models.named_parameters()}
    fqns = [names[id(p)] for group in optimizer.param_groups for p in group["params"]]
    by_name = {
        "state": {fqns[i]: s for i, s in full["state"].items()},
        "param_groups": [{**g, "params": [fqns[i] for i in g["params"]]} for g in full["param_groups"]],
    }
    set_state_dict(models, optimizer, model_state_dict=weights, optim_state_dict=by_name, options=options)


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
