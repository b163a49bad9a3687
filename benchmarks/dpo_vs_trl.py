"""DPO on the tiny model, same pairs, same steps: rewardkit's trainer vs TRL's ``DPOTrainer``.

Per seed: the CPU example pipeline (``examples/pipelines/cpu.yaml``, its seed set everywhere as
``pipeline_cpu.py`` does) up to and including its ``pairs`` stage, which gives the SFT model and its
verifier-ranked pairs (``--inputs DIR`` reuses a finished pipeline output dir for seed 0, a second DIR
for seed 1, ...). Then two DPO runs from that SFT model on those pairs, each in its own process with one
torch thread, with the example's ``dpo`` hyper-parameters: sigmoid loss, beta 0.1, AdamW at lr 1e-5 (no
weight decay, betas 0.9/0.999), constant LR, no warm-up, gradient clipped to norm 1.0, 16 pairs a step in
one forward/backward pass, 100 steps, fp32, every pair trained on (no held-out share):

- rewardkit: ``rewardkit train CFG.yaml`` with ``algorithm: {name: dpo, beta: 0.1}``;
- TRL: ``trl.DPOTrainer`` (``loss_type="sigmoid"``, ``optim="adamw_torch"``, no gradient checkpointing,
  no bf16). It gets the very token ids rewardkit trains on (rewardkit's encoder: prompt and completion
  encoded apart, no special tokens, EOS after each completion): TRL's own tokenisation of plain text
  encodes prompt + completion as one string, and this tokenizer merges the prompt's last space with the
  completion's ``<`` (" <"), so the prompt loses its last token and the completion starts with a token
  the model never sees after "A: " (``--trl-tokenize native`` runs TRL's own). By default TRL also gets
  rewardkit's batches (a sampler that replays rewardkit's seeded order), so the two runs see the same 16
  pairs at every step and their per-step losses can be compared; ``--trl-order own`` keeps TRL's
  seeded random sampler (incomplete last batches dropped).

Time per step: rewardkit's ``step_time_s`` (metrics.jsonl), TRL's time between a callback's
``on_step_begin`` and ``on_step_end`` (forward, backward, clipping, AdamW; the data loader's collation
before it is left out), the mean over all steps. Accuracy: the demo suite (``rewardkit eval --suite
demo``: 200 held-out additions, greedy), pass@1 of ``math``, for the SFT model and both DPO models. Every
finished seed is written to ``--json`` at once.

    python benchmarks/dpo_vs_trl.py [--seeds 3] [--steps 100] [--inputs DIR ...] [--work DIR]
        [--trl-order same|own] [--trl-tokenize rewardkit|native] [--resume] [--write] [--json FILE]
    python benchmarks/dpo_vs_trl.py --report FILE.json [--write]   # the section of a saved run
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_report import write_section  # noqa: E402
from pipeline_cpu import seeded  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SECTION = "## DPO on the tiny model: rewardkit vs TRL's DPOTrainer, same pairs, same steps"
DEFAULT_JSON = Path(__file__).resolve().parent / "results" / "dpo_vs_trl.json"
BETA, LR, BATCH, MAX_GRAD_NORM = 0.1, 1e-5, 16, 1.0
LAST = 10
"""Final loss: the last step's, and the mean of the last ``LAST`` steps (one batch of 16 is noisy)."""


# ---------------------------------------------------------------- inputs: the pipeline up to ``pairs``


def pipeline_inputs(seed: int, out: Path) -> float:
    """The example pipeline for ``seed`` up to its ``pairs`` stage, written into ``out``; its wall time."""
    doc = seeded(seed, out)
    names = [s["name"] for s in doc["stages"]]
    doc["stages"] = doc["stages"][: names.index("pairs") + 1]
    path = out.parent / f"pipeline_seed{seed}.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    t0 = time.perf_counter()
    _run([sys.executable, "-m", "rewardkit", "pipeline", str(path)], out.parent / f"pipeline_seed{seed}.log")
    return time.perf_counter() - t0


