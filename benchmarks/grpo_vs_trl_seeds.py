"""Learning and speed over seeds: rewardkit's GRPO against TRL's ``GRPOTrainer``, as a user runs both.

One starting model (the demo's tiny Llama after its SFT warm-up, built once, or ``--model DIR``) is
trained by each trainer once per seed 0..N-1, with the same tasks, reward, group size, lengths, learning
rate and steps as ``grpo_vs_trl.py`` (whose child processes this script runs: one fresh interpreter per
trainer and seed). The runs are interleaved, rewardkit seed i then TRL seed i, so a change in the
machine's load hits both trainers alike. The seed moves only the trainers' own randomness (prompt order
and sampling); the tasks, the starting model and the held-out set stay those of ``--task-seed``.

Per seed and trainer: held-out accuracy before and after (greedy, the demo's 200 test tasks through
``rewardkit.demo.evaluate``), the median wall time per step over steps 2..N, process CPU per step, and
where a step's time goes. The report gives mean +- std (and min / max) of the accuracy gain for each
trainer, the mean and the median of the per-seed time ratios, and whether the targets hold: gain of
rewardkit >= TRL's minus ``GAIN_MARGIN_PT`` points, and time per step <= ``TARGET_RATIO`` x TRL's.

Every finished seed is written to ``--json`` at once (default ``benchmarks/results/grpo_vs_trl_seeds.json``),
so a long run that stops keeps what it measured; ``--resume`` continues it with the same settings.

    python benchmarks/grpo_vs_trl_seeds.py --seeds 8 --steps 200 --prompts-per-step 8 [--write]
    [--sft-steps 300 | --model DIR] [--lr 1e-4] [--temperature 1.0] [--threads N]
    [--json FILE] [--resume] [--save-start-model DIR] [--benchmarks-file BENCHMARKS.md]
    python benchmarks/grpo_vs_trl_seeds.py --report FILE.json [--write]   # the section of a saved run
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shutil
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

from bench_report import write_section  # noqa: E402 - benchmarks/ is on sys.path when run as a script
from grpo_vs_trl import (  # noqa: E402 - the single-seed benchmark: its children, model and report pieces
    GROUP_SIZE,
    TEST_TASKS,
    add_common_arguments,
    mean_last,
    run_child,
    run_lines,
    set_threads,
    setup_lines,
    start_model,
    summarise,
)

SECTION = "## GRPO learning and step time over seeds: rewardkit vs TRL"
TRAINERS = ("rewardkit", "trl")
GAIN_MARGIN_PT = 1.0
TARGET_RATIO = 0.7
DEFAULT_JSON = Path(__file__).resolve().parent / "results" / "grpo_vs_trl_seeds.json"
SETTINGS = ("steps", "prompts_per_step", "sft_steps", "model", "lr", "temperature", "task_seed", "threads")


# ---------------------------------------------------------------------------------------------------------------
# Running: one shared starting model, then rewardkit seed i and TRL seed i, seed after seed.


def run_seeds(args: argparse.Namespace) -> dict[str, Any]:
    """Every seed's two runs; the results are saved to ``args.json`` after each seed."""
    settings = {k: getattr(args, k) for k in SETTINGS}
    results: dict[str, Any] = {"load_before": os.getloadavg(), "threads": set_threads(args.threads)}
    results.update(settings=settings, group_size=GROUP_SIZE, command=" ".join(sys.argv), seeds={})
    old = _resumed(Path(args.json), settings) if args.resume else {}
    with tempfile.TemporaryDirectory(prefix="grpo_vs_trl_seeds_") as tmp:
        work = Path(tmp)
        model_dir, results["start"], results["start_desc"] = start_model(args, work)
        if args.save_start_model and not args.model:
            shutil.copytree(model_dir, args.save_start_model, dirs_exist_ok=True)
        if old and old["start"]["accuracy"] != results["start"]["accuracy"]:
            raise SystemExit(
                f"--resume: the starting model differs from the one {args.json} was measured from "
                f"(held-out accuracy {results['start']['accuracy']:.1%}, was {old['start']['accuracy']:.1%})"
            )
        results["seeds"] = old.get("seeds", {})
        for seed in range(args.seeds):
            if str(seed) in results["seeds"]:
                print(f"[bench] seed {seed}: kept from {args.json}", flush=True)
                continue
            row = {t: _one_run(t, args, seed, model_dir, work, results["start"]) for t in TRAINERS}
            row["load_after"] = os.getloadavg()
            results["seeds"][str(seed)] = row
            _save(Path(args.json), results)
            rk, trl = row["rewardkit"], row["trl"]
            print(
                f"[bench] seed {seed}: gain rewardkit {rk['gain_pt']:+.1f} pt, TRL {trl['gain_pt']:+.1f} pt; "
                f"{rk['median_s']:.2f} vs {trl['median_s']:.2f} s/step ({rk['median_s'] / trl['median_s']:.2f}x)",
                flush=True,
            )
    results["seeds"] = {k: results["seeds"][k] for k in map(str, range(args.seeds))}
    results["load_after"] = os.getloadavg()
    results["date"] = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    _save(Path(args.json), results)
    return results


