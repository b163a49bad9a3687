"""A training run's directory and how a run stops: what ``train()`` may do with ``output_dir``, and what
SIGINT (Ctrl-C) and SIGTERM (a scheduler's preemption) do.

- A directory that holds a run (``metrics.jsonl``, ``config.yaml`` or ``checkpoints/``) is refused before
  anything loads unless the call says what to do with it, as ``rewardkit eval`` does: ``resume``
  continues it, ``overwrite`` deletes that run's outputs (only those: other files stay) and starts again.
- ``resume`` continues from the latest checkpoint, and starts from step 0 when there is none (as verl's
  ``resume_mode: auto``, so a job script can always pass ``--resume``). A config that differs from the one
  the checkpoint was trained with is refused, naming each key (old -> new), except the keys in
  ``RESUME_SAFE_KEYS``; ``allow_config_change`` accepts it and keeps the old ``config.yaml`` as
  ``config.step_N.yaml``.
- ``StopSignals`` turns SIGINT and SIGTERM into a clean stop at a point where the run can be saved (see
  its docstring); the trainer then checkpoints the last finished step.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import signal
import sys
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

import yaml

from rewardkit.models.loading import CHECKPOINTS, checkpoint_step, latest_checkpoint

RunConfig = Any
"""A run's config: ``TrainConfig``, or ``rewardkit.rl.offline_config.OfflineConfig`` (a dataclass with ``to_dict``)."""

RUN_MARKERS = ("metrics.jsonl", "config.yaml", CHECKPOINTS)
"""Any of these in ``output_dir`` means a run was started there."""
RUN_OUTPUTS = (
    *RUN_MARKERS,
    "rollouts",
    "curves.png",
    "tensorboard",
    "wandb",
    "tiny_model",
    "summary.json",  # the offline stages' (rewardkit.rl.offline)
    "eval_before.json",
)
"""What a run writes into ``output_dir`` (with ``config.step_N.yaml``): all that ``overwrite`` deletes."""
RESUME_SAFE_KEYS = frozenset(
    {
        "steps",  # extending (or shortening) a run
        "save_every",
        "keep_checkpoints",
        "sample_every",
        "exploit_warn_rise",
        "report_to",
        "progress",
        "log_every",
        "verbose",
        "output_dir",  # a run directory that was moved or copied
        "micro_batch_size",  # the same gradients, laid out differently on the hardware
        "strategy",  # ddp <-> fsdp: the same step, the models replicated or sharded
        "fsdp",
        "rollout_batch_size",
        "gradient_checkpointing",
        "vllm",
        "rollout_threads",  # the rollout process's share of the CPU threads
    }
)
"""Config keys that may differ on resume without ``allow_config_change``: bookkeeping, and how the same
computation is laid out on the machine. Everything else changes what is trained."""


class RunDirError(ValueError):
    """``output_dir`` holds a run this call would clobber, or one that ``resume`` cannot continue as asked."""


@dataclass(frozen=True)
class RunDirMode:
    """What ``train()`` may do with an ``output_dir`` that already holds a run."""

    resume: bool = False
    """Continue the run from its latest checkpoint (from step 0 when it has none)."""
    overwrite: bool = False
    """Delete the run's outputs (``RUN_OUTPUTS``) and start again."""
    allow_config_change: bool = False
    """With ``resume``: accept a config that differs from the checkpoint's beyond ``RESUME_SAFE_KEYS``."""

    def __post_init__(self) -> None:
        if self.resume and self.overwrite:
            raise ValueError("--resume and --overwrite contradict each other; pick one")


def prepare(out: Path, cfg: RunConfig, mode: RunDirMode, *, main: bool = True) -> Path | None:
    """Check or continue ``out`` before anything loads; returns the checkpoint to resume from (with
    ``overwrite``, ``clear_for_overwrite`` deletes the old run later).

    ``main``: this process is rank 0, the one that deletes files and prints."""
    used = [name for name in RUN_MARKERS if (out / name).exists()]
    if used and mode.overwrite:
        return None  # deleted by clear_for_overwrite, once the rest of the config has been checked
    if not mode.resume:
        if used:
            raise RunDirError(
                f"{out} already holds a training run ({', '.join(used)}); pass --resume to continue it, "
                "--overwrite to replace it, or choose another output_dir (--set output_dir=...)"
            )
        return None
    latest = latest_checkpoint(out)
    if latest is None:
        if main:
            _say(f"--resume: no checkpoint in {out / CHECKPOINTS}: starting from step 0")
        return None
    _check_config(out, latest, cfg, mode, main)
    return latest


def clear_for_overwrite(out: Path, mode: RunDirMode, *, main: bool = True) -> None:
    """With ``overwrite``, delete the previous run in ``out``: called after the environment, the tasks and
    the model paths were checked, so a typo in the new config never costs the old run."""
    if mode.overwrite and main and any((out / name).exists() for name in RUN_MARKERS):
        clear(out)
        _say(f"--overwrite: deleted the previous run in {out}")


def clear(out: Path) -> None:
    """Delete what a run wrote into ``out`` (``RUN_OUTPUTS``, ``config.step_N.yaml``); nothing else."""
    for path in [*(out / name for name in RUN_OUTPUTS), *out.glob("config.step_*.yaml")]:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        elif path.exists() or path.is_symlink():
            path.unlink()


