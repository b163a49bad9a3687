"""GRPO step time, throughput, memory and accuracy: rewardkit's trainer vs TRL's ``GRPOTrainer``.

Both trainers start from the same model (the demo's tiny Llama, warmed up with the demo's SFT, or
``--model DIR``), train on the same tasks (``demo_tasks("train")``) against the same reward
(``weighted``: math 1.0 + format 0.2, TRL through ``env.as_trl_reward_func()``), with the same
shape of step: 16 prompts x G=8 = 128 completions generated and one optimizer update per step
(``--prompts-per-step``), at most 40 new tokens, temperature 1, constant learning rate, no KL term
(beta=0, so no reference model), one PPO epoch, fp32 on CPU, fixed seeds. ``--task-seed`` fixes the
tasks, the tiny model and its SFT (the demo's: seed 0); ``--seed`` only the trainers' own randomness
(prompt order, sampling), so ``grpo_vs_trl_seeds.py`` can vary it from one shared starting model.
Loss: rewardkit ``grpo`` (group-normalised advantage, per-sequence token mean) against TRL
``loss_type="grpo"`` with ``scale_rewards="group"``, the same aggregation. Each trainer runs in its
own child process, one after the other, so its peak RSS is its own.

Time per step is wall time of one optimizer step including generation, scoring and the update:
rewardkit's ``step_time_s`` from ``metrics.jsonl``; for TRL the time between a callback's
``on_step_begin`` and ``on_step_end`` (TRL generates inside the step). Step 1 is warm-up (scoring
workers start, allocator grows) and left out of median and mean.

    python benchmarks/grpo_vs_trl.py [--steps 30 --sft-steps 300 --lr 1e-4 | --model DIR] [--write]
    [--prompts-per-step 16] [--temperature 1.0] [--threads N] [--seed 0] [--task-seed 0]
    [--save-results FILE.json] [--profile]   # every per-step figure; cProfile of rewardkit (stderr)

``grpo_vs_trl_seeds.py`` runs the same two children over many seeds (learning and speed, mean and spread).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench_report import write_section  # noqa: E402 - benchmarks/ is on sys.path when run as a script

SECTION = "## GRPO step time: rewardkit vs TRL"
GROUP_SIZE = 8
MAX_NEW_TOKENS = 40
TRAIN_TASKS = 3000
TEST_TASKS = 200
REWARD = {"math": 1.0, "format": 0.2}
TARGET_RATIO = 0.8


# ---------------------------------------------------------------------------------------------------------------
# Parent: build the shared starting model, run each trainer in a child, report.


def build_start_model(args: argparse.Namespace, path: Path) -> dict[str, Any]:
    """The demo's tiny Llama after ``args.sft_steps`` SFT steps, saved to ``path``; its held-out scores."""
    import random

    import torch

    from rewardkit.demo import DemoConfig, demo_tasks, sft, solution
    from rewardkit.models.tiny import TinyConfig, build_tiny

    seed = args.task_seed
    random.seed(seed)
    torch.manual_seed(seed)
    train_tasks = demo_tasks("train", TRAIN_TASKS, seed)
    model, tokenizer = build_tiny([t.prompt + solution(t) for t in train_tasks], TinyConfig(seed=seed))
    start = time.perf_counter()
    sft(model, tokenizer, train_tasks, DemoConfig(seed=seed, sft_steps=args.sft_steps))
    print(f"[bench] SFT warm-up: {args.sft_steps} steps in {time.perf_counter() - start:.0f} s", flush=True)
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return _evaluate_dir(path, args)


def run_child(trainer: str, args: argparse.Namespace, model_dir: Path, work: Path) -> dict[str, Any]:
    """Run one trainer in a fresh interpreter; its result comes back as JSON in a file."""
    result_path = work / f"{trainer}.json"
    cmd = [sys.executable, os.path.abspath(__file__), "--child", trainer, "--model", str(model_dir)]
    cmd += ["--steps", str(args.steps), "--lr", str(args.lr), "--seed", str(args.seed)]
    cmd += ["--task-seed", str(args.task_seed), "--prompts-per-step", str(args.prompts_per_step)]
    cmd += ["--temperature", str(args.temperature), "--threads", str(args.threads)]
    cmd += ["--result", str(result_path), "--work", str(work / trainer)]
    if args.profile and trainer == "rewardkit":
        cmd += ["--profile"]
    print(f"[bench] {trainer}: {' '.join(cmd[1:])}", flush=True)
    subprocess.run(cmd, check=True)
    return json.loads(result_path.read_text())


