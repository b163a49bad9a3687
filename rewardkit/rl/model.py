"""Models for training: loading the policy, the frozen reference, PPO's value model, and the forward
passes that turn a batch of (prompt, completion) token ids into per-token log-probabilities (under the
policy or the KL reference) and values.

Layout of a micro-batch: prompts are LEFT-padded to the micro-batch's longest prompt and completions
RIGHT-padded to its longest completion, so completion token j of every row sits at the same column
and all per-token tensors are ``[B, T_completion]``. Each micro-batch is padded to its own longest
sequence, never to the global maximum.
"""

from __future__ import annotations

import copy
import inspect
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from rewardkit.models import load_model, weights_for_sync
from rewardkit.rl.algorithms import entropy_from_logits, logprobs_from_logits

__all__ = [
    "ValueModel",
    "completion_logits",
    "completion_logprobs",
    "completion_values",
    "frozen_copy",
    "load_policy",
    "pack",
    "reference_logprobs",
    "weights_for_sync",
]


def load_policy(
    model: str, tokenizer: str | None, dtype: str, gradient_checkpointing: bool, lora: dict | None
) -> tuple[Any, Any]:
    """The trainable policy and its tokenizer, from anything ``rewardkit.models.resolve_model`` accepts (a
    hub id, a model directory, a training run or checkpoint); a mistyped path fails before any loading."""
    policy, tok = load_model(model, tokenizer, dtype)
    if gradient_checkpointing:
        policy.gradient_checkpointing_enable()
        policy.config.use_cache = False
    if lora:
        from peft import LoraConfig, get_peft_model

        policy = get_peft_model(policy, LoraConfig(task_type="CAUSAL_LM", **lora))
    return policy, tok


def frozen_copy(model: nn.Module) -> nn.Module:
    """A reference model: a detached, eval-mode copy that never receives gradients."""
    ref = copy.deepcopy(model).eval()
    for p in ref.parameters():
        p.requires_grad_(False)
    return ref


class ValueModel(nn.Module):
    """PPO's critic: the policy's backbone (a separate copy) with a scalar head on each position."""

    def __init__(self, policy: nn.Module) -> None:
        super().__init__()
        base = policy.get_base_model() if hasattr(policy, "get_base_model") else policy
        self.backbone = copy.deepcopy(base.model)
        hidden = base.config.hidden_size
        self.head = nn.Linear(hidden, 1)
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)
        self.head.to(next(self.backbone.parameters()).dtype)

    def forward(self, input_ids: Tensor, attention_mask: Tensor, position_ids: Tensor) -> Tensor:
        hidden = self.backbone(
            input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids
        ).last_hidden_state
        return self.head(hidden).squeeze(-1).float()  # [B, L]


def pack(
    prompts: Sequence[Sequence[int]], completions: Sequence[Sequence[int]], pad_id: int, device: Any
) -> dict[str, Any]:
    """Left-pad prompts, right-pad completions; returns input ids, masks, positions and the split column."""
    P = max(len(p) for p in prompts)
    T = max(max(len(c) for c in completions), 1)
    B = len(prompts)
    input_ids = torch.full((B, P + T), pad_id, dtype=torch.long)
    attention = torch.zeros((B, P + T), dtype=torch.long)
    for i, (p, c) in enumerate(zip(prompts, completions)):
        input_ids[i, P - len(p) : P] = torch.tensor(p, dtype=torch.long)
        input_ids[i, P : P + len(c)] = torch.tensor(c, dtype=torch.long)
        attention[i, P - len(p) : P + len(c)] = 1
    position_ids = (attention.cumsum(-1) - 1).clamp(min=0)
    return {
        "input_ids": input_ids.to(device),
        "attention_mask": attention.to(device),
        "position_ids": position_ids.to(device),
        "prompt_len": P,
        "completion_len": T,
    }


def completion_logprobs(
    model: nn.Module,
    batch: dict[str, Any],
    temperature: float,
    with_entropy: bool,
    *,
    entropy_grad: bool = False,
) -> tuple[Tensor, Tensor | None]:
    """Log-probabilities [B, T] of the completion tokens under ``model`` at ``temperature`` (and entropy).

    The entropy [B, T] is a metric computed from detached logits unless ``entropy_grad``: an entropy bonus
    (``entropy_coef`` > 0) needs its gradient, which keeps a float32 log-softmax of every chunk of logits
    for the backward pass, so it is only paid for when the loss uses it."""
    P, T = batch["prompt_len"], batch["completion_len"]
    logits = completion_logits(model, batch)
    if temperature > 0 and temperature != 1.0:
        logits = logits / temperature  # the sampler drew from softmax(z / T): score the same distribution
    targets = batch["input_ids"][:, P : P + T]  # [B, T]
    logprobs = logprobs_from_logits(logits, targets)
    entropy = None
    if with_entropy:
        entropy = entropy_from_logits(logits if entropy_grad else logits.detach())  # [B, T]
    return logprobs, entropy


def completion_logits(model: nn.Module, batch: dict[str, Any]) -> Tensor:
    """Logits [B, T, V] at the positions that predict the completion tokens of a ``pack``-ed batch:
    position P-1+j predicts completion token j (the LM head runs on those positions only, where the model
    takes ``logits_to_keep``)."""
    P, T = batch["prompt_len"], batch["completion_len"]
    inputs = {k: batch[k] for k in ("input_ids", "attention_mask", "position_ids")}
    if _keeps_logits(model):  # the LM head only on the last T+1 positions, not on the prompt's
        return model(**inputs, logits_to_keep=T + 1).logits[:, :T, :]
    return model(**inputs).logits[:, P - 1 : P - 1 + T, :]


def _keeps_logits(model: nn.Module) -> bool:
    """Whether the model's forward takes ``logits_to_keep`` (most causal LMs of transformers >= 4.50;
    through a peft wrapper, its base model's)."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    try:
        return "logits_to_keep" in inspect.signature(base.forward).parameters
    except (TypeError, ValueError):
        return False


def reference_logprobs(
    policy: nn.Module, reference: nn.Module | None, batch: dict[str, Any], temperature: float
) -> Tensor:
    """Log-probabilities [B, T] under the KL reference: ``reference`` (a ``frozen_copy``), or when it is
    None (LoRA) the base model, i.e. ``policy`` with its adapters switched off for the pass."""
    if reference is not None:
        return completion_logprobs(reference, batch, temperature, False)[0]
    with policy.disable_adapter():
        return completion_logprobs(policy, batch, temperature, False)[0]


def completion_values(value_model: ValueModel, batch: dict[str, Any]) -> Tensor:
    """V(s_j) [B, T]: the critic's value of the state just before completion token j."""
    P, T = batch["prompt_len"], batch["completion_len"]
    values = value_model(batch["input_ids"], batch["attention_mask"], batch["position_ids"])  # [B, L]
    return values[:, P - 1 : P - 1 + T]
