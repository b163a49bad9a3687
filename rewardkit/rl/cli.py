"""``rewardkit train`` (hooked into rewardkit/cli.py)."""

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


def cmd_train(args: argparse.Namespace) -> int:
    from rewardkit.config import parse_overrides
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
