"""``rewardkit demo``: the whole pipeline on a CPU in minutes, with nothing downloaded.

1. Make arithmetic tasks with the procedural generator (train/test splits are disjoint).
2. Train a BPE tokenizer on the spot and build a tiny Llama at random.
3. Warm it up with a short supervised pass (``rewardkit sft``) on ``<think>...</think><answer>...</answer>`` solutions,
   short enough that it learns the format but not yet the arithmetic.
4. Measure held-out accuracy (greedy) with ``rewardkit.eval`` (``demo_suite``, the built-in ``demo``
   suite), train with GRPO against ``math`` + ``format``, measure again the same way.
5. Print a before/after table; write ``summary.json``, the eval reports and the training curves.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from rewardkit.data.procedural import ProceduralConfig, generate_tasks
from rewardkit.eval import EvalConfig, Suite
from rewardkit.eval import evaluate as run_eval
from rewardkit.eval.suite import parse_suite
from rewardkit.models import checkpoint_dir
from rewardkit.types import Task

PROMPT = "Q: {question}\nA: "
SMOKE_NOTE = "smoke run: too few steps to learn; run without --quick for the real demo (about 5 min on a CPU)"


@dataclass(frozen=True)
class DemoConfig:
    """The demo's settings; the defaults are the tuned ones BENCHMARKS.md reports."""

    output_dir: str = "runs/demo"
    """Where the SFT model, the GRPO run, both evaluations and summary.json go."""
    seed: int = 0
    """Seed of the tasks, the tiny model's initialisation, SFT sampling and GRPO."""
    train_tasks: int = 3000
    """Additions to warm up and train on."""
    test_tasks: int = 200
    """Held-out additions (disjoint from the training ones) to measure accuracy on."""
    sft_steps: int = 300
    """Supervised warm-up steps: enough to learn the format, not yet the arithmetic."""
    sft_batch_size: int = 32
    """Worked solutions per SFT step."""
    sft_lr: float = 3e-3
    """SFT learning rate (AdamW)."""
    grpo_steps: int = 300
    """GRPO optimizer steps after the warm-up."""
    prompts_per_step: int = 16
    """GRPO prompts (groups) per step."""
    group_size: int = 8
    """Samples per prompt (G)."""
    grpo_lr: float = 2e-4
    """GRPO learning rate (AdamW)."""
    temperature: float = 0.6
    """Rollout temperature: a tiny model's samples at 1.0 are mostly noise; 0.6 keeps them diverse enough
    for group-relative advantages while the correct ones are frequent enough to learn from."""
    max_new_tokens: int = 40
    """Token budget of a solution, in training and evaluation."""
    format_weight: float = 0.2
    """Weight of the ``format`` reward next to ``math`` (1.0) in training."""
    smoke_run: bool = False
    """A smoke run (``--quick``): every stage runs, but too few steps to learn anything; the table says
    so instead of posing as a result."""
    verbose: bool = False
    """Show the libraries' own progress bars and INFO logs too (``rewardkit demo --verbose``)."""

    @classmethod
    def quick(cls, output_dir: str, seed: int = 0) -> DemoConfig:
        """A smoke-sized run: every stage, in well under a minute; it checks the pipeline, it learns nothing."""
        return cls(
            output_dir=output_dir,
            seed=seed,
            smoke_run=True,
            train_tasks=300,
            test_tasks=24,
            sft_steps=20,
            grpo_steps=2,
            prompts_per_step=4,
            group_size=4,
        )


def demo_tasks(split: str, n: int, seed: int) -> list[Task]:
    """Additions of two numbers below 100 from the procedural generator (level 1, ``+`` only)."""
    config = ProceduralConfig(seed=seed, levels=(1,), prompt_template=PROMPT)
    size = 4 * n + 16
    while True:  # about a third of level-1 problems are additions; grow the pool until there are n
        additions = [t for t in generate_tasks(split, size, config) if " + " in t.info["question"]]
        if len(additions) >= n:
            return additions[:n]
        size *= 2


def solution(task: Task) -> str:
    """A worked solution: column addition from the units digit, carries written out, then the answer.

    ``47 + 38`` -> ``<think>7+8=15 c1, 4+3+1=8</think><answer>85</answer>`` and ``17 + 93`` ->
    ``<think>7+3=10 c1, 1+9+1=11</think><answer>110</answer>``. Each step is a one-digit
    fact, which a tiny model learns in minutes; the answer is then copied from the steps.
    """
    a, b = (int(x) for x in task.info["question"].removeprefix("What is ").removesuffix("?").split(" + "))
    steps, carry = [], 0
    while a or b:
        da, db = a % 10, b % 10
        total = da + db + carry
        a, b = a // 10, b // 10
        lhs = f"{da}+{db}" + (f"+{carry}" if carry else "")
        carry = total // 10 if (a or b) else 0  # the last column keeps its full total: the leading digits
        steps.append(f"{lhs}={total}" + (" c1" if carry else ""))
    return f"<think>{', '.join(steps)}</think><answer>{task.answer}</answer>"


