"""Math verification throughput: rewardkit's ``math`` environment vs raw math-verify on one GRPO batch.

The batch is shaped like GRPO scoring: P prompts x G completions; the G completions of a prompt share
the gold answer and mostly repeat a few final answers (in different forms: <answer> tags, \\boxed{},
plain text). Both sides score the same batch, in this one run:

* raw math-verify: ``verify(parse(gold), parse(completion))`` for each sample, in this process;
* rewardkit: ``MathEnv.score_batch(batch)`` (worker processes, dedup of (gold, answer) pairs, per-worker
  gold parsing). Worker start-up is paid before the clock starts (a trainer pays it once per run),
  with a warm-up batch whose golds are not in the timed batch, so no verdict is cached in advance.

Latency is per sample: from the start of the batch to when that sample's verdict is ready.

    python benchmarks/math_throughput.py --prompts 64 --group 8 --rounds 3 [--write]
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import random
import statistics
import sys
import time
from typing import Any

from bench_report import write_section

from rewardkit.data.procedural import ProceduralConfig, generate_tasks

SECTION = "## Math verification throughput"
LATEX_GOLDS = (
    ("\\frac{\\pi}{3}", ["\\frac{\\pi}{3}", "\\pi/3", "60"]),
    ("2\\sqrt{2}", ["2\\sqrt{2}", "\\sqrt{8}", "2.83"]),
    ("\\frac{3}{4}", ["\\frac{3}{4}", "0.75", "\\frac{4}{3}"]),
    ("(-\\infty, 2]", ["(-\\infty, 2]", "(-\\infty, 2)", "x \\le 2"]),
    ("\\{1, 5\\}", ["1, 5", "\\{5, 1\\}", "5"]),
)
STYLE_WEIGHTS = (4, 3, 1)
"""<answer> tags : \\boxed{} : plain text. The prompt asks for tags; R1-style models box; a few do neither."""
REASONING = (
    "Let me work through this carefully. First, I restate the problem and the quantities involved. "
    "We have $a = {a}$ and $b = {b}$, so $a + b = {s}$ and $a \\cdot b = {p}$. "
    "Checking the intermediate step again: ${a} \\times 2 = {d}$, which is consistent. "
    "Now combine the pieces and simplify the expression step by step to reach the final value."
)


def _forms(gold: str, rng: random.Random) -> list[str]:
    """Answer strings for a prompt: the gold in other written forms, and plausible wrong answers."""
    for latex_gold, forms in LATEX_GOLDS:
        if gold == latex_gold:
            return forms
    try:
        value = int(gold)
        return [gold, f"{value}.0", f"x = {value}", str(value + rng.choice((-1, 1))), str(value * 2)]
    except ValueError:
        return [gold, f"x = {gold}", "0"]


def _completion(answer: str, style: int, rng: random.Random) -> str:
    a, b = rng.randint(2, 99), rng.randint(2, 99)
    reasoning = REASONING.format(a=a, b=b, s=a + b, p=a * b, d=2 * a)
    if style == 0:
        return f"<think>{reasoning}</think>\n<answer>{answer}</answer>"
    if style == 1:
        return f"{reasoning}\n\nTherefore, the final answer is $\\boxed{{{answer}}}$."
    return f"{reasoning}\n\nThe answer is ${answer}$."


def build_batch(prompts: int, group: int, seed: int = 0) -> list[dict[str, Any]]:
    """P x G samples: each prompt's completions draw from 3 answers (weights 6:3:1), 3 output styles."""
    rng = random.Random(seed)
    tasks = generate_tasks("train", prompts, ProceduralConfig(seed=seed + 1, levels=(1, 2, 3, 4)))
    golds = [str(t.answer) for t in tasks]
    for i, (latex_gold, _) in enumerate(LATEX_GOLDS):  # some MATH-style LaTeX golds too
        if i * 7 < len(golds):
            golds[i * 7] = latex_gold
    batch = []
    for gold in golds:
        pool = rng.sample(_forms(gold, rng), 3) if len(_forms(gold, rng)) >= 3 else _forms(gold, rng)
        for _ in range(group):
            answer = rng.choices(pool, weights=(6, 3, 1)[: len(pool)])[0]
            completion = _completion(answer, rng.choices((0, 1, 2), weights=STYLE_WEIGHTS)[0], rng)
            batch.append({"completion": completion, "answer": gold, "prompt": None, "info": None})
    return batch


def warmup_batch() -> list[dict[str, Any]]:
    """A small batch with other golds (nothing in it can be cached for the timed batch), for both sides."""
    batch = build_batch(prompts=8, group=4, seed=12345)
    return [{**s, "answer": f"{s['answer']} + 0"} for s in batch]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q / 100 * (len(ordered) - 1))))]


def run_raw(batch: list[dict[str, Any]]) -> dict[str, Any]:
    """math-verify as most trainers call it: parse both, verify, one sample after another."""
    from math_verify import parse, verify

    for sample in warmup_batch():  # same warm-up as the workers get: ANTLR builds its tables on first use
        verify(parse(sample["answer"]), parse(sample["completion"]))
    start = time.perf_counter()
    latencies, correct = [], 0
    for sample in batch:
        correct += bool(verify(parse(sample["answer"]), parse(sample["completion"])))
        latencies.append(time.perf_counter() - start)
    wall = time.perf_counter() - start
    return {"wall_s": wall, "latencies": latencies, "correct": correct}


