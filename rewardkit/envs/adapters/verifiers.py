"""``verifiers:<module>``: a Prime Intellect ``verifiers`` environment as a rewardkit environment, and back.

Written for verifiers 0.4 (the ``verifiers.v1`` stack: ``Taskset``/``Task`` with ``@vf.reward`` and
``@vf.metric`` methods, ``Env.run(task, agents)`` for multi-turn episodes). ``<module>`` is an importable
module name or a ``.py`` path. It provides the environment in one of two ways:

- ``load_environment(**env_args)``, defined in the module, returning a ``vf.Taskset`` (single turn) or a
  ``vf.Env`` (its taskset, and its ``run`` when it is not the single-agent one);
- verifiers' own plugin convention: ``__all__`` exports a ``Taskset`` subclass (and optionally an ``Env``
  subclass); ``env_args`` are then the taskset's config fields and ``env_config`` the Env's.

What maps to what:

- ``tasks(split)``: the taskset's tasks, the prompt as chat messages built as verifiers' chat harness
  builds them (the task's ``system_prompt`` as a system message, then the prompt: a str as one user
  message, a message list, few-shot turns included, as it is). ``split_args[split]`` is merged into
  ``env_args`` for a split other than ``train``; tasksets have no splits of their own.
- ``verify``: the task's own scoring (``Task.score`` on a ``vf.Trace`` built from the prompt and the
  completion): the reward is the trace's weighted sum ``sum(score * weight)``, every reward function's
  unweighted score and every ``@vf.metric`` is a metric. A reward function that raises makes the
  sample's status ``error`` (verifiers' ``TaskError`` propagates), never a silent 0.
- multi-turn (``Env.run`` other than ``SingleAgentEnv``'s): the Env's own ``run`` coroutine drives the
  episode. It runs on a private event loop per episode; ``agents.<seat>.interaction(task)`` yields an
  interaction whose ``turn(message)`` hands ``message`` to rewardkit's episode loop as the environment's
  reply (``env_response``) and returns the policy's next turn as a ``Segment``. ``verify`` replays the
  completion's policy turns through a fresh ``run`` and scores the replayed trace (rewards ``run``
  records with ``trace.record_reward`` included): a completion whose environment messages are not what
  ``run`` says scores 0 (``rejected``).

``to_verifiers(env)`` goes the other way: a ``vf.Taskset`` of the rewardkit environment's tasks whose
task rubric is one ``@vf.reward`` calling rewardkit's scoring (and a ``@vf.metric`` per Score metric).
See docs/interop.md for what is not supported.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import math
import sys
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from rewardkit.config import check_ranges
from rewardkit.envs.base import Environment, EnvStep
from rewardkit.types import Completion, Message, Score, Task

__all__ = ["VerifiersConfig", "VerifiersEnv", "load", "to_verifiers"]

WHERE = "environment 'verifiers'"
DEFAULT_MULTI_TURN_MAX_TURNS = 8
_TERMINATED = object()
"""Sent to a waiting ``turn()`` when rewardkit's loop ends the episode (``max_turns``)."""


@dataclass(frozen=True)
class VerifiersConfig:
    """Options of ``load_env("verifiers:<module>", ...)``; the rest are scoring options."""

    env_args: Mapping[str, Any] = field(default_factory=dict)
    """Keywords of the module's ``load_environment(**env_args)``, or its taskset's config fields."""
    env_config: Mapping[str, Any] = field(default_factory=dict)
    """Fields of the verifiers ``EnvConfig`` (env knobs of a multi-turn ``Env``; plugin convention only)."""
    split_args: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    """Per split other than ``train``: ``env_args`` overrides (``{"test": {"split": "test"}}``)."""
    max_tasks: int | None = 1000
    """Tasks read per split (a verifiers taskset may be infinite); None reads them all."""
    max_turns: int | None = None
    """Policy turns of a multi-turn episode (None: the seat's ``max_turns``, else 8)."""
    pass_threshold: float = 1.0
    """The weighted reward that counts as a pass (pass@k, ``check_env``'s gold examples)."""
    gold: tuple[Mapping[str, Any], ...] = ()
    """Samples that must pass, each ``{"task": <index in tasks('train')>, "completion": ...}`` (verifiers
    has no gold examples of its own)."""

    def __post_init__(self) -> None:
        check_ranges(self, {"max_tasks": ">= 1", "max_turns": ">= 1"}, where=WHERE)


