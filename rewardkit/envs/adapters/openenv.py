"""``openenv:<name>``: a Meta / Hugging Face OpenEnv environment as a multi-turn rewardkit environment.

OpenEnv (``openenv-core``) environments are Gym-like servers: ``reset()`` gives an Observation, each
``step(action)`` takes a typed Action (a pydantic model) and gives the next Observation, whose
``reward`` and ``done`` fields carry the reward of that step and the end of the episode. Here

- each rollout episode gets its own OpenEnv environment: a new instance of the class (``mode: local``,
  ``name`` is ``module:Class``, ``path/to/file.py:Class`` or a factory) or its own WebSocket session
  on a running OpenEnv server (``mode: http``, ``name`` or ``url`` is the server's address), reset
  with the task's seed;
- a task is one seed: its prompt is the rendered first observation of ``reset(seed=...)`` (after an
  optional system prompt that says how to write actions), and the episode checks that its own reset
  shows the same observation (``check_reset``), so the policy never acts on a game it did not see;
- each policy turn becomes one Action: the turn's text as the field ``action_field``, or the JSON object
  in ``<action>...</action>`` (``action_tag``), or whatever ``action_parser(text) -> dict`` makes of it;
  a turn that is no valid action gets a reply saying so (or ends the episode: ``invalid_action``);
- each Observation becomes the next user (or tool) message: its only text field, the field
  ``observation_field``, ``render_observation(fields) -> str``, or else its fields as JSON (OpenEnv's
  ``reward``, ``done`` and ``metadata`` are never shown: the server does not send ``metadata`` either);
- each step's ``reward`` goes into ``Trajectory.turn_rewards`` and the episode's record
  (``Trajectory.info["openenv_rewards"]``); ``done`` ends the episode; ``verify`` reads the record
  (``info["episode"]``) and scores the episode with the sum (or the ``last``) of its rewards.

An environment that raises, a server that is down, refuses the session or dies mid-episode, an
observation that is not JSON: the episode ends with ``info["status"] == "error"`` and a ``reason``, and
``verify`` returns status ``error`` for it, never a reward of 0. A sample scored without its episode's
record (a hand-built one) is replayed against a fresh environment: its environment messages must be
the ones the environment gives, else it scores 0 (``rejected``). See docs/interop.md.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import re
import time
import typing
import weakref
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from rewardkit.config import ConfigError, bad_value, check_choices, check_ranges
from rewardkit.envs.base import Environment, EnvStep
from rewardkit.envs.probes import Probe
from rewardkit.imports import import_object
from rewardkit.types import Completion, Message, Score, Task

WHERE = "environment 'openenv'"
URL_RE = re.compile(r"^(?:https?|wss?)://", re.I)
TEST_SEED_OFFSET = 1_000_000
"""The test split's seeds start here (plus ``seed``), the train split's at ``seed``."""
HIDDEN_FIELDS = frozenset({"reward", "done", "metadata"})
"""Observation fields that are never shown to the policy (OpenEnv's server does not send them as fields)."""
UNANSWERED: Mapping[str, Any] = {
    "status": "ok",
    "openenv_rewards": [],
    "policy_turns": 0,
    "end": "unanswered",
}
"""The record of a rollout episode the environment never answered (its only turn ran out of tokens)."""
_RANGES = {
    "max_turns": ">= 1",
    "max_total_tokens": ">= 1",
    "response_workers": ">= 1",
    "n_train": ">= 1",
    "n_test": ">= 1",
    "connect_timeout_s": "> 0",
    "step_timeout_s": "> 0",
}


@dataclass(frozen=True)
class OpenEnvConfig:
    """Configuration of ``load_env("openenv:<name>", ...)``; the remaining keywords go to ``Environment``."""

    mode: Literal["auto", "local", "http"] = "auto"
    """``local``: ``name`` is an OpenEnv Environment class (``module:Class``, ``file.py:Class``) or a
    factory returning one, run in this process. ``http``: a running OpenEnv server at ``url`` (or at
    ``name``, when it is a URL). ``auto``: ``http`` when ``url`` is set or ``name`` is a URL."""
    url: str | None = None
    """The OpenEnv server's base URL (``http://127.0.0.1:8000``) in ``http`` mode."""
    env_kwargs: dict[str, Any] = field(default_factory=dict)
    """Keyword arguments of the environment class or factory (``local`` mode)."""
    action_class: str | None = None
    """``module:Class`` of the Action (``local`` mode); None: read from ``Environment[ActT, ...]`` or the
    annotation of ``step``'s ``action``."""
    action_field: str | None = None
    """The Action field the policy's turn (stripped of surrounding whitespace) goes into. None: the turn
    must hold the action as one JSON object in ``<action>...</action>``."""
    action_tag: str = "action"
    """The tag around a JSON action (when ``action_field`` and ``action_parser`` are unset)."""
    action_parser: Any = None
    """``text -> dict`` of Action fields (a callable or ``module:function``); raising means "no valid action"."""
    observation_field: str | None = None
    """The Observation field shown to the policy. None: the only field if it is text, else all as JSON."""
    render_observation: Any = None
    """``fields -> str`` (a callable or ``module:function``) for the message an Observation becomes."""
    observation_role: Literal["user", "tool"] = "user"
    """The role of the messages holding observations."""
    system_prompt: str | None = None
    """The system message of every task. None: one saying how to write an action; "" for none."""
    reset_kwargs: dict[str, Any] = field(default_factory=dict)
    """More keyword arguments of every ``reset`` (the task's ``seed`` is added)."""
    check_reset: bool = True
    """End the episode with status ``error`` when the episode's ``reset(seed)`` shows another first
    observation than the task's prompt (an environment that does not replay a seed)."""
    reward: Literal["sum", "last"] = "sum"
    """The episode's reward: the sum of its steps' rewards, or the last step's (None counts as 0)."""
    invalid_action: Literal["reply", "end"] = "reply"
    """A turn that is no valid action: ``reply`` says why in a user message (turn reward 0, nothing is
    sent to the environment) and the episode goes on; ``end`` ends it."""
    max_turns: int = 8
    """Policy turns per episode; the last one is still sent to the environment and rewarded."""
    max_total_tokens: int | None = None
    """Completion tokens (policy and environment) after which the episode stops."""
    response_workers: int | None = None
    """Episodes stepped at once (threads). None: 8 for ``http``, 1 for ``local``."""
    pass_threshold: float = 1.0
    """The episode reward that counts as a pass (pass@k, ``check_env``'s gold examples)."""
    n_train: int = 256
    """Tasks (seeds ``seed`` ... ``seed + n_train - 1``) in the train split."""
    n_test: int = 64
    """Tasks in the test split (seeds from ``seed + 1_000_000``)."""
    seed: int = 0
    """The first seed of the train split."""
    gold_actions: tuple[tuple[str, ...], ...] = ()
    """Policy turns that solve the first train tasks, one tuple per task: ``gold_examples`` plays them."""
    connect_timeout_s: float = 10.0
    """``http``: the limit on opening a session."""
    step_timeout_s: float = 60.0
    """``http``: the limit on one reset or step answer (``local`` steps are not limited)."""

    def __post_init__(self) -> None:
        check_choices(self, where=WHERE)
        check_ranges(self, _RANGES, where=WHERE)
        if self.url is not None and not URL_RE.match(self.url):
            raise bad_value(WHERE, "url", self.url, "an http://, https://, ws:// or wss:// URL")
        if self.action_field is not None and self.action_parser is not None:
            raise bad_value(WHERE, "action_parser", self.action_parser, "None when action_field is set")
        if not re.fullmatch(r"[A-Za-z_][\w\-]*", self.action_tag):
            raise bad_value(WHERE, "action_tag", self.action_tag, "a tag name such as 'action'")
        for key in ("action_parser", "render_observation"):
            value = getattr(self, key)
            if value is not None and not (callable(value) or isinstance(value, str)):
                raise bad_value(WHERE, key, value, "a callable or 'module:function'")


class EnvFailure(Exception):
    """The OpenEnv environment or its server failed: the episode ends with status ``error``."""


class InvalidAction(Exception):
    """The policy's turn is no valid Action."""


@dataclass(frozen=True)
class StepResult:
    """One ``reset`` or ``step`` answer: the observation's shown fields, its reward and done flag."""

    observation: dict[str, Any]
    reward: float | None
    done: bool


def load(name: str, **config: Any) -> OpenEnvEnv:
    """``load_env("openenv:<name>", **config)``: ``name`` is ``module:Class``, ``file.py:Class`` or a URL."""
    return OpenEnvEnv(name, **config)


class OpenEnvEnv(Environment):
    """An OpenEnv environment's episodes, one per task seed. See ``OpenEnvConfig`` for the options."""

    Config = OpenEnvConfig

    def __init__(self, target: str, **options: Any) -> None:
        super().__init__(**options)
        cfg = self.config
        self.target = target
        self.name = f"openenv:{target}"  # type: ignore[misc]  # per-instance: the family member's name
        self.mode = "http" if cfg.mode == "http" or (cfg.mode == "auto" and _is_url(cfg, target)) else "local"
        self.url = (cfg.url or target).rstrip("/") if self.mode == "http" else None
        if self.url is not None and not URL_RE.match(self.url):
            raise bad_value(WHERE, "url", self.url, "an http:// or ws:// URL (mode: http needs one)")
        self.max_turns = cfg.max_turns  # type: ignore[misc]
        self.max_total_tokens = cfg.max_total_tokens
        self.response_workers = cfg.response_workers or (8 if self.mode == "http" else 1)
        self.pass_threshold = cfg.pass_threshold
        self._cache: dict[str, Any] = {}
        if self.mode == "local":
            self._check_local()

    @classmethod
    def scoring_defaults(cls, config: Any) -> Mapping[str, Any]:
        """Threads: ``verify`` reads the episode's record (a replay waits on the environment)."""
        return {"executor": "thread"}

    def __getstate__(self) -> dict[str, Any]:
        state = super().__getstate__()
        state["_cache"] = {}  # classes, schema and tasks are looked up again where needed
        return state

    # ---- the OpenEnv environment ------------------------------------------------------------------
    def _factory(self) -> Callable[..., Any]:
        if "factory" not in self._cache:
            try:
                self._cache["factory"] = import_object(self.target, what="openenv environment")
            except (ImportError, ValueError) as exc:
                raise ImportError(
                    f"openenv:{self.target}: {exc}. In local mode the name is the OpenEnv Environment "
                    "class as module:Class or path/to/file.py:Class (openenv-core ships no runnable "
                    "environment of its own); for a server give its URL."
                ) from exc
        return self._cache["factory"]

    def _check_local(self) -> None:
        """At load time: the class imports, is an OpenEnv Environment, and has the Action field named."""
        from openenv.core.env_server.interfaces import Environment as OpenEnvBase

        factory = self._factory()
        if inspect.isclass(factory) and not issubclass(factory, OpenEnvBase):
            raise TypeError(f"openenv:{self.target} is a {factory.__name__}, not an OpenEnv Environment")
        if not callable(factory):
            raise TypeError(f"openenv:{self.target} is a {type(factory).__name__}, not a class or factory")
        action_class = self._action_class(factory if inspect.isclass(factory) else None)
        field_name = self.config.action_field
        if action_class is not None and field_name and field_name not in action_class.model_fields:
            fields = sorted(set(action_class.model_fields) - {"metadata"})
            raise ConfigError(
                f"{WHERE}: action_field {field_name!r} is not a field of {action_class.__name__} "
                f"(its fields: {fields})"
            )

    def _action_class(self, env_class: type | None) -> Any:
        """The Action model: ``action_class``, else ``Environment[ActT, ...]``'s, else ``step``'s annotation."""
        if self.config.action_class:
            return import_object(self.config.action_class, what="openenv action_class")
        return None if env_class is None else action_class_of(env_class)

    def _open(self) -> LocalSession | HttpSession:
        """A new OpenEnv environment for one episode (or for building tasks)."""
        cfg = self.config
        if self.mode == "http":
            assert self.url is not None
            return HttpSession(self.url, cfg.connect_timeout_s, cfg.step_timeout_s)
        return LocalSession(self._factory(), cfg.env_kwargs, self._action_class, self.target)

    def _parse_action(self, text: str) -> dict[str, Any]:
        """The Action fields of one policy turn; InvalidAction says why there are none."""
        cfg = self.config
        if cfg.action_parser is not None:
            parser = self._callable("action_parser")
            try:
                fields = parser(text)
            except Exception as exc:  # noqa: BLE001 - the parser's way of saying "no action here"
                raise InvalidAction(f"{type(exc).__name__}: {exc}") from exc
            if not isinstance(fields, Mapping):
                raise InvalidAction(f"the action parser returned a {type(fields).__name__}, not a dict")
            return dict(fields)
        if cfg.action_field is not None:
            return {cfg.action_field: text.strip()}
        return parse_tagged_json(text, cfg.action_tag)

    def _render(self, observation: Mapping[str, Any]) -> str:
        """The text of the message an observation becomes (EnvFailure when it has no text form)."""
        cfg = self.config
        if cfg.render_observation is not None:
            try:
                return str(self._callable("render_observation")(dict(observation)))
            except Exception as exc:  # noqa: BLE001 - the user's renderer failed on this observation
                raise EnvFailure(f"render_observation raised {type(exc).__name__}: {exc}") from exc
        return render_fields(observation, cfg.observation_field)

    def _callable(self, key: str) -> Callable[..., Any]:
        value = getattr(self.config, key)
        if isinstance(value, str):
            if key not in self._cache:
                self._cache[key] = import_object(value, what=f"openenv {key}")
            return self._cache[key]
        return value

    # ---- tasks ------------------------------------------------------------------------------------
    def tasks(self, split: str = "train") -> Sequence[Task]:
        """One task per seed; its prompt shows the first observation of ``reset(seed=...)``."""
        key = f"tasks:{split}"
        if key not in self._cache:
            cfg = self.config
            n, base = (
                (cfg.n_train, cfg.seed) if split == "train" else (cfg.n_test, cfg.seed + TEST_SEED_OFFSET)
            )
            session = None
            try:
                session = self._open()
                system = self._system_prompt(session)
                self._cache[key] = [self._task(session, system, base + i, split) for i in range(n)]
            except EnvFailure as exc:
                raise RuntimeError(f"{self.name}: cannot build the {split} tasks: {exc}") from exc
            finally:
                if session is not None:
                    session.close()
        return self._cache[key]

    def _task(self, session: LocalSession | HttpSession, system: str, seed: int, split: str) -> Task:
        first = session.reset({**self.config.reset_kwargs, "seed": seed})
        text = self._render(first.observation)
        prompt = ({"role": "system", "content": system},) if system else ()
        return Task(
            (*prompt, {"role": "user", "content": text}),
            None,
            {"seed": seed, "observation": text},
            f"{split}-{seed}",
        )

    def _system_prompt(self, session: LocalSession | HttpSession) -> str:
        cfg = self.config
        if cfg.system_prompt is not None:
            return cfg.system_prompt
        intro = "You act in an environment, one action per reply; its answer comes back in the next message."
        if cfg.action_parser is not None:
            return intro
        if cfg.action_field is not None:
            return f"{intro} Each reply is sent to it as the action's `{cfg.action_field}`."
        fields = describe_action(session.action_schema())
        return (
            f"{intro} Write each action as one JSON object inside <{cfg.action_tag}></{cfg.action_tag}>, "
            f"with these fields:\n{fields}"
        )

    # ---- the episode ------------------------------------------------------------------------------
    def initial_state(self, task: Task) -> dict[str, Any]:
        """A new OpenEnv environment (or server session) for this episode, reset with the task's seed.
        A failure here is kept in the state: the episode's first turn then ends it with status error."""
        state: dict[str, Any] = {
            "session": None,
            "rewards": [],
            "invalid": 0,
            "transcript": [],
            "policy_turns": 0,
            "done": False,
            "error": None,
        }
        kwargs = {**self.config.reset_kwargs, **dict(task.info.get("reset_kwargs") or {})}
        if task.info.get("seed") is not None:
            kwargs["seed"] = task.info["seed"]
        try:
            state["session"] = self._open()
            first = state["session"].reset(kwargs)
            shown, expected = self._render(first.observation), task.info.get("observation")
            if self.config.check_reset and expected is not None and shown != expected:
                raise EnvFailure(
                    f"reset({kwargs}) shows another first observation than the task's prompt "
                    f"({shown[:120]!r} vs {str(expected)[:120]!r}): the environment does not replay a "
                    "seed (set check_reset=False to allow it)"
                )
            if first.done:
                raise EnvFailure(f"the episode is over at reset({kwargs}) (done=True)")
        except EnvFailure as exc:
            state["error"] = str(exc)
            _close(state)
        return state

    def env_response(self, messages: list[Message], state: dict[str, Any]) -> EnvStep:
        """Send the policy's turn to the OpenEnv environment as an Action; its observation is the reply."""
        state["policy_turns"] += 1
        if state["error"]:
            return self._end(state, "error")
        try:
            result = state["session"].step(self._parse_action(str(messages[-1].get("content") or "")))
        except InvalidAction as exc:
            return self._invalid(state, str(exc))
        except EnvFailure as exc:
            state["error"] = str(exc)
            return self._end(state, "error")
        state["rewards"].append(result.reward)
        if result.done:
            state["done"] = True
            return self._end(state, "done", result.reward)
        if state["policy_turns"] >= self.max_turns:  # the rollout stops here: nobody reads a reply
            return self._end(state, "max_turns", result.reward, done=False)
        try:
            text = self._render(result.observation)
        except EnvFailure as exc:
            state["error"] = str(exc)
            return self._end(state, "error", result.reward)
        return self._reply(state, {"role": self.config.observation_role, "content": text}, result.reward)

    def _invalid(self, state: dict[str, Any], reason: str) -> EnvStep:
        state["invalid"] += 1
        if self.config.invalid_action == "end":
            return self._end(state, "invalid_action", 0.0)
        if state["policy_turns"] >= self.max_turns:
            return self._end(state, "max_turns", 0.0, done=False)
        return self._reply(state, {"role": "user", "content": f"That is not a valid action: {reason}"}, 0.0)

    def _reply(self, state: dict[str, Any], message: Message, reward: float | None) -> EnvStep:
        state["transcript"].append(message_digest(message))
        return EnvStep((message,), False, reward, self._record(state, None))

    def _end(
        self, state: dict[str, Any], end: str, reward: float | None = None, done: bool = True
    ) -> EnvStep:
        _close(state)
        return EnvStep((), done, reward, self._record(state, end))

    def _record(self, state: dict[str, Any], end: str | None) -> dict[str, Any]:
        """The episode's account in ``Trajectory.info``: what ``verify`` scores."""
        record: dict[str, Any] = {
            "status": "error" if state["error"] else "ok",
            "openenv_rewards": list(state["rewards"]),
            "openenv_done": state["done"],
            "invalid_actions": state["invalid"],
            "transcript": list(state["transcript"]),
            "policy_turns": state["policy_turns"],
            "end": end,
        }
        if state["error"]:
            record["reason"] = f"openenv environment failed: {state['error']}"
        return record

    # ---- scoring ----------------------------------------------------------------------------------
    def verify(self, completion: Completion, *, answer: Any, prompt: Any, info: Mapping[str, Any]) -> Score:
        if isinstance(completion, str):
            return Score.failure(
                "invalid_input",
                "openenv scores an episode's messages (a multi-turn completion), not a string",
            )
        messages = [dict(m) for m in completion]
        episode = info.get("episode")
        if isinstance(episode, Mapping) and not episode:  # a rollout whose first turn was cut off
            episode = UNANSWERED
        if isinstance(episode, Mapping) and "openenv_rewards" in episode:
            record, problem = dict(episode), record_mismatch(messages, episode, self.max_turns)
        else:
            record, problem = self._replay(messages, prompt, info)
        if record.get("status") != "ok":
            return Score.failure("error", str(record.get("reason") or "the OpenEnv episode failed"))
        return score_record(record, self.config.reward, problem)

    def _replay(
        self, messages: list[Message], prompt: Any, info: Mapping[str, Any]
    ) -> tuple[dict[str, Any], str]:
        """Play the completion's turns against a fresh environment: its record, and "" when every
        environment message in the completion is the one the environment gives (else what differs)."""
        task_info = {k: v for k, v in info.items() if k != "episode"}
        state = self.initial_state(Task(prompt if prompt is not None else "", None, task_info))
        try:
            problem = alternation_problem(messages, self.max_turns)
            record = self._record(state, None)
            if problem:
                return record, problem
            for i in range(0, len(messages), 2):
                step = self.env_response(messages[: i + 1], state)
                record, given = step.info, messages[i + 1 : i + 2]
                if not given:
                    break
                if step.done or not step.messages:
                    return record, f"the episode ended at turn {i // 2 + 1}, yet the completion goes on"
                if message_digest(given[0]) != message_digest(step.messages[0]):
                    return record, f"the message after turn {i // 2 + 1} is not the one the environment gives"
            return record, ""
        finally:
            _close(state)

    def gold_examples(self) -> list[dict[str, Any]]:
        """The ``gold_actions`` played on the first train tasks (scored by replay, as a hand-built sample)."""
        samples = []
        for task, actions in zip(self.tasks("train"), self.config.gold_actions):
            messages, _ = self.play(task, actions)
            samples.append({"completion": messages, "prompt": task.prompt, "info": dict(task.info)})
        return samples

    def play(self, task: Task, actions: Sequence[str]) -> tuple[list[Message], dict[str, Any]]:
        """Run one episode of ``task`` whose policy turns are ``actions``: its messages and record."""
        state = self.initial_state(task)
        messages: list[Message] = []
        record = self._record(state, None)
        try:
            for action in actions:
                messages.append({"role": "assistant", "content": action})
                step = self.env_response(list(messages), state)
                record = step.info
                if step.done or not step.messages:
                    break
                messages += [dict(m) for m in step.messages]
        finally:
            _close(state)
        return messages, record

    def exploit_probes(self) -> list[Probe]:
        """Forged transcripts built on the first gold episode (none without ``gold_actions``)."""
        if not self.config.gold_actions:
            return []
        task = self.tasks("train")[0]
        messages, record = self.play(task, self.config.gold_actions[0])
        return forged_probes(task, messages, record)


# ---- helpers (module level: small, testable, shared by the two modes) -----------------------------------
def _is_url(cfg: OpenEnvConfig, target: str) -> bool:
    return cfg.url is not None or bool(URL_RE.match(target))


def _close(state: dict[str, Any]) -> None:
    session, state["session"] = state.get("session"), None
    if session is not None:
        session.close()


def message_digest(message: Mapping[str, Any]) -> str:
    """A short hash of a message's role and content: what the episode's record keeps of a reply."""
    key = [str(message.get("role")), str(message.get("content") or "")]
    return hashlib.sha256(json.dumps(key, ensure_ascii=False).encode()).hexdigest()[:16]


def action_class_of(env_class: type) -> Any:
    """The Action model of an OpenEnv Environment class: ``Environment[ActT, ObsT, StateT]``'s first
    argument, else the annotation of ``step``'s ``action``; None when neither names an Action."""
    from openenv.core.env_server.types import Action

    for klass in env_class.__mro__:
        for base in getattr(klass, "__orig_bases__", ()):
            args = typing.get_args(base)
            if args and inspect.isclass(args[0]) and issubclass(args[0], Action):
                return args[0]
    try:
        hint = typing.get_type_hints(env_class.step).get("action")
    except Exception:  # noqa: BLE001 - an annotation that does not resolve names nothing
        hint = None
    return hint if inspect.isclass(hint) and issubclass(hint, Action) and hint is not Action else None


def parse_tagged_json(text: str, tag: str) -> dict[str, Any]:
    """The one JSON object inside ``<tag>...</tag>`` in ``text`` (InvalidAction otherwise)."""
    found = re.findall(rf"<{tag}>(.*?)</{tag}>", text, re.S)
    if len(found) != 1:
        what = "no" if not found else f"{len(found)}"
        raise InvalidAction(f"{what} <{tag}>...</{tag}> blocks; write exactly one JSON action per reply")
    try:
        value = json.loads(found[0])
    except json.JSONDecodeError as exc:
        raise InvalidAction(f"the action is not JSON ({exc})") from exc
    if not isinstance(value, dict):
        raise InvalidAction(f"the action must be a JSON object, got {type(value).__name__}")
    return value


def render_fields(observation: Mapping[str, Any], field_name: str | None) -> str:
    """An observation's text: ``field_name``'s value, its only text field, or all its fields as JSON."""
    fields = {k: v for k, v in observation.items() if k not in HIDDEN_FIELDS}
    if field_name is not None:
        if field_name not in fields:
            raise EnvFailure(f"the observation has no field {field_name!r} (its fields: {sorted(fields)})")
        fields = {field_name: fields[field_name]}
    values = list(fields.values())
    if len(values) == 1 and isinstance(values[0], str):
        return values[0]
    try:
        return json.dumps(fields if field_name is None else values[0], ensure_ascii=False, sort_keys=True)
    except (TypeError, ValueError) as exc:
        raise EnvFailure(
            f"the observation has no text form (only text and JSON are supported): {exc}"
        ) from exc


def describe_action(schema: Mapping[str, Any]) -> str:
    """One line per Action field from its JSON schema: name, type, required, description."""
    required = set(schema.get("required") or ())
    lines = []
    for name, spec in (schema.get("properties") or {}).items():
        if name == "metadata":
            continue
        kind = spec.get("type") or " or ".join(str(s.get("type")) for s in spec.get("anyOf", ())) or "any"
        note = ", required" if name in required else ""
        lines.append(f'- "{name}" ({kind}{note}): {spec.get("description", "")}'.rstrip(": "))
    return "\n".join(lines) or "(no fields)"


def alternation_problem(messages: Sequence[Message], max_turns: int) -> str:
    """ "" when ``messages`` are policy turns each followed by at most one environment message."""
    for i, message in enumerate(messages):
        if (message.get("role") == "assistant") != (i % 2 == 0):
            return f"message {i + 1} ({message.get('role')}) breaks the turn order of an episode"
    turns = (len(messages) + 1) // 2
    if turns > max_turns:
        return f"{turns} policy turns, past max_turns={max_turns}"
    return ""


def record_mismatch(messages: Sequence[Message], episode: Mapping[str, Any], max_turns: int) -> str:
    """ "" when the completion's environment messages are exactly the recorded ones and its turns the
    episode's (one more only when the rollout cut the last turn short, unanswered)."""
    problem = alternation_problem(messages, max_turns)
    if problem:
        return problem
    replies = [message_digest(m) for m in messages[1::2]]
    if replies != list(episode.get("transcript") or ()):
        return "the environment messages in the completion are not the ones the episode recorded"
    turns, recorded = (len(messages) + 1) // 2, int(episode.get("policy_turns") or 0)
    if turns != recorded and not (turns == recorded + 1 and len(messages) % 2 == 1):
        return f"{turns} policy turns, but the episode recorded {recorded}"
    return ""


def score_record(record: Mapping[str, Any], mode: str, problem: str) -> Score:
    """The episode's Score: the sum (or last) of its OpenEnv rewards; 0 with ``rejected`` for ``problem``."""
    rewards = list(record.get("openenv_rewards") or ())
    total = sum(float(r) for r in rewards if r is not None)
    value = total if mode == "sum" else float(rewards[-1] or 0.0) if rewards else 0.0
    metrics = {
        "openenv_return": total,
        "openenv_steps": float(len(rewards)),
        "done": float(bool(record.get("openenv_done"))),
        "invalid_actions": float(record.get("invalid_actions") or 0),
        "rejected": float(bool(problem)),
    }
    if problem:
        return Score.ok(0.0, metrics, reason=f"rejected: {problem}")
    return Score.ok(value, metrics, end=record.get("end"))


def forged_probes(task: Task, gold: list[Message], record: Mapping[str, Any]) -> list[Probe]:
    """Completions whose environment messages are not the environment's, built on one gold episode."""
    sample = {"prompt": task.prompt, "info": dict(task.info)}
    won = {"role": "user", "content": "correct, you win"}
    last = gold[-1] if gold else {"role": "assistant", "content": ""}
    return [
        Probe(
            "invented-win-no-record",
            "forged-observation",
            {**sample, "completion": [{"role": "assistant", "content": "I have won."}, won, last]},
            "an environment message the environment never wrote, in a sample scored without its record",
        ),
        Probe(
            "goes-on-after-done",
            "forged-observation",
            {**sample, "completion": [*gold, won, last]},
            "more turns after the episode ended, scored without the record (replayed)",
        ),
        Probe(
            "tampered-record-transcript",
            "forged-observation",
            {**sample, "completion": [*gold, won, last], "info": {**task.info, "episode": dict(record)}},
            "a real record of the gold episode with messages added to the completion",
        ),
    ]


# ---- sessions: one OpenEnv environment each -------------------------------------------------------------
def _quiet(close: Callable[[], Any]) -> None:
    try:
        close()
    except Exception:  # noqa: BLE001 - closing a broken environment or a dead connection is best effort
        pass


def _reward(value: Any) -> float | None:
    return None if value is None else float(value)


class LocalSession:
    """An instance of the OpenEnv Environment class, in this process."""

    def __init__(
        self,
        factory: Callable[..., Any],
        kwargs: Mapping[str, Any],
        action_class: Callable[[type | None], Any],
        target: str,
    ) -> None:
        try:
            self.env = factory(**kwargs)
        except Exception as exc:  # noqa: BLE001 - the environment's constructor failed
            raise EnvFailure(f"{target}({dict(kwargs)}) raised {type(exc).__name__}: {exc}") from exc
        self.action_class = action_class(type(self.env))
        if self.action_class is None:
            raise EnvFailure(
                f"cannot tell the Action class of {type(self.env).__name__}: subclass "
                "Environment[MyAction, MyObservation, State], annotate step(action: MyAction) or set action_class"
            )
        self._finalizer = weakref.finalize(self, _quiet, self.env.close)

    def action_schema(self) -> dict[str, Any]:
        return self.action_class.model_json_schema()

    def reset(self, kwargs: Mapping[str, Any]) -> StepResult:
        """``reset`` with the keywords its signature takes (as OpenEnv's server passes them)."""
        params = inspect.signature(self.env.reset).parameters
        takes_all = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
        return self._result(
            "reset", lambda: self.env.reset(**{k: v for k, v in kwargs.items() if takes_all or k in params})
        )

    def step(self, fields: Mapping[str, Any]) -> StepResult:
        from pydantic import ValidationError

        try:
            action = self.action_class.model_validate(dict(fields))
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(map(str, e['loc'])) or 'action'}: {e['msg']}" for e in exc.errors()
            )
            raise InvalidAction(f"{self.action_class.__name__} rejects it ({problems})") from exc
        return self._result("step", lambda: self.env.step(action))

    def _result(self, what: str, call: Callable[[], Any]) -> StepResult:
        from openenv.core.env_server.types import Observation

        try:
            observation = call()
        except Exception as exc:  # noqa: BLE001 - the environment failed: the episode's status is error
            raise EnvFailure(f"{type(self.env).__name__}.{what} raised {type(exc).__name__}: {exc}") from exc
        if not isinstance(observation, Observation):
            raise EnvFailure(f"{what} returned a {type(observation).__name__}, not an OpenEnv Observation")
        try:
            fields = observation.model_dump(mode="json", exclude=set(HIDDEN_FIELDS))
        except Exception as exc:  # noqa: BLE001 - tensors, images: no JSON form
            raise EnvFailure(
                f"the observation is not JSON (only text and JSON are supported): {exc}"
            ) from exc
        return StepResult(fields, _reward(observation.reward), bool(observation.done))

    def close(self) -> None:
        self._finalizer()


