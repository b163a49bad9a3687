"""The Environment: the spec a reward plugin writes.

A subclass says *what* to check (``verify``) and, where it has them, its tasks (``tasks``), samples
that must pass (``gold_examples``) and, for multi-turn episodes, how it answers the policy
(``initial_state``, ``env_response``). Everything a plugin author should not have to get right again
lives elsewhere: the scoring runtime (validation, worker processes with hard timeouts, the verdict
cache) in ``rewardkit.scoring``, the episode loop in ``rewardkit.envs.rollout``, the TRL and verl
adapters in ``rewardkit.interop``. ``score``, ``score_batch``, ``rollout`` and the adapters stay here
as one-line entry points, so ``load_env(name).score(...)`` is all a user calls.

Configuration follows one pattern for every environment: its own options are the fields of a frozen
dataclass named by ``Config`` (a docstring on each field is its documentation), the scoring options
are ``rewardkit.scoring.ScoringConfig``'s, and ``load_env(name, **options)`` takes both. A key that is
neither, or a value of the wrong kind, raises at ``load_env`` naming the key and what is allowed.
"""

from __future__ import annotations

import dataclasses
import re
import threading
from collections.abc import Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from rewardkit.config import ConfigError, build, suggest
from rewardkit.scoring import Scorer, ScoringConfig
from rewardkit.types import Completion, Message, Sample, Score, Task, Trajectory

if TYPE_CHECKING:
    from rewardkit.envs.probes import Probe
    from rewardkit.generation.base import Generator, SamplingParams

_SCORER_LOCK = threading.Lock()
_PATTERNS: dict[type, dict[str, re.Pattern[str]]] = {}


class UnknownOptionError(ConfigError, TypeError):
    """``load_env`` got a keyword the environment does not take (a TypeError too, as Python's own is)."""


@dataclass(frozen=True)
class EnvStep:
    """The environment's answer to one policy turn."""

    messages: tuple[Message, ...] = ()
    """Messages to append before the policy's next turn (e.g. tool results, "higher"/"lower")."""
    done: bool = False
    """End the episode now (a final answer was given, the game is over)."""
    reward: float | None = None
    """Optional per-turn reward, recorded in ``Trajectory.turn_rewards``."""
    info: dict[str, Any] = field(default_factory=dict)
    """The environment's account of the episode so far (merged into ``Trajectory.info``)."""


