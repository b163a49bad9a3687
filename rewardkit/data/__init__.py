"""Task sources: a seeded procedural generator (``procedural``) and Hugging Face loaders (``hf``, needs ``datasets``)."""

from rewardkit.data.procedural import ProceduralConfig, generate_tasks

__all__ = ["ProceduralConfig", "generate_tasks"]
