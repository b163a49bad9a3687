"""What a run shows and leaves behind: metrics.jsonl, its progress on stderr, sampled rollouts,
optional TensorBoard / W&B / trackio, and a PNG of the reward, length, KL, entropy and clip curves at the end.

Progress: a live tqdm bar when stderr is a terminal; otherwise (a log file under SLURM or nohup, a
pipe) a bar would write a line per refresh, so there is one plain line every ``log_every`` steps.
Rollouts: every ``sample_every`` steps and always at the last step, so even a short run shows what the
model wrote. The curves are an extra: without matplotlib the run warns once and finishes as usual.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from rewardkit.console import optional_pyplot

log = logging.getLogger(__name__)

REQUIRED_KEYS = (
    "step",
    "reward_mean",
    "reward_std",
    "frac_zero_std_groups",
    "kl",
    "entropy",
    "clip_frac",
    "response_len_mean",
    "truncated_frac",
    "step_time_s",
    "rollout_time_s",
    "tokens_per_s",
)


def _rl_postfix(row: dict[str, Any]) -> dict[str, str]:
    return {
        "reward": f"{row['reward_mean']:.3f}",
        "kl": f"{row['kl']:.4f}",
        "len": f"{row['response_len_mean']:.0f}",
    }


def _rl_summary(row: dict[str, Any]) -> str:
    return (
        f"reward {row['reward_mean']:.3f} (std {row['reward_std']:.3f}), kl {row['kl']:.4f}, "
        f"len {row['response_len_mean']:.0f}"
    )


@dataclass(frozen=True)
class LogView:
    """What a kind of run logs: the keys every metrics row has, what its progress shows, what it plots."""

    required: tuple[str, ...]
    """Keys set to 0.0 in a row that lacks them, so every row has the same columns."""
    postfix: Callable[[dict[str, Any]], dict[str, str]]
    """The progress bar's figures."""
    summary: Callable[[dict[str, Any]], str]
    """A progress line's figures (after ``step N/M:``)."""
    curves: tuple[tuple[str, str], ...]
    """(key, title) of each panel of curves.png."""


RL_VIEW = LogView(
    REQUIRED_KEYS,
    _rl_postfix,
    _rl_summary,
    (
        ("reward_mean", "mean reward"),
        ("response_len_mean", "mean response length (tokens)"),
        ("kl", "KL to the reference"),
        ("entropy", "entropy (nats/token)"),
        ("clip_frac", "clipped fraction"),
    ),
)
"""``rewardkit train``'s RL runs."""


class RunLogger:
    """metrics.jsonl, progress, rollouts and trackers of one run (rank 0); ``enabled=False`` does nothing."""

    def __init__(
        self,
        out: Path,
        cfg: Any,
        *,
        enabled: bool = True,
        start_step: int = 0,
        view: LogView = RL_VIEW,
        decode: Callable[[Sequence[int]], str] | None = None,
    ) -> None:
        """``decode`` (token ids -> text, special tokens kept) lets a multi-turn rollout record show which
        tokens the policy sampled and which the environment wrote (``segments``)."""
        self.out, self.cfg, self.enabled, self.view = Path(out), cfg, enabled, view
        self.decode = decode
        self.history: list[dict[str, float]] = []
        self._bar = None
        self._lines = False  # plain progress lines instead of a bar (stderr is not a terminal)
        self._clock = (time.perf_counter(), start_step)  # when, and at which step, this process began
        self._trackers: list[Any] = []
        if not enabled:
            return
        self.out.mkdir(parents=True, exist_ok=True)
        (self.out / "config.yaml").write_text(
            yaml.safe_dump(json.loads(json.dumps(cfg.to_dict(), default=list)), sort_keys=False)
        )
        self.metrics_path = self.out / "metrics.jsonl"
        self.history = self._keep_history(start_step)
        if cfg.progress and sys.stderr.isatty():
            from tqdm import tqdm

            self._bar = tqdm(
                total=cfg.steps,
                initial=start_step,
                desc="train",
                unit="step",
                file=sys.stderr,
                dynamic_ncols=True,
            )
        self._lines = cfg.progress and self._bar is None
        self._trackers = _open_trackers(cfg, self.out)

    def _keep_history(self, start_step: int) -> list[dict[str, float]]:
        """On resume, drop rows of steps that will be redone, so metrics.jsonl has one row per step."""
        if not self.metrics_path.exists():
            return []
        rows = [json.loads(line) for line in self.metrics_path.read_text().splitlines() if line.strip()]
        rows = [r for r in rows if r.get("step", 0) <= start_step]
        self.metrics_path.write_text("".join(json.dumps(r) + "\n" for r in rows))
        return rows

    def log_step(self, step: int, metrics: dict[str, float], batch: Any) -> None:
        if not self.enabled:
            return
        # ``kl``, the public contract's name, is the KL to the reference (``kl_ref``): 0.0 when there is no
        # reference model. The drift from the rollout policy is ``kl_rollout``, never ``kl``.
        if "kl" in self.view.required:
            metrics.setdefault("kl", metrics.get("kl_ref", 0.0))
        for key in self.view.required:
            metrics.setdefault(key, 0.0)
        row = {k: (float(v) if isinstance(v, int | float) else v) for k, v in metrics.items()}
        row["step"] = step
        self.history.append(row)
        with self.metrics_path.open("a") as f:
            f.write(json.dumps(row) + "\n")
        self._show_progress(step, row)
        for tracker in self._trackers:
            tracker(step, row)
        every = self.cfg.sample_every
        if every and (step % every == 0 or step == self.cfg.steps):
            self.save_rollouts(step, batch)

    def _show_progress(self, step: int, row: dict[str, Any]) -> None:
        if self._bar is not None:
            self._bar.set_postfix(self.view.postfix(row))
            self._bar.update(1)
        elif self._lines and (step % self.cfg.log_every == 0 or step == self.cfg.steps):
            print(self._progress_line(step, row), file=sys.stderr, flush=True)

    def _progress_line(self, step: int, row: dict[str, Any]) -> str:
        """``step 20/100: reward 0.412 (std 0.301), kl 0.0031, len 87, 12.5s/step, elapsed 4m10s, eta 16m40s``."""
        began, first = self._clock
        elapsed = time.perf_counter() - began
        per_step = elapsed / max(step - first, 1)
        return (
            f"step {step}/{self.cfg.steps}: {self.view.summary(row)}, {per_step:.1f}s/step, "
            f"elapsed {_duration(elapsed)}, eta {_duration(per_step * (self.cfg.steps - step))}"
        )

    def save_rollouts(self, step: int, batch: Any) -> None:
        folder = self.out / "rollouts"
        folder.mkdir(exist_ok=True)
        trained = {id(s) for s in batch.samples}
        with (folder / f"step_{step:06d}.jsonl").open("w") as f:
            for s in batch.generated:  # dynamic sampling's dropped groups too: what the model wrote
                f.write(json.dumps(self._rollout_record(s, id(s) in trained), default=str) + "\n")

    def _rollout_record(self, s: Any, trained: bool) -> dict[str, Any]:
        t = s.trajectory
        record = {
            "task_id": t.task.id,
            "prompt": t.task.prompt,
            "answer": t.task.answer,
            "completion": t.completion,
            "reward": s.reward,
            "env_reward": s.score.reward,
            "metrics": s.score.metrics,
            "status": s.score.status,
            "tokens": len(t.completion_ids),
            "truncated": t.truncated,
            "turns": t.turns,
            "group": s.group,
            "policy_version": s.policy_version,
            "trained": trained,
        }
        if self.decode is not None and t.has_environment_tokens:
            record["segments"] = t.segments(self.decode)
        return record

    def note(self, message: str) -> None:
        if self.enabled:
            print(message, file=sys.stderr)

    def close(self) -> None:
        if not self.enabled:
            return
        if self._bar is not None:
            self._bar.close()
        for tracker in self._trackers:
            getattr(tracker, "close", lambda: None)()
        if self.history:
            try:
                plot_curves(self.history, self.out / "curves.png", self.view.curves)
            except Exception as exc:  # noqa: BLE001 - a plot is an extra: the finished run must not fail on it
                log.warning("could not draw %s: %s", self.out / "curves.png", exc)