def read_inputs(out: Path) -> dict[str, Any]:
    """The SFT model and the pairs file of a pipeline output dir (paths relative to the repository root
    when the pipeline wrote them so), with the pipeline's own measure of the SFT model."""
    state = json.loads((out / "pipeline.json").read_text())

    def where(p: str) -> str:
        return str(Path(p) if Path(p).is_absolute() else ROOT / p)

    stages = state["stages"]
    pairs = where(stages["pairs"]["outputs"]["data"])
    measured = {m["stage"]: m.get("math") for m in state.get("measures", [])}
    return {
        "dir": str(out),
        "sft_model": where(stages["sft"]["outputs"]["model"]),
        "pairs": pairs,
        "n_pairs": sum(1 for line in Path(pairs).read_text().splitlines() if line.strip()),
        "pipeline_sft_accuracy": measured.get("sft"),
    }


# ---------------------------------------------------------------- the two trainers and the evaluation


def train_rewardkit(inputs: dict[str, Any], seed: int, steps: int, work: Path) -> dict[str, Any]:
    cfg = {
        "model": inputs["sft_model"],
        "data": inputs["pairs"],
        "algorithm": {"name": "dpo", "beta": BETA},
        "steps": steps,
        "batch_size": BATCH,
        "micro_batch_size": BATCH,  # one forward/backward of the 16 pairs, as TRL's
        "lr": LR,
        "weight_decay": 0.0,
        "adam_betas": [0.9, 0.999],
        "max_grad_norm": MAX_GRAD_NORM,
        "warmup_steps": 0,
        "lr_schedule": "constant",
        "dtype": "fp32",
        "eval_fraction": 0,
        "seed": seed,
        "save_every": 0,
        "output_dir": str(work / "rewardkit"),
        "log_every": 25,
    }
    path = work / "rewardkit.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    wall = _worker({"kind": "rewardkit", "config": str(path)}, work / "rewardkit.log")
    rows = [json.loads(line) for line in (work / "rewardkit" / "metrics.jsonl").read_text().splitlines()]
    rows = [r for r in rows if "step_time_s" in r]
    summary = json.loads((work / "rewardkit" / "summary.json").read_text())
    return {
        "model": summary["model"],
        "wall_s": wall,
        **_timing([r["step_time_s"] for r in rows]),
        **_losses([r["loss"] for r in rows]),
        "pair_accuracy_last10": statistics.mean(r["rewards/accuracies"] for r in rows[-LAST:]),
        "margin_last10": statistics.mean(r["rewards/margins"] for r in rows[-LAST:]),
    }


def train_trl(
    inputs: dict[str, Any], seed: int, steps: int, work: Path, order: str, tokenize: str
) -> dict[str, Any]:
    spec = {
        "kind": "trl",
        "model": inputs["sft_model"],
        "data": inputs["pairs"],
        "seed": seed,
        "steps": steps,
        "order": order,
        "tokenize": tokenize,
        "out": str(work / "trl"),
    }
    wall = _worker(spec, work / "trl.log")
    result = json.loads((work / "trl" / "result.json").read_text())
    return {
        "model": result["model"],
        "wall_s": wall,
        **_timing(result["step_s"]),
        **_losses(result["losses"]),
        "pair_accuracy_last10": statistics.mean(result["pair_accuracies"][-LAST:]),
        "margin_last10": statistics.mean(result["margins"][-LAST:]),
        "loop_s_per_step": result["loop_s"] / len(result["step_s"]),
        "threads": result["threads"],
        "native_tokenisation_differs": result["native_differs"],
    }


def accuracy(model: str, out: Path, num_tasks: int | None) -> float:
    """pass@1 of ``math`` on the demo suite (``rewardkit eval``, one torch thread)."""
    _worker(
        {"kind": "eval", "model": model, "out": str(out), "num_tasks": num_tasks}, out.with_suffix(".log")
    )
    summary = json.loads((out / "summary.json").read_text())
    return float(summary["environments"]["math"]["pass_at_k"]["1"])


def _timing(step_s: list[float]) -> dict[str, Any]:
    return {
        "steps": len(step_s),
        "s_per_step": statistics.mean(step_s),
        "s_per_step_median": statistics.median(step_s),
        "s_per_step_after_first": statistics.mean(step_s[1:]) if len(step_s) > 1 else step_s[0],
        "first_step_s": step_s[0],
    }


def _losses(losses: list[float]) -> dict[str, Any]:
    return {"final_loss": losses[-1], "loss_last10": statistics.mean(losses[-LAST:]), "losses": losses}


# ---------------------------------------------------------------- worker processes