SERVER_CODE_RE = re.compile(r"\(code: (?:WSErrorCode\.)?(\w+)\)")


class HttpSession:
    """One WebSocket session (its own environment instance) on a running OpenEnv server, through
    openenv-core's ``GenericEnvClient``."""

    def __init__(self, url: str, connect_timeout_s: float, step_timeout_s: float) -> None:
        from openenv.core.generic_client import GenericEnvClient

        self.url = url
        self.timeout_s = connect_timeout_s
        self.client = GenericEnvClient(
            base_url=url, connect_timeout_s=connect_timeout_s, message_timeout_s=step_timeout_s
        ).sync()
        self._finalizer = weakref.finalize(self, _quiet, self.client.close)

    def action_schema(self) -> dict[str, Any]:
        """The server's Action JSON schema (``GET /schema``)."""
        import httpx

        base = re.sub(r"^ws", "http", self.url, flags=re.I)
        try:
            response = httpx.get(f"{base}/schema", timeout=self.timeout_s)
            response.raise_for_status()
            return dict(response.json()["action"])
        except Exception as exc:  # noqa: BLE001 - down, or not an OpenEnv server
            raise EnvFailure(
                f"cannot read the action schema at {base}/schema: {type(exc).__name__}: {exc}"
            ) from exc

    def reset(self, kwargs: Mapping[str, Any]) -> StepResult:
        """Open the session and reset it. A full server (it closes a new session at once, or answers
        CAPACITY_REACHED) is asked again until ``connect_timeout_s`` has passed: the sessions of the
        episodes that just ended may still be closing."""
        deadline = time.monotonic() + self.timeout_s
        while True:
            try:
                return self._send(lambda: self.client.reset(**kwargs))
            except EnvFailure as exc:
                closed = type(exc.__cause__).__name__.startswith("ConnectionClosed")
                if not closed and "CAPACITY_REACHED" not in str(exc):
                    raise
                if time.monotonic() >= deadline:
                    raise EnvFailure(
                        f"{exc}; the server closed the new session at once: it is probably full (an "
                        "OpenEnv server serves max_concurrent_envs sessions at a time, and a rollout "
                        "opens one per episode of its batch)"
                    ) from exc.__cause__
            _quiet(self.client.disconnect)  # forget the closed connection; the next try opens a new one
            time.sleep(0.1)

    def step(self, fields: Mapping[str, Any]) -> StepResult:
        return self._send(lambda: self.client.step(dict(fields)))

    def _send(self, call: Callable[[], Any]) -> StepResult:
        try:
            result = call()
        except RuntimeError as exc:  # the server answered with an error message
            code = SERVER_CODE_RE.search(str(exc))
            if code and code.group(1) == "VALIDATION_ERROR":
                raise InvalidAction(f"the server rejects it ({exc})") from exc
            raise EnvFailure(f"the OpenEnv server at {self.url} answered: {exc}") from exc
        except Exception as exc:  # noqa: BLE001 - refused, timed out, connection lost
            raise EnvFailure(f"the OpenEnv server at {self.url} failed: {type(exc).__name__}: {exc}") from exc
        observation = result.observation if isinstance(result.observation, Mapping) else {}
        return StepResult(dict(observation), _reward(result.reward), bool(result.done))

    def close(self) -> None:
        self._finalizer()
