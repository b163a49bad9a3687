"""``rewardkit reject``: rejection sampling, an SFT dataset of the samples the verifier accepts.

Sample K completions per prompt and score them with ``rewardkit eval`` (``--n K``, a temperature above
0), then keep those that pass::

    rewardkit eval --model runs/rl/step_200 --suite math --n 8 --temperature 0.8 --output-dir runs/samples
    rewardkit reject runs/samples --output sft.jsonl --threshold 1.0 --max-per-prompt 2

A sample is kept when its status is ``ok`` and its reward is at least ``--threshold`` (default: each
environment's own pass threshold, as pass@k counts a pass). Exact duplicates (the same completion for the
same prompt) are kept once. With ``--max-per-prompt`` the highest rewards are kept, the earlier sample
first among equal ones. This is the rejection-sampled SFT stage between RL stages, as in DeepSeek-R1's
recipe.

A row is ``{"prompt", "completion", "reward", "env", "task_id", "answer"}``. ``reject_summary.json`` and
stdout give the counts: prompts, prompts with at least one sample kept, samples kept, below threshold,
duplicates, beyond ``--max-per-prompt``, the unranked samples by status, and a histogram of samples
kept per prompt.
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rewardkit.eval.pairs import eval_records, write_dataset

SUMMARY_FILE = "reject_summary.json"


@dataclass(frozen=True)
class RejectConfig:
    """Which scored samples are kept."""

    threshold: float | None = None
    """Keep samples whose reward reaches this; None: the run's pass threshold of each environment."""
    max_per_prompt: int | None = None
    """At most this many per prompt, the highest rewards first (None: all that pass)."""

    def __post_init__(self) -> None:
        if self.max_per_prompt is not None and self.max_per_prompt < 1:
            raise ValueError(f"max_per_prompt: got {self.max_per_prompt}, expected >= 1 or None")


def select(
    records: list[dict[str, Any]], cfg: RejectConfig, thresholds: dict[str, float]
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The kept samples as SFT rows, and the counts of the rest."""
    groups: dict[tuple[str, int], list[dict[str, Any]]] = {}
    for rec in records:
        groups.setdefault((rec["env"], rec["task_index"]), []).append(rec)
    rows: list[dict[str, Any]] = []
    counts: Counter[str] = Counter()
    unranked: Counter[str] = Counter()
    per_prompt: Counter[int] = Counter()
    for key in sorted(groups):
        samples = sorted(groups[key], key=lambda r: r["sample_index"])
        unranked.update(r["status"] for r in samples if r["status"] != "ok")
        bar = cfg.threshold if cfg.threshold is not None else thresholds.get(key[0], 1.0)
        passing = [r for r in samples if r["status"] == "ok" and float(r["reward"]) >= bar]
        counts["below_threshold"] += sum(r["status"] == "ok" for r in samples) - len(passing)
        seen, unique = set(), []
        for r in sorted(passing, key=lambda r: -float(r["reward"])):  # stable: earlier first among equals
            text = json.dumps(r["completion"], sort_keys=True, default=str)
            if text in seen:
                counts["duplicates"] += 1
                continue
            seen.add(text)
            unique.append(r)
        kept = unique[: cfg.max_per_prompt] if cfg.max_per_prompt else unique
        counts["beyond_max_per_prompt"] += len(unique) - len(kept)
        per_prompt[len(kept)] += 1
        rows += [_row(r) for r in kept]
    summary = {
        "prompts": len(groups),
        "prompts_kept": len(groups) - per_prompt.get(0, 0),
        "samples": len(records),
        "kept": len(rows),
        **{k: counts.get(k, 0) for k in ("below_threshold", "duplicates", "beyond_max_per_prompt")},
        "unranked_samples": dict(sorted(unranked.items())),
        "kept_per_prompt": {str(k): v for k, v in sorted(per_prompt.items())},
        "threshold": cfg.threshold,
        "max_per_prompt": cfg.max_per_prompt,
    }
    return rows, summary


def _row(r: dict[str, Any]) -> dict[str, Any]:
    return {
        "prompt": r["prompt"],
        "completion": r["completion"],
        "reward": float(r["reward"]),
        "env": r["env"],
        "task_id": r["task_id"],
        "answer": r["answer"],
    }


def reject_from_eval(run_dir: str | Path, output: str | Path, cfg: RejectConfig) -> dict[str, Any]:
    """Read ``run_dir``'s scored samples, write the kept ones to ``output`` and ``reject_summary.json``."""
    records = eval_records(run_dir)
    summary_path = Path(run_dir) / "summary.json"
    thresholds = {}
    if summary_path.exists():  # each environment's pass threshold, as the run's pass@k used it
        envs = json.loads(summary_path.read_text()).get("environments", {})
        thresholds = {k: float(v["pass_threshold"]) for k, v in envs.items() if "pass_threshold" in v}
    rows, summary = select(records, cfg, thresholds)
    return write_dataset(rows, summary, run_dir, output, SUMMARY_FILE)


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "reject",
        help="rejection sampling: an SFT dataset of an eval run's samples that the verifier accepts",
        description="\n\n".join((__doc__ or "").split("\n\n")[1:3]),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("eval_run", help="an output directory of `rewardkit eval` (run with --n >= 1)")
    p.add_argument("--output", required=True, help="the JSONL file of kept samples to write")
    p.add_argument(
        "--threshold", type=float, default=None, help="minimum reward (default: the pass threshold)"
    )
    p.add_argument("--max-per-prompt", type=int, default=None, help="keep at most this many per prompt")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    s = reject_from_eval(args.eval_run, args.output, RejectConfig(args.threshold, args.max_per_prompt))
    unranked = ", ".join(f"{k} {v}" for k, v in s["unranked_samples"].items()) or "none"
    print(
        f"kept {s['kept']} of {s['samples']} samples, from {s['prompts_kept']} of {s['prompts']} prompts -> "
        f"{args.output}\nnot kept: below threshold {s['below_threshold']}, duplicates {s['duplicates']}, "
        f"beyond --max-per-prompt {s['beyond_max_per_prompt']}; not ranked (by status): {unranked}"
    )
    return 0
