"""``rewardkit audit ENV``: run an environment's exploit probes, and with ``--model`` hunt for hacks.

Without a model it scores every probe the environment ships (``Environment.exploit_probes``) and prints
one row per probe: its reward, its bound, and ``ok`` or ``EXPLOITABLE``. The exit status is 1 when a
probe is over its bound, so the command can gate CI for a plugin.

With ``--model`` it also samples the model on the environment's tasks (through ``rewardkit eval``: the
same generation, resumable output directory and rollouts.jsonl) and runs the environment's independent
check (``Environment.suspicious``) on every completion that reaches ``pass_threshold``: completions the
reward calls right but a second, separate test doubts. Those are listed with the reason.
See docs/hacking.md.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rewardkit.envs.base import Environment
from rewardkit.envs.probes import ProbeResult, run_probes
from rewardkit.types import Score


@dataclass
class AuditReport:
    """What ``audit`` found: every probe's result and, with a model, the suspicious passes."""

    env: str
    probes: list[ProbeResult]
    suspicious: list[dict[str, Any]] = field(default_factory=list)
    sampled: int = 0
    """Completions sampled from the model (0 without one)."""
    passed: int = 0
    """Of those, how many reached the environment's pass_threshold."""

    @property
    def exploitable(self) -> list[ProbeResult]:
        return [r for r in self.probes if not r.within_bound]

    def to_dict(self) -> dict[str, Any]:
        return {
            "env": self.env,
            "probes": [r.row() for r in self.probes],
            "exploitable": [r.probe.name for r in self.exploitable],
            "sampled": self.sampled,
            "passed": self.passed,
            "suspicious": self.suspicious,
        }

    def render(self) -> str:
        """The probe table (and the suspicious passes) as Markdown."""
        lines = [
            f"# audit: {self.env}",
            "",
            "| probe | family | reward | bound | status | verdict |",
            "|---|---|---|---|---|---|",
        ]
        for r in self.probes:
            row = r.row()
            lines.append(
                f"| {row['probe']} | {row['family']} | {row['reward']:.3g} | {row['bound']:.3g} "
                f"| {row['status']} | {row['verdict']} |"
            )
        n_bad = len(self.exploitable)
        lines += ["", f"{len(self.probes)} probes, {n_bad} over their bound."]
        if not self.probes:
            lines[-1] = "this environment ships no exploit probes (Environment.exploit_probes)."
        if self.sampled:
            lines += [
                "",
                f"## sampled: {self.sampled} completions, {self.passed} passed, "
                f"{len(self.suspicious)} suspicious",
            ]
            for s in self.suspicious[:20]:
                lines.append(f"- task {s['task_index']} sample {s['sample_index']}: {s['reason']}")
        return "\n".join(lines)


def audit(
    env: Environment,
    *,
    model: str | None = None,
    output_dir: str | Path | None = None,
    split: str = "test",
    num_tasks: int = 16,
    n: int = 4,
    max_tokens: int = 256,
    temperature: float = 1.0,
    seed: int = 0,
    progress: bool = False,
) -> AuditReport:
    """Run ``env``'s probes; with ``model``, also sample it and run the independent check on passes."""
    report = AuditReport(env.name, run_probes(env))
    if model is None:
        return report
    if output_dir is None:
        raise ValueError("audit with a model needs output_dir (where the samples are written)")
    records, tasks = _sample(
        env, model, Path(output_dir), split, num_tasks, n, max_tokens, temperature, seed, progress
    )
    report.sampled = len(records)
    for record in records:
        score = Score(float(record["reward"]), record.get("metrics") or {}, {"status": record["status"]})
        if record["status"] != "ok" or score.reward < env.pass_threshold:
            continue
        report.passed += 1
        task = tasks[record["task_index"]]
        sample = {
            "completion": record["completion"],
            "answer": task.answer,
            "prompt": task.prompt,
            "info": task.info,
        }
        if reason := env.suspicious(sample, score):
            report.suspicious.append(
                {
                    "task_index": record["task_index"],
                    "sample_index": record["sample_index"],
                    "reason": reason,
                    "completion": record["completion"],
                }
            )
    return report


