"""One GPU, one run: rollout throughput, GRPO step time (rewardkit vs TRL), FSDP2 on one GPU, peak memory.

For a lent GPU machine with no network and minutes to spare (``benchmarks/gpu/run.sh`` calls this):
everything is built on the spot. The model is a Qwen2-architecture causal LM of about 0.5B parameters
from a config (random weights; its tokenizer is trained here on a small generated corpus, so the
vocabulary is small and the blocks carry the parameters). Prompts are fixed-length token sequences;
generations run to ``max_tokens`` unless the random model samples EOS (rare: it is one token of the
vocabulary), and every figure counts the tokens actually generated.

Each measurement runs in its own child process (its peak memory is its own; one that fails is
reported as failed and the others still run):

- ``rollout_hf``: the hf back end's tokens/s over prompts x G samples (bf16);
- ``rollout_vllm``: the same through the vLLM back end, only where vLLM is installed;
- ``grpo_rewardkit``: rewardkit's GRPO step (generation, scoring, update) in bf16, median wall time
  after the first step;
- ``grpo_trl``: TRL's ``GRPOTrainer`` on the same model, batch shape and reward, only where TRL is
  installed (same median);
- ``fsdp_1gpu``: rewardkit's step under ``torchrun --nproc-per-node 1`` with ``strategy: fsdp``
  (fp32 master weights, bf16 compute): FSDP2's mixed precision on one GPU;
- ``grpo_async``: rewardkit's step with ``rollout_mode: async, max_staleness: 1`` (a rollout process
  with its own copy of the model on the same GPU samples the next step while the trainer updates),
  against ``grpo_rewardkit``'s synchronous one.

    python benchmarks/gpu/bench.py [--out FILE.md] [--write]      # on the GPU machine
    python benchmarks/gpu/bench.py --dry-run --out FILE.md         # the same code at toy size, on CPU

``--dry-run`` (CI runs it) exercises every child at toy size on whatever device there is.
"""

from __future__ import annotations

import argparse
import datetime
import importlib.util
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
SECTION = "## One GPU: rollouts, GRPO step, FSDP2"
SIZES = {
    # ~0.48B parameters: 32 blocks x (q, o 1024^2 + k, v 1024x128 + MLP 3 x 1024x4096) + embeddings
    "gpu": {"hidden": 1024, "layers": 32, "heads": 16, "kv_heads": 2, "intermediate": 4096, "vocab": 4096,
            "prompts": 16, "group": 8, "prompt_len": 128, "max_tokens": 256, "steps": 5},
    # head_dim 64: the CPU build of vLLM has attention kernels for head sizes from 32 up
    "dry": {"hidden": 128, "layers": 2, "heads": 2, "kv_heads": 2, "intermediate": 128, "vocab": 512,
            "prompts": 2, "group": 4, "prompt_len": 8, "max_tokens": 8, "steps": 2},
}  # fmt: skip
CHILDREN = ("rollout_hf", "rollout_vllm", "grpo_rewardkit", "grpo_trl", "fsdp_1gpu", "grpo_async")


# ---------------------------------------------------------------------------------------------------------------
# The shared setup: model, prompts, reward


def build_model(size: dict[str, int], path: Path) -> None:
    """A random Qwen2 model and a tokenizer trained on a generated corpus, saved to ``path``."""
    import torch
    from transformers import AutoModelForCausalLM, Qwen2Config

    from rewardkit.models.tiny import train_tokenizer

    torch.manual_seed(0)
    corpus = [
        f"task {i}: add {i} and {3 * i + 1}, then say the sum {4 * i + 1} {'word ' * (i % 7)}"
        for i in range(2000)
    ]
    tokenizer = train_tokenizer(corpus, vocab_size=size["vocab"])
    config = Qwen2Config(
        vocab_size=len(tokenizer),
        hidden_size=size["hidden"],
        intermediate_size=size["intermediate"],
        num_hidden_layers=size["layers"],
        num_attention_heads=size["heads"],
        num_key_value_heads=size["kv_heads"],
        max_position_embeddings=2 * (size["prompt_len"] + size["max_tokens"]),
        tie_word_embeddings=True,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        bos_token_id=tokenizer.bos_token_id,
    )
    model = AutoModelForCausalLM.from_config(config)
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)


def prompts(size: dict[str, int]) -> list[str]:
    """``size['prompts']`` prompts, each cut to ``prompt_len`` tokens by the children."""
    return [
        f"task {i}: " + " ".join(str((i * 7 + j) % 10) for j in range(size["prompt_len"]))
        for i in range(size["prompts"])
    ]