class Environment:
    """Base class of every reward environment. Override ``verify``; the rest is optional.

    Class attributes a subclass may set: ``name`` (the registry name), ``Config`` (a frozen dataclass
    of its own options, built from ``load_env``'s keywords into ``self.config``), ``max_turns`` and
    ``max_total_tokens`` (multi-turn episodes), ``pass_threshold`` (the reward that counts as a pass
    for pass@k and ``check_env``), ``correctness_metric`` (the metric saying the answer is right). ``self.scoring`` holds the scoring runtime's options.
    """

    name: ClassVar[str] = ""
    Config: ClassVar[type | None] = None
    """A frozen dataclass of the environment's own options (None: it has none)."""
    max_turns: ClassVar[int] = 1
    max_total_tokens: int | None = None
    response_workers: int = 1
    """Threads answering the episodes of one turn at once (``env_response``, multi-turn): 1 answers them
    one after another. More suits an environment whose replies wait on I/O (tools, sandboxes); its
    ``env_response`` must then be safe to call from several threads for different episodes."""
    pass_threshold: float = 1.0
    """A sample counts as passed (for pass@k) when its reward reaches this value."""
    correctness_metric: ClassVar[str | None] = None
    """The Score metric that says whether the answer is right (1/0), when the reward is more than that
    (partial credit, format bonuses): dynamic sampling's ``auto`` filters groups on it, as DAPO filters on
    accuracy. None: ``correct`` when a Score has it, else the reward."""

    def __init__(self, **options: Any) -> None:
        """Build ``self.config`` from the ``Config`` fields in ``options`` and ``self.scoring`` from the rest."""
        self.config, self.scoring = _configure(type(self), options)
        self._scorer: Scorer | None = None

    @classmethod
    def scoring_defaults(cls, config: Any) -> Mapping[str, Any]:
        """Scoring options this environment wants unless the caller sets them (e.g. ``executor``)."""
        return {}

    # ---- the spec: what subclasses implement ---------------------------------------------------------
    def verify(
        self, completion: Completion, *, answer: Any, prompt: Any, info: Mapping[str, Any]
    ) -> Score | float:
        """Score one validated completion (a str or a tuple of message dicts) against ``answer``.

        Runs in a scoring worker. Return a float or a Score; raising gives the sample status
        ``error``. ``info`` is the sample's info; for a rollout it holds ``info["episode"]``, the
        episode's ``Trajectory.info``.
        """
        raise NotImplementedError(f"{type(self).__name__} must implement verify()")

    def cache_key(
        self, completion: Completion, *, answer: Any, prompt: Any, info: Mapping[str, Any]
    ) -> Hashable | None:
        """A key under which equal samples share one verdict (computed in the caller's process), or None."""
        return None

    def gold_examples(self) -> list[dict[str, Any]]:
        """Samples (``completion``, ``answer``, ``prompt``, ``info``) that must score ``pass_threshold`` or more."""
        return []

    def exploit_probes(self) -> list[Probe]:
        """Completions written to game this environment, each with the most it may score (docs/hacking.md).

        ``check_env`` fails when one scores over its bound; ``rewardkit audit`` prints them all.
        """
        return []

    exploit_patterns: ClassVar[Mapping[str, str]] = {}
    """Exploit signatures watched during training: name -> regular expression searched in what the policy
    wrote (a plain completion, or its assistant messages joined). The trainer logs the fraction of
    completions matching each as ``exploit/<name>`` and warns when it rises (``rewardkit.rl.monitor``).
    Override ``exploit_signals`` for signatures a pattern cannot express."""

    def exploit_signals(self, completions: Sequence[Completion]) -> dict[str, float]:
        """The fraction of ``completions`` showing each exploit signature (``exploit_patterns``)."""
        if not completions or not self.exploit_patterns:
            return {}
        texts = [policy_text(c) for c in completions]
        compiled = _compiled_patterns(type(self))
        return {name: sum(bool(rx.search(t)) for t in texts) / len(texts) for name, rx in compiled.items()}

    def suspicious(self, sample: Mapping[str, Any], score: Score) -> str | None:
        """An independent check of a high-scoring sample: why it looks like a hack, or None.

        ``rewardkit audit --model`` runs it on the completions that reach ``pass_threshold``: the verdict
        is right by the environment's rule but the answer fails a second, separate test (math: the
        tagged answer is not the last number of the reasoning).
        """
        return None

    def tasks(self, split: str = "train") -> Sequence[Task]:
        """The environment's dataset for a split."""
        raise NotImplementedError(f"environment {self.name or type(self).__name__!r} has no built-in dataset")

    def initial_state(self, task: Task) -> dict[str, Any]:
        """Per-episode state handed to ``env_response`` (one fresh state per sampled episode)."""
        return {"task": task}

    def env_response(self, messages: list[Message], state: dict[str, Any]) -> EnvStep:
        """Answer the policy's latest turn (``messages[-1]``). The default ends the episode: single turn."""
        return EnvStep(done=True)

    # ---- entry points (provided) ------------------------------------------------------------------
    def score(self, completion: Any, *, answer: Any = None, prompt: Any = None, info: Any = None) -> Score:
        """Score one completion. Never raises on bad input: see ``Score.info["status"]``."""
        return self.score_batch([Sample(completion, answer, prompt, info)])[0]

    def score_batch(self, samples: Iterable[Any]) -> list[Score]:
        """Score ``Sample``s (or dicts with their keys) in parallel, each with its own timeout, in order."""
        return self.scorer.score_batch(samples)

    async def ascore(
        self, completion: Any, *, answer: Any = None, prompt: Any = None, info: Any = None
    ) -> Score:
        """``score`` for asyncio code: the event loop is never blocked by verification."""
        import asyncio

        (future,) = self.scorer.submit([Sample(completion, answer, prompt, info)])
        return await asyncio.wrap_future(future)

    def rollout(
        self,
        generator: Generator,
        tasks: Sequence[Task],
        *,
        n: int = 1,
        sampling: SamplingParams | None = None,
    ) -> list[Trajectory]:
        """Run ``n`` episodes per task with ``generator``: ``len(tasks) * n`` trajectories, grouped by task."""
        from rewardkit.envs.rollout import run_episodes

        return run_episodes(self, generator, tasks, n=n, sampling=sampling)

    def as_trl_reward_func(self, **kwargs: Any) -> Any:
        """``rewardkit.interop.as_trl_reward_func(self, ...)``."""
        from rewardkit.interop import as_trl_reward_func

        return as_trl_reward_func(self, **kwargs)

    def as_verl_compute_score(self) -> Any:
        """``rewardkit.interop.as_verl_compute_score(self)``."""
        from rewardkit.interop import as_verl_compute_score

        return as_verl_compute_score(self)

    @property
    def scorer(self) -> Scorer:
        """The scoring runtime of this environment in this process, started on first use."""
        if self._scorer is None:
            with _SCORER_LOCK:  # two threads' first calls must not start two worker pools
                if self._scorer is None:
                    self._scorer = Scorer(self)
        return self._scorer

    def close(self) -> None:
        """Stop the scoring workers (also happens at interpreter exit)."""
        scorer, self._scorer = self._scorer, None
        if scorer is not None:
            scorer.close()

    def __enter__(self) -> Environment:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __getstate__(self) -> dict[str, Any]:
        """Environments travel to scoring workers; the runtime does not (each process starts its own)."""
        return {**self.__dict__, "_scorer": None}

    def __repr__(self) -> str:
        return f"<{type(self).__name__} name={self.name!r}>"


