"""``check_env``: the conformance check every environment, built-in or plugin, must pass."""

from __future__ import annotations

from typing import Any

import cloudpickle

from rewardkit.envs.base import Environment
from rewardkit.envs.probes import run_probes
from rewardkit.types import Score, Task

BAD_INPUTS: tuple[Any, ...] = (None, b"bytes", 42, "\ud800 broken", [], [{"role": 3}], {"role": "user"})


class EnvCheckError(AssertionError):
    """Raised by ``check_env`` with every problem found, one per line."""


def check_env(env: Environment, *, require_gold: bool = True) -> dict[str, Any]:
    """Check that ``env`` implements the interface and that its own gold examples score as passing.

    Checks: it is an ``Environment`` with a name and a ``verify``; it survives pickling (scoring runs in
    worker processes); each gold example scores ``pass_threshold`` or more with status ``ok``;
    ``score_batch`` keeps order and length; bad inputs give ``invalid_input`` instead of raising; and
    ``tasks()``, where provided, yields ``Task`` objects; each of its exploit probes scores at most its
    bound (docs/hacking.md). Returns a small report; raises
    ``EnvCheckError`` listing every problem.
    """
    problems: list[str] = []
    if not isinstance(env, Environment):
        raise EnvCheckError(f"{env!r} is not a rewardkit.Environment")
    if not isinstance(env.name, str) or not env.name:
        problems.append("env.name must be a non-empty string")
    if type(env).verify is Environment.verify:
        problems.append("verify() is not implemented")
    try:
        cloudpickle.loads(cloudpickle.dumps(env))
    except Exception as exc:
        problems.append(f"environment cannot be pickled for worker processes: {exc}")

    gold = env.gold_examples()
    if require_gold and not gold:
        problems.append("gold_examples() is empty: ship a few samples that must score as passing")
    scores = env.score_batch(gold)
    for i, (sample, score) in enumerate(zip(gold, scores)):
        if not isinstance(score, Score):
            problems.append(f"gold example {i} returned {type(score).__name__}, not a Score")
        elif score.status != "ok" or score.reward < env.pass_threshold:
            problems.append(
                f"gold example {i} scored {score.reward} (status {score.status}, "
                f"{score.info.get('reason', '')}) below pass_threshold {env.pass_threshold}: {str(sample)[:200]}"
            )

    bad = env.score_batch([{"completion": x} for x in BAD_INPUTS])
    for x, score in zip(BAD_INPUTS, bad):
        if score.status != "invalid_input" or score.reward != 0.0:
            problems.append(
                f"bad input {x!r} gave status {score.status} reward {score.reward}, not invalid_input 0.0"
            )
    if len(bad) != len(BAD_INPUTS):
        problems.append("score_batch did not return one Score per sample")

    n_tasks = _check_tasks(env, problems)
    n_probes = _check_probes(env, problems)
    if problems:
        raise EnvCheckError(f"{env.name or type(env).__name__} fails check_env:\n- " + "\n- ".join(problems))
    return {"name": env.name, "gold_examples": len(gold), "tasks_checked": n_tasks, "probes": n_probes}


def _check_probes(env: Environment, problems: list[str]) -> int:
    try:
        results = run_probes(env)
    except (TypeError, ValueError) as exc:
        problems.append(f"exploit_probes(): {exc}")
        return 0
    for r in results:
        if not r.within_bound:
            problems.append(
                f"exploit probe {r.probe.name!r} ({r.probe.family}) scored {r.score.reward} over its bound "
                f"{r.probe.bound}: {r.probe.why}"
            )
    return len(results)


def _check_tasks(env: Environment, problems: list[str]) -> int:
    try:
        tasks = env.tasks("train")
    except NotImplementedError:
        return 0
    except Exception as exc:
        problems.append(f"tasks('train') raised {type(exc).__name__}: {exc}")
        return 0
    checked = 0
    for task in tasks:
        if not isinstance(task, Task):
            problems.append(f"tasks() yielded a {type(task).__name__}, not a Task")
            break
        checked += 1
        if checked >= 5:
            break
    return checked