def by_length(completion: str, **_: Any) -> float:
    """The reward: a deterministic function of the text, so groups have spread and gradients exist."""
    return (len(completion) % 7) / 6


def _device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def _peak_memory_gb() -> float | None:
    import torch

    return torch.cuda.max_memory_allocated() / 2**30 if torch.cuda.is_available() else None


def _median_after_first(xs: list[float]) -> float:
    return statistics.median(xs[1:] if len(xs) > 1 else xs)


# ---------------------------------------------------------------------------------------------------------------
# Children


def child_rollout(args: argparse.Namespace, size: dict[str, int], backend: str) -> dict[str, Any]:
    import torch

    from rewardkit.generation import make_generator
    from rewardkit.generation.base import SamplingParams
    from rewardkit.models import load_model

    if backend == "vllm" and importlib.util.find_spec("vllm") is None:
        return {"skipped": "vLLM is not installed on this machine"}
    model, tokenizer = load_model(args.model, None, "bf16" if _device() == "cuda" else "fp32")
    model.to(_device())
    ids = [tokenizer.encode(p)[: size["prompt_len"]] for p in prompts(size)]
    opts = {"max_batch_size": len(ids) * size["group"]}
    if backend == "vllm":
        opts = {"gpu_memory_utilization": 0.5, "enforce_eager": False}
    generator = make_generator(backend, model, tokenizer, **opts)
    params = SamplingParams(n=size["group"], temperature=1.0, max_tokens=size["max_tokens"], seed=0)
    generator.generate(ids[:2], SamplingParams(n=1, temperature=1.0, max_tokens=4, seed=1))  # warm-up
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    start = time.perf_counter()
    out = generator.generate(ids, params)
    wall = time.perf_counter() - start
    tokens = sum(len(g.token_ids) for group in out for g in group)
    return {"tokens": tokens, "wall_s": wall, "tokens_per_s": tokens / wall, "peak_gb": _peak_memory_gb()}


def child_grpo_rewardkit(
    args: argparse.Namespace, size: dict[str, int], strategy: str = "ddp", rollout_mode: str = "sync"
) -> dict[str, Any]:
    from rewardkit.registry import FunctionEnv
    from rewardkit.rl.config import TrainConfig
    from rewardkit.rl.sharding import FSDPConfig
    from rewardkit.rl.trainer import train
    from rewardkit.types import Task

    on_gpu = _device() == "cuda"
    completions = size["prompts"] * size["group"]
    cfg = TrainConfig(
        model=args.model,
        env="by_length",
        algorithm="grpo",
        algo={"kl_coef": 0.0},
        prompts_per_step=size["prompts"],
        group_size=size["group"],
        max_new_tokens=size["max_tokens"],
        rollout_batch_size=completions,
        micro_batch_size=completions // 4 if on_gpu else completions,
        steps=size["steps"],
        lr=1e-6,
        dtype=("fp32" if strategy == "fsdp" else "bf16") if on_gpu else "fp32",
        strategy=strategy,
        fsdp=FSDPConfig(param_dtype="bf16" if on_gpu else None),
        rollout_mode=rollout_mode,
        max_staleness=1,
        output_dir=str(Path(args.work) / f"rewardkit_{strategy}_{rollout_mode}"),
        save_every=0,
        sample_every=0,
        progress=False,
    )
    tasks = [Task(prompt=p, id=str(i)) for i, p in enumerate(prompts(size))]
    train(cfg, env=FunctionEnv(by_length, "by_length", executor="inline"), tasks=tasks, overwrite=True)
    rows = [json.loads(line) for line in (Path(cfg.output_dir) / "metrics.jsonl").read_text().splitlines()]
    return {
        "step_s": _median_after_first([r["step_time_s"] for r in rows]),
        "rollout_s": _median_after_first([r["rollout_time_s"] for r in rows]),
        "tokens_per_step": statistics.mean(r["response_len_mean"] * r["num_samples"] for r in rows),
        "steps": len(rows),
        "world_size": rows[-1]["world_size"],
        "peak_gb": _peak_memory_gb(),
    }


