"""FSDP2 (``torch.distributed.fsdp.fully_shard``): the policy, the reference and the critic sharded over
the ranks (``strategy: fsdp``), and what the trainer needs around it.

Each transformer block (the classes a Hugging Face model lists in ``_no_split_modules``) is one FSDP unit,
the rest of the model (embeddings, final norm, LM head) the root unit. A rank holds 1/N of every weight,
gradient and optimizer moment; a unit's full weights exist only while it runs (gathered before, freed
after). Gradients are reduce-scattered summed, not averaged: each rank's loss is already its share of
the whole step's (``StepNorm``'s counts are all-reduced), as with ``strategy: ddp``.

FSDP's all-gathers are collectives: every rank must run the same forward and backward passes in the
same order. Two places cannot promise that, and the trainer handles each:

- **generation and the no-grad pass** (old and reference log-probs, old values) run as many forwards as
  the rank's own samples need (and hf generation stops when the rank's own sequences do): they run
  inside ``gathered``, which gathers every unit's full weights once, so the forwards inside need no
  communication (FSDP1's ``summon_full_params``); the full weights are held for that phase only;
- **the update**: every rank runs as many micro-batches as the rank with the most (``micro_batches``);
  a rank with fewer runs zero-weight ones (``zero_backward``), which add nothing to the gradient.

Mixed precision (``fsdp.param_dtype``): the sharded master weights and the optimizer keep the model's
dtype (fp32), forwards and backwards compute in ``param_dtype`` (bf16), gradients are reduced in
``reduce_dtype``. ``fsdp.cpu_offload``: the sharded weights, gradients and optimizer state live in host
memory and the optimizer steps there (FSDP2's ``CPUOffloadPolicy``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import Tensor, nn

from rewardkit.config import bad_value, check_choices
from rewardkit.rl import distributed

__all__ = [
    "FSDPConfig",
    "clip_grad_norm",
    "full_weights",
    "fully_shard_model",
    "gathered",
    "is_sharded",
    "micro_batches",
    "compute_device",
]

_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}


@dataclass(frozen=True)
class FSDPConfig:
    """``fsdp:`` in a train config: how ``strategy: fsdp`` shards (ignored by ``strategy: ddp``)."""

    param_dtype: Literal["bf16", "fp16", "fp32"] | None = None
    """Mixed precision: forwards and backwards compute in this dtype, the sharded master weights and the
    optimizer keep the model's (``dtype: fp32`` with ``param_dtype: bf16`` is the usual GPU recipe).
    None: compute in the model's dtype."""
    reduce_dtype: Literal["bf16", "fp16", "fp32"] | None = "fp32"
    """The dtype gradients are summed over ranks in (None: ``param_dtype``'s)."""
    cpu_offload: bool = False
    """Keep the sharded weights, gradients and optimizer state in host memory (the optimizer steps on the
    CPU; each unit's weights go to the GPU for its forward and backward): less GPU memory, slower."""
    reshard_after_forward: bool = True
    """Free each unit's gathered weights after its forward and gather them again for the backward (ZeRO-3);
    False keeps them until the backward (ZeRO-2: more memory, one all-gather less per micro-batch)."""

    def __post_init__(self) -> None:
        check_choices(self, where="train config: fsdp")


def is_sharded(module: nn.Module | None) -> bool:
    """Whether ``module`` was sharded by ``fully_shard_model``."""
    from torch.distributed.fsdp import FSDPModule

    return isinstance(module, FSDPModule)


