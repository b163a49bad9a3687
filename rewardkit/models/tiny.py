"""Tiny causal language models built on the spot: for the CPU demo, tests and benchmarks.

Nothing is downloaded: a byte-level BPE tokenizer is trained on a corpus you pass (digits are split
one per token, which small models need for arithmetic), and a Llama-style model is initialised at
random from a config. The result is an ordinary Hugging Face model directory, so every code path that
loads a hub model (``AutoModelForCausalLM.from_pretrained``) is exercised on it unchanged.

``tiny_model_for(tasks, path)`` is what ``model: tiny`` in a training config means: a tiny model whose
tokenizer is trained on the tasks themselves, built once under the run's directory.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rewardkit.types import Task

SPECIAL_TOKENS = ("<pad>", "<s>", "</s>", "<|im_start|>", "<|im_end|>")

# A ChatML-style template so chat prompts and multi-turn environments work with tiny models too.
CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


@dataclass(frozen=True)
class TinyConfig:
    """Size of a tiny Llama. head_dim = hidden_size / num_heads must be >= 32 for vLLM's kernels."""

    vocab_size: int = 512
    """Target BPE vocabulary (the trained tokenizer may be smaller)."""
    hidden_size: int = 128
    """Width of the residual stream (and of the tied input/output embeddings)."""
    intermediate_size: int = 384
    """Width of each layer's SwiGLU feed-forward block."""
    num_layers: int = 4
    """Decoder layers."""
    num_heads: int = 4
    """Attention heads, each of hidden_size / num_heads dimensions (no grouped-query sharing)."""
    max_position_embeddings: int = 512
    """Longest sequence (prompt + completion) the rotary embeddings are configured for."""
    seed: int = 0
    """Seed of the random initialisation (``torch.manual_seed`` right before the model is built)."""


def train_tokenizer(corpus: Iterable[str], vocab_size: int = 512) -> Any:
    """A byte-level BPE tokenizer trained on ``corpus``, as a ``PreTrainedTokenizerFast``."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Digits(individual_digits=True), pre_tokenizers.ByteLevel(add_prefix_space=False)]
    )
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(corpus, trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token="<pad>", bos_token="<s>", eos_token="</s>", padding_side="left"
    )
    fast.chat_template = CHAT_TEMPLATE
    return fast


def build_model(tokenizer: Any, config: TinyConfig = TinyConfig()) -> Any:
    """A randomly initialised ``LlamaForCausalLM`` sized by ``config`` for ``tokenizer``."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    if config.hidden_size // config.num_heads < 32:
        raise ValueError("head_dim (hidden_size / num_heads) must be >= 32 for vLLM")
    torch.manual_seed(config.seed)
    llama = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=config.hidden_size,
        intermediate_size=config.intermediate_size,
        num_hidden_layers=config.num_layers,
        num_attention_heads=config.num_heads,
        num_key_value_heads=config.num_heads,
        max_position_embeddings=config.max_position_embeddings,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=True,
    )
    return LlamaForCausalLM(llama)


def build_tiny(
    corpus: Iterable[str], config: TinyConfig = TinyConfig(), save_to: str | Path | None = None
) -> tuple[Any, Any]:
    """Train a tokenizer on ``corpus`` and build a model for it; optionally save both to ``save_to``."""
    tokenizer = train_tokenizer(corpus, config.vocab_size)
    model = build_model(tokenizer, config)
    if save_to is not None:
        Path(save_to).mkdir(parents=True, exist_ok=True)
        model.save_pretrained(save_to)
        tokenizer.save_pretrained(save_to)
    return model, tokenizer


def tiny_model_for(tasks: Sequence[Task], path: str | Path, seed: int = 0) -> str:
    """A random tiny Llama for ``tasks``, saved at ``path`` (reused if already there); returns ``path``.

    Its tokenizer is trained on the prompts and answers of the first 2000 tasks in the answer format the
    example environments reward, so every example config runs on a CPU with nothing downloaded."""
    path = Path(path)
    if not (path / "config.json").exists():
        corpus = [
            f"{t.prompt if isinstance(t.prompt, str) else str(t.prompt)} <think></think><answer>{t.answer}</answer>"
            for t in tasks[:2000]
        ]
        # built beside and renamed into place: a process killed mid-save leaves no half model to reuse
        tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
        shutil.rmtree(tmp, ignore_errors=True)
        build_tiny(corpus, TinyConfig(seed=seed), save_to=tmp)
        shutil.rmtree(path, ignore_errors=True)
        os.replace(tmp, path)
    return str(path)