def run_rewardkit(batch: list[dict[str, Any]], workers: int | None) -> dict[str, Any]:
    from rewardkit.envs.math import MathEnv

    env = MathEnv(workers=workers, timeout_s=10.0)
    try:
        env.score_batch(warmup_batch())
        start = time.perf_counter()
        done: list[float] = [0.0] * len(batch)
        futures = env.scorer.submit(batch)  # the futures behind score_batch: per-sample completion times
        for i, future in enumerate(futures):
            future.add_done_callback(lambda _f, i=i: done.__setitem__(i, time.perf_counter() - start))
        scores = [f.result() for f in futures]
        wall = time.perf_counter() - start
        time.sleep(0.01)  # let the last callbacks run
    finally:
        env.close()
    statuses = {s.status for s in scores}
    return {
        "wall_s": wall,
        "latencies": done,
        "correct": sum(s.reward == 1.0 for s in scores),
        "statuses": statuses,
    }


def summarize(name: str, result: dict[str, Any], n: int) -> dict[str, Any]:
    lat = result["latencies"]
    return {
        "name": name,
        "samples_per_s": n / result["wall_s"],
        "wall_s": result["wall_s"],
        "p50_ms": 1000 * statistics.median(lat),
        "p99_ms": 1000 * percentile(lat, 99),
        "correct": result["correct"],
    }


def table(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| scorer | samples/s | wall (s) | p50 latency (ms) | p99 latency (ms) | scored correct |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['name']} | {r['samples_per_s']:.1f} | {r['wall_s']:.2f} | {r['p50_ms']:.0f} | "
            f"{r['p99_ms']:.0f} | {r['correct']} |"
        )
    return "\n".join(lines)


def distinct_keys(batch: list[dict[str, Any]]) -> int:
    """How many verdicts the batch really needs: distinct (gold, offered answers) cache keys."""
    from rewardkit.envs.math import MathEnv

    env = MathEnv(executor="inline")
    return len({env.cache_key(s["completion"], answer=s["answer"], prompt=None, info={}) for s in batch})


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--prompts", type=int, default=64)
    parser.add_argument("--group", type=int, default=8)
    parser.add_argument("--workers", type=int, default=None, help="rewardkit workers (default: CPU count)")
    parser.add_argument(
        "--rounds", type=int, default=3, help="alternating raw/rewardkit rounds; the median is kept"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--write", action="store_true", help="write the section of BENCHMARKS.md")
    parser.add_argument("--output", default=os.path.join(os.path.dirname(__file__), "..", "BENCHMARKS.md"))
    args = parser.parse_args(argv)

    load = os.getloadavg()[0]
    batch = build_batch(args.prompts, args.group, args.seed)
    print(f"batch: {args.prompts} prompts x {args.group} = {len(batch)} samples", flush=True)
    rounds = []
    for i in range(args.rounds):  # alternate, so load changes on the shared machine hit both sides alike
        raw = summarize("raw math-verify (1 process)", run_raw(batch), len(batch))
        rk_result = run_rewardkit(batch, args.workers)
        name = f"rewardkit MathEnv ({args.workers or os.cpu_count()} workers)"
        rk = summarize(name, rk_result, len(batch))
        rounds.append((rk["samples_per_s"] / raw["samples_per_s"], raw, rk))
        print(f"round {i + 1}: {table([raw, rk])}\nstatuses: {sorted(rk_result['statuses'])}", flush=True)
    speedups = sorted(r[0] for r in rounds)
    speedup, raw, rk = sorted(rounds, key=lambda r: r[0])[len(rounds) // 2]
    print(f"speed-up per round: {', '.join(f'{x:.2f}x' for x in speedups)}; median {speedup:.2f}x")
    if args.write:
        command = "python benchmarks/math_throughput.py " + " ".join(sys.argv[1:])
        body = "\n".join(
            [
                SECTION,
                "",
                f"- date: {datetime.datetime.now(datetime.UTC).strftime('%Y-%m-%d %H:%M UTC')}",
                f"- machine: {platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}, "
                f"load average {load:.1f} at the start (the CPUs are shared with other jobs)",
                f"- command: `{command.strip()}`",
                f"- batch: {args.prompts} prompts x G={args.group} completions ({len(batch)} samples, "
                f"{distinct_keys(batch)} distinct (gold, answer) keys), <answer>/\\boxed/plain-text styles 4:3:1",
                f"- {args.rounds} alternating rounds; the table is the median round by speed-up",
                "",
                table([raw, rk]),
                "",
                f"Speed-up: **{speedup:.2f}x** raw math-verify's throughput (target: >= 2x); "
                f"per round: {', '.join(f'{x:.2f}x' for x in speedups)}.",
                "Latency is the time from the start of the batch until a sample's verdict is ready. The",
                "correct counts differ because raw math-verify ignores <answer> tags and cannot parse golds",
                "written without $ delimiters, and because the rules differ where math-verify is wrong (hedging,",
                "exact or relative comparison, `x \\le 2` read as an interval: docs/math.md, section 6).",
                "",
            ]
        )
        write_section(os.path.abspath(args.output), SECTION, body)
        print(f"wrote {os.path.abspath(args.output)}")


if __name__ == "__main__":
    main()
