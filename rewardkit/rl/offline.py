"""The offline stages' trainer: supervised fine-tuning and the preference losses, on a dataset of examples.

    rewardkit sft CONFIG.yaml                     # algorithm: sft (the default)
    rewardkit train CONFIG.yaml                   # with algorithm: dpo | ipo | simpo | orpo | kto | rrhf

Each step draws ``batch_size`` examples (without replacement, reshuffled each epoch), runs them through
the model ``micro_batch_size`` at a time with gradient accumulation, clips the gradient and steps AdamW.
The loss of a step is that of the whole batch whatever the micro-batching: SFT's is the mean NLL over
every completion token of the batch (prompt tokens carry no loss); a preference loss's is the mean over
the batch's pairs. What it shares with ``rewardkit train``'s RL loop: model loading (hub ids, local
directories, runs and checkpoints), LoRA, the run directory's rules (``--resume``, ``--overwrite``),
checkpoints of the model, optimizer, schedule, data order and random generators (a resumed run takes
exactly the steps the uninterrupted one would have), Ctrl-C/SIGTERM handling, metrics.jsonl with a
progress bar or lines, trackers and curves.png.

Held-out examples are measured before the first step, every ``eval_every`` steps and after the last:
``eval/loss`` and, for preference losses, ``eval/rewards/accuracies`` (the share of held-out pairs whose
chosen completion gets the higher implicit reward) and ``eval/rewards/margins``. ``summary.json`` holds
the measures before and after. With a reference model, ``kl`` is KL(pi || ref) per completion token at the
data's completions, exact over the vocabulary (not a sampled estimate).
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from rewardkit.config import ConfigError
from rewardkit.console import quiet_third_party
from rewardkit.models import latest_model
from rewardkit.rl import checkpoint as ckpt
from rewardkit.rl.algorithms import logprobs_from_logits
from rewardkit.rl.logging import LogView, RunLogger
from rewardkit.rl.model import completion_logits, frozen_copy, load_policy, pack
from rewardkit.rl.offline_config import OfflineConfig
from rewardkit.rl.offline_data import Example, load_examples
from rewardkit.rl.preference import PREFERENCE_LOSSES, PreferenceBatch
from rewardkit.rl.run_dir import RunDirMode, StopSignals, clear_for_overwrite, stop_reason
from rewardkit.rl.run_dir import prepare as prepare_run_dir
from rewardkit.rl.sampling import PromptSampler

SUMMARY = "summary.json"
EVAL_BEFORE = "eval_before.json"


def _postfix(row: dict[str, Any]) -> dict[str, str]:
    out = {"loss": f"{row['loss']:.4f}"}
    if "rewards/margins" in row:
        out["margin"] = f"{row['rewards/margins']:.3f}"
    return out


def _summary(row: dict[str, Any]) -> str:
    text = f"loss {row['loss']:.4f}"
    if "rewards/accuracies" in row:
        text += f", pair accuracy {row['rewards/accuracies']:.2f}, margin {row['rewards/margins']:.3f}"
    if "eval/loss" in row:
        text += f", eval loss {row['eval/loss']:.4f}"
    return text


OFFLINE_VIEW = LogView(
    ("step", "loss", "grad_norm", "lr", "tokens", "step_time_s", "tokens_per_s"),
    _postfix,
    _summary,
    (("loss", "training loss"), ("eval/loss", "held-out loss")),
)


@dataclass
class OfflineResult:
    """What ``train_offline`` did (the fields ``rewardkit train``'s summary line reads, as ``TrainResult``)."""

    output_dir: Path
    steps: int
    """The last finished step."""
    last_metrics: dict[str, float]
    eval_before: dict[str, float]
    """The held-out measures before the first step (empty without a held-out set)."""
    eval_after: dict[str, float]
    """... and after the last one (empty when interrupted)."""
    interrupted: bool = False
    signal: int | None = None
    final_model: Path | None = None
    """The Hugging Face model directory of the latest checkpoint (``checkpoints/step_N/model``)."""


@dataclass
class _Run:
    cfg: OfflineConfig
    out: Path
    policy: Any
    reference: Any
    """The frozen initial model (dpo, ipo, kto without LoRA); under LoRA the policy with adapters off."""
    tokenizer: Any
    optimizer: torch.optim.Optimizer
    scheduler: Any
    sampler: PromptSampler
    """Draws the indices of each step's examples; its position is checkpointed."""
    train: list[Example]
    held: list[Example]
    logger: RunLogger
    start: int
    online: Any = None
    """Online DPO's rounds (``rewardkit.rl.online_dpo.OnlineRounds``), else None."""

    def save(self, step: int) -> None:
        extra = self.online.checkpoint() if self.online is not None else None
        ckpt.save(
            self.out,
            step,
            self.policy,
            self.tokenizer,
            None,
            self.optimizer,
            self.scheduler,
            self.sampler,
            self.cfg,
            self.cfg.keep_checkpoints,
            rollouts=extra,
        )


def train_offline(
    cfg: OfflineConfig, *, resume: bool = False, overwrite: bool = False, allow_config_change: bool = False
) -> OfflineResult:
    """Train ``cfg.model`` on ``cfg.data`` with ``cfg.algorithm``; the run directory's rules are
    ``rewardkit train``'s (``rewardkit.rl.run_dir``). Ctrl-C and SIGTERM checkpoint the last finished step."""
    run = _start(cfg, RunDirMode(resume, overwrite, allow_config_change))
    before = _eval_before(run)
    metrics: dict[str, float] = {}
    done = saved = run.start
    with StopSignals() as stop:
        try:
            for step in range(run.start + 1, cfg.steps + 1):
                metrics = _step(run, step, stop)
                done = step
                if cfg.save_every and step % cfg.save_every == 0:
                    run.save(step)
                    saved = step
                if step < cfg.steps:
                    stop.check()
        except KeyboardInterrupt as exc:
            return _interrupted(run, done, saved, metrics, stop.clean, exc, before)
    if done > saved:
        run.save(done)
    after = evaluate(run, run.held) if run.held else {}
    run.logger.close()
    result = OfflineResult(run.out, done, metrics, before, after, final_model=latest_model(run.out))
    _write_summary(run, result)
    return result


def _interrupted(
    run: _Run,
    done: int,
    saved: int,
    metrics: dict[str, float],
    clean: bool,
    exc: KeyboardInterrupt,
    before: dict[str, float],
) -> OfflineResult:
    signum, how = stop_reason(exc)
    if clean:
        if done > saved:
            run.save(done)
        run.logger.note(f"{how}: saved a checkpoint at step {done}; continue with --resume")
    else:
        run.logger.note(f"{how} during an update: no checkpoint written (the latest is step {saved})")
    run.logger.close()
    return OfflineResult(
        run.out, done, metrics, before, {}, interrupted=True, signal=signum, final_model=latest_model(run.out)
    )


def _start(cfg: OfflineConfig, mode: RunDirMode) -> _Run:
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise ConfigError(
            f"{cfg.algorithm} runs on one process for now (WORLD_SIZE={os.environ['WORLD_SIZE']}); run it "
            "without torchrun or --nproc"
        )
    quiet_third_party(cfg.verbose)
    ckpt.seed_rngs(cfg.seed)
    out = Path(cfg.output_dir)
    resume_from = prepare_run_dir(out, cfg, mode)
    from rewardkit.models import resolve_model

    resolve_model(cfg.model)  # a mistyped path fails in one line, before anything loads
    policy, tokenizer = load_policy(cfg.model, cfg.tokenizer, cfg.dtype, cfg.gradient_checkpointing, cfg.lora)
    train, held = load_examples(cfg, tokenizer)  # online: no training examples, they are sampled
    online = None
    if cfg.online is not None:
        from rewardkit.rl.online_dpo import OnlineRounds

        online = OnlineRounds(cfg, policy, tokenizer)
    clear_for_overwrite(out, mode)
    reference = frozen_copy(policy) if cfg.needs_reference and not cfg.lora else None
    optimizer = torch.optim.AdamW(
        [p for p in policy.parameters() if p.requires_grad],
        lr=cfg.lr,
        betas=tuple(cfg.adam_betas),
        weight_decay=cfg.weight_decay,
    )
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, _schedule(cfg))
    sampler = PromptSampler(list(range(len(train))) or [0], cfg.seed)  # online: unused (its rounds draw)
    start = 0
    if resume_from is not None:
        start = ckpt.load(resume_from, policy, None, optimizer, scheduler, sampler)
        if online is not None:
            online.restore(resume_from)
    logger = RunLogger(out, cfg, start_step=start, view=OFFLINE_VIEW)
    return _Run(
        cfg,
        out,
        policy,
        reference,
        tokenizer,
        optimizer,
        scheduler,
        sampler,
        train,
        held,
        logger,
        start,
        online,
    )