def load(module: str, **config: Any) -> VerifiersEnv:
    """The ``verifiers`` family's factory: ``load_env("verifiers:<module>", **config)``."""
    return VerifiersEnv(module, **config)


class VerifiersEnv(Environment):
    """A verifiers taskset (and its Env's turn logic) under rewardkit's rollout and scoring."""

    Config = VerifiersConfig

    def __init__(self, module: str, **options: Any) -> None:
        super().__init__(**options)
        self.module = module
        self.name = f"verifiers:{module}"  # type: ignore[misc]
        self.pass_threshold = self.config.pass_threshold
        self._splits: dict[str, _Loaded] = {}
        self._tasks: dict[str, list[Task]] = {}
        self._lock = threading.RLock()
        loaded = self._loaded("train")  # a bad module or option fails at load_env
        if loaded.multi_turn:
            seat = loaded.seat_max_turns
            self.max_turns = self.config.max_turns or seat or DEFAULT_MULTI_TURN_MAX_TURNS  # type: ignore[misc]

    def __getstate__(self) -> dict[str, Any]:
        state = super().__getstate__()
        state["_splits"], state["_tasks"] = {}, {}  # rebuilt in each process from (module, config)
        state["_lock"] = None
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        """Import verifiers and the module when the environment arrives in a scoring worker, before any
        job's clock starts (importing verifiers takes seconds on a loaded machine)."""
        self.__dict__.update(state)
        self._lock = threading.RLock()
        try:
            self._loaded("train")
        except Exception:  # noqa: BLE001 - verify() loads again and reports the failure per sample
            self._splits.clear()

    # ---- loading ------------------------------------------------------------------------------------
    def _loaded(self, split: str) -> _Loaded:
        with self._lock:
            if split not in self._splits:
                if split != "train" and split not in self.config.split_args:
                    raise ValueError(
                        f"{self.name}: no split {split!r}; a verifiers taskset has one stream of tasks: "
                        f"'train', and the splits named in split_args ({sorted(self.config.split_args)})"
                    )
                args = {**self.config.env_args, **self.config.split_args.get(split, {})}
                self._splits[split] = _load_vf(self.module, args, dict(self.config.env_config))
            return self._splits[split]

    # ---- data ---------------------------------------------------------------------------------------
    def tasks(self, split: str = "train") -> Sequence[Task]:
        if split not in self._tasks:
            loaded = self._loaded(split)
            view = (
                loaded.taskset
                if self.config.max_tasks is None
                else loaded.taskset.take(self.config.max_tasks)
            )
            if not loaded.taskset.bounded and self.config.max_tasks is None:
                raise ValueError(f"{self.name}: the taskset is infinite; set max_tasks")
            self._tasks[split] = [_to_task(vf_task, split) for vf_task in view]
        return self._tasks[split]

    def gold_examples(self) -> list[dict[str, Any]]:
        tasks = self.tasks("train") if self.config.gold else []
        return [
            {"completion": entry["completion"], "answer": t.answer, "prompt": t.prompt, "info": t.info}
            for entry in self.config.gold
            for t in (tasks[int(entry["task"])],)
        ]

    # ---- turns --------------------------------------------------------------------------------------
    def initial_state(self, task: Task) -> dict[str, Any]:
        loaded = self._loaded(_split_of(task))
        if not loaded.multi_turn:
            return {"task": task}
        exchange = _Exchange(loaded, self._vf_task(task), _prompt_messages(task))
        return {"task": task, "exchange": exchange, "opening": exchange.start()}

    def env_response(self, messages: list[Message], state: dict[str, Any]) -> EnvStep:
        exchange: _Exchange | None = state.get("exchange")
        if exchange is None:
            return EnvStep(done=True)
        opening = state.pop("opening", None)
        if opening is not None:  # run() failed or ended before it let the policy speak
            exchange.close()
            return EnvStep(done=True, info=opening)
        last_turn = sum(m.get("role") == "assistant" for m in messages) >= self.max_turns
        ask = exchange.answer(messages[-1])
        if ask is None:  # run() ended the episode
            return EnvStep(done=True, info=exchange.outcome())
        if last_turn:  # rewardkit's loop stops here: tell run() the exchange is over, as verifiers would
            exchange.terminate()
            return EnvStep(messages=tuple(ask), info=exchange.outcome())
        return EnvStep(messages=tuple(ask), info={"vf_turns": exchange.trace.num_turns})

    # ---- scoring ------------------------------------------------------------------------------------
    def verify(self, completion: Completion, *, answer: Any, prompt: Any, info: Mapping[str, Any]) -> Score:
        if not isinstance(info.get("verifiers"), Mapping):
            return Score.failure("invalid_input", "a verifiers sample needs its task's info['verifiers']")
        loaded = self._loaded(_split_of_info(info))
        vf_task = self._vf_task_from_info(info["verifiers"])
        unsupported = _runtime_hooks(vf_task)
        if unsupported:
            return Score.failure("error", f"reward/metric functions need a sandbox runtime: {unsupported}")
        turns = (
            [dict(m) for m in completion]
            if not isinstance(completion, str)
            else [{"role": "assistant", "content": completion}]
        )
        base = _prompt_messages_of(vf_task)
        if loaded.multi_turn:
            trace, rejected = _off_loop(_replay, loaded, vf_task, base, turns)
            if rejected:
                return Score.ok(0.0, {"rejected": 1.0}, reason=rejected)
        else:
            trace = _new_trace(vf_task, [*base, *turns])
        _off_loop(asyncio.run, vf_task.score(trace))
        return _to_score(trace)

    def _vf_task(self, task: Task) -> Any:
        return self._vf_task_from_info(task.info["verifiers"])

    def _vf_task_from_info(self, ref: Mapping[str, Any]) -> Any:
        loaded = self._loaded(ref.get("split", "train"))
        return loaded.rebuild(ref)