def summarise(step_times: list[float], tokens: list[int], cpu_times: list[float]) -> dict[str, float]:
    """Median/mean step time and generated tokens/s over the steps after the first (warm-up)."""
    times, toks = step_times[1:] or step_times, tokens[1:] or tokens
    cpus = cpu_times[1:] or cpu_times
    return {
        "steps_timed": len(times),
        "median_s": statistics.median(times),
        "mean_s": statistics.fmean(times),
        "min_s": min(times),
        "max_s": max(times),
        "tokens_per_step": statistics.fmean(toks),
        "tokens_per_s": sum(toks) / sum(times),
        "cpu_s_per_step": statistics.fmean(cpus) if cpus else float("nan"),
    }


# ---------------------------------------------------------------------------------------------------------------
# Children: one trainer each.


def child_rewardkit(args: argparse.Namespace) -> dict[str, Any]:
    from rewardkit.demo import demo_tasks
    from rewardkit.registry import load_env
    from rewardkit.rl.config import TrainConfig
    from rewardkit.rl.trainer import train

    completions = args.prompts_per_step * GROUP_SIZE
    cfg = TrainConfig(
        model=args.model,
        env="weighted",
        env_config={"components": REWARD},
        algorithm="grpo",
        algo={"kl_coef": 0.0},  # GRPO aggregation (per-sequence token mean), no reference model
        prompts_per_step=args.prompts_per_step,
        group_size=GROUP_SIZE,
        max_new_tokens=MAX_NEW_TOKENS,
        temperature=args.temperature,
        rollout_batch_size=completions,  # like TRL: all the step's rows in one generate call
        micro_batch_size=completions,  # like TRL: one forward/backward over them
        steps=args.steps,
        lr=args.lr,
        lr_schedule="constant",
        warmup_steps=0,
        max_grad_norm=1.0,
        dtype="fp32",
        output_dir=args.work,
        seed=args.seed,
        save_every=0,
        sample_every=0,
        progress=False,
    )
    env = load_env("weighted", components=REWARD)
    tasks = demo_tasks("train", TRAIN_TASKS, args.task_seed)
    step_cpu = _clock_rewardkit_steps()
    cpu0, wall0 = time.process_time(), time.perf_counter()
    result = _maybe_profiled(args, lambda: train(cfg, env=env, tasks=tasks))
    train_wall, train_cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    env.close()
    rows = [json.loads(line) for line in (Path(args.work) / "metrics.jsonl").read_text().splitlines()]
    scores = _evaluate_dir(result.final_model, args)
    return {
        "step_times": [r["step_time_s"] for r in rows],
        "tokens": [round(r["response_len_mean"] * r["num_samples"]) for r in rows],
        "cpu_times": step_cpu,
        "rollout_s": [r["rollout_time_s"] for r in rows],
        "score_s": [r["score_time_s"] for r in rows],
        "reward_mean": [r["reward_mean"] for r in rows],
        "train_wall_s": train_wall,
        "train_cpu_s": train_cpu,
        "peak_rss_mb": peak_kb / 1024,
        **scores,
    }


def _clock_rewardkit_steps() -> list[float]:
    """Process CPU time of each rewardkit step, measured from outside the trainer (which is not edited).

    A step starts with ``collect_batch`` and its ``step_time_s`` stops right before ``log_step``; the two
    names the trainer module imported are wrapped to read ``time.process_time()`` at those points.
    """
    import rewardkit.rl.trainer as trainer_module

    cpu: list[float] = []
    started: list[float] = []
    collect = trainer_module.collect_batch

    def timed_collect(*a: Any, **k: Any) -> Any:
        started.append(time.process_time())
        return collect(*a, **k)

    class ClockedLogger(trainer_module.RunLogger):
        def log_step(self, *a: Any, **k: Any) -> None:
            cpu.append(time.process_time() - started[-1])
            super().log_step(*a, **k)

    trainer_module.collect_batch = timed_collect
    trainer_module.RunLogger = ClockedLogger
    return cpu


