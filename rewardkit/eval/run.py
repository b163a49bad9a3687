"""Evaluate a model on a suite of environments: generate, score, save every rollout, report.

Why it is shaped this way:

* **Results are the rollouts.** Each finished task appends its ``n`` samples to ``rollouts.jsonl``;
  the summary, the Markdown report and the chart are always recomputed from that file (see
  ``rewardkit.eval.report``), so a resumed run reports exactly what an uninterrupted one would.
* **Resuming never mixes runs.** ``fingerprint.json`` records the model (its path, checkpoint step
  and a digest of its config and weight-file sizes), the suite (its resolved definition and a digest
  of the tasks themselves) and the sampling settings with the back end. ``--resume`` refuses, naming
  what differs, when any of them does not match.
* **Reproducible sampling.** Tasks are generated in fixed chunks of ``batch_tasks``; chunk ``i`` is
  sampled with ``seed + i``. A resumed run regenerates a partly finished chunk whole and keeps only
  the tasks it still needs, so its samples are the ones the uninterrupted run would have drawn.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import hashlib
import json
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from rewardkit.eval.config import EvalConfig
from rewardkit.eval.report import render_report, summarize_env, write_chart
from rewardkit.eval.suite import EnvEval, Suite
from rewardkit.models import ModelRef, load_model, load_tokenizer, resolve_model, token_decoder
from rewardkit.scoring import score_trajectories
from rewardkit.types import Task, Trajectory

ROLLOUTS, SUMMARY, REPORT, CHART, FINGERPRINT = (
    "rollouts.jsonl",
    "summary.json",
    "report.md",
    "report.png",
    "fingerprint.json",
)


class EvalMismatchError(ValueError):
    """``--resume`` found results of a different model, suite or sampling setup in the output dir."""


# ---- the model ----------------------------------------------------------------------------------------
def build_generator(model: ModelRef, backend: str, cfg: EvalConfig) -> Any:
    """A ``Generator`` for the model: the HF back end loads the weights here, vLLM from the directory."""
    from rewardkit.generation import make_generator

    if backend == "vllm":
        tokenizer = load_tokenizer(model.path, "model")
        return make_generator("vllm", model.path, tokenizer)
    policy, tokenizer = load_model(model.path, None, cfg.dtype)
    policy.eval()
    return make_generator("hf", policy, tokenizer, max_batch_size=cfg.max_batch_size)


# ---- the output directory -----------------------------------------------------------------------------
def fingerprint(model: ModelRef, suite: Suite, task_digests: Mapping[str, str], backend: str) -> dict:
    """What must match for two runs' results to be mixed: model, suite (with its tasks), sampling."""
    envs = suite.to_dict()["environments"]
    what = {
        label: {k: v for k, v in e.items() if k not in ("k", "n", "sampling", "batch_tasks")}
        for label, e in envs.items()
    }
    return {
        "model": {"path": model.path, "step": model.step, "digest": model.digest},
        "suite": {
            "name": suite.name,
            "environments": what,
            "tasks_digest": dict(task_digests),
        },
        "sampling": {
            "backend": backend,
            "environments": {
                label: {"n": e["n"], "batch_tasks": e["batch_tasks"], **e["sampling"]}
                for label, e in envs.items()
            },
        },
    }


def tasks_digest(tasks: Sequence[Task]) -> str:
    payload = json.dumps([t.to_dict() for t in tasks], sort_keys=True, default=str)
    return hashlib.sha256(payload.encode()).hexdigest()


def check_fingerprint(stored: Mapping[str, Any], current: Mapping[str, Any], out: Path) -> None:
    """Raise ``EvalMismatchError`` naming every part (model, suite, sampling) that differs."""
    problems = []
    for part in ("model", "suite", "sampling"):
        for key, (a, b) in _diff(stored.get(part), current.get(part)).items():
            problems.append(
                f"  {part}{key}: stored {json.dumps(a, default=str)}, now {json.dumps(b, default=str)}"
            )
    if problems:
        raise EvalMismatchError(
            f"refusing to resume in {out}: its results come from a different setup:\n"
            + "\n".join(problems)
            + "\nuse another --output-dir, or --overwrite to discard the old results"
        )


def _diff(a: Any, b: Any, key: str = "") -> dict[str, tuple[Any, Any]]:
    if isinstance(a, dict) and isinstance(b, dict):
        out: dict[str, tuple[Any, Any]] = {}
        for k in dict.fromkeys([*a, *b]):
            out |= _diff(a.get(k), b.get(k), f"{key}.{k}")
        return out
    return {} if a == b else {key: (a, b)}


