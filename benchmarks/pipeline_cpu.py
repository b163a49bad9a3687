"""The CPU example pipeline (``examples/pipelines/cpu.yaml``: SFT -> verifier-ranked DPO -> GRPO) over
several seeds: held-out accuracy after each stage, and the wall time of the whole pipeline.

Each seed runs the example as written except for its seed, which is set everywhere the example has
randomness: the tiny model's initialisation and tasks (the ``start`` stage), SFT's data order, the sampled
completions the pairs come from, DPO's and GRPO's seeds. The measuring suite (the demo's 200 held-out
additions, greedy) is the same for every seed. Every finished seed is written to ``--json`` at once.

    python benchmarks/pipeline_cpu.py [--seeds 3] [--write] [--json FILE]
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_report import write_section  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "pipelines" / "cpu.yaml"
SECTION = "## The CPU example pipeline: SFT -> verifier-ranked DPO -> GRPO"
DEFAULT_JSON = Path(__file__).resolve().parent / "results" / "pipeline_cpu.json"
TARGET_MINUTES = 15


def seeded(seed: int, out: Path) -> dict[str, Any]:
    """The example with ``seed`` everywhere it has randomness, writing into ``out``."""
    doc = yaml.safe_load(EXAMPLE.read_text())
    doc["output_dir"] = str(out)
    for stage in doc["stages"]:
        if stage["kind"] == "call":
            stage["kwargs"]["seed"] = seed
        elif stage["kind"] == "sample":
            stage["suite"]["defaults"]["sampling"]["seed"] = 1 + seed
            stage["suite"]["defaults"]["tasks"]["kwargs"]["seed"] = seed
        elif stage["kind"] in ("sft", "train"):
            stage["config"]["seed"] = seed
            if "tasks_kwargs" in stage["config"]:
                stage["config"]["tasks_kwargs"]["seed"] = seed
    return doc


def _stage_config(name: str) -> str:
    doc = yaml.safe_load(EXAMPLE.read_text())
    stage = next((s for s in doc["stages"] if s["name"] == name), None)
    return json.dumps(stage["config"]) if stage else "none"


def run_seed(seed: int, work: Path) -> dict[str, Any]:
    out = work / f"seed{seed}"
    path = work / f"seed{seed}.yaml"
    path.write_text(yaml.safe_dump(seeded(seed, out), sort_keys=False))
    t0 = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "rewardkit", "pipeline", str(path)], capture_output=True, text=True
    )
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"seed {seed}: the pipeline failed:\n{proc.stderr[-3000:]}")
    measures = json.loads((out / "summary.json").read_text())
    pairs = json.loads((out / "pairs" / "pairs_summary.json").read_text())
    return {
        "seed": seed,
        "wall_s": wall,
        "accuracy": {m["stage"]: m["math"] for m in measures},
        "format_rate": {m["stage"]: m["format"] for m in measures},
        "pairs": pairs["pairs"],
        "prompts": pairs["prompts"],
    }


def report(results: dict[str, Any], command: str) -> str:
    runs = results["runs"]
    stages = list(runs[0]["accuracy"])

    def mean_std(values: list[float]) -> str:
        return (
            f"{statistics.mean(values):.1%} ± {statistics.stdev(values):.1%}"
            if len(values) > 1
            else f"{values[0]:.1%}"
        )

    lines = [
        SECTION,
        "",
        f"- date: {results['date']}; machine: {results['machine']}; load average before/after: "
        f"{results['load_before']} / {results['load_after']}",
        f"- command: `{command}` (seeds {', '.join(str(r['seed']) for r in runs)}); the example as written, "
        "its seed set everywhere it has randomness",
        "- accuracy: the demo suite, 200 held-out additions, greedy; pairs: right vs wrong answer of 8 samples "
        "(temperature 0.8) of 400 training prompts from the SFT model, scored by `math`",
        f"- DPO stage: `{_stage_config('dpo')}`",
        "",
        "| seed | " + " | ".join(f"after {s}" for s in stages) + " | pairs | wall time |",
        "|---" * (len(stages) + 3) + "|",
    ]
    for r in runs:
        cells = " | ".join(f"{r['accuracy'][s]:.1%}" for s in stages)
        lines.append(
            f"| {r['seed']} | {cells} | {r['pairs']} of {r['prompts']} | {r['wall_s'] / 60:.1f} min |"
        )
    cells = " | ".join(mean_std([r["accuracy"][s] for r in runs]) for s in stages)
    walls = [r["wall_s"] / 60 for r in runs]
    lines.append(f"| mean ± sd | {cells} | | {statistics.mean(walls):.1f} min |")
    gains = {
        f"{a} -> {b}": [r["accuracy"][b] - r["accuracy"][a] for r in runs]
        for a, b in zip(stages[1:], stages[2:])
    }
    lines += ["", "Gain of each stage over the one before, in points, per seed:", ""]
    for name, values in gains.items():
        lines.append(f"- {name}: " + ", ".join(f"{100 * v:+.1f}" for v in values))
    lines += _why_not(runs, stages)
    lines.append(
        f"\nTarget: the whole pipeline under {TARGET_MINUTES} minutes on this CPU: slowest seed {max(walls):.1f} min."
    )
    return "\n".join(lines) + "\n"


def _why_not(runs: list[dict[str, Any]], stages: list[str]) -> list[str]:
    """A line for each seed and stage that did not raise accuracy, with what that stage started from."""
    out = []
    for r in runs:
        acc = r["accuracy"]
        for before, stage in zip(stages[1:], stages[2:]):
            gain = acc[stage] - acc[before]
            if gain > 0:
                continue
            had = (
                f"{r['pairs']} pairs (of {r['prompts']} prompts; the rest all right or all wrong)"
                if stage == "dpo"
                else "its samples"
            )
            out.append(
                f"- seed {r['seed']}: {stage} did not raise accuracy ({100 * gain:+.1f} pt); it started from "
                f"a model at {acc[before]:.1%} and learned from {had}"
            )
    return ["", *out] if out else []


def _machine() -> str:
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip() + ", "
                break
    except OSError:
        pass
    return f"{model}{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}"


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--json", type=Path, default=DEFAULT_JSON)
    p.add_argument("--write", action="store_true", help="write the section of BENCHMARKS.md")
    p.add_argument("--benchmarks-file", type=Path, default=ROOT / "BENCHMARKS.md")
    args = p.parse_args(argv)
    results = {
        "date": datetime.date.today().isoformat(),
        "machine": _machine(),
        "load_before": ", ".join(f"{x:.1f}" for x in os.getloadavg()),
        "runs": [],
    }
    with tempfile.TemporaryDirectory() as tmp:
        for seed in range(args.seeds):
            results["runs"].append(run_seed(seed, Path(tmp)))
            results["load_after"] = ", ".join(f"{x:.1f}" for x in os.getloadavg())
            args.json.parent.mkdir(parents=True, exist_ok=True)
            args.json.write_text(json.dumps(results, indent=2))
            print(json.dumps(results["runs"][-1]), flush=True)
    text = report(results, "python benchmarks/pipeline_cpu.py --seeds " + str(args.seeds) + " --write")
    print(text)
    if args.write:
        write_section(args.benchmarks_file, SECTION, text)


if __name__ == "__main__":
    main()
