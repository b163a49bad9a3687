"""Run by tests/rl/test_distributed.py, as one process or under ``torchrun --nproc-per-node 2``: two
optimizer steps of PRESET on fixed global batches, each rank on its slice of the groups; rank 0
writes every step's loss metrics and the final parameters to RESULT (a torch file).

    python tests/rl/dist_update.py MODEL OUT PRESET RESULT [even|lopsided] [ddp|fsdp]

``lopsided``: rank 0 takes every group but the last, the last rank only that one in the first step
and nothing in the second (a rank with no samples of its own still joins the update). ``fsdp``: the
models sharded (``strategy: fsdp``); the parameters written are the gathered full ones.
"""

from __future__ import annotations

import sys

import torch

from rewardkit.registry import FunctionEnv
from rewardkit.rl import distributed
from rewardkit.rl.config import TrainConfig
from rewardkit.rl.run_dir import RunDirMode
from rewardkit.rl.sampling import Batch
from rewardkit.rl.trainer import _start, optimize, rollout_batch
from rewardkit.types import Task

PRESET_ALGO = {
    "grpo": {"kl_coef": 0.05},  # a reference model and its KL term
    "dr_grpo": {},
    "dapo": {"dynamic_sampling": False},  # token-mean over the whole batch (the batch itself is fixed here)
    "reinforce_pp": {"kl_coef": 0.0},  # whitening over the batch
    "ppo": {"kl_coef": 0.0},  # a critic: GAE whitened over the batch, value loss
}


def by_length(completion, *, answer=None, prompt=None, info=None):
    return 0.25 + (len(completion) % 5) / 4


def main(model: str, out: str, preset: str, result: str, split: str = "even", strategy: str = "ddp") -> None:
    world = distributed.setup()
    algo = {"kl_coef": 0.0, **PRESET_ALGO[preset]}
    if preset == "grpo":
        algo["advantage"] = "grpo_batch_std"  # a batch-level std too
    cfg = TrainConfig(
        model=model,
        env="toy",
        algorithm=preset,
        algo=algo,
        prompts_per_step=4,
        group_size=3,
        max_new_tokens=6,
        micro_batch_size=4,  # ranks run different numbers of micro-batches than one process
        lr=1e-3,
        steps=2,
        output_dir=out,
        seed=0,
        save_every=0,
        sample_every=0,
        progress=False,
        strategy=strategy,
    )
    tasks = [Task(prompt=f"Say {i}:", id=str(i)) for i in range(8)]
    run = _start(cfg, FunctionEnv(by_length, "toy", executor="inline"), tasks, RunDirMode())
    losses = []
    for step in (1, 2):
        whole = rollout_batch(run, step, world=distributed.World())  # the same global batch everywhere
        groups = sorted({s.group for s in whole.samples})
        mine = set(distributed.shard(groups, world))
        if split == "lopsided" and world.distributed:
            last = world.rank == world.size - 1
            mine = (
                ({groups[-1]} if step == 1 else set())
                if last
                else (set(groups[:-1]) if step == 1 else set(groups))
            )
        part = Batch([s for s in whole.samples if s.group in mine], dict(whole.stats))
        metrics = optimize(run.learner, part, step)
        losses.append(
            {
                k: v
                for k, v in metrics.items()
                if k in ("loss", "pg_loss", "value_loss", "kl_ref", "clip_frac", "grad_norm")
            }
        )
    modules = [m for m in (run.learner.policy, run.learner.critic) if m is not None]
    params = torch.cat([_full(p).reshape(-1) for m in modules for p in m.parameters()])
    replicas = distributed.all_gather_objects(params)
    if world.is_main:
        torch.save(
            {
                "losses": losses,
                "params": params,
                "replicas_equal": all(torch.equal(params, r) for r in replicas),
            },
            result,
        )
    distributed.close()  # as train() does: a rank still in a gloo group at exit can abort


def _full(param: torch.Tensor) -> torch.Tensor:
    """A parameter's full value (a sharded one gathered from every rank)."""
    from torch.distributed.tensor import DTensor

    return (param.full_tensor() if isinstance(param, DTensor) else param).detach()


if __name__ == "__main__":
    main(*sys.argv[1:7])
