"""What an evaluation reports: pass@k, per-environment summaries, the Markdown report, the bar chart,
and the side-by-side comparison of two runs.

Everything here works on the saved rollout records (plain dicts read back from ``rollouts.jsonl``), so
a report can be rebuilt from disk, a resumed run reports exactly what an uninterrupted one would, and
``--compare`` needs nothing but two output directories. No torch is imported.
"""

from __future__ import annotations

import collections
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from rewardkit.console import optional_pyplot
from rewardkit.types import STATUSES


def pass_at_k(n: int, c: int, k: int) -> float:
    """The unbiased pass@k estimator of Chen et al. (2021), "Evaluating Large Language Models Trained
    on Code", eq. 1: ``1 - C(n - c, k) / C(n, k)`` for ``n`` samples of which ``c`` passed.

    The ratio of binomials is evaluated as the product ``prod_{i = n-c+1}^{n} (1 - k / i)``, which never
    forms a large binomial coefficient, so it neither overflows nor loses precision for large ``n``.
    """
    if not 0 <= c <= n:
        raise ValueError(f"need 0 <= c <= n, got n={n}, c={c}")
    if not 1 <= k <= n:
        raise ValueError(f"need 1 <= k <= n, got k={k}, n={n}")
    if n - c < k:  # every subset of k samples contains a passing one
        return 1.0
    prod = 1.0
    for i in range(n - c + 1, n + 1):
        prod *= 1.0 - k / i
    return 1.0 - prod


def summarize_env(records: Sequence[Mapping[str, Any]], ks: Sequence[int], pass_threshold: float) -> dict:
    """The per-environment numbers of the report, from that environment's rollout records.

    pass@k is averaged over tasks (each task has the same number of samples); metrics are averaged
    over the samples that report them (a failed sample has no metrics, and its reward 0 already
    counts in ``mean_reward``).
    """
    by_task: dict[int, list[Mapping[str, Any]]] = collections.defaultdict(list)
    for rec in records:
        by_task[rec["task_index"]].append(rec)
    rewards = [float(r["reward"]) for r in records]
    metric_values: dict[str, list[float]] = collections.defaultdict(list)
    for rec in records:
        for name, value in rec["metrics"].items():
            metric_values[name].append(float(value))
    statuses = collections.Counter(r["status"] for r in records)
    pass_k: dict[str, float] = {}
    for k in ks:
        per_task = [
            pass_at_k(len(group), sum(_passed(r, pass_threshold) for r in group), k)
            for group in by_task.values()
            if len(group) >= k
        ]
        pass_k[str(k)] = _mean(per_task)
    return {
        "tasks": len(by_task),
        "samples": len(records),
        "pass_threshold": pass_threshold,
        "mean_reward": _mean(rewards),
        "reward_std": _std(rewards),
        "pass_at_k": pass_k,
        "metrics": {name: _mean(values) for name, values in sorted(metric_values.items())},
        "status_counts": {s: statuses.get(s, 0) for s in STATUSES} | dict(statuses),
        "mean_length_tokens": _mean([float(r["num_tokens"]) for r in records]),
        "truncation_rate": _mean([float(r["truncated"]) for r in records]),
    }


def _passed(record: Mapping[str, Any], threshold: float) -> bool:
    return record["status"] == "ok" and float(record["reward"]) >= threshold


def _mean(values: Sequence[float]) -> float:
    return sum(values) / len(values) if values else float("nan")


def _std(values: Sequence[float]) -> float:
    if len(values) < 2:
        return 0.0
    mu = _mean(values)
    return math.sqrt(sum((v - mu) ** 2 for v in values) / (len(values) - 1))


# ---- Markdown ---------------------------------------------------------------------------------------
def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return "n/a" if math.isnan(value) else f"{value:.4f}"
    return str(value)


def env_table(stats: Mapping[str, Any]) -> list[str]:
    """One environment's numbers as a two-column Markdown table."""
    rows = [
        ("tasks", stats["tasks"]),
        ("samples", stats["samples"]),
        ("mean reward", stats["mean_reward"]),
        ("reward std", stats["reward_std"]),
    ]
    rows += [(f"pass@{k}", v) for k, v in stats["pass_at_k"].items()]
    rows += [(f"metric: {name}", v) for name, v in stats["metrics"].items()]
    rows += [
        ("mean length (tokens)", stats["mean_length_tokens"]),
        ("truncation rate", stats["truncation_rate"]),
    ]
    rows += [(f"status: {s}", n) for s, n in stats["status_counts"].items()]
    lines = ["| quantity | value |", "|---|---|"]
    lines += [f"| {name} | {_fmt(value)} |" for name, value in rows]
    return lines


