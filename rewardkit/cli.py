"""The ``rewardkit`` command line (also ``python -m rewardkit``).

Subcommands: ``envs`` (list environments), ``score`` (score a JSONL file), ``eval``, ``train``,
``demo`` and ``sandbox``. Heavy modules (torch, transformers, docker) are imported only by the
subcommands that need them, so ``rewardkit envs`` and ``rewardkit score`` start fast.
"""

from __future__ import annotations

import argparse
import collections
import importlib
import json
import os
import sys
from collections.abc import Iterator, Sequence
from typing import Any

from rewardkit.config import parse_overrides
from rewardkit.imports import add_import_argument, import_modules


# ---- envs -----------------------------------------------------------------------------------------
def cmd_envs(args: argparse.Namespace) -> int:
    from rewardkit.registry import ENV_FAMILIES, env_specs

    specs = env_specs()
    families = {
        f"{prefix}:NAME": f"family, {target.partition(':')[0]}" for prefix, target in ENV_FAMILIES.items()
    }
    width = max([len(n) for n in [*specs, *families]] + [4])
    print(f"{'name':<{width}}  source")
    for name in sorted(specs):
        print(f"{name:<{width}}  {specs[name].source}")
    for name, source in families.items():
        print(f"{name:<{width}}  {source} (docs/interop.md)")
    return 0


# ---- score ----------------------------------------------------------------------------------------
def _read_rows(path: str) -> Iterator[tuple[int, Any]]:
    """Yield (line number, parsed object or an error string) for every line, blank ones included:
    the output has one row per input line (the newline that ends the file does not start a line)."""
    stream = sys.stdin if path == "-" else open(path, encoding="utf-8", errors="surrogateescape")  # noqa: SIM115
    with stream:
        for number, line in enumerate(stream, start=1):
            if number == 1:
                line = line.removeprefix("\ufeff")  # a UTF-8 byte order mark (Windows editors write one)
            if not line.strip():
                yield number, f"line {number} is blank"
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                yield number, f"line {number} is not valid JSON: {exc.msg} (column {exc.colno})"
                continue
            yield (
                number,
                row
                if isinstance(row, dict)
                else f"line {number} is a JSON {type(row).__name__}, not an object",
            )


def cmd_score(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from rewardkit.registry import load_env

    config = parse_overrides(args.set or [])
    import_modules(args.imports)
    env = load_env(args.env, **config)
    statuses: collections.Counter[str] = collections.Counter()
    total, count = 0.0, 0
    out = sys.stdout if args.output == "-" else open(args.output, "w", encoding="utf-8")  # noqa: SIM115
    progress = tqdm(
        desc=f"scoring with {args.env}", unit="sample", disable=args.quiet or None, file=sys.stderr
    )
    try:
        rows = _read_rows(args.input)
        while chunk := [r for _, r in zip(range(args.chunk_size), rows)]:
            good = [(n, row) for n, row in chunk if isinstance(row, dict)]
            scores = iter(env.score_batch(row for _, row in good))
            for number, row in chunk:
                if isinstance(row, dict):
                    result = next(scores).to_dict()
                else:
                    result = {
                        "reward": 0.0,
                        "metrics": {},
                        "info": {"status": "invalid_input", "reason": row},
                    }
                record = {"line": number, "status": result["info"]["status"], **result}
                if isinstance(row, dict) and "id" in row:
                    record["id"] = row["id"]
                out.write(json.dumps(record, ensure_ascii=False, default=str) + "\n")
                statuses[record["status"]] += 1
                total += record["reward"]
                count += 1
            progress.update(len(chunk))
    finally:
        progress.close()
        if out is not sys.stdout:
            out.close()
        env.close()
    mean = total / count if count else 0.0
    summary = ", ".join(f"{k}={v}" for k, v in sorted(statuses.items()))
    print(f"scored {count} samples with {args.env}: mean reward {mean:.4f} ({summary})", file=sys.stderr)
    return 0


# ---- parser ---------------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="rewardkit", description="Reinforcement learning with verifiable rewards."
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("envs", help="list registered environments and where they come from")
    p.set_defaults(func=cmd_envs)

    p = sub.add_parser("score", help="score a JSONL file of completions with an environment")
    p.add_argument("env", help="environment name (see `rewardkit envs`)")
    p.add_argument(
        "-i", "--input", required=True, help="JSONL with completion/answer/prompt/info per line ('-' = stdin)"
    )
    p.add_argument(
        "-o", "--output", required=True, help="JSONL output, one row per input line ('-' = stdout)"
    )
    p.add_argument(
        "--set", action="append", metavar="KEY=VALUE", help="environment config, e.g. --set timeout_s=5"
    )
    add_import_argument(p)
    p.add_argument("--chunk-size", type=int, default=512, help="samples scored in parallel per chunk")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_score)

    for module in _SUBCOMMAND_MODULES:
        try:
            mod = importlib.import_module(module)
        except ModuleNotFoundError as exc:
            if exc.name != module:  # a real import error inside the module must surface
                raise
            continue
        mod.add_parser(sub)
    for command in sub.choices.values():  # after the subcommand, where users type it: `train CFG -v`
        command.add_argument(
            "-v",
            "--verbose",
            action="store_true",
            help="also show the libraries' own output: transformers/huggingface_hub progress bars, "
            "INFO logs of transformers and vLLM (default: their warnings only)",
        )
    return parser


# Subcommands that live next to the code they drive; each module exposes add_parser(subparsers).
_SUBCOMMAND_MODULES = (
    "rewardkit.rl.cli",
    "rewardkit.eval.cli",
    "rewardkit.eval.pairs",
    "rewardkit.eval.reject",
    "rewardkit.rl.reward_model",
    "rewardkit.pipeline",
    "rewardkit.demo",
    "rewardkit.sandbox.cli",
    "rewardkit.audit",
    "rewardkit.serve",
)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from rewardkit.console import quiet_third_party

    quiet_third_party(args.verbose)  # before any subcommand imports transformers or vLLM
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except (KeyError, ValueError, TypeError, FileNotFoundError, ImportError) as exc:
        if os.environ.get("REWARDKIT_DEBUG"):
            raise
        message = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        print(f"error: {message}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
