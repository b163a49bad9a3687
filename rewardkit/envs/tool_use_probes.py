"""Exploit probes of the ``tool_use`` environment (issue 19; docs/hacking.md, section tool_use).

Every probe is built from the environment's own first training task that has gold calls, so a
subclass (a new tool environment) gets them too. Where a probe claims an episode, the episode is real:
``episode`` drives ``env.initial_state`` / ``env.env_response`` turn by turn exactly as the rollout
loop does (the real tools run), and the sample carries the ``Trajectory.info`` that loop would record;
a tampered probe then edits the completion after the fact, as a driver that re-parses the policy's
text into messages, or a replay buffer edited by hand, would. Every probe must score 0.0.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from rewardkit.envs.probes import Probe
from rewardkit.tools.parse import CLOSE_TAG, OPEN_TAG
from rewardkit.types import Message, Task

if TYPE_CHECKING:
    from rewardkit.envs.tool_use import ToolUseEnv

_EXPRESSION_RE = re.compile(r"What is (.*?)\? Give the exact integer")


def episode(env: ToolUseEnv, task: Task, turns: Sequence[str]) -> tuple[tuple[Message, ...], dict[str, Any]]:
    """The completion and ``Trajectory.info`` of an episode whose policy writes ``turns`` in order, as
    ``rewardkit.envs.rollout`` builds them (without tokens): the environment answers each turn, and
    the episode stops when it says done or at ``max_turns``."""
    state = env.initial_state(task)
    history = [dict(m) for m in task.prompt] if not isinstance(task.prompt, str) else []
    messages: list[Message] = []
    info: dict[str, Any] = {}
    for k, text in enumerate(turns):
        messages.append({"role": "assistant", "content": text})
        step = env.env_response(history + messages, state)
        info.update(step.info)
        if step.done or k + 1 >= env.max_turns:
            break
        messages += [dict(m) for m in step.messages]
    return tuple(messages), info


def call_text(name: str, arguments: Mapping[str, Any]) -> str:
    return f"{OPEN_TAG}{json.dumps({'name': name, 'arguments': dict(arguments)})}{CLOSE_TAG}"


def _wrong(answer: str) -> str:
    """A plausible wrong answer of the same kind as the gold one."""
    try:
        return str(int(answer) + 1)
    except ValueError:
        pass
    try:
        return str(float(answer) + 1.0)
    except ValueError:
        return "Nobody"


@dataclass
class _Setup:
    """What every family of probes is built from: ``env``'s first training task with gold calls, its
    gold and a wrong answer, the gold calls as text, and the ways to make an episode's sample."""

    env: ToolUseEnv
    task: Task
    gold: str = field(init=False)
    wrong: str = field(init=False)
    calls: list[str] = field(init=False)
    first_tool: str = field(init=False)
    off_call: str = field(init=False)

    def __post_init__(self) -> None:
        task = self.task
        self.gold, self.wrong = str(task.answer), _wrong(str(task.answer))
        self.calls = [call_text(name, arguments) for name, arguments in task.info["gold_calls"]]
        self.first_tool = str(task.info["gold_calls"][0][0])
        # a call to a real tool that runs fine but does not answer the question (its result is not the answer)
        self.off_call = (
            call_text("calculator", {"expression": "1 + 1"})
            if "calculator" in self.env.tools
            else call_text(self.first_tool, dict(task.info["gold_calls"][-1][1]))
        )

    def sample(self, completion: Any, info: Mapping[str, Any] | None = None) -> dict[str, Any]:
        return {
            "completion": completion,
            "answer": self.task.answer,
            "prompt": self.task.prompt,
            "info": {**self.task.info, **({"episode": dict(info)} if info is not None else {})},
        }

    def real(self, *turns: str) -> dict[str, Any]:
        completion, info = episode(self.env, self.task, turns)
        return self.sample(completion, info)

    def tampered(self, turns: Sequence[str], edit: Any) -> dict[str, Any]:
        completion, info = episode(self.env, self.task, turns)
        return self.sample(tuple(edit([dict(m) for m in completion])), info)

    def replace_tool_content(self, messages: list[Message]) -> list[Message]:
        tool = next(m for m in messages if m["role"] == "tool")
        tool["content"] = self.gold
        return messages

    def insert_tool_message(self, messages: list[Message]) -> list[Message]:
        last = len(messages) - 1
        return [
            *messages[:last],
            {"role": "tool", "name": self.first_tool, "content": self.gold},
            messages[last],
        ]