def _schedule(cfg: OfflineConfig) -> Any:
    def factor(update: int) -> float:
        if update < cfg.warmup_steps:
            return (update + 1) / (cfg.warmup_steps + 1)
        if cfg.lr_schedule == "cosine":
            progress = (update - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps)
            return 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))
        return 1.0

    return factor


def _eval_before(run: _Run) -> dict[str, float]:
    """The held-out measures of the model as loaded (kept in ``eval_before.json`` for a resumed run)."""
    path = run.out / EVAL_BEFORE
    if run.start > 0 and path.exists():
        return json.loads(path.read_text())
    before = evaluate(run, run.held) if run.held else {}
    run.out.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(before, indent=2))
    if before:
        run.logger.note("held-out before training: " + _measures(before))
    return before


def _step(run: _Run, step: int, stop: StopSignals) -> dict[str, float]:
    """One optimizer step over ``batch_size`` examples. A signal while the batch is drawn (or sampled,
    online) abandons the step; one during the update is held until the step is done."""
    cfg = run.cfg
    t0 = time.perf_counter()
    position, rng = run.sampler.state_dict(), ckpt.rng_state()
    try:
        with stop.rollout():
            examples = _draw(run, step)
    except KeyboardInterrupt:
        run.sampler.load_state_dict(position)
        ckpt.set_rng_state(rng)
        raise
    run.policy.train()
    totals: dict[str, float] = {}
    denominator = _denominator(cfg, examples)
    for i in range(0, len(examples), cfg.micro_batch_size):
        micro = examples[i : i + cfg.micro_batch_size]
        loss, metrics = batch_loss(run, micro, denominator)
        loss.backward()
        for k, v in metrics.items():
            totals[k] = totals.get(k, 0.0) + v
    grad_norm = torch.nn.utils.clip_grad_norm_(
        [p for p in run.policy.parameters() if p.requires_grad], cfg.max_grad_norm
    )
    run.optimizer.step()
    run.scheduler.step()
    run.optimizer.zero_grad(set_to_none=True)
    tokens = sum(len(e.prompt) + sum(len(c) for c in e.completions) for e in examples)
    elapsed = time.perf_counter() - t0
    totals.update(
        step=step,
        grad_norm=float(grad_norm),
        lr=run.scheduler.get_last_lr()[0],
        tokens=float(tokens),
        step_time_s=elapsed,
        tokens_per_s=tokens / max(elapsed, 1e-9),
    )
    if run.online is not None:
        totals.update(run.online.last_metrics)
    if run.held and cfg.eval_every and step % cfg.eval_every == 0 and step < cfg.steps:
        totals.update(evaluate(run, run.held))
    run.logger.log_step(step, totals, None)
    return totals