def _one_run(
    trainer: str, args: argparse.Namespace, seed: int, model_dir: Path, work: Path, start: dict[str, float]
) -> dict[str, Any]:
    """One trainer at one seed, in its own child process; its raw figures with what ``derive`` adds."""
    seed_args = argparse.Namespace(**{**vars(args), "seed": seed, "profile": False})
    return derive(run_child(trainer, seed_args, model_dir, work / f"seed_{seed}"), start)


def derive(raw: dict[str, Any], start: dict[str, float]) -> dict[str, Any]:
    """A child's raw figures plus the step summary (steps 2..N), medians, the gain and the slow steps;
    computed from the raw lists alone, so ``--report`` recomputes them for any saved run."""
    summary = summarise(raw["step_times"], raw["tokens"], raw["cpu_times"])
    derived = {
        "accuracy_before": start["accuracy"],
        "gain_pt": 100 * (raw["accuracy"] - start["accuracy"]),
        "rollout_s_median": statistics.median(raw["rollout_s"][1:]),
        "score_s_median": statistics.median(raw["score_s"][1:]),
        "cpu_s_median": statistics.median(raw["cpu_times"][1:]),
        "train_wall_per_step_s": raw["train_wall_s"] / len(raw["step_times"]),
        "reward_last5": mean_last(raw["reward_mean"]),
        "slow_steps": sum(t > 2 * summary["median_s"] for t in raw["step_times"][1:]),
    }
    return {**raw, **summary, **derived}


def _resumed(path: Path, settings: dict[str, Any]) -> dict[str, Any]:
    """An earlier run's results in ``path`` (checked before anything is built: same settings), or {}."""
    if not path.exists():
        return {}
    old = json.loads(path.read_text())
    if old.get("settings") != settings:
        raise SystemExit(
            f"--resume: {path} holds a run with other settings ({old.get('settings')}, now {settings}); "
            "give another --json or drop --resume"
        )
    return old


def _save(path: Path, results: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(results, indent=1))
    tmp.replace(path)


# ---------------------------------------------------------------------------------------------------------------
# Report


def per_trainer(results: dict[str, Any], trainer: str, key: str) -> list[float]:
    """``key`` of ``trainer`` in every seed, in seed order."""
    return [row[trainer][key] for row in results["seeds"].values()]


def ratios(results: dict[str, Any], key: str = "median_s") -> list[float]:
    """rewardkit / TRL of ``key`` in each seed."""
    return [row["rewardkit"][key] / row["trl"][key] for row in results["seeds"].values()]


def _sd(xs: list[float]) -> float:
    return statistics.stdev(xs) if len(xs) > 1 else 0.0


