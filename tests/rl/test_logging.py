"""What a run shows and leaves behind (rewardkit.rl.logging): plain progress lines when the output is not a
terminal, the last step's rollouts, and plots that never fail a finished run; and the console's quiet
default for third-party libraries (rewardkit.console)."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import pytest

from rewardkit.rl.config import TrainConfig
from rewardkit.rl.logging import RunLogger
from rewardkit.rl.sampling import Batch, ScoredSample
from rewardkit.types import Score, Task, Trajectory

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def _fresh_warnings():
    """Each test sees the once-per-process warnings anew."""
    from rewardkit.console import _warn_once

    _warn_once.cache_clear()


@pytest.fixture
def console_state():
    """Put back what ``quiet_third_party`` changes in this process (env vars, logger levels, progress bars,
    warning filters), so that a test calling it leaves the session as it found it."""
    from rewardkit import console

    keys = (*console.QUIET_ENV, *console.VERBOSE_ENV)
    env = {key: os.environ.get(key) for key in keys}
    levels = {name: logging.getLogger(name).level for name in console.THIRD_PARTY_LOGGERS}
    with warnings.catch_warnings():
        yield
    for key, value in env.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
    for name, level in levels.items():
        logging.getLogger(name).setLevel(level)
    if "transformers" in sys.modules:
        from transformers.utils import logging as hf_logging

        hf_logging.enable_progress_bar()


def _batch(reward: float = 1.0) -> Batch:
    task = Task(prompt="Q: 1 + 1?\nA: ", answer="2", id="t0")
    trajectory = Trajectory(
        task=task,
        prompt_ids=(1, 2, 3),
        completion_ids=(4, 5),
        completion_mask=(1, 1),
        logprobs=(-0.5, -0.25),
        completion="2",
    )
    return Batch(samples=[ScoredSample(trajectory, Score(reward=reward), reward, group=0)])


def _metrics(step: int) -> dict[str, float]:
    return {"reward_mean": 0.25 * step, "reward_std": 0.5, "kl": 0.001, "response_len_mean": 12.0}


def _log_run(out: Path, **config: object) -> RunLogger:
    cfg = TrainConfig(model="tiny", output_dir=str(out), **config)
    logger = RunLogger(out, cfg)
    for step in range(1, cfg.steps + 1):
        logger.log_step(step, _metrics(step), _batch())
    return logger


def test_the_last_step_writes_its_rollouts_even_between_sample_every_steps(tmp_path):
    """``sample_every=10`` with 4 steps used to leave no rollouts/ at all (the examples did that)."""
    _log_run(tmp_path, steps=4, sample_every=10, progress=False).close()
    assert sorted(p.name for p in (tmp_path / "rollouts").iterdir()) == ["step_000004.jsonl"]

    _log_run(tmp_path / "every2", steps=5, sample_every=2, progress=False).close()
    written = sorted(p.name for p in (tmp_path / "every2" / "rollouts").iterdir())
    assert written == ["step_000002.jsonl", "step_000004.jsonl", "step_000005.jsonl"]

    _log_run(tmp_path / "never", steps=3, sample_every=0, progress=False).close()
    assert not (tmp_path / "never" / "rollouts").exists()


def test_without_a_terminal_progress_is_one_plain_line_per_log_every_steps(tmp_path, capsys):
    """Under SLURM/nohup (stderr is a file or a pipe) a tqdm bar writes a line per refresh."""
    assert not sys.stderr.isatty()  # pytest captures it
    _log_run(tmp_path, steps=6, log_every=2, sample_every=0).close()
    err = capsys.readouterr().err
    assert "\r" not in err, "a progress bar was drawn into a non-terminal stream"
    lines = [line for line in err.splitlines() if line.startswith("step ")]
    assert [line.split(":")[0] for line in lines] == ["step 2/6", "step 4/6", "step 6/6"]
    assert "reward 1.500" in lines[-1] and "kl 0.0010" in lines[-1] and "len 12" in lines[-1]


def test_progress_false_prints_nothing(tmp_path, capsys):
    _log_run(tmp_path, steps=3, progress=False, sample_every=0).close()
    assert capsys.readouterr().err == ""


def test_log_every_must_be_positive():
    with pytest.raises(ValueError, match="log_every: got 0, expected >= 1"):
        TrainConfig(model="tiny", log_every=0)


def test_a_missing_plotting_library_warns_once_and_never_fails_the_run(tmp_path, monkeypatch, caplog):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # `import matplotlib` raises ImportError
    with caplog.at_level(logging.WARNING):
        for run in ("a", "b"):
            _log_run(tmp_path / run, steps=2, progress=False, sample_every=0).close()
    assert (tmp_path / "b" / "metrics.jsonl").exists() and not (tmp_path / "b" / "curves.png").exists()
    warnings = [r.getMessage() for r in caplog.records if "matplotlib" in r.getMessage()]
    assert len(warnings) == 1, warnings
    assert "pip install matplotlib" in warnings[0]


def test_train_returns_its_result_when_matplotlib_is_missing(tmp_path, monkeypatch, console_state):
    """The crash came at the very end of ``train()``, after the last checkpoint, losing the result."""
    from rewardkit.rl.trainer import train

    monkeypatch.setitem(sys.modules, "matplotlib", None)
    cfg = TrainConfig(
        model="tiny",
        env="math",
        env_config={"levels": [1]},
        max_tasks=8,
        steps=1,
        prompts_per_step=2,
        group_size=2,
        max_new_tokens=4,
        save_every=0,
        progress=False,
        output_dir=str(tmp_path),
    )
    result = train(cfg)
    assert result.steps == 1 and not result.interrupted
    assert (tmp_path / "rollouts" / "step_000001.jsonl").exists()


def test_eval_chart_is_skipped_with_a_warning_when_matplotlib_is_missing(tmp_path, monkeypatch, caplog):
    from rewardkit.eval.report import write_chart

    summary = {
        "model": {"path": "m"},
        "suite": {"name": "s"},
        "environments": {"math": {"mean_reward": 0.5, "pass_at_k": {"1": 0.5}}},
    }
    assert write_chart(summary, tmp_path / "ok.png") is True
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with caplog.at_level(logging.WARNING):
        assert write_chart(summary, tmp_path / "report.png") is False
    assert not (tmp_path / "report.png").exists()
    assert any("pip install matplotlib" in r.getMessage() for r in caplog.records)


# ---- third-party noise ----------------------------------------------------------------------------------
SAVE_A_MODEL = textwrap.dedent(
    """
    import sys
    from rewardkit.console import quiet_third_party
    quiet_third_party(verbose=sys.argv[2] == "verbose")
    import logging
    from rewardkit.models.tiny import TinyConfig, build_tiny
    model, tok = build_tiny(["1 + 1 = 2"] * 10, TinyConfig(hidden_size=64, intermediate_size=128, num_layers=1, num_heads=2))
    model.save_pretrained(sys.argv[1])
    logging.getLogger("transformers.modeling_utils").info("an INFO line from transformers")
    from transformers import AutoModelForCausalLM
    AutoModelForCausalLM.from_pretrained(sys.argv[1])
    """
)


@pytest.mark.parametrize("mode", ["quiet", "verbose"])
def test_third_party_progress_bars_and_info_logs_only_when_verbose(tmp_path, mode):
    pytest.importorskip("transformers")
    proc = subprocess.run(
        [sys.executable, "-c", SAVE_A_MODEL, str(tmp_path / "model"), mode],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=REPO,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    noise = ("Writing model shards", "Loading weights", "an INFO line from transformers")
    shown = [text for text in noise if text in proc.stderr]
    assert shown == (list(noise) if mode == "verbose" else []), proc.stderr[-3000:]
    assert proc.stdout == ""


def test_quiet_keeps_download_progress_bars(console_state):
    """Shard-writing bars are noise at every checkpoint; a first download's bar is how a user sees it move."""
    from huggingface_hub.utils import are_progress_bars_disabled

    from rewardkit.console import quiet_third_party

    if os.environ.get("HF_HUB_DISABLE_PROGRESS_BARS") is not None:
        pytest.skip("HF_HUB_DISABLE_PROGRESS_BARS is set: huggingface_hub then ignores programmatic switches")
    quiet_third_party()
    assert are_progress_bars_disabled()  # the global switch transformers reads
    assert not are_progress_bars_disabled("huggingface_hub.http_get")
    assert not are_progress_bars_disabled("huggingface_hub.snapshot_download")
    quiet_third_party(verbose=True)
    assert not are_progress_bars_disabled()


