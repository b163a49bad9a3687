"""Synchronous vs asynchronous rollouts on the CPU demo: steps per second and held-out accuracy.

Per seed: the demo's tasks, tiny Llama and SFT warm-up (``rewardkit.demo``, seeded), then the demo's GRPO
run twice from that one starting model, the same steps, prompts and samples each:

- ``sync``: ``rollout_mode: sync`` on one torch thread (the demo's setting: one thread is faster than two
  for a 1M-parameter model, BENCHMARKS.md), generation and training taking turns on one core;
- ``async``: ``rollout_mode: async, max_staleness: 1``: the rollout process (one thread) samples step
  N+1 with the weights of step N-1 while the trainer (one thread) updates on step N: a core each.

Steps per second is steps over the training loop's time (the sum of ``step_time_s``; start-up, the
final checkpoint and the evaluation are left out, and reported apart as wall time). Accuracy is the
demo's: greedy, its 200 held-out additions. Every finished run is written to ``--json`` at once.

    python benchmarks/async_vs_sync.py [--seeds 3] [--steps 300] [--write] [--json FILE]
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_report import write_section  # noqa: E402

SECTION = "## Asynchronous rollouts: sync vs max_staleness 1 on the CPU demo"
DEFAULT_JSON = Path(__file__).resolve().parent / "results" / "async_vs_sync.json"
TARGET = 1.3
MODES = {"sync": {"rollout_mode": "sync"}, "async": {"rollout_mode": "async", "max_staleness": 1}}


def start_model(seed: int, work: Path, sft_steps: int) -> tuple[Path, Any, list, dict[str, float]]:
    """The demo's starting point for ``seed``: tasks, the SFT-warmed tiny Llama (saved), its accuracy."""
    import torch

    from rewardkit.demo import DemoConfig, demo_tasks, evaluate, sft, solution
    from rewardkit.models.tiny import TinyConfig, build_tiny

    cfg = DemoConfig(output_dir=str(work), seed=seed, sft_steps=sft_steps)
    torch.manual_seed(seed)
    torch.set_num_threads(1)
    train_tasks = demo_tasks("train", cfg.train_tasks, seed)
    model, tokenizer = build_tiny([t.prompt + solution(t) for t in train_tasks], TinyConfig(seed=seed))
    sft(model, tokenizer, train_tasks, cfg)
    path = work / "sft_model"
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path, cfg, train_tasks, evaluate(path, work / "eval_start", cfg)


def train_once(mode: str, model: Path, cfg: Any, tasks: list, steps: int, work: Path) -> dict[str, Any]:
    """The demo's GRPO run in ``mode``; its loop time, wall time and held-out accuracy."""
    import torch

    from rewardkit.demo import evaluate
    from rewardkit.rl.config import TrainConfig
    from rewardkit.rl.trainer import train

    torch.set_num_threads(1 if mode == "sync" else 2)  # async: one for the trainer, one for the rollouts
    train_cfg = TrainConfig(
        model=str(model),
        env="weighted",
        env_config={"components": {"math": 1.0, "format": cfg.format_weight}},
        algorithm="grpo",
        algo={"kl_coef": 0.0},
        prompts_per_step=cfg.prompts_per_step,
        group_size=cfg.group_size,
        max_new_tokens=cfg.max_new_tokens,
        steps=steps,
        lr=cfg.grpo_lr,
        temperature=cfg.temperature,
        micro_batch_size=64,
        output_dir=str(work / mode),
        seed=cfg.seed,
        save_every=0,
        sample_every=0,
        progress=False,
        **MODES[mode],
    )
    t0 = time.perf_counter()
    result = train(train_cfg, tasks=tasks, overwrite=True)
    wall = time.perf_counter() - t0
    rows = [json.loads(line) for line in (result.output_dir / "metrics.jsonl").read_text().splitlines()]
    loop = sum(r["step_time_s"] for r in rows)
    after = evaluate(result.output_dir, work / f"eval_{mode}", cfg)
    torch.set_num_threads(1)
    return {
        "steps": len(rows),
        "loop_s": loop,
        "wall_s": wall,
        "steps_per_s": len(rows) / loop,
        "accuracy": after["accuracy"],
        "format_rate": after["format_rate"],
        "staleness_mean": statistics.mean(r.get("staleness", 0.0) for r in rows),
        "rollout_wait_s_mean": statistics.mean(r.get("rollout_wait_s", 0.0) for r in rows),
        "reward_mean_last20": statistics.mean(r["reward_mean"] for r in rows[-20:]),
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    path = Path(args.json)
    results = json.loads(path.read_text()) if args.resume and path.exists() else {"seeds": {}}
    results.update(
        steps=args.steps,
        sft_steps=args.sft_steps,
        machine=f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
        load_before=os.getloadavg(),
    )
    for seed in range(args.seeds):
        if str(seed) in results["seeds"]:
            continue
        with tempfile.TemporaryDirectory(prefix="async_vs_sync_") as tmp:
            work = Path(tmp)
            model, cfg, tasks, start = start_model(seed, work, args.sft_steps)
            entry: dict[str, Any] = {"start_accuracy": start["accuracy"]}
            for mode in MODES:
                entry[mode] = train_once(mode, model, cfg, tasks, args.steps, work)
                print(
                    f"[bench] seed {seed} {mode}: {entry[mode]['steps_per_s']:.2f} steps/s, accuracy "
                    f"{start['accuracy']:.1%} -> {entry[mode]['accuracy']:.1%}",
                    flush=True,
                )
        results["seeds"][str(seed)] = entry
        results["load_after"] = os.getloadavg()
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(results, indent=2))
    return results


