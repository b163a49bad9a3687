"""``rewardkit train`` (hooked into rewardkit/cli.py)."""

from __future__ import annotations

import argparse
import dataclasses
import signal
import sys
from typing import TYPE_CHECKING, Any

from rewardkit.config import parse_overrides

if TYPE_CHECKING:
    from rewardkit.rl.offline import OfflineResult
    from rewardkit.rl.trainer import TrainResult


def add_parser(sub: Any) -> None:
    from rewardkit.imports import add_import_argument

    p = sub.add_parser(
        "train",
        help="train a policy with GRPO/DAPO/... (or DPO/IPO/SimPO/ORPO/KTO/RRHF on pairs) from a YAML config",
    )
    p.add_argument("config", nargs="?", help="YAML config (see examples/); keys are TrainConfig fields")
    _run_flags(p)
    add_import_argument(p)
    p.add_argument(
        "--nproc",
        type=int,
        default=None,
        metavar="N",
        help="data-parallel on N local ranks: runs `torchrun --nproc-per-node N -m rewardkit train ...` "
        "(several nodes: call torchrun yourself, see docs/scale.md)",
    )
    p.set_defaults(func=cmd_train)
    s = sub.add_parser(
        "sft", help="supervised fine-tuning on prompt/completion or chat data from a YAML config"
    )
    s.add_argument("config", nargs="?", help="YAML config; keys are OfflineConfig fields (--help-config)")
    _run_flags(s)
    s.set_defaults(func=cmd_sft)


def _run_flags(p: Any) -> None:
    """The flags ``train`` and ``sft`` share: overrides, and what to do with a run already in output_dir."""
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config key, e.g. --set lr=1e-5",
    )
    p.add_argument(
        "--resume",
        action="store_true",
        help="continue the run in output_dir from its latest checkpoint (from step 0 when it has none)",
    )
    p.add_argument(
        "--overwrite", action="store_true", help="delete the run already in output_dir and start again"
    )
    p.add_argument(
        "--allow-config-change",
        action="store_true",
        help="with --resume: accept hyper-parameters that differ from the checkpoint's (the old "
        "config.yaml is kept as config.step_N.yaml)",
    )
    p.add_argument(
        "--help-config", action="store_true", help="list every config key with its default and meaning"
    )


def cmd_train(args: argparse.Namespace) -> int:
    from rewardkit.rl.config import TrainConfig, describe

    if (early := _help_or_missing(args, describe)) is not None:
        return early
    if args.nproc is not None:
        return _torchrun(args.nproc, sys.argv[1:] if _argv_is_ours() else None)
    from rewardkit.rl.offline_config import is_offline
    from rewardkit.rl.trainer import is_main_process, train

    if is_offline(_raw_config(args.config, args.set).get("algorithm")):  # dpo, ipo, ...: rewardkit.rl.offline
        return _offline(args)
    cfg = TrainConfig.from_yaml(args.config, parse_overrides(args.set))
    if args.imports:
        cfg = dataclasses.replace(cfg, imports=(*cfg.imports, *args.imports))
    if args.verbose:  # `rewardkit train CFG --verbose` is `--set verbose=true`
        cfg = dataclasses.replace(cfg, verbose=True)
    result = train(
        cfg, resume=args.resume, overwrite=args.overwrite, allow_config_change=args.allow_config_change
    )
    if is_main_process():  # once, not once per rank
        print(_summary(result))
    return _exit_code(result)


def cmd_sft(args: argparse.Namespace) -> int:
    from rewardkit.rl.offline_config import describe

    if (early := _help_or_missing(args, describe)) is not None:
        return early
    algorithm = _raw_config(args.config, args.set).get("algorithm", "sft")
    if algorithm != "sft":
        print(
            f"error: algorithm: got {algorithm!r}; `rewardkit sft` trains sft only (use `rewardkit train` for "
            "preference losses)",
            file=sys.stderr,
        )
        return 2
    return _offline(args)


def _help_or_missing(args: argparse.Namespace, describe: Any) -> int | None:
    """``--help-config`` (print ``describe()``: 0), or no CONFIG.yaml (2); None: go on."""
    if args.help_config:
        print(describe())
        return 0
    if not args.config:
        print("error: a CONFIG.yaml is required (or --help-config)", file=sys.stderr)
        return 2
    return None


def _raw_config(path: str, overrides: list[str]) -> dict[str, Any]:
    """The YAML's mapping with the ``--set`` overrides, unchecked (to choose the trainer)."""
    from pathlib import Path

    from rewardkit.config import load_yaml
    from rewardkit.rl.config import _merge

    data = load_yaml(Path(path).read_text()) or {}
    return _merge(data, parse_overrides(overrides)) if isinstance(data, dict) else {}


def _offline(args: argparse.Namespace) -> int:
    """SFT or a preference loss (``rewardkit.rl.offline``) on the config at ``args.config``."""
    from rewardkit.rl.offline import result_line, train_offline
    from rewardkit.rl.offline_config import OfflineConfig

    cfg = OfflineConfig.from_yaml(args.config, parse_overrides(args.set))
    if args.verbose:
        cfg = dataclasses.replace(cfg, verbose=True)
    result = train_offline(
        cfg, resume=args.resume, overwrite=args.overwrite, allow_config_change=args.allow_config_change
    )
    print(result_line(result))
    return _exit_code(result)


def _argv_is_ours() -> bool:
    """Whether sys.argv is this ``rewardkit train`` command line (not a caller's, e.g. ``main([...])``)."""
    return "train" in sys.argv[1:]


def _torchrun(nproc: int, argv: list[str] | None) -> int:
    """Run this same command under torchrun on ``nproc`` local ranks, without ``--nproc``."""
    import os
    import subprocess

    if nproc < 1:
        print(f"error: --nproc: got {nproc}, expected >= 1", file=sys.stderr)
        return 2
    if os.environ.get("WORLD_SIZE"):
        print("error: --nproc inside a torchrun launch; drop one of them", file=sys.stderr)
        return 2
    if argv is None:
        print("error: --nproc works from the command line only (call torchrun yourself)", file=sys.stderr)
        return 2
    rest, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif arg == "--nproc":
            skip = True
        elif not arg.startswith("--nproc="):
            rest.append(arg)
    if nproc == 1:
        cmd = [sys.executable, "-m", "rewardkit", *rest]
    else:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(nproc)]
        cmd += ["-m", "rewardkit", *rest]
    print("running: " + " ".join(cmd[1:]), file=sys.stderr)
    return subprocess.call(cmd)


def _summary(result: TrainResult) -> str:
    """``finished at step 8: reward 0.4120; outputs in runs/x; model: runs/x/checkpoints/step_000008/model``."""
    if not result.interrupted:
        how = "finished"
    elif result.signal is not None:
        how = f"stopped by {signal.Signals(result.signal).name}"
    else:
        how = "interrupted"
    line = (
        f"{how} at step {result.steps}: reward {result.last_metrics.get('reward_mean', float('nan')):.4f}; "
        f"outputs in {result.output_dir}"
    )
    return line + (f"; model: {result.final_model}" if result.final_model is not None else "")


def _exit_code(result: TrainResult | OfflineResult) -> int:
    """0 when finished; 128 + the signal when stopped by one (130 Ctrl-C, 143 SIGTERM), as a shell reports
    a process killed by it, so a scheduler sees the job was cut short; 130 for other interruptions."""
    if not result.interrupted:
        return 0
    return 128 + result.signal if result.signal is not None else 130
