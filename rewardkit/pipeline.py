"""``rewardkit pipeline PIPELINE.yaml``: the post-training stages chained in one file, resumable by stage.

    output_dir: runs/pipeline
    model: runs/base_model           # the first stage's model
    suite: demo                      # measured after every stage that makes a model: a built-in suite's
                                     # name, a suite file, or a suite mapping (rewardkit.eval.suite)
    threads: 1                       # torch's CPU threads (optional; tiny models run faster on one)
    stages:
      - {name: sft, kind: sft, config: {data: sft.jsonl, steps: 300, lr: 3e-3}}
      - {name: samples, kind: sample, suite: train_prompts.yaml, n: 8, temperature: 0.8}
      - {name: pairs, kind: pairs, config: {min_margin: 0.5}}
      - {name: dpo, kind: train, config: {algorithm: dpo, steps: 100, lr: 1e-5}}
      - {name: grpo, kind: train, config: {algorithm: grpo, env: math, steps: 200}}

Each stage's output is the next one's input, unless its config names another:

- ``sft``, ``train`` (RL, or a preference loss: ``rewardkit.rl.offline``) and ``rm`` train from the latest
  model (the pipeline's ``model``, then each training stage's result) and on the latest dataset (the
  output of the last ``pairs``, ``reject`` or ``call`` stage that made one); ``rm`` makes a reward model,
  not the next policy.
- ``sample`` samples ``n`` completions of each task of its ``suite`` from the latest model and scores
  them (``rewardkit eval``); ``pairs`` and ``reject`` turn the latest ``sample`` stage's run into a
  dataset (``rewardkit pairs``, ``rewardkit reject``; their ``config`` keys are those commands' options).
- ``call`` runs ``function: module:attr`` with ``kwargs`` (and ``output_dir``) and takes the ``model``
  and ``data`` paths of the mapping it returns: your own data preparation, or a model built on the spot.
- A config value ``"@NAME"`` is stage NAME's output (``model: "@sft"``, ``data: "@pairs"``).

Every stage writes into ``output_dir/NAME``. A stage that finished is recorded in ``pipeline.json`` and is
skipped when the pipeline runs again; a training stage that was interrupted resumes from its checkpoint.
A stage whose entry changed after it finished is refused by name unless ``--restart-from`` names it (or an
earlier stage): then it and every stage after it run again. After the first stage and every stage that
made a model, the suite is measured and one table with a row per model so far is printed and written
to ``summary.md`` (``summary.json``).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rewardkit.config import ConfigError, load_yaml

STATE = "pipeline.json"
KINDS = ("sft", "train", "rm", "sample", "pairs", "reject", "call")
MODEL_KINDS = frozenset({"sft", "train", "call"})
"""Stages whose output is the next policy (``call``: when its function returns a ``model``)."""
_PIPELINE_KEYS = ("output_dir", "model", "suite", "threads", "stages")
_STAGE_KEYS = ("name", "kind", "config", "suite", "n", "temperature", "max_tokens", "function", "kwargs")


@dataclass(frozen=True)
class Stage:
    name: str
    kind: str
    spec: dict[str, Any]
    """The stage's entry as written (its digest decides whether a finished stage still stands)."""

    @property
    def digest(self) -> str:
        return hashlib.sha256(json.dumps(self.spec, sort_keys=True, default=str).encode()).hexdigest()[:16]


@dataclass
class Pipeline:
    output_dir: Path
    model: str | None
    suite: Any
    stages: list[Stage]
    threads: int | None = None
    """torch's intra-op CPU threads for the whole pipeline (None: torch's default)."""
    state: dict[str, Any] = field(default_factory=dict)
    """``{"stages": {name: {"digest", "outputs"}}, "measures": [{"stage", "model", env: pass@1}]}``."""


def load_pipeline(path: str | Path) -> Pipeline:
    raw = load_yaml(Path(path).read_text())
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping with output_dir, model, suite and stages")
    unknown = set(raw) - set(_PIPELINE_KEYS)
    if unknown:
        raise ConfigError(f"{path}: unknown keys {sorted(unknown)}; allowed: {', '.join(_PIPELINE_KEYS)}")
    stages = raw.get("stages")
    if not isinstance(stages, list) or not stages:
        raise ConfigError(f"{path}: stages: expected a list of {{name, kind, ...}} entries")
    parsed = [_stage(s, i) for i, s in enumerate(stages)]
    names = [s.name for s in parsed]
    if len(set(names)) != len(names):
        raise ConfigError(f"{path}: stage names must be unique, got {names}")
    threads = raw.get("threads")
    if threads is not None and (not isinstance(threads, int) or isinstance(threads, bool) or threads < 1):
        raise ConfigError(f"{path}: threads: got {threads!r}, expected an int >= 1 (or leave it out)")
    out = Path(raw.get("output_dir") or "runs/pipeline")
    return Pipeline(out, raw.get("model"), raw.get("suite"), parsed, threads)


