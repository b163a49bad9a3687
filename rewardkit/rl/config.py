"""Training configuration: one frozen dataclass, read from YAML and ``--set key=value`` overrides.

Every field has a docstring; ``rewardkit train --help-config`` prints them (``rewardkit.config.describe``),
and ``TrainConfig.from_dict`` checks keys and values against the annotations (``rewardkit.config.build``).
Algorithm knobs live in ``rewardkit.rl.algorithms.AlgorithmConfig`` and are chosen by ``algorithm`` (the
preset's name) plus ``algo`` (overrides of single AlgorithmConfig fields), so the trainer never branches
on the algorithm's name. ``algorithm`` may also be a mapping ``{name: dapo, clip_eps_high: 0.3}``: its
``name`` is the preset and its other keys go into ``algo``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from rewardkit.config import ConfigError, build, check_choices, load_yaml, suggest
from rewardkit.config import describe as describe_fields
from rewardkit.rl.algorithms import ALGORITHM_PRESETS, AlgorithmConfig

WHERE = "train config"


@dataclass(frozen=True)
class TrainConfig:
    """One training run: the policy, the environment, the algorithm, rollouts, optimisation, bookkeeping."""

    # ---- what to train, against what ----
    model: str = ""
    """Hugging Face model id or local directory of the policy (a causal LM), or ``tiny``: a random tiny
    Llama built on the spot (tokenizer trained on the tasks), for CPU smoke runs with no download.
    Required."""
    tokenizer: str | None = None
    """Tokenizer id or directory; None: the one of ``model``."""
    env: str = "math"
    """Registered environment name (see ``rewardkit envs``)."""
    env_config: dict[str, Any] = field(default_factory=dict)
    """Keyword config passed to ``load_env`` (the environment's own config keys)."""
    train_split: str = "train"
    """Split of ``env.tasks()`` to train on."""
    max_tasks: int | None = None
    """Use only the first N tasks of the split (None: all)."""

    # ---- algorithm ----
    algorithm: str = "grpo"
    """Name of the algorithm preset: grpo, dr_grpo, dapo, rloo, ppo, reinforce_pp (see
    docs/algorithms.md). A preset is a set of AlgorithmConfig values; change single ones with ``algo``.
    Also accepted: a mapping ``{name: PRESET, FIELD: VALUE, ...}``, whose other keys go into ``algo``."""
    algo: dict[str, Any] = field(default_factory=dict)
    """Overrides of single AlgorithmConfig fields on top of the ``algorithm`` preset, e.g.
    ``{kl_coef: 0.0, clip_eps_high: 0.28}`` (not a preset name: the ``algo.*`` keys below list them)."""

    # ---- rollout ----
    rollout_backend: Literal["hf", "vllm", "auto"] = "hf"
    """``hf`` (Hugging Face generate, runs anywhere), ``vllm``, or ``auto`` (vllm when installed)."""
    prompts_per_step: int = 8
    """Groups (prompts) per optimizer step, after dynamic-sampling filtering."""
    group_size: int = 8
    """Samples per prompt (G)."""
    max_new_tokens: int = 128
    """Token budget of one policy turn; overlong shaping counts against it."""
    temperature: float = 1.0
    """Sampling temperature of the rollouts; the trainer scores log-probs at the same temperature, so the
    loss sees the distribution that was sampled. 0: greedy (not useful for group-relative algorithms)."""
    top_p: float = 1.0
    """Nucleus sampling in (0, 1]: keep the smallest set of tokens whose probability reaches this. 1.0
    keeps all; below 1 the samples leave the policy's distribution (an off-policy bias)."""
    top_k: int = 0
    """Sample only among the k most likely tokens; 0 disables top-k (the default, for unbiased RL)."""
    stop: tuple[str, ...] = ()
    """Stop strings for generation (the match is kept in the sample)."""
    max_sampling_rounds: int = 4
    """Dynamic sampling: at most this many generation rounds per step; then train on what there is."""
    rollout_batch_size: int = 64
    """Sequences generated per forward pass by the hf back end."""
    vllm: dict[str, Any] = field(default_factory=dict)
    """Options for the vLLM back end (gpu_memory_utilization, enable_sleep_mode, max_model_len, ...)."""
    is_correction: Literal["token", "sequence", "none"] = "token"
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
    """Peak learning rate of the policy's AdamW optimizer (reached after warm-up)."""
    weight_decay: float = 0.0
    """AdamW decoupled weight decay."""
    adam_betas: tuple[float, float] = (0.9, 0.999)
    """AdamW (beta1, beta2): decay rates of the gradient's first and second moment estimates."""
    max_grad_norm: float = 1.0
    """Gradients are clipped to this global L2 norm before each optimizer step (the norm is logged)."""
    warmup_steps: int = 0
    """Linear learning-rate warm-up over this many steps (rounds, as ``steps``); 0: none."""
    lr_schedule: Literal["constant", "cosine"] = "constant"
    """``constant`` or ``cosine`` decay to 0 at the last step (after warm-up)."""
    value_lr: float | None = None
    """Learning rate of PPO's value model (None: ``lr``)."""

    # ---- memory ----
    dtype: Literal["auto", "bf16", "fp32"] = "auto"
    """``auto`` (bf16 on GPU, fp32 on CPU), ``bf16``, ``fp32``."""
    gradient_checkpointing: bool = False
    """Recompute activations in the backward pass instead of storing them: less memory, ~30% slower."""
    lora: dict[str, Any] | None = None
    """peft LoraConfig fields (r, lora_alpha, target_modules, ...) to train LoRA adapters only.
    None: train all weights."""

    # ---- bookkeeping ----
    output_dir: str = "runs/rewardkit"
    """Directory of the run: metrics.jsonl, config.yaml, checkpoints/ and rollouts/."""
    seed: int = 0
    """Seed of everything random: model init (``tiny``), prompt order, sampling, mini-batch shuffling."""
    save_every: int = 50
    """Checkpoint every N steps (and at the end, and on Ctrl-C). 0: only at the end."""
    keep_checkpoints: int = 2
    """Keep only the newest N checkpoints, deleting older ones; 0: keep all."""
    sample_every: int = 10
    """Write the step's rollouts to ``rollouts/step_N.jsonl`` every N steps (0: never)."""
    report_to: tuple[Literal["tensorboard", "wandb", "trackio"], ...] = ()
    """Extra loggers when installed: tensorboard, wandb, trackio (metrics.jsonl is always written)."""
    progress: bool = True
    """Show a live progress bar."""

    def __post_init__(self) -> None:
        check_choices(self, where=WHERE)
        checks = [
            (bool(self.model), "model is required (a Hugging Face id, a local directory, or tiny)"),
            (self.group_size >= 1, f"group_size must be >= 1, got {self.group_size}"),
            (self.prompts_per_step >= 1, f"prompts_per_step must be >= 1, got {self.prompts_per_step}"),
            (self.max_new_tokens >= 1, f"max_new_tokens must be >= 1, got {self.max_new_tokens}"),
            (self.temperature >= 0, f"temperature must be >= 0, got {self.temperature}"),
            (0 < self.top_p <= 1, f"top_p must be in (0, 1], got {self.top_p}"),
            (self.steps >= 0, f"steps must be >= 0, got {self.steps}"),
            (self.num_iterations >= 1, f"num_iterations must be >= 1, got {self.num_iterations}"),
            (self.mini_batches >= 1, f"mini_batches must be >= 1, got {self.mini_batches}"),
            (self.micro_batch_size >= 1, f"micro_batch_size must be >= 1, got {self.micro_batch_size}"),
            (
                self.max_sampling_rounds >= 1,
                f"max_sampling_rounds must be >= 1, got {self.max_sampling_rounds}",
            ),
        ]
        for ok, message in checks:
            if not ok:
                raise ConfigError(f"{WHERE}: {message}")
        self.algorithm_config  # noqa: B018 - validate the algorithm preset and overrides now

    @property
    def algorithm_config(self) -> AlgorithmConfig:
        """The ``algorithm`` preset with the ``algo`` overrides applied, keys and values checked."""
        if self.algorithm not in ALGORITHM_PRESETS:
            raise ConfigError(
                f"{WHERE}: algorithm must be one of {', '.join(sorted(ALGORITHM_PRESETS))}, "
                f"got {self.algorithm!r}{suggest(self.algorithm, ALGORITHM_PRESETS)}"
            )
        values = {**ALGORITHM_PRESETS[self.algorithm], **self.algo}
        return build(
            AlgorithmConfig, values, where=f"{WHERE} algo (overrides of the {self.algorithm} preset)"
        )

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TrainConfig:
        """A config from a mapping of field names (YAML's), keys and values checked; see the module doc."""
        return build(cls, _split_algorithm(data), where=WHERE)

    @classmethod
    def from_yaml(cls, path: str | Path, overrides: Mapping[str, Any] | None = None) -> TrainConfig:
        """A config from a YAML file, with ``overrides`` (``--set`` pairs, nested dicts) merged on top."""
        data = load_yaml(Path(path).read_text()) or {}
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: expected a mapping of config keys")
        return cls.from_dict(_merge(_split_algorithm(data), _split_algorithm(overrides or {})))


def _split_algorithm(data: Mapping[str, Any]) -> dict[str, Any]:
    """``algorithm: {name: P, k: v}`` -> ``algorithm: P`` and ``algo: {k: v}`` (``algo``'s own keys kept)."""
    out = dict(data)
    spec = out.get("algorithm")
    if not isinstance(spec, Mapping):
        return out
    spec = dict(spec)
    if "name" in spec:
        out["algorithm"] = spec.pop("name")
    else:
        del out["algorithm"]  # only overrides: the preset stays (the default, or the YAML's when merged)
    algo = out.get("algo") or {}
    if isinstance(algo, Mapping):
        clash = sorted(set(spec) & set(algo))
        if clash:
            raise ConfigError(f"{WHERE}: {clash} given both under algorithm and under algo; keep one")
        out["algo"] = {**spec, **algo}
    return out


def _merge(base: dict[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in extra.items():
        out[key] = (
            _merge(out[key], value)
            if isinstance(value, Mapping) and isinstance(out.get(key), dict)
            else value
        )
    return out


def describe() -> str:
    """Each config field with its type, default and docstring, then the ``algo.*`` keys: ``--help-config``."""
    return (
        "TrainConfig keys (YAML, or --set key=value; nested keys as --set env_config.levels=[1]):\n\n"
        f"{describe_fields(TrainConfig)}\n\n"
        "algo.* keys: AlgorithmConfig fields, each overriding the preset named by `algorithm`\n"
        "(defaults below are AlgorithmConfig's; each preset sets some of them, see docs/algorithms.md):\n\n"
        f"{describe_fields(AlgorithmConfig, prefix='algo.')}"
    )