def verdicts(results: dict[str, Any]) -> dict[str, Any]:
    """The two targets: accuracy gain within ``GAIN_MARGIN_PT`` of TRL's, time per step <= ``TARGET_RATIO``."""
    rk, trl = per_trainer(results, "rewardkit", "gain_pt"), per_trainer(results, "trl", "gain_pt")
    time_ratios = ratios(results)
    diff = statistics.fmean(rk) - statistics.fmean(trl)
    return {
        "gain_diff_pt": diff,
        "gain_diff_se_pt": (_sd(rk) ** 2 / len(rk) + _sd(trl) ** 2 / len(trl)) ** 0.5,
        "gain_met": diff >= -GAIN_MARGIN_PT,
        "ratio_mean": statistics.fmean(time_ratios),
        "ratio_median": statistics.median(time_ratios),
        "ratio_met": statistics.fmean(time_ratios) <= TARGET_RATIO
        and statistics.median(time_ratios) <= TARGET_RATIO,
        "cpu_ratio_mean": statistics.fmean(ratios(results, "cpu_s_median")),
    }


def summary_table(results: dict[str, Any]) -> list[str]:
    """Mean and spread over seeds, rewardkit and TRL side by side."""

    def spread(key: str, fmt: str, scale: float = 1.0) -> tuple[str, str]:
        cells = []
        for trainer in TRAINERS:
            xs = [scale * x for x in per_trainer(results, trainer, key)]
            cells.append(
                f"{fmt.format(statistics.fmean(xs))} ± {fmt.format(_sd(xs)).lstrip('+')} "
                f"({fmt.format(min(xs))} / {fmt.format(max(xs))})"
            )
        return cells[0], cells[1]

    def mean(key: str, fmt: str, scale: float = 1.0) -> tuple[str, str]:
        return tuple(fmt.format(scale * statistics.fmean(per_trainer(results, t, key))) for t in TRAINERS)

    rows = [
        ("held-out accuracy gain (pt), mean ± std (min / max)", *spread("gain_pt", "{:+.1f}")),
        ("held-out accuracy after (%), mean ± std (min / max)", *spread("accuracy", "{:.1f}", 100.0)),
        ("median time per step (s), mean ± std (min / max)", *spread("median_s", "{:.3f}")),
        ("median process CPU per step (s), mean", *mean("cpu_s_median", "{:.3f}")),
        ("median generation time per step (s), mean", *mean("rollout_s_median", "{:.3f}")),
        ("median scoring time per step (s), mean", *mean("score_s_median", "{:.3f}")),
        ("mean time per step (s), mean: load spikes show here", *mean("mean_s", "{:.3f}")),
        ("generated tokens per step, mean", *mean("tokens_per_step", "{:.0f}")),
        (
            "whole train() call / steps, wall (s): start-up, end checkpoint, plot",
            *mean("train_wall_per_step_s", "{:.3f}"),
        ),
        ("peak RSS of the trainer process (MiB), mean", *mean("peak_rss_mb", "{:.0f}")),
        ("mean reward, last 5 steps, mean", *mean("reward_last5", "{:.3f}")),
        ("held-out format rate after (%), mean", *mean("format_rate", "{:.1f}", 100.0)),
    ]
    return ["| | rewardkit | TRL |", "|---|---:|---:|", *(f"| {a} | {b} | {c} |" for a, b, c in rows)]


