"""The ``tool_use`` environment: multi-turn episodes where the policy calls tools, then answers.

Episode protocol (driven by ``Environment.rollout``): the policy writes a turn; ``env_response``
reads the turn's ``<tool_call>`` blocks (or OpenAI ``tool_calls``), runs each call with a time limit,
and answers with one ``tool`` message per call. The episode ends when the policy gives a final
``<answer>...</answer>``, writes a turn with no tool call, makes too many failed calls, runs out of
turns or tokens, or passes its wall-clock limit; none can hang the batch. ``Trajectory.info`` carries
the tool counts and a ``status`` (``ok``, ``timeout``, ``error``); when the environment ended the
episode, ``info["end"]`` says why: ``answer``, ``no_tool_call``, ``conversation_done`` (the task's
scripted ``user_turns`` are all said), ``too_many_tool_errors``, ``episode_timeout`` or
``tool_infrastructure_error`` (a sandbox failure: drop the episode, do not score it 0).

A task may bring its own tools (``task.info["tools"]``, see ``task_tools``): every episode gets new
instances, so the samples of a group never share a tool's state, and ``info["tool_state"]`` reports
that state after every turn; ``task.info["expected_state"]`` then makes the outcome state-based. A
task's ``user_turns`` are appended one by one after each assistant turn without calls. Otherwise ``Trajectory.stop_reason`` does (``max_turns``, ``max_total_tokens``, ``length``).
A caller that scores with ``info={**task.info, "episode": trajectory.info}`` gets status ``error``
(not a 0 reward) for an episode that ended on an infrastructure error.

The environment keeps its own record of the episode in ``Trajectory.info``: ``transcript``, a digest
of every message it appended (tool results, user turns, nudges), and ``policy_turns``. Tool results
are the environment's, never the policy's: ``verify`` scores 0 a completion whose tool and user
messages are not the recorded ones (without a record, e.g. a sample built by hand, it replays the
calls through ``env_response``: ``transcript_check``), one that goes on after its answer or past
``max_turns``, an answer turn that also calls a tool (the call never ran), an assistant message that
writes a tool result itself (``<tool_response>``, or "Tool result: X" where no tool returned X), and
several different answers. docs/hacking.md lists the exploits these rules defeat.

Reward (``verify``): the outcome, 1.0 when the final answer matches the gold answer (the math verifier
for numbers, normalised exact match for names; where the gold answer is a number, the answer must hold
exactly one number, so restating the question's expression is not an answer), plus optional weighted
terms for format (one final answer, no malformed call) and efficiency (fewer tool calls, counted only
for a correct outcome: not calling a tool and guessing is not efficient). A completion broken by one
of the rules above scores 0.0 in total (metric ``rejected``, and ``reason``). Tool-call and tool-error counts are
always in the metrics. Per-turn rewards are recorded in ``Trajectory.turn_rewards``, one per turn the environment answered
or ended (a turn cut off by ``max_turns`` has none): the fraction of the turn's calls that ran, 0.0 for
a nudged turn (``no_call_reply``), and for the ending turn 1.0 (an answer) or 0.0 (no tool call). They
are diagnostics for per-turn credit assignment, not part of the outcome.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from rewardkit.config import bad_value, check_choices, check_ranges
from rewardkit.envs.base import Environment, EnvStep
from rewardkit.sandbox import SandboxKind
from rewardkit.tools.execute import ToolExecutor, ToolResult
from rewardkit.tools.parse import CLOSE_TAG, OPEN_TAG, ToolCall, parse_tool_calls
from rewardkit.tools.schema import Tool
from rewardkit.types import Completion, Message, Score, Task, completion_text

ANSWER_RE = re.compile(r"<answer>(.*?)</answer>", re.S)
_CALL_BLOCK_RE = re.compile(re.escape(OPEN_TAG) + r".*?(?:" + re.escape(CLOSE_TAG) + r"|$)", re.S)
TOOL_MARKUP_RE = re.compile(r"</?tool_response>|<\|im_start\|>|<\|im_end\|>")
"""Chat-template markup of a tool result: never in honest assistant text."""
CLAIMED_RESULT_RE = re.compile(
    r"^[ \t]*(?:tool[ _-]?(?:result|output|response)|observation)[ \t]*:[ \t]*(.+?)[ \t]*$", re.I | re.M
)
"""A line in which the assistant quotes a tool's result ("Tool result: 42")."""
NUMBER_RE = re.compile(r"[-+]?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?")
_SEPARATOR_RE = re.compile(r"(?<=\d)[,_](?=\d{3}(?!\d))")
BUILTIN_TOOLS = ("calculator", "python", "search")
DEFAULT_TOOLS = {"calculator": ("calculator",), "lookup": ("search",)}
WHERE = "environment 'tool_use'"
_RANGES = {
    "max_turns": ">= 1",
    "max_total_tokens": ">= 1",
    "episode_timeout_s": "> 0",
    "tool_timeout_s": "> 0",
    "max_calls_per_turn": ">= 1",
    "max_tool_errors": ">= 1",
    "max_output_chars": ">= 16",
    "response_workers": ">= 1",
    "format_weight": ">= 0",
    "efficiency_weight": ">= 0",
    "max_tool_calls": ">= 1",
    "n_train": ">= 1",
    "n_test": ">= 1",
}
"""ToolUseConfig's numeric fields and their ranges (``rewardkit.config.in_range`` rules; None passes)."""


