"""Run directories: a used ``output_dir`` is never clobbered, checkpoints and ``checkpoints/latest`` always
agree, ``--resume`` says what it continues and refuses a changed config, and SIGTERM (preemption) saves a
checkpoint like Ctrl-C does."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import replace
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from rewardkit.models.loading import STATE_FILE, latest_checkpoint  # noqa: E402
from rewardkit.registry import FunctionEnv  # noqa: E402
from rewardkit.rl.checkpoint import prune  # noqa: E402
from rewardkit.rl.config import TrainConfig  # noqa: E402
from rewardkit.rl.run_dir import Interrupted, RunDirError, StopSignals  # noqa: E402
from rewardkit.rl.trainer import train  # noqa: E402
from rewardkit.types import Task  # noqa: E402


def digits(completion, *, answer=None, prompt=None, info=None):
    """Toy reward with signal at random init: the share of the completion's characters that are digits."""
    text = completion.replace(" ", "")
    return sum(c.isdigit() for c in text) / max(len(text), 1)


@pytest.fixture(scope="module")
def tiny_model(say_model):
    return say_model("small")


def tasks(n=16):
    return [Task(prompt=f"Say {i}:", id=str(i)) for i in range(n)]


def config(tiny_model, out, **kw):
    base = dict(
        model=tiny_model,
        env="digits",
        prompts_per_step=4,
        group_size=2,
        max_new_tokens=6,
        steps=2,
        lr=3e-3,
        micro_batch_size=8,
        output_dir=str(out),
        save_every=0,
        sample_every=1,
        progress=False,
        algo={"kl_coef": 0.0},
    )
    return TrainConfig(**{**base, **kw})


def env(cls=FunctionEnv):
    return cls(digits, "digits", executor="inline")


