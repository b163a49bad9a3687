"""Hugging Face rollout back end: a hand-written sampling loop over the trainer's own policy module.

Why a hand-written loop and not ``model.generate``: the trainer needs, for every sampled token, its
log-probability under exactly the distribution it was drawn from, and it needs finished rows dropped
from the batch (RL responses vary a lot in length). The loop is short: a left-padded prefill of each
distinct prompt with a KV cache (repeated for the prompt's ``n`` samples; reserved for the whole
budget and written in place, ``kv_cache.py``), then one token per step, with rows removed from the
cache as they finish.

Log-probabilities (the same convention as the vLLM back end with ``logprobs_mode="processed_logprobs"``):
each returned logprob is ``log_softmax(filter(logits / T))[token]``, where ``filter`` applies top-k and
then top-p (the kept tokens are renormalised): the log-prob of the distribution actually sampled. With
the RL defaults (top_p=1, top_k=0) this is the logprob of the token under the policy at temperature T,
which is what the trainer recomputes. With top-k or top-p it is not (a kept token's truncated log-prob
is above the full one by -log of the kept mass: up to 2.4 nats at top_k=20 on a tiny model), so
``rewardkit.generation.base.samples_policy_distribution`` is False for such sampling and the trainer
treats this back end like vLLM: it recomputes the old log-probs, logs the mismatch and corrects it.
With ``temperature == 0`` (greedy) it is ``log_softmax(logits)[token]``, the untempered policy.

``update_weights`` is a no-op: this back end samples from the very module the optimizer updates.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from rewardkit.generation.base import FinishReason, Generation, SamplingParams
from rewardkit.generation.kv_cache import reserved_cache


@dataclass(frozen=True)
class HFGeneratorConfig:
    """Knobs of the Hugging Face back end."""

    max_batch_size: int = 64
    """Most rows (prompt x sample) in one forward pass; bounds KV-cache memory. Rows beyond it run in
    further micro-batches, one after another."""
    seed: int = 0
    """Seeds the back end's own random stream, used when a call's ``SamplingParams.seed`` is None, so
    a whole run is reproducible without seeding every call."""
    sort_by_length: bool = True
    """Group rows of similar prompt length into the same micro-batch to waste less compute on padding."""
    reserve_kv_cache: bool = True
    """Reserve each layer's KV cache for the prompt and the token budget once and write into it, instead
    of transformers' default of concatenating a copy per token (``rewardkit.generation.kv_cache``)."""

    def __post_init__(self) -> None:
        if self.max_batch_size < 1:
            raise ValueError(f"max_batch_size must be >= 1, got {self.max_batch_size}")


@dataclass
class _Row:
    """One sample being generated: where its result goes, and what has been sampled so far."""

    prompt_idx: int
    sample_idx: int
    prompt: list[int]
    ids: list[int]
    logprobs: list[float]
    finish: FinishReason | None = None
    text: str | None = None