@dataclass(frozen=True)
class ToolUseConfig:
    """Configuration of ``load_env("tool_use", ...)``; the remaining keywords go to ``Environment``."""

    task: Literal["calculator", "lookup"] | None = "calculator"
    """Built-in task: ``calculator`` or ``lookup``; None when a subclass supplies ``tasks()``."""
    tools: tuple[Any, ...] | None = None
    """Tools: ``Tool`` objects, typed functions, or built-in names (``calculator``, ``python``,
    ``search``). None picks the task's default (``calculator`` or ``search``)."""
    max_turns: int = 6
    """Policy turns per episode, the final answer included."""
    max_total_tokens: int | None = 4096
    """Completion tokens (policy and environment) after which the episode stops."""
    episode_timeout_s: float = 120.0
    """Wall-clock limit of one episode, generation included; past it the episode ends with ``timeout``."""
    tool_timeout_s: float = 5.0
    """Default per-call limit (a Tool's own ``timeout_s`` wins)."""
    max_calls_per_turn: int = 4
    """Calls past this in one turn are not run; they get an error result."""
    max_tool_errors: int = 3
    """Failed calls (malformed, unknown tool, bad arguments, exception, timeout) that end the episode."""
    max_output_chars: int | None = 2000
    """Longer tool results are cut, with a marker saying how much (None: never)."""
    response_workers: int = 8
    """Episodes whose tool calls run at once (threads; each episode's calls stay in order): tools that
    wait (a sandbox, a search) then overlap across the batch. 1: one episode after another."""
    argument_policy: Literal["strict", "coerce", "pass_through"] = "strict"
    """How tool arguments are checked against the schemas (``rewardkit.tools.execute``): ``strict``
    (as written), ``coerce`` (obvious string/number forms converted first) or ``pass_through`` (not
    checked: the function is called as the model wrote the call, as a reference executor would)."""
    no_call_reply: str | None = None
    """None: a turn with neither a tool call nor a final answer ends the episode. A string: that text
    goes back as a user message instead (a nudge such as "Call a tool or give <answer>...</answer>."),
    and the episode goes on until ``max_turns``."""
    answer_match: Literal["auto", "math", "exact"] = "auto"
    """``math`` (math verifier), ``exact`` (normalised text) or ``auto`` (each task says which)."""
    format_weight: float = 0.0
    """Weight of the format term: 1 when there is exactly one final answer and no malformed call."""
    efficiency_weight: float = 0.0
    """Weight of the efficiency term ``max(0, 1 - tool_calls / max_tool_calls)``."""
    max_tool_calls: int = 8
    """Budget of the efficiency term."""
    n_train: int = 2000
    """Calculator tasks in the train split (lookup has a fixed size: 4 questions per city)."""
    n_test: int = 200
    """Calculator tasks in the test split."""
    seed: int = 0
    """Seed of the generated tasks and knowledge base."""
    sandbox: SandboxKind = "local"
    """Sandbox kind of the ``python`` tool: ``local`` or ``docker``."""
    transcript_check: Literal["replay", "record", "off"] = "replay"
    """How ``verify`` makes sure the tool results in a completion are the environment's: always against
    the episode's record (``info["episode"]["transcript"]``) when the sample has one; without one,
    ``replay`` runs the completion's calls again through ``env_response`` (fresh tools) and compares,
    ``record`` trusts it, ``off`` never checks (not even a record). Tools whose results change from
    run to run (a clock, a live search) need ``record`` for samples scored without their episode."""

    def __post_init__(self) -> None:
        check_choices(self, where=WHERE)  # task, answer_match, sandbox, transcript_check
        if self.task is None and self.tools is None:
            raise bad_value(
                WHERE, "tools", None, "a list with task=None: pass tools=[...] (there is no default tool set)"
            )
        check_ranges(self, _RANGES, where=WHERE)