def _stage(raw: Any, i: int) -> Stage:
    if not isinstance(raw, dict) or "kind" not in raw:
        raise ConfigError(f"stages[{i}]: expected a mapping with a kind ({', '.join(KINDS)})")
    if raw["kind"] not in KINDS:
        raise ConfigError(f"stages[{i}]: kind: got {raw['kind']!r}, expected one of {', '.join(KINDS)}")
    unknown = set(raw) - set(_STAGE_KEYS)
    if unknown:
        raise ConfigError(f"stages[{i}]: unknown keys {sorted(unknown)}; allowed: {', '.join(_STAGE_KEYS)}")
    if raw["kind"] == "sample" and "suite" not in raw:
        raise ConfigError(f"stages[{i}]: a sample stage needs a suite (the prompts to sample)")
    if raw["kind"] == "call" and "function" not in raw:
        raise ConfigError(f"stages[{i}]: a call stage needs function: module:attr")
    name = str(raw.get("name") or f"{i:02d}_{raw['kind']}")
    return Stage(name, raw["kind"], dict(raw))


def run_pipeline(pipe: Pipeline, restart_from: str | None = None) -> dict[str, Any]:
    """Run every stage not yet done, measuring the suite after each model; returns the state."""
    pipe.output_dir.mkdir(parents=True, exist_ok=True)
    pipe.state = _load_state(pipe, restart_from)
    if pipe.threads is not None:
        import torch

        torch.set_num_threads(pipe.threads)
    current = {"model": pipe.model, "data": None, "samples": None}
    for index, stage in enumerate(pipe.stages):
        done = pipe.state["stages"].get(stage.name)
        if done is not None:
            _say(f"[pipeline] {stage.name}: done earlier, skipped")
            outputs = done["outputs"]
        else:
            _say(f"[pipeline] {stage.name} ({stage.kind}) ...")
            outputs = run_stage(pipe, stage, current)
            pipe.state["stages"][stage.name] = {"digest": stage.digest, "outputs": outputs}
            _save_state(pipe)
        _advance(current, stage, outputs)
        if pipe.suite is not None and (index == 0 or "model" in outputs and stage.kind in MODEL_KINDS):
            _measure(pipe, stage.name, current["model"])
    return pipe.state


def _advance(current: dict[str, Any], stage: Stage, outputs: Mapping[str, Any]) -> None:
    if "model" in outputs and stage.kind in MODEL_KINDS:
        current["model"] = outputs["model"]
    if "data" in outputs:
        current["data"] = outputs["data"]
    if stage.kind == "sample":
        current["samples"] = outputs["run"]


def run_stage(pipe: Pipeline, stage: Stage, current: Mapping[str, Any]) -> dict[str, Any]:
    out = pipe.output_dir / stage.name
    config = {k: _ref(pipe, v, k) for k, v in dict(stage.spec.get("config") or {}).items()}
    runner = _RUNNERS[stage.kind]
    return runner(pipe, stage, config, current, out)


def _ref(pipe: Pipeline, value: Any, key: str = "") -> Any:
    """``"@NAME"`` -> stage NAME's output: under ``model`` or ``data``, that output of the stage when it has
    one (a ``call`` stage can make both); else its model, else its dataset, else its run."""
    if not (isinstance(value, str) and value.startswith("@")):
        return value
    done = pipe.state["stages"].get(value[1:])
    if done is None:
        raise ConfigError(f"{value}: no finished stage named {value[1:]!r} before this one")
    outputs = done["outputs"]
    if key in ("model", "data") and outputs.get(key):
        return outputs[key]
    return outputs.get("model") or outputs.get("data") or outputs.get("run")


def _need(value: Any, what: str, stage: Stage) -> Any:
    if value is None:
        raise ConfigError(
            f"stage {stage.name}: no {what}: give config.{what}, or a stage before it that makes one"
        )
    return value