# ---- loading verifiers objects ------------------------------------------------------------------------
@dataclass
class _Loaded:
    """One split's verifiers objects: the taskset, the Env (None: single turn) and the task classes."""

    module: Any
    taskset: Any
    env: Any | None
    seat_max_turns: int | None = None

    @property
    def multi_turn(self) -> bool:
        return self.env is not None

    def rebuild(self, ref: Mapping[str, Any]) -> Any:
        """The verifiers Task a rewardkit Task came from: its class (by name, else the taskset's task
        type) built on its data and the taskset's task config."""
        cls = _task_class(self.module, ref.get("type", ""), type(self.taskset).task_type())
        return cls(cls.data_type().model_validate(ref["data"]), self.taskset.config.task)


def _import(spec: str) -> Any:
    from rewardkit.imports import import_module

    module = import_module(spec, what="verifiers environment")
    lowered = module.__name__.replace("-", "_").lower()
    sys.modules.setdefault(lowered, module)  # verifiers' loader imports ids lower-cased
    return module


def _load_vf(spec: str, env_args: dict[str, Any], env_config: dict[str, Any]) -> _Loaded:
    try:
        import verifiers.v1 as vf
    except ImportError as exc:  # pragma: no cover - verifiers is in the dev extras
        raise ImportError(f"{WHERE} needs verifiers >= 0.4 (pip install verifiers): {exc}") from exc
    module = _import(spec)
    factory = getattr(module, "load_environment", None)
    if callable(factory) and getattr(factory, "__module__", None) == module.__name__:
        made = factory(**env_args)
    else:
        name = module.__name__.replace("-", "_").lower()
        config = vf.resolve_env_config({**env_config, "taskset": {**env_args, "id": name}})
        made = vf.load_environment(config)
    if isinstance(made, vf.Taskset):
        env, taskset = None, made
    elif isinstance(made, vf.Env):
        taskset = made.taskset
        single = isinstance(made, vf.SingleAgentEnv) or type(made).run is vf.SingleAgentEnv.run
        env = None if single else made
    else:
        raise TypeError(f"{WHERE}: {spec!r} built a {type(made).__name__}, not a verifiers Taskset or Env")
    _check_supported(spec, taskset)
    seats = list(getattr(env, "_agent_specs", {}).values()) if env is not None else []
    seat_turns = next((s.max_turns for s in seats if getattr(s, "max_turns", None)), None)
    return _Loaded(module, taskset, env, seat_turns)