@dataclass
class _Counts:
    """Per-episode tallies, kept in the episode state and reported in ``Trajectory.info``."""

    tool_calls: int = 0
    tool_errors: int = 0
    tool_timeouts: int = 0
    parse_errors: int = 0
    tool_time_s: float = 0.0
    nudges: int = 0
    by_tool: dict[str, int] = field(default_factory=dict)

    def as_info(self) -> dict[str, Any]:
        return {
            "tool_calls": self.tool_calls,
            "tool_errors": self.tool_errors,
            "tool_timeouts": self.tool_timeouts,
            "parse_errors": self.parse_errors,
            "tool_time_s": round(self.tool_time_s, 4),
            "nudges": self.nudges,
            "calls_by_tool": dict(self.by_tool),
        }


class ToolUseEnv(Environment):
    """Multi-turn tool use with an outcome reward. See ``ToolUseConfig`` for the options."""

    name = "tool_use"
    correctness_metric = "outcome"
    Config = ToolUseConfig

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        cfg = self.config
        self.max_turns = cfg.max_turns  # type: ignore[misc]
        self.max_total_tokens = cfg.max_total_tokens
        self.response_workers = cfg.response_workers
        self.pass_threshold = 1.0
        self.toolbox = ToolExecutor(
            self._resolve_tools(cfg.tools if cfg.tools is not None else DEFAULT_TOOLS[cfg.task or ""]),
            timeout_s=cfg.tool_timeout_s,
            max_output_chars=cfg.max_output_chars,
            argument_policy=cfg.argument_policy,
        )
        self._tasks: dict[str, list[Task]] = {}

    def __getstate__(self) -> dict[str, Any]:
        state = super().__getstate__()
        state["_tasks"] = {}  # regenerated on demand: no need to ship thousands of prompts to each worker
        return state

    # ---- tools and tasks ------------------------------------------------------------------------
    def _resolve_tools(self, specs: Sequence[Any]) -> list[Tool | Callable[..., Any]]:
        from rewardkit.tools import builtin

        resolved: list[Tool | Callable[..., Any]] = []
        for spec in specs:
            if spec == "calculator":
                resolved.append(builtin.calculator_tool())
            elif spec == "python":
                resolved.append(builtin.python_tool(sandbox=self.config.sandbox))
            elif spec == "search":
                resolved.append(builtin.search_tool(self._documents()))
            elif isinstance(spec, str):
                raise ValueError(f"unknown built-in tool {spec!r}; built-in tools: {BUILTIN_TOOLS}")
            else:
                resolved.append(spec)
        return resolved

    def _documents(self) -> list[tuple[str, str]]:
        from rewardkit.tools.tasks import documents, knowledge_base

        return documents(knowledge_base(self.config.seed))

    @property
    def tools(self) -> dict[str, Tool]:
        return self.toolbox.tools

    def system_prompt(self) -> str:
        """How to call tools and answer, followed by the tools' JSON schemas (one per line)."""
        schemas = "\n".join(json.dumps(s, ensure_ascii=False) for s in self.toolbox.schemas())
        return (
            "You can call tools. To call one, write\n"
            f'{OPEN_TAG}{{"name": "<tool name>", "arguments": {{<arguments as JSON>}}}}{CLOSE_TAG}\n'
            "Each result comes back in a tool message. When you know the answer, reply with "
            "<answer>your final answer</answer> and nothing else.\n\n"
            f"Tools:\n{schemas}"
        )

    def make_task(
        self,
        question: str,
        answer: Any,
        *,
        gold_calls: Sequence[tuple[str, Mapping[str, Any]]] = (),
        match: str = "math",
        id: str = "",
    ) -> Task:
        """A Task whose prompt shows this environment's tools. ``gold_calls`` are (tool, arguments)
        pairs that solve it; ``gold_examples`` runs them to build a passing episode."""
        if match not in ("math", "exact"):
            raise ValueError(f"match must be 'math' or 'exact', got {match!r}")
        prompt = ({"role": "system", "content": self.system_prompt()}, {"role": "user", "content": question})
        calls = [[name, dict(arguments)] for name, arguments in gold_calls]
        return Task(prompt, str(answer), {"match": match, "gold_calls": calls}, id)

    def tasks(self, split: str = "train") -> Sequence[Task]:
        from rewardkit.tools import tasks as generated

        cfg = self.config
        if cfg.task is None:
            raise NotImplementedError("task=None: a subclass must implement tasks()")
        if split not in self._tasks:
            if cfg.task == "calculator":
                n = cfg.n_train if split == "train" else cfg.n_test
                problems = generated.calculator_problems(split, n, cfg.seed)
            else:
                problems = generated.lookup_problems(split, cfg.seed)
            self._tasks[split] = [
                self.make_task(p.question, p.answer, gold_calls=p.gold_calls, match=p.match, id=p.id)
                for p in problems
            ]
        return self._tasks[split]

    def gold_examples(self) -> list[dict[str, Any]]:
        """Episodes that call the gold tools (the real tools run here), then answer correctly."""
        samples = []
        for task in list(self.tasks("train"))[:3]:
            calls = task.info.get("gold_calls") or []
            if not calls:
                continue
            messages: list[Message] = []
            for i, (name, arguments) in enumerate(calls):
                call = ToolCall(name, dict(arguments), f"call_{i}")
                body = json.dumps({"name": name, "arguments": call.arguments}, ensure_ascii=False)
                messages.append({"role": "assistant", "content": f"{OPEN_TAG}{body}{CLOSE_TAG}"})
                messages.append(self.toolbox.run(call).message())
            messages.append({"role": "assistant", "content": f"<answer>{task.answer}</answer>"})
            samples.append(
                {"completion": messages, "answer": task.answer, "prompt": task.prompt, "info": task.info}
            )
        return samples

    # ---- the episode ----------------------------------------------------------------------------
    def initial_state(self, task: Task) -> dict[str, Any]:
        """A fresh episode: its deadline and tallies, its scripted user turns, and, for a task with tools
        of its own (``task.info["tools"]``, see ``task_tools``), new instances of them: no two samples
        of a group share a tool's state."""
        state: dict[str, Any] = {
            "task": task,
            "deadline": time.monotonic() + self.config.episode_timeout_s,
            "counts": _Counts(),
            "user_turns": list(task.info.get("user_turns") or ()),
            "scripted": bool(task.info.get("user_turns")),
            "transcript": [],
            "policy_turns": 0,
        }
        spec = task.info.get("tools")
        if spec:
            tools, state["tool_object"] = task_tools(spec)
            state["toolbox"] = ToolExecutor(
                [*self.toolbox.tools.values(), *tools],
                timeout_s=self.config.tool_timeout_s,
                max_output_chars=self.config.max_output_chars,
                argument_policy=self.config.argument_policy,
            )
        return state

    def env_response(self, messages: list[Message], state: dict[str, Any]) -> EnvStep:
        """Run the last assistant message's tool calls, or end the episode (see the module docstring);
        the messages it appends are added to the episode's record (``info["transcript"]``)."""
        state["policy_turns"] = state.get("policy_turns", 0) + 1
        step = self._respond(messages, state)
        record = state.setdefault("transcript", [])
        record += [message_digest(m) for m in step.messages]
        info = {**step.info, "transcript": list(record), "policy_turns": state["policy_turns"]}
        return dataclasses.replace(step, info=info)

    def _respond(self, messages: list[Message], state: dict[str, Any]) -> EnvStep:
        counts: _Counts = state["counts"]
        last = messages[-1]
        text = last.get("content") or ""
        if ANSWER_RE.search(text):  # even past the deadline: nothing is left to run
            return self._end(state, "ok", "answer", reward=1.0)
        if time.monotonic() > state["deadline"]:
            return self._end(state, "timeout", "episode_timeout", reward=None)
        calls = parse_tool_calls(last)
        state["turns"] = state.get("turns", 0) + 1
        if not calls and state["scripted"] and not state["user_turns"]:  # the user has said everything
            return self._end(state, "ok", "conversation_done", reward=0.0)
        if not calls and not state["user_turns"] and self.config.no_call_reply is None:
            return self._end(state, "ok", "no_tool_call", reward=0.0)
        if state["turns"] >= self.max_turns:  # the rollout stops here (max_turns): nobody would read a reply
            return EnvStep((), False, None, self._info(state, "ok"))
        if not calls:  # the assistant's turn is over: the next scripted user turn, or a nudge
            if state["user_turns"]:
                user = {"role": "user", "content": str(state["user_turns"].pop(0))}
                return EnvStep((user,), False, 0.0, self._info(state, "ok"))
            counts.nudges += 1
            nudge = {"role": "user", "content": self.config.no_call_reply}
            return EnvStep((nudge,), False, 0.0, self._info(state, "ok"))
        results = self._run_calls(calls, state, counts)
        turn_reward = sum(r.ok for r in results) / len(results)
        if time.monotonic() > state["deadline"]:
            return self._end(state, "timeout", "episode_timeout", reward=turn_reward)
        if any(r.status == "infra_error" for r in results):
            return self._end(state, "error", "tool_infrastructure_error", reward=turn_reward)
        if counts.tool_errors >= self.config.max_tool_errors:
            return self._end(state, "error", "too_many_tool_errors", reward=turn_reward)
        return EnvStep(tuple(r.message() for r in results), False, turn_reward, self._info(state, "ok"))

    def _run_calls(self, calls: list[ToolCall], state: dict[str, Any], counts: _Counts) -> list[ToolResult]:
        """Run up to ``max_calls_per_turn`` calls (later ones get an error result) and tally them; with
        the episode's own tools when the task has some."""
        toolbox = state.get("toolbox", self.toolbox)
        results = []
        for i, call in enumerate(calls):
            if i >= self.config.max_calls_per_turn:
                error = f"only {self.config.max_calls_per_turn} tool calls are run per turn"
                call = ToolCall(call.name, call.arguments, call.id, error)
            results.append(toolbox.run(call, deadline=state["deadline"]))
        for r in results:
            counts.tool_calls += 1
            counts.tool_errors += not r.ok
            counts.tool_timeouts += r.status == "timeout"
            counts.parse_errors += r.status == "parse_error"
            counts.tool_time_s += r.wall_s
            counts.by_tool[r.call.name or "?"] = counts.by_tool.get(r.call.name or "?", 0) + 1
        return results

    def _end(self, state: dict[str, Any], status: str, end: str, reward: float | None) -> EnvStep:
        return EnvStep((), True, reward, {**self._info(state, status), "end": end})

    @staticmethod
    def _info(state: dict[str, Any], status: str) -> dict[str, Any]:
        """What ``Trajectory.info`` says of the episode so far: status, tallies, the tools' state."""
        info = {"status": status, **state["counts"].as_info()}
        if "tool_object" in state:
            info["tool_state"] = tool_state(state["tool_object"])
        return info

    # ---- scoring --------------------------------------------------------------------------------
    def verify(self, completion: Completion, *, answer: Any, prompt: Any, info: Mapping[str, Any]) -> Score:
        expected_state = info.get("expected_state")
        if answer is None and expected_state is None:
            return Score.failure(
                "invalid_input", "tool_use needs the gold answer (answer=...) or info['expected_state']"
            )
        episode = info.get("episode")  # Trajectory.info, when the caller passes it along
        if isinstance(episode, Mapping) and episode.get("end") == "tool_infrastructure_error":
            return Score.failure(
                "error", "a tool's infrastructure failed (e.g. the sandbox); drop this episode"
            )
        if isinstance(completion, str) and answer is not None:
            return Score.failure(
                "invalid_input",
                "tool_use scores an episode's messages; a plain string cannot show any tool result",
            )
        if not isinstance(completion, str):
            completion = _strip_prompt(completion, prompt)
            broken = self._broken_rule(completion, answer=answer, prompt=prompt, info=info)
            if broken:
                return self._rejected(completion, broken)
        final = completion_text(completion)
        found = ANSWER_RE.findall(_CALL_BLOCK_RE.sub("", final))
        stats = episode_stats(completion)
        if len({_normalize(f) for f in found}) > 1:
            return self._rejected(completion, f"{len(found)} different answers in the final message")
        mode = self.config.answer_match
        if mode == "auto":
            mode = info.get("match", "math")
        correct, reason = True, ""
        if answer is not None:
            correct, reason = (
                (False, "no <answer> in the final message")
                if not found
                else _matches(found[-1], answer, mode)
            )
        if expected_state is not None and correct:  # a state-based outcome: "the file exists"
            final_state = episode.get("tool_state") if isinstance(episode, Mapping) else None
            correct, reason = _state_matches(final_state, expected_state)
        format_ok = float(len(found) == 1 and stats["parse_errors"] == 0)
        efficiency = max(0.0, 1.0 - stats["tool_calls"] / self.config.max_tool_calls) if correct else 0.0
        reward = (
            float(correct)
            + self.config.format_weight * format_ok
            + self.config.efficiency_weight * efficiency
        )
        metrics = {
            "outcome": float(correct),
            "format_ok": format_ok,
            "efficiency": efficiency,
            "rejected": 0.0,
        }
        metrics.update({k: float(v) for k, v in stats.items()})
        metrics["tool_error_rate"] = (
            stats["tool_errors"] / stats["tool_calls"] if stats["tool_calls"] else 0.0
        )
        return Score.ok(reward, metrics, reason=reason, extracted=found[-1].strip() if found else None)

    def _rejected(self, completion: Sequence[Message], reason: str) -> Score:
        """The score of a completion that breaks a rule of the episode: 0.0, no term of any kind."""
        stats = episode_stats(completion)
        metrics = {"outcome": 0.0, "format_ok": 0.0, "efficiency": 0.0, "rejected": 1.0}
        metrics.update({k: float(v) for k, v in stats.items()})
        metrics["tool_error_rate"] = (
            stats["tool_errors"] / stats["tool_calls"] if stats["tool_calls"] else 0.0
        )
        return Score.ok(0.0, metrics, reason=f"rejected: {reason}", extracted=None)

    def _broken_rule(
        self, completion: Sequence[Message], *, answer: Any, prompt: Any, info: Mapping[str, Any]
    ) -> str:
        """Why ``completion`` cannot be an honest episode of this environment, or "" (module docstring)."""
        assistant = [i for i, m in enumerate(completion) if m["role"] == "assistant"]
        if len(assistant) > self.max_turns:
            return f"{len(assistant)} assistant turns, past max_turns={self.max_turns}"
        results = [str(m.get("content") or "") for m in completion if m["role"] == "tool"]
        answered = [i for i in assistant if ANSWER_RE.search(_visible(completion[i]))]
        if answered and answered[0] != assistant[-1]:
            return "the completion goes on after its answer (the episode ends at the answer)"
        if answered and parse_tool_calls(completion[assistant[-1]]):
            return "the answer turn also calls a tool: that call never ran, its result can only be invented"
        for i in assistant:
            text = str(completion[i].get("content") or "")
            if TOOL_MARKUP_RE.search(text):
                return f"assistant turn {assistant.index(i) + 1} writes tool-result markup itself"
            for claimed in CLAIMED_RESULT_RE.findall(text):
                if not any(_normalize(claimed) in _normalize(r) for r in results):
                    return f"assistant turn {assistant.index(i) + 1} quotes a tool result no tool returned"
        if self.config.transcript_check == "off":
            return ""
        episode = info.get("episode")
        record = episode.get("transcript") if isinstance(episode, Mapping) else None
        if isinstance(record, list):
            return _record_mismatch(completion, episode, record, len(assistant))
        if self.config.transcript_check == "replay":
            return self._replay(completion, answer=answer, prompt=prompt, info=info)
        return ""

    def _replay(
        self, completion: Sequence[Message], *, answer: Any, prompt: Any, info: Mapping[str, Any]
    ) -> str:
        """Run the completion's assistant turns through ``env_response`` with fresh tools: "" when every
        tool and user message is the one the environment gives, else what differs."""
        task_info = {k: v for k, v in info.items() if k != "episode"}
        history = [dict(m) for m in prompt] if isinstance(prompt, list | tuple) else []
        task = Task(tuple(history) if history else str(prompt or ""), answer, task_info)
        try:
            state = self.initial_state(task)
        except Exception as exc:  # noqa: BLE001 - the task's own tools cannot be built here
            return f"the episode cannot be replayed ({type(exc).__name__}: {exc})"
        i, turn = 0, 0
        while i < len(completion):
            message = completion[i]
            if message["role"] != "assistant":
                return f"message {i + 1} ({message['role']}) answers no assistant turn"
            turn += 1
            history.append(dict(message))
            j = i + 1
            while j < len(completion) and completion[j]["role"] != "assistant":
                j += 1
            given = completion[i + 1 : j]
            if j == len(completion) and not given:
                return ""  # the last turn: whatever the environment did next is not in the completion
            step = self.env_response(list(history), state)
            if step.done and j < len(completion):
                return (
                    f"the episode ended at turn {turn} ({step.info.get('end')}), yet the completion goes on"
                )
            if len(given) != len(step.messages) or not all(
                _same_message(g, m) for g, m in zip(given, step.messages)
            ):
                return f"the messages after turn {turn} are not the ones the environment gives"
            history += [dict(m) for m in given]
            i = j
        return ""

    # ---- exploit probes and signals (docs/hacking.md) ----------------------------------------------
    exploit_patterns = {
        "tool_response_markup": r"</?tool_response>|<\|im_start\|>\s*tool",
        "claimed_tool_result": r"(?im)^[ \t]*(?:tool[ _-]?(?:result|output|response)|observation)[ \t]*:",
        "expression_as_answer": r"<answer>[^<]*\d[\s,]*(?:\*\*|[*x×^/+]|\s-)\s*\(?\d[^<]*</answer>",
        "answer_inside_tool_call": r"<tool_call>(?:(?!</tool_call>).)*<answer>",
        "empty_answer": r"<answer>\s*</answer>",
    }

    def exploit_signals(self, completions: Sequence[Completion]) -> dict[str, float]:
        """``exploit_patterns``, and the signatures of a whole episode: a call in the answer turn,
        several answers, turns past ``max_turns``, an answer with no tool result before it."""
        signals = super().exploit_signals(completions)
        if not completions:
            return signals
        counts = dict.fromkeys(
            ("call_in_answer_turn", "several_answers", "past_max_turns", "answer_without_tool"), 0
        )
        for completion in completions:
            if isinstance(completion, str):
                messages: list[Mapping[str, Any]] = [{"role": "assistant", "content": completion}]
            else:
                messages = [m for m in completion if isinstance(m, Mapping)]
            assistant = [m for m in messages if m.get("role") == "assistant"]
            answers = [a for m in assistant for a in ANSWER_RE.findall(_visible(m))]
            last = assistant[-1] if assistant else {}
            counts["call_in_answer_turn"] += bool(ANSWER_RE.search(_visible(last)) and parse_tool_calls(last))
            counts["several_answers"] += len(answers) > 1
            counts["past_max_turns"] += len(assistant) > self.max_turns
            counts["answer_without_tool"] += bool(answers) and not any(
                m.get("role") == "tool" for m in messages
            )
        return {**signals, **{k: v / len(completions) for k, v in counts.items()}}

    def suspicious(self, sample: Mapping[str, Any], score: Score) -> str | None:
        """A pass whose answer no tool result supports: no tool ran successfully in the episode, or, for a
        task whose gold calls return the answer verbatim (calculator, lookup), the answer appears in no
        tool result of the episode (the policy computed or guessed it instead)."""
        completion = sample.get("completion")
        answer = sample.get("answer")
        if answer is None or isinstance(completion, str) or not isinstance(completion, Sequence):
            return None
        results = [
            str(m.get("content") or "")
            for m in completion
            if isinstance(m, Mapping) and m.get("role") == "tool"
        ]
        real = [r for r in results if not r.startswith("Error:")]
        if not real:
            return "passed without a single successful tool result"
        extracted = score.info.get("extracted") or str(answer)
        info = sample.get("info") or {}
        gold_results = [
            self.toolbox.run(ToolCall(str(name), dict(arguments))).content
            for name, arguments in (info.get("gold_calls") or [])
            if str(name) in self.toolbox.tools
        ]
        verbatim = any(_contains_value(r, str(answer)) for r in gold_results)
        if verbatim and not any(_contains_value(r, extracted) for r in real):
            return f"the answer {extracted!r} appears in none of the episode's tool results"
        return None

    def exploit_probes(self) -> list[Any]:
        from rewardkit.envs.tool_use_probes import tool_use_probes

        return tool_use_probes(self)


