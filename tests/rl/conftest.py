"""Fixtures shared by the training tests: the tiny "Say N:" Llama they train, built once per session."""

from __future__ import annotations

import pytest

SIZES = {
    "small": {"hidden_size": 32, "intermediate_size": 64, "num_layers": 1, "num_heads": 1},
    "base": {"hidden_size": 64, "intermediate_size": 128, "num_layers": 2, "num_heads": 2},
}
"""The two model sizes the tests use: ``small`` where only exactness matters, ``base`` where it must learn."""


@pytest.fixture(scope="session")
def say_model(tmp_path_factory):
    """``say_model(size, vocab=300)``: the directory of a random tiny Llama (``SIZES[size]``) whose tokenizer
    is trained on ``vocab`` lines of "Say i: ..." prompts; built once per session for each (size, vocab).
    Tests only read it (a run writes into its own ``output_dir``)."""
    pytest.importorskip("transformers")
    from rewardkit.models.tiny import TinyConfig, build_tiny

    built: dict[tuple[str, int], str] = {}

    def build(size: str, vocab: int = 300) -> str:
        if (size, vocab) not in built:
            path = tmp_path_factory.mktemp(f"say_{size}_{vocab}")
            corpus = [f"Say {i}: {i * 37 % 1000} {i} 7 77 abc" for i in range(vocab)]
            build_tiny(corpus, TinyConfig(vocab_size=vocab, **SIZES[size]), save_to=path)
            built[size, vocab] = str(path)
        return built[size, vocab]

    return build
