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
from typing import Any, Literal, get_args, get_type_hints

from rewardkit.config import (
    ConfigError,
    bad_value,
    build,
    check_choices,
    check_ranges,
    in_range,
    indent_doc,
    load_yaml,
    suggest,
)
from rewardkit.config import describe as describe_fields
from rewardkit.data.tasks import DataConfig
from rewardkit.rl.algorithms import ALGORITHM_PRESETS, AlgorithmConfig
from rewardkit.rl.sharding import FSDPConfig

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
    """Registered environment name (see ``rewardkit envs``), or ``module:attr`` naming one in your own
    code (``my_rewards:shouty``, ``path/to/rewards.py:shouty``): a ``@rewardkit.reward_env`` function,
    an Environment subclass, or a factory returning an Environment."""
    env_config: dict[str, Any] = field(default_factory=dict)
    """Keyword config passed to ``load_env`` (the environment's own config keys)."""
    imports: tuple[str, ...] = ()
    """Modules to import before the environment is looked up (dotted names from the current directory
    or ``.py`` paths), so the names they register with ``@rewardkit.reward_env`` resolve; the CLI's
    ``--import MODULE`` adds to these."""
    data: DataConfig | None = None
    """Train on your own prompts: ``{path: FILE.jsonl | hf_id, split, prompt_field, answer_field,
    info_fields, system_prompt, chat}`` (``data.*`` below; a bare path is short for ``{path: ...}``).
    None: the environment's built-in tasks (``env.tasks(train_split)``)."""
    tasks: str | None = None
    """Or ``module:function`` returning the tasks (``rewardkit.Task`` objects or dicts of their fields),
    called with ``tasks_kwargs``."""
    tasks_kwargs: dict[str, Any] = field(default_factory=dict)
    """Keyword arguments for the ``tasks`` function."""
    train_split: str = "train"
    """Split of ``env.tasks()`` to train on (when neither ``data`` nor ``tasks`` is given)."""
    max_tasks: int | None = None
    """Use only the first N tasks (None: all)."""

    # ---- algorithm ----
    algorithm: str = "grpo"
    """Name of the algorithm preset: grpo, dr_grpo, dapo, rloo, ppo, reinforce_pp, gspo, cispo, sapo (see
    docs/algorithms.md). A preset is a set of AlgorithmConfig values; change single ones with ``algo``.
    Also accepted: a mapping ``{name: PRESET, FIELD: VALUE, ...}``, whose other keys go into ``algo``.
    A preference loss instead (dpo, ipo, simpo, orpo, kto, rrhf) makes ``rewardkit train`` train offline on
    a dataset of pairs: that config's keys are ``rewardkit sft --help-config``'s (docs/pipeline.md)."""
    algo: dict[str, Any] = field(default_factory=dict)
    """Overrides of single AlgorithmConfig fields on top of the ``algorithm`` preset, e.g.
    ``{kl_coef: 0.0, clip_eps_high: 0.28}`` (not a preset name: the ``algo.*`` keys below list them)."""

    # ---- on-policy distillation (docs/algorithms.md) ----
    teacher: str | None = None
    """A frozen teacher for on-policy distillation: anything ``model`` accepts but ``tiny`` (a hub id, a
    model directory, a training run or checkpoint), with the student's tokenizer. It scores each sampled
    token, and the per-token advantage -(log pi_old - log pi_teacher), a negated reverse-KL estimate, is
    added to the environment's (``distill_coef``, ``reward_coef``). Loaded in the policy's dtype on its
    device, in eval mode; never trained or checkpointed. None: no teacher."""
    distill_coef: float = 1.0
    """With a ``teacher``: weight of the distillation advantage; 0 only logs ``distill/reverse_kl``."""
    reward_coef: float = 1.0
    """With a ``teacher``: weight of the environment reward's advantage; 0 is pure on-policy distillation,
    the reward only logged (any environment then works, and group_size 1 too)."""

    # ---- rollout ----
    rollout_backend: Literal["hf", "vllm", "auto"] = "hf"
    """``hf`` (Hugging Face generate, runs anywhere), ``vllm``, or ``auto`` (vllm when installed)."""
    prompts_per_step: int = 8
    """Groups (prompts) per optimizer step, after dynamic-sampling filtering."""
    group_size: int = 8
    """Samples per prompt (G). At least 2 where advantages are group-relative (grpo, dr_grpo, dapo, rloo,
    reinforce_pp with group_baseline) or dynamic sampling is on: a group of one trains nothing there."""
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
    rollout_mode: Literal["sync", "async"] = "sync"
    """``sync``: a step's rollouts come from the policy that step updates; generation and training take
    turns. ``async``: a rollout process (its own copy of the policy, ``rollout_threads`` torch threads)
    generates step N's batch with the weights of step ``N - 1 - max_staleness`` while the trainer works
    on earlier steps; weights go to it after each update (docs/async.md). One trainer process only."""
    max_staleness: int = 1
    """``rollout_mode: async``: how many updates behind the trainer a batch's sampling policy is (a fixed
    lag, so a run is deterministic given its seed; 0 reproduces ``sync`` bit for bit). The loss corrects
    for it: old log-probs are recomputed under the current policy, and ``is_correction`` weighs the
    samples against the sampler's log-probs (decoupled PPO)."""
    rollout_threads: int = 0
    """``rollout_mode: async`` on CPU: torch threads of the rollout process, taken from the trainer's;
    0: half of them (at least one each)."""
    is_correction: Literal[
        "token", "sequence", "geo_sequence", "token_mask", "sequence_mask", "geo_sequence_mask", "none"
    ] = "token"
    """Sampler/trainer log-prob mismatch correction (``rewardkit.rl.is_correction``), with the ratio
    r = pi_train / pi_sampler of each token: truncated importance sampling ``token`` (min(r_t, C)),
    ``sequence`` (min(prod_t r_t, C)) or ``geo_sequence`` (min(exp(mean_t log r_t), C)); masked IS
    (IcePop) ``token_mask``, ``sequence_mask``, ``geo_sequence_mask``: drop the tokens, or whole
    sequences, whose ratio at that level is outside [is_mask_low, is_mask_high]; or ``none`` (measure
    only). Applies when the sampler's log-probs are not the policy's own: vLLM, or the hf back end with
    top_k/top_p."""
    is_cap: float = 2.0
    """Cap C of the truncated importance weight min(pi_train / pi_sampler, C)."""
    is_mask_low: float = 0.5
    """Masked IS (``*_mask`` corrections): the lowest ratio pi_train / pi_sampler kept, in (0, 1]."""
    is_mask_high: float = 2.0
    """Masked IS: the highest ratio kept, >= 1 (verl's geometric-mean thresholds are ~1.0002-1.001)."""

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
    """The policy's gradient is clipped to this L2 norm before each optimizer step (its norm before
    clipping is logged as ``grad_norm``)."""
    value_max_grad_norm: float | None = None
    """PPO's value model: its gradient is clipped to this L2 norm on its own, so a large value-loss
    gradient never shrinks the policy's update (logged as ``value_grad_norm``). None: ``max_grad_norm``."""
    warmup_steps: int = 0
    """Linear learning-rate warm-up over this many steps (rounds, as ``steps``); 0: none."""
    lr_schedule: Literal["constant", "cosine"] = "constant"
    """``constant`` or ``cosine`` decay to 0 at the last step (after warm-up)."""
    value_lr: float | None = None
    """Learning rate of PPO's value model (None: ``lr``)."""

    # ---- KL control (rewardkit.rl.kl) ----
    kl_target: float | None = None
    """Adaptive KL coefficient (Ziegler et al. 2019): after each step the coefficient ``algo.kl_coef``
    (its start value, > 0) is multiplied by 1 + clip(KL / kl_target - 1, -0.2, 0.2) * n / kl_horizon,
    n the step's samples, KL the measured KL to the reference. None: a fixed coefficient."""
    kl_horizon: int = 10000
    """Horizon of the adaptive KL controller, in samples: larger adapts more slowly."""
    ref_reset_every: int = 0
    """Copy the policy into the KL reference every N steps, and clear the optimizer's moments (ProRL,
    arXiv 2505.24864): the KL then anchors to a recent policy, not the initial one. 0: never. Needs a
    reference (``algo.kl_coef`` > 0) and full training (under LoRA the reference is the base model)."""

    # ---- memory ----
    dtype: Literal["auto", "bf16", "fp32"] = "auto"
    """``auto`` (bf16 on GPU, fp32 on CPU), ``bf16``, ``fp32``."""
    gradient_checkpointing: bool = False
    """Recompute activations in the backward pass instead of storing them: less memory, ~30% slower."""
    lora: dict[str, Any] | None = None
    """peft LoraConfig fields (r, lora_alpha, target_modules, ...) to train LoRA adapters only.
    None: train all weights."""
    strategy: Literal["ddp", "fsdp"] = "ddp"
    """Over several ranks (``torchrun``, ``rewardkit train --nproc N``): ``ddp``, every rank a full
    replica of the models with gradients summed over ranks; ``fsdp``, FSDP2 (``fully_shard``): the
    policy, reference and critic sharded over the ranks, 1/N of the weights, gradients and optimizer
    state on each (see ``fsdp`` and docs/scale.md). One process: ignored."""
    fsdp: FSDPConfig = field(default_factory=FSDPConfig)
    """``strategy: fsdp``'s options: ``param_dtype`` (mixed precision), ``reduce_dtype``, ``cpu_offload``,
    ``reshard_after_forward`` (``rewardkit.rl.sharding.FSDPConfig``)."""

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
    exploit_warn_rise: float | None = 0.2
    """Warn when an environment's exploit signature (``exploit/<name>`` in metrics.jsonl) is this much
    more frequent over the last 10 steps than over the first 10 (docs/hacking.md); None: log, never warn."""
    report_to: tuple[Literal["tensorboard", "wandb", "trackio"], ...] = ()
    """Extra loggers when installed: tensorboard, wandb, trackio (metrics.jsonl is always written)."""
    progress: bool = True
    """Show the run's progress on stderr: a live bar in a terminal; when stderr is a file or a pipe
    (SLURM, nohup), one plain line every ``log_every`` steps."""
    log_every: int = 1
    """Without a terminal, print a progress line (step, reward, kl, length, time) every N steps."""
    verbose: bool = False
    """Show the libraries' own output too: transformers'/huggingface_hub's progress bars and INFO logs,
    vLLM's start-up log (``rewardkit train --verbose``). False: warnings only (``rewardkit.console``)."""

    def __post_init__(self) -> None:
        check_choices(self, where=WHERE)
        if not self.model:
            raise bad_value(WHERE, "model", self.model, "a Hugging Face model id, a local directory, or tiny")
        check_ranges(self, _RANGES, where=WHERE)
        for i, beta in enumerate(self.adam_betas):
            if not in_range(beta, "[0, 1)"):
                raise bad_value(WHERE, f"adam_betas[{i}]", beta, "a value in [0, 1)")
        _check_distill(self)
        if self.teacher is None or self.reward_coef > 0:  # pure distillation: no group-relative reward
            _check_group_size(self.group_size, self.algorithm, self.algorithm_config)
        _check_kl_control(self)
        _check_vllm(self.vllm)
        _check_lora(self.lora)
        if self.strategy == "fsdp" and self.lora is not None:
            raise bad_value(
                WHERE,
                "strategy",
                self.strategy,
                "ddp under LoRA",
                ": LoRA's adapters are small enough to replicate, and sharding a peft model is not "
                "supported yet; train LoRA with strategy ddp, or all weights with fsdp",
            )
        if self.data is not None and self.tasks is not None:
            raise ConfigError(f"{WHERE}: data and tasks both given; keep one (they are two sources of tasks)")

    @property
    def algorithm_config(self) -> AlgorithmConfig:
        """The ``algorithm`` preset with the ``algo`` overrides applied, keys and values checked."""
        if self.algorithm not in ALGORITHM_PRESETS:
            names = sorted(ALGORITHM_PRESETS)
            expected = f"one of {', '.join(names)}"
            raise bad_value(WHERE, "algorithm", self.algorithm, expected, suggest(self.algorithm, names))
        values = {**ALGORITHM_PRESETS[self.algorithm], **self.algo}
        return build(AlgorithmConfig, values, where=WHERE, prefix="algo.")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TrainConfig:
        """A config from a mapping of field names (YAML's), keys and values checked; see the module doc."""
        return build(cls, _shorthands(data), where=WHERE)

    @classmethod
    def from_yaml(cls, path: str | Path, overrides: Mapping[str, Any] | None = None) -> TrainConfig:
        """A config from a YAML file, with ``overrides`` (``--set`` pairs, nested dicts) merged on top."""
        data = load_yaml(Path(path).read_text()) or {}
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: expected a mapping of config keys")
        return cls.from_dict(_merge(_shorthands(data), _shorthands(overrides or {})))