def message_digest(message: Mapping[str, Any]) -> str:
    """What the episode's record keeps of a message the environment appended: a short hash of its role,
    ``tool_call_id`` and content."""
    key = [
        str(message.get("role")),
        str(message.get("tool_call_id") or ""),
        str(message.get("content") or ""),
    ]
    return hashlib.sha256(json.dumps(key, ensure_ascii=False).encode()).hexdigest()[:16]


def _record_mismatch(
    completion: Sequence[Message], episode: Mapping[str, Any], record: list[Any], n_assistant: int
) -> str:
    """ "" when the completion's non-assistant messages are exactly the recorded ones and its turns are the
    episode's (one more only when the rollout stopped it, e.g. the last turn ran out of tokens)."""
    given = [message_digest(m) for m in completion if m["role"] != "assistant"]
    if given != [str(r) for r in record]:
        return "the tool and user messages are not the ones the environment recorded for the episode"
    turns = episode.get("policy_turns")
    if isinstance(turns, int):
        allowed = (turns,) if episode.get("end") else (turns, turns + 1)
        if n_assistant not in allowed:
            return f"{n_assistant} assistant turns, the environment answered {turns}"
    return ""


def _same_message(given: Mapping[str, Any], produced: Mapping[str, Any]) -> bool:
    """A completion's message equals the one the environment gives: role and content, and the
    ``tool_call_id`` and ``name`` where the completion's message has them."""
    if given.get("role") != produced.get("role"):
        return False
    if str(given.get("content") or "") != str(produced.get("content") or ""):
        return False
    return all(given.get(k) in (None, produced.get(k)) for k in ("tool_call_id", "name"))