def child_grpo_trl(args: argparse.Namespace, size: dict[str, int]) -> dict[str, Any]:
    if importlib.util.find_spec("trl") is None or importlib.util.find_spec("datasets") is None:
        return {"skipped": "TRL (and datasets) are not installed on this machine"}
    import torch
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    class StepClock(TrainerCallback):
        def __init__(self) -> None:
            self.wall: list[float] = []

        def on_step_begin(self, *a: Any, **k: Any) -> None:
            self._t = time.perf_counter()

        def on_step_end(self, *a: Any, **k: Any) -> None:
            self.wall.append(time.perf_counter() - self._t)

    def reward(completions: list[Any], **_: Any) -> list[float]:
        return [by_length(c if isinstance(c, str) else c[-1]["content"]) for c in completions]

    on_gpu = _device() == "cuda"
    completions = size["prompts"] * size["group"]
    config = GRPOConfig(
        output_dir=str(Path(args.work) / "trl"),
        per_device_train_batch_size=completions,
        gradient_accumulation_steps=1,
        steps_per_generation=1,
        num_generations=size["group"],
        max_completion_length=size["max_tokens"],
        temperature=1.0,
        learning_rate=1e-6,
        beta=0.0,
        loss_type="grpo",
        max_steps=size["steps"],
        logging_steps=1,
        report_to="none",
        use_vllm=False,
        use_cpu=not on_gpu,
        bf16=on_gpu,
        save_strategy="no",
        disable_tqdm=True,
    )
    model = AutoModelForCausalLM.from_pretrained(
        args.model, dtype=torch.bfloat16 if on_gpu else torch.float32
    )
    tokenizer = AutoTokenizer.from_pretrained(args.model)
    clock = StepClock()
    dataset = Dataset.from_dict({"prompt": prompts(size) * size["steps"]})
    trainer = GRPOTrainer(
        model=model, reward_funcs=[reward], args=config, train_dataset=dataset, processing_class=tokenizer,
        callbacks=[clock],
    )  # fmt: skip
    trainer.train()
    return {"step_s": _median_after_first(clock.wall), "steps": len(clock.wall), "peak_gb": _peak_memory_gb()}


def run_child(name: str, args: argparse.Namespace) -> dict[str, Any]:
    """``name`` in a child process (under ``torchrun --nproc-per-node 1`` for ``fsdp_1gpu``)."""
    result = Path(args.work) / f"{name}.json"
    own = [str(Path(__file__).resolve()), "--child", name, "--model", args.model, "--work", args.work]
    own += ["--result", str(result)] + (["--dry-run"] if args.dry_run else [])
    if name == "fsdp_1gpu":
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "1", *own]
    else:
        cmd = [sys.executable, *own]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    start = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=args.child_timeout)
    print(f"[bench] {name}: exit {proc.returncode} in {time.perf_counter() - start:.0f} s", flush=True)
    if proc.returncode != 0 or not result.exists():
        return {"failed": (proc.stderr.strip().splitlines() or ["no output"])[-1][:300]}
    return json.loads(result.read_text())


def child_main(args: argparse.Namespace) -> None:
    size = SIZES["dry" if args.dry_run else "gpu"]
    if args.child == "rollout_hf":
        out = child_rollout(args, size, "hf")
    elif args.child == "rollout_vllm":
        out = child_rollout(args, size, "vllm")
    elif args.child == "grpo_rewardkit":
        out = child_grpo_rewardkit(args, size)
    elif args.child == "fsdp_1gpu":
        out = child_grpo_rewardkit(args, size, strategy="fsdp")
    elif args.child == "grpo_async":
        out = child_grpo_rewardkit(args, size, rollout_mode="async")
    else:
        out = child_grpo_trl(args, size)
    Path(args.result).write_text(json.dumps(out))


# ---------------------------------------------------------------------------------------------------------------
# Report


def _cell(r: dict[str, Any], key: str, fmt: str) -> str:
    if "skipped" in r:
        return "not run: " + r["skipped"]
    if "failed" in r:
        return "failed: " + r["failed"]
    return fmt.format(r[key])


def _speedup(sync: dict[str, Any], asy: dict[str, Any]) -> str:
    return (
        f" ({sync['step_s'] / asy['step_s']:.2f}x the synchronous step)"
        if "step_s" in sync and "step_s" in asy
        else ""
    )


def _memory(r: dict[str, Any]) -> str:
    return f"{r['peak_gb']:.1f} GB" if r.get("peak_gb") is not None else "-"