class HFGenerator:
    """``Generator`` over a transformers causal LM and its tokenizer (see the module docstring)."""

    def __init__(self, model: Any, tokenizer: Any, config: HFGeneratorConfig | None = None) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.config = config or HFGeneratorConfig()
        self._device = next(model.parameters()).device
        self._rng = torch.Generator(device=self._device).manual_seed(self.config.seed)
        self._eos_ids = _eos_ids(model, tokenizer)
        pad = tokenizer.pad_token_id
        self._pad_id = pad if pad is not None else (min(self._eos_ids) if self._eos_ids else 0)

    @property
    def samples_trained_module(self) -> bool:
        """True: ``generate`` runs the module it was given, which in training is the trainer's policy (its
        log-probs are the trainer's only without top-k/top-p: ``base.samples_policy_distribution``)."""
        return True

    def update_weights(self, named_tensors: Iterable[tuple[str, Any]]) -> None:
        """No-op: the module sampled from is the trainer's policy, already updated in place."""

    def sleep(self) -> None:
        """No-op (the vLLM back end frees its memory here); lets the trainer call it on any back end."""

    def wake_up(self) -> None:
        """No-op, see ``sleep``."""

    def generate(self, prompts: Sequence[Sequence[int]], params: SamplingParams) -> list[list[Generation]]:
        """``params.n`` samples for each token-id prompt; see ``Generator`` in ``base.py``."""
        for i, prompt in enumerate(prompts):
            if len(prompt) == 0:
                raise ValueError(f"prompt {i} is empty; every prompt needs at least one token id")
        rows = [_Row(p, s, list(prompt), [], []) for p, prompt in enumerate(prompts) for s in range(params.n)]
        order = (
            sorted(rows, key=lambda r: (len(r.prompt), r.prompt_idx)) if self.config.sort_by_length else rows
        )
        rng = self._rng if params.seed is None else self._seeded(params.seed)
        was_training = self.model.training
        self.model.eval()
        try:
            with torch.inference_mode():  # lighter than no_grad: no version counters, no views tracked
                size = self.config.max_batch_size
                for start in range(0, len(order), size):
                    self._run_batch(order[start : start + size], params, rng)
        finally:
            self.model.train(was_training)
        out: list[list[Generation]] = [[] for _ in prompts]
        for row in rows:  # rows are in (prompt, sample) order
            text = row.text if row.text is not None else self._decode(row.ids)
            out[row.prompt_idx].append(Generation(tuple(row.ids), tuple(row.logprobs), row.finish, text))
        return out

    def _seeded(self, seed: int) -> torch.Generator:
        return torch.Generator(device=self._device).manual_seed(seed)

    def _decode(self, ids: Sequence[int]) -> str:
        return self.tokenizer.decode(list(ids), skip_special_tokens=True)

    def _run_batch(self, rows: list[_Row], params: SamplingParams, rng: torch.Generator) -> None:
        """Prefill the micro-batch, then sample one token per step until every row has finished.

        Each distinct prompt is prefilled once; its KV cache is then repeated for its samples.
        """
        prefill: dict[int, list[int]] = {}  # prompt_idx -> prompt, in order of first appearance
        for row in rows:
            prefill.setdefault(row.prompt_idx, row.prompt)
        slot = {prompt_idx: i for i, prompt_idx in enumerate(prefill)}
        input_ids, mask, positions = _left_pad(list(prefill.values()), self._pad_id, self._device)
        reserved = (
            reserved_cache(input_ids.shape[1] + params.max_tokens) if self.config.reserve_kv_cache else None
        )
        out = self.model(
            input_ids=input_ids,
            attention_mask=mask,
            position_ids=positions,
            use_cache=True,
            logits_to_keep=1,
            **({"past_key_values": reserved} if reserved is not None else {}),
        )
        cache, logits = out.past_key_values, out.logits[:, -1, :]  # logits: [U, V], U distinct prompts
        expand = torch.tensor([slot[row.prompt_idx] for row in rows], device=self._device)  # [B]
        if len(expand) > len(slot):
            cache.reorder_cache(expand)
        logits, mask, positions = (
            logits[expand],
            mask[expand],
            positions[expand, -1:],
        )  # [B, V], [B, L], [B, 1]
        active = list(rows)
        for step in range(params.max_tokens):
            tokens, logprobs = sample_tokens(logits, params, rng)  # [B], [B]
            for row, tok, lp in zip(active, tokens.tolist(), logprobs.tolist()):
                row.ids.append(tok)
                row.logprobs.append(lp)
                self._check_finished(row, params, last_step=step == params.max_tokens - 1)
            keep = [i for i, row in enumerate(active) if row.finish is None]
            if not keep:
                return
            if len(keep) < len(active):  # drop finished rows from the batch and the KV cache
                index = torch.tensor(keep, device=self._device)
                cache.reorder_cache(index)
                mask, positions, tokens = mask[index], positions[index], tokens[index]
                active = [active[i] for i in keep]
            mask = torch.cat([mask, mask.new_ones(len(active), 1)], dim=1)
            positions = positions + 1
            out = self.model(
                input_ids=tokens[:, None],
                attention_mask=mask,
                position_ids=positions,
                past_key_values=cache,
                use_cache=True,
            )
            cache, logits = out.past_key_values, out.logits[:, -1, :]

    def _check_finished(self, row: _Row, params: SamplingParams, *, last_step: bool) -> None:
        """Set ``row.finish``: eos or a stop string -> 'stop', the token budget -> 'length'."""
        if row.ids[-1] in self._eos_ids:
            row.finish = "stop"
            return
        if params.stop and (text := self._stopped_text(row.ids, params.stop)) is not None:
            # Like vLLM with include_stop_str_in_output: the text ends right after the stop string,
            # the token ids end with the token that completed it.
            row.finish, row.text = "stop", text
            return
        if last_step:
            row.finish = "length"

    def _stopped_text(self, ids: list[int], stops: Sequence[str]) -> str | None:
        """The text through the first stop string if the last token completed one, else None.

        A new match ends in the last token, so a short tail of tokens detects it (a character is at
        most 4 byte-level tokens); the whole text is decoded only on a match.
        """
        window = 4 * max(len(s) for s in stops) + 4
        if _stop_match_end(self._decode(ids[-window:]), stops) is None:
            return None
        text = self._decode(ids)
        end = _stop_match_end(text, stops)
        return None if end is None else text[:end]


