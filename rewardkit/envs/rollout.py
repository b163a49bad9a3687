"""The episode loop every environment shares: policy turn, environment reply, stop conditions.

Token ids are the source of truth. The policy's sampled ids are appended exactly as sampled (never
decoded and re-encoded); the environment's reply is rendered to text, tokenised once, and appended
with mask 0. The next turn's prompt is the concatenation of those ids, so what the trainer computes
log-probabilities on is exactly what the sampler saw and produced.

All active episodes advance in lock-step, one generator call per turn: the first turn asks for ``n``
samples per task in a single call (so back ends can share the prompt's KV cache), later turns send
each live episode's full token history.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from rewardkit.generation.base import Generation, Generator, SamplingParams
from rewardkit.types import Message, Task, Trajectory

if TYPE_CHECKING:  # the base imports this module to run episodes; the loop needs only the spec's methods
    from rewardkit.envs.base import Environment


class ChatRenderer:
    """Turns prompts and environment messages into token ids for a tokenizer.

    Plain-text prompts (``Task.prompt`` is a str) are encoded as they are, and environment replies are
    appended as their raw text. Chat prompts use the tokenizer's chat template. An environment reply is
    the template's text from the end of the policy's turn through the reply's messages and the next
    generation prompt, read off a probe conversation (``reply_text``) rather than a re-render of the
    real history: templates that render the last assistant message differently (Qwen3 adds an empty
    think block), trim content (Llama 3) or rewrite earlier turns cannot change what is appended.
    """

    PROBE = "RewardkitProbe7f3a"
    """Sentinel assistant content: where it ends in a rendered probe, the policy's turn ends."""

    def __init__(self, tokenizer: Any) -> None:
        self.tokenizer = tokenizer
        added = getattr(tokenizer, "added_tokens_decoder", None) or {}
        self._special_ids = frozenset(getattr(tokenizer, "all_special_ids", ()) or ()) | {
            i for i, token in added.items() if getattr(token, "special", False)
        }

    def encode(self, text: str) -> list[int]:
        return list(self.tokenizer.encode(text, add_special_tokens=False))

    def decode(self, ids: Sequence[int]) -> str:
        return self.tokenizer.decode(list(ids), skip_special_tokens=True)

    def prompt_ids(self, prompt: str | Sequence[Message]) -> list[int]:
        if isinstance(prompt, str):
            return self.encode(prompt)
        text = self.tokenizer.apply_chat_template(list(prompt), tokenize=False, add_generation_prompt=True)
        return self.encode(text)

    def reply_ids(
        self, history: list[Message], sampled_ids: Sequence[int], reply: Sequence[Message], chat: bool
    ) -> list[int]:
        """Ids for the environment's ``reply`` after ``history`` (whose last message is the policy's turn)."""
        if not chat:
            return self.encode("".join(m.get("content") or "" for m in reply))
        text = self.reply_text(reply)
        if text is None:
            return self.encode(self._reply_text_from_history(history, sampled_ids, reply))
        # The template's end-of-turn text (e.g. "<|im_end|>\n") belongs to the environment's part, minus
        # the end-of-turn tokens the model sampled itself; a turn cut by a stop string gets all of it.
        tail = self.decode_special_tail(sampled_ids)
        if tail and text.startswith(tail):
            text = text[len(tail) :]
        return self.encode(text)

    def reply_text(self, reply: Sequence[Message]) -> str | None:
        """Template text after an assistant turn's content: its closing, ``reply``, the generation
        prompt. None when the template cannot render the probe ``[user, assistant, *reply]``."""
        probe = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": self.PROBE}, *reply]
        try:
            text = self.tokenizer.apply_chat_template(probe, tokenize=False, add_generation_prompt=True)
        except Exception:  # noqa: BLE001 - a template with its own rules (e.g. system first): use history
            return None
        if text.count(self.PROBE) != 1:
            return None
        return text[text.index(self.PROBE) + len(self.PROBE) :]

    def _reply_text_from_history(
        self, history: list[Message], sampled_ids: Sequence[int], reply: Sequence[Message]
    ) -> str:
        """Fallback: the difference between renders of the real history with and without ``reply``."""
        before = self.tokenizer.apply_chat_template(history, tokenize=False)
        after = self.tokenizer.apply_chat_template(
            history + list(reply), tokenize=False, add_generation_prompt=True
        )
        if not after.startswith(before):
            raise ValueError(
                "the chat template re-renders earlier turns differently; cannot append a reply exactly"
            )
        sampled = self.tokenizer.decode(list(sampled_ids), skip_special_tokens=False)
        end = before.rfind(sampled) + len(sampled) if sampled and sampled in before else len(before)
        return before[end:] + after[len(before) :]

    def decode_special_tail(self, ids: Sequence[int]) -> str:
        """The text of the special tokens (e.g. ``<|im_end|>``) that end a sampled turn, or ""."""
        n = len(ids)
        while n and ids[n - 1] in self._special_ids:
            n -= 1
        return self.tokenizer.decode(list(ids[n:]), skip_special_tokens=False) if n < len(ids) else ""