def _check_supported(spec: str, taskset: Any) -> None:
    task_cls = type(taskset).task_type()
    problems = []
    if getattr(task_cls, "NEEDS_CONTAINER", False):
        problems.append("its tasks need a container (NEEDS_CONTAINER)")
    if type(taskset).toolsets(taskset.config) or task_cls.toolsets(taskset.config.task):
        problems.append("it serves tools (MCP toolsets)")
    if taskset.config.task.judges:
        problems.append("it plugs LLM judges")
    if problems:
        raise ValueError(f"{WHERE}: {spec!r} is not supported: " + "; ".join(problems))


def _task_class(module: Any, qualname: str, default: type) -> type:
    from verifiers.v1 import Task as VfTask

    obj: Any = module
    for part in qualname.split(".") if qualname else ():
        obj = getattr(obj, part, None)
    return obj if isinstance(obj, type) and issubclass(obj, VfTask) else default


def _runtime_hooks(vf_task: Any) -> list[str]:
    """Reward and metric functions that need a live runtime (verifiers skips them without one)."""
    names = []
    for fn in [*vf_task.hooks("metric"), *vf_task.hooks("reward")]:
        param = inspect.signature(fn).parameters.get("runtime")
        if param is not None and param.default is inspect.Parameter.empty:
            names.append(fn.__name__)
    return names


# ---- tasks and traces ----------------------------------------------------------------------------
def _wire(message: Any) -> dict[str, Any]:
    from verifiers.v1.dialects.chat import message_to_wire

    return message_to_wire(message)


def _prompt_messages_of(vf_task: Any) -> list[dict[str, Any]]:
    """What verifiers' chat harness sends first: the system prompt, then the prompt."""
    data = vf_task.data
    messages = [{"role": "system", "content": data.system_prompt}] if data.system_prompt else []
    if isinstance(data.prompt, str):
        messages.append({"role": "user", "content": data.prompt})
    elif data.prompt is not None:
        messages += [_wire(m) for m in data.prompt]
    return messages


def _to_task(vf_task: Any, split: str) -> Task:
    data = vf_task.data
    dumped = data.model_dump(mode="json")
    ref = {"split": split, "type": type(vf_task).__qualname__, "data": dumped}
    return Task(
        prompt=tuple(_prompt_messages_of(vf_task)),
        answer=dumped.get("answer"),
        info={"verifiers": ref},
        id=str(data.id or data.name or vf_task.key),
    )


def _prompt_messages(task: Task) -> list[dict[str, Any]]:
    return (
        [dict(m) for m in task.prompt]
        if not isinstance(task.prompt, str)
        else [{"role": "user", "content": task.prompt}]
    )


def _split_of(task: Task) -> str:
    return _split_of_info(task.info)


def _split_of_info(info: Mapping[str, Any]) -> str:
    ref = info.get("verifiers")
    return str(ref.get("split", "train")) if isinstance(ref, Mapping) else "train"