def section(args: argparse.Namespace, results: dict[str, dict[str, Any]], meta: dict[str, Any]) -> str:
    size = SIZES["dry" if args.dry_run else "gpu"]
    rk, trl, asy = results["grpo_rewardkit"], results["grpo_trl"], results["grpo_async"]
    ratio = (
        f"{rk['step_s'] / trl['step_s']:.2f}x TRL's"
        if "step_s" in rk and "step_s" in trl
        else "no ratio (one side did not run)"
    )
    rows = [
        ("rollout, hf back end (bf16)", _cell(results["rollout_hf"], "tokens_per_s", "{:.0f} tokens/s"), _memory(results["rollout_hf"])),
        ("rollout, vLLM back end", _cell(results["rollout_vllm"], "tokens_per_s", "{:.0f} tokens/s"), _memory(results["rollout_vllm"])),
        ("GRPO step, rewardkit (bf16, hf rollouts)", _cell(rk, "step_s", "{:.2f} s/step") + f" ({ratio})", _memory(rk)),
        ("GRPO step, TRL GRPOTrainer (bf16)", _cell(trl, "step_s", "{:.2f} s/step"), _memory(trl)),
        ("GRPO step, rewardkit strategy fsdp on 1 GPU (fp32 master, bf16 compute)", _cell(results["fsdp_1gpu"], "step_s", "{:.2f} s/step"), _memory(results["fsdp_1gpu"])),
        ("GRPO step, rewardkit rollout_mode async, max_staleness 1 (bf16)", _cell(asy, "step_s", "{:.2f} s/step") + _speedup(rk, asy), _memory(asy)),
    ]  # fmt: skip
    lines = [
        SECTION,
        "",
        f"- Date: {meta['date']}; device: {meta['device']}; torch {meta['torch']}, transformers "
        f"{meta['transformers']}; host {platform.node() or '?'}"
        + ("; **dry run** (toy size, checks the code path only: not figures)" if args.dry_run else ""),
        f"- Command: `python benchmarks/gpu/bench.py{' --dry-run' if args.dry_run else ''}` (`benchmarks/gpu/run.sh`)",
        f"- Model: Qwen2 architecture, {meta['params'] / 1e6:.1f}M parameters, random init; {size['prompts']} "
        f"prompts x G={size['group']}, prompt {size['prompt_len']} tokens, up to {size['max_tokens']} new tokens, "
        f"{size['steps']} steps (the first left out of medians); seed 0",
        "",
        "| measurement | figure | peak GPU memory |",
        "|---|---|---|",
        *(f"| {a} | {b} | {c} |" for a, b, c in rows),
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dry-run", action="store_true", help="toy sizes, any device: checks the code path")
    parser.add_argument("--out", help="write the Markdown section here too")
    parser.add_argument("--write", action="store_true", help="write the section into BENCHMARKS.md")
    parser.add_argument("--only", nargs="*", choices=CHILDREN, help="run only these measurements")
    parser.add_argument("--child-timeout", type=int, default=600)
    parser.add_argument("--child", choices=CHILDREN, help=argparse.SUPPRESS)
    parser.add_argument("--model", help=argparse.SUPPRESS)
    parser.add_argument("--work", help=argparse.SUPPRESS)
    parser.add_argument("--result", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        return child_main(args)
    import torch
    import transformers

    if not args.dry_run and not torch.cuda.is_available():
        parser.error("no CUDA device: run on the GPU machine, or --dry-run to check the code path")
    with tempfile.TemporaryDirectory(prefix="rewardkit-gpu-bench-") as work:
        args.work, args.model = work, str(Path(work) / "model")
        build_model(SIZES["dry" if args.dry_run else "gpu"], Path(args.model))
        from transformers import AutoConfig, AutoModelForCausalLM

        with torch.device("meta"):
            params = sum(
                p.numel()
                for p in AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(args.model)).parameters()
            )
        skipped = {"skipped": "not asked for (--only)"}
        results = {
            name: run_child(name, args) if not args.only or name in args.only else skipped
            for name in CHILDREN
        }
    meta = {
        "date": datetime.date.today().isoformat(),
        "device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else f"CPU ({platform.processor() or platform.machine()})",
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "params": params,
    }  # fmt: skip
    text = section(args, results, meta)
    print(text)
    print(json.dumps(results, indent=1), file=sys.stderr)
    if args.out:
        Path(args.out).write_text(text)
    if args.write:
        sys.path.insert(0, str(HERE.parent))
        from bench_report import write_section

        write_section(REPO / "BENCHMARKS.md", SECTION, text)


if __name__ == "__main__":
    main()