def report(results: dict[str, Any], command: str) -> str:
    seeds = dict(sorted(results["seeds"].items(), key=lambda kv: int(kv[0])))
    speedups = [s["async"]["steps_per_s"] / s["sync"]["steps_per_s"] for s in seeds.values()]
    gaps = [100 * (s["async"]["accuracy"] - s["sync"]["accuracy"]) for s in seeds.values()]

    def mean_std(values: list[float]) -> str:
        spread = statistics.stdev(values) if len(values) > 1 else 0.0
        return f"{statistics.mean(values):.2f} +- {spread:.2f}"

    lines = [
        SECTION,
        "",
        f"- date: {datetime.date.today()}; machine: {results['machine']}; load average before "
        f"{results['load_before'][0]:.2f}, after {results['load_after'][0]:.2f}",
        f"- command: `{command}`",
        f"- per seed (0..{len(seeds) - 1}): the demo's tasks, tiny Llama and {results['sft_steps']} SFT steps, then "
        f"the demo's GRPO run ({results['steps']} steps, 16 prompts x 8 samples, weighted math + format) "
        "twice from that model: `sync` on one torch thread, `async` with `max_staleness: 1` (trainer and "
        "rollout process one thread each)",
        "- steps/s: steps over the training loop's time (sum of `step_time_s`); wall time adds start-up "
        "(the rollout process's too) and the final checkpoint. Accuracy: greedy, 200 held-out additions",
        "",
        "| seed | start acc | sync steps/s | async steps/s | speed-up | sync acc | async acc | async wait/step |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for seed, s in seeds.items():
        a, b = s["sync"], s["async"]
        lines.append(
            f"| {seed} | {s['start_accuracy']:.1%} | {a['steps_per_s']:.2f} | {b['steps_per_s']:.2f} | "
            f"{b['steps_per_s'] / a['steps_per_s']:.2f}x | {a['accuracy']:.1%} | {b['accuracy']:.1%} | "
            f"{b['rollout_wait_s_mean'] * 1000:.0f} ms |"
        )
    held = statistics.mean(speedups) >= TARGET
    lines += [
        "",
        f"- speed-up (async / sync steps/s): {mean_std(speedups)} over {len(seeds)} seeds "
        f"(min {min(speedups):.2f}x); target >= {TARGET}x: {'met' if held else 'not met'}",
        f"- held-out accuracy, async minus sync: {mean_std(gaps)} points (per seed: "
        + ", ".join(f"{g:+.1f}" for g in gaps)
        + ")",
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=300, help="GRPO steps of each run (the demo's: 300)")
    parser.add_argument("--sft-steps", type=int, default=300)
    parser.add_argument("--json", default=str(DEFAULT_JSON))
    parser.add_argument("--resume", action="store_true", help="keep the seeds already in --json")
    parser.add_argument("--write", action="store_true", help="write the section into BENCHMARKS.md")
    parser.add_argument(
        "--benchmarks-file", default=str(Path(__file__).resolve().parents[1] / "BENCHMARKS.md")
    )
    args = parser.parse_args(argv)
    results = run(args)
    text = report(results, "python benchmarks/" + " ".join([Path(sys.argv[0]).name, *(argv or sys.argv[1:])]))
    print(text)
    if args.write:
        write_section(args.benchmarks_file, SECTION, text)


if __name__ == "__main__":
    main()
