"""How an evaluation runs (the suite says what to evaluate): one frozen dataclass, the source of the
``rewardkit eval`` running flags (``rewardkit.config.add_arguments``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, get_args

from rewardkit.config import ConfigError, bad_value, check_choices, check_ranges

Backend = Literal["hf", "vllm", "auto"]
BACKENDS: tuple[str, ...] = get_args(Backend)


@dataclass(frozen=True)
class EvalConfig:
    """How to run an evaluation (the suite says what to evaluate)."""

    model: str
    """A training output directory (its latest checkpoint, or ``step``), a checkpoint directory, a local
    Hugging Face model directory, or a hub id."""
    output_dir: str
    """Where rollouts.jsonl, summary.json, report.md, report.png and fingerprint.json go."""
    step: int | None = None
    """With a training output directory: the checkpoint step (None: the latest)."""
    backend: Backend = "hf"
    """``hf``, ``vllm``, or ``auto`` (vLLM when installed, as in training)."""
    dtype: Literal["auto", "bf16", "fp32"] = "auto"
    """Weights dtype for the ``hf`` back end: ``auto`` (bf16 on GPU, fp32 on CPU), ``bf16``, ``fp32``."""
    max_batch_size: int = 64
    """``hf`` back end: most (prompt x sample) rows per forward pass."""
    resume: bool = False
    """Continue the results already in ``output_dir`` (refused when the setup differs)."""
    overwrite: bool = False
    """Delete results already in ``output_dir`` and start again."""
    progress: bool = True
    """Show tqdm progress bars (on stderr)."""

    def __post_init__(self) -> None:
        check_choices(self, where="eval config")
        if not self.model:
            raise bad_value(
                "eval config", "model", self.model, "a run directory, checkpoint, model directory or hub id"
            )
        check_ranges(self, {"max_batch_size": ">= 1", "step": ">= 0"}, where="eval config")
        if self.resume and self.overwrite:
            raise ConfigError("--resume and --overwrite contradict each other; pick one")