def fully_shard_model(module: nn.Module, cfg: FSDPConfig) -> nn.Module:
    """Shard ``module`` in place over the default process group: each transformer block one FSDP unit,
    then the root; returns ``module`` (its class is now also an ``FSDPModule``). Run it after the
    replicas are equal (``distributed.broadcast_parameters``) and before the optimizer is built: the
    parameters become ``DTensor`` shards."""
    from torch.distributed.fsdp import CPUOffloadPolicy, MixedPrecisionPolicy, fully_shard

    options: dict[str, Any] = {"reshard_after_forward": cfg.reshard_after_forward}
    if cfg.param_dtype is not None or cfg.reduce_dtype is not None:
        options["mp_policy"] = MixedPrecisionPolicy(
            param_dtype=_DTYPES.get(cfg.param_dtype or ""),
            reduce_dtype=_DTYPES.get(cfg.reduce_dtype or ""),
        )
    if cfg.cpu_offload:
        if not torch.cuda.is_available():
            why = ": there is no GPU to offload from; on a CPU the shards are in host memory already"
            raise bad_value("train config", "fsdp.cpu_offload", True, "false without a GPU", why)
        options["offload_policy"] = CPUOffloadPolicy()
    blocks = _block_classes(module)
    for sub in list(module.modules()):
        if sub is not module and type(sub).__name__ in blocks:
            fully_shard(sub, **options)
    fully_shard(module, **options)
    module._rewardkit_reshard = cfg.reshard_after_forward  # what ``gathered`` restores
    # Summed, not averaged: each rank's loss is its share of the whole step's (see the module doc). Sum
    # without a divide factor, because gloo has no pre-multiplied sum. Both setters act on one unit only.
    for unit in module.modules():
        if is_sharded(unit):
            unit.set_gradient_divide_factor(1.0)
            unit.set_force_sum_reduction_for_comms(True)
    return module


def _block_classes(module: nn.Module) -> set[str]:
    """The transformer-block class names the model (or any model inside it) declares unsplittable."""
    names: set[str] = set()
    for sub in module.modules():
        names.update(getattr(sub, "_no_split_modules", None) or ())
    if not names:
        raise ValueError(
            f"strategy fsdp: {type(module).__name__} names no transformer block (_no_split_modules): "
            "rewardkit shards Hugging Face causal LMs by block"
        )
    return names


@contextlib.contextmanager
def gathered(*modules: nn.Module | None) -> Iterator[None]:
    """Inside: every sharded module's full weights on every rank, so forward passes need no
    communication and ranks may run different numbers of them (generation, the no-grad pass). A
    collective on entry and exit: every rank enters together. Not sharded: nothing happens."""
    units = [u for m in modules if is_sharded(m) for u in m.modules() if is_sharded(u)]
    for unit in units:
        unit.set_reshard_after_forward(False, recurse=False)
        unit.unshard()
    try:
        yield
    finally:
        for unit in units:
            unit.reshard()
        for m in modules:
            if is_sharded(m):
                m.set_reshard_after_forward(_reshard_default(m), recurse=True)


def _reshard_default(module: nn.Module) -> bool:
    return bool(getattr(module, "_rewardkit_reshard", True))


def full_weights(module: nn.Module) -> Iterator[tuple[str, Tensor]]:
    """``module``'s state dict as full tensors, one at a time (a sharded weight is gathered when its turn
    comes and can be dropped before the next): a weight sync or a checkpoint never holds a second full
    copy of the model. A collective per sharded tensor: every rank must consume the whole stream."""
    from torch.distributed.tensor import DTensor

    for name, tensor in module.state_dict().items():
        yield name, tensor.full_tensor() if isinstance(tensor, DTensor) else tensor


def compute_device(module: nn.Module) -> torch.device:
    """Where ``module``'s forward runs: under FSDP this process's GPU (with ``cpu_offload`` the shards
    live on the CPU), else where its weights are."""
    if is_sharded(module) and torch.cuda.is_available():
        return torch.device("cuda", torch.cuda.current_device())
    return next(module.parameters()).device


def micro_batches(local: int) -> int:
    """How many micro-batches every rank runs: the most any rank has (``local`` in one process)."""
    return int(distributed.all_max(torch.tensor(local)))


def clip_grad_norm(params: list[Tensor], max_norm: float) -> float:
    """Clip the gradients of ``params`` to ``max_norm`` (L2, over every rank's shards); returns the norm
    before clipping. The same as ``torch.nn.utils.clip_grad_norm_`` for plain tensors."""
    from torch.distributed.tensor import DTensor

    grads = [p.grad for p in params if p.grad is not None]
    norm = torch.nn.utils.get_total_norm(grads, foreach=True)
    if isinstance(norm, DTensor):
        norm = norm.full_tensor()  # the shards' partial norms combined: the whole gradient's
    torch.nn.utils.clip_grads_with_norm_(params, max_norm, norm, foreach=True)
    return float(norm)