_RANGES = {
    "group_size": ">= 1",
    "prompts_per_step": ">= 1",
    "max_new_tokens": ">= 1",
    "temperature": ">= 0",
    "top_p": "(0, 1]",
    "top_k": ">= 0",
    "max_sampling_rounds": ">= 1",
    "rollout_batch_size": ">= 1",
    "max_staleness": ">= 0",
    "rollout_threads": ">= 0",
    "is_cap": ">= 1",
    "is_mask_low": "(0, 1]",
    "is_mask_high": ">= 1",
    "distill_coef": ">= 0",
    "reward_coef": ">= 0",
    "kl_target": "> 0",
    "kl_horizon": ">= 1",
    "ref_reset_every": ">= 0",
    "steps": ">= 0",
    "num_iterations": ">= 1",
    "mini_batches": ">= 1",
    "micro_batch_size": ">= 1",
    "lr": "> 0",
    "weight_decay": ">= 0",
    "max_grad_norm": "> 0",
    "value_max_grad_norm": "> 0",
    "warmup_steps": ">= 0",
    "value_lr": "> 0",
    "max_tasks": ">= 1",
    "save_every": ">= 0",
    "keep_checkpoints": ">= 0",
    "sample_every": ">= 0",
    "exploit_warn_rise": "> 0",
    "log_every": ">= 1",
}
"""TrainConfig's numeric fields and their ranges (``rewardkit.config.in_range`` rules; None passes)."""