def overview_table(environments: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """All environments in one table (the one to paste into a pull request)."""
    ks = sorted({int(k) for s in environments.values() for k in s["pass_at_k"]})
    head = ["env", "tasks", "samples", "mean reward", *(f"pass@{k}" for k in ks), "truncated"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for label, s in environments.items():
        cells = [label, s["tasks"], s["samples"], s["mean_reward"]]
        cells += [s["pass_at_k"].get(str(k), float("nan")) for k in ks]
        cells.append(s["truncation_rate"])
        lines.append("| " + " | ".join(_fmt(c) for c in cells) + " |")
    return lines


def render_report(summary: Mapping[str, Any], chart: str | None) -> str:
    """The Markdown report: what was evaluated, then one table per environment."""
    model = summary["model"]
    lines = [
        f"# Evaluation: {summary['suite']['name']}",
        "",
        f"- model: `{model['path']}`" + (f" (step {model['step']})" if model.get("step") is not None else ""),
        f"- backend: {summary['backend']}",
        "",
    ]
    lines += [*overview_table(summary["environments"]), ""]
    if chart:
        lines += [f"![pass@k and mean reward]({chart})", ""]
    for label, stats in summary["environments"].items():
        setting = summary["suite"]["environments"][label]
        sampling = setting["sampling"]
        lines += [
            f"## {label}",
            "",
            f"env `{setting['env']}`, {setting['n']} sample(s) per task, temperature "
            f"{sampling['temperature']}, top_p {sampling['top_p']}, max {sampling['max_tokens']} new tokens; "
            f"a sample passes when its reward >= {stats['pass_threshold']:g}.",
            "",
            *env_table(stats),
            "",
        ]
    return "\n".join(lines)


def write_chart(summary: Mapping[str, Any], path: Path) -> bool:
    """A grouped bar chart: for each environment, pass@k for every k and the mean reward. Returns False,
    having warned (once), when matplotlib is not installed: the chart is an extra, the numbers are in
    summary.json and report.md."""
    plt = optional_pyplot(path.name)
    if plt is None:
        return False
    envs = list(summary["environments"])
    series = sorted(
        {f"pass@{k}" for s in summary["environments"].values() for k in s["pass_at_k"]},
        key=lambda name: int(name.split("@")[1]),
    ) + ["mean reward"]
    width = 0.8 / len(series)
    fig, ax = plt.subplots(figsize=(max(4.0, 1.6 * len(envs) + 2), 3.6))
    for j, name in enumerate(series):
        values = []
        for label in envs:
            stats = summary["environments"][label]
            value = stats["mean_reward"] if name == "mean reward" else stats["pass_at_k"].get(name[5:])
            values.append(0.0 if value is None or math.isnan(value) else value)
        xs = [i + (j - (len(series) - 1) / 2) * width for i in range(len(envs))]
        ax.bar(xs, values, width, label=name)
    ax.set_xticks(range(len(envs)), envs)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("score")
    ax.set_title(f"{summary['suite']['name']}: {Path(summary['model']['path']).name}")
    ax.legend(fontsize="small", ncols=min(len(series), 4))
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return True


# ---- comparison -------------------------------------------------------------------------------------
def _flat(stats: Mapping[str, Any]) -> dict[str, float]:
    """The comparable numbers of one environment, by row name."""
    out = {"mean reward": stats["mean_reward"]}
    out |= {f"pass@{k}": v for k, v in stats["pass_at_k"].items()}
    out |= {f"metric: {n}": v for n, v in stats["metrics"].items()}
    out["mean length (tokens)"] = stats["mean_length_tokens"]
    out["truncation rate"] = stats["truncation_rate"]
    samples = max(stats["samples"], 1)
    out |= {f"{s} rate": c / samples for s, c in stats["status_counts"].items() if s != "ok"}
    return out


def compare_summaries(a: Mapping[str, Any], b: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Rows ``{env, quantity, a, b, delta}`` for every number either run reports (None where absent)."""
    rows = []
    for label in _union(a["environments"], b["environments"]):
        fa = _flat(a["environments"][label]) if label in a["environments"] else {}
        fb = _flat(b["environments"][label]) if label in b["environments"] else {}
        for name in _union(fa, fb):
            va, vb = fa.get(name), fb.get(name)
            delta = vb - va if va is not None and vb is not None else None
            rows.append({"env": label, "quantity": name, "a": va, "b": vb, "delta": delta})
    return rows


def _union(first: Iterable[str], second: Iterable[str]) -> list[str]:
    seen = dict.fromkeys(first)
    seen.update(dict.fromkeys(second))
    return list(seen)


def render_comparison(rows: Sequence[Mapping[str, Any]], name_a: str, name_b: str) -> str:
    """The comparison as a Markdown table, A and B side by side with B - A."""

    def cell(v: float | None, signed: bool = False) -> str:
        if v is None or math.isnan(v):
            return "n/a"
        return f"{v:+.4f}" if signed else f"{v:.4f}"

    lines = [
        f"A = `{name_a}`, B = `{name_b}`",
        "",
        "| env | quantity | A | B | B - A |",
        "|---|---|---|---|---|",
    ]
    lines += [
        f"| {r['env']} | {r['quantity']} | {cell(r['a'])} | {cell(r['b'])} | {cell(r['delta'], True)} |"
        for r in rows
    ]
    return "\n".join(lines) + "\n"


def load_summary(run_dir: str | Path) -> dict[str, Any]:
    """``summary.json`` of an evaluation output directory, with a clear error when it is not one."""
    path = Path(run_dir) / "summary.json"
    if not path.is_file():
        raise FileNotFoundError(f"{run_dir} is not an evaluation output directory (no summary.json)")
    return json.loads(path.read_text())


__all__ = [
    "compare_summaries",
    "env_table",
    "load_summary",
    "overview_table",
    "pass_at_k",
    "render_comparison",
    "render_report",
    "summarize_env",
    "write_chart",
]