def _draw(run: _Run, step: int) -> list[Example]:
    if run.online is not None:
        return run.online.draw(step, run.cfg.batch_size)
    return [run.train[i] for i in run.sampler.draw(run.cfg.batch_size)]


def _denominator(cfg: OfflineConfig, examples: Sequence[Example]) -> float:
    """What a micro-batch's summed loss is divided by: SFT, the batch's completion tokens; else its examples."""
    if cfg.algorithm == "sft":
        return float(sum(len(e.completions[0]) for e in examples))
    return float(len(examples))


def batch_loss(run: _Run, examples: Sequence[Example], denominator: float) -> tuple[Tensor, dict[str, float]]:
    """The loss of ``examples`` summed over them (SFT: over their completion tokens) and divided by
    ``denominator``, the whole batch's count (``_denominator``); and their metrics, weighted the same way,
    so that the micro-batches' values add up to the batch's means."""
    if run.cfg.algorithm == "sft":
        nll, _ = sft_nll(
            run.policy, examples, run.tokenizer.pad_token_id, run.cfg.packing, run.cfg.max_length
        )
        return nll / denominator, {"loss": nll.item() / denominator}
    batch, kl = preference_batch(run, examples)
    loss, metrics = PREFERENCE_LOSSES[run.cfg.algorithm](batch, run.cfg.loss)
    metrics = {"loss": loss.item(), **metrics}
    if kl is not None:  # KTO's own ``kl`` is its reference point z0 (TRL's name): kept
        metrics["kl_ref"] = kl
        metrics.setdefault("kl", kl)
    share = len(examples) / denominator
    return loss * share, {k: v * share for k, v in metrics.items()}


