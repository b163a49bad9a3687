"""Rollout throughput: the vLLM back end vs the Hugging Face back end on the same model and prompts.

Both back ends get the same tiny-ish Llama (built on the spot by ``rewardkit.models.tiny``, no downloads),
the same token-id prompts, G samples per prompt, temperature 1 and the same token budget, in this one
run. Figures are generated tokens per second of wall time for one ``generate`` call over the whole
batch, after a small warm-up call; vLLM's engine start-up is reported separately (a trainer pays it
once per run). The HF back end runs first: starting vLLM binds the process's OpenMP threads on CPU.

    python benchmarks/rollout_bench.py [--prompts 16 --group 8 --max-tokens 96] [--write]
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import sys
import tempfile
import time
from typing import Any

from bench_report import write_section  # noqa: E402 - benchmarks/ is on sys.path when run as a script

SECTION = "## Rollout throughput"
CORPUS = [
    "What is 12 + 35? <think>12 + 35 = 47</think><answer>47</answer>",
    "Compute 7 * 8. <think>7 * 8 = 56</think><answer>56</answer>",
    "the quick brown fox jumps over the lazy dog",
]


def build(args: argparse.Namespace, path: str) -> tuple[Any, Any, list[list[int]]]:
    """The model (saved to ``path`` too), its tokenizer, and ``args.prompts`` prompts of varied length."""
    from rewardkit.models.tiny import TinyConfig, build_tiny

    size = TinyConfig(
        hidden_size=args.hidden,
        intermediate_size=3 * args.hidden,
        num_layers=args.layers,
        num_heads=args.hidden // 32,
        max_position_embeddings=1024,
    )
    model, tok = build_tiny(CORPUS * 20, size, save_to=path)
    prompts = [tok.encode(f"What is {i} + {3 * i + 7}? " * (1 + i % 3)) for i in range(args.prompts)]
    return model, tok, prompts


def timed(generator: Any, prompts: list[list[int]], params: Any) -> dict[str, float]:
    """Warm up on two prompts, then time one call over all prompts."""
    import dataclasses

    generator.generate(prompts[:2], dataclasses.replace(params, max_tokens=8))
    start, cpu_start = time.perf_counter(), time.process_time()
    out = generator.generate(prompts, params)
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu_start
    tokens = sum(len(g.token_ids) for group in out for g in group)
    return {"tokens": tokens, "wall_s": wall, "cpu_s": cpu, "tokens_per_s": tokens / wall}


def run(args: argparse.Namespace) -> dict[str, Any]:
    import torch

    from rewardkit.generation import make_generator
    from rewardkit.generation.base import SamplingParams

    on_gpu = torch.cuda.is_available()
    if args.threads:
        torch.set_num_threads(args.threads)
    params = SamplingParams(n=args.group, temperature=1.0, max_tokens=args.max_tokens, seed=0)
    results: dict[str, Any] = {"load_before": os.getloadavg(), "hf_threads": torch.get_num_threads()}
    with tempfile.TemporaryDirectory() as path:
        model, tok, prompts = build(args, path)
        if on_gpu:
            model = model.to("cuda", torch.bfloat16)
        hf = make_generator("hf", model, tok, max_batch_size=args.hf_batch or len(prompts) * args.group)
        results["hf"] = timed(hf, prompts, params)
        print("hf  :", results["hf"], flush=True)
        start = time.perf_counter()
        vllm = make_generator(
            "vllm",
            path,
            tok,
            dtype="bfloat16" if on_gpu else "float32",
            gpu_memory_utilization=args.gpu_memory_utilization,
            max_model_len=1024,
        )
        results["vllm_startup_s"] = time.perf_counter() - start
        results["vllm"] = timed(vllm, prompts, params)
        print("vllm:", results["vllm"], flush=True)
    results["load_after"] = os.getloadavg()
    results["device"] = torch.cuda.get_device_name() if on_gpu else f"CPU ({os.cpu_count()} cores)"
    results["params"] = sum(p.numel() for p in model.parameters())
    return results


def section(args: argparse.Namespace, r: dict[str, Any]) -> str:
    import torch
    import transformers
    import vllm

    hf, vl = r["hf"], r["vllm"]
    load = lambda x: ", ".join(f"{v:.1f}" for v in x)  # noqa: E731
    return "\n".join(
        [
            SECTION,
            "",
            f"- date: {datetime.datetime.now(datetime.UTC).strftime('%Y-%m-%d %H:%M UTC')}",
            f"- machine: {platform.machine()}, {r['device']}, Python {platform.python_version()}; "
            f"torch {torch.__version__}, transformers {transformers.__version__}, vLLM {vllm.__version__}",
            f"- load average (1/5/15 min) before: {load(r['load_before'])}, after: {load(r['load_after'])} "
            "(the machine is shared: figures move with the load)",
            f"- command: `python {' '.join(sys.argv)}`",
            f"- model: tiny Llama built on the spot, hidden {args.hidden}, {args.layers} layers, "
            f"{r['params'] / 1e6:.1f} M parameters; {args.prompts} prompts x G={args.group}, temperature 1, "
            f"max {args.max_tokens} new tokens; HF with {r['hf_threads']} torch thread(s), vLLM with its own "
            "thread binding",
            "",
            "| back end | generated tokens | wall s | process CPU s | tokens/s |",
            "|---|---:|---:|---:|---:|",
            f"| hf (KV cache, left padding) | {hf['tokens']} | {hf['wall_s']:.2f} | {hf['cpu_s']:.1f} "
            f"| {hf['tokens_per_s']:.0f} |",
            f"| vllm (colocated) | {vl['tokens']} | {vl['wall_s']:.2f} | {vl['cpu_s']:.1f} | {vl['tokens_per_s']:.0f} |",
            "",
            f"vLLM / HF throughput: **{vl['tokens_per_s'] / hf['tokens_per_s']:.2f}x**; vLLM engine start-up "
            f"(once per run, not in the figures): {r['vllm_startup_s']:.1f} s. Process CPU time next to wall "
            "time shows how much of the shared machine each back end got.",
            "",
        ]
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--prompts", type=int, default=16)
    parser.add_argument("--group", type=int, default=8, help="samples per prompt (G)")
    parser.add_argument("--max-tokens", type=int, default=96)
    parser.add_argument("--hidden", type=int, default=256, help="model width (head_dim is 32)")
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--hf-batch", type=int, default=0, help="HF micro-batch rows (0: the whole batch)")
    parser.add_argument("--gpu-memory-utilization", type=float, default=0.2)
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch threads for the HF back end (0: torch's default). On a busy machine several OpenMP "
        "threads spin-wait on each other; vLLM likewise drops torch to 1 thread for serving",
    )
    parser.add_argument("--write", action="store_true", help="write the section of BENCHMARKS.md")
    parser.add_argument("--output", default=os.path.join(os.path.dirname(__file__), "..", "BENCHMARKS.md"))
    args = parser.parse_args(argv)
    os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
    body = section(args, run(args))
    print(body)
    if args.write:
        write_section(args.output, SECTION, body)


if __name__ == "__main__":
    main()
