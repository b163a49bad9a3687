"""rewardkit: reinforcement learning with verifiable rewards.

Reward environments are plugins behind one score API (``load_env(name).score(...)``); a GRPO-family
trainer trains causal language models against them; an evaluator measures checkpoints on suites.

``rewardkit.train(rewardkit.TrainConfig(...))`` runs the trainer from Python (``TrainResult.final_model``
is the trained model's directory); those three names are imported on first use, so ``import rewardkit``
stays light (no torch) for scoring.
"""

import os as _os
from typing import Any

# MKL's conditional numerical reproducibility, unless the user chose a mode: without it, on some CPUs
# (AMD EPYC here) a matmul's result depends on its arrays' memory alignment, so two runs that compute
# the same thing (a resumed run, async rollouts at staleness 0) drift apart in the last bits. It must be
# set before torch loads MKL, so it lives here: `import rewardkit` comes before torch in the CLI.
_os.environ.setdefault("MKL_CBWR", "AUTO")

from rewardkit.conformance import EnvCheckError, check_env
from rewardkit.envs.base import Environment, EnvStep
from rewardkit.registry import list_envs, load_env, register_env, reward_env
from rewardkit.scoring import ScoringConfig, score_trajectories
from rewardkit.types import Completion, Message, Sample, Score, Task, Trajectory, completion_text

__version__ = "0.1.0"

_LAZY = {
    "train": "rewardkit.rl.trainer",
    "TrainResult": "rewardkit.rl.trainer",
    "TrainConfig": "rewardkit.rl.config",
    "DataConfig": "rewardkit.data.tasks",
}


def __getattr__(name: str) -> Any:
    """The trainer's names (``train``, ``TrainConfig``, ``TrainResult``) and ``DataConfig``, imported on use."""
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'rewardkit' has no attribute {name!r}")


__all__ = [
    "Completion",
    "DataConfig",
    "EnvCheckError",
    "EnvStep",
    "Environment",
    "Message",
    "Sample",
    "Score",
    "ScoringConfig",
    "Task",
    "TrainConfig",
    "TrainResult",
    "Trajectory",
    "check_env",
    "completion_text",
    "list_envs",
    "load_env",
    "register_env",
    "reward_env",
    "score_trajectories",
    "train",
]
