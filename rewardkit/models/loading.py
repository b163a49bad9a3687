"""Where a model lives and how it is loaded: hub ids, Hugging Face directories, training runs.

One place answers "which weights does this string name?" for training, evaluation and the demo: a
training output directory (its latest checkpoint, or one step), a single checkpoint, a Hugging Face
model directory, or a hub id. The checkpoint layout (``checkpoints/step_NNNNNN/model`` plus the
``checkpoints/latest`` pointer) is defined here; ``rewardkit.rl.checkpoint`` writes it, the model through
``save_model``: ``model/`` is always a plain model directory (LoRA merged in), so a run evaluates from
any directory, and a LoRA run's adapter sits beside it in ``adapter/``.

A mistyped local path fails here at once, in one line, before anything asks the hub; a hub id is read
from the local cache alone when the hub cannot be reached.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import socket
import urllib.parse
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

CHECKPOINTS = "checkpoints"
LATEST = "latest"
STATE_FILE = "trainer_state.pt"
"""The trainer's resumable state inside a checkpoint; a checkpoint without it is incomplete."""
MODEL_DIR = "model"
"""A checkpoint's model: a plain Hugging Face model directory (LoRA adapters merged in)."""
ADAPTER_DIR = "adapter"
"""A LoRA run's checkpoint also holds the adapter alone, its base model named by absolute path."""
CONFIG, ADAPTER_CONFIG = "config.json", "adapter_config.json"
TOKENIZER_FILES = ("tokenizer_config.json", "tokenizer.json", "tokenizer.model", "vocab.json")
ACCEPTED = (
    "give a local model directory (with config.json), a training output directory (with checkpoints/), "
    "a checkpoint directory (with model/), or a hub id NAME or ORG/NAME"
)


def checkpoint_dir(out: str | Path, step: int) -> Path:
    return Path(out) / CHECKPOINTS / f"step_{step:06d}"


def checkpoint_step(path: str | Path) -> int | None:
    """The step of a checkpoint directory ``step_N``; None for any other name."""
    match = re.fullmatch(r"step_(\d+)", Path(path).name)
    return int(match.group(1)) if match else None


def latest_checkpoint(out: str | Path) -> Path | None:
    """The newest complete checkpoint of a training output directory, or None.

    ``checkpoints/latest`` names it. When the pointer is missing, or names a checkpoint that is gone or
    incomplete (a crash between the two writes, a run of an older version that pruned it), the complete
    ``step_N`` with the highest N stands in, so the pointer and the checkpoints never disagree."""
    root = Path(out) / CHECKPOINTS
    pointer = root / LATEST
    if pointer.exists() and (root / pointer.read_text().strip() / STATE_FILE).exists():
        return root / pointer.read_text().strip()
    complete = [
        p for p in root.glob("step_*") if checkpoint_step(p) is not None and (p / STATE_FILE).exists()
    ]
    return max(complete, key=checkpoint_step, default=None)  # type: ignore[arg-type]


