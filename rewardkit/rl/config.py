"""Training configuration: one frozen dataclass, read from YAML and ``--set key=value`` overrides.

Every field has a docstring; ``rewardkit train --help-config`` prints them. Algorithm knobs live in
``rewardkit.rl.algorithms.AlgorithmConfig`` and are chosen by ``algorithm`` (a preset) plus ``algo``
(overrides of single fields), so the trainer never branches on the algorithm's name.
"""

from __future__ import annotations

import dataclasses
import inspect
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from rewardkit.rl.algorithms import AlgorithmConfig, preset


@dataclass(frozen=True)
class TrainConfig:
    # ---- what to train, against what ----
    model: str = ""
    """Hugging Face model id or local directory of the policy (a causal LM), or ``tiny``: a random tiny
    Llama built on the spot (tokenizer trained on the tasks), for CPU smoke runs with no download."""
    tokenizer: str | None = None
    """Tokenizer id or directory; defaults to ``model``."""
    env: str = "math"
    """Registered environment name (see ``rewardkit envs``)."""
    env_config: dict[str, Any] = field(default_factory=dict)
    """Keyword config passed to ``load_env``."""
    train_split: str = "train"
    """Split of ``env.tasks()`` to train on."""
    max_tasks: int | None = None
    """Use only the first N tasks of the split (None: all)."""

    # ---- algorithm ----
    algorithm: str = "grpo"
    """Preset: grpo, dr_grpo, dapo, rloo, ppo, reinforce_pp (see docs/algorithms.md)."""
    algo: dict[str, Any] = field(default_factory=dict)
    """Overrides of single AlgorithmConfig fields, e.g. ``{kl_coef: 0.0, clip_eps_high: 0.28}``."""

    # ---- rollout ----
    rollout_backend: str = "hf"
    """``hf`` (Hugging Face generate, runs anywhere), ``vllm``, or ``auto`` (vllm when installed)."""
    prompts_per_step: int = 8
    """Groups (prompts) per optimizer step, after dynamic-sampling filtering."""
    group_size: int = 8
    """Samples per prompt (G)."""
    max_new_tokens: int = 128
    """Token budget of one policy turn; overlong shaping counts against it."""
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0
    stop: tuple[str, ...] = ()
    """Stop strings for generation (the match is kept in the sample)."""
    max_sampling_rounds: int = 4
    """Dynamic sampling: at most this many generation rounds per step; then train on what there is."""
    rollout_batch_size: int = 64
    """Sequences generated per forward pass by the hf back end."""
    vllm: dict[str, Any] = field(default_factory=dict)
    """Options for the vLLM back end (gpu_memory_utilization, enable_sleep_mode, max_model_len, ...)."""
    is_correction: str = "token"
    """Sampler/trainer log-prob mismatch correction: ``token`` or ``sequence`` truncated importance
    sampling, or ``none``. Only matters when the sampler is not the trained module (vLLM)."""
    is_cap: float = 2.0
    """Cap C of the truncated importance weight min(pi_train / pi_sampler, C)."""

    # ---- optimisation ----
    steps: int = 100
    """Optimizer-step rounds: each collects one rollout batch and trains on it."""
    num_iterations: int = 1
    """PPO epochs over each rollout batch (mu in the GRPO paper)."""
    mini_batches: int = 1
    """Optimizer steps per epoch: the rollout batch is cut into this many mini-batches."""
    micro_batch_size: int = 16
    """Sequences per forward/backward pass (gradient accumulation inside a mini-batch)."""
    lr: float = 1e-5
    weight_decay: float = 0.0
    adam_betas: tuple[float, float] = (0.9, 0.999)
    max_grad_norm: float = 1.0
    warmup_steps: int = 0
    lr_schedule: str = "constant"
    """``constant`` or ``cosine`` (after warm-up)."""
    value_lr: float | None = None
    """Learning rate of PPO's value model (default: ``lr``)."""

    # ---- memory ----
    dtype: str = "auto"
    """``auto`` (bf16 on GPU, fp32 on CPU), ``bf16``, ``fp32``."""
    gradient_checkpointing: bool = False
    lora: dict[str, Any] | None = None
    """peft LoraConfig fields (r, lora_alpha, target_modules, ...) to train LoRA adapters only."""

    # ---- bookkeeping ----
    output_dir: str = "runs/rewardkit"
    seed: int = 0
    save_every: int = 50
    """Checkpoint every N steps (and at the end, and on Ctrl-C). 0: only at the end."""
    keep_checkpoints: int = 2
    sample_every: int = 10
    """Write the step's rollouts to ``rollouts/step_N.jsonl`` every N steps (0: never)."""
    report_to: tuple[str, ...] = ()
    """Extra loggers when installed: tensorboard, wandb, trackio."""
    progress: bool = True
    """Show a live progress bar."""

    def __post_init__(self) -> None:
        checks = [
            (bool(self.model), "model is required (a Hugging Face id or local directory)"),
            (
                self.rollout_backend in ("hf", "vllm", "auto"),
                f"rollout_backend must be hf, vllm or auto, got {self.rollout_backend!r}",
            ),
            (
                self.group_size >= 1 and self.prompts_per_step >= 1,
                "group_size and prompts_per_step must be >= 1",
            ),
            (self.max_new_tokens >= 1, "max_new_tokens must be >= 1"),
            (self.steps >= 0 and self.num_iterations >= 1, "steps must be >= 0 and num_iterations >= 1"),
            (
                self.mini_batches >= 1 and self.micro_batch_size >= 1,
                "mini_batches and micro_batch_size must be >= 1",
            ),
            (self.max_sampling_rounds >= 1, "max_sampling_rounds must be >= 1"),
            (
                self.lr_schedule in ("constant", "cosine"),
                f"lr_schedule must be constant or cosine, got {self.lr_schedule!r}",
            ),
            (self.dtype in ("auto", "bf16", "fp32"), f"dtype must be auto, bf16 or fp32, got {self.dtype!r}"),
            (
                self.is_correction in ("token", "sequence", "none"),
                "is_correction must be token, sequence or none",
            ),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(message)
        self.algorithm_config  # noqa: B018 - validate the algorithm preset and overrides now

    @property
    def algorithm_config(self) -> AlgorithmConfig:
        return preset(self.algorithm, **self.algo)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        known = {f.name: f for f in fields(cls)}
        unknown = sorted(set(data) - set(known))
        if unknown:
            raise ValueError(f"unknown config key(s) {unknown}; known: {', '.join(sorted(known))}")
        clean = {
            k: tuple(v) if isinstance(v, list) and known[k].type.startswith("tuple") else v
            for k, v in data.items()
        }
        return cls(**clean)

    @classmethod
    def from_yaml(cls, path: str | Path, overrides: dict[str, Any] | None = None) -> TrainConfig:
        data = yaml.safe_load(Path(path).read_text()) or {}
        if not isinstance(data, dict):
            raise ValueError(f"{path}: expected a mapping of config keys")
        return cls.from_dict(_merge(data, overrides or {}))


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in extra.items():
        out[key] = (
            _merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
        )
    return out


def describe() -> str:
    """Each config field with its default and docstring: the text of ``--help-config``."""
    source = inspect.getsource(TrainConfig)
    lines = []
    for f in fields(TrainConfig):
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
        doc = ""
        marker = f"    {f.name}:"
        if marker in source:
            after = source.split(marker, 1)[1].split("\n", 2)
            if len(after) > 1 and after[1].strip().startswith('"""'):
                doc = after[1].strip().strip('"')
        lines.append(f"{f.name} = {default!r}" + (f"\n    {doc}" if doc else ""))
    return "\n".join(lines)