@dataclass
class _Episode:
    task: Task
    prompt_ids: list[int]
    messages: list[Message]
    state: dict[str, Any]
    ids: list[int] = field(default_factory=list)
    mask: list[int] = field(default_factory=list)
    logprobs: list[float] = field(default_factory=list)
    turn_rewards: list[float] = field(default_factory=list)
    turns: int = 0
    stop_reason: str = ""
    truncated: bool = False
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def finished(self) -> bool:
        return bool(self.stop_reason)


def run_episodes(
    env: Environment,
    generator: Generator,
    tasks: Sequence[Task],
    *,
    n: int = 1,
    sampling: SamplingParams | None = None,
) -> list[Trajectory]:
    """``n`` episodes per task, all advanced together one policy turn at a time (see the module docstring)."""
    sampling = sampling or SamplingParams()
    renderer = ChatRenderer(generator.tokenizer)
    episodes: list[_Episode] = []
    first_prompts: list[list[int]] = []
    for task in tasks:
        prompt_ids = renderer.prompt_ids(task.prompt)
        first_prompts.append(prompt_ids)
        history = [] if isinstance(task.prompt, str) else [dict(m) for m in task.prompt]
        for _ in range(n):
            episodes.append(_Episode(task, prompt_ids, list(history), env.initial_state(task)))

    grouped = generator.generate(first_prompts, dataclasses.replace(sampling, n=n))
    _step(env, renderer, episodes, [g for group in grouped for g in group])
    active = [e for e in episodes if not e.finished]
    while active:
        turn = dataclasses.replace(
            sampling, n=1, seed=None if sampling.seed is None else sampling.seed + active[0].turns
        )
        outputs = generator.generate([e.prompt_ids + e.ids for e in active], turn)
        _step(env, renderer, active, [group[0] for group in outputs])
        active = [e for e in active if not e.finished]
    return [_to_trajectory(e, env) for e in episodes]


def _step(
    env: Environment, renderer: ChatRenderer, episodes: list[_Episode], generations: list[Generation]
) -> None:
    """Append one policy turn to each episode, then let the environment answer or end it (the episodes'
    answers computed by ``env.response_workers`` threads at once, applied in episode order)."""
    answering = []
    for episode, gen in zip(episodes, generations, strict=True):
        episode.ids += gen.token_ids
        episode.mask += [1] * len(gen.token_ids)
        episode.logprobs += gen.logprobs
        episode.turns += 1
        episode.messages.append({"role": "assistant", "content": gen.text or renderer.decode(gen.token_ids)})
        if gen.finish_reason == "length":
            episode.truncated, episode.stop_reason = True, "length"
            continue
        answering.append((episode, gen))
    steps = _responses(env, [episode for episode, _ in answering])
    for (episode, gen), step in zip(answering, steps, strict=True):
        chat = not isinstance(episode.task.prompt, str) or env.max_turns > 1
        if step.reward is not None:
            episode.turn_rewards.append(float(step.reward))
        episode.info.update(step.info)  # the environment's account of the episode (status, counts)
        if step.done:
            episode.stop_reason = "stop" if env.max_turns == 1 else "done"
            continue
        if episode.turns >= env.max_turns:
            episode.stop_reason = "max_turns"
            continue
        reply = renderer.reply_ids(
            episode.messages, gen.token_ids, step.messages, chat and _has_template(renderer)
        )
        episode.messages += [dict(m) for m in step.messages]
        episode.ids += reply
        episode.mask += [0] * len(reply)
        episode.logprobs += [0.0] * len(reply)
        if env.max_total_tokens is not None and len(episode.ids) >= env.max_total_tokens:
            episode.stop_reason = "max_total_tokens"


def _responses(env: Environment, episodes: list[_Episode]) -> list[Any]:
    """``env.env_response`` for each episode: in a thread pool when ``env.response_workers`` > 1 (each
    episode's state is its own, so the order of the answers, and so the episodes, do not depend on it)."""
    workers = min(max(1, int(getattr(env, "response_workers", 1))), len(episodes))
    if workers <= 1:
        return [env.env_response(list(e.messages), e.state) for e in episodes]
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(workers, thread_name_prefix="env_response") as pool:
        return list(pool.map(lambda e: env.env_response(list(e.messages), e.state), episodes))


def _has_template(renderer: ChatRenderer) -> bool:
    return bool(getattr(renderer.tokenizer, "chat_template", None))


def _to_trajectory(episode: _Episode, env: Environment) -> Trajectory:
    plain_single_turn = isinstance(episode.task.prompt, str) and env.max_turns == 1
    completion = (
        episode.messages[-1]["content"]
        if plain_single_turn
        else tuple(
            m
            for m in episode.messages[
                len(episode.task.prompt) if not isinstance(episode.task.prompt, str) else 0 :
            ]
        )
    )
    return Trajectory(
        task=episode.task,
        prompt_ids=tuple(episode.prompt_ids),
        completion_ids=tuple(episode.ids),
        completion_mask=tuple(episode.mask),
        logprobs=tuple(episode.logprobs),
        completion=completion,
        turns=episode.turns,
        stop_reason=episode.stop_reason,
        truncated=episode.truncated,
        turn_rewards=tuple(episode.turn_rewards),
        info=dict(episode.info),
    )