LORA_FIELDS = {
    "r": "Rank of the adapter matrices: each adapted weight W gets W + (lora_alpha / r) * B @ A, B and A of rank r.",
    "lora_alpha": "Scale of the adapter update (divided by r, or by sqrt(r) with use_rslora).",
    "lora_dropout": "Dropout on the adapter's input while training.",
    "target_modules": "Modules that get adapters: a list of names (q_proj, v_proj, ...), a regex, or 'all-linear';\n"
    "None: peft's default for the architecture.",
    "exclude_modules": "Modules (names or a regex) that get no adapter.",
    "bias": "Which biases train too: 'none', 'all' or 'lora_only'.",
    "use_rslora": "Rank-stabilised scaling lora_alpha / sqrt(r) (Kalajdzievski 2023) instead of lora_alpha / r.",
    "use_dora": "DoRA (Liu et al. 2024): a trained magnitude per output on top of a LoRA direction.",
    "init_lora_weights": "Adapter initialisation: True (B = 0: training starts exactly at the base model), or\n"
    "'gaussian', 'pissa', 'olora', ...; False: random (the model changes before training).",
    "modules_to_save": "Modules trained in full and saved beside the adapters (e.g. a new head).",
    "layers_to_transform": "Only the layers with these indices get adapters (with target_modules a list).",
}
"""The ``lora.*`` keys ``--help-config`` explains (any other peft LoraConfig field is accepted too)."""