def _worker(spec: dict[str, Any], log: Path) -> float:
    """Run ``spec`` in a child process of this script (``--worker``); its wall time."""
    path = log.with_suffix(".spec.json")
    path.write_text(json.dumps(spec))
    t0 = time.perf_counter()
    _run([sys.executable, str(Path(__file__).resolve()), "--worker", str(path)], log)
    return time.perf_counter() - t0


def _run(command: list[str], log: Path) -> None:
    env = {**os.environ, "TOKENIZERS_PARALLELISM": "false"}
    with log.open("w") as f:
        proc = subprocess.run(command, cwd=ROOT, stdout=f, stderr=subprocess.STDOUT, text=True, env=env)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed (log {log}):\n{log.read_text()[-3000:]}")


def worker(spec: dict[str, Any]) -> None:
    import torch

    torch.set_num_threads(1)
    if spec["kind"] == "rewardkit":
        from rewardkit.cli import main as cli

        sys.exit(cli(["train", spec["config"]]))
    if spec["kind"] == "eval":
        from rewardkit.cli import main as cli

        argv = ["eval", "--model", spec["model"], "--suite", "demo", "--output-dir", spec["out"]]
        argv += ["--no-progress"] + (["--num-tasks", str(spec["num_tasks"])] if spec["num_tasks"] else [])
        sys.exit(cli(argv))
    trl_worker(spec)


def trl_worker(spec: dict[str, Any]) -> None:
    """TRL's DPOTrainer on the pairs, from the SFT model; writes ``out/result.json`` and ``out/model``."""
    import datasets
    import torch
    from transformers import AutoTokenizer, TrainerCallback
    from trl import DPOConfig, DPOTrainer

    from rewardkit.rl.offline_config import OfflineConfig
    from rewardkit.rl.offline_data import load_examples
    from rewardkit.rl.sampling import PromptSampler

    out = Path(spec["out"])
    tokenizer = AutoTokenizer.from_pretrained(spec["model"])
    # rewardkit's own tokenisation of the pairs (every row, in file order: eval_fraction 0)
    cfg = OfflineConfig(model=spec["model"], data=spec["data"], algorithm="dpo", eval_fraction=0.0)
    examples, _ = load_examples(cfg, tokenizer)
    rows = [json.loads(line) for line in Path(spec["data"]).read_text().splitlines() if line.strip()]
    assert len(rows) == len(examples)

    def native(prompt: str, completion: str) -> list[int]:  # what TRL's tokenisation of plain text gives
        return tokenizer(text=prompt + completion + tokenizer.eos_token)["input_ids"]

    native_differs = sum(
        native(r["prompt"], r[k]) != e.prompt + list(e.completions[i])
        for r, e in zip(rows, examples)
        for i, k in enumerate(("chosen", "rejected"))
    )
    if spec["tokenize"] == "rewardkit":
        dataset = datasets.Dataset.from_dict(
            {
                "prompt_ids": [e.prompt for e in examples],
                "chosen_ids": [list(e.completions[0]) for e in examples],
                "rejected_ids": [list(e.completions[1]) for e in examples],
            }
        )
    else:
        dataset = datasets.Dataset.from_dict(
            {k: [r[k] for r in rows] for k in ("prompt", "chosen", "rejected")}
        )
    order = None
    if spec["order"] == "same":  # rewardkit's batches: its PromptSampler with the run's seed
        sampler = PromptSampler(list(range(len(examples))), spec["seed"])
        order = [i for _ in range(spec["steps"]) for i in sampler.draw(BATCH)]

    class Replay(torch.utils.data.Sampler):
        def __init__(self, indices: list[int]) -> None:
            self.indices = indices

        def __iter__(self) -> Any:
            return iter(self.indices)

        def __len__(self) -> int:
            return len(self.indices)

    class Trainer(DPOTrainer):
        def _prepare_dataset(self, dataset: Any, processing_class: Any, args: Any, dataset_name: str) -> Any:
            if "prompt_ids" in dataset.column_names:  # already rewardkit's token ids
                return dataset
            return super()._prepare_dataset(dataset, processing_class, args, dataset_name)

        def _get_train_sampler(self, train_dataset: Any = None) -> Any:
            return Replay(order) if order is not None else super()._get_train_sampler(train_dataset)

    class StepClock(TrainerCallback):
        def __init__(self) -> None:
            self.step_s: list[float] = []
            self.begin = self.start = self.end = 0.0

        def on_train_begin(self, *a: Any, **k: Any) -> None:
            self.start = time.perf_counter()

        def on_step_begin(self, *a: Any, **k: Any) -> None:
            self.begin = time.perf_counter()

        def on_step_end(self, *a: Any, **k: Any) -> None:
            self.end = time.perf_counter()
            self.step_s.append(self.end - self.begin)

    config = DPOConfig(
        output_dir=str(out / "trainer"),
        beta=BETA,
        loss_type=["sigmoid"],
        learning_rate=LR,
        per_device_train_batch_size=BATCH,
        gradient_accumulation_steps=1,
        max_steps=spec["steps"],
        lr_scheduler_type="constant",
        warmup_steps=0,
        weight_decay=0.0,
        adam_beta1=0.9,
        adam_beta2=0.999,
        optim="adamw_torch",  # torch.optim.AdamW, as rewardkit (not the fused one)
        max_grad_norm=MAX_GRAD_NORM,
        max_length=1024,
        bf16=False,
        fp16=False,
        gradient_checkpointing=False,  # TRL's default is on; rewardkit's off
        model_init_kwargs={"dtype": "float32"},
        dataloader_drop_last=True,  # own order: every step 16 pairs, as rewardkit
        dataloader_num_workers=0,
        logging_steps=1,
        save_strategy="no",
        eval_strategy="no",
        report_to=[],
        disable_tqdm=True,
        use_cpu=True,
        seed=spec["seed"],
    )
    clock = StepClock()
    trainer = Trainer(
        model=spec["model"],
        args=config,
        train_dataset=dataset,
        processing_class=tokenizer,
        callbacks=[clock],
    )
    trainer.train()
    logs = [h for h in trainer.state.log_history if "loss" in h and "step" in h]
    trainer.save_model(str(out / "model"))
    tokenizer.save_pretrained(str(out / "model"))
    result = {
        "model": str(out / "model"),
        "step_s": clock.step_s,
        "loop_s": clock.end - clock.start,
        "losses": [h["loss"] for h in logs],
        "pair_accuracies": [h["rewards/accuracies"] for h in logs],
        "margins": [h["rewards/margins"] for h in logs],
        "threads": torch.get_num_threads(),
        "native_differs": f"{native_differs} of {2 * len(rows)} sequences",
    }
    (out / "result.json").write_text(json.dumps(result, indent=2))