def config_changes(stored: Mapping[str, Any], cfg: RunConfig) -> dict[str, tuple[Any, Any]]:
    """The keys (dotted when nested: ``algo.kl_coef``) whose values differ, as (old, new).

    A key the stored config lacks (written by an older version) counts as its default."""
    defaults = {
        f.name: f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
        for f in dataclasses.fields(type(cfg))  # TrainConfig, or the offline stages' OfflineConfig
    }
    return _diff({**_plain(defaults), **stored}, _plain(cfg.to_dict()))


def _check_config(out: Path, latest: Path, cfg: RunConfig, mode: RunDirMode, main: bool) -> None:
    """Refuse a resume whose config differs from the checkpoint's beyond ``RESUME_SAFE_KEYS``; say what
    is resumed, and with which changes."""
    step = checkpoint_step(latest)
    changes = config_changes(_stored_config(out, latest), cfg)
    blocking = {k: v for k, v in changes.items() if k.split(".")[0] not in RESUME_SAFE_KEYS}
    kept = out / f"config.step_{step:06d}.yaml"
    if blocking and not mode.allow_config_change:
        raise RunDirError(
            f"refusing to resume in {out}: the config differs from the one {latest.name} was trained with:\n"
            + _listing(blocking)
            + "\nput the old values back, or pass --allow-config-change to continue with the new ones (the "
            f"old config.yaml is then kept as {kept.name}). These keys may change on resume without it: "
            + ", ".join(sorted(RESUME_SAFE_KEYS))
        )
    if not main:
        return
    if blocking and (out / "config.yaml").exists():
        shutil.copyfile(out / "config.yaml", kept)
    _say(f"resuming from {latest} (step {step})" + (f"; changed:\n{_listing(changes)}" if changes else ""))
    if blocking:
        _say(f"--allow-config-change: the config before step {step + 1} is kept in {kept}")


def _stored_config(out: Path, latest: Path) -> dict[str, Any]:
    """The config the checkpoint was written with (its ``config.json``), else the run's ``config.yaml``."""
    if (latest / "config.json").exists():
        return json.loads((latest / "config.json").read_text())
    if (out / "config.yaml").exists():
        return yaml.safe_load((out / "config.yaml").read_text()) or {}
    return {}


_UNSET = "(unset)"


def _diff(old: Any, new: Any, key: str = "") -> dict[str, tuple[Any, Any]]:
    if isinstance(old, dict) and isinstance(new, dict):
        out: dict[str, tuple[Any, Any]] = {}
        for k in dict.fromkeys([*old, *new]):
            out |= _diff(old.get(k, _UNSET), new.get(k, _UNSET), f"{key}.{k}" if key else k)
        return out
    return {} if old == new else {key: (old, new)}


def _listing(changes: Mapping[str, tuple[Any, Any]]) -> str:
    return "\n".join(f"  {k}: {_show(a)} -> {_show(b)}" for k, (a, b) in changes.items())


def _show(value: Any) -> str:
    return value if value is _UNSET else json.dumps(value, default=str)


def _plain(value: Any) -> Any:
    """As JSON has it (tuples as lists), the form the stored configs are in."""
    return json.loads(json.dumps(value, default=str))


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------------------------------
# Signals


class Interrupted(KeyboardInterrupt):
    """SIGINT or SIGTERM stopped ``train()``; ``signum`` says which."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def stop_reason(exc: KeyboardInterrupt) -> tuple[int | None, str]:
    """The signal behind an interruption (None for a KeyboardInterrupt raised by code) and how a run's
    note says it: ``stopped by SIGTERM``, ``interrupted``."""
    signum = exc.signum if isinstance(exc, Interrupted) else None
    return signum, f"stopped by {signal.Signals(signum).name}" if signum is not None else "interrupted"


class StopSignals:
    """SIGINT and SIGTERM during ``train()``: stop where the run can be saved as its last finished step.

    A signal during a rollout (generation and scoring: most of a step) stops at once with ``Interrupted``;
    the policy has not changed yet, so the trainer undoes the step (the prompt sampler and the random
    generators go back to where it began) and it is redone exactly on resume. A signal at any other moment
    (the update, a checkpoint) is held until the step is done and ``check`` raises it, so an update is
    never cut in half. A second signal while one is held stops at once, and ``clean`` is then False: the
    state is mid-update and not worth a checkpoint. Handlers are installed on entry and the previous ones
    restored on exit, only in the main thread (the only one Python delivers signals to)."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self) -> None:
        self.requested: int | None = None
        """The signal received and held until the step is done."""
        self.clean = False
        """Whether the last interruption left the run at a step boundary (or in a rollout)."""
        self._in_rollout = False
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> StopSignals:
        if threading.current_thread() is threading.main_thread():
            for signum in self.SIGNALS:
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler if handler is not None else signal.SIG_DFL)
        self._previous.clear()

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self._in_rollout or self.requested is not None:
            self.clean = self._in_rollout
            raise Interrupted(signum)
        self.requested = signum

    @contextmanager
    def rollout(self) -> Iterator[None]:
        """A stretch that may be abandoned: a signal (or a KeyboardInterrupt) in it stops cleanly."""
        self.check()
        self._in_rollout = True
        try:
            yield
        except KeyboardInterrupt:
            self.clean = True
            raise
        finally:
            self._in_rollout = False

    def check(self) -> None:
        """Raise ``Interrupted`` for a signal held since the last step boundary."""
        if self.requested is not None:
            self.clean = True
            raise Interrupted(self.requested)