def latest_model(out: str | Path) -> Path | None:
    """The Hugging Face model directory of a run's latest checkpoint (``checkpoints/step_N/model``), or None."""
    latest = latest_checkpoint(out)
    return latest / "model" if latest is not None else None


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
    the hub for it: only ``NAME`` or ``ORG/NAME`` that is not a local path is taken as a hub id
    (``is_hub_id``). A model directory is one with config.json, or a LoRA adapter (adapter_config.json,
    as checkpoints of older versions hold; ``load_model`` loads it on its base).
    """
    path = Path(spec).expanduser()
    if (path / CHECKPOINTS).is_dir():  # a training output directory
        ckpt = find_checkpoint(path, step)
        return _local(ckpt / MODEL_DIR, _step_of(ckpt), spec)
    if step is not None:
        raise ValueError(
            f"a checkpoint step (--step) needs a training output directory (with {CHECKPOINTS}/); {spec} is not one"
        )
    if _is_model_dir(path / MODEL_DIR) and _step_of(path) is not None:  # one checkpoint
        return _local(path / MODEL_DIR, _step_of(path), spec)
    if _is_model_dir(path):
        return _local(path, None, spec)
    if path.exists():
        raise FileNotFoundError(
            f"{spec} is neither a training output directory ({CHECKPOINTS}/), a checkpoint (model/), "
            "nor a Hugging Face model directory (config.json) or LoRA adapter (adapter_config.json)"
        )
    if not is_hub_id(spec):
        raise FileNotFoundError(f"model path {spec} does not exist; {ACCEPTED}")
    return ModelRef(path=spec, step=None, digest=None, source=spec)  # a hub id, resolved by transformers


def resolve_tokenizer(spec: str) -> str:
    """The directory (or hub id) behind a ``tokenizer`` setting: a directory with tokenizer files, anything
    ``resolve_model`` accepts (a run, a checkpoint, a model directory), or a hub id. A mistyped path is
    an error here, before anything asks the hub for it."""
    path = Path(spec).expanduser()
    if path.is_dir() and _has_tokenizer(path):
        return str(path.resolve())
    if path.exists():
        try:
            return resolve_model(spec).path
        except FileNotFoundError as exc:
            raise FileNotFoundError(f"tokenizer {exc} (nor a directory with tokenizer.json)") from None
    if not is_hub_id(spec):
        raise FileNotFoundError(
            f"tokenizer path {spec} does not exist; give a directory with tokenizer files (tokenizer.json), "
            "a model, checkpoint or training output directory, or a hub id NAME or ORG/NAME"
        )
    return spec


def is_hub_id(spec: str) -> bool:
    """Whether ``spec`` can name a hub repository and not a local path: ``NAME`` or ``ORG/NAME`` by the
    hub's rules (letters, digits, ``-_.``; no leading or trailing ``.``/``-``, no ``--`` or ``..``, at most
    96 characters), whose ``ORG`` is not a local directory (``runs/exp1`` next to ``runs/`` is a typo)."""
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    try:
        validate_repo_id(spec)
    except HFValidationError:
        return False
    org, slash, _ = spec.partition("/")
    return not (slash and Path(org).is_dir())


def _is_model_dir(path: Path) -> bool:
    return (path / CONFIG).is_file() or (path / ADAPTER_CONFIG).is_file()


def _step_of(path: Path) -> int | None:
    match = re.fullmatch(r"step_(\d+)", path.name)
    return int(match.group(1)) if match else None


def _local(path: Path, step: int | None, source: str) -> ModelRef:
    config = next((path / name for name in (CONFIG, ADAPTER_CONFIG) if (path / name).is_file()), None)
    if config is None:
        raise FileNotFoundError(f"{path} holds no model: neither {CONFIG} nor {ADAPTER_CONFIG}")
    h = hashlib.sha256(config.read_bytes())
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
    """A causal LM (on the GPU when there is one) and its tokenizer, with a pad token set.

    ``model`` is anything ``resolve_model`` accepts; a LoRA adapter directory is loaded on its base model
    (``adapter_base``) and merged. ``tokenizer`` is anything ``resolve_tokenizer`` accepts (None: the
    model's own). Both are checked before anything is loaded, and a hub id is read from the local cache
    alone when the hub cannot be reached (see ``_from_pretrained``).
    """
    path = resolve_model(model).path  # first: a mistyped path fails before transformers is even imported
    tok_path, what = (resolve_tokenizer(tokenizer), "tokenizer") if tokenizer else (path, "model")

    import torch
    from transformers import AutoModelForCausalLM

    base = adapter_base(Path(path)) if _is_adapter_dir(Path(path)) else None  # an older LoRA checkpoint
    if base is not None and tokenizer is None and not _has_tokenizer(Path(path)):
        tok_path = base
    tok = load_tokenizer(tok_path, what)
    if base is not None:
        policy = _load_merged(Path(path), base, dtype)
    else:
        policy = _from_pretrained(AutoModelForCausalLM, path, "model", dtype=resolve_dtype(dtype))
    if torch.cuda.is_available():
        policy = policy.to("cuda")
    return policy, tok


def load_tokenizer(path: str, what: str = "tokenizer") -> Any:
    """``AutoTokenizer`` for a directory or hub id (see ``_from_pretrained``), with a pad token set."""
    from transformers import AutoTokenizer

    tok = _from_pretrained(AutoTokenizer, path, what)
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token
    return tok


def token_decoder(tokenizer: Any) -> Callable[[Sequence[int]], str]:
    """Token ids -> text with the special tokens kept (a chat template's turn markers are part of what the
    environment wrote): how rollout records spell their ``segments``."""
    return lambda ids: tokenizer.decode(list(ids), skip_special_tokens=False)


def adapter_base(adapter: Path) -> str:
    """The base model of a LoRA adapter directory (its ``base_model_name_or_path``), as an absolute path.

    A relative path (older versions wrote the one training was given, relative to its cwd) is looked
    up above the adapter first (the training cwd is usually one of its parents), then from the cwd; a
    hub id that is no local directory stays a hub id."""
    base = json.loads((adapter / ADAPTER_CONFIG).read_text()).get("base_model_name_or_path")
    if not base:
        raise ValueError(f"{adapter / ADAPTER_CONFIG} names no base_model_name_or_path")
    rel = Path(base).expanduser()
    candidates = [rel] if rel.is_absolute() else [*(up / rel for up in adapter.resolve().parents), rel]
    for candidate in candidates:
        if (candidate / CONFIG).is_file():
            return str(candidate.resolve())
    if is_hub_id(base):
        return base
    raise FileNotFoundError(
        f"the base model {base} of the LoRA adapter {adapter} does not exist (looked above the adapter and "
        f"in the current directory); set base_model_name_or_path in its {ADAPTER_CONFIG} to the base "
        "model's directory or hub id"
    )


def _is_adapter_dir(path: Path) -> bool:
    return (path / ADAPTER_CONFIG).is_file() and not (path / CONFIG).is_file()


def _has_tokenizer(path: Path) -> bool:
    return any((path / name).is_file() for name in TOKENIZER_FILES)


def _load_merged(adapter: Path, base: str, dtype: str) -> Any:
    """The base model with the LoRA adapter at ``adapter`` merged into its weights."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    model = _from_pretrained(AutoModelForCausalLM, base, "base model", dtype=resolve_dtype(dtype))
    return PeftModel.from_pretrained(model, str(adapter)).merge_and_unload()


def _from_pretrained(cls: Any, path: str, what: str, **kwargs: Any) -> Any:
    """``cls.from_pretrained(path)``, failing in one line that names ``path``.

    For a hub id the hub is asked only when it can be: offline (``HF_HUB_OFFLINE``) or with its host
    unreachable, the local cache alone is read, so a missing model fails at once instead of after a
    minute of retries, and transformers' OSError becomes a FileNotFoundError the CLI prints.
    """
    offline = None if Path(path).exists() else _hub_unavailable()
    try:
        return cls.from_pretrained(path, local_files_only=offline is not None, **kwargs)
    except OSError as exc:
        if offline is not None:
            raise FileNotFoundError(
                f"{what} {path} is not a local directory nor in the local Hugging Face cache, and the hub "
                f"cannot be asked ({offline}); download it first (hf download {path}), or {ACCEPTED}"
            ) from exc
        first = next((line for line in str(exc).splitlines() if line.strip()), type(exc).__name__)
        raise FileNotFoundError(f"{what} {path}: {first}") from exc


_PROXY_VARS = ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy")


def _hub_unavailable() -> str | None:
    """Why the hub cannot be asked now (offline mode, or its host refusing a connection), or None."""
    from huggingface_hub import constants

    flags = (os.environ.get(v, "").upper() for v in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))
    if constants.HF_HUB_OFFLINE or any(f in ("1", "ON", "YES", "TRUE") for f in flags):
        return "HF_HUB_OFFLINE is set"
    if any(os.environ.get(v) for v in _PROXY_VARS):
        return None  # the hub is reached through a proxy: only the hub client can tell
    url = urllib.parse.urlsplit(constants.ENDPOINT)
    host, port = url.hostname or "", url.port or (443 if url.scheme == "https" else 80)
    try:
        socket.create_connection((host, port), timeout=3).close()
    except OSError:
        return f"{host} cannot be reached"
    return None


