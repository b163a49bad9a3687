"""Reward models: a sequence classifier with one output that scores (prompt, completion) texts.

Shared by ``rewardkit rm`` (``rewardkit.rl.reward_model``, which trains one) and the ``reward_model``
environment (which scores with one).
"""

from __future__ import annotations

from typing import Any


def render(tokenizer: Any, prompt: Any, completion: Any) -> str:
    """The text a reward model reads: a chat conversation through the tokenizer's template (prompt
    messages, then the completion's), or plain prompt + completion."""
    if isinstance(prompt, str) and isinstance(completion, str):
        return prompt + completion
    messages = list(prompt) if not isinstance(prompt, str) else [{"role": "user", "content": prompt}]
    if isinstance(completion, str):
        messages.append({"role": "assistant", "content": completion})
    else:
        messages += list(completion)
    return tokenizer.apply_chat_template(messages, tokenize=False)


def load_reward_model(path: str, dtype: str = "auto") -> tuple[Any, Any]:
    """A sequence classifier with one output and its tokenizer (padding on the left, a pad token set)."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(path)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "left"  # the score is read at the last position
    device = "cuda" if torch.cuda.is_available() else "cpu"
    torch_dtype = (
        torch.bfloat16 if dtype == "bf16" or (dtype == "auto" and device == "cuda") else torch.float32
    )
    model = AutoModelForSequenceClassification.from_pretrained(path, num_labels=1, dtype=torch_dtype)
    model.config.pad_token_id = tokenizer.pad_token_id
    return model.to(device), tokenizer


def scores(model: Any, tokenizer: Any, texts: list[str], max_length: int) -> Any:
    """[B] reward scores of ``texts`` (one forward pass; gradients flow when enabled)."""
    tokenizer.truncation_side = "left"
    batch = tokenizer(texts, return_tensors="pt", padding=True, truncation=True, max_length=max_length)
    batch = {k: v.to(model.device) for k, v in batch.items()}
    return model(**batch).logits[:, 0].float()