def sample_tokens(
    logits: torch.Tensor, params: SamplingParams, rng: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Sample one token per row of ``logits`` ([B, V]); return the tokens and their processed logprobs.

    The logprob is taken from the distribution actually sampled: temperature, then top-k, then top-p
    (renormalised). Greedy (temperature 0) takes the argmax and reports the untempered logprob.
    """
    logits = logits.float()
    if params.temperature == 0:
        logprobs = torch.log_softmax(logits, dim=-1)
        tokens = logprobs.argmax(dim=-1)
    else:
        logprobs = torch.log_softmax(filter_logits(logits / params.temperature, params), dim=-1)
        tokens = _inverse_cdf_sample(logprobs.exp(), rng)
    return tokens, logprobs.gather(-1, tokens[:, None]).squeeze(-1)


def _inverse_cdf_sample(probs: torch.Tensor, rng: torch.Generator) -> torch.Tensor:
    """One draw per row of ``probs`` ([B, V]) by inverting the CDF at a uniform point.

    Why not ``torch.multinomial``: on CPU it costs ~0.9 ms per call for [128, 281] against ~0.07 ms
    here, and it runs once per generated token. ``right=True`` means a token of probability 0 (masked
    by top-k/top-p) is never drawn: its CDF step has zero width.
    """
    cdf = probs.cumsum(-1)  # [B, V]
    u = torch.rand(cdf.shape[0], 1, generator=rng, device=cdf.device, dtype=cdf.dtype) * cdf[:, -1:]  # [B, 1]
    return torch.searchsorted(cdf, u, right=True).squeeze(-1).clamp_(max=cdf.shape[-1] - 1)  # [B]


def filter_logits(logits: torch.Tensor, params: SamplingParams) -> torch.Tensor:
    """Mask (to -inf) the tokens outside top-k, then outside the top-p nucleus of what is left.

    top-p keeps a token when the probability mass of the tokens ranked above it is below p, so the
    most likely token is always kept. This matches vLLM's ``apply_top_k_top_p`` ordering.
    """
    vocab = logits.shape[-1]
    if 0 < params.top_k < vocab:
        kth = torch.topk(logits, params.top_k, dim=-1).values[:, -1:]  # [B, 1]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if params.top_p < 1.0:
        sorted_logits, order = torch.sort(logits, dim=-1, descending=True)
        probs = torch.softmax(sorted_logits, dim=-1)
        mass_before = torch.cumsum(probs, dim=-1) - probs  # [B, V]: mass ranked strictly above
        drop_sorted = mass_before >= params.top_p
        drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)
        logits = logits.masked_fill(drop, float("-inf"))
    return logits


def _left_pad(
    prompts: list[list[int]], pad_id: int, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Left-pad prompts so every row's last token is at the same index (the next one is appended there).

    Returns input ids, attention mask and position ids ([B, L] each); positions count real tokens only,
    so a padded row sees the same positions as it would unpadded.
    """
    width = max(len(p) for p in prompts)
    ids = torch.full((len(prompts), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(prompts), width), dtype=torch.long)
    for i, prompt in enumerate(prompts):
        ids[i, width - len(prompt) :] = torch.tensor(prompt, dtype=torch.long)
        mask[i, width - len(prompt) :] = 1
    positions = (mask.cumsum(dim=1) - 1).clamp(min=0)
    return ids.to(device), mask.to(device), positions.to(device)


def _stop_match_end(text: str, stops: Sequence[str]) -> int | None:
    """End index of the earliest-ending stop string in ``text``, or None."""
    ends = [text.find(s) + len(s) for s in stops if s and s in text]
    return min(ends) if ends else None


def _eos_ids(model: Any, tokenizer: Any) -> set[int]:
    """End-of-sequence ids: the tokenizer's eos plus any the model's generation config lists."""
    ids: set[int] = set()
    if tokenizer.eos_token_id is not None:
        ids.add(int(tokenizer.eos_token_id))
    extra = model.generation_config.eos_token_id if model.generation_config is not None else None
    if isinstance(extra, int):
        ids.add(extra)
    elif extra:
        ids.update(int(i) for i in extra)
    return ids
