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
    from rewardkit.config import add_arguments
    from rewardkit.eval.config import EvalConfig
    from rewardkit.eval.suite import Overrides
    from rewardkit.imports import add_import_argument

    p = sub.add_parser(
        "eval",
        help="evaluate a model on a suite of environments (pass@k, reports, resumable), or compare two runs",
        description="Generate n samples per task, score them, and write rollouts.jsonl, summary.json, "
        "report.md and report.png to --output-dir. See docs/evaluation.md.",
    )
    what = p.add_argument_group("what to evaluate")
    add_arguments(what, EvalConfig, only=("model", "step"))
    what.add_argument("--suite", help="built-in suite name (smoke, math, code, demo) or a suite YAML file")
    what.add_argument("--envs", help="ad-hoc suite: comma-separated environment names, e.g. math,format")
    what.add_argument(
        "--tasks",
        default="test",
        help="with --envs: a split name for env.tasks(split), or module:function returning tasks (default: test)",
    )
    what.add_argument(
        "--data",
        metavar="FILE_OR_DATASET",
        help="with --envs: your own tasks from a .jsonl/.json/.parquet/.csv file or a dataset id "
        "(prompt and answer columns found by name; a suite file's `data:` key maps columns, see docs/evaluation.md)",
    )
    what.add_argument(
        "--data-arg",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="with --data: a DataConfig key, e.g. --data-arg prompt_field=text (see docs/training.md)",
    )
    add_import_argument(what)
    what.add_argument(
        "--tasks-arg",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="with --envs and --tasks module:function: a keyword argument for it",
    )
    how = p.add_argument_group("sampling (overrides the suite's values in every environment)")
    add_arguments(how, Overrides, flag_names={"max_tokens": "--max-new-tokens"})
    run = p.add_argument_group("running")
    add_arguments(run, EvalConfig, skip=("model", "step"))
    run.add_argument(
        "-q",
        "--quiet",
        dest="progress",
        action="store_false",
        default=argparse.SUPPRESS,
        help="no progress bars",
    )
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
    from rewardkit.config import build, values_from_args
    from rewardkit.eval.config import EvalConfig

    running = values_from_args(args, EvalConfig)
    missing = [
        flag for flag, key in (("--model", "model"), ("--output-dir", "output_dir")) if not running.get(key)
    ]
    if missing:
        print(
            f"error: rewardkit eval needs {' and '.join(missing)} (or --compare RUN_A RUN_B)", file=sys.stderr
        )
        return 2
    if bool(args.suite) == bool(args.envs):
        print("error: give exactly one of --suite NAME_OR_FILE and --envs a,b,c", file=sys.stderr)
        return 2
    from rewardkit.eval.run import evaluate
    from rewardkit.imports import import_modules

    import_modules(args.imports)
    suite = _suite(args)
    cfg = build(EvalConfig, running, where="rewardkit eval")
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
    out = Path(cfg.output_dir)
    print(f"\nreport: {out / 'report.md'}\nrollouts: {out / 'rollouts.jsonl'}")
    return 0


def _suite(args: argparse.Namespace) -> Any:
    from rewardkit.config import build, values_from_args
    from rewardkit.eval.suite import Overrides, adhoc_suite, load_suite

    overrides = build(Overrides, values_from_args(args, Overrides), where="rewardkit eval")
    if args.suite:
        return load_suite(args.suite, overrides)
    from rewardkit.config import parse_overrides

    source: dict[str, Any] = {"generator": args.tasks} if ":" in args.tasks else {"split": args.tasks}
    if args.data:
        source = {"data": {**parse_overrides(args.data_arg), "path": args.data}}
    elif args.data_arg:
        raise ValueError("--data-arg needs --data FILE_OR_DATASET")
    if args.tasks_arg:
        source["kwargs"] = parse_overrides(args.tasks_arg)
    envs = [e.strip() for e in args.envs.split(",") if e.strip()]
    return adhoc_suite(envs, source, overrides)


def _compare(args: argparse.Namespace) -> int:
    from rewardkit.eval.report import compare_summaries, load_summary, render_comparison

    run_a, run_b = args.compare
    table = render_comparison(compare_summaries(load_summary(run_a), load_summary(run_b)), run_a, run_b)
    print(table)
    output_dir = getattr(args, "output_dir", None)
    out = Path(output_dir) if output_dir else Path(run_b)
    out.mkdir(parents=True, exist_ok=True)
    (out / "compare.md").write_text(table)
    print(f"written to {out / 'compare.md'}", file=sys.stderr)
    return 0
