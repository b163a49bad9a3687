"""How an evaluation runs (the suite says what to evaluate): one frozen dataclass, the source of the
``rewardkit eval`` flags."""

from __future__ import annotations

from dataclasses import dataclass

BACKENDS = ("hf", "vllm", "auto")


@dataclass(frozen=True)
class EvalConfig:
    """How to run an evaluation (the suite says what to evaluate)."""

    model: str
    """A training output directory, a checkpoint directory, a local Hugging Face model directory, or a hub id."""
    output_dir: str
    """Where rollouts.jsonl, summary.json, report.md, report.png and fingerprint.json go."""
    step: int | None = None
    """With a training output directory: the checkpoint step (None: the latest)."""
    backend: str = "hf"
    """``hf``, ``vllm``, or ``auto`` (vLLM when installed, as in training)."""
    dtype: str = "auto"
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
        if self.backend not in BACKENDS:
            raise ValueError(f"backend must be one of {BACKENDS}, got {self.backend!r}")
        if self.resume and self.overwrite:
            raise ValueError("--resume and --overwrite contradict each other; pick one")
