"""The ``tool_use`` environment: multi-turn episodes where the policy calls tools, then answers.

Episode protocol (driven by ``Environment.rollout``): the policy writes a turn; ``env_response``
reads the turn's ``<tool_call>`` blocks (or OpenAI ``tool_calls``), runs each call with a time limit,
and answers with one ``tool`` message per call. The episode ends when the policy gives a final
``<answer>...</answer>``, writes a turn with no tool call, makes too many failed calls, runs out of
turns or tokens, or passes its wall-clock limit; none can hang the batch. ``Trajectory.info`` carries
the tool counts and a ``status`` (``ok``, ``timeout``, ``error``); when the environment ended the
episode, ``info["end"]`` says why: ``answer``, ``no_tool_call``, ``too_many_tool_errors``,
``episode_timeout`` or ``tool_infrastructure_error`` (a sandbox failure: drop the episode, do not
score it 0). Otherwise ``Trajectory.stop_reason`` does (``max_turns``, ``max_total_tokens``, ``length``).
A caller that scores with ``info={**task.info, "episode": trajectory.info}`` gets status ``error``
(not a 0 reward) for an episode that ended on an infrastructure error.

Reward (``verify``): the outcome, 1.0 when the final answer matches the gold answer (the math verifier
for numbers, normalised exact match for names), plus optional weighted terms for format (one final
answer, no malformed call) and efficiency (fewer tool calls). Tool-call and tool-error counts are
always in the metrics. Per-turn rewards are recorded in ``Trajectory.turn_rewards``, one per turn the environment answered
or ended (a turn cut off by ``max_turns`` has none): the fraction of the turn's calls that ran, 0.0 for
a nudged turn (``no_call_reply``), and for the ending turn 1.0 (an answer) or 0.0 (no tool call). They
are diagnostics for per-turn credit assignment, not part of the outcome.
"""

from __future__ import annotations

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
    "max_output_chars": ">= 1",
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
    max_output_chars: int = 2000
    """Longer tool results are cut."""
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

    def __post_init__(self) -> None:
        check_choices(self, where=WHERE)  # task, answer_match, sandbox
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
        self.pass_threshold = 1.0
        self.toolbox = ToolExecutor(
            self._resolve_tools(cfg.tools if cfg.tools is not None else DEFAULT_TOOLS[cfg.task or ""]),
            timeout_s=cfg.tool_timeout_s,
            max_output_chars=cfg.max_output_chars,
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
        return {
            "task": task,
            "deadline": time.monotonic() + self.config.episode_timeout_s,
            "counts": _Counts(),
        }

    def env_response(self, messages: list[Message], state: dict[str, Any]) -> EnvStep:
        """Run the last assistant message's tool calls, or end the episode (see the module docstring)."""
        counts: _Counts = state["counts"]
        last = messages[-1]
        text = last.get("content") or ""
        if ANSWER_RE.search(text):  # even past the deadline: nothing is left to run
            return self._end(counts, "ok", "answer", reward=1.0)
        if time.monotonic() > state["deadline"]:
            return self._end(counts, "timeout", "episode_timeout", reward=None)
        calls = parse_tool_calls(last)
        state["turns"] = state.get("turns", 0) + 1
        if not calls and self.config.no_call_reply is None:
            return self._end(counts, "ok", "no_tool_call", reward=0.0)
        if state["turns"] >= self.max_turns:  # the rollout stops here (max_turns): nobody would read a reply
            return EnvStep((), False, None, {"status": "ok", **counts.as_info()})
        if not calls:
            counts.nudges += 1
            nudge = {"role": "user", "content": self.config.no_call_reply}
            return EnvStep((nudge,), False, 0.0, {"status": "ok", **counts.as_info()})
        results = self._run_calls(calls, state["deadline"], counts)
        turn_reward = sum(r.ok for r in results) / len(results)
        if time.monotonic() > state["deadline"]:
            return self._end(counts, "timeout", "episode_timeout", reward=turn_reward)
        if any(r.status == "infra_error" for r in results):
            return self._end(counts, "error", "tool_infrastructure_error", reward=turn_reward)
        if counts.tool_errors >= self.config.max_tool_errors:
            return self._end(counts, "error", "too_many_tool_errors", reward=turn_reward)
        info = {"status": "ok", **counts.as_info()}
        return EnvStep(tuple(r.message() for r in results), False, turn_reward, info)

    def _run_calls(self, calls: list[ToolCall], deadline: float, counts: _Counts) -> list[ToolResult]:
        """Run up to ``max_calls_per_turn`` calls (later ones get an error result) and tally them."""
        results = []
        for i, call in enumerate(calls):
            if i >= self.config.max_calls_per_turn:
                error = f"only {self.config.max_calls_per_turn} tool calls are run per turn"
                call = ToolCall(call.name, call.arguments, call.id, error)
            results.append(self.toolbox.run(call, deadline=deadline))
        for r in results:
            counts.tool_calls += 1
            counts.tool_errors += not r.ok
            counts.tool_timeouts += r.status == "timeout"
            counts.parse_errors += r.status == "parse_error"
            counts.tool_time_s += r.wall_s
            counts.by_tool[r.call.name or "?"] = counts.by_tool.get(r.call.name or "?", 0) + 1
        return results

    @staticmethod
    def _end(counts: _Counts, status: str, end: str, reward: float | None) -> EnvStep:
        return EnvStep((), True, reward, {"status": status, "end": end, **counts.as_info()})

    # ---- scoring --------------------------------------------------------------------------------
    def verify(self, completion: Completion, *, answer: Any, prompt: Any, info: Mapping[str, Any]) -> Score:
        if answer is None:
            return Score.failure("invalid_input", "tool_use needs the gold answer (answer=...)")
        episode = info.get("episode")  # Trajectory.info, when the caller passes it along
        if isinstance(episode, Mapping) and episode.get("end") == "tool_infrastructure_error":
            return Score.failure(
                "error", "a tool's infrastructure failed (e.g. the sandbox); drop this episode"
            )
        final = completion_text(completion)
        found = ANSWER_RE.findall(final)
        stats = episode_stats(completion)
        mode = self.config.answer_match
        if mode == "auto":
            mode = info.get("match", "math")
        correct, reason = (
            (False, "no <answer> in the final message") if not found else _matches(found[-1], answer, mode)
        )
        format_ok = float(len(found) == 1 and stats["parse_errors"] == 0)
        efficiency = max(0.0, 1.0 - stats["tool_calls"] / self.config.max_tool_calls)
        reward = (
            float(correct)
            + self.config.format_weight * format_ok
            + self.config.efficiency_weight * efficiency
        )
        metrics = {"outcome": float(correct), "format_ok": format_ok, "efficiency": efficiency}
        metrics.update({k: float(v) for k, v in stats.items()})
        metrics["tool_error_rate"] = (
            stats["tool_errors"] / stats["tool_calls"] if stats["tool_calls"] else 0.0
        )
        return Score.ok(reward, metrics, reason=reason, extracted=found[-1].strip() if found else None)


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
    """(correct, reason). ``math`` uses the math verifier when it is installed, else exact match."""
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
