"""A new user's first hour: the README's plugin, trained from the CLI on a JSONL of prompts, then evaluated."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

import rewardkit

REPO = Path(__file__).resolve().parents[2]
RK = str(Path(sys.executable).parent / "rewardkit")  # the console script, as a user runs it

CONFIG = """\
model: tiny
env: {env}
data: {{path: prompts.jsonl, prompt_field: text, answer_field: gold, info_fields: [n]}}
steps: 2
prompts_per_step: 2
group_size: 2
max_new_tokens: 8
sample_every: 1
save_every: 0
progress: false
output_dir: runs/shouty
"""


def readme_plugin() -> str:
    blocks = re.findall(r"```python\n(.*?)```", (REPO / "README.md").read_text(), flags=re.S)
    (block,) = [b for b in blocks if "@rewardkit.reward_env" in b]
    return block


@pytest.fixture
def project(tmp_path):
    (tmp_path / "my_rewards.py").write_text(readme_plugin())
    rows = [{"text": f"say hello number {i}", "gold": "HELLO", "n": i} for i in range(6)]
    (tmp_path / "prompts.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return tmp_path


def _run(args, cwd, timeout=300):
    return subprocess.run([RK, *args], cwd=cwd, capture_output=True, text=True, timeout=timeout)


def _steps(run_dir: Path) -> list[dict]:
    return [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]


def test_readme_plugin_trains_from_the_cli_on_a_jsonl_then_evaluates(project):
    (project / "train.yaml").write_text(CONFIG.format(env="my_rewards:shouty"))
    proc = _run(["train", "train.yaml"], project)
    assert proc.returncode == 0, proc.stderr[-3000:]
    run = project / "runs/shouty"
    metrics = _steps(run)
    assert [m["step"] for m in metrics] == [1, 2]
    assert all(m["status_error"] == 0 and m["status_timeout"] == 0 for m in metrics)  # the reward really ran
    rollouts = [json.loads(x) for x in (run / "rollouts/step_000002.jsonl").read_text().splitlines()]
    assert {r["prompt"] for r in rollouts} <= {f"say hello number {i}" for i in range(6)}
    assert (run / "checkpoints/latest").exists()

    out = project / "runs/eval"
    proc = _run(
        ["eval", "--model", str(run), "--envs", "my_rewards:shouty", "--data", "prompts.jsonl", "--n", "1"]
        + ["--data-arg", "prompt_field=text", "--data-arg", "answer_field=gold"]
        + ["--max-new-tokens", "8", "--output-dir", str(out), "--quiet"],
        project,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    (stats,) = summary["environments"].values()
    assert stats["tasks"] == 6 and stats["status_counts"]["ok"] == 6


def test_import_flag_names_the_registered_environment(project):
    (project / "train.yaml").write_text(CONFIG.format(env="shouty").replace("steps: 2", "steps: 1"))
    proc = _run(["train", "train.yaml", "--import", "my_rewards"], project)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert [m["step"] for m in _steps(project / "runs/shouty")] == [1]


def test_an_environment_without_tasks_says_how_to_give_them(project):
    lines = CONFIG.format(env="my_rewards:shouty").splitlines()
    (project / "train.yaml").write_text("\n".join(x for x in lines if not x.startswith("data:")))
    proc = _run(["train", "train.yaml"], project)
    assert proc.returncode == 2
    assert "has no built-in dataset" in proc.stderr and "data: {path: FILE.jsonl}" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (project / "runs/shouty/tiny_model").exists()  # it failed before building a model


def test_python_api_exports_train_and_its_config(project, monkeypatch):
    monkeypatch.chdir(project)
    monkeypatch.setattr(sys, "path", list(sys.path))
    (project / "api.jsonl").write_text(
        '{"prompt": "say hi", "answer": "HI"}\n{"prompt": "say yo", "answer": "YO"}\n'
    )
    cfg = rewardkit.TrainConfig.from_dict(
        {
            "model": "tiny",
            "env": "my_rewards:shouty",
            "data": "api.jsonl",  # a bare path is short for {path: ...}
            "steps": 1,
            "prompts_per_step": 2,
            "group_size": 2,
            "max_new_tokens": 4,
            "progress": False,
            "output_dir": str(project / "runs/api"),
        }
    )
    assert cfg.data == rewardkit.DataConfig(path="api.jsonl")
    result = rewardkit.train(cfg)
    assert isinstance(result, rewardkit.TrainResult) and result.steps == 1