def rows(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def rollouts(out: Path, step: int) -> list[tuple[str, str]]:
    """(task id, completion) of each sample written at ``step``."""
    lines = (out / "rollouts" / f"step_{step:06d}.jsonl").read_text().splitlines()
    return [(r["task_id"], r["completion"]) for r in map(json.loads, lines)]


def listing(out: Path) -> dict[str, str]:
    """Every file under ``out`` with its size and mtime: what a refused call must leave untouched."""
    return {
        str(p.relative_to(out)): f"{p.stat().st_size}:{p.stat().st_mtime_ns}"
        for p in sorted(out.rglob("*"))
        if p.is_file()
    }


# ---- a used output directory ------------------------------------------------------------------------------
def test_a_used_output_dir_is_refused_before_any_model_loads(tiny_model, tmp_path):
    cfg = config(tiny_model, tmp_path, save_every=1)
    train(cfg, env=env(), tasks=tasks())
    before = listing(tmp_path)
    # a model that does not exist: had anything loaded before the check, this would fail differently
    missing = replace(cfg, model=str(tmp_path / "no_such_model"), steps=1)
    with pytest.raises(RunDirError, match=r"already holds a training run.*--resume.*--overwrite"):
        train(missing, env=env(), tasks=tasks())
    assert listing(tmp_path) == before


def test_overwrite_deletes_the_old_run_and_starts_fresh(tiny_model, tmp_path):
    cfg = config(tiny_model, tmp_path, steps=3, save_every=1, keep_checkpoints=0)
    train(cfg, env=env(), tasks=tasks())
    (tmp_path / "notes.txt").write_text("mine")  # not a run output: kept
    result = train(replace(cfg, steps=1), env=env(), tasks=tasks(), overwrite=True)
    assert [r["step"] for r in rows(tmp_path)] == [1]
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["latest", "step_000001"]
    assert sorted(p.name for p in (tmp_path / "rollouts").iterdir()) == ["step_000001.jsonl"]
    assert latest_checkpoint(tmp_path) == tmp_path / "checkpoints" / "step_000001"
    assert result.final_model == tmp_path / "checkpoints" / "step_000001" / "model"
    assert (tmp_path / "notes.txt").read_text() == "mine"


def test_a_mistyped_model_path_fails_before_overwrite_deletes_anything(tiny_model, tmp_path):
    cfg = config(tiny_model, tmp_path, steps=1)
    train(cfg, env=env(), tasks=tasks())
    with pytest.raises(FileNotFoundError, match="does not exist"):
        train(replace(cfg, model=str(tmp_path / "no_such_model")), env=env(), tasks=tasks(), overwrite=True)
    assert [r["step"] for r in rows(tmp_path)] == [1]  # the old run is intact
    assert latest_checkpoint(tmp_path) is not None


def test_resume_and_overwrite_contradict(tiny_model, tmp_path):
    with pytest.raises(ValueError, match="--resume and --overwrite contradict each other"):
        train(config(tiny_model, tmp_path), env=env(), tasks=tasks(), resume=True, overwrite=True)


def _cli(*args: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "rewardkit", "train", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300)


def test_the_cli_refuses_a_used_output_dir_naming_the_flags(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "metrics.jsonl").write_text('{"step": 1}\n')
    yaml = tmp_path / "cfg.yaml"
    yaml.write_text(f"model: tiny\nenv: math\noutput_dir: {run}\nprogress: false\n")
    proc = _cli(str(yaml))
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "already holds a training run" in proc.stderr
    assert "--resume" in proc.stderr and "--overwrite" in proc.stderr
    proc = _cli(str(yaml), "--resume", "--overwrite")
    assert proc.returncode == 2 and "contradict" in proc.stderr
    assert (run / "metrics.jsonl").read_text() == '{"step": 1}\n'


# ---- checkpoints and checkpoints/latest ---------------------------------------------------------------------
def _fake_checkpoints(root: Path, steps: list[int], latest: int | None) -> None:
    for step in steps:
        (root / f"step_{step:06d}").mkdir(parents=True)
        (root / f"step_{step:06d}" / STATE_FILE).write_bytes(b"")
    if latest is not None:
        (root / "latest").write_text(f"step_{latest:06d}")


def test_prune_orders_by_step_number_and_never_deletes_the_latest(tmp_path):
    root = tmp_path / "checkpoints"
    _fake_checkpoints(root, [999_999, 1_000_000], latest=1_000_000)  # "step_1000000" < "step_999999"
    prune(root, keep=1)
    assert [p.name for p in root.glob("step_*")] == ["step_1000000"]
    _fake_checkpoints(root, [20, 30], latest=2)  # latest older than others: still kept
    _fake_checkpoints(root, [2], latest=2)
    prune(root, keep=2)
    assert sorted(p.name for p in root.glob("step_*")) == ["step_000002", "step_1000000"]


def test_latest_checkpoint_falls_back_to_the_newest_complete_step_when_latest_dangles(tmp_path):
    root = tmp_path / "checkpoints"
    _fake_checkpoints(root, [2, 3, 10], latest=12)  # names a deleted folder
    (root / "step_000010" / STATE_FILE).unlink()  # incomplete: never resumed from
    assert latest_checkpoint(tmp_path) == root / "step_000003"
    (root / "latest").unlink()
    assert latest_checkpoint(tmp_path) == root / "step_000003"
    _fake_checkpoints(root, [1], latest=1)  # a pointer to a complete checkpoint is trusted
    assert latest_checkpoint(tmp_path) == root / "step_000001"
    assert latest_checkpoint(tmp_path / "nothing_here") is None


# ---- resume -------------------------------------------------------------------------------------------------
def test_resume_says_what_it_continues_and_extends_steps(tiny_model, tmp_path, capsys):
    cfg = config(tiny_model, tmp_path)
    first = train(cfg, env=env(), tasks=tasks())
    assert first.final_model == tmp_path / "checkpoints" / "step_000002" / "model"
    capsys.readouterr()
    result = train(replace(cfg, steps=3, sample_every=0), env=env(), tasks=tasks(), resume=True)
    err = capsys.readouterr().err
    assert f"resuming from {tmp_path / 'checkpoints' / 'step_000002'} (step 2)" in err
    assert "steps: 2 -> 3" in err
    assert [r["step"] for r in rows(tmp_path)] == [1, 2, 3]
    assert result.final_model == tmp_path / "checkpoints" / "step_000003" / "model"
    from transformers import AutoModelForCausalLM

    AutoModelForCausalLM.from_pretrained(result.final_model)  # a Hugging Face model directory


def test_resume_without_a_checkpoint_starts_from_step_zero_and_says_so(tiny_model, tmp_path, capsys):
    train(config(tiny_model, tmp_path), env=env(), tasks=tasks(), resume=True)
    assert f"no checkpoint in {tmp_path / 'checkpoints'}: starting from step 0" in capsys.readouterr().err
    assert [r["step"] for r in rows(tmp_path)] == [1, 2]


def test_resume_refuses_changed_hyperparameters_unless_allowed(tiny_model, tmp_path, capsys):
    cfg = config(tiny_model, tmp_path)
    train(cfg, env=env(), tasks=tasks())
    stored = (tmp_path / "config.yaml").read_text()
    changed = replace(cfg, steps=3, lr=1e-2, algo={"kl_coef": 0.1})
    with pytest.raises(RunDirError) as err:
        train(changed, env=env(), tasks=tasks(), resume=True)
    message = str(err.value)
    assert "lr: 0.003 -> 0.01" in message and "algo.kl_coef: 0.0 -> 0.1" in message
    assert "steps" not in message.split("--allow-config-change")[0]  # extending a run is allowed
    assert "--allow-config-change" in message
    assert (tmp_path / "config.yaml").read_text() == stored
    capsys.readouterr()
    train(changed, env=env(), tasks=tasks(), resume=True, allow_config_change=True)
    assert "lr: 0.003 -> 0.01" in capsys.readouterr().err
    assert (tmp_path / "config.step_000002.yaml").read_text() == stored  # the old config is kept
    assert "lr: 0.01" in (tmp_path / "config.yaml").read_text()
    assert [r["step"] for r in rows(tmp_path)] == [1, 2, 3]


# ---- Ctrl-C and SIGTERM -------------------------------------------------------------------------------------
class SignalOnThirdBatch(FunctionEnv):
    """Sends a signal to this process (or raises KeyboardInterrupt) while scoring the third batch."""

    calls = 0
    signum: int | None = signal.SIGTERM

    def score_batch(self, samples):
        type(self).calls += 1
        if type(self).calls == 3:
            if self.signum is None:
                raise KeyboardInterrupt
            os.kill(os.getpid(), self.signum)
            time.sleep(1)  # the handler runs here
        return super().score_batch(samples)


class NotHandled(Exception):
    pass


def _not_handled(signum, frame):
    raise NotHandled(f"signal {signum} reached the handler train() should have replaced")


@pytest.mark.parametrize("signum", [signal.SIGTERM, None], ids=["sigterm", "keyboard_interrupt"])
def test_an_interrupted_rollout_is_redone_exactly_on_resume(signum, tiny_model, tmp_path):
    full = train(config(tiny_model, tmp_path / "full", steps=4), env=env(), tasks=tasks())
    cfg = config(tiny_model, tmp_path / "cut", steps=4)
    interrupting = type("Interrupting", (SignalOnThirdBatch,), {"calls": 0, "signum": signum})
    previous = signal.signal(signal.SIGTERM, _not_handled)
    try:
        result = train(cfg, env=env(interrupting), tasks=tasks())
        assert signal.getsignal(signal.SIGTERM) is _not_handled  # restored after train()
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert result.interrupted and result.steps == 2 and result.signal == signum
    assert result.final_model == tmp_path / "cut" / "checkpoints" / "step_000002" / "model"
    assert (tmp_path / "cut" / "checkpoints" / "latest").read_text() == "step_000002"
    train(cfg, env=env(), tasks=tasks(), resume=True)
    assert [r["step"] for r in rows(tmp_path / "cut")] == [1, 2, 3, 4]
    for step in (3, 4):  # the same prompts, the same samples, as if nothing had happened
        assert rollouts(tmp_path / "cut", step) == rollouts(full.output_dir, step), step


def test_a_signal_outside_the_rollout_waits_for_the_step_boundary():
    with StopSignals() as stop:
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(0.05)  # delivered, but deferred: an update is never cut in half
        assert stop.requested == signal.SIGTERM
        with pytest.raises(Interrupted) as exc:
            stop.check()
        assert exc.value.signum == signal.SIGTERM and stop.clean
    with StopSignals() as stop, pytest.raises(Interrupted), stop.rollout():
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(1)
    assert stop.clean
    with StopSignals() as stop, pytest.raises(Interrupted):  # a second signal does not wait
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.05)
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(1)
    assert not stop.clean


