"""Models: where they live (hub ids, directories, training runs), loading, weight streams, tiny models.

Importing this package imports neither torch nor transformers; the functions that need them do.
"""

from rewardkit.models.loading import (
    ModelRef,
    checkpoint_dir,
    find_checkpoint,
    is_hub_id,
    latest_checkpoint,
    latest_model,
    load_model,
    load_tokenizer,
    merged_state_dict,
    resolve_dtype,
    resolve_model,
    resolve_tokenizer,
    save_model,
    token_decoder,
    weights_for_sync,
)

__all__ = [
    "ModelRef",
    "checkpoint_dir",
    "find_checkpoint",
    "is_hub_id",
    "latest_checkpoint",
    "latest_model",
    "load_model",
    "load_tokenizer",
    "merged_state_dict",
    "resolve_dtype",
    "resolve_model",
    "resolve_tokenizer",
    "save_model",
    "token_decoder",
    "weights_for_sync",
]