_LORA_RANGES = {"r": ">= 1", "lora_alpha": "> 0", "lora_dropout": "[0, 1)"}


def _check_group_size(group_size: int, algorithm: str, algo: AlgorithmConfig) -> None:
    """Refuse a group of one where it can carry no signal: group-relative advantages are then 0, and
    dynamic sampling drops every group (one reward is always "all equal")."""
    if group_size >= 2 or not (algo.group_relative or algo.dynamic_sampling):
        return
    why = (
        f"its {algo.advantage!r} advantage compares each sample with the others of its group, so a group "
        "of one has advantage 0"
        if algo.group_relative
        else "dynamic sampling drops every group whose rewards are all equal, which a group of one always is"
    )
    raise bad_value(
        WHERE,
        "group_size",
        group_size,
        f">= 2 for algorithm {algorithm!r}",
        f": {why} and trains nothing (ppo, or reinforce_pp without group_baseline, can train with 1)",
    )


def _check_distill(cfg: TrainConfig) -> None:
    """``distill_coef`` and ``reward_coef`` weigh a teacher's advantage against the reward's: without a
    teacher they would do nothing (or train nothing); with the reward ignored, dynamic sampling would
    filter groups on it."""
    if cfg.teacher is None:
        for key in ("distill_coef", "reward_coef"):
            if getattr(cfg, key) != 1.0:
                hint = ": it weighs the distillation advantage against the reward's; set teacher: MODEL"
                raise bad_value(WHERE, key, getattr(cfg, key), "1.0 without a teacher", hint)
        return
    if cfg.teacher == "tiny":
        hint = ": a random tiny model is no teacher; give a model directory, a training run or a hub id"
        raise bad_value(WHERE, "teacher", cfg.teacher, "a model with the student's tokenizer", hint)
    if cfg.reward_coef == 0 and cfg.algorithm_config.dynamic_sampling:
        raise bad_value(
            WHERE,
            "algo.dynamic_sampling",
            True,
            "false with reward_coef = 0",
            ": dynamic sampling drops groups whose rewards are all equal, and pure distillation ignores "
            "the reward",
        )