def test_signal_handlers_are_left_alone_outside_the_main_thread(tiny_model, tmp_path):
    results = []
    thread = threading.Thread(
        target=lambda: results.append(train(config(tiny_model, tmp_path, steps=1), env=env(), tasks=tasks()))
    )
    thread.start()
    thread.join(120)
    assert results and results[0].steps == 1 and not results[0].interrupted


def test_sigterm_stops_the_cli_with_a_checkpoint_and_resume_continues(tmp_path):
    """Preemption as SLURM or Kubernetes does it: SIGTERM to ``rewardkit train``, then the same command
    with ``--resume``; metrics.jsonl ends with one row per step, none missing, none twice."""
    out = tmp_path / "run"
    yaml = tmp_path / "cfg.yaml"
    yaml.write_text(
        f"model: tiny\nenv: math\nenv_config: {{levels: [1], executor: inline}}\nmax_tasks: 32\n"
        f"prompts_per_step: 2\ngroup_size: 2\nmax_new_tokens: 4\nsteps: 200\nsave_every: 0\n"
        f"sample_every: 0\nprogress: false\noutput_dir: {out}\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "rewardkit", "train", str(yaml)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    metrics = out / "metrics.jsonl"
    deadline = time.monotonic() + 240
    while not (metrics.exists() and metrics.read_text().count("\n") >= 1):
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()[1][-3000:]
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 143, stderr[-3000:]
    done = [r["step"] for r in rows(out)]
    assert done == list(range(1, len(done) + 1)) and len(done) < 200
    assert (out / "checkpoints" / "latest").read_text() == f"step_{done[-1]:06d}"
    assert f"stopped by SIGTERM at step {done[-1]}" in stdout
    proc = subprocess.run(
        [sys.executable, "-m", "rewardkit", "train", str(yaml), "--resume", "--set", f"steps={done[-1] + 2}"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f"(step {done[-1]})" in proc.stderr
    assert [r["step"] for r in rows(out)] == list(range(1, done[-1] + 3))
    final = out / "checkpoints" / f"step_{done[-1] + 2:06d}" / "model"
    assert f"model: {final}" in proc.stdout