def _sample(
    env: Environment,
    model: str,
    out: Path,
    split: str,
    num_tasks: int,
    n: int,
    max_tokens: int,
    temperature: float,
    seed: int,
    progress: bool,
) -> tuple[list[dict[str, Any]], list[Any]]:
    """Sample through ``rewardkit eval`` (resumable) and return its records and the tasks they answer."""
    from rewardkit.eval.config import EvalConfig
    from rewardkit.eval.pairs import eval_records
    from rewardkit.eval.run import evaluate
    from rewardkit.eval.suite import Overrides, adhoc_suite

    overrides = Overrides(
        n=n, k=(1,), num_tasks=num_tasks, max_tokens=max_tokens, temperature=temperature, seed=seed
    )
    suite = adhoc_suite([env.name], {"split": split}, overrides)
    cfg = EvalConfig(model=model, output_dir=str(out / "samples"), resume=True, progress=progress)
    evaluate(cfg, suite)
    tasks = list(env.tasks(split))[:num_tasks]
    return eval_records(out / "samples"), tasks


# ---- command line -------------------------------------------------------------------------------------
def add_parser(sub: Any) -> None:
    from rewardkit.imports import add_import_argument

    p = sub.add_parser(
        "audit",
        help="run an environment's exploit probes (reward-hacking check); with --model, flag suspicious passes",
        description="Score every exploit probe the environment ships and print probe, reward, bound and "
        "verdict; exit status 1 when one is over its bound. With --model, also sample the model on the "
        "environment's tasks and list passing completions that fail its independent check. See docs/hacking.md.",
    )
    p.add_argument("env", help="environment name (see `rewardkit envs`)")
    p.add_argument(
        "--set", action="append", metavar="KEY=VALUE", help="environment config, e.g. --set sandbox=docker"
    )
    add_import_argument(p)
    p.add_argument("--model", help="a model directory, training run or hub id to sample")
    p.add_argument("--output-dir", help="where audit.json, audit.md and (with --model) the samples go")
    p.add_argument("--split", default="test", help="with --model: the task split to sample (default: test)")
    p.add_argument("--num-tasks", type=int, default=16, help="with --model: tasks to sample (default: 16)")
    p.add_argument("--n", type=int, default=4, help="with --model: samples per task (default: 4)")
    p.add_argument("--max-new-tokens", type=int, default=256, help="with --model: tokens per sample")
    p.add_argument("--temperature", type=float, default=1.0, help="with --model: sampling temperature")
    p.add_argument("--seed", type=int, default=0, help="with --model: sampling seed")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from rewardkit.config import parse_overrides
    from rewardkit.imports import import_modules
    from rewardkit.registry import load_env

    import_modules(args.imports)
    if args.model and not args.output_dir:
        raise ValueError("--model needs --output-dir (where the samples are written)")
    env = load_env(args.env, **parse_overrides(args.set or []))
    try:
        report = audit(
            env,
            model=args.model,
            output_dir=args.output_dir,
            split=args.split,
            num_tasks=args.num_tasks,
            n=args.n,
            max_tokens=args.max_new_tokens,
            temperature=args.temperature,
            seed=args.seed,
            progress=True,
        )
    finally:
        env.close()
    text = report.render()
    print(text)
    if args.output_dir:
        out = Path(args.output_dir)
        out.mkdir(parents=True, exist_ok=True)
        (out / "audit.md").write_text(text + "\n")
        (out / "audit.json").write_text(json.dumps(report.to_dict(), indent=2, default=str) + "\n")
        print(f"written to {out / 'audit.md'} and {out / 'audit.json'}", file=sys.stderr)
    return 1 if report.exploitable else 0