def save_model(
    policy: Any, tokenizer: Any, checkpoint: str | Path, *, state_dict: dict[str, Any] | None = None
) -> None:
    """Write ``checkpoint/model`` as a plain Hugging Face model directory that loads from anywhere.

    A LoRA policy's adapters are merged into that copy (the policy itself keeps training on them), and
    the adapter alone goes to ``checkpoint/adapter``, its base model named by absolute path.
    ``state_dict``: the weights to write instead of the policy's own (a sharded policy's, gathered).
    """
    checkpoint = Path(checkpoint)
    if hasattr(policy, "merge_adapter"):  # peft
        _save_adapter(policy, tokenizer, checkpoint / ADAPTER_DIR)
        with merged_state_dict(policy) as weights:
            policy.get_base_model().save_pretrained(checkpoint / MODEL_DIR, state_dict=weights)
    else:
        policy.save_pretrained(checkpoint / MODEL_DIR, state_dict=state_dict)
        _unwrapped_architecture(policy, checkpoint / MODEL_DIR / CONFIG)
    tokenizer.save_pretrained(checkpoint / MODEL_DIR)


def _unwrapped_architecture(model: Any, config: Path) -> None:
    """``architectures`` in a saved config names the model's class; FSDP2 wraps it in a subclass of its
    own (``FSDPLlamaForCausalLM``), which no loader knows: name the class it wraps."""
    try:
        from torch.distributed.fsdp import FSDPModule
    except ImportError:  # a torch without distributed support has no FSDP either
        return
    if not isinstance(model, FSDPModule):
        return
    wrapped = next(c for c in type(model).__mro__[1:] if not issubclass(c, FSDPModule))
    data = json.loads(config.read_text())
    data["architectures"] = [wrapped.__name__]
    config.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")


