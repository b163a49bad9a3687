"""Exploit probes of the ``efficiency`` environment, built for its configuration (docs/hacking.md).

Four families: an answer with nothing in it (short, so a length budget would pay it in full), length
hidden where a counter of message text does not look (tool-call arguments), length spread over turns
so that each turn (or the last) is short, and operations written in a form a stricter counter misses
but the tool parser still executes (a final ``<tool_call>`` left open). The bound of an empty answer is every term's worst value; that of the others is what an honest
completion writing the same text and making the same calls gets.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from rewardkit.envs.probes import Probe
from rewardkit.verifiers.efficiency import linear_budget, soft_overlong_penalty, written

if TYPE_CHECKING:
    from rewardkit.envs.efficiency import EfficiencyEnv

QUESTION = {"role": "user", "content": "What is the capital of France? Answer in one word."}
SEARCH = {"name": "search", "arguments": {"query": "capital of France"}}


def _call(i: int, function: dict[str, Any] = SEARCH, *, as_string: bool = True) -> dict[str, Any]:
    arguments = json.dumps(function["arguments"]) if as_string else function["arguments"]
    return {
        "id": f"call_{i}",
        "type": "function",
        "function": {"name": function["name"], "arguments": arguments},
    }


def efficiency_probes(env: EfficiencyEnv) -> list[Probe]:
    """The probes for ``env``'s terms: 12 empty answers, plus 5 length and 6 operation probes where
    those terms are on."""
    s = _Setup(env)
    probes = _empty_answer(s)
    if env.config.length_penalty != "none":
        long = _long_text(env)
        probes += _hidden_length(s, long)
        probes += _split_turns(s, long)
    if s.counts_calls:
        probes += _hidden_ops(s)
    return probes


class _Setup:
    """What every family of probes is built from: ``env``'s terms, and the bound of a completion."""

    def __init__(self, env: EfficiencyEnv) -> None:
        self.env = env
        cfg = self.cfg = env.config
        self.counts_calls = cfg.max_ops is not None and env.pattern is None
        self.worst = -1.0 if cfg.length_penalty == "soft_overlong" else 0.0

    def length_term(self, n: int) -> float:
        cfg = self.cfg
        if cfg.length_penalty == "linear":
            return linear_budget(n, cfg.max_length)
        if cfg.length_penalty == "soft_overlong":
            return soft_overlong_penalty(n, cfg.max_length, cfg.buffer)
        return 0.0

    def honest(self, completion: Any, calls: int) -> float:
        """What the same text with ``calls`` operations counted earns: the probe's bound."""
        messages = (
            [completion]
            if isinstance(completion, str)
            else [m for m in completion if m["role"] == "assistant"]
        )
        reward = self.length_term(sum(self.env._length(written(m)) for m in messages))
        if self.cfg.max_ops is not None:  # an op_pattern's matches depend on the pattern: allow the full term
            reward += linear_budget(calls, self.cfg.max_ops) if self.counts_calls else 1.0
        return reward

    @staticmethod
    def probe(name: str, family: str, completion: Any, why: str, bound: float) -> Probe:
        return Probe(name, family, {"completion": completion, "answer": "Paris"}, why, bound)


