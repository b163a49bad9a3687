"""Where a model lives and how it is loaded: hub ids, Hugging Face directories, training runs.

One place answers "which weights does this string name?" for training, evaluation and the demo: a
training output directory (its latest checkpoint, or one step), a single checkpoint, a Hugging Face
model directory, or a hub id. The checkpoint layout (``checkpoints/step_NNNNNN/model`` plus the
``checkpoints/latest`` pointer) is defined here; ``rewardkit.rl.checkpoint`` writes it.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

CHECKPOINTS = "checkpoints"
LATEST = "latest"
STATE_FILE = "trainer_state.pt"
"""The trainer's resumable state inside a checkpoint; a checkpoint without it is incomplete."""


def checkpoint_dir(out: str | Path, step: int) -> Path:
    return Path(out) / CHECKPOINTS / f"step_{step:06d}"


def latest_checkpoint(out: str | Path) -> Path | None:
    """The newest complete checkpoint of a training output directory, or None."""
    pointer = Path(out) / CHECKPOINTS / LATEST
    if not pointer.exists():
        return None
    path = pointer.parent / pointer.read_text().strip()
    return path if (path / STATE_FILE).exists() else None


def find_checkpoint(out: str | Path, step: int | None = None) -> Path:
    """The checkpoint of ``step`` (or the latest) under a training output directory."""
    if step is None:
        path = latest_checkpoint(out)
        if path is None:
            raise FileNotFoundError(f"no checkpoint under {out}/{CHECKPOINTS}")
        return path
    path = checkpoint_dir(out, step)
    if not path.exists():
        have = sorted(p.name for p in (Path(out) / CHECKPOINTS).glob("step_*"))
        raise FileNotFoundError(f"no checkpoint for step {step} under {out}; have {have}")
    return path


@dataclass(frozen=True)
class ModelRef:
    """What exactly is loaded: the model directory (or hub id) and how to recognise it again."""

    path: str
    """The resolved model directory, or the hub id."""
    step: int | None
    """The checkpoint step when the model came from a training run."""
    digest: str | None
    """sha256 of config.json and the names and sizes of the directory's files (None for a hub id)."""
    source: str
    """The argument as given."""


def resolve_model(spec: str, step: int | None = None) -> ModelRef:
    """Find the Hugging Face model directory behind ``spec`` (and ``step``).

    A path that does not exist, or exists but holds no model, is an error here, before anything asks
    the hub for it: only ``NAME`` or ``ORG/NAME`` that is not a local path is taken as a hub id.
    """
    path = Path(spec)
    if (path / CHECKPOINTS).is_dir():  # a training output directory
        ckpt = find_checkpoint(path, step)
        return _local(ckpt / "model", _step_of(ckpt), spec)
    if step is not None:
        raise ValueError(
            f"a checkpoint step (--step) needs a training output directory (with {CHECKPOINTS}/); {spec} is not one"
        )
    if (path / "model" / "config.json").is_file() and _step_of(path) is not None:  # one checkpoint
        return _local(path / "model", _step_of(path), spec)
    if (path / "config.json").is_file():
        return _local(path, None, spec)
    if path.exists():
        raise FileNotFoundError(
            f"{spec} is neither a training output directory ({CHECKPOINTS}/), a checkpoint (model/), "
            "nor a Hugging Face model directory (config.json)"
        )
    if spec.startswith((".", "/", "~")) or spec.count("/") > 1:  # a hub id is NAME or ORG/NAME
        raise FileNotFoundError(f"model path {spec} does not exist")
    return ModelRef(path=spec, step=None, digest=None, source=spec)  # a hub id, resolved by transformers


def _step_of(path: Path) -> int | None:
    match = re.fullmatch(r"step_(\d+)", path.name)
    return int(match.group(1)) if match else None


def _local(path: Path, step: int | None, source: str) -> ModelRef:
    h = hashlib.sha256((path / "config.json").read_bytes())
    for f in sorted(p for p in path.iterdir() if p.is_file()):
        h.update(f"{f.name}:{f.stat().st_size}\n".encode())
    return ModelRef(path=str(path.resolve()), step=step, digest=h.hexdigest(), source=source)


def resolve_dtype(name: str) -> Any:
    """``auto`` (bf16 on GPU, fp32 on CPU), ``bf16`` or ``fp32`` as a torch dtype."""
    import torch

    if name == "auto":
        return torch.bfloat16 if torch.cuda.is_available() else torch.float32
    return {"bf16": torch.bfloat16, "fp32": torch.float32}[name]


def load_model(model: str, tokenizer: str | None = None, dtype: str = "auto") -> tuple[Any, Any]:
    """A causal LM (on the GPU when there is one) and its tokenizer, with a pad token set."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tokenizer or model)
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token
    policy = AutoModelForCausalLM.from_pretrained(model, dtype=resolve_dtype(dtype))
    if torch.cuda.is_available():
        policy = policy.to("cuda")
    return policy, tok


def weights_for_sync(policy: Any) -> Iterator[tuple[str, Any]]:
    """Checkpoint-format (name, tensor) pairs of the policy; LoRA adapters are merged in first."""
    if hasattr(policy, "merge_adapter"):  # peft: merge, read, unmerge (training continues on adapters)
        policy.merge_adapter()
        try:
            base = policy.get_base_model()
            for name, tensor in base.state_dict().items():
                if "lora_" in name:
                    continue
                # a copy: unmerge_adapter() below reverts the merged weights in place, so a view would
                # change under a consumer that collects the stream before using it
                yield name.replace(".base_layer", ""), tensor.detach().clone()
        finally:
            policy.unmerge_adapter()
        return
    for name, tensor in policy.state_dict().items():
        yield name, tensor.detach()
