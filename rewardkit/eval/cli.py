"""``rewardkit eval`` (hooked into rewardkit/cli.py through ``add_parser``).

rewardkit eval --model runs/demo/grpo --suite demo --output-dir runs/eval/demo
rewardkit eval --model MODEL_DIR --envs math --n 4 --k 1,2,4 --output-dir runs/eval/math
rewardkit eval --compare runs/eval/before runs/eval/after
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "eval",
        help="evaluate a model on a suite of environments (pass@k, reports, resumable), or compare two runs",
        description="Generate n samples per task, score them, and write rollouts.jsonl, summary.json, "
        "report.md and report.png to --output-dir. See docs/evaluation.md.",
    )
    what = p.add_argument_group("what to evaluate")
    what.add_argument(
        "--model",
        help="training output dir (latest checkpoint, or --step), checkpoint dir, HF model dir or hub id",
    )
    what.add_argument("--step", type=int, help="checkpoint step of a training output dir")
    what.add_argument("--suite", help="built-in suite name (smoke, math, code, demo) or a suite YAML file")
    what.add_argument("--envs", help="ad-hoc suite: comma-separated environment names, e.g. math,format")
    what.add_argument(
        "--tasks",
        default="test",
        help="with --envs: a split name for env.tasks(split), or module:function returning tasks (default: test)",
    )
    what.add_argument(
        "--tasks-arg",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="with --envs and --tasks module:function: a keyword argument for it",
    )
    how = p.add_argument_group("sampling (overrides the suite's values in every environment)")
    how.add_argument("--n", type=int, help="samples per task")
    how.add_argument("--k", help="comma-separated k values for pass@k (each <= n), e.g. 1,2,4")
    how.add_argument("--num-tasks", type=int, help="evaluate only the first N tasks of each environment")
    how.add_argument("--temperature", type=float)
    how.add_argument("--top-p", type=float)
    how.add_argument("--max-new-tokens", type=int)
    how.add_argument("--seed", type=int)
    how.add_argument(
        "--chat",
        action="store_true",
        help="send plain-text prompts through the chat template (instruct models)",
    )
    how.add_argument("--batch-tasks", type=int, help="tasks per generation call (the unit of resumption)")
    run = p.add_argument_group("running")
    run.add_argument("--backend", choices=("hf", "vllm", "auto"), default="hf")
    run.add_argument("--dtype", choices=("auto", "bf16", "fp32"), default="auto")
    run.add_argument("--max-batch-size", type=int, default=64, help="hf back end: rows per forward pass")
    run.add_argument("--output-dir", help="where results go (required unless --compare)")
    run.add_argument("--resume", action="store_true", help="continue the results in --output-dir")
    run.add_argument("--overwrite", action="store_true", help="discard results already in --output-dir")
    run.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    p.add_argument(
        "--compare",
        nargs=2,
        metavar=("RUN_A", "RUN_B"),
        help="side-by-side table of two evaluation output dirs",
    )
    p.set_defaults(func=cmd_eval)


def cmd_eval(args: argparse.Namespace) -> int:
    if args.compare:
        return _compare(args)
    missing = [
        flag for flag, value in (("--model", args.model), ("--output-dir", args.output_dir)) if not value
    ]
    if missing:
        print(
            f"error: rewardkit eval needs {' and '.join(missing)} (or --compare RUN_A RUN_B)", file=sys.stderr
        )
        return 2
    if bool(args.suite) == bool(args.envs):
        print("error: give exactly one of --suite NAME_OR_FILE and --envs a,b,c", file=sys.stderr)
        return 2
    from rewardkit.eval.run import EvalConfig, evaluate

    suite = _suite(args)
    cfg = EvalConfig(
        model=args.model,
        output_dir=args.output_dir,
        step=args.step,
        backend=args.backend,
        dtype=args.dtype,
        max_batch_size=args.max_batch_size,
        resume=args.resume,
        overwrite=args.overwrite,
        progress=not args.quiet,
    )
    try:
        summary = evaluate(cfg, suite)
    except KeyboardInterrupt:
        print("interrupted: finished tasks are saved; run the same command with --resume", file=sys.stderr)
        return 130
    from rewardkit.eval.report import env_table, overview_table

    print("\n".join(overview_table(summary["environments"])))
    for label, stats in summary["environments"].items():
        print(f"\n## {label}\n")
        print("\n".join(env_table(stats)))
    out = Path(args.output_dir)
    print(f"\nreport: {out / 'report.md'}\nrollouts: {out / 'rollouts.jsonl'}")
    return 0


def _suite(args: argparse.Namespace) -> Any:
    from rewardkit.eval.suite import Overrides, adhoc_suite, load_suite

    overrides = Overrides(
        n=args.n,
        k=tuple(int(x) for x in args.k.split(",")) if args.k else None,
        num_tasks=args.num_tasks,
        batch_tasks=args.batch_tasks,
        chat=True if args.chat else None,
        temperature=args.temperature,
        top_p=args.top_p,
        max_tokens=args.max_new_tokens,
        seed=args.seed,
    )
    if args.suite:
        return load_suite(args.suite, overrides)
    from rewardkit.cli import parse_overrides

    source = {"generator": args.tasks} if ":" in args.tasks else {"split": args.tasks}
    if args.tasks_arg:
        source["kwargs"] = parse_overrides(args.tasks_arg)
    envs = [e.strip() for e in args.envs.split(",") if e.strip()]
    return adhoc_suite(envs, source, overrides)


def _compare(args: argparse.Namespace) -> int:
    from rewardkit.eval.report import compare_summaries, load_summary, render_comparison

    run_a, run_b = args.compare
    table = render_comparison(compare_summaries(load_summary(run_a), load_summary(run_b)), run_a, run_b)
    print(table)
    out = Path(args.output_dir) if args.output_dir else Path(run_b)
    out.mkdir(parents=True, exist_ok=True)
    (out / "compare.md").write_text(table)
    print(f"written to {out / 'compare.md'}", file=sys.stderr)
    return 0