def prepare_output(out: Path, current: Mapping[str, Any], cfg: EvalConfig) -> list[dict[str, Any]]:
    """Create, check or clear the output directory; return the complete rollout records kept."""
    out.mkdir(parents=True, exist_ok=True)
    has_results = (out / ROLLOUTS).exists() or (out / FINGERPRINT).exists()
    if has_results and cfg.overwrite:
        for name in (ROLLOUTS, SUMMARY, REPORT, CHART, FINGERPRINT):
            (out / name).unlink(missing_ok=True)
    elif has_results and not cfg.resume:
        raise ValueError(
            f"{out} already holds evaluation results; pass --resume to continue them, "
            "--overwrite to replace them, or choose another --output-dir"
        )
    elif has_results:
        if not (out / FINGERPRINT).exists():
            raise EvalMismatchError(f"refusing to resume in {out}: it has rollouts but no {FINGERPRINT}")
        check_fingerprint(json.loads((out / FINGERPRINT).read_text()), current, out)
    # The fingerprint is written by ``evaluate`` once the model has loaded: a model that fails to load
    # must leave nothing that makes the rerun (with the path fixed) refuse the directory.
    return read_complete(out / ROLLOUTS, current)


def read_complete(path: Path, current: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Records of the tasks that have all their samples; the file is rewritten without the rest.

    An interrupted run can leave a half-written last line or a task with only some samples: both are
    dropped here so the task is simply evaluated again.
    """
    if not path.exists():
        return []
    ns = {label: e["n"] for label, e in current["sampling"]["environments"].items()}
    by_task: dict[tuple[str, int], dict[int, dict]] = {}
    lines = 0
    for line in path.read_text().splitlines():
        lines += 1
        try:
            rec = json.loads(line)
            by_task.setdefault((rec["env"], rec["task_index"]), {}).setdefault(rec["sample_index"], rec)
        except (json.JSONDecodeError, KeyError, TypeError):
            continue  # a torn write
    kept = [
        samples[i]
        for (label, _), samples in sorted(by_task.items())
        if label in ns and set(samples) == set(range(ns[label]))
        for i in range(ns[label])
    ]
    if len(kept) != lines:
        tmp = path.with_suffix(".tmp")
        tmp.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in kept))
        os.replace(tmp, path)
    return kept


def _write_json(path: Path, obj: Any) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(obj, indent=2, default=str) + "\n")
    os.replace(tmp, path)


# ---- running --------------------------------------------------------------------------------------------
TaskHook = Callable[[str, int], None]
"""Called as ``hook(env_label, task_index)`` after a task's samples are on disk (tests interrupt here)."""


def evaluate(cfg: EvalConfig, suite: Suite, *, on_task_done: TaskHook | None = None) -> dict[str, Any]:
    """Run (or finish) the evaluation and write the outputs; returns the summary."""
    from rewardkit.generation import resolve_backend
    from rewardkit.registry import load_env

    out = Path(cfg.output_dir)
    model = resolve_model(cfg.model, cfg.step)
    backend = resolve_backend(cfg.backend)
    envs: dict[str, Any] = {}
    try:
        for e in suite.environments:
            envs[e.label] = load_env(e.env, **e.config)
        tasks = {e.label: _tasks(e, envs[e.label]) for e in suite.environments}
        current = fingerprint(model, suite, {k: tasks_digest(v) for k, v in tasks.items()}, backend)
        records = prepare_output(out, current, cfg)
        done = {(r["env"], r["task_index"]) for r in records}
        generator = None
        for entry in suite.environments:
            todo = [i for i in range(len(tasks[entry.label])) if (entry.label, i) not in done]
            if not todo:
                continue
            _warn_greedy(entry)
            if generator is None:
                generator = build_generator(model, backend, cfg)
                _write_json(out / FINGERPRINT, current)  # before the first rollout is appended
            runner = _EnvRunner(
                entry, envs[entry.label], generator, out / ROLLOUTS, cfg.progress, on_task_done
            )
            runner.run(tasks[entry.label], todo)
        if generator is None:  # nothing left to generate (a finished run resumed, or no tasks)
            _write_json(out / FINGERPRINT, current)
    finally:
        for env in envs.values():
            env.close()
    return write_outputs(
        out, suite, model, backend, {e.label: envs[e.label].pass_threshold for e in suite.environments}
    )


def _tasks(entry: EnvEval, env: Any) -> list[Task]:
    tasks = entry.tasks.load(env)
    if not tasks:
        raise ValueError(f"{entry.label}: the task source gave no tasks")
    tasks = tasks[: entry.num_tasks] if entry.num_tasks is not None else tasks
    if entry.chat:
        user = [dataclasses.replace(t, prompt=({"role": "user", "content": t.prompt},)) for t in tasks]
        tasks = [u if isinstance(t.prompt, str) else t for t, u in zip(tasks, user)]
    return tasks


def _warn_greedy(entry: EnvEval) -> None:
    if entry.n > 1 and entry.sampling.temperature == 0:
        print(
            f"warning: {entry.label}: {entry.n} greedy samples per task are identical; pass@k>1 equals pass@1",
            file=sys.stderr,
        )


class _EnvRunner:
    """Generates and scores one environment's remaining tasks, chunk by chunk, appending as tasks finish."""

    def __init__(
        self, entry: EnvEval, env: Any, generator: Any, path: Path, progress: bool, hook: TaskHook | None
    ) -> None:
        self.entry, self.env, self.generator, self.path, self.hook = entry, env, generator, path, hook
        self.progress = progress
        tokenizer = getattr(generator, "tokenizer", None)
        self._decode = token_decoder(tokenizer) if tokenizer is not None else None

    def run(self, tasks: list[Task], todo: list[int]) -> None:
        from tqdm import tqdm

        size, n, label = self.entry.batch_tasks, self.entry.n, self.entry.label
        bars = dict(file=sys.stderr, disable=not self.progress, dynamic_ncols=True)
        gen_bar = tqdm(total=len(todo), desc=f"{label}: generating", unit="task", **bars)
        score_bar = tqdm(total=len(todo) * n, desc=f"{label}: scoring", unit="sample", **bars)
        wanted = set(todo)
        try:
            for chunk, start in enumerate(range(0, len(tasks), size)):
                need = [i for i in range(start, min(start + size, len(tasks))) if i in wanted]
                if not need:
                    continue
                trajectories = self._generate(tasks[start : start + size], chunk)
                gen_bar.update(len(need))
                self._score_and_append(start, need, trajectories, score_bar)
        finally:
            gen_bar.close()
            score_bar.close()

    def _generate(self, tasks: list[Task], chunk: int) -> list[Trajectory]:
        seed = self.entry.sampling.seed
        sampling = dataclasses.replace(self.entry.sampling, seed=None if seed is None else seed + chunk)
        return self.env.rollout(self.generator, tasks, n=self.entry.n, sampling=sampling)

    def _score_and_append(
        self, start: int, need: list[int], trajectories: list[Trajectory], bar: Any
    ) -> None:
        """Score each needed task's samples (in parallel across tasks) and append each task when it is done."""
        n = self.entry.n

        def group(i: int) -> list[Trajectory]:
            return trajectories[(i - start) * n : (i - start + 1) * n]

        workers = max(1, min(len(need), 16))
        with concurrent.futures.ThreadPoolExecutor(workers) as pool, self.path.open("a") as sink:
            futures = {pool.submit(score_trajectories, self.env, group(i)): i for i in need}
            for future in concurrent.futures.as_completed(futures):
                i = futures[future]
                rows = [
                    _record(self.entry.label, i, j, t, s, self._decode)
                    for j, (t, s) in enumerate(zip(group(i), future.result()))
                ]
                sink.write("".join(json.dumps(r, ensure_ascii=False, default=str) + "\n" for r in rows))
                sink.flush()
                bar.update(n)
                if self.hook is not None:
                    self.hook(self.entry.label, i)


def _record(
    label: str,
    task_index: int,
    sample_index: int,
    t: Trajectory,
    score: Any,
    decode: Callable[[Sequence[int]], str] | None = None,
) -> dict[str, Any]:
    """One line of rollouts.jsonl; with ``decode``, an episode with environment tokens also records its
    policy and environment token runs (``segments``, for ``rewardkit view``)."""
    info = {k: v for k, v in score.info.items() if k != "status"}
    completion = t.completion if isinstance(t.completion, str) else [dict(m) for m in t.completion]
    record = {
        "env": label,
        "task_index": task_index,
        "task_id": t.task.id,
        "sample_index": sample_index,
        "prompt": t.task.to_dict()["prompt"],
        "answer": t.task.answer,
        "completion": completion,
        "reward": score.reward,
        "metrics": dict(score.metrics),
        "status": score.status,
        "score_info": info,
        "num_tokens": t.num_policy_tokens,
        "truncated": t.truncated,
        "stop_reason": t.stop_reason,
        "turns": t.turns,
    }
    if decode is not None and t.has_environment_tokens:
        record["segments"] = t.segments(decode)
    return record


# ---- outputs --------------------------------------------------------------------------------------------
def write_outputs(
    out: Path, suite: Suite, model: ModelRef, backend: str, thresholds: Mapping[str, float]
) -> dict[str, Any]:
    """summary.json, report.md and report.png, all computed from rollouts.jsonl."""
    current = json.loads((out / FINGERPRINT).read_text())
    records = read_complete(out / ROLLOUTS, current)
    records.sort(key=lambda r: (r["env"], r["task_index"], r["sample_index"]))
    environments = {}
    for entry in suite.environments:
        mine = [r for r in records if r["env"] == entry.label]
        environments[entry.label] = summarize_env(mine, entry.k, thresholds[entry.label])
    summary = {
        "model": {"path": model.path, "step": model.step, "source": model.source},
        "backend": backend,
        "suite": suite.to_dict(),
        "environments": environments,
    }
    _write_json(out / SUMMARY, summary)
    chart = CHART if write_chart(summary, out / CHART) else None  # no link to a chart that was not drawn
    (out / REPORT).write_text(render_report(summary, chart))
    return summary


__all__ = [
    "EvalConfig",
    "EvalMismatchError",
    "ModelRef",
    "evaluate",
    "fingerprint",
    "resolve_model",
    "write_outputs",
]
