"""Adapters for the trainers users already run: TRL's GRPOTrainer and verl's reward managers."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from rewardkit.types import Sample, Score

if TYPE_CHECKING:
    from rewardkit.envs.base import Environment


def as_trl_reward_func(
    env: Environment, *, answer_column: str = "answer", info_column: str = "info"
) -> Callable[..., list[float]]:
    """A function TRL's ``GRPOTrainer(reward_funcs=[...])`` accepts.

    TRL calls it as ``f(prompts=..., completions=..., completion_ids=..., **dataset_columns)``;
    completions are strings or lists of chat messages. The dataset column ``answer_column`` becomes
    the gold answer and ``info_column`` (a dict per row) the info. Samples that time out or fail
    score 0.0, and the statuses are counted on ``f.last_statuses`` (and, where TRL passes its
    ``log_metric`` hook, logged as ``<name>/timeout_frac`` etc.) so they are not silent.
    """

    def reward_func(prompts: list[Any], completions: list[Any], **kwargs: Any) -> list[float]:
        answers = kwargs.get(answer_column) or [None] * len(completions)
        infos = kwargs.get(info_column) or [None] * len(completions)
        samples = [
            Sample(c, a, p, i) for c, a, p, i in zip(completions, answers, prompts, infos, strict=False)
        ]
        scores = env.score_batch(samples)
        statuses: dict[str, int] = {}
        for s in scores:
            statuses[s.status] = statuses.get(s.status, 0) + 1
        reward_func.last_statuses = statuses  # type: ignore[attr-defined]
        log_metric = kwargs.get("log_metric")
        if callable(log_metric) and scores:  # TRL >= 1.0 logs these next to the reward curves
            for status in ("timeout", "error", "invalid_input"):
                log_metric(f"{reward_func.__name__}/{status}_frac", statuses.get(status, 0) / len(scores))
        return [s.reward for s in scores]

    reward_func.__name__ = f"rewardkit_{env.name or 'env'}"
    reward_func.last_statuses = {}  # type: ignore[attr-defined]
    return reward_func


VERL_FLAGS = ("timeout", "error", "invalid_input")
"""Statuses reported to verl as ``rewardkit_<status>`` flags (1.0 or 0.0) next to the metrics."""


def verl_result(score: Score) -> dict[str, float]:
    """The dict verl's reward managers read: ``score`` (what verl trains on), every metric under its
    own name, and one ``rewardkit_<status>`` flag per failure status.

    verl logs every key of the dict (``reward_extra_info``), so no key may hide another: a metric
    named ``score`` or like a flag is reported as ``metrics/<name>`` instead.
    """
    flags = {f"rewardkit_{status}": float(score.status == status) for status in VERL_FLAGS}
    reserved = {"score", *flags}
    metrics = {(f"metrics/{k}" if k in reserved else k): v for k, v in score.metrics.items()}
    return {"score": score.reward, **metrics, **flags}


def as_verl_compute_score(env: Environment) -> Callable[..., dict[str, float]]:
    """A function with verl's ``compute_score(data_source, solution_str, ground_truth, extra_info=None, **kwargs)``
    signature, returning ``verl_result`` of the score (see there for the keys).

    verl's reward managers pass their ``reward_kwargs`` on as keywords (its own scorers take
    ``sandbox_fusion_url``, ``concurrent_semaphore``, ``memory_limit_mb``); they are accepted and
    ignored, since the environment's own config sets its sandbox and limits.
    """

    def compute_score(
        data_source: str,
        solution_str: str,
        ground_truth: Any,
        extra_info: dict | None = None,
        **kwargs: Any,
    ) -> dict[str, float]:
        return verl_result(env.score(solution_str, answer=ground_truth, info=extra_info or {}))

    compute_score.__name__ = f"rewardkit_{env.name or 'env'}_compute_score"
    return compute_score
