"""rewardkit: reinforcement learning with verifiable rewards.

Reward environments are plugins behind one score API (``load_env(name).score(...)``); a GRPO-family
trainer trains causal language models against them; an evaluator measures checkpoints on suites.
"""

from rewardkit.conformance import EnvCheckError, check_env
from rewardkit.envs.base import Environment, EnvStep
from rewardkit.registry import list_envs, load_env, register_env, reward_env
from rewardkit.scoring import ScoringConfig, score_trajectories
from rewardkit.types import Completion, Message, Sample, Score, Task, Trajectory, completion_text

__version__ = "0.1.0"

__all__ = [
    "Completion",
    "EnvCheckError",
    "EnvStep",
    "Environment",
    "Message",
    "Sample",
    "Score",
    "ScoringConfig",
    "Task",
    "Trajectory",
    "check_env",
    "completion_text",
    "list_envs",
    "load_env",
    "register_env",
    "reward_env",
    "score_trajectories",
]