def _check_kl_control(cfg: TrainConfig) -> None:
    """``kl_target`` and ``ref_reset_every`` need a KL reference to act on; a reference reset needs one of
    its own (under LoRA the reference is the base model with the adapters off)."""
    from rewardkit.rl.kl import KL_ERROR_CLIP

    if cfg.algorithm_config.kl_coef <= 0:
        no_kl = ": there is no KL term to control (no reference); set algo.kl_coef > 0"
        if cfg.kl_target is not None:
            raise bad_value(WHERE, "kl_target", cfg.kl_target, "None with algo.kl_coef = 0", no_kl)
        if cfg.ref_reset_every:
            raise bad_value(WHERE, "ref_reset_every", cfg.ref_reset_every, "0 with algo.kl_coef = 0", no_kl)

    samples = cfg.prompts_per_step * cfg.group_size  # the most one step trains on
    if cfg.kl_target is not None and cfg.kl_horizon <= KL_ERROR_CLIP * samples:
        expected = f"> {KL_ERROR_CLIP} * prompts_per_step * group_size = {KL_ERROR_CLIP * samples:g}"
        hint = ": a step may scale the coefficient by 1 - 0.2 * samples / kl_horizon, which must stay > 0"
        raise bad_value(WHERE, "kl_horizon", cfg.kl_horizon, expected, hint)
    if cfg.ref_reset_every and cfg.lora is not None:
        raise bad_value(
            WHERE,
            "ref_reset_every",
            cfg.ref_reset_every,
            "0 under LoRA",
            ": the reference is the base model with the adapters off; resetting it would mean merging the "
            "adapters into the base and restarting them (not supported): train all weights, or leave it 0",
        )


def _check_vllm(options: Mapping[str, Any]) -> None:
    """``vllm:`` keys and values, checked against the vLLM back end's config (vLLM itself not needed)."""
    if not options:
        return
    from rewardkit.generation.vllm import VLLMGeneratorConfig

    try:
        build(VLLMGeneratorConfig, options, where=WHERE, prefix="vllm.")
    except ConfigError:
        raise
    except (TypeError, ValueError) as exc:  # the back end's own __post_init__ checks
        raise ConfigError(f"{WHERE}: vllm: {exc}") from None


def _check_lora(options: Mapping[str, Any] | None) -> None:
    """``lora:`` keys and values, checked against peft's LoraConfig (imported only when lora is set)."""
    if options is None:
        return
    if not options:
        expected = "None (train all weights) or LoraConfig fields, e.g. {r: 16}"
        hint = ": an empty mapping would train all weights, not adapters"
        raise bad_value(WHERE, "lora", options, expected, hint)
    if "task_type" in options:
        raise bad_value(WHERE, "lora.task_type", options["task_type"], "no value: rewardkit sets CAUSAL_LM")
    try:
        from peft import LoraConfig
    except ImportError:
        raise ConfigError(f"{WHERE}: lora: training LoRA adapters needs peft: pip install peft") from None
    try:
        config = build(LoraConfig, options, where=WHERE, prefix="lora.")
    except ConfigError:
        raise
    except (TypeError, ValueError) as exc:  # peft's own __post_init__ checks
        raise ConfigError(f"{WHERE}: lora: {exc}") from None
    try:
        check_ranges(config, _LORA_RANGES, where=WHERE)
    except ConfigError as exc:
        raise exc.at(WHERE, "lora.") from None