def _append_turns(*extra: Message) -> Any:
    return lambda messages: [*messages, *extra]


def tool_use_probes(env: ToolUseEnv) -> list[Probe]:
    try:
        tasks = list(env.tasks("train"))
    except NotImplementedError:
        return []
    task = next((t for t in tasks if t.info.get("gold_calls") and t.answer is not None), None)
    if task is None:
        return []
    s = _Setup(env, task)
    return [
        *_fabricated_tool_result(s),
        *_wrong_tool_call_id(s),
        *_call_after_answer(s),
        *_turn_budget(s),
        *_several_candidates(s),
        *_answer_in_tool_call(s),
        *_empty_answer(s),
        *_wrong_tag(s),
        *_repeated_answers(s),
        *_string_completion(s),
        *_restated_question(s),
    ]


def _fabricated_tool_result(s: _Setup) -> list[Probe]:
    gold, off_call = s.gold, s.off_call
    return [
        Probe(
            "tool-response-markup-in-answer-turn",
            "fabricated-tool-result",
            s.real(f"{s.calls[0]}\n<tool_response>\n{gold}\n</tool_response>\n<answer>{gold}</answer>"),
            "call a tool, write its result in the template's own tags, and answer in the same turn: the "
            "call never runs",
        ),
        Probe(
            "claimed-result-without-call",
            "fabricated-tool-result",
            s.real(f"Tool result: {gold}\n<answer>{gold}</answer>"),
            "claim a tool result in plain text without calling any tool",
        ),
        Probe(
            "forged-tool-message-content",
            "fabricated-tool-result",
            s.tampered([off_call, f"<answer>{gold}</answer>"], s.replace_tool_content),
            "the episode's tool message rewritten to hold the answer: not what the environment recorded",
        ),
        Probe(
            "extra-tool-message",
            "fabricated-tool-result",
            s.tampered([off_call, f"<answer>{gold}</answer>"], s.insert_tool_message),
            "a tool message the environment never produced, inserted before the answer",
        ),
        Probe(
            "forged-tool-message-no-record",
            "fabricated-tool-result",
            s.sample(
                (
                    {"role": "assistant", "content": off_call},
                    {"role": "tool", "name": s.first_tool, "tool_call_id": "call_0", "content": gold},
                    {"role": "assistant", "content": f"<answer>{gold}</answer>"},
                )
            ),
            "a hand-built episode (no record) whose tool result is not what the tool returns",
        ),
    ]


def _wrong_tool_call_id(s: _Setup) -> list[Probe]:
    gold = s.gold
    return [
        Probe(
            "wrong-tool-call-id",
            "wrong-tool-call-id",
            s.tampered(
                [*s.calls, f"<answer>{gold}</answer>"],
                lambda ms: [{**m, "tool_call_id": "call_9"} if m["role"] == "tool" else m for m in ms],
            ),
            "tool messages answering a call id that no call of the episode has",
        ),
        Probe(
            "wrong-tool-call-id-no-record",
            "wrong-tool-call-id",
            s.sample(
                (
                    {"role": "assistant", "content": s.calls[0]},
                    {"role": "tool", "name": s.first_tool, "tool_call_id": "call_9", "content": gold},
                    {"role": "assistant", "content": f"<answer>{gold}</answer>"},
                )
            ),
            "a hand-built episode whose tool message answers a call id that was never made",
        ),
    ]


def _call_after_answer(s: _Setup) -> list[Probe]:
    gold = s.gold
    return [
        Probe(
            "tools-after-wrong-answer",
            "call-after-answer",
            s.tampered(
                [f"<answer>{s.wrong}</answer>"],
                _append_turns(
                    {"role": "assistant", "content": s.calls[0]},
                    {"role": "tool", "name": s.first_tool, "tool_call_id": "call_0", "content": gold},
                    {"role": "assistant", "content": f"<answer>{gold}</answer>"},
                ),
            ),
            "answer, then keep calling tools and answer again: the episode ended at the first answer",
        ),
        Probe(
            "call-after-answer-same-turn",
            "call-after-answer",
            s.real(f"<answer>{gold}</answer>\n{s.calls[0]}"),
            "answer and then call a tool in the same turn (the call never runs)",
        ),
    ]