def sft_nll(
    model: Any, examples: Sequence[Example], pad_id: int, packing: bool, max_length: int
) -> tuple[Tensor, int]:
    """The summed NLL of the examples' completion tokens, and their number (packed rows or padded ones)."""
    device = _device(model)
    if not packing:
        seq = sequence_logps(
            model, [e.prompt for e in examples], [e.completions[0] for e in examples], pad_id, device
        )
        return -seq.logps.sum(), int(seq.lengths.sum())
    ids, positions, targets = _packed_rows(examples, pad_id, max_length)
    logits = model(input_ids=ids.to(device), position_ids=positions.to(device), use_cache=False).logits
    mask = targets >= 0
    logprobs = logprobs_from_logits(logits[:, :-1], targets[:, 1:].clamp(min=0).to(device))
    return -(logprobs * mask[:, 1:].to(device)).sum(), int(mask.sum())


def _packed_rows(examples: Sequence[Example], pad_id: int, max_length: int) -> tuple[Tensor, Tensor, Tensor]:
    """Examples packed first-fit (longest first) into rows of at most ``max_length`` tokens: ids, position
    ids restarting at each example (transformers then keeps attention within an example), and targets,
    -1 where there is no loss (prompt tokens, padding)."""
    seqs = sorted(((e.prompt + e.completions[0], len(e.prompt)) for e in examples), key=lambda s: -len(s[0]))
    rows: list[list[tuple[list[int], int]]] = []
    for seq in seqs:
        row = next((r for r in rows if sum(len(s) for s, _ in r) + len(seq[0]) <= max_length), None)
        if row is None:
            rows.append([seq])
        else:
            row.append(seq)
    width = max(sum(len(s) for s, _ in r) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    positions = torch.zeros((len(rows), width), dtype=torch.long)
    targets = torch.full((len(rows), width), -1, dtype=torch.long)
    for i, row in enumerate(rows):
        at = 0
        for seq, prompt_len in row:
            n = len(seq)
            ids[i, at : at + n] = torch.tensor(seq)
            positions[i, at : at + n] = torch.arange(n)
            targets[i, at + prompt_len : at + n] = torch.tensor(seq[prompt_len:])
            at += n
        positions[i, at:] = torch.arange(width - at)  # the padding is a segment of its own
    return ids, positions, targets


@dataclass(frozen=True)
class Sequences:
    """Summed completion log-probs of a packed batch, with what the losses and metrics need."""

    logps: Tensor
    """[n] summed over each completion's tokens."""
    lengths: Tensor
    """[n] completion lengths in tokens."""
    logits: Tensor
    """[n, T, V] at the completion positions."""
    mask: Tensor
    """[n, T] True at completion tokens."""


def sequence_logps(
    model: Any, prompts: Sequence[list[int]], completions: Sequence[list[int]], pad_id: int, device: Any
) -> Sequences:
    packed = pack(prompts, completions, pad_id, device)
    P, T = packed["prompt_len"], packed["completion_len"]
    logits = completion_logits(model, packed)
    logprobs = logprobs_from_logits(logits, packed["input_ids"][:, P : P + T])
    lengths = torch.tensor([len(c) for c in completions], device=logprobs.device)
    mask = torch.arange(T, device=logprobs.device)[None, :] < lengths[:, None]
    return Sequences((logprobs * mask).sum(-1), lengths, logits, mask)


def preference_batch(run: _Run, examples: Sequence[Example]) -> tuple[PreferenceBatch, float | None]:
    """The examples as a ``PreferenceBatch`` (the reference's log-probs under no_grad), and the KL to the
    reference per completion token (None without one)."""
    cfg, device, pad = run.cfg, _device(run.policy), run.tokenizer.pad_token_id
    prompts = [e.prompt for e in examples for _ in e.completions]
    completions = [c for e in examples for c in e.completions]
    seq = sequence_logps(run.policy, prompts, completions, pad, device)
    ref, kl = None, None
    if cfg.needs_reference:
        with torch.no_grad():
            ref = _reference_sequences(run, prompts, completions, pad, device)
            kl = _kl(seq, ref)
    if cfg.algorithm == "rrhf":
        return _ranked_batch(examples, seq), kl
    if cfg.algorithm == "kto":
        desirable = torch.tensor([bool(e.desirable) for e in examples], device=seq.logps.device)
        return PreferenceBatch(
            seq.logps, ref_chosen_logps=ref.logps, chosen_lengths=seq.lengths, desirable=desirable
        ), kl
    n = len(examples)  # pairwise: rows 0, 2, 4, ... chosen; 1, 3, 5, ... rejected
    c, r = slice(0, 2 * n, 2), slice(1, 2 * n, 2)
    return (
        PreferenceBatch(
            seq.logps[c],
            seq.logps[r],
            ref.logps[c] if ref is not None else None,
            ref.logps[r] if ref is not None else None,
            seq.lengths[c],
            seq.lengths[r],
        ),
        kl,
    )


def _reference_sequences(run: _Run, prompts: list, completions: list, pad: int, device: Any) -> Sequences:
    if run.reference is not None:
        return sequence_logps(run.reference, prompts, completions, pad, device)
    with run.policy.disable_adapter():  # LoRA: the base model is the reference
        return sequence_logps(run.policy, prompts, completions, pad, device)


def _kl(seq: Sequences, ref: Sequences, chunk: int = 1024) -> float:
    """Mean over completion tokens of KL(pi || ref) = sum_v pi_v (log pi_v - log ref_v), exact; the
    float32 log-softmaxes exist ``chunk`` tokens at a time."""
    p, q = seq.logits.detach()[seq.mask], ref.logits[seq.mask]  # [N, V]: the completion tokens only
    total = 0.0
    for a, b in zip(p.split(chunk), q.split(chunk)):
        logp, logq = torch.log_softmax(a.float(), dim=-1), torch.log_softmax(b.float(), dim=-1)
        total += float((logp.exp() * (logp - logq)).sum())
    return total / max(len(p), 1)


def _ranked_batch(examples: Sequence[Example], seq: Sequences) -> PreferenceBatch:
    """RRHF: the flat completions back into [B, N] rows, padding slots of length 0."""
    shape = (len(examples), max(len(e.completions) for e in examples))
    slots = [(i, j) for i, e in enumerate(examples) for j in range(len(e.completions))]
    index = (torch.tensor([i for i, _ in slots]), torch.tensor([j for _, j in slots]))
    logps = seq.logps.new_zeros(shape).index_put(index, seq.logps)  # differentiable
    lengths = seq.lengths.new_zeros(shape).index_put(index, seq.lengths)
    scores = torch.zeros(shape, device=seq.logps.device)
    scores[index] = torch.tensor(
        [e.scores[j] for e in examples for j in range(len(e.completions))], device=scores.device
    )  # type: ignore[index]
    return PreferenceBatch(logps, group_logps=logps, group_lengths=lengths, group_scores=scores)


def evaluate(run: _Run, examples: Sequence[Example]) -> dict[str, float]:
    """The held-out measures: ``eval/loss`` (SFT: the mean NLL per completion token) and the preference
    losses' ``eval/rewards/*``, over all of ``examples``."""
    cfg = run.cfg
    run.policy.eval()
    totals: dict[str, float] = {}
    denominator = _denominator(cfg, examples)
    with torch.no_grad():
        for i in range(0, len(examples), cfg.micro_batch_size):
            _, metrics = batch_loss(run, examples[i : i + cfg.micro_batch_size], denominator)
            for k, v in metrics.items():
                if k == "loss" or k.startswith("rewards/"):
                    totals[f"eval/{k}"] = totals.get(f"eval/{k}", 0.0) + v
    run.policy.train()
    return totals


def _device(model: Any) -> Any:
    return next(model.parameters()).device


def _measures(m: dict[str, float]) -> str:
    return ", ".join(f"{k.removeprefix('eval/')} {v:.4f}" for k, v in m.items())


def _write_summary(run: _Run, result: OfflineResult) -> None:
    summary = {
        "algorithm": run.cfg.algorithm,
        "steps": result.steps,
        "train_examples": len(run.train),
        "heldout_examples": len(run.held),
        "eval_before": result.eval_before,
        "eval_after": result.eval_after,
        "model": str(result.final_model) if result.final_model else None,
    }
    (run.out / SUMMARY).write_text(json.dumps(summary, indent=2))


def result_line(result: OfflineResult) -> str:
    """``finished at step 100: held-out loss 1.2 -> 0.8; model: runs/sft/checkpoints/step_000100/model``."""
    how = "finished" if not result.interrupted else "interrupted"
    line = f"{how} at step {result.steps}"
    if result.eval_before and result.eval_after:
        keys = [k for k in ("eval/rewards/accuracies", "eval/loss") if k in result.eval_after]
        line += ": " + ", ".join(
            f"held-out {k.removeprefix('eval/')} {result.eval_before[k]:.4f} -> {result.eval_after[k]:.4f}"
            for k in keys
        )
    return (
        line
        + f"; outputs in {result.output_dir}"
        + (f"; model: {result.final_model}" if result.final_model else "")
    )
