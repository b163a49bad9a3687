"""The offline stages' data: rows of a file or dataset turned into token ids, checked row by row.

Every algorithm's example is one ``Example``: a prompt and one or more completions, tokenised the way a
rollout is (``rewardkit.envs.rollout.ChatRenderer``: plain prompts as they are, chat prompts through the
template with its generation prompt), so a model fine-tuned here sees at RL time exactly the token layout
it was trained on. A plain-text completion ends with the EOS token, as a sampled one does; a chat
completion is the template's text of the assistant turn (its end-of-turn tokens included).

A row that lacks a field, or whose field has the wrong type, raises ``ConfigError`` naming the file, the
line and the field; nothing is skipped silently.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from rewardkit.config import ConfigError
from rewardkit.rl.offline_config import OfflineConfig

PAIRWISE = frozenset({"dpo", "ipo", "simpo", "orpo"})
"""The losses on (chosen, rejected) pairs."""


@dataclass(frozen=True)
class Example:
    """One training example in token ids."""

    prompt: list[int]
    completions: tuple[list[int], ...]
    """SFT, KTO: one; pairwise losses: (chosen, rejected); RRHF: the N responses."""
    scores: tuple[float, ...] | None = None
    """RRHF: one per completion."""
    desirable: bool | None = None
    """KTO: the completion's label."""
    source: Any = None
    """The row's prompt as written."""


def load_examples(cfg: OfflineConfig, tokenizer: Any) -> tuple[list[Example], list[Example]]:
    """(train, held-out) examples of ``cfg.data`` (held-out: ``cfg.eval_data``, or ``eval_fraction`` of
    ``data`` picked by the seed)."""
    encoder = Encoder(cfg, tokenizer)
    held = None
    if cfg.eval_data is not None:
        held = [
            e for where, row in read_rows(cfg.eval_data, None, "test") for e in encoder.examples(row, where)
        ]
    if cfg.online is not None:  # online DPO samples its pairs; ``data`` holds its prompts
        return [], held or []
    rows = read_rows(cfg.data, cfg.data_name, cfg.data_split)[: cfg.max_examples]
    if not rows:
        raise ConfigError(f"data: {cfg.data} has no rows")
    train = [e for where, row in rows for e in encoder.examples(row, where)]
    if held is not None:
        return train, held
    if cfg.eval_fraction == 0:
        return train, []
    order = list(range(len(train)))
    random.Random(cfg.seed).shuffle(order)
    n = max(1, round(len(train) * cfg.eval_fraction))
    if n >= len(train):
        raise ConfigError(
            f"data: {cfg.data}: {len(train)} examples, too few to hold out {cfg.eval_fraction:.0%}"
        )
    chosen = set(order[:n])
    return [e for i, e in enumerate(train) if i not in chosen], [train[i] for i in sorted(chosen)]


def read_rows(path: str, name: str | None, split: str) -> list[tuple[str, Mapping[str, Any]]]:
    """``(where, row)`` pairs of a local file or a dataset (``rewardkit.data.tasks``' reader)."""
    from rewardkit.data.tasks import DataConfig, _rows

    return _rows(DataConfig(path=path, name=name, split=split))