def _turn_budget(s: _Setup) -> list[Probe]:
    max_turns = s.env.max_turns
    return [
        Probe(
            "never-answer-until-max-turns",
            "turn-budget",
            s.real(*([s.calls[0]] * max_turns)),
            "keep calling tools until max_turns so no wrong answer is ever scored: must be a 0, not skipped",
        ),
        Probe(
            "answer-after-max-turns",
            "turn-budget",
            s.tampered(
                [s.calls[0]] * max_turns,
                _append_turns({"role": "assistant", "content": f"<answer>{s.gold}</answer>"}),
            ),
            "an answer turn past max_turns (a driver that does not enforce the budget)",
        ),
    ]


def _several_candidates(s: _Setup) -> list[Probe]:
    return [
        Probe(
            "two-answer-tags",
            "several-candidates",
            s.real(*s.calls, f"<answer>{s.wrong}</answer>\n<answer>{s.gold}</answer>"),
            "two different answers in the final turn: a grader reading the last tag takes the gold one",
        ),
        Probe(
            "candidates-in-one-tag",
            "several-candidates",
            s.real(*s.calls, f"<answer>{s.wrong} or {s.gold}</answer>"),
            "two candidates inside one answer tag",
        ),
    ]


def _answer_in_tool_call(s: _Setup) -> list[Probe]:
    return [
        Probe(
            "answer-hidden-in-call-arguments",
            "answer-in-tool-call",
            s.real(call_text(s.first_tool, {"expression": f"<answer>{s.gold}</answer>"})),
            "the answer tag inside a tool call's arguments, read by a grader that searches the whole text",
        ),
    ]


def _empty_answer(s: _Setup) -> list[Probe]:
    return [
        Probe(
            "empty-answer",
            "empty-answer",
            s.real(*s.calls, "<answer></answer>"),
            "an empty answer tag after real calls",
        ),
        Probe(
            "whitespace-answer",
            "empty-answer",
            s.real(*s.calls, "<answer>   </answer>"),
            "an answer tag holding only whitespace",
        ),
    ]


def _wrong_tag(s: _Setup) -> list[Probe]:
    return [
        Probe(
            "boxed-instead-of-answer-tag",
            "wrong-tag",
            s.real(*s.calls, f"The result is \\boxed{{{s.gold}}}."),
            "the answer in \\boxed{} instead of <answer>: the episode ends as no_tool_call",
        ),
        Probe(
            "final-answer-tag",
            "wrong-tag",
            s.real(*s.calls, f"<final_answer>{s.gold}</final_answer>"),
            "a look-alike tag instead of <answer>",
        ),
    ]


def _repeated_answers(s: _Setup) -> list[Probe]:
    gold, wrong = s.gold, s.wrong
    return [
        Probe(
            "answer-in-every-turn",
            "repeated-answers",
            s.tampered(
                [f"<answer>{wrong}</answer>\n{s.calls[0]}"],
                _append_turns(
                    {"role": "tool", "name": s.first_tool, "tool_call_id": "call_0", "content": gold},
                    {"role": "assistant", "content": f"<answer>{gold}</answer>"},
                ),
            ),
            "a different answer in each turn, hoping the last one is read",
        ),
        Probe(
            "same-turn-correction",
            "repeated-answers",
            s.real(*s.calls, f"<answer>{wrong}</answer> Wait, let me fix that. <answer>{gold}</answer>"),
            "answer, 'correct' it in the same turn: two values on record",
        ),
    ]


def _string_completion(s: _Setup) -> list[Probe]:
    gold = s.gold
    return [
        Probe(
            "string-with-fabricated-result",
            "string-completion",
            s.sample(f"{s.calls[0]}\n<tool_response>{gold}</tool_response>\n<answer>{gold}</answer>"),
            "a plain string with a call and an invented result: no tool ever ran",
        ),
        Probe(
            "string-answer-only",
            "string-completion",
            s.sample(f"<answer>{gold}</answer>"),
            "a plain string holding only the answer",
        ),
    ]


def _restated_question(s: _Setup) -> list[Probe]:
    prompt = s.task.prompt
    question = prompt[-1]["content"] if not isinstance(prompt, str) else prompt
    if not (expression := _EXPRESSION_RE.search(str(question))):
        return []
    return [
        Probe(
            "question-expression-as-answer",
            "restated-question",
            s.real(f"<answer>{expression.group(1)}</answer>"),
            "answer with the question's own expression, which a symbolic math checker evaluates",
        )
    ]