def _save_adapter(policy: Any, tokenizer: Any, path: Path) -> None:
    policy.save_pretrained(path)
    tokenizer.save_pretrained(path)
    config = path / ADAPTER_CONFIG
    data = json.loads(config.read_text())
    base = Path(data.get("base_model_name_or_path") or "")
    if base.parts and not base.is_absolute() and (base / CONFIG).is_file():  # cwd-relative: pin it
        data["base_model_name_or_path"] = str(base.resolve())
        config.write_text(json.dumps(data, indent=2))


@contextmanager
def merged_state_dict(policy: Any) -> Iterator[dict[str, Any]]:
    """The policy's weights under the base model's names; a peft policy's LoRA adapters are merged in
    while inside (the tensors are the live, merged ones: copy what must outlive the block)."""
    if not hasattr(policy, "merge_adapter"):
        yield policy.state_dict()
        return
    # peft merges in place (W += s * B @ A) and unmerges by subtracting again, which rounds: W + d - d is
    # not W in floating point (1 ulp in fp32, far more in bf16), so the frozen base would drift at every
    # checkpoint and weight sync. Keep the exact base weights and put them back.
    exact = {n: p.detach().clone() for n, p in policy.named_parameters() if ".base_layer." in n}
    policy.merge_adapter()
    try:
        base = policy.get_base_model().state_dict()
        yield {n.replace(".base_layer", ""): t for n, t in base.items() if "lora_" not in n}
    finally:
        policy.unmerge_adapter()
        for n, p in policy.named_parameters():
            if n in exact:
                p.data.copy_(exact[n])


def weights_for_sync(policy: Any) -> Iterator[tuple[str, Any]]:
    """Checkpoint-format (name, tensor) pairs of the policy; LoRA adapters are merged in first."""
    lora = hasattr(policy, "merge_adapter")
    with merged_state_dict(policy) as weights:  # peft: merge, read, unmerge (training continues on adapters)
        for name, tensor in weights.items():
            # a LoRA copy: unmerging reverts the merged weights in place, so a view would change under a
            # consumer that collects the stream before using it
            yield name, tensor.detach().clone() if lora else tensor.detach()
