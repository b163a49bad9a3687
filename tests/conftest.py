"""Shared test fixtures. Keep this file small: fixtures used by one test file live in that file."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("MKL_CBWR", "AUTO")  # as `import rewardkit` does, before any test module loads torch


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """In CI (REWARDKIT_NO_SKIP=1) every component is installed, so a skip means something is missing:
    report it as a failure. Only tests marked ``gpu`` may skip there (CI has no GPU)."""
    outcome = yield
    report = outcome.get_result()
    if os.environ.get("REWARDKIT_NO_SKIP") == "1" and report.skipped and "gpu" not in item.keywords:
        if not hasattr(report, "wasxfail"):
            report.outcome = "failed"
            report.longrepr = f"skipped, but CI provides every component: {report.longrepr}"


CHAT_TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}<|end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)
SPECIAL_TOKENS = ["<|pad|>", "<|end|>", "<|user|>", "<|assistant|>", "<|system|>"]
_CORPUS = [
    "<think>Two plus two is four.</think><answer>4</answer>",
    "Guess my number between 1 and 10. higher lower correct",
    "The quick brown fox jumps over the lazy dog. 0 1 2 3 4 5 6 7 8 9",
    "def add(a, b):\n    return a + b\n",
]


def build_tokenizer():
    """A byte-level BPE ``tokenizers.Tokenizer`` trained here on a few lines.

    Byte-level, so every string encodes and ``decode(encode(s)) == s``: the rollout tests compare
    decoded token spans with the scripted text exactly. No hub download is involved.
    """
    tokenizers = pytest.importorskip("tokenizers", reason="tokenizers is not installed")
    tok = tokenizers.Tokenizer(tokenizers.models.BPE())
    tok.pre_tokenizer = tokenizers.pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = tokenizers.decoders.ByteLevel()
    trainer = tokenizers.trainers.BpeTrainer(
        vocab_size=400,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=tokenizers.pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_CORPUS * 4, trainer)
    return tok


@pytest.fixture(scope="session")
def tokenizer_json(tmp_path_factory: pytest.TempPathFactory) -> str:
    """Path of a ``tokenizer.json`` made on the spot (for token-counted length budgets)."""
    path = tmp_path_factory.mktemp("tokenizer") / "tokenizer.json"
    build_tokenizer().save(str(path))
    return str(path)


@pytest.fixture(scope="session")
def hf_tokenizer():
    """The same tokenizer as a ``transformers`` fast tokenizer, with a small chat template."""
    transformers = pytest.importorskip("transformers", reason="transformers is not installed ([train] extra)")
    tok = transformers.PreTrainedTokenizerFast(
        tokenizer_object=build_tokenizer(), pad_token="<|pad|>", eos_token="<|end|>"
    )
    tok.chat_template = CHAT_TEMPLATE
    return tok