def _sft(pipe: Pipeline, stage: Stage, config: dict, current: Mapping, out: Path) -> dict[str, Any]:
    return _offline(stage, {"algorithm": "sft", **config}, current, out)


def _offline(stage: Stage, config: dict, current: Mapping, out: Path) -> dict[str, Any]:
    from rewardkit.rl.offline import train_offline
    from rewardkit.rl.offline_config import OfflineConfig

    config = {
        "model": _need(config.get("model", current["model"]), "model", stage),
        "data": _need(config.get("data", current["data"]), "data", stage),
        **config,
        "output_dir": str(out / "run"),
    }
    result = train_offline(OfflineConfig.from_dict(config), resume=(out / "run").exists())
    if result.interrupted:
        raise KeyboardInterrupt
    return {"model": str(result.final_model), "run": str(out / "run")}


def _train(pipe: Pipeline, stage: Stage, config: dict, current: Mapping, out: Path) -> dict[str, Any]:
    from rewardkit.rl.offline_config import is_offline

    if is_offline(config.get("algorithm")):
        return _offline(stage, config, current, out)
    from rewardkit.rl.config import TrainConfig
    from rewardkit.rl.trainer import train

    config = {"model": _need(config.get("model", current["model"]), "model", stage), **config}
    cfg = TrainConfig.from_dict({**config, "output_dir": str(out / "run")})
    result = train(cfg, resume=(out / "run").exists())  # an interrupted stage goes on from its checkpoint
    if result.interrupted:
        raise KeyboardInterrupt
    return {"model": str(result.final_model), "run": str(out / "run")}


def _rm(pipe: Pipeline, stage: Stage, config: dict, current: Mapping, out: Path) -> dict[str, Any]:
    from rewardkit.config import build
    from rewardkit.rl.reward_model import RewardModelConfig, train_reward_model

    config = {
        "model": _need(config.get("model", current["model"]), "model", stage),
        "data": _need(config.get("data", current["data"]), "data", stage),
        **config,
        "output_dir": str(out),
    }
    summary = train_reward_model(build(RewardModelConfig, config, where=f"stage {stage.name}"))
    return {"reward_model": summary["model"], "run": str(out)}


def _sample(pipe: Pipeline, stage: Stage, config: dict, current: Mapping, out: Path) -> dict[str, Any]:
    from rewardkit.eval import EvalConfig
    from rewardkit.eval import evaluate as run_eval
    from rewardkit.eval.suite import Overrides

    spec = stage.spec
    overrides = Overrides(
        n=spec.get("n"), temperature=spec.get("temperature"), max_tokens=spec.get("max_tokens")
    )
    suite = _suite(spec["suite"], overrides)
    model = _need(config.get("model", current["model"]), "model", stage)
    run_eval(EvalConfig(model=str(model), output_dir=str(out), resume=True, progress=False), suite)
    return {"run": str(out)}


def _pairs(pipe: Pipeline, stage: Stage, config: dict, current: Mapping, out: Path) -> dict[str, Any]:
    from rewardkit.eval.pairs import PairConfig, pairs_from_eval

    run = _need(config.pop("samples", current["samples"]), "samples", stage)
    summary = pairs_from_eval(run, out / "pairs.jsonl", PairConfig(**config))
    _say(f"[pipeline] {stage.name}: {summary['pairs']} pairs from {summary['prompts']} prompts")
    if not summary["pairs"]:
        raise ConfigError(
            f"stage {stage.name}: no pairs ({summary['skipped_prompts']}); sample more or lower min_margin"
        )
    return {"data": str(out / "pairs.jsonl")}


def _reject(pipe: Pipeline, stage: Stage, config: dict, current: Mapping, out: Path) -> dict[str, Any]:
    from rewardkit.eval.reject import RejectConfig, reject_from_eval

    run = _need(config.pop("samples", current["samples"]), "samples", stage)
    summary = reject_from_eval(run, out / "sft.jsonl", RejectConfig(**config))
    _say(f"[pipeline] {stage.name}: kept {summary['kept']} samples")
    return {"data": str(out / "sft.jsonl")}