# ---------------------------------------------------------------- the benchmark


def run(args: argparse.Namespace, command: str) -> dict[str, Any]:
    path = Path(args.json)
    results = json.loads(path.read_text()) if args.resume and path.exists() else {"seeds": {}}
    results.update(
        date=datetime.date.today().isoformat(),
        machine=f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
        f"Python {platform.python_version()}",
        load_before=", ".join(f"{x:.2f}" for x in os.getloadavg()),
        command=command,
        steps=args.steps,
        trl_order=args.trl_order,
        trl_tokenize=args.trl_tokenize,
        eval_tasks=args.eval_tasks,
    )
    with tempfile.TemporaryDirectory(prefix="dpo_vs_trl_") as tmp:
        root = Path(args.work) if args.work else Path(tmp)
        for seed in range(args.seeds):
            if str(seed) in results["seeds"]:
                continue
            work = root / f"seed{seed}"
            work.mkdir(parents=True, exist_ok=True)
            entry: dict[str, Any] = {"seed": seed}
            if seed < len(args.inputs or []):
                inputs = read_inputs(Path(args.inputs[seed]))
            else:
                entry["pipeline_wall_s"] = pipeline_inputs(seed, work / "pipeline")
                inputs = read_inputs(work / "pipeline")
            entry["inputs"] = inputs
            entry["rewardkit"] = train_rewardkit(inputs, seed, args.steps, work)
            entry["trl"] = train_trl(inputs, seed, args.steps, work, args.trl_order, args.trl_tokenize)
            entry["sft_accuracy"] = accuracy(inputs["sft_model"], work / "eval_sft", args.eval_tasks)
            for name in ("rewardkit", "trl"):
                entry[name]["accuracy"] = accuracy(
                    entry[name]["model"], work / f"eval_{name}", args.eval_tasks
                )
            a, b = entry["rewardkit"]["losses"], entry["trl"]["losses"]
            entry["max_abs_loss_diff"] = max(abs(x - y) for x, y in zip(a, b))
            results["seeds"][str(seed)] = entry
            results["load_after"] = ", ".join(f"{x:.2f}" for x in os.getloadavg())
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(results, indent=2))
            rk, trl = entry["rewardkit"], entry["trl"]
            print(
                f"[bench] seed {seed}: accuracy sft {entry['sft_accuracy']:.1%}, rewardkit {rk['accuracy']:.1%}, "
                f"TRL {trl['accuracy']:.1%}; s/step rewardkit {rk['s_per_step']:.3f}, TRL {trl['s_per_step']:.3f}; "
                f"final loss {rk['final_loss']:.4f} vs {trl['final_loss']:.4f}",
                flush=True,
            )
    return results