def _strip_prompt(completion: Sequence[Message], prompt: Any) -> tuple[Message, ...]:
    """The completion without the prompt's messages, when a caller left them in front of it."""
    messages = tuple(completion)
    if isinstance(prompt, list | tuple) and prompt and len(messages) >= len(prompt):
        if all(_same_message(m, p) for m, p in zip(messages, prompt)):
            return messages[len(prompt) :]
    n = 0  # no prompt to compare with: the conversation's opening (system and user) before any turn
    while n < len(messages) and messages[n]["role"] in ("system", "user"):
        n += 1
    return messages[n:] if n < len(messages) else messages


def _visible(message: Mapping[str, Any]) -> str:
    """An assistant message's text outside its ``<tool_call>`` blocks (where an answer may stand)."""
    return _CALL_BLOCK_RE.sub("", str(message.get("content") or ""))


def _contains_value(text: str, value: str) -> bool:
    """Whether ``value`` (a number: its digits, separators ignored; else normalised text) is in ``text``."""
    value, text = _SEPARATOR_RE.sub("", value.strip()), _SEPARATOR_RE.sub("", text)
    if NUMBER_RE.fullmatch(value):
        return any(_same_number(n, value) for n in NUMBER_RE.findall(text))
    return bool(_normalize(value)) and _normalize(value) in _normalize(text)