def seed_table(results: dict[str, Any]) -> list[str]:
    """One row per seed: accuracy after and gain, median time per step and the ratio, the load after."""
    out = [
        "| seed | accuracy after, rewardkit / TRL | gain (pt), rewardkit / TRL | median s/step, rewardkit / TRL "
        "| time ratio | CPU ratio | steps > 2x median, rewardkit / TRL | load (1 min) after |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for seed, row in results["seeds"].items():
        rk, trl = row["rewardkit"], row["trl"]
        out.append(
            f"| {seed} | {rk['accuracy']:.1%} / {trl['accuracy']:.1%} | {rk['gain_pt']:+.1f} / {trl['gain_pt']:+.1f} "
            f"| {rk['median_s']:.3f} / {trl['median_s']:.3f} | {rk['median_s'] / trl['median_s']:.2f}x "
            f"| {rk['cpu_s_median'] / trl['cpu_s_median']:.2f}x | {rk['slow_steps']} / {trl['slow_steps']} "
            f"| {row['load_after'][0]:.1f} |"
        )
    return out


def section(args: argparse.Namespace, results: dict[str, Any]) -> str:
    n, v = len(results["seeds"]), verdicts(results)
    gains = {t: per_trainer(results, t, "gain_pt") for t in TRAINERS}
    seeds = f"seeds 0..{n - 1}, each trainer once per seed, interleaved (rewardkit seed i, then TRL seed i)"
    time_ratios = ratios(results)
    lines = [
        SECTION,
        "",
        *run_lines(results),
        *setup_lines(args, results, seeds=seeds),
        f"- held-out accuracy: `rewardkit.demo.evaluate`, greedy, {TEST_TASKS} test tasks of seed "
        f"{args.task_seed}, before (the shared starting model) and after {args.steps} steps; gain = after - before",
        f"- raw figures of every seed and step: `{_shown_path(args.json)}`",
        "",
        *summary_table(results),
        "",
        *seed_table(results),
        "",
        f"Accuracy gain over {n} seed{'s' * (n > 1)}: rewardkit {statistics.fmean(gains['rewardkit']):+.1f} ± "
        f"{_sd(gains['rewardkit']):.1f} pt, TRL {statistics.fmean(gains['trl']):+.1f} ± {_sd(gains['trl']):.1f} pt "
        f"(mean ± std); difference {v['gain_diff_pt']:+.1f} ± {v['gain_diff_se_pt']:.1f} pt (± one standard "
        f"error). Target gain >= TRL's - {GAIN_MARGIN_PT:g} pt: {'met' if v['gain_met'] else 'NOT met'}.",
        "",
        f"rewardkit / TRL time per step (per-seed ratio of median step times): **{v['ratio_mean']:.2f}x** mean, "
        f"{v['ratio_median']:.2f}x median ({min(time_ratios):.2f}x - {max(time_ratios):.2f}x); target <= "
        f"{TARGET_RATIO}: {'met' if v['ratio_met'] else 'NOT met'}. Process CPU time per step: "
        f"{v['cpu_ratio_mean']:.2f}x (mean of per-seed ratios of medians).",
        "",
    ]
    return "\n".join(lines)


def _shown_path(path: str) -> str:
    """``path`` relative to the repository when it lies inside it."""
    root = Path(__file__).resolve().parent.parent
    try:
        return str(Path(path).resolve().relative_to(root))
    except ValueError:
        return str(path)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_common_arguments(parser, steps=200, prompts=8)
    parser.add_argument("--seeds", type=int, default=8, help="run seeds 0..N-1 for each trainer")
    parser.add_argument(
        "--json", default=str(DEFAULT_JSON), help="every seed's raw figures, saved as they come"
    )
    parser.add_argument("--resume", action="store_true", help="keep the seeds --json already holds")
    parser.add_argument(
        "--report", default="", help="run nothing: print (and --write) the section of this saved --json"
    )
    parser.add_argument(
        "--save-start-model", default="", help="keep the SFT starting model in this directory (for --model)"
    )
    args = parser.parse_args(argv)
    if args.steps < 2:
        parser.error("--steps must be >= 2 (step 1 is warm-up and not timed)")
    if args.seeds < 1:
        parser.error("--seeds must be >= 1")
    if args.report:
        results = json.loads(Path(args.report).read_text())
        args = argparse.Namespace(**{**vars(args), **results["settings"], "json": args.report})
        for row in results["seeds"].values():
            row.update({t: derive(row[t], results["start"]) for t in TRAINERS})
    else:
        results = run_seeds(args)
    body = section(args, results)
    print(body)
    if args.write:
        write_section(args.output, SECTION, body)


if __name__ == "__main__":
    main()