class Encoder:
    """Rows of ``cfg``'s algorithm to ``Example`` objects."""

    def __init__(self, cfg: OfflineConfig, tokenizer: Any) -> None:
        from rewardkit.envs.rollout import ChatRenderer

        self.cfg, self.tokenizer = cfg, tokenizer
        self.renderer = ChatRenderer(tokenizer)

    def examples(self, row: Mapping[str, Any], where: str) -> list[Example]:
        cfg, algo = self.cfg, self.cfg.algorithm
        if algo == "sft":
            prompt, completion = self._sft_fields(row, where)
            return [self._example(prompt, [completion], where)]
        prompt = _get(row, cfg.prompt_field, where)
        if algo in PAIRWISE or (cfg.chosen_field in row and cfg.rejected_field in row):
            chosen, rejected = _get(row, cfg.chosen_field, where), _get(row, cfg.rejected_field, where)
            if algo in PAIRWISE:
                return [self._example(prompt, [chosen, rejected], where)]
            scores = (_score(row, "score_chosen", where, 1.0), _score(row, "score_rejected", where, 0.0))
            if algo == "rrhf":
                return [self._example(prompt, [chosen, rejected], where, scores=scores)]
            return [  # kto: a pair is two unpaired completions, labelled by their scores
                self._example(prompt, [c], where, desirable=s >= cfg.kto_threshold)
                for c, s in zip((chosen, rejected), scores)
            ]
        if algo == "kto":
            return [
                self._example(
                    prompt, [_get(row, cfg.completion_field, where)], where, desirable=self._label(row, where)
                )
            ]
        return [self._ranked(prompt, row, where)]

    def _label(self, row: Mapping[str, Any], where: str) -> bool:
        """KTO: ``label_field`` when the row has it, else ``score_field`` against ``kto_threshold``."""
        cfg = self.cfg
        if cfg.label_field not in row:
            return _score(row, cfg.score_field, where, None) >= cfg.kto_threshold
        label = row[cfg.label_field]
        if not isinstance(label, bool):
            raise ConfigError(f"data: {where}: {cfg.label_field!r} must be true or false, got {label!r}")
        return label

    def _ranked(self, prompt: Any, row: Mapping[str, Any], where: str) -> Example:
        """RRHF: ``responses_field`` with ``scores_field``, two or more."""
        cfg = self.cfg
        responses, scores = _get(row, cfg.responses_field, where), _get(row, cfg.scores_field, where)
        if not isinstance(responses, list) or not isinstance(scores, list) or len(responses) != len(scores):
            raise ConfigError(
                f"data: {where}: {cfg.responses_field!r} and {cfg.scores_field!r} must be lists of equal length"
            )
        if len(responses) < 2:
            raise ConfigError(f"data: {where}: {cfg.responses_field!r} needs at least 2 responses to rank")
        floats = tuple(_number(s, cfg.scores_field, where) for s in scores)
        return self._example(prompt, responses, where, scores=floats)

    def _sft_fields(self, row: Mapping[str, Any], where: str) -> tuple[Any, Any]:
        cfg = self.cfg
        if cfg.prompt_field in row or cfg.messages_field not in row:
            return _get(row, cfg.prompt_field, where), _get(row, cfg.completion_field, where)
        messages = row[cfg.messages_field]
        if not _is_messages(messages) or len(messages) < 2 or messages[-1].get("role") != "assistant":
            raise ConfigError(
                f"data: {where}: {cfg.messages_field!r} must be a list of {{role, content}} messages ending "
                "with the assistant's"
            )
        return list(messages[:-1]), messages[-1]

    def _example(
        self,
        prompt: Any,
        completions: Sequence[Any],
        where: str,
        *,
        scores: tuple[float, ...] | None = None,
        desirable: bool | None = None,
    ) -> Example:
        cfg = self.cfg
        prompt_ids = self._prompt_ids(prompt, where)[-cfg.max_prompt_length :]
        room = cfg.max_length - len(prompt_ids)
        ids = tuple(self._completion_ids(prompt, c, where)[:room] for c in completions)
        if any(not c for c in ids):
            raise ConfigError(f"data: {where}: a completion renders to no tokens")
        return Example(prompt_ids, ids, scores=scores, desirable=desirable, source=prompt)

    def _prompt_ids(self, prompt: Any, where: str) -> list[int]:
        if isinstance(prompt, str):
            if not prompt:
                raise ConfigError(f"data: {where}: {self.cfg.prompt_field!r} is empty")
            return self.renderer.prompt_ids(prompt)
        if not _is_messages(prompt):
            raise ConfigError(
                f"data: {where}: {self.cfg.prompt_field!r} must be a string or a list of {{role, content}} "
                f"messages, got {type(prompt).__name__}"
            )
        return self.renderer.prompt_ids(list(prompt))

    def _completion_ids(self, prompt: Any, completion: Any, where: str) -> list[int]:
        """A plain completion's ids then EOS; a chat one: the template's text after the generation prompt."""
        tok = self.tokenizer
        if isinstance(completion, str) and isinstance(prompt, str):
            return self.renderer.encode(completion) + [tok.eos_token_id]  # "": a model that stops at once
        messages = [completion] if isinstance(completion, Mapping) else completion
        if isinstance(messages, str):
            messages = [{"role": "assistant", "content": messages}]
        if not _is_messages(messages):
            raise ConfigError(
                f"data: {where}: a completion must be a string or assistant message(s), got {completion!r:.80}"
            )
        history = list(prompt) if not isinstance(prompt, str) else [{"role": "user", "content": prompt}]
        head = tok.apply_chat_template(history, tokenize=False, add_generation_prompt=True)
        full = tok.apply_chat_template(history + list(messages), tokenize=False)
        if not full.startswith(head):
            raise ConfigError(
                f"data: {where}: the chat template renders the prompt differently once the completion "
                "follows it; cannot split prompt and completion tokens"
            )
        return self.renderer.encode(full[len(head) :])


def _get(row: Mapping[str, Any], key: str, where: str) -> Any:
    if key not in row:
        raise ConfigError(f"data: {where}: missing field {key!r} (it has: {', '.join(map(str, row))})")
    return row[key]


def _score(row: Mapping[str, Any], key: str, where: str, default: float | None) -> float:
    if key not in row:
        if default is None:
            raise ConfigError(f"data: {where}: missing field {key!r} (or a boolean label)")
        return default
    return _number(row[key], key, where)


def _number(value: Any, key: str, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(f"data: {where}: {key!r} must be a number, got {value!r}")
    return float(value)


def _is_messages(value: Any) -> bool:
    return (
        isinstance(value, list)
        and bool(value)
        and all(isinstance(m, Mapping) and "role" in m and "content" in m for m in value)
    )