def _same_number(a: str, b: str) -> bool:
    try:
        return float(a) == float(b) if ("." in a + b or "e" in (a + b).lower()) else int(a) == int(b)
    except (ValueError, OverflowError):
        return a == b


def task_tools(spec: Mapping[str, Any]) -> tuple[list[Tool | Callable[..., Any]], Any]:
    """A task's own tools, new for each episode, from ``task.info["tools"]``:
    ``{"factory": "module:name", "kwargs": {...}}``, where ``name`` is a class or a function called with
    ``kwargs``. It returns a list of tools (``Tool`` objects or typed functions), or an object whose public
    methods are the tools (typed, with docstrings: their schema is derived as for any tool), such as a
    file system or a trading account. Returns the tools and the object (None for a list), whose state
    ``tool_state`` reports after every turn."""
    from rewardkit.imports import import_object

    if not isinstance(spec, Mapping) or "factory" not in spec:
        raise ValueError(
            f"task.info['tools'] must be {{'factory': 'module:name', 'kwargs': {{...}}}}, got {spec!r}"
        )
    made = import_object(str(spec["factory"]), what="task.info['tools'] factory")(
        **dict(spec.get("kwargs") or {})
    )
    if isinstance(made, list | tuple):
        return list(made), None
    methods = [
        getattr(made, name)
        for name in sorted(dir(type(made)))
        if not name.startswith("_") and name != "state" and callable(getattr(made, name))
    ]
    return methods, made