@pytest.mark.parametrize("mode", ["quiet", "verbose"])
def test_a_piped_cli_run_prints_plain_progress_lines_and_no_third_party_noise(tmp_path, mode):
    """``rewardkit train CFG > log 2>&1`` (SLURM, nohup): one line per ``log_every`` steps, no bars,
    no shard-writing bars at the checkpoints; ``--verbose`` brings the libraries' own output back."""
    cmd = [sys.executable, "-m", "rewardkit", "train", str(REPO / "examples" / "grpo.yaml")]
    cmd += ["--set", f"output_dir={tmp_path}", "--set", "save_every=2", "--set", "log_every=2"]
    cmd += ["--set", "prompts_per_step=2", "--set", "group_size=2", "--set", "max_new_tokens=8"]
    cmd += ["--set", "steps=4"] if mode == "quiet" else ["--set", "steps=1", "--verbose"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    if mode == "verbose":
        assert "Writing model shards" in proc.stderr
        return
    assert "\r" not in proc.stderr and "Writing model shards" not in proc.stderr, proc.stderr[-3000:]
    progress = [line for line in proc.stderr.splitlines() if line.startswith("step ")]
    assert [line.split(":")[0] for line in progress] == ["step 2/4", "step 4/4"], proc.stderr[-3000:]
    assert proc.stdout.splitlines() == [
        f"finished at step 4: reward {proc.stdout.split('reward ')[1]}".strip()
    ]


@pytest.mark.parametrize("command", [["train", "c.yaml"], ["eval", "--model", "m"], ["demo", "--quick"]])
def test_verbose_is_an_option_of_every_command(command):
    from rewardkit.cli import build_parser

    parser = build_parser()
    assert parser.parse_args(command).verbose is False
    assert parser.parse_args([*command, "--verbose"]).verbose is True
    assert parser.parse_args([*command, "-v"]).verbose is True


def test_multi_turn_rollouts_record_policy_and_environment_token_runs(tmp_path):
    """A rollout record of an episode with environment tokens carries ``segments``: the completion decoded
    in runs of policy-sampled and environment-written tokens (the viewer highlights them); a single-turn
    record, all policy tokens, has none (its completion says it all)."""
    task = Task(prompt="go", id="t0")
    episode = Trajectory(
        task=task,
        prompt_ids=(1,),
        completion_ids=(10, 11, 20, 21, 22, 12),
        completion_mask=(1, 1, 0, 0, 0, 1),
        logprobs=(-0.1, -0.2, 0.0, 0.0, 0.0, -0.3),
        completion=({"role": "assistant", "content": "ab"}, {"role": "user", "content": "xyz"}),
        turns=2,
    )
    batch = _batch()
    batch.samples.append(ScoredSample(episode, Score(reward=0.5), 0.5, group=1))
    batch.generated = list(batch.samples)
    cfg = TrainConfig(model="tiny", output_dir=str(tmp_path), steps=1, progress=False)
    logger = RunLogger(tmp_path, cfg, decode=lambda ids: "".join(chr(ord("a") + i % 26) for i in ids))
    logger.log_step(1, _metrics(1), batch)
    rows = [
        json.loads(line) for line in (tmp_path / "rollouts" / "step_000001.jsonl").read_text().splitlines()
    ]
    assert "segments" not in rows[0]
    assert rows[1]["segments"] == [
        {"text": "kl", "policy": True},
        {"text": "uvw", "policy": False},
        {"text": "m", "policy": True},
    ]


def test_curves_png_has_reward_length_kl_entropy_and_clip_panels_smoothed(tmp_path):
    """curves.png (the headless view of a run) draws one panel per logged curve, raw and smoothed."""
    pytest.importorskip("matplotlib")
    from rewardkit.rl.logging import RL_VIEW, plot_curves

    history = [
        {
            "step": s,
            "reward_mean": s / 10,
            "response_len_mean": 50.0 - s,
            "kl": 0.01 * s,
            "entropy": 1.0,
            "clip_frac": 0.1,
        }
        for s in range(1, 11)
    ]
    drawn = plot_curves(history, tmp_path / "curves.png", RL_VIEW.curves)
    assert [key for key, _ in RL_VIEW.curves if key in drawn] == [
        "reward_mean",
        "response_len_mean",
        "kl",
        "entropy",
        "clip_frac",
    ]
    assert (tmp_path / "curves.png").stat().st_size > 5000
    # a key no row has gets no empty panel
    assert plot_curves(history, tmp_path / "two.png", (("reward_mean", "r"), ("eval/loss", "l"))) == [
        "reward_mean"
    ]


def test_ema_smoothing_is_debiased_like_tensorboards():
    from rewardkit.rl.logging import ema

    assert ema([3.0, 3.0, 3.0], 0.9) == pytest.approx([3.0, 3.0, 3.0])  # no pull towards 0 at the start
    assert ema([0.0, 1.0], 0.5) == pytest.approx([0.0, 0.5 / 0.75])
    assert ema([1.0, 5.0], 0.0) == [1.0, 5.0]
    assert ema([], 0.6) == []