def _new_trace(vf_task: Any, messages: Sequence[Mapping[str, Any]], n_prompt: int | None = None) -> Any:
    """A ``vf.Trace`` of ``messages`` on ``vf_task``: one node per message, each the child of the one
    before; the assistant messages after the prompt are the sampled ones."""
    import verifiers.v1 as vf
    from verifiers.v1.state import state_cls

    trace = vf.Trace(
        task=vf.TraceTask(type=type(vf_task).__name__, data=vf_task.data, key=vf_task.key, hash=vf_task.hash),
        agent=vf.AgentInfo(config=vf.AgentConfig(), name="agent"),
        state=state_cls(type(vf_task))(),
    )
    n_prompt = len(_prompt_messages_of(vf_task)) if n_prompt is None else n_prompt
    for i, message in enumerate(messages):
        _append(trace, message, sampled=i >= n_prompt and message.get("role") == "assistant")
    return trace


def _append(trace: Any, message: Mapping[str, Any], *, sampled: bool) -> None:
    from verifiers.v1.dialects.chat import parse_message
    from verifiers.v1.graph import MessageNode

    parent = len(trace.nodes) - 1 if trace.nodes else None
    trace.nodes.append(MessageNode(parent=parent, message=parse_message(dict(message)), sampled=sampled))


def _to_score(trace: Any) -> Score:
    unscored = [name for name, r in trace.rewards.items() if r is None]
    if unscored:
        return Score.failure("error", f"verifiers reward functions gave no score: {unscored}")
    reward = float(trace.reward)
    if not math.isfinite(reward):
        return Score.failure("error", f"the verifiers rubric's reward is not finite: {reward!r}")
    metrics = {name: float(r.score) for name, r in trace.rewards.items()}
    for name, value in trace.metrics.items():
        if value is not None:
            metrics[name if name not in metrics else f"metric/{name}"] = float(value)
    weights = {name: float(r.weight) for name, r in trace.rewards.items()}
    return Score.ok(reward, metrics, weights=weights)


