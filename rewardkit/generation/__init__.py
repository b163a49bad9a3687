"""Rollout back ends behind one ``Generator`` protocol (``base.py``): Hugging Face (``hf.py``) and vLLM.

``make_generator`` is the one entry point the trainer needs. Importing this package imports neither
torch nor vLLM; the chosen back end is imported when it is built.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import logging
from typing import Any

from rewardkit.generation.base import FinishReason, Generation, Generator, SamplingParams

__all__ = ["FinishReason", "Generation", "Generator", "SamplingParams", "make_generator", "resolve_backend"]

log = logging.getLogger(__name__)

BACKENDS = ("hf", "vllm", "auto")


def resolve_backend(backend: str) -> str:
    """``auto`` -> ``vllm`` when vLLM is installed, else ``hf``; other names are checked and returned."""
    if backend not in BACKENDS:
        raise ValueError(f"unknown rollout backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    if backend == "auto":
        return "vllm" if importlib.util.find_spec("vllm") is not None else "hf"
    return backend


def make_generator(backend: str, model: Any, tokenizer: Any, **opts: Any) -> Generator:
    """Build a rollout back end over ``model`` (an HF causal LM; vLLM also takes a checkpoint path).

    ``opts`` are fields of ``HFGeneratorConfig`` or ``VLLMGeneratorConfig``. Fields that belong only to
    the other back end are ignored (so one config can serve ``auto``); unknown names raise.
    """
    from rewardkit.generation.hf import HFGeneratorConfig
    from rewardkit.generation.vllm import VLLMGeneratorConfig

    chosen = resolve_backend(backend)
    config_cls, other_cls = (
        (HFGeneratorConfig, VLLMGeneratorConfig)
        if chosen == "hf"
        else (VLLMGeneratorConfig, HFGeneratorConfig)
    )
    own = {f.name for f in dataclasses.fields(config_cls)}
    other = {f.name for f in dataclasses.fields(other_cls)}
    unknown = sorted(set(opts) - own - other)
    if unknown:
        raise TypeError(
            f"unknown {chosen} rollout option(s) {unknown}; valid: {sorted(own)} "
            f"(and, ignored here, the other back end's: {sorted(other - own)})"
        )
    ignored = sorted(set(opts) - own)
    if ignored:
        log.info("rollout backend %s ignores options meant for the other back end: %s", chosen, ignored)
    config = config_cls(**{k: v for k, v in opts.items() if k in own})
    if chosen == "hf":
        from rewardkit.generation.hf import HFGenerator

        return HFGenerator(model, tokenizer, config)
    from rewardkit.generation.vllm import VLLMGenerator

    return VLLMGenerator(model, tokenizer, config)
