"""Evaluation suites: which environments, which tasks, how many samples, how to sample, which k.

A suite is a YAML file (the built-in ones live in ``rewardkit/suites/``)::

    name: smoke
    defaults:                 # any per-environment key; an environment's own keys win
      n: 2                    # samples per task
      num_tasks: 4            # first N tasks of the source (omit: all)
      sampling: {temperature: 1.0, max_tokens: 128, seed: 0}
    environments:
      - env: math             # a registered environment name
        config: {levels: [1]} # its load_env(**config)
        tasks: {split: test}  # env.tasks("test") ...
      - env: format
        tasks:                # ... or a "module:function" returning Tasks, with keyword arguments
          generator: rewardkit.demo:demo_tasks
          kwargs: {split: test, n: 4, seed: 0}

Derived defaults (written into the resolved suite, so the fingerprint sees them): ``temperature`` is
0 (greedy) for ``n: 1`` and 1.0 otherwise; ``k`` is 1, 2, 4, ... up to ``n``, plus ``n``. Sampling is
seeded (``seed: 0``) unless the suite says ``seed: null``, so an evaluation is reproducible.
"""

from __future__ import annotations

import dataclasses
import importlib
import importlib.resources
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rewardkit.config import bad_value, build, check_ranges, in_range, load_yaml
from rewardkit.data.tasks import DataConfig, tasks_from
from rewardkit.generation.base import SamplingParams
from rewardkit.types import Task

_SAMPLING_KEYS = ("temperature", "top_p", "top_k", "max_tokens", "stop", "seed")
_ENV_KEYS = (
    "env",
    "label",
    "config",
    "tasks",
    "data",
    "num_tasks",
    "n",
    "k",
    "sampling",
    "batch_tasks",
    "chat",
)
_SUITE_KEYS = ("name", "description", "defaults", "environments")


@dataclass(frozen=True)
class TaskSource:
    """Where an environment's tasks come from: ``env.tasks(split)``, or ``generator(**kwargs)``."""

    split: str = "test"
    """Split passed to ``env.tasks`` (ignored when ``generator`` is set)."""
    generator: str | None = None
    """``"package.module:function"`` returning a list of ``Task`` (or dicts with Task's fields)."""
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    """Keyword arguments for ``generator``."""

    data: DataConfig | None = None
    """Your own tasks from a file or dataset (``rewardkit.data.tasks.DataConfig``); wins over ``split``."""

    def load(self, env: Any) -> list[Task]:
        hint = (
            "give its tasks with `--data FILE.jsonl` or `--tasks module:function` with --envs, or "
            "`data: {path: FILE.jsonl}` / `tasks: {generator: module:function}` in a suite file"
        )
        return tasks_from(self.data, self.generator, self.kwargs, lambda: env.tasks(self.split), hint)


@dataclass(frozen=True)
class EnvEval:
    """One environment of a suite, fully resolved."""

    env: str
    """Registered environment name (``rewardkit envs``)."""
    label: str
    """Name in the report and in ``rollouts.jsonl``; unique within the suite (default: ``env``)."""
    config: Mapping[str, Any]
    """Keyword config for ``load_env``."""
    tasks: TaskSource
    """Where the tasks come from."""
    num_tasks: int | None
    """Evaluate the first ``num_tasks`` tasks of the source; None: all of them."""
    n: int
    """Samples per task."""
    k: tuple[int, ...]
    """pass@k is reported for each k (each <= n)."""
    sampling: SamplingParams
    """How to sample (its ``n`` is ignored: ``EnvEval.n`` is used)."""
    batch_tasks: int
    """Tasks per generation call: the unit of generation, of seeding (seed + chunk index) and of
    progress that a resumed run keeps."""
    chat: bool = False
    """Send plain-text prompts as one user message, through the tokenizer's chat template (instruct
    models); False sends them as they are (base models, and what training does)."""

    def __post_init__(self) -> None:
        where = f"suite environment {self.label!r}"
        check_ranges(self, {"n": ">= 1", "num_tasks": ">= 1", "batch_tasks": ">= 1"}, where=where)
        if not self.k or not all(in_range(k, f"[1, {self.n}]") for k in self.k):
            raise bad_value(where, "k", list(self.k), f"values in [1, n={self.n}] (pass@k of the n samples)")

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["sampling"].pop("n")
        out["sampling"]["stop"] = list(self.sampling.stop)
        out["k"] = list(self.k)
        return out


