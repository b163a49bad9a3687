"""Models: where they live (hub ids, directories, training runs), loading, weight streams, tiny models.

Importing this package imports neither torch nor transformers; the functions that need them do.
"""

from rewardkit.models.loading import (
    ModelRef,
    checkpoint_dir,
    find_checkpoint,
    latest_checkpoint,
    load_model,
    resolve_dtype,
    resolve_model,
    weights_for_sync,
)

__all__ = [
    "ModelRef",
    "checkpoint_dir",
    "find_checkpoint",
    "latest_checkpoint",
    "load_model",
    "resolve_dtype",
    "resolve_model",
    "weights_for_sync",
]