SMOOTHING = 0.6
"""curves.png's EMA weight (``rewardkit view`` has a slider)."""


def ema(values: Sequence[float], weight: float = SMOOTHING) -> list[float]:
    """Exponential moving average with TensorBoard's debiasing: the running mean starts at 0 and is divided
    by ``1 - weight**t``, so the first points are not pulled towards 0 and a constant stays constant."""
    out, mean = [], 0.0
    for t, value in enumerate(values, start=1):
        mean = weight * mean + (1 - weight) * value
        out.append(mean / (1 - weight**t) if weight > 0 else value)
    return out


def plot_curves(
    history: list[dict[str, float]], path: Path, curves: tuple[tuple[str, str], ...] = RL_VIEW.curves
) -> list[str] | None:
    """One panel per (key, title) of ``curves`` that some row has, against the step: the raw values faint,
    their EMA (``SMOOTHING``) on top, as a PNG. Returns the keys drawn; None (warned once) without
    matplotlib."""
    plt = optional_pyplot(path.name)
    if plt is None:
        return None
    panels = [(key, title) for key, title in curves if any(key in r for r in history)]
    if not panels:
        return []
    cols = min(len(panels), 3)
    rows = -(-len(panels) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(5 * cols, 3.3 * rows), squeeze=False)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, (ax, (key, title)) in enumerate(zip(axes.flat, panels)):
        steps = [r["step"] for r in history if key in r]
        values = [r[key] for r in history if key in r]
        color = colors[i % len(colors)]
        ax.plot(steps, values, color=color, alpha=0.3, linewidth=1)
        ax.plot(steps, ema(values), color=color, linewidth=1.8)
        ax.set_title(title)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(panels) :]:
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return [key for key, _ in panels]


def _duration(seconds: float) -> str:
    """``75`` -> ``1m15s``; ``4000`` -> ``1h06m``."""
    seconds = int(seconds)
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


def _open_trackers(cfg: Any, out: Path) -> list[Any]:
    trackers = []
    for name in cfg.report_to:
        try:
            if name == "tensorboard":
                from torch.utils.tensorboard import SummaryWriter

                writer = SummaryWriter(str(out / "tensorboard"))

                def tb(step: int, row: dict, w: Any = writer) -> None:
                    for k, v in row.items():
                        if isinstance(v, float):
                            w.add_scalar(k, v, step)

                tb.close = writer.close  # type: ignore[attr-defined]
                trackers.append(tb)
            elif name == "wandb":
                import wandb

                run = wandb.init(config=cfg.to_dict(), dir=str(out))
                trackers.append(lambda step, row, r=run: r.log(row, step=step))
            elif name == "trackio":
                import trackio

                trackio.init(project="rewardkit", config=cfg.to_dict())
                trackers.append(lambda step, row: trackio.log(row))
            else:
                print(f"report_to: unknown tracker {name!r} (tensorboard, wandb, trackio)", file=sys.stderr)
        except ImportError:
            print(f"report_to: {name} is not installed; skipping it", file=sys.stderr)
    return trackers