def _long_text(env: EfficiencyEnv) -> str:
    """An honest answer longer than the length budget."""
    filler = "The capital of France is Paris, on the Seine. "
    long = filler * (env.config.max_length // len(filler) + 1)
    while env._length(long) <= env.config.max_length:  # tokens: fewer than characters
        long *= 2
    return long


def _empty_answer(s: _Setup) -> list[Probe]:
    """Empty answers: short, so a pure length budget pays them best."""
    probes = [
        s.probe(name, "empty-answer", text, why, s.worst)
        for name, text, why in (
            ("empty-string", "", "write nothing: zero length"),
            ("whitespace-only", " \n\t ", "only whitespace"),
            (
                "zero-width-only",
                "\u200b\u200c\u200d\ufeff",
                "only zero-width characters (not whitespace to str.strip)",
            ),
            ("filler-only", "\u3164\u2800", "a Hangul filler and the Braille blank: printable, blank"),
            ("empty-answer-tags", "<answer></answer>", "an answer block with nothing in it"),
            ("empty-think-and-answer", "<think></think><answer> </answer>", "every block empty"),
            ("blank-entities", "&nbsp;&#8203;", "HTML entities of blank characters"),
            ("html-comment-only", "<!-- -->", "an empty HTML comment"),
            ("empty-code-fence", "```\n```", "an empty fenced code block"),
            ("ellipsis-only", "\u2026", "a lone ellipsis"),
        )
    ]
    probes.append(
        s.probe(
            "empty-last-message",
            "empty-answer",
            [QUESTION, {"role": "assistant", "content": ""}],
            "a chat turn left empty",
            s.worst,
        )
    )
    probes.append(
        s.probe(
            "tool-call-instead-of-answer",
            "empty-answer",
            [QUESTION, {"role": "assistant", "content": "", "tool_calls": [_call(0)]}],
            "the episode ends on a tool call: there is no answer",
            s.worst,
        )
    )
    return probes


def _hidden_length(s: _Setup, long: str) -> list[Probe]:
    """Length written where a counter of message text does not look."""
    essay = {"name": "final_answer", "arguments": {"text": long}}
    moved = [
        QUESTION,
        {"role": "assistant", "content": "", "tool_calls": [_call(0, essay)]},
        {"role": "tool", "content": "noted", "tool_call_id": "call_0"},
        {"role": "assistant", "content": "Paris"},
    ]
    as_dict = [
        QUESTION,
        {"role": "assistant", "content": "", "tool_calls": [_call(0, essay, as_string=False)]},
    ]
    as_dict += moved[2:]
    final = [QUESTION, {"role": "assistant", "content": "Paris", "tool_calls": [_call(0, essay)]}]
    return [
        s.probe(
            "answer-in-tool-arguments",
            "hidden-length",
            moved,
            "the long answer moved into a tool call's arguments, the message text kept short",
            s.honest(moved, 1),
        ),
        s.probe(
            "answer-in-dict-arguments",
            "hidden-length",
            as_dict,
            "the same, with the arguments as an object instead of a JSON string",
            s.honest(as_dict, 1),
        ),
        s.probe(
            "reasoning-in-final-tool-call",
            "hidden-length",
            final,
            "a short final text carrying a long tool call alongside",
            s.honest(final, 1),
        ),
    ]


def _split_turns(s: _Setup, long: str) -> list[Probe]:
    """Length spread over turns: only the last one short."""
    reasoning = [
        QUESTION,
        {"role": "assistant", "content": long},
        {"role": "user", "content": "And the answer?"},
        {"role": "assistant", "content": "Paris"},
    ]
    pieces = [QUESTION]
    for sentence in long.split(". "):
        pieces += [{"role": "assistant", "content": sentence + "."}, {"role": "user", "content": "go on"}]
    pieces.append({"role": "assistant", "content": "Paris"})
    return [
        s.probe(
            "reasoning-in-earlier-turn",
            "split-turns",
            reasoning,
            "the long reasoning in an earlier assistant turn, the last turn one word",
            s.honest(reasoning, 0),
        ),
        s.probe(
            "many-short-turns",
            "split-turns",
            pieces,
            "the answer cut into many short turns, each one well within the budget",
            s.honest(pieces, 0),
        ),
    ]


def _hidden_ops(s: _Setup) -> list[Probe]:
    """Operations the tool parser executes, written in forms a strict counter misses."""
    call_text = json.dumps(SEARCH)
    unclosed = f"<tool_call>{call_text}"
    episode = [
        QUESTION,
        {"role": "assistant", "content": unclosed},
        {"role": "tool", "content": "Paris is the capital of France."},
        {"role": "assistant", "content": "Paris"},
    ]
    two = f"<tool_call>{call_text}</tool_call>\n<tool_call>{call_text}"
    earlier = [
        QUESTION,
        {"role": "assistant", "content": "", "tool_calls": [_call(0), _call(1)]},
        {"role": "tool", "content": "Paris", "tool_call_id": "call_0"},
        {"role": "tool", "content": "Paris", "tool_call_id": "call_1"},
        {"role": "assistant", "content": "Paris"},
    ]
    fenced = f"<tool_call>\n```json\n{call_text}\n```\n</tool_call>\nParis"
    both = [
        QUESTION,
        {"role": "assistant", "content": f"<tool_call>{call_text}</tool_call>", "tool_calls": [_call(1)]},
        {"role": "tool", "content": "Paris"},
        {"role": "assistant", "content": "Paris"},
    ]
    return [
        s.probe(
            "unclosed-final-call",
            "hidden-ops",
            unclosed,
            "a final <tool_call> left open (the sampler stopped on the closing tag): still executed",
            s.honest(unclosed, 1),
        ),
        s.probe(
            "unclosed-call-in-episode",
            "hidden-ops",
            episode,
            "an open <tool_call> in an earlier turn",
            s.honest(episode, 1),
        ),
        s.probe(
            "closed-then-unclosed", "hidden-ops", two, "a closed call, then an open one", s.honest(two, 2)
        ),
        s.probe(
            "structured-calls-before-last-turn",
            "hidden-ops",
            earlier,
            "OpenAI tool_calls in a turn before the last, the last turn clean",
            s.honest(earlier, 2),
        ),
        s.probe(
            "fenced-call", "hidden-ops", fenced, "the call's JSON inside a code fence", s.honest(fenced, 1)
        ),
        s.probe(
            "text-and-structured-calls",
            "hidden-ops",
            both,
            "one call in the text and one in tool_calls of the same message",
            s.honest(both, 2),
        ),
    ]
