"""``rewardkit pairs``: verifier-ranked preference pairs from an evaluation run's scored samples.

Sample N completions per prompt and score them with any environment with ``rewardkit eval`` (``--n N``
with a temperature above 0), then turn that run's ``rollouts.jsonl`` into a preference dataset::

    rewardkit eval --model MODEL --envs math --data prompts.jsonl --n 8 --temperature 0.8 --output-dir runs/samples
    rewardkit pairs runs/samples --output pairs.jsonl --min-margin 0.5

Per prompt (an environment's task), only samples scored with status ``ok`` are ranked. A timeout or a
verifier error says nothing about the completion, so it is never a "rejected" one. Those samples are
counted by status. ``--pairs best_worst`` (the default) writes one pair: the highest reward against the
lowest. ``--pairs all`` writes every pair whose margin exceeds the threshold. The earlier sample wins
ties, so the output does not depend on the order of equal rewards. A pair is kept only when its margin
(chosen minus rejected reward) exceeds ``--min-margin``. Every prompt that gives no pair is counted
with its reason in ``pairs_summary.json`` and on stdout:

- ``all_equal``: every ranked sample has the same reward;
- ``small_margin``: the best gap is at most the threshold;
- ``too_few_ranked``: fewer than 2 samples with status ``ok``.

A row is ``{"prompt", "chosen", "rejected", "score_chosen", "score_rejected", "margin", "env",
"task_id", "answer"}``, the format DPO trainers read (``prompt`` and the completions as strings, or as
message lists for chat tasks).
"""

from __future__ import annotations

import argparse
import json
import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rewardkit.eval.run import FINGERPRINT, ROLLOUTS, read_complete

SUMMARY_FILE = "pairs_summary.json"


@dataclass(frozen=True)
class PairConfig:
    """How pairs are made from a prompt's scored samples."""

    min_margin: float = 0.0
    """Keep a pair only when chosen minus rejected reward exceeds this (0: any strict preference)."""
    pairs: str = "best_worst"
    """``best_worst``: one pair per prompt; ``all``: every pair of samples whose margin exceeds ``min_margin``."""

    def __post_init__(self) -> None:
        if self.pairs not in ("best_worst", "all"):
            raise ValueError(f"pairs: got {self.pairs!r}, expected best_worst or all")
        if self.min_margin < 0:
            raise ValueError(f"min_margin: got {self.min_margin}, expected >= 0")