@dataclass(frozen=True)
class Suite:
    """A named list of environments to evaluate."""

    name: str
    environments: tuple[EnvEval, ...]
    description: str = ""

    def __post_init__(self) -> None:
        labels = [e.label for e in self.environments]
        if not labels:
            raise ValueError(f"suite {self.name!r} lists no environments")
        if len(set(labels)) != len(labels):
            raise ValueError(f"suite {self.name!r}: environment labels must be unique, got {labels}")

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "description": self.description,
            "environments": {e.label: e.to_dict() for e in self.environments},
        }


@dataclass(frozen=True)
class Overrides:
    """Command-line settings that replace a suite's, in every environment (None: keep the suite's)."""

    n: int | None = None
    """Samples per task."""
    k: tuple[int, ...] | None = None
    """The k values of pass@k, each <= n (comma-separated on the command line: 1,2,4)."""
    num_tasks: int | None = None
    """Evaluate only the first N tasks of each environment."""
    batch_tasks: int | None = None
    """Tasks per generation call (the unit of resumption)."""
    chat: bool | None = None
    """Send plain-text prompts through the tokenizer's chat template (instruct models); False: as they are."""
    temperature: float | None = None
    """Sampling temperature (0: greedy)."""
    top_p: float | None = None
    """Nucleus sampling: keep the smallest set of tokens whose probability reaches this (1.0: all)."""
    max_tokens: int | None = None
    """Most new tokens per generation (per turn in multi-turn environments)."""
    seed: int | None = None
    """Sampling seed; each generation call uses seed + its chunk index."""

    def __post_init__(self) -> None:
        where = "eval overrides"
        ranges = {"n": ">= 1", "num_tasks": ">= 1", "batch_tasks": ">= 1", "temperature": ">= 0"}
        check_ranges(self, ranges | {"top_p": "(0, 1]", "max_tokens": ">= 1"}, where=where)
        if self.k is not None:
            if not self.k or not all(in_range(k, ">= 1") for k in self.k):
                raise bad_value(where, "k", list(self.k), "one or more values >= 1, e.g. 1,2,4")
            if self.n is not None and max(self.k) > self.n:
                expected = f"values <= n={self.n} (pass@k needs k of the n samples)"
                raise bad_value(where, "k", list(self.k), expected)

    def apply(self, raw: dict[str, Any]) -> dict[str, Any]:
        """Overlay these settings on one environment's raw (unresolved) entry."""
        out = dict(raw)
        for key in ("n", "k", "num_tasks", "batch_tasks", "chat"):
            if getattr(self, key) is not None:
                out[key] = getattr(self, key)
        sampling = dict(out.get("sampling") or {})
        for key in ("temperature", "top_p", "max_tokens", "seed"):
            if getattr(self, key) is not None:
                sampling[key] = getattr(self, key)
        out["sampling"] = sampling
        return out


def builtin_suites() -> list[str]:
    root = importlib.resources.files("rewardkit").joinpath("suites")
    return sorted(p.name.rsplit(".", 1)[0] for p in root.iterdir() if p.name.endswith(".yaml"))


def load_suite(name_or_file: str, overrides: Overrides = Overrides()) -> Suite:
    """A built-in suite by name, or a suite YAML file, with command-line overrides applied."""
    path = Path(name_or_file)
    if path.suffix in (".yaml", ".yml") or path.is_file():
        if not path.is_file():
            raise FileNotFoundError(f"suite file {name_or_file} does not exist")
        text = path.read_text()
    elif name_or_file in builtin_suites():
        text = importlib.resources.files("rewardkit").joinpath(f"suites/{name_or_file}.yaml").read_text()
    else:
        raise ValueError(
            f"unknown suite {name_or_file!r}: built-in suites are {builtin_suites()}, or give a YAML file"
        )
    raw = load_yaml(text)
    if not isinstance(raw, dict):
        raise ValueError(f"suite {name_or_file}: expected a mapping at the top level")
    raw.setdefault("name", path.stem)
    return parse_suite(raw, overrides)