def report(results: dict[str, Any]) -> str:
    seeds = dict(sorted(results["seeds"].items(), key=lambda kv: int(kv[0])))
    runs = list(seeds.values())

    def mean_sd(values: list[float], fmt: str) -> str:
        spread = statistics.stdev(values) if len(values) > 1 else 0.0
        return f"{format(statistics.mean(values), fmt)} ± {format(spread, '.' + fmt.split('.')[-1])}"

    def col(get: Any) -> list[float]:
        return [get(r) for r in runs]

    ratio = col(lambda r: r["trl"]["s_per_step"] / r["rewardkit"]["s_per_step"])
    same = results["trl_order"] == "same"
    tokens = results["trl_tokenize"] == "rewardkit"
    differs = runs[0]["trl"]["native_tokenisation_differs"]
    lines = [
        SECTION,
        "",
        f"- date: {results['date']}; machine: {results['machine']}; load average before/after: "
        f"{results['load_before']} / {results['load_after']}",
        f"- command: `{results['command']}` (seeds {', '.join(seeds)})",
        "- per seed: the CPU example pipeline (`examples/pipelines/cpu.yaml`, its seed set everywhere) up to "
        "its `pairs` stage: the SFT model and its right-vs-wrong pairs (pairs per seed: "
        + ", ".join(str(r["inputs"]["n_pairs"]) for r in runs)
        + f"). From that SFT model on those pairs, {results['steps']} DPO steps each, one process and one torch "
        "thread each: rewardkit `rewardkit train` with `algorithm: {name: dpo, beta: 0.1}`, TRL "
        "`DPOTrainer(loss_type='sigmoid', beta=0.1)`; both AdamW (torch's, unfused) lr 1e-5, betas 0.9/0.999, "
        "no weight decay, constant LR, no warm-up, gradient clip 1.0, fp32, 16 pairs per step in one "
        "forward/backward (rewardkit `micro_batch_size: 16`; TRL no gradient accumulation, no gradient "
        "checkpointing), every pair trained on",
        "- tokens: "
        + (
            "TRL gets rewardkit's token ids (prompt and completion encoded apart, no special tokens, EOS after "
            f"each completion). TRL's own tokenisation of plain text (prompt + completion + EOS as one string) "
            f"differs here on {differs} of seed {next(iter(seeds))}: the tokenizer merges the prompt's final "
            "space with the completion's `<`, so the prompt would lose its last token and the completion start "
            "with ` <`, a token the model never sees after `A: ` when it generates"
            if tokens
            else "TRL's own tokenisation of the text (prompt + completion + EOS as one string; it differs from "
            f"rewardkit's on {differs} of seed {next(iter(seeds))})"
        ),
        "- batches: "
        + (
            "TRL replays rewardkit's order (a sampler drawing rewardkit's seeded `PromptSampler` indices), so "
            "both see the same 16 pairs at every step"
            if same
            else "each trainer its own seeded order (TRL: RandomSampler, incomplete last batch dropped)"
        ),
        "- accuracy: the demo suite (`rewardkit eval --suite demo`: 200 held-out additions, greedy), pass@1 of "
        "`math`. s/step: the mean over all steps of rewardkit's `step_time_s` and of TRL's time between "
        "`on_step_begin` and `on_step_end` (forward, backward, clip, AdamW step; TRL's collation in the data "
        "loader before the step is outside it). Loss: the last step's (last 10 steps' mean in brackets)",
        "",
        "| seed | SFT acc | rewardkit DPO acc | TRL DPO acc | rewardkit s/step | TRL s/step | TRL / rewardkit "
        "| rewardkit final loss | TRL final loss |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for seed, r in seeds.items():
        rk, trl = r["rewardkit"], r["trl"]
        lines.append(
            f"| {seed} | {r['sft_accuracy']:.1%} | {rk['accuracy']:.1%} | {trl['accuracy']:.1%} | "
            f"{rk['s_per_step']:.3f} | {trl['s_per_step']:.3f} | {trl['s_per_step'] / rk['s_per_step']:.2f}x | "
            f"{rk['final_loss']:.4f} ({rk['loss_last10']:.4f}) | {trl['final_loss']:.4f} ({trl['loss_last10']:.4f}) |"
        )
    lines.append(
        f"| mean ± sd | {mean_sd(col(lambda r: 100 * r['sft_accuracy']), '.1f')}% | "
        f"{mean_sd(col(lambda r: 100 * r['rewardkit']['accuracy']), '.1f')}% | "
        f"{mean_sd(col(lambda r: 100 * r['trl']['accuracy']), '.1f')}% | "
        f"{mean_sd(col(lambda r: r['rewardkit']['s_per_step']), '.3f')} | "
        f"{mean_sd(col(lambda r: r['trl']['s_per_step']), '.3f')} | {mean_sd(ratio, '.2f')}x | "
        f"{mean_sd(col(lambda r: r['rewardkit']['final_loss']), '.4f')} | "
        f"{mean_sd(col(lambda r: r['trl']['final_loss']), '.4f')} |"
    )
    gaps = col(lambda r: 100 * (r["trl"]["accuracy"] - r["rewardkit"]["accuracy"]))
    gains = col(lambda r: 100 * (r["rewardkit"]["accuracy"] - r["sft_accuracy"]))
    lines += [
        "",
        f"- DPO's gain over SFT, rewardkit: {mean_sd(gains, '+.1f')} points (per seed: "
        + ", ".join(f"{g:+.1f}" for g in gains)
        + f"); TRL minus rewardkit: {mean_sd(gaps, '+.1f')} points (per seed: "
        + ", ".join(f"{g:+.1f}" for g in gaps)
        + ")",
        "- largest per-step difference of the training loss, TRL vs rewardkit, per seed: "
        + ", ".join(f"{r['max_abs_loss_diff']:.2g}" for r in runs)
        + (
            " (the same batches at every step)"
            if same
            else " (different batches: not comparable step by step)"
        ),
        "- s/step without the first step: rewardkit "
        + mean_sd(col(lambda r: r["rewardkit"]["s_per_step_after_first"]), ".3f")
        + ", TRL "
        + mean_sd(col(lambda r: r["trl"]["s_per_step_after_first"]), ".3f")
        + "; TRL's whole loop per step (collation and logging too): "
        + mean_sd(col(lambda r: r["trl"]["loop_s_per_step"]), ".3f"),
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--steps", type=int, default=100, help="DPO steps of each run (the example's: 100)")
    p.add_argument(
        "--inputs",
        nargs="+",
        metavar="DIR",
        help="finished pipeline output dirs to reuse: seed 0's, seed 1's, ...",
    )
    p.add_argument("--work", help="keep the pipelines, runs and evaluations here (default: a temporary dir)")
    p.add_argument("--trl-order", choices=("same", "own"), default="same", help="TRL's batches (see above)")
    p.add_argument("--trl-tokenize", choices=("rewardkit", "native"), default="rewardkit")
    p.add_argument("--eval-tasks", type=int, help="evaluate on the suite's first N tasks only (smoke tests)")
    p.add_argument("--json", default=str(DEFAULT_JSON))
    p.add_argument("--resume", action="store_true", help="keep the seeds already in --json")
    p.add_argument("--write", action="store_true", help="write the section into BENCHMARKS.md")
    p.add_argument("--benchmarks-file", default=str(ROOT / "BENCHMARKS.md"))
    p.add_argument(
        "--report", metavar="FILE.json", help="print (with --write: write) the section of a saved run"
    )
    p.add_argument("--worker", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        worker(json.loads(Path(args.worker).read_text()))
        return
    if args.report:
        text = report(json.loads(Path(args.report).read_text()))
        print(text)
        if args.write:
            write_section(args.benchmarks_file, SECTION, text)
        return
    command = "python benchmarks/" + " ".join(
        [Path(__file__).name, *(sys.argv[1:] if argv is None else argv)]
    )
    results = run(args, command)
    text = report(results)
    print(text)
    if args.write:
        write_section(args.benchmarks_file, SECTION, text)


if __name__ == "__main__":
    main()