def _shorthands(data: Mapping[str, Any]) -> dict[str, Any]:
    """The short forms spelled out: ``algorithm: {name: P, ...}`` (see ``_split_algorithm``) and
    ``data: FILE`` for ``data: {path: FILE}``."""
    out = _split_algorithm(data)
    if isinstance(out.get("data"), str):
        out["data"] = {"path": out["data"]}
    return out


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
    if isinstance(algo, Mapping) and (spec or "algo" in out):  # no empty algo: it would replace (_merge)
        clash = sorted(set(spec) & set(algo))
        if clash:
            raise ConfigError(f"{WHERE}: {clash} given both under algorithm and under algo; keep one")
        out["algo"] = {**spec, **algo}
    return out


def _merge(base: dict[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    """``extra`` on top of ``base``: a mapping merges key by key into the mapping it meets
    (``--set env_config.levels=[1]`` keeps the YAML's other env_config keys), except an empty one,
    which replaces it (``--set env_config={}`` clears it); anything else replaces."""
    out = dict(base)
    for key, value in extra.items():
        merge = isinstance(value, Mapping) and bool(value) and isinstance(out.get(key), dict)
        out[key] = _merge(out[key], value) if merge else value
    return out


def describe() -> str:
    """``--help-config``: every TrainConfig key with its type, default and whole docstring, then the keys
    of each nested mapping: ``algo.*`` (AlgorithmConfig), ``vllm.*`` (the vLLM back end's options),
    ``lora.*`` (peft's LoraConfig) and the fields of any nested config dataclass (``data.*``)."""
    from rewardkit.generation.vllm import VLLMGeneratorConfig

    sections = [
        "TrainConfig keys (YAML, or --set key=value; nested keys as --set env_config.levels=[1]; an empty\n"
        "mapping replaces: --set env_config={}):\n\n" + describe_fields(TrainConfig)
    ]
    hints = get_type_hints(TrainConfig)
    for f in dataclasses.fields(TrainConfig):
        nested = _nested_config(hints[f.name])
        if nested is not None:
            head = f"{f.name}.* keys: {nested.__name__} fields"
            sections.append(f"{head}:\n\n{describe_fields(nested, prefix=f.name + '.')}")
    sections += [
        "algo.* keys: AlgorithmConfig fields, each overriding the preset named by `algorithm`\n"
        "(defaults below are AlgorithmConfig's; each preset sets some of them, see docs/algorithms.md):\n\n"
        + describe_fields(AlgorithmConfig, prefix="algo."),
        "vllm.* keys: options of the vLLM rollout back end (rollout_backend: vllm or auto):\n\n"
        + describe_fields(VLLMGeneratorConfig, prefix="vllm."),
        _describe_lora(),
    ]
    return "\n\n".join(sections)


def _nested_config(tp: Any) -> type | None:
    """The dataclass of a field annotated ``SomeConfig`` or ``SomeConfig | None``, else None."""
    options = [a for a in get_args(tp) if a is not type(None)] if get_args(tp) else [tp]
    if len(options) == 1 and isinstance(options[0], type) and dataclasses.is_dataclass(options[0]):
        return options[0]
    return None


def _describe_lora() -> str:
    """The ``lora.*`` section: the main LoraConfig fields, typed from peft when it is installed."""
    head = (
        "lora.* keys: peft LoraConfig fields (the main ones below; any other LoraConfig field is accepted\n"
        "too; task_type is set by rewardkit: CAUSAL_LM):\n\n"
    )
    try:
        from peft import LoraConfig
    except ImportError:
        lines = [f"lora.{name}\n{indent_doc(doc)}" for name, doc in LORA_FIELDS.items()]
        return head + "\n".join(lines) + "\n(peft is not installed: pip install peft)"
    return head + describe_fields(LoraConfig, prefix="lora.", only=LORA_FIELDS, docs=LORA_FIELDS)
