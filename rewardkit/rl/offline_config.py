"""The config of the offline stages: ``rewardkit sft`` and ``rewardkit train`` with a preference algorithm.

One frozen dataclass, read from YAML and ``--set`` overrides like ``TrainConfig``, with the same names for
the same things (``model``, ``lora``, ``lr``, ``warmup_steps``, ``output_dir``, ``save_every``, ...). What
differs is the data: a file (or dataset) of finished examples rather than prompts to roll out, and the
loss, ``algorithm``: ``sft`` or one of ``rewardkit.rl.preference.PREFERENCE_LOSSES``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from rewardkit.config import ConfigError, bad_value, build, check_choices, check_ranges, load_yaml
from rewardkit.rl.preference import PREFERENCE_LOSSES, PreferenceConfig

WHERE = "offline config"

OFFLINE_ALGORITHMS = ("sft", *PREFERENCE_LOSSES)
"""``sft`` and every preference loss: the ``algorithm`` values that select the offline trainer."""

NEEDS_REFERENCE = frozenset({"dpo", "ipo", "kto"})
"""The losses with a frozen reference model (the others are reference-free)."""


@dataclass(frozen=True)
class OnlineConfig:
    """Online (iterative) DPO: every ``every`` steps, fresh pairs sampled from the current policy."""

    env: str = "math"
    """The registered environment that scores the samples (``rewardkit envs``)."""
    env_config: dict[str, Any] = field(default_factory=dict)
    """Keyword config of the environment."""
    every: int = 10
    """Re-sample the pairs every K optimizer steps (and before the first)."""
    prompts: int = 32
    """Prompts sampled per round (drawn in turn from the data's prompts)."""
    samples: int = 4
    """Completions per prompt, ranked by the environment's reward: the best and the worst make a pair."""
    min_margin: float = 0.0
    """Keep a pair only when the best reward exceeds the worst by more than this."""
    max_new_tokens: int = 128
    """Token budget of a sampled completion."""
    temperature: float = 1.0
    """Sampling temperature of the rounds."""

    def __post_init__(self) -> None:
        check_ranges(
            self,
            {"every": ">= 1", "prompts": ">= 1", "samples": ">= 2", "max_new_tokens": ">= 1"},
            where=WHERE + " online",
        )
        if self.temperature <= 0:
            raise bad_value(
                WHERE, "online.temperature", self.temperature, "> 0 (greedy samples are all equal)"
            )


@dataclass(frozen=True)
class OfflineConfig:
    """One offline training run: supervised fine-tuning or a preference loss, on a dataset of examples."""

    # ---- what to train, on what ----
    model: str = ""
    """Hugging Face model id or local directory of the model (a causal LM), a training run or checkpoint
    (``rewardkit.models.resolve_model``). Required."""
    tokenizer: str | None = None
    """Tokenizer id or directory; None: the one of ``model``."""
    algorithm: str = "sft"
    """``sft`` (next-token loss on the completion tokens), or a preference loss: dpo, ipo, simpo, orpo, kto,
    rrhf (``rewardkit.rl.preference``; conservative DPO is dpo with ``loss.label_smoothing``)."""
    loss: PreferenceConfig = field(default_factory=PreferenceConfig)
    """The preference loss's hyper-parameters: ``beta``, ``label_smoothing``, ``simpo_gamma``, ... (the
    ``loss.*`` keys below)."""
    data: str = ""
    """The examples: a .jsonl/.json/.parquet/.csv file, or a dataset id or folder (``datasets``). SFT reads
    ``prompt_field`` + ``completion_field`` or ``messages_field``; dpo, ipo, simpo, orpo read prompt,
    chosen, rejected (``rewardkit pairs`` writes them); kto reads prompt + completion with ``label_field``
    or ``score_field``, or a pairs file; rrhf reads prompt + ``responses_field`` + ``scores_field``, or a
    pairs file (two responses each). Required."""
    data_name: str | None = None
    """The dataset's configuration name (hub datasets only)."""
    data_split: str = "train"
    """The dataset split (hub datasets only; a local file is read whole)."""
    eval_data: str | None = None
    """Held-out examples in the same format; None: ``eval_fraction`` of ``data`` is held out."""
    eval_fraction: float = 0.05
    """Share of ``data`` held out (picked by ``seed``) when ``eval_data`` is None; 0: no held-out set."""
    max_examples: int | None = None
    """Use only the first N examples of ``data`` (None: all)."""
    prompt_field: str = "prompt"
    """Column with the prompt: a string, or a list of chat messages (the tokenizer's chat template)."""
    completion_field: str = "completion"
    """SFT and KTO: the column with the completion (a string, or an assistant message / message list)."""
    messages_field: str = "messages"
    """SFT: a column with a whole conversation, used when the row has no ``prompt_field``: the last
    message (an assistant's) is the completion, the ones before it the prompt."""
    chosen_field: str = "chosen"
    """Preference pairs: the preferred completion's column."""
    rejected_field: str = "rejected"
    """Preference pairs: the other completion's column."""
    label_field: str = "label"
    """KTO: a boolean column, True for a desirable completion."""
    score_field: str = "reward"
    """KTO: a numeric column (the verifier's score), used when the row has no ``label_field``: the
    completion is desirable when its score is at least ``kto_threshold``."""
    kto_threshold: float = 1.0
    """KTO: the score from which a completion counts as desirable (scores of a pairs file too)."""
    responses_field: str = "responses"
    """RRHF: a column with a list of completions of the prompt."""
    scores_field: str = "scores"
    """RRHF: a column with their scores (the verifier's), one per response."""

    # ---- sequences ----
    max_length: int = 1024
    """Tokens of prompt + completion kept: the prompt is cut from the left down to ``max_prompt_length``,
    then the completion from the right."""
    max_prompt_length: int = 512
    """Most prompt tokens kept (its last ones)."""
    packing: bool = False
    """SFT: pack several examples into each row of up to ``max_length`` tokens (fewer pad tokens, fewer
    forward passes). Position ids restart at each example and transformers' masks keep attention
    within it (tested: the loss equals the unpacked one)."""

    # ---- optimisation ----
    steps: int = 100
    """Optimizer steps (the examples are cycled through, reshuffled each epoch)."""
    batch_size: int = 16
    """Examples (pairs, for the pairwise losses) per optimizer step."""
    micro_batch_size: int = 8
    """Examples per forward/backward pass (gradient accumulation up to ``batch_size``; a larger value is
    the whole batch in one pass)."""
    lr: float = 1e-5
    """Peak learning rate of AdamW (reached after warm-up)."""
    weight_decay: float = 0.0
    """AdamW decoupled weight decay."""
    adam_betas: tuple[float, float] = (0.9, 0.999)
    """AdamW (beta1, beta2)."""
    max_grad_norm: float = 1.0
    """The gradient is clipped to this L2 norm before each step (its norm before clipping: ``grad_norm``)."""
    warmup_steps: int = 0
    """Linear learning-rate warm-up over this many steps; 0: none."""
    lr_schedule: Literal["constant", "cosine"] = "constant"
    """``constant``, or ``cosine`` decay to 0 at the last step (after warm-up)."""
    online: OnlineConfig | None = None
    """Online DPO (pairwise losses only): ``{env, every, prompts, samples, ...}`` re-samples the pairs from
    the current policy every ``online.every`` steps and scores them with ``online.env``; the data file
    then gives only the prompts (``prompt_field``; a prompts file or a pairs file)."""

    # ---- memory ----
    dtype: Literal["auto", "bf16", "fp32"] = "auto"
    """``auto`` (bf16 on GPU, fp32 on CPU), ``bf16``, ``fp32``."""
    gradient_checkpointing: bool = False
    """Recompute activations in the backward pass instead of storing them: less memory, ~30% slower."""
    lora: dict[str, Any] | None = None
    """peft LoraConfig fields (r, lora_alpha, target_modules, ...) to train LoRA adapters only (the
    reference of dpo/ipo/kto is then the model with its adapters off). None: train all weights."""

    # ---- bookkeeping ----
    output_dir: str = "runs/offline"
    """Directory of the run: metrics.jsonl, config.yaml, checkpoints/, summary.json, curves.png."""
    seed: int = 0
    """Seed of the held-out split, the example order and anything random in the model."""
    eval_every: int = 0
    """Measure the held-out set every N steps; 0: only before the first step and after the last."""
    save_every: int = 0
    """Checkpoint every N steps (and at the end, and on Ctrl-C). 0: only at the end."""
    keep_checkpoints: int = 2
    """Keep only the newest N checkpoints; 0: keep all."""
    report_to: tuple[Literal["tensorboard", "wandb", "trackio"], ...] = ()
    """Extra loggers when installed (metrics.jsonl is always written)."""
    progress: bool = True
    """Show progress on stderr: a bar in a terminal, else a line every ``log_every`` steps."""
    log_every: int = 10
    """Without a terminal, print a progress line every N steps."""
    verbose: bool = False
    """Show the libraries' own progress bars and INFO logs too."""

    def __post_init__(self) -> None:
        check_choices(self, where=WHERE)
        if not self.model:
            raise bad_value(WHERE, "model", self.model, "a Hugging Face model id or a local directory")
        if not self.data:
            raise bad_value(WHERE, "data", self.data, "a data file or dataset id")
        if self.algorithm not in OFFLINE_ALGORITHMS:
            raise bad_value(WHERE, "algorithm", self.algorithm, f"one of {', '.join(OFFLINE_ALGORITHMS)}")
        check_ranges(self, _RANGES, where=WHERE)
        if self.max_prompt_length >= self.max_length:
            raise bad_value(
                WHERE, "max_prompt_length", self.max_prompt_length, f"< max_length ({self.max_length})"
            )
        if self.packing and self.algorithm != "sft":
            raise bad_value(WHERE, "packing", self.packing, "false for preference losses (sft only)")
        if self.online is not None and self.algorithm in ("sft", "kto", "rrhf"):
            raise bad_value(
                WHERE,
                "online",
                "{...}",
                f"null for algorithm {self.algorithm} (online pairs: dpo, ipo, simpo, orpo)",
            )
        if self.lora is not None and not self.lora:
            raise bad_value(
                WHERE, "lora", self.lora, "None (train all weights) or LoraConfig fields, e.g. {r: 16}"
            )

    @property
    def needs_reference(self) -> bool:
        return self.algorithm in NEEDS_REFERENCE

    @property
    def sample_every(self) -> int:
        """No rollouts to write (``RunLogger`` reads it)."""
        return 0

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> OfflineConfig:
        """Keys and values checked; ``algorithm: {name: dpo, beta: 0.2}`` is short for ``algorithm: dpo``
        with ``loss: {beta: 0.2}``."""
        data = dict(data)
        spec = data.get("algorithm")
        if isinstance(spec, Mapping):
            spec = dict(spec)
            if "name" not in spec:
                raise ConfigError(
                    f"{WHERE}: algorithm: a mapping needs a name (e.g. {{name: dpo, beta: 0.1}})"
                )
            data["algorithm"] = spec.pop("name")
            data["loss"] = {**dict(data.get("loss") or {}), **spec}
        return build(cls, data, where=WHERE)

    @classmethod
    def from_yaml(cls, path: str | Path, overrides: Mapping[str, Any] | None = None) -> OfflineConfig:
        from rewardkit.rl.config import _merge

        data = load_yaml(Path(path).read_text()) or {}
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: expected a mapping of config keys")
        return cls.from_dict(_merge(data, overrides or {}))


_RANGES = {
    "eval_fraction": "[0, 1)",
    "max_examples": ">= 1",
    "max_length": ">= 8",
    "max_prompt_length": ">= 1",
    "steps": ">= 1",
    "batch_size": ">= 1",
    "micro_batch_size": ">= 1",
    "lr": "> 0",
    "weight_decay": ">= 0",
    "max_grad_norm": "> 0",
    "warmup_steps": ">= 0",
    "eval_every": ">= 0",
    "save_every": ">= 0",
    "keep_checkpoints": ">= 0",
    "log_every": ">= 1",
}


def describe() -> str:
    """``--help-config``: every OfflineConfig key, then the ``loss.*`` and ``online.*`` keys."""
    from rewardkit.config import describe as describe_fields

    return "\n\n".join(
        (
            describe_fields(OfflineConfig),
            "loss.* (the preference loss's hyper-parameters):\n"
            + describe_fields(PreferenceConfig, prefix="loss."),
            "online.* (online DPO):\n" + describe_fields(OnlineConfig, prefix="online."),
        )
    )


def is_offline(algorithm: Any) -> bool:
    """Whether a config's ``algorithm`` value (a name, or a mapping with ``name``) selects the offline
    trainer: ``rewardkit train`` hands such configs to ``rewardkit.rl.offline``."""
    name = algorithm.get("name") if isinstance(algorithm, Mapping) else algorithm
    return isinstance(name, str) and name in OFFLINE_ALGORITHMS and name != "sft"