def tool_state(obj: Any) -> Any:
    """What a stateful tool object reports of itself: its ``state()`` when it has one, else its public
    attributes; made JSON-safe (anything else becomes its ``repr``), so it travels in ``Trajectory.info``."""
    state = (
        obj.state()
        if callable(getattr(obj, "state", None))
        else {k: v for k, v in vars(obj).items() if not k.startswith("_")}
    )
    return json.loads(json.dumps(state, default=repr))


def _state_matches(state: Any, expected: Any, path: str = "state") -> tuple[bool, str]:
    """Whether ``expected`` is contained in the final tool ``state``: every key of a mapping present with
    a matching value (recursively; other keys may exist), lists and scalars equal."""
    if isinstance(expected, Mapping):
        if not isinstance(state, Mapping):
            return False, f"{path}: expected a mapping, got {state!r}"
        for key, value in expected.items():
            if key not in state:
                return False, f"{path}.{key}: missing"
            ok, reason = _state_matches(state[key], value, f"{path}.{key}")
            if not ok:
                return False, reason
        return True, ""
    if state != expected:
        return False, f"{path}: expected {expected!r}, got {state!r}"
    return True, ""


def episode_stats(completion: Completion) -> dict[str, int]:
    """Tool calls, failed tool results, malformed calls and policy turns in a completion."""
    if isinstance(completion, str):
        calls = parse_tool_calls(completion)
        return {
            "tool_calls": len(calls),
            "tool_errors": sum(not c.ok for c in calls),
            "parse_errors": sum(not c.ok for c in calls),
            "turns": 1,
        }
    calls = [c for m in completion if m["role"] == "assistant" for c in parse_tool_calls(m)]
    tool_errors = sum(
        1 for m in completion if m["role"] == "tool" and (m.get("content") or "").startswith("Error:")
    )
    return {
        "tool_calls": len(calls),
        "tool_errors": tool_errors,
        "parse_errors": sum(not c.ok for c in calls),
        "turns": sum(1 for m in completion if m["role"] == "assistant"),
    }


def _normalize(text: str) -> str:
    text = re.sub(r"(?<=\d)[,_](?=\d{3}\b)", "", text.strip().lower())
    return " ".join(text.rstrip(".").split())


def _matches(predicted: str, answer: Any, mode: str) -> tuple[bool, str]:
    """(correct, reason). ``math`` uses the math verifier when it is installed, else exact match. Where
    the gold answer is a number, the answer must hold exactly one number (thousands separators allowed),
    and that number is what is compared: an expression (the question restated) or a list of candidates
    is not an answer."""
    if mode == "math" and NUMBER_RE.fullmatch(str(answer).strip()):
        numbers = NUMBER_RE.findall(_SEPARATOR_RE.sub("", predicted))
        if len(numbers) != 1:
            return False, f"the answer must be one number, it holds {len(numbers)}"
        predicted = numbers[0]
    if mode == "math":
        try:
            from rewardkit.verifiers.math import verify_math
        except ImportError:
            mode = "exact"
        else:
            verdict = verify_math(f"<answer>{predicted}</answer>", answer)
            return verdict.correct, verdict.reason
    correct = _normalize(predicted) == _normalize(str(answer))
    return correct, "" if correct else "not equal to the gold answer"
