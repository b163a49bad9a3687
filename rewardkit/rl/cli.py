"""``rewardkit train`` and ``rewardkit demo`` (hooked into rewardkit/cli.py)."""

from __future__ import annotations

import argparse
import sys
from typing import Any


def add_parser(sub: Any) -> None:
    p = sub.add_parser("train", help="train a policy with GRPO/DAPO/... from a YAML config")
    p.add_argument("config", nargs="?", help="YAML config (see examples/); keys are TrainConfig fields")
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config key, e.g. --set lr=1e-5",
    )
    p.add_argument("--resume", action="store_true", help="continue from the latest checkpoint in output_dir")
    p.add_argument(
        "--help-config", action="store_true", help="list every config key with its default and meaning"
    )
    p.set_defaults(func=cmd_train)

    p = sub.add_parser(
        "demo", help="CPU demo: SFT a tiny model on arithmetic, then GRPO; prints accuracy before/after"
    )
    p.add_argument("--output-dir", default="runs/demo")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--steps", type=int, default=None, help="GRPO steps (default: the demo's tuned value)")
    p.add_argument("--quick", action="store_true", help="a minute-long smoke version (for tests)")
    p.set_defaults(func=cmd_demo)


def cmd_train(args: argparse.Namespace) -> int:
    from rewardkit.cli import parse_overrides
    from rewardkit.rl.config import TrainConfig, describe

    if args.help_config:
        print(describe())
        return 0
    if not args.config:
        print("error: a CONFIG.yaml is required (or --help-config)", file=sys.stderr)
        return 2
    from rewardkit.rl.trainer import train

    cfg = TrainConfig.from_yaml(args.config, parse_overrides(args.set))
    result = train(cfg, resume=args.resume)
    last = result.last_metrics
    print(
        f"{'interrupted' if result.interrupted else 'finished'} at step {result.steps}: "
        f"reward {last.get('reward_mean', float('nan')):.4f}; outputs in {result.output_dir}"
    )
    return 130 if result.interrupted else 0


def cmd_demo(args: argparse.Namespace) -> int:
    from rewardkit.rl.demo import DemoConfig, run_demo

    cfg = (
        DemoConfig.quick(args.output_dir, args.seed)
        if args.quick
        else DemoConfig(output_dir=args.output_dir, seed=args.seed)
    )
    if args.steps is not None:
        from dataclasses import replace

        cfg = replace(cfg, grpo_steps=args.steps)
    run_demo(cfg)
    return 0