def _configure(cls: type[Environment], options: Mapping[str, Any]) -> tuple[Any, ScoringConfig]:
    """Split ``load_env`` keywords into the environment's ``Config`` and the ``ScoringConfig``."""
    where = f"environment {cls.name or cls.__name__!r}"
    scoring_keys = {f.name for f in dataclasses.fields(ScoringConfig)}
    own_keys = {f.name for f in dataclasses.fields(cls.Config)} if cls.Config is not None else set()
    if clash := own_keys & scoring_keys:
        raise TypeError(f"{cls.__name__}.Config redefines scoring option(s) {sorted(clash)}")
    unknown = sorted(set(options) - own_keys - scoring_keys)
    if unknown:  # one message listing both kinds of option
        hint = suggest(unknown[0], own_keys | scoring_keys)
        raise UnknownOptionError(
            f"{where}: unknown option(s) {unknown}{hint}; its options: {sorted(own_keys) or 'none'}; "
            f"scoring options: {sorted(scoring_keys)}"
        )
    config = (
        build(cls.Config, {k: v for k, v in options.items() if k in own_keys}, where=where)
        if cls.Config
        else None
    )
    given = {k: v for k, v in options.items() if k in scoring_keys}
    scoring = build(ScoringConfig, {**cls.scoring_defaults(config), **given}, where=f"{where} scoring")
    return config, scoring


def _compiled_patterns(cls: type[Environment]) -> dict[str, re.Pattern[str]]:
    if cls not in _PATTERNS:
        try:
            _PATTERNS[cls] = {name: re.compile(rx) for name, rx in cls.exploit_patterns.items()}
        except re.error as exc:
            raise ValueError(
                f"{cls.__name__}.exploit_patterns holds a bad regular expression: {exc}"
            ) from exc
    return _PATTERNS[cls]


def policy_text(completion: Completion) -> str:
    """What the policy wrote: a plain completion, or its assistant messages' contents and tool calls."""
    if isinstance(completion, str):
        return completion
    parts = []
    for message in completion:
        if isinstance(message, Mapping) and message.get("role") == "assistant":
            parts.append(str(message.get("content") or ""))
            if message.get("tool_calls"):
                parts.append(str(message["tool_calls"]))
    return "\n".join(parts)
