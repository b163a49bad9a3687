"""Data-parallel training over torch.distributed: what changes when ``torchrun`` starts N ranks.

    torchrun --nproc-per-node N -m rewardkit train CONFIG.yaml      # or: rewardkit train CONFIG.yaml --nproc N

Every rank holds a full replica of the policy (and of the reference and critic), rolls out its share
of each step's prompts, and computes its loss; gradients are summed over ranks once per optimizer step
and every rank takes the same optimizer step, so the replicas stay equal. What makes the result the
single-process one:

- **Prompts**: one sampler, identical on every rank (same seed, same draws); rank r rolls out the r-th
  contiguous slice of the prompts drawn. A prompt's group lives on one rank, so group statistics (GRPO's
  mean and std, RLOO's leave-one-out) need no communication. Dynamic sampling draws its extra prompts
  the same way, from the global shortfall, and keeps the first ``prompts_per_step`` groups in rank order.
- **Denominators**: ``StepNorm``'s token and sequence counts are summed over ranks, and each rank's loss
  is its share of the global sum; summing the ranks' gradients then gives the gradient of one process
  on the whole batch. Batch-level statistics (``grpo_batch_std``'s std, REINFORCE++ and GAE whitening)
  are all-reduced too (``all_sum``).
- **Uneven ranks**: ranks may hold different numbers of samples (dynamic sampling, filtering); forward
  passes need no communication, and a rank with nothing in a mini-batch contributes a zero gradient.

The gradient sum is one all-reduce of the flattened gradients after the micro-batches: DDP's arithmetic,
without DDP's overlap of communication with the backward pass, which is what lets ranks run different
numbers of micro-batches. Rank 0 writes metrics, rollouts and checkpoints; the checkpoint is a full
Hugging Face model plus the optimizer state (replicated, so a run resumes on any number of ranks).

That is ``strategy: ddp``. ``strategy: fsdp`` shards the models instead (``rewardkit.rl.sharding``):
the same prompts, denominators and statistics, with FSDP2 reducing the gradients.

Back end: ``gloo`` on CPU (the tests run 2 ranks on one machine), ``nccl`` with CUDA (one GPU per
local rank). See docs/scale.md for launching on several nodes.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor

__all__ = [
    "World",
    "all_gather_objects",
    "all_max",
    "all_min",
    "all_sum",
    "barrier",
    "initialized",
    "broadcast_parameters",
    "setup",
    "shard",
    "sum_gradients",
    "world",
]


@dataclass(frozen=True)
class World:
    """This process's place among the ranks."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.size > 1


def world() -> World:
    """The current process group's view (one process when torch.distributed is not initialised)."""
    if not (dist.is_available() and dist.is_initialized()):
        return World()
    return World(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))


def setup() -> World:
    """Join the process group torchrun describes (``WORLD_SIZE`` in the environment), once; a plain
    ``python`` run is one process and initialises nothing. CUDA: ``nccl``, one device per local rank;
    otherwise ``gloo``. ``torchrun --nproc-per-node 1`` makes a group of one (``strategy: fsdp`` then
    shards over it: FSDP2's mixed precision on one GPU)."""
    size = int(os.environ.get("WORLD_SIZE", "1"))
    launched = size > 1 or "MASTER_ADDR" in os.environ  # by torchrun (a group of one included)
    if not launched or not dist.is_available():
        return World()
    if not dist.is_initialized():
        local = int(os.environ.get("LOCAL_RANK", "0"))
        if torch.cuda.is_available():
            torch.cuda.set_device(local)
            dist.init_process_group("nccl", device_id=torch.device("cuda", local))
        else:
            dist.init_process_group("gloo")
        global _joined
        _joined = True
    return world()


_joined = False  # whether setup() made the process group (close() leaves only that one)


def close(wait: bool = True) -> None:
    """Leave the process group ``setup()`` joined, once every rank is here (``wait=False``: at once, for
    a rank that may be alone on its way out). A process that exits still in
    a gloo group can abort at interpreter shutdown (``terminate called without an active exception``, as
    PyTorch documents for a missing ``destroy_process_group``); a group the caller made is left alone."""
    global _joined
    if _joined and dist.is_initialized():
        if wait:
            barrier()
        dist.destroy_process_group()
    _joined = False


def initialized() -> bool:
    """Whether this process is in a torch.distributed process group (torchrun; a group of one too)."""
    return dist.is_available() and dist.is_initialized()


def shard(items: Sequence[Any], w: World) -> list[Any]:
    """Rank ``w.rank``'s contiguous slice of ``items``; sizes differ by at most one, earlier ranks first."""
    size, extra = divmod(len(items), w.size)
    start = w.rank * size + min(w.rank, extra)
    return list(items[start : start + size + (w.rank < extra)])


def _reduce(x: Tensor, op: Any) -> Tensor:
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return x
    device = _comm_device()
    y = x.detach().to(device, torch.float64 if x.is_floating_point() else torch.int64).clone()
    dist.all_reduce(y, op=op)
    return y.to(x.device, x.dtype)


def all_sum(x: Tensor) -> Tensor:
    """``x`` summed over ranks (``x`` itself in one process). Not differentiable: for statistics."""
    return _reduce(x, dist.ReduceOp.SUM)


def all_max(x: Tensor) -> Tensor:
    return _reduce(x, dist.ReduceOp.MAX)


def all_min(x: Tensor) -> Tensor:
    return _reduce(x, dist.ReduceOp.MIN)


def all_gather_objects(obj: Any) -> list[Any]:
    """Every rank's ``obj``, in rank order (``[obj]`` in one process)."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return [obj]
    out: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def sum_gradients(params: Iterable[Tensor]) -> None:
    """Sum every parameter's gradient over ranks, in place: one all-reduce per dtype of the flattened
    gradients. A parameter without a gradient on this rank (nothing to train on) counts as zeros."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return
    by_dtype: dict[torch.dtype, list[Tensor]] = {}
    for p in params:
        if p.grad is None:
            p.grad = torch.zeros_like(p)
        by_dtype.setdefault(p.grad.dtype, []).append(p)
    for group in by_dtype.values():
        flat = torch.cat([p.grad.reshape(-1) for p in group])
        dist.all_reduce(flat, op=dist.ReduceOp.SUM)
        offset = 0
        for p in group:
            n = p.grad.numel()
            p.grad.copy_(flat[offset : offset + n].view_as(p.grad))
            offset += n


def broadcast_parameters(modules: Iterable[torch.nn.Module | None]) -> None:
    """Rank 0's parameters and buffers on every rank, so the replicas start equal (whatever each rank's
    random initialisation of new weights, e.g. LoRA adapters or a value head, gave)."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return
    for module in modules:
        if module is None:
            continue
        with torch.no_grad():
            for t in [*module.parameters(), *module.buffers()]:
                dist.broadcast(t.data, src=0)


def barrier() -> None:
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        dist.barrier()


def _comm_device() -> torch.device:
    return (
        torch.device("cuda", torch.cuda.current_device())
        if dist.get_backend() == "nccl"
        else torch.device("cpu")
    )