def _off_loop(fn: Any, *args: Any) -> Any:
    """``fn(*args)`` from sync code: here, or in a thread when this thread already runs an event loop
    (``executor="inline"`` under ``ascore``), since ``fn`` runs a loop of its own."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return fn(*args)
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(1) as pool:
        return pool.submit(fn, *args).result()


# ---- multi-turn: an Env.run coroutine stepped by rewardkit's loop ------------------------------------
class _Exchange:
    """One episode of a verifiers ``Env.run`` on a private event loop, advanced one policy turn at a time.

    ``run`` sees ``agents.<seat>.interaction(task)``; each ``turn(message)`` there hands ``message`` to
    the caller (the environment's reply) and waits for the policy's next turn. One seat, one interaction
    per episode: verifiers' multi-agent episodes (a simulated user, judges as agents) are not supported.
    """

    def __init__(self, loaded: _Loaded, vf_task: Any, prompt: list[dict[str, Any]]) -> None:
        self.loop = asyncio.new_event_loop()
        self.trace = _new_trace(vf_task, prompt, n_prompt=len(prompt))
        self.vf_task = vf_task
        self.opened = False
        self.over = False
        self.seat: str | None = None
        self.signal: asyncio.Future[Any] = self.loop.create_future()
        self.reply: asyncio.Future[Any] | None = None
        self.job = self.loop.create_task(_call_run(loaded.env, vf_task, _Agents(self)))

    def start(self) -> dict[str, Any] | None:
        """Run until ``run`` waits for the policy's first turn; None then, else the episode's info."""
        self._advance()  # a turn() that opens with a message raises there: the job ends with the error
        return self.outcome() if self.job.done() else None

    def answer(self, message: Mapping[str, Any]) -> list[dict[str, Any]] | None:
        """Hand the policy's turn to ``run``: the messages it answers with, or None when it ended."""
        _append(self.trace, message, sampled=True)
        assert self.reply is not None
        self.reply.set_result(message)
        ask = self._advance()
        if self.job.done():
            return None
        reply = (
            [{"role": "user", "content": ask}]
            if isinstance(ask, str)
            else [_wire(m) if not isinstance(m, Mapping) else dict(m) for m in ask]
        )
        for m in reply:
            _append(self.trace, m, sampled=False)
        return reply

    def terminate(self) -> None:
        """rewardkit's loop ended the episode: ``run``'s pending ``turn`` gets a terminated Segment."""
        if self.reply is not None and not self.reply.done():
            self.reply.set_result(_TERMINATED)
            self._advance()
        self.close()

    def outcome(self) -> dict[str, Any]:
        """The episode's account for ``Trajectory.info``: ``run``'s recorded rewards, metrics, any error."""
        info: dict[str, Any] = {"vf_turns": self.trace.num_turns, "vf_done": self.job.done()}
        if self.job.done() and not self.job.cancelled() and self.job.exception() is not None:
            exc = self.job.exception()
            info.update(status="error", vf_error=f"{type(exc).__name__}: {exc}")
        info["vf_rewards"] = {k: [r.score, r.weight] for k, r in self.trace.rewards.items() if r is not None}
        info["vf_metrics"] = {k: v for k, v in self.trace.metrics.items() if v is not None}
        self.close()
        return info

    def _advance(self) -> Any:
        """Run the loop until ``run`` asks for a turn (its message) or ends."""
        self.signal = self.loop.create_future()
        self.loop.run_until_complete(
            asyncio.wait({self.job, self.signal}, return_when=asyncio.FIRST_COMPLETED)
        )
        return self.signal.result() if self.signal.done() else None

    async def turn(self, message: Any) -> Any:
        from verifiers.v1.agent import Segment
        from verifiers.v1.types import AssistantMessage

        if self.over:
            raise RuntimeError("the exchange is over (the run ended); read interaction.trace")
        prompted = self.trace.task.data.prompt is not None
        if not self.opened and message is not None and prompted:
            raise ValueError("the task's prompt opens this exchange: take its first reply with a bare turn()")
        if not self.opened and message is None and not prompted:
            raise ValueError("nothing to run a turn on: the task has no prompt")
        if not self.opened and message is not None:
            raise NotImplementedError("rewardkit cannot run an exchange that run() opens with a message")
        self.opened = True
        self.reply = self.loop.create_future()
        self.signal.set_result(message)
        policy = await self.reply
        if policy is _TERMINATED:
            self.over = True
            return Segment(messages=[], terminated=True)
        return Segment(messages=[AssistantMessage(content=str(policy.get("content") or ""))])

    def close(self) -> None:
        if self.loop.is_closed():
            return
        try:
            if not self.job.done():
                self.job.cancel()
                self.loop.run_until_complete(asyncio.gather(self.job, return_exceptions=True))
        except RuntimeError:  # closed from inside another running loop: drop the pending job
            pass
        self.loop.close()

    def __del__(self) -> None:  # an episode cut short (a length-capped turn) leaves run() waiting
        try:
            self.close()
        except Exception:  # noqa: BLE001 - never raise from a finaliser
            pass


async def _call_run(env: Any, vf_task: Any, agents: Any) -> None:
    await env.setup(agents)
    await env.run(vf_task, agents)


class _Agents:
    """What ``Env.setup``/``Env.run`` see as ``agents``: every seat name gives the one policy seat."""

    def __init__(self, exchange: _Exchange) -> None:
        object.__setattr__(self, "_exchange", exchange)
        object.__setattr__(self, "_seats", {})

    def __getattr__(self, name: str) -> _Seat:
        if name.startswith("__"):
            raise AttributeError(name)
        return self._seats.setdefault(name, _Seat(self._exchange, name))

    def __getitem__(self, name: str) -> _Seat:
        return self.__getattr__(name)


class _Seat:
    def __init__(self, exchange: _Exchange, name: str) -> None:
        self._exchange, self.name, self.trainable = exchange, name, True

    @property
    def trace(self) -> Any:
        return self._exchange.trace

    def interaction(self, task: Any, **_: Any) -> Any:
        return _Interaction(self._exchange, self.name)

    async def run(self, task: Any, **_: Any) -> Any:
        raise NotImplementedError("rewardkit drives verifiers episodes turn by turn: use agent.interaction()")


class _Interaction:
    def __init__(self, exchange: _Exchange, seat: str) -> None:
        self._exchange, self._seat = exchange, seat

    @property
    def trace(self) -> Any:
        return self._exchange.trace

    async def __aenter__(self) -> _Interaction:
        holder = self._exchange.seat
        if holder is not None:
            raise NotImplementedError(
                f"only one interaction per episode is supported (seat {holder!r} has one; {self._seat!r} asked)"
            )
        self._exchange.seat = self._seat
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._exchange.over = True

    async def turn(self, message: Any = None) -> Any:
        return await self._exchange.turn(message)

    async def close(self) -> Any:
        self._exchange.over = True
        return self._exchange.trace


def _replay(
    loaded: _Loaded, vf_task: Any, prompt: list[dict[str, Any]], turns: list[dict[str, Any]]
) -> tuple[Any, str]:
    """Run ``Env.run`` again with the completion's policy turns; (its trace, why it was rejected or "")."""
    exchange = _Exchange(loaded, vf_task, prompt)
    try:
        opening = exchange.start()
        if opening is not None:
            raise RuntimeError(
                f"the verifiers Env.run ended before the first turn: {opening.get('vf_error')}"
            )
        i = 0
        while i < len(turns):
            if turns[i].get("role") != "assistant":
                return (
                    exchange.trace,
                    f"message {i} should be the policy's turn, it is a {turns[i].get('role')}",
                )
            ask = exchange.answer(turns[i])
            i += 1
            if ask is None:
                break
            given = turns[i : i + len(ask)]
            if i == len(turns):  # the completion ends here: the episode was cut (max_turns)
                exchange.terminate()
                break
            if [_content(m) for m in given] != [_content(m) for m in ask]:
                return (
                    exchange.trace,
                    f"the environment's reply after turn {i} is not the one in the completion",
                )
            i += len(ask)
        if i < len(turns):
            return exchange.trace, "the completion goes on after the environment ended the episode"
        outcome = exchange.outcome()
        if outcome.get("vf_error"):
            raise RuntimeError(f"the verifiers Env.run raised: {outcome['vf_error']}")
        return exchange.trace, ""
    finally:
        exchange.close()


def _content(message: Mapping[str, Any]) -> tuple[str, str]:
    return str(message.get("role")), str(message.get("content") or "")


# ---- the other direction: a rewardkit environment as a verifiers taskset -----------------------------
def to_verifiers(env: Environment | str, split: str = "train", **env_config: Any) -> Any:
    """A ``vf.Taskset`` (``RewardkitTaskset``) of ``env``'s ``tasks(split)`` scored by ``env``.

    ``env`` is an Environment or a ``load_env`` name (then ``env_config`` are its options). Each task's
    rubric is one ``@vf.reward`` named ``rewardkit`` (weight 1) whose score is rewardkit's reward, and a
    ``@vf.metric`` recording the Score's metrics; a Score whose status is not ``ok`` raises in the
    reward, so verifiers records a scoring error instead of a 0.
    """
    classes = _reverse_classes()
    name = env if isinstance(env, str) else (env.name or type(env).__name__)
    config = classes["RewardkitTasksetConfig"](env=name, env_config=dict(env_config), split=split)
    return classes["RewardkitTaskset"](config, env=None if isinstance(env, str) else env)


def __getattr__(name: str) -> Any:
    """``RewardkitTaskset`` and friends, built on first use (verifiers is an optional dependency)."""
    if name in ("RewardkitTaskset", "RewardkitTask", "RewardkitData", "RewardkitTasksetConfig"):
        return _reverse_classes()[name]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


@functools.cache
def _reverse_classes() -> dict[str, type]:
    """The verifiers classes of ``to_verifiers``, defined once verifiers is imported."""
    import verifiers.v1 as vf
    from pydantic import Field

    class RewardkitData(vf.TaskData):
        answer: Any = None
        """The rewardkit Task's gold answer."""
        info: dict[str, Any] = Field(default_factory=dict)
        """The rewardkit Task's info."""
        rewardkit_prompt: str | list[dict[str, Any]] | None = None
        """The rewardkit Task's prompt, as rewardkit's scoring is given it."""

    class RewardkitTasksetConfig(vf.TasksetConfig):
        env: str = ""
        """The rewardkit environment's ``load_env`` name."""
        env_config: dict[str, Any] = Field(default_factory=dict)
        """Its options."""
        split: str = "train"
        """The split of ``env.tasks(split)``."""
        max_tasks: int | None = None
        """Tasks read from the split (None: all)."""

    class RewardkitTask(vf.Task[RewardkitData, vf.State, vf.TaskConfig]):
        rewardkit_env: Environment | None = None

        @vf.metric
        async def rewardkit_metrics(self, task: Any, trace: Any) -> dict[str, float]:
            return dict((await self._score(task, trace)).metrics)

        @vf.reward(weight=1.0)
        async def rewardkit(self, task: Any, trace: Any) -> float:
            score = await self._score(task, trace)
            if score.status != "ok":  # never a silent 0: verifiers records the scoring failure
                raise RuntimeError(
                    f"rewardkit scoring gave status {score.status}: {score.info.get('reason')}"
                )
            return score.reward

        async def _score(self, task: Any, trace: Any) -> Score:
            cached = trace.info.get("rewardkit_score")
            if cached is None:
                assert self.rewardkit_env is not None, "a RewardkitTask needs its environment"
                score = await self.rewardkit_env.ascore(
                    _completion_of(trace), answer=task.answer, prompt=task.rewardkit_prompt, info=task.info
                )
                trace.info["rewardkit_score"] = cached = score.to_dict()
            return Score(cached["reward"], dict(cached["metrics"]), dict(cached["info"]))

    class RewardkitTaskset(vf.Taskset[RewardkitTask, RewardkitTasksetConfig]):
        """A rewardkit environment's tasks as a verifiers taskset (built by ``to_verifiers``, or by
        verifiers' loader from a module exporting it: ``__all__ = ["RewardkitTaskset"]``)."""

        def __init__(self, config: RewardkitTasksetConfig, env: Environment | None = None) -> None:
            super().__init__(config)
            if env is None:
                from rewardkit.registry import load_env

                env = load_env(config.env, **config.env_config)
            self.env = env

        def load(self) -> Any:
            for i, task in enumerate(self.env.tasks(self.config.split)):
                if self.config.max_tasks is not None and i >= self.config.max_tasks:
                    return
                vf_task = RewardkitTask(_vf_data(RewardkitData, task), self.config.task)
                vf_task.rewardkit_env = self.env
                yield vf_task

    return {
        "RewardkitData": RewardkitData,
        "RewardkitTask": RewardkitTask,
        "RewardkitTaskset": RewardkitTaskset,
        "RewardkitTasksetConfig": RewardkitTasksetConfig,
    }


def _vf_data(data_cls: type, task: Task) -> Any:
    """A rewardkit Task as verifiers task data: a leading system message becomes ``system_prompt``."""
    if isinstance(task.prompt, str):
        system, prompt = None, task.prompt
        rk_prompt: Any = task.prompt
    else:
        messages = [dict(m) for m in task.prompt]
        rk_prompt = [dict(m) for m in messages]
        system = messages.pop(0)["content"] if messages and messages[0].get("role") == "system" else None
        prompt = messages
    return data_cls(
        id=task.id or None,
        prompt=prompt,
        system_prompt=system,
        answer=task.answer,
        info=dict(task.info),
        rewardkit_prompt=rk_prompt,
    )


def _completion_of(trace: Any) -> Completion:
    """What the policy wrote on ``trace``'s final branch: the text of a lone reply, else the messages from
    its first sampled message on."""
    branches = trace.branches
    nodes = branches[-1].nodes if branches else []
    first = next((i for i, node in enumerate(nodes) if node.sampled), len(nodes))
    messages = [_wire(node.message) for node in nodes[first:]]
    if len(messages) == 1 and messages[0]["role"] == "assistant" and not messages[0].get("tool_calls"):
        return str(messages[0].get("content") or "")
    return tuple(messages)
