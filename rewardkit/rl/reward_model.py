"""``rewardkit rm``: a Bradley-Terry reward model trained on preference pairs (``rewardkit pairs`` output).

The model is a sequence classifier with one output (``AutoModelForSequenceClassification``, ``num_labels=1``)
on top of any causal LM checkpoint. Its score of a (prompt, completion) is the logit at the last token.
The loss is the Bradley-Terry negative log-likelihood that the chosen completion is preferred,
``-log sigma(r(x, y_c) - r(x, y_r))`` (Ouyang et al. 2022, eq. 1, one pair at a time), averaged over a batch.
A held-out share of the pairs (``eval_fraction``, picked by the seed) measures pairwise accuracy, the
fraction of held-out pairs whose chosen completion scores higher.

    rewardkit rm --model runs/demo/sft_model --data runs/pairs.jsonl --output-dir runs/rm [--steps 200]

The run writes ``model/`` (a Hugging Face checkpoint with its tokenizer, for the ``reward_model``
environment), ``metrics.jsonl`` (loss and accuracy per step) and ``summary.json`` (held-out accuracy
before and after training).
"""

from __future__ import annotations

import argparse
import json
import random
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from rewardkit.models.reward import load_reward_model, render, scores


@dataclass(frozen=True)
class RewardModelConfig:
    """``rewardkit rm``'s settings (every field is a flag)."""

    model: str = ""
    """The base checkpoint: a causal LM directory or hub id; its LM head is replaced by a score head."""
    data: str = ""
    """Preference pairs, JSONL with ``prompt``, ``chosen`` and ``rejected`` (``rewardkit pairs`` writes them)."""
    output_dir: str = "runs/rm"
    """Where ``model/``, ``metrics.jsonl`` and ``summary.json`` are written."""
    steps: int = 200
    """Optimizer steps (the training pairs are cycled through in the seed's order)."""
    batch_size: int = 8
    """Pairs per optimizer step."""
    lr: float = 1e-4
    """AdamW learning rate, constant; gradients clipped at norm 1."""
    max_length: int = 512
    """Tokens of prompt + completion kept (from the left: the completion's end is what is scored)."""
    eval_fraction: float = 0.2
    """Share of the pairs held out for the pairwise accuracy."""
    seed: int = 0
    """Seed of the held-out split, the pair order and the score head's initialisation."""

    def __post_init__(self) -> None:
        for name, ok, expected in (
            ("model", bool(self.model), "a model directory or hub id"),
            ("data", bool(self.data), "a JSONL file of pairs"),
            ("steps", self.steps >= 1, ">= 1"),
            ("batch_size", self.batch_size >= 1, ">= 1"),
            ("lr", self.lr > 0, "> 0"),
            ("max_length", self.max_length >= 8, ">= 8"),
            ("eval_fraction", 0 < self.eval_fraction < 1, "in (0, 1)"),
        ):
            if not ok:
                raise ValueError(f"rm config: {name}: got {getattr(self, name)!r}, expected {expected}")


def train_reward_model(cfg: RewardModelConfig) -> dict[str, Any]:
    """Train on ``cfg.data``'s pairs; returns (and writes) the summary."""
    import torch
    import torch.nn.functional as F

    rows = [json.loads(line) for line in Path(cfg.data).read_text().splitlines() if line.strip()]
    for i, row in enumerate(rows):
        missing = [k for k in ("prompt", "chosen", "rejected") if k not in row]
        if missing:
            raise ValueError(
                f"{cfg.data} line {i + 1}: missing {', '.join(missing)} (a pairs file has prompt, chosen, rejected)"
            )
    rng = random.Random(cfg.seed)
    rng.shuffle(rows)
    held = max(1, int(round(len(rows) * cfg.eval_fraction)))
    if len(rows) - held < 1:
        raise ValueError(f"{cfg.data}: {len(rows)} pairs; need at least 2 (some to train on, some held out)")
    test, train = rows[:held], rows[held:]
    torch.manual_seed(cfg.seed)
    model, tokenizer = load_reward_model(cfg.model)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr)
    out = Path(cfg.output_dir)
    out.mkdir(parents=True, exist_ok=True)

    def pair_scores(batch: list[dict[str, Any]]) -> tuple[Any, Any]:
        texts = [render(tokenizer, r["prompt"], r[k]) for k in ("chosen", "rejected") for r in batch]
        s = scores(model, tokenizer, texts, cfg.max_length)
        return s[: len(batch)], s[len(batch) :]

    def accuracy(pairs: list[dict[str, Any]]) -> float:
        model.eval()
        right = 0
        with torch.no_grad():
            for i in range(0, len(pairs), cfg.batch_size):
                c, r = pair_scores(pairs[i : i + cfg.batch_size])
                right += int((c > r).sum())
        model.train()
        return right / len(pairs)

    before = accuracy(test)
    with (out / "metrics.jsonl").open("w") as log:
        for step in range(1, cfg.steps + 1):
            batch = [train[(step * cfg.batch_size + j) % len(train)] for j in range(cfg.batch_size)]
            c, r = pair_scores(batch)
            loss = -F.logsigmoid(c - r).mean()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            row = {"step": step, "loss": loss.item(), "accuracy": (c > r).float().mean().item()}
            log.write(json.dumps(row) + "\n")
    after = accuracy(test)
    model.save_pretrained(out / "model")
    tokenizer.save_pretrained(out / "model")
    summary = {
        "heldout_pairs": len(test),
        "train_pairs": len(train),
        "heldout_accuracy_before": before,
        "heldout_accuracy_after": after,
        "model": str(out / "model"),
        "config": asdict(cfg),
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    return summary


def add_parser(sub: Any) -> None:
    from rewardkit.config import add_arguments

    p = sub.add_parser(
        "rm",
        help="train a Bradley-Terry reward model on preference pairs (the reward_model environment scores with it)",
        description=(__doc__ or "").split("\n\n")[0],
    )
    add_arguments(p, RewardModelConfig)
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from rewardkit.config import build, values_from_args

    cfg = build(RewardModelConfig, values_from_args(args, RewardModelConfig), where="rm config")
    s = train_reward_model(cfg)
    print(
        f"held-out pairwise accuracy {s['heldout_accuracy_before']:.1%} -> {s['heldout_accuracy_after']:.1%} "
        f"({s['heldout_pairs']} pairs); reward model: {s['model']}"
    )
    return 0