def run_demo(cfg: DemoConfig) -> dict[str, Any]:
    import torch

    from rewardkit.console import quiet_third_party
    from rewardkit.models.tiny import TinyConfig, build_tiny
    from rewardkit.registry import load_env
    from rewardkit.rl.config import TrainConfig
    from rewardkit.rl.trainer import train

    quiet_third_party(cfg.verbose)  # the demo prints its own progress
    t_start = time.perf_counter()
    out = Path(cfg.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    random.seed(cfg.seed)
    torch.manual_seed(cfg.seed)
    # A 1M-parameter model gains nothing from intra-op threads; on a small or busy machine they make
    # every matmul wait on the slowest core. One thread is faster here (measured: several times).
    torch.set_num_threads(1)
    train_tasks, test_tasks = (
        demo_tasks("train", cfg.train_tasks, cfg.seed),
        demo_tasks("test", cfg.test_tasks, cfg.seed),
    )
    _say(f"[demo] {len(train_tasks)} train / {len(test_tasks)} held-out arithmetic tasks")

    corpus = [t.prompt + solution(t) for t in train_tasks]
    model, tokenizer = build_tiny(corpus, TinyConfig(seed=cfg.seed))
    _say(
        f"[demo] tiny Llama: {sum(p.numel() for p in model.parameters()) / 1e6:.2f}M parameters, vocab {len(tokenizer)}"
    )
    sft(model, tokenizer, train_tasks, cfg, out / "sft")
    base_dir = out / "sft_model"
    model.save_pretrained(base_dir)
    tokenizer.save_pretrained(base_dir)

    env = load_env("weighted", components={"math": 1.0, "format": cfg.format_weight})
    before = evaluate(base_dir, out / "eval_sft", cfg)
    _say(f"[demo] after SFT warm-up: accuracy {before['accuracy']:.1%}, format {before['format_rate']:.1%}")

    train_cfg = TrainConfig(
        model=str(base_dir),
        env="weighted",
        algorithm="grpo",
        algo={"kl_coef": 0.0},
        prompts_per_step=cfg.prompts_per_step,
        group_size=cfg.group_size,
        max_new_tokens=cfg.max_new_tokens,
        steps=cfg.grpo_steps,
        lr=cfg.grpo_lr,
        temperature=cfg.temperature,
        micro_batch_size=64,
        output_dir=str(out / "grpo"),
        seed=cfg.seed,
        save_every=0,
        sample_every=max(1, cfg.grpo_steps // 4),
        verbose=cfg.verbose,
    )
    result = train(train_cfg, env=env, tasks=train_tasks, overwrite=True)
    env.close()
    after = evaluate(result.output_dir, out / "eval_grpo", cfg)
    summary = {
        "accuracy_before": before["accuracy"],
        "accuracy_after": after["accuracy"],
        "format_rate_before": before["format_rate"],
        "format_rate_after": after["format_rate"],
        "heldout_tasks": len(test_tasks),
        "grpo_steps": cfg.grpo_steps,
        "smoke_run": cfg.smoke_run,
        "wall_time_s": time.perf_counter() - t_start,
        "trained_model": str(checkpoint_dir(result.output_dir, cfg.grpo_steps) / "model"),
        "eval_reports": [str(out / "eval_sft" / "report.md"), str(out / "eval_grpo" / "report.md")],
        "plot": str(result.output_dir / "curves.png"),
        "config": asdict(cfg),
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    _print_table(summary)
    return summary


def sft(model: Any, tokenizer: Any, tasks: list[Task], cfg: DemoConfig, work: Path | None = None) -> None:
    """Supervised warm-up on the reference solutions with ``rewardkit sft`` (``rewardkit.rl.offline``):
    next-token loss on the completion only; ``model`` is updated in place. The SFT run (its data,
    metrics.jsonl, curves) is kept in ``work`` (default: a temporary directory)."""
    import tempfile

    from transformers import AutoModelForCausalLM

    from rewardkit.rl.offline import train_offline
    from rewardkit.rl.offline_config import OfflineConfig

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(work or tmp)
        start = work / "start_model"
        model.save_pretrained(start)
        tokenizer.save_pretrained(start)
        data = work / "sft_data.jsonl"
        data.write_text(
            "".join(json.dumps({"prompt": t.prompt, "completion": solution(t)}) + "\n" for t in tasks)
        )
        run = OfflineConfig(
            model=str(start),
            data=str(data),
            steps=cfg.sft_steps,
            batch_size=cfg.sft_batch_size,
            micro_batch_size=cfg.sft_batch_size,
            lr=cfg.sft_lr,
            weight_decay=0.01,  # torch's AdamW default, which the tuned warm-up was measured with
            eval_fraction=0.0,
            output_dir=str(work / "run"),
            seed=cfg.seed,
            log_every=50,
            keep_checkpoints=1,
            verbose=cfg.verbose,
        )
        result = train_offline(run, overwrite=True)
        trained = AutoModelForCausalLM.from_pretrained(
            result.final_model, dtype=next(model.parameters()).dtype
        )
        model.load_state_dict(trained.state_dict())
        _say(f"[demo] SFT: {cfg.sft_steps} steps, loss {result.last_metrics['loss']:.3f} ({run.output_dir})")


def pipeline_inputs(output_dir: str, seed: int = 0, train_tasks: int = 3000) -> dict[str, str]:
    """A ``call`` stage of a pipeline (``examples/pipelines/cpu.yaml``): the demo's starting point, a tiny
    Llama at random (its tokenizer trained on the tasks) in ``output_dir/model`` and its SFT data, the
    worked solutions of ``train_tasks`` additions, in ``output_dir/sft.jsonl``."""
    from rewardkit.models.tiny import TinyConfig, build_tiny

    tasks = demo_tasks("train", train_tasks, seed)
    out = Path(output_dir)
    build_tiny([t.prompt + solution(t) for t in tasks], TinyConfig(seed=seed), save_to=out / "model")
    data = out / "sft.jsonl"
    data.write_text(
        "".join(json.dumps({"prompt": t.prompt, "completion": solution(t)}) + "\n" for t in tasks)
    )
    return {"model": str(out / "model"), "data": str(data)}


def demo_suite(cfg: DemoConfig) -> Suite:
    """What the demo measures, as an evaluation suite: its held-out tasks, greedy, scored by
    ``math`` (accuracy) and ``format`` (format rate). The built-in ``demo`` suite is this one for the
    default config."""
    tasks = {
        "generator": "rewardkit.demo:demo_tasks",
        "kwargs": {"split": "test", "n": cfg.test_tasks, "seed": cfg.seed},
    }
    sampling = {"temperature": 0.0, "max_tokens": cfg.max_new_tokens, "seed": 0}
    defaults = {"n": 1, "k": [1], "batch_tasks": cfg.test_tasks, "sampling": sampling, "tasks": tasks}
    return parse_suite(
        {"name": "demo", "defaults": defaults, "environments": [{"env": "math"}, {"env": "format"}]}
    )


def evaluate(model: str | Path, out: Path, cfg: DemoConfig) -> dict[str, float]:
    """Greedy held-out accuracy and format rate of ``model``, through ``rewardkit.eval`` (results in ``out``)."""
    run = EvalConfig(model=str(model), output_dir=str(out), overwrite=True, progress=False)
    envs = run_eval(run, demo_suite(cfg))["environments"]
    return {"accuracy": envs["math"]["pass_at_k"]["1"], "format_rate": envs["format"]["pass_at_k"]["1"]}


def _print_table(summary: dict[str, Any]) -> None:
    rows = [("held-out accuracy", "accuracy"), ("format rate", "format_rate")]
    print("\n| metric            | before GRPO | after GRPO | change   |")
    print("|-------------------|-------------|------------|----------|")
    for label, key in rows:
        b, a = summary[f"{key}_before"], summary[f"{key}_after"]
        print(f"| {label:<17} | {b:>10.1%}  | {a:>9.1%}  | {100 * (a - b):+6.1f} pt |")
    print(
        f"\n{summary['heldout_tasks']} held-out tasks, {summary['grpo_steps']} GRPO steps, {summary['wall_time_s'] / 60:.1f} min"
    )
    print(f"trained model: {summary['trained_model']}\nplot: {summary['plot']}")
    if summary["smoke_run"]:
        print(f"\n{SMOKE_NOTE}")


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "demo", help="CPU demo: SFT a tiny model on arithmetic, then GRPO; prints accuracy before/after"
    )
    p.add_argument("--output-dir", default="runs/demo")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--steps", type=int, default=None, help="GRPO steps (default: the demo's tuned value)")
    p.add_argument(
        "--quick",
        action="store_true",
        help="a smoke run in well under a minute: every stage runs, nothing is learnt (for tests)",
    )
    p.set_defaults(func=cmd_demo)


def cmd_demo(args: argparse.Namespace) -> int:
    from dataclasses import replace

    cfg = (
        DemoConfig.quick(args.output_dir, args.seed)
        if args.quick
        else DemoConfig(output_dir=args.output_dir, seed=args.seed)
    )
    cfg = replace(cfg, verbose=args.verbose)
    if args.steps is not None:
        cfg = replace(cfg, grpo_steps=args.steps)
    run_demo(cfg)
    return 0


__all__ = ["DemoConfig", "demo_tasks", "evaluate", "pipeline_inputs", "run_demo", "sft"]
