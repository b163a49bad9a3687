"""Training engine: algorithms (advantages, losses, KL), sampling, rollout back ends, trainer, checkpoints.

Kept free of imports so that `import rewardkit.rl.<module>` pays only for what it uses.
"""