def child_trl(args: argparse.Namespace) -> dict[str, Any]:
    import torch
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    from rewardkit.demo import demo_tasks
    from rewardkit.registry import load_env

    class StepClock(TrainerCallback):
        """Wall and process-CPU time of each optimizer step (TRL generates inside the step)."""

        def __init__(self) -> None:
            self.wall: list[float] = []
            self.cpu: list[float] = []
            self.rewards: list[float] = []
            self.logged_step_time: list[float] = []

        def on_step_begin(self, *a: Any, **k: Any) -> None:
            self._t, self._c = time.perf_counter(), time.process_time()

        def on_step_end(self, *a: Any, **k: Any) -> None:
            self.wall.append(time.perf_counter() - self._t)
            self.cpu.append(time.process_time() - self._c)

        def on_log(self, *a: Any, logs: dict | None = None, **k: Any) -> None:
            if logs and "reward" in logs:
                self.rewards.append(float(logs["reward"]))
            if logs and "step_time" in logs:  # TRL's own clock, kept as a cross-check of ours
                self.logged_step_time.append(float(logs["step_time"]))

    class TimedGRPOTrainer(GRPOTrainer):
        """Records the wall time of generation, for the rollout column; changes nothing else."""

        generate_s: list[float] = []

        def _generate_single_turn(self, *a: Any, **k: Any) -> Any:
            start = time.perf_counter()
            try:
                return super()._generate_single_turn(*a, **k)
            finally:
                self.generate_s.append(time.perf_counter() - start)

    env = load_env("weighted", components=REWARD)
    base_reward = env.as_trl_reward_func()
    tokens: list[int] = []
    score_s: list[float] = []

    def reward(prompts: list[Any], completions: list[Any], completion_ids: list[list[int]], **kw: Any) -> Any:
        tokens.append(sum(len(c) for c in completion_ids))  # generated tokens, eos included (as rewardkit)
        start = time.perf_counter()
        out = base_reward(prompts=prompts, completions=completions, **kw)
        score_s.append(time.perf_counter() - start)
        return out

    reward.__name__ = base_reward.__name__
    tasks = demo_tasks("train", TRAIN_TASKS, args.task_seed)
    dataset = Dataset.from_dict({"prompt": [t.prompt for t in tasks], "answer": [t.answer for t in tasks]})
    config = GRPOConfig(
        output_dir=args.work,
        per_device_train_batch_size=args.prompts_per_step * GROUP_SIZE,  # all completions of a step
        gradient_accumulation_steps=1,
        steps_per_generation=1,  # generate once per optimizer step: its completions = the train batch
        num_generations=GROUP_SIZE,
        max_completion_length=MAX_NEW_TOKENS,
        temperature=args.temperature,
        top_p=1.0,
        top_k=0,
        learning_rate=args.lr,
        lr_scheduler_type="constant",
        warmup_steps=0,
        max_grad_norm=1.0,
        weight_decay=0.0,
        optim="adamw_torch",
        beta=0.0,
        num_iterations=1,
        epsilon=0.2,
        loss_type="grpo",
        scale_rewards="group",
        max_steps=args.steps,
        logging_steps=1,
        report_to="none",
        use_vllm=False,
        use_cpu=True,
        bf16=False,
        fp16=False,
        seed=args.seed,
        data_seed=args.seed,
        save_strategy="no",
        disable_tqdm=True,
        dataloader_num_workers=0,
    )
    model = AutoModelForCausalLM.from_pretrained(args.model, dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(args.model)
    clock = StepClock()
    trainer = TimedGRPOTrainer(
        model=model,
        reward_funcs=[reward],
        args=config,
        train_dataset=dataset,
        processing_class=tokenizer,
        callbacks=[clock],
    )
    cpu0, wall0 = time.process_time(), time.perf_counter()
    trainer.train()
    train_wall, train_cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    env.close()
    if len(clock.wall) != args.steps or len(tokens) != args.steps:
        raise RuntimeError(
            f"expected {args.steps} steps with one generation each, got {len(clock.wall)} steps and "
            f"{len(tokens)} generation rounds: the comparison would not be per identical work"
        )
    scores = _evaluate_model(trainer.model, tokenizer, args)
    return {
        "step_times": clock.wall,
        "tokens": tokens,
        "cpu_times": clock.cpu,
        "rollout_s": TimedGRPOTrainer.generate_s,
        "score_s": score_s,
        "reward_mean": clock.rewards,
        "trl_logged_step_time": clock.logged_step_time,
        "train_wall_s": train_wall,
        "train_cpu_s": train_cpu,
        "peak_rss_mb": peak_kb / 1024,
        **scores,
    }


def _maybe_profiled(args: argparse.Namespace, fn: Any) -> Any:
    """Run ``fn``; with --profile under cProfile, printing the functions with the most cumulative time."""
    if not args.profile:
        return fn()
    import cProfile
    import pstats

    profiler = cProfile.Profile()
    try:
        return profiler.runcall(fn)
    finally:
        stats = pstats.Stats(profiler, stream=sys.stderr).sort_stats("cumulative")
        stats.print_stats(45)
        stats.dump_stats(str(Path(args.work) / "profile.pstats"))


def _evaluate_dir(model_dir: Path, args: argparse.Namespace) -> dict[str, float]:
    """Held-out accuracy and format rate of a saved model, measured as the demo measures them."""
    import tempfile

    from rewardkit.demo import DemoConfig, evaluate

    cfg = DemoConfig(seed=args.task_seed, test_tasks=TEST_TASKS, max_new_tokens=MAX_NEW_TOKENS)
    with tempfile.TemporaryDirectory(prefix="bench-eval-") as out:
        return evaluate(model_dir, Path(out), cfg)


def _evaluate_model(model: Any, tokenizer: Any, args: argparse.Namespace) -> dict[str, float]:
    """The same for a model in memory (TRL's trained one): saved first, as the demo evaluates checkpoints."""
    import tempfile

    with tempfile.TemporaryDirectory(prefix="bench-model-") as path:
        model.save_pretrained(path)
        tokenizer.save_pretrained(path)
        return _evaluate_dir(Path(path), args)


# ---------------------------------------------------------------------------------------------------------------
# Report


def table(r: dict[str, Any]) -> list[str]:
    rk, trl = r["rewardkit"], r["trl"]
    rows = [
        ("median time per step (s)", "{:.2f}", rk["median_s"], trl["median_s"]),
        ("mean time per step (s)", "{:.2f}", rk["mean_s"], trl["mean_s"]),
        (
            "fastest / slowest step (s)",
            "{}",
            f"{rk['min_s']:.2f} / {rk['max_s']:.2f}",
            f"{trl['min_s']:.2f} / {trl['max_s']:.2f}",
        ),
        (
            "generation time per step, mean (s)",
            "{:.2f}",
            mean_after_first(rk["rollout_s"]),
            mean_after_first(trl["rollout_s"]),
        ),
        (
            "scoring time per step, mean (s)",
            "{:.2f}",
            mean_after_first(rk["score_s"]),
            mean_after_first(trl["score_s"]),
        ),
        ("rest of the step (update, bookkeeping), mean (s)", "{:.2f}", _rest(rk), _rest(trl)),
        ("generated tokens per step, mean", "{:.0f}", rk["tokens_per_step"], trl["tokens_per_step"]),
        ("generated tokens/s (of step time)", "{:.0f}", rk["tokens_per_s"], trl["tokens_per_s"]),
        ("process CPU per step, mean (s)", "{:.2f}", rk["cpu_s_per_step"], trl["cpu_s_per_step"]),
        ("whole train() call, wall (s)", "{:.0f}", rk["train_wall_s"], trl["train_wall_s"]),
        ("whole train() call, process CPU (s)", "{:.0f}", rk["train_cpu_s"], trl["train_cpu_s"]),
        ("peak RSS of the trainer process (MiB)", "{:.0f}", rk["peak_rss_mb"], trl["peak_rss_mb"]),
        (
            "mean reward, last 5 steps",
            "{:.3f}",
            mean_last(rk["reward_mean"]),
            mean_last(trl["reward_mean"]),
        ),
        ("held-out accuracy after training", "{:.1%}", rk["accuracy"], trl["accuracy"]),
        ("held-out format rate after training", "{:.1%}", rk["format_rate"], trl["format_rate"]),
    ]
    out = ["| | rewardkit | TRL |", "|---|---:|---:|"]
    out += [f"| {label} | {fmt.format(a)} | {fmt.format(b)} |" for label, fmt, a, b in rows]
    return out


def _rest(r: dict[str, Any]) -> float:
    """Step time not spent generating or scoring: log-probs, loss, backward, optimizer, bookkeeping."""
    return r["mean_s"] - mean_after_first(r["rollout_s"]) - mean_after_first(r["score_s"])


def mean_after_first(xs: list[float]) -> float:
    xs = xs[1:] or xs
    return statistics.fmean(xs) if xs else float("nan")


def mean_last(xs: list[float], n: int = 5) -> float:
    return statistics.fmean(xs[-n:]) if xs else float("nan")


def section(args: argparse.Namespace, r: dict[str, Any]) -> str:
    rk, tr = r["rewardkit"], r["trl"]
    ratio = rk["median_s"] / tr["median_s"]
    mean_ratio = rk["mean_s"] / tr["mean_s"]
    cpu_ratio = rk["cpu_s_per_step"] / tr["cpu_s_per_step"]
    verdict = "met" if ratio <= TARGET_RATIO else "NOT met"
    acc = "equal or better" if rk["accuracy"] >= tr["accuracy"] else "lower"
    lines = [
        SECTION,
        "",
        *run_lines(r),
        *setup_lines(args, r),
        f"- held-out accuracy: `rewardkit.demo.evaluate`, greedy, {TEST_TASKS} test tasks, after "
        f"{args.steps} steps",
        "",
        *table(r),
        "",
        "Every step's wall time (s), step 1 first. On this shared machine other jobs' load stretches "
        "single steps 10x or more; a run compares the trainers only where both lists are steady.",
        "",
        f"- rewardkit: {' '.join(f'{t:.2f}' for t in rk['step_times'])}",
        f"- TRL: {' '.join(f'{t:.2f}' for t in tr['step_times'])}",
        "",
        f"rewardkit / TRL time per step: **{ratio:.2f}x** median ({mean_ratio:.2f}x mean); target <= "
        f"{TARGET_RATIO}: {verdict}. Process CPU time per step: {cpu_ratio:.2f}x. Accuracy: rewardkit {acc} ({rk['accuracy']:.1%} vs {tr['accuracy']:.1%}).",
        "",
    ]
    return "\n".join(lines)


def run_lines(r: dict[str, Any]) -> list[str]:
    """Date, machine and library versions, load average before and after, the command (``r["date"]`` and
    ``r["command"]`` when the results say when and how they were measured, else now and this command)."""
    import torch
    import transformers
    import trl

    load = lambda x: ", ".join(f"{v:.1f}" for v in x)  # noqa: E731
    date = r.get("date") or datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    return [
        f"- date: {date}",
        f"- machine: {platform.machine()}, {_cpu_name()}, {os.cpu_count()} CPUs, Python "
        f"{platform.python_version()}; torch {torch.__version__} ({r['threads']} thread{'s' * (r['threads'] != 1)}), "
        f"transformers {transformers.__version__}, TRL {trl.__version__}",
        f"- load average (1/5/15 min) before: {load(r['load_before'])}, after: {load(r['load_after'])} "
        "(the machine is shared with other jobs: wall figures move with the load; the CPU-time row shows "
        "how much CPU each trainer used)",
        f"- command: `python {r.get('command') or ' '.join(sys.argv)}`",
    ]


def setup_lines(args: argparse.Namespace, r: dict[str, Any], seeds: str = "") -> list[str]:
    """What both trainers start from and do each step, and how a step is timed; ``seeds`` replaces the
    one seed in the text (a multi-seed run names its range)."""
    start, n = r["start"], args.prompts_per_step * GROUP_SIZE
    return [
        f"- starting model: {r['start_desc']}; held-out accuracy at the start "
        f"{start['accuracy']:.1%}, format rate {start['format_rate']:.1%}",
        f"- both: {args.steps} steps, {args.prompts_per_step} prompts x G={GROUP_SIZE} = {n} completions "
        f"generated and one optimizer update per step, max {MAX_NEW_TOKENS} new tokens, temperature "
        f"{args.temperature:g}, lr {args.lr:g} constant, no warm-up, grad clip 1.0, AdamW, no KL (no "
        f"reference model), one epoch, fp32 on CPU, {seeds or f'seed {args.seed}'}; tasks of seed "
        f"{args.task_seed}; reward `weighted` (math 1.0 + format 0.2), TRL through `env.as_trl_reward_func()`",
        "- loss: rewardkit `algorithm=grpo, kl_coef=0` (advantage (r - mean_g) / (std_g + 1e-6), unbiased "
        "std; per-sequence token mean) vs TRL `loss_type='grpo', scale_rewards='group', beta=0` (the same "
        "advantage with eps 1e-4 and the same per-sequence token mean)",
        f"- TRL: `per_device_train_batch_size={n}, gradient_accumulation_steps=1, steps_per_generation=1`: "
        f"one `generate` of {n} completions per optimizer step (checked: one generation round per step); "
        f"rewardkit: `rollout_batch_size={n}, micro_batch_size={n}` (the same single forward/backward)",
        "- time per step: rewardkit's `step_time_s`; TRL's time between `on_step_begin` and `on_step_end`. "
        f"Step 1 is warm-up and left out: median and mean are over steps 2..{args.steps}. Tokens/s is "
        "generated (completion) tokens over step time. Peak RSS is `ru_maxrss` of the trainer's own child "
        "process after training (scoring workers are separate processes, the same for both).",
    ]


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "CPU"


def start_model(args: argparse.Namespace, work: Path) -> tuple[Path, dict[str, Any], str]:
    """The starting model's directory (``--model``, else the SFT model built in ``work``), its held-out
    scores and a description for the report."""
    if args.model:
        return Path(args.model), _evaluate_dir(Path(args.model), args), f"`{args.model}`"
    model_dir = work / "start_model"
    scores = build_start_model(args, model_dir)
    desc = (
        f"the demo's tiny Llama (`rewardkit.models.tiny`, hidden 128, 4 layers) after {args.sft_steps} "
        "steps of the demo's SFT warm-up"
    )
    return model_dir, scores, desc


def run(args: argparse.Namespace) -> dict[str, Any]:
    results: dict[str, Any] = {"load_before": os.getloadavg(), "threads": set_threads(args.threads)}
    with tempfile.TemporaryDirectory(prefix="grpo_vs_trl_") as tmp:
        work = Path(tmp)
        model_dir, results["start"], results["start_desc"] = start_model(args, work)
        for trainer in ("rewardkit", "trl"):
            raw = run_child(trainer, args, model_dir, work)
            results[trainer] = {**raw, **summarise(raw["step_times"], raw["tokens"], raw["cpu_times"])}
            print(f"[bench] {trainer}: median {results[trainer]['median_s']:.2f} s/step", flush=True)
    results["load_after"] = os.getloadavg()
    return results


def set_threads(n: int) -> int:
    """``torch.set_num_threads(n)`` when ``n`` > 0 (0 keeps torch's default); returns the count in use."""
    import torch

    if n > 0:
        torch.set_num_threads(n)
    return torch.get_num_threads()


def add_common_arguments(parser: argparse.ArgumentParser, *, steps: int, prompts: int) -> None:
    """The flags both benchmark scripts share (and that ``run_child`` forwards to the children)."""
    parser.add_argument("--steps", type=int, default=steps, help="GRPO steps for each trainer")
    parser.add_argument(
        "--prompts-per-step", type=int, default=prompts, help=f"prompts per step (x G={GROUP_SIZE})"
    )
    parser.add_argument("--sft-steps", type=int, default=300, help="SFT warm-up steps of the starting model")
    parser.add_argument("--model", default="", help="start from this model directory instead (skips SFT)")
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--temperature", type=float, default=1.0, help="rollout temperature (both)")
    parser.add_argument(
        "--task-seed",
        type=int,
        default=0,
        help="seed of the tasks, the tiny model and its SFT (the demo's: 0)",
    )
    parser.add_argument(
        "--threads", type=int, default=0, help="torch threads in every process (0: torch's default)"
    )
    parser.add_argument(
        "--benchmarks-file",
        "--output",
        dest="output",
        default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "BENCHMARKS.md"),
        help="the file --write records the section in",
    )
    parser.add_argument("--write", action="store_true", help="write the section of BENCHMARKS.md")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_common_arguments(parser, steps=30, prompts=16)
    parser.add_argument("--seed", type=int, default=0, help="the trainers' seed (prompt order, sampling)")
    parser.add_argument("--profile", action="store_true", help="cProfile rewardkit's train() (stderr)")
    parser.add_argument(
        "--save-results", default="", help="also write every per-step figure to this JSON file"
    )
    parser.add_argument("--child", choices=("rewardkit", "trl"), help=argparse.SUPPRESS)
    parser.add_argument("--result", help=argparse.SUPPRESS)
    parser.add_argument("--work", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.steps < 2:
        parser.error("--steps must be >= 2 (step 1 is warm-up and not timed)")
    if args.child:
        set_threads(args.threads)
        result = child_rewardkit(args) if args.child == "rewardkit" else child_trl(args)
        Path(args.result).write_text(json.dumps(result))
        return
    results = run(args)
    if args.save_results:
        Path(args.save_results).write_text(json.dumps(results, indent=1))
    body = section(args, results)
    print(body)
    if args.write:
        write_section(args.output, SECTION, body)


if __name__ == "__main__":
    main()