def _call(pipe: Pipeline, stage: Stage, config: dict, current: Mapping, out: Path) -> dict[str, Any]:
    from rewardkit.imports import import_object

    function = import_object(stage.spec["function"], what=f"stage {stage.name}: function")
    out.mkdir(parents=True, exist_ok=True)
    returned = function(output_dir=str(out), **dict(stage.spec.get("kwargs") or {}))
    if not isinstance(returned, Mapping) or not set(returned) & {"model", "data"}:
        raise ConfigError(
            f"stage {stage.name}: {stage.spec['function']} must return a mapping with model and/or data paths"
        )
    return {k: str(v) for k, v in returned.items() if k in ("model", "data")}


_RUNNERS = {
    "sft": _sft,
    "train": _train,
    "rm": _rm,
    "sample": _sample,
    "pairs": _pairs,
    "reject": _reject,
    "call": _call,
}


def _suite(spec: Any, overrides: Any = None) -> Any:
    from rewardkit.eval.suite import Overrides, load_suite, parse_suite

    overrides = overrides or Overrides()
    if isinstance(spec, Mapping):
        return parse_suite({"name": "pipeline", **spec}, overrides)
    return load_suite(str(spec), overrides)


def _measure(pipe: Pipeline, stage: str, model: str | None) -> None:
    """The suite's pass@1 per environment for the model after ``stage``; the table so far, printed."""
    from rewardkit.eval import EvalConfig
    from rewardkit.eval import evaluate as run_eval

    measures = pipe.state["measures"]
    if model is None or any(m["stage"] == stage for m in measures):
        _print_table(pipe)
        return
    out = pipe.output_dir / stage / "eval"
    summary = run_eval(
        EvalConfig(model=str(model), output_dir=str(out), resume=True, progress=False), _suite(pipe.suite)
    )
    row = {"stage": stage, "model": str(model)}
    row.update({env: float(s["pass_at_k"]["1"]) for env, s in summary["environments"].items()})
    measures.append(row)
    _save_state(pipe)
    _print_table(pipe)


def table(measures: list[dict[str, Any]]) -> str:
    """The measures as a markdown table: a row per stage, a column per environment (pass@1)."""
    envs = [k for k in measures[0] if k not in ("stage", "model")] if measures else []
    lines = ["| after stage | " + " | ".join(envs) + " |", "|---" * (len(envs) + 1) + "|"]
    for m in measures:
        lines.append(f"| {m['stage']} | " + " | ".join(f"{m[e]:.1%}" for e in envs) + " |")
    return "\n".join(lines)


def _print_table(pipe: Pipeline) -> None:
    text = table(pipe.state["measures"])
    (pipe.output_dir / "summary.md").write_text(text + "\n")
    (pipe.output_dir / "summary.json").write_text(json.dumps(pipe.state["measures"], indent=2))
    print(text, flush=True)


def _load_state(pipe: Pipeline, restart_from: str | None) -> dict[str, Any]:
    path = pipe.output_dir / STATE
    state = json.loads(path.read_text()) if path.exists() else {"stages": {}, "measures": []}
    names = [s.name for s in pipe.stages]
    if restart_from is not None:
        if restart_from not in names:
            raise ConfigError(f"--restart-from: no stage {restart_from!r}; stages: {', '.join(names)}")
        again = set(names[names.index(restart_from) :])
        state["stages"] = {k: v for k, v in state["stages"].items() if k not in again}
        state["measures"] = [m for m in state["measures"] if m["stage"] not in again]
        for name in again:  # a training stage would otherwise resume its old run
            _clear(pipe.output_dir / name)
    for stage in pipe.stages:
        done = state["stages"].get(stage.name)
        if done is not None and done["digest"] != stage.digest:
            raise ConfigError(
                f"stage {stage.name} finished with another entry than the file's now; run again with "
                f"--restart-from {stage.name} to redo it and every stage after it"
            )
    return state


def _clear(path: Path) -> None:
    import shutil

    if path.exists():
        shutil.rmtree(path)


def _save_state(pipe: Pipeline) -> None:
    path = pipe.output_dir / STATE
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(pipe.state, indent=2))
    tmp.replace(path)


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "pipeline",
        help="run post-training stages from one YAML (sft -> pairs -> dpo -> grpo, ...), resumable by stage",
        description=(__doc__ or "").split("\n\n")[0],
    )
    p.add_argument("config", help="the pipeline YAML (output_dir, model, suite, stages)")
    p.add_argument("--restart-from", metavar="STAGE", help="run this stage and every later one again")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    run_pipeline(load_pipeline(args.config), args.restart_from)
    return 0