def adhoc_suite(envs: Sequence[str], tasks: Mapping[str, Any], overrides: Overrides = Overrides()) -> Suite:
    """The suite behind ``--envs a,b``: each environment with the same task source and defaults."""
    raw = {
        "name": "adhoc:" + ",".join(envs),
        "environments": [{"env": e, "tasks": dict(tasks)} for e in envs],
    }
    return parse_suite(raw, overrides)


def parse_suite(raw: Mapping[str, Any], overrides: Overrides = Overrides()) -> Suite:
    _check_keys(raw, _SUITE_KEYS, "suite")
    defaults = dict(raw.get("defaults") or {})
    _check_keys(defaults, _ENV_KEYS, "suite defaults")
    entries = raw.get("environments")
    if not isinstance(entries, list):
        raise ValueError("a suite needs `environments:`, a list of {env: NAME, ...} entries")
    resolved = []
    for entry in entries:
        if not isinstance(entry, dict) or "env" not in entry:
            raise ValueError(f"each suite environment needs an `env:` name, got {entry!r}")
        _check_keys(entry, _ENV_KEYS, f"environment {entry['env']!r}")
        merged = defaults | entry
        merged["sampling"] = dict(defaults.get("sampling") or {}) | dict(entry.get("sampling") or {})
        resolved.append(_resolve_env(overrides.apply(merged)))
    return Suite(str(raw["name"]), tuple(resolved), str(raw.get("description") or ""))


def _resolve_env(raw: Mapping[str, Any]) -> EnvEval:
    label = str(raw.get("label") or raw["env"])
    n = int(raw.get("n", 1))
    sampling_raw = dict(raw.get("sampling") or {})
    _check_keys(sampling_raw, _SAMPLING_KEYS, f"{label} sampling")
    sampling_raw.setdefault("temperature", 0.0 if n == 1 else 1.0)
    sampling_raw.setdefault("seed", 0)
    sampling_raw["stop"] = tuple(sampling_raw.get("stop") or ())
    tasks_raw = raw.get("tasks") or {}
    if isinstance(tasks_raw, str):  # shorthand: a split name or a module:function
        tasks_raw = {"generator": tasks_raw} if ":" in tasks_raw else {"split": tasks_raw}
    _check_keys(tasks_raw, ("split", "generator", "kwargs", "data"), f"{label} tasks")
    tasks_raw = dict(tasks_raw)
    data_raw = raw.get("data", tasks_raw.get("data"))  # `data:` beside `tasks:`, or under it
    if data_raw is not None:
        data_raw = {"path": data_raw} if isinstance(data_raw, str) else data_raw
        tasks_raw["data"] = build(DataConfig, data_raw, where=f"{label} data")
    k = raw.get("k")
    return EnvEval(
        env=str(raw["env"]),
        label=label,
        config=dict(raw.get("config") or {}),
        tasks=TaskSource(**{"kwargs": {}, **tasks_raw}),
        num_tasks=raw.get("num_tasks"),
        n=n,
        k=tuple(int(x) for x in k) if k is not None else default_ks(n),
        sampling=SamplingParams(n=1, **sampling_raw),
        batch_tasks=int(raw.get("batch_tasks", 64)),
        chat=bool(raw.get("chat", False)),
    )


def env_tasks(env: str, split: str = "test", config: Mapping[str, Any] | None = None) -> list[Task]:
    """Another environment's tasks, for an environment that has none of its own (e.g. ``format``)."""
    from rewardkit.registry import load_env

    with load_env(env, **dict(config or {})) as source:
        return list(source.tasks(split))


def default_ks(n: int) -> tuple[int, ...]:
    """1, 2, 4, ... below ``n``, then ``n``."""
    ks = [k for k in (2**i for i in range(n.bit_length())) if k < n]
    return (*ks, n)


def _check_keys(mapping: Mapping[str, Any], allowed: Sequence[str], where: str) -> None:
    if not isinstance(mapping, Mapping):
        raise ValueError(f"{where}: expected a mapping, got {mapping!r}")
    unknown = sorted(set(mapping) - set(allowed))
    if unknown:
        raise ValueError(f"{where}: unknown key(s) {unknown}; allowed: {list(allowed)}")


__all__ = [
    "EnvEval",
    "Overrides",
    "Suite",
    "TaskSource",
    "adhoc_suite",
    "builtin_suites",
    "default_ks",
    "env_tasks",
    "load_suite",
    "parse_suite",
]