def build_pairs(
    records: list[dict[str, Any]], cfg: PairConfig
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Preference rows from an eval run's records (``rollouts.jsonl``) and the counts of what was not used."""
    groups: dict[tuple[str, int], list[dict[str, Any]]] = {}
    for rec in records:
        groups.setdefault((rec["env"], rec["task_index"]), []).append(rec)
    rows: list[dict[str, Any]] = []
    skipped: Counter[str] = Counter()
    unranked: Counter[str] = Counter()
    for key in sorted(groups):
        samples = sorted(groups[key], key=lambda r: r["sample_index"])
        ranked = [r for r in samples if r["status"] == "ok"]
        unranked.update(r["status"] for r in samples if r["status"] != "ok")
        reason, made = _pairs_of(ranked, cfg)
        if reason:
            skipped[reason] += 1
        rows += made
    summary = {
        "prompts": len(groups),
        "prompts_with_pairs": len(groups) - sum(skipped.values()),
        "pairs": len(rows),
        "samples": len(records),
        "skipped_prompts": {k: skipped.get(k, 0) for k in ("all_equal", "small_margin", "too_few_ranked")},
        "unranked_samples": dict(sorted(unranked.items())),
        "margin_mean": sum(r["margin"] for r in rows) / len(rows) if rows else None,
        "min_margin": cfg.min_margin,
        "mode": cfg.pairs,
    }
    return rows, summary


def _pairs_of(ranked: list[dict[str, Any]], cfg: PairConfig) -> tuple[str | None, list[dict[str, Any]]]:
    """One prompt's pairs, or why it has none."""
    if len(ranked) < 2:
        return "too_few_ranked", []
    rewards = [float(r["reward"]) for r in ranked]
    if max(rewards) == min(rewards):
        return "all_equal", []
    if cfg.pairs == "best_worst":  # max/min keep the first of equal rewards
        best = max(range(len(ranked)), key=lambda i: (rewards[i], -i))
        worst = min(range(len(ranked)), key=lambda i: (rewards[i], i))
        candidates = [(best, worst)]
    else:
        candidates = [
            (i, j) for i in range(len(ranked)) for j in range(len(ranked)) if rewards[i] > rewards[j]
        ]
    made = [_row(ranked[i], ranked[j]) for i, j in candidates if rewards[i] - rewards[j] > cfg.min_margin]
    return (None if made else "small_margin"), made


def _row(chosen: dict[str, Any], rejected: dict[str, Any]) -> dict[str, Any]:
    return {
        "prompt": chosen["prompt"],
        "chosen": chosen["completion"],
        "rejected": rejected["completion"],
        "score_chosen": float(chosen["reward"]),
        "score_rejected": float(rejected["reward"]),
        "margin": float(chosen["reward"]) - float(rejected["reward"]),
        "env": chosen["env"],
        "task_id": chosen["task_id"],
        "answer": chosen["answer"],
    }


def pairs_from_eval(run_dir: str | Path, output: str | Path, cfg: PairConfig) -> dict[str, Any]:
    """Read ``run_dir``'s complete tasks, write the pairs to ``output`` (JSONL, atomically) and
    ``pairs_summary.json`` beside it; returns the summary."""
    rows, summary = build_pairs(eval_records(run_dir), cfg)
    return write_dataset(rows, summary, run_dir, output, SUMMARY_FILE)


def eval_records(run_dir: str | Path) -> list[dict[str, Any]]:
    """The scored samples of ``run_dir``'s complete tasks (an output directory of ``rewardkit eval``)."""
    run_dir = Path(run_dir)
    if not (run_dir / FINGERPRINT).exists() or not (run_dir / ROLLOUTS).exists():
        raise FileNotFoundError(
            f"{run_dir} is not a rewardkit eval run (no {FINGERPRINT} and {ROLLOUTS}); make one with "
            "`rewardkit eval --model MODEL ... --n 8 --output-dir DIR`"
        )
    return read_complete(run_dir / ROLLOUTS, json.loads((run_dir / FINGERPRINT).read_text()))


def write_dataset(
    rows: list[dict[str, Any]],
    summary: dict[str, Any],
    run_dir: str | Path,
    output: str | Path,
    summary_file: str,
) -> dict[str, Any]:
    """``rows`` to ``output`` (JSONL, atomically) and ``summary`` (with the run it came from) beside it."""
    output = Path(output)
    summary["eval_run"] = str(run_dir)
    output.parent.mkdir(parents=True, exist_ok=True)
    tmp = output.with_name(output.name + ".tmp")
    tmp.write_text("".join(json.dumps(r, ensure_ascii=False, default=str) + "\n" for r in rows))
    os.replace(tmp, output)
    (output.parent / summary_file).write_text(json.dumps(summary, indent=2))
    return summary


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "pairs",
        help="verifier-ranked preference pairs (prompt, chosen, rejected) from an eval run's scored samples",
        description="\n\n".join((__doc__ or "").split("\n\n")[1:3]),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("eval_run", help="an output directory of `rewardkit eval` (run with --n >= 2)")
    p.add_argument("--output", required=True, help="the JSONL file of pairs to write")
    p.add_argument("--min-margin", type=float, default=0.0, help="keep pairs whose reward gap exceeds this")
    p.add_argument("--pairs", choices=("best_worst", "all"), default="best_worst")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    summary = pairs_from_eval(args.eval_run, args.output, PairConfig(args.min_margin, args.pairs))
    skipped = ", ".join(f"{k} {v}" for k, v in summary["skipped_prompts"].items())
    unranked = ", ".join(f"{k} {v}" for k, v in summary["unranked_samples"].items()) or "none"
    print(
        f"{summary['pairs']} pairs from {summary['prompts_with_pairs']} of {summary['prompts']} prompts "
        f"-> {args.output}\nprompts without a pair: {skipped}\nsamples not ranked (by status): {unranked}"
    )
    return 0
